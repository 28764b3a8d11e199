/**
 * Bun preload for bench/dns.ts (DNS_BENCH_TRACE=1), never loaded by the agent: wraps
 * `Bun.udpSocket` to timestamp every `data` callback and every datagram handed to
 * `send`/`sendMany` (wall clock, ms, as tcpdump stamps packets), with the peer port and DNS ID
 * of each, so the bench can split a query's time into arrival → callback, callback → send and
 * send → wire. SIGUSR2 writes what was recorded since the last SIGUSR2 to $DNS_TRACE_FILE
 * (Float64: n callbacks, n sends, then [t, port, id] per callback and per send) and starts over.
 */
import { renameSync, writeFileSync } from 'node:fs';

interface Sock {
  send(data: Buffer, port: number, address: string): boolean;
  sendMany(packets: (Buffer | number | string)[]): number;
}
interface Opts {
  socket: { data(s: Sock, msg: Buffer, port: number, address: string): void };
}
const B = (globalThis as unknown as { Bun: { udpSocket(o: Opts): Promise<Sock> } }).Bun;

const CAP = 1 << 20;
const rx = new Float64Array(CAP * 3);
const tx = new Float64Array(CAP * 3);
let nr = 0;
let nt = 0;
const origin = performance.timeOrigin;
const id = (b: Buffer): number => (b.length >= 2 ? b.readUInt16BE(0) : -1);
const sent = (t: number, b: Buffer, port: number): void => {
  if (nt >= CAP) return;
  const i = nt++ * 3;
  tx[i] = t;
  tx[i + 1] = port;
  tx[i + 2] = id(b);
};

const open = B.udpSocket.bind(B);
B.udpSocket = async (o: Opts): Promise<Sock> => {
  const data = o.socket.data;
  o.socket.data = (s, msg, port, address) => {
    if (nr < CAP) {
      const i = nr++ * 3;
      rx[i] = origin + performance.now();
      rx[i + 1] = port;
      rx[i + 2] = id(msg);
    }
    data(s, msg, port, address);
  };
  const sock = await open(o);
  const send = sock.send.bind(sock);
  const sendMany = sock.sendMany.bind(sock);
  sock.send = (b, port, address) => {
    sent(origin + performance.now(), b, port);
    return send(b, port, address);
  };
  sock.sendMany = (q) => {
    const t = origin + performance.now();
    for (let k = 0; k + 2 < q.length; k += 3) sent(t, q[k] as Buffer, q[k + 1] as number);
    return sendMany(q);
  };
  return sock;
};

process.on('SIGUSR2', () => {
  const file = process.env.DNS_TRACE_FILE;
  if (file) {
    const out = new Float64Array(2 + (nr + nt) * 3);
    out[0] = nr;
    out[1] = nt;
    out.set(rx.subarray(0, nr * 3), 2);
    out.set(tx.subarray(0, nt * 3), 2 + nr * 3);
    writeFileSync(`${file}.tmp`, out);
    renameSync(`${file}.tmp`, file);
  }
  nr = 0;
  nt = 0;
});
