/**
 * The DNS server's UDP socket, on the runtime's fastest path.
 *
 * - Under Bun (the shipped runtime): `Bun.udpSocket`. It receives with recvmmsg and calls us once
 *   per datagram. At a low rate (this reply and the one before each DIRECT_GAP_MS or more after
 *   their predecessor) a reply leaves at once with `send`; otherwise replies are queued and
 *   leave in one `sendMany` (sendmmsg)
 *   after the receive batch (setImmediate runs once the batch is handled), so a burst of N
 *   queries costs one send system call instead of N, and a lone query waits for nothing.
 *   A reply the kernel does not take at once waits for `drain` (bounded: beyond MAX_QUEUED
 *   datagrams the oldest are dropped, as a full socket buffer would).
 * - Under Node (tests, `node bench`), and for the IPv6 wildcard (whose v4-mapped sharing Bun's
 *   socket does not let us turn off): `node:dgram`, one send per reply.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { copyOf } from './wire.ts';

export type OnDatagram = (msg: Buffer, port: number, address: string) => void;

export interface UdpEndpoint {
  readonly port: number;
  /**
   * Send `out`. `borrowed`: the caller reuses the buffer once this returns (a cached answer
   * with the client's ID written into it), so a reply that cannot leave at once is copied.
   */
  send(out: Buffer, port: number, address: string, borrowed?: boolean): void;
  close(): Promise<void>;
}

export interface UdpCounters {
  /** replies dropped because the send queue was full or the kernel refused them */
  sendDropped: number;
}

interface BunUdpSocket {
  readonly port: number;
  send(data: Buffer, port: number, address: string): boolean;
  sendMany(packets: (Buffer | number | string)[]): number;
  close(): void;
}
interface BunApi {
  udpSocket(o: {
    hostname: string;
    port: number;
    socket: {
      data(s: BunUdpSocket, msg: Buffer, port: number, address: string): void;
      drain?(s: BunUdpSocket): void;
      /** called with the socket as `this` and the error as the only argument */
      error?(e: unknown): void;
    };
  }): Promise<BunUdpSocket>;
}

/** Replies waiting for the socket (datagrams); three array slots each. */
export const MAX_QUEUED = 4096;

/**
 * A reply goes out at once (no batching) when it and the reply before it each came this long
 * (ms) after their predecessor: at a low rate every query arrives alone, and waiting for the
 * end of its receive batch only adds the event loop's turn to its latency. Under a burst only
 * the first reply of a batch follows a long gap, and the one before it (the end of the last
 * batch) did not: the whole batch leaves in one sendMany.
 */
export const DIRECT_GAP_MS = 0.1;
/** CNI_TS_DNS_UDP_BATCH_ONLY=1 turns that off (every reply waits for the batch's sendMany): for measurements */
const DIRECT = process.env.CNI_TS_DNS_UDP_BATCH_ONLY !== '1';

const bun = (globalThis as { Bun?: BunApi }).Bun;

export async function openUdp(
  address: string,
  port: number,
  onMessage: OnDatagram,
  counters: UdpCounters,
  log: (m: string) => void,
): Promise<UdpEndpoint> {
  if (bun && address !== '::' && process.env.CNI_TS_DNS_NODE_UDP !== '1') return openBun(bun, address, port, onMessage, counters, log);
  return openNode(address, port, onMessage, log);
}

async function openBun(
  b: BunApi,
  address: string,
  port: number,
  onMessage: OnDatagram,
  counters: UdpCounters,
  log: (m: string) => void,
): Promise<UdpEndpoint> {
  /** [buf, port, address, buf, port, address, ...] as sendMany takes them */
  let queue: (Buffer | number | string)[] = [];
  let scheduled = false;
  let closed = false;
  /** performance.now() of the last reply handed to us; whether it came DIRECT_GAP_MS after the one before */
  let last = 0;
  let lastAlone = true;
  const flush = (): void => {
    scheduled = false;
    if (closed || !queue.length) return;
    const q = queue;
    queue = [];
    let sent: number;
    try {
      sent = sock.sendMany(q);
    } catch {
      // one refused destination fails the whole call: the rest one by one
      sent = q.length / 3;
      for (let i = 0; i < q.length; i += 3) {
        try {
          sock.send(q[i] as Buffer, q[i + 1] as number, q[i + 2] as string);
        } catch (e) {
          counters.sendDropped++;
          log(`dns: udp ${address}: send to ${String(q[i + 2])}: ${(e as Error | undefined)?.message ?? String(e)}`);
        }
      }
    }
    // the kernel took `sent` datagrams; the rest waits for drain
    if (sent * 3 < q.length) queue = q.slice(sent * 3).concat(queue);
  };
  const sock = await b.udpSocket({
    hostname: address,
    port,
    socket: {
      data: (_s, msg, p, a) => onMessage(msg, p, a),
      drain: () => flush(),
      // a client that went away before its answer (ICMP port unreachable) is not news
      error: (e) => {
        const err = e as NodeJS.ErrnoException | undefined;
        if (err?.code !== 'ECONNREFUSED') log(`dns: udp ${address}: ${err?.message ?? String(e)}`);
      },
    },
  });
  return {
    port: sock.port,
    send(out, p, a, borrowed) {
      const now = performance.now();
      const alone = now - last >= DIRECT_GAP_MS;
      const direct = alone && lastAlone;
      last = now;
      lastAlone = alone;
      if (DIRECT && direct && !scheduled && !queue.length && !closed) {
        // a refusal pending from an earlier client (ICMP port unreachable) fails this send
        // once and is cleared by it: one retry
        for (let attempt = 0; attempt < 2; attempt++) {
          try {
            if (sock.send(out, p, a)) return;
            break; // the kernel did not take it: queued below, for drain
          } catch (e) {
            const err = e as NodeJS.ErrnoException | undefined;
            if (err?.code === 'ECONNREFUSED' && attempt === 0) continue;
            if (err?.code === 'EAGAIN' || err?.code === 'ENOBUFS') break;
            counters.sendDropped++;
            log(`dns: udp ${address}: send to ${a}: ${err?.message ?? String(e)}`);
            return;
          }
        }
      }
      if (borrowed) out = copyOf(out);
      if (queue.length >= MAX_QUEUED * 3) {
        queue.splice(0, 3);
        counters.sendDropped++;
      }
      queue.push(out, p, a);
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
    close() {
      closed = true;
      queue = [];
      sock.close();
      return Promise.resolve();
    },
  };
}

async function openNode(address: string, port: number, onMessage: OnDatagram, log: (m: string) => void): Promise<UdpEndpoint> {
  const v6 = net.isIPv6(address);
  const udp = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: v6 });
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind({ address, port, exclusive: true }, () => {
      udp.off('error', reject);
      resolve();
    });
  });
  udp.on('error', (e) => log(`dns: udp ${address}: ${e.message}`));
  udp.on('message', (msg, rinfo) => onMessage(msg, rinfo.port, rinfo.address));
  return {
    port: (udp.address() as net.AddressInfo).port,
    // no callback: send errors arrive as the socket's 'error' event (logged); node:dgram
    // sends later, so a borrowed buffer is copied
    send: (out, p, a, borrowed) => udp.send(borrowed ? copyOf(out) : out, p, a),
    close: () =>
      new Promise<void>((r) => {
        try {
          udp.close(() => r());
        } catch {
          r();
        }
      }),
  };
}
