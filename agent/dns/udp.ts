/**
 * The DNS server's UDP socket, on the runtime's fastest path.
 *
 * - Under Bun (the shipped runtime): `Bun.udpSocket`. It receives with recvmmsg and calls us once
 *   per datagram; replies are queued and leave in one `sendMany` (sendmmsg) after the receive
 *   batch (setImmediate runs once the batch is handled), so a burst of N queries costs one send
 *   system call instead of N. A reply the kernel does not take at once waits for `drain`
 *   (bounded: beyond MAX_QUEUED datagrams the oldest are dropped, as a full socket buffer would).
 * - Under Node (tests, `node bench`), and for the IPv6 wildcard (whose v4-mapped sharing Bun's
 *   socket does not let us turn off): `node:dgram`, one send per reply.
 */
import dgram from 'node:dgram';
import net from 'node:net';

export type OnDatagram = (msg: Buffer, port: number, address: string) => void;

export interface UdpEndpoint {
  readonly port: number;
  send(out: Buffer, port: number, address: string): void;
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
    send(out, p, a) {
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
    // no callback: send errors arrive as the socket's 'error' event (logged)
    send: (out, p, a) => udp.send(out, p, a),
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
