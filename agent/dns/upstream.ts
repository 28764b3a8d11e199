/**
 * Forwarding to the host's resolvers: UDP from a fresh socket per query (random source port)
 * with a random ID, the answer accepted only from that upstream with that ID and question;
 * a truncated UDP answer is retried over TCP. Each upstream gets `timeoutMs`, in order,
 * starting with the last one that answered; identical queries in flight share one exchange.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import { dnsPacket, RD, CD, TC } from './wire.ts';
import type { DnsMetrics } from './metrics.ts';

export interface Upstream {
  host: string;
  port: number;
}

/** "IP" | "IP:port" | "[v6]:port" -> Upstream (port 53 by default); null when unparseable. */
export function parseHostPort(s: string, defaultPort = 53): Upstream | null {
  const t = s.trim();
  let host = t;
  let port = defaultPort;
  const br = t.match(/^\[([^\]]+)\](?::(\d+))?$/);
  if (br) {
    host = br[1];
    if (br[2]) port = Number(br[2]);
  } else if (t.split(':').length === 2) {
    const [h, p] = t.split(':');
    host = h;
    port = Number(p);
  }
  if (!net.isIP(host) || !Number.isInteger(port) || port < 1 || port > 65535) return null;
  return { host, port };
}

/** The `nameserver` lines of a resolv.conf text. */
export function resolvConfNameservers(text: string): Upstream[] {
  const out: Upstream[] = [];
  for (const line of text.split('\n')) {
    const m = line.trim().match(/^nameserver\s+(\S+)/);
    if (!m) continue;
    const u = parseHostPort(m[1].replace(/%.*$/, ''));
    if (u) out.push(u);
  }
  return out;
}

export interface QueryKey {
  name: string;
  type: string;
  class: string;
  dnssecOk: boolean;
  checkingDisabled: boolean;
}

export class Forwarder {
  private preferred = 0;
  private readonly inflight = new Map<string, Promise<Buffer>>();
  private active = 0;

  upstreams: Upstream[];
  private readonly metrics: DnsMetrics;
  private readonly timeoutMs: number;
  private readonly maxInflight: number;

  constructor(upstreams: Upstream[], metrics: DnsMetrics, timeoutMs = 2000, maxInflight = 1000) {
    this.upstreams = upstreams;
    this.metrics = metrics;
    this.timeoutMs = timeoutMs;
    this.maxInflight = maxInflight;
  }

  /** The upstream's raw answer; rejects when no upstream answered in time. */
  query(q: QueryKey, key: string): Promise<Buffer> {
    const running = this.inflight.get(key);
    if (running) return running;
    if (this.active >= this.maxInflight) return Promise.reject(new Error('too many upstream queries in flight'));
    this.active++;
    const p = this.exchange(q).finally(() => {
      this.active--;
      this.inflight.delete(key);
    });
    this.inflight.set(key, p);
    return p;
  }

  private async exchange(q: QueryKey): Promise<Buffer> {
    const n = this.upstreams.length;
    if (n === 0) throw new Error('no upstream resolvers');
    let lastErr: unknown = new Error('no upstream answered');
    for (let i = 0; i < n; i++) {
      const idx = (this.preferred + i) % n;
      const u = this.upstreams[idx];
      try {
        let msg = await this.udp(u, q);
        if (msg.readUInt16BE(2) & TC) {
          this.metrics.upstream.tcpRetries++;
          msg = await this.tcp(u, q);
        }
        this.preferred = idx;
        return msg;
      } catch (e) {
        lastErr = e;
      }
    }
    throw lastErr;
  }

  private encodeQuery(q: QueryKey, id: number): Buffer {
    return dnsPacket.encode({
      id,
      type: 'query',
      flags: RD | (q.checkingDisabled ? CD : 0),
      questions: [{ name: q.name, type: q.type as dnsPacket.RecordType, class: q.class as dnsPacket.RecordClass }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: q.dnssecOk ? dnsPacket.DNSSEC_OK : 0, options: [] }],
    } as unknown as dnsPacket.Packet);
  }

  private matches(msg: Buffer, id: number, q: QueryKey): boolean {
    if (msg.length < 12 || msg.readUInt16BE(0) !== id || !(msg.readUInt16BE(2) & 0x8000)) return false;
    try {
      const d = dnsPacket.decode(msg);
      const qq = d.questions?.[0];
      return !!qq && qq.name.toLowerCase() === q.name.toLowerCase() && qq.type === q.type;
    } catch {
      return false;
    }
  }

  private udp(u: Upstream, q: QueryKey): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const id = randomInt(0, 65536);
      const sock = dgram.createSocket(net.isIPv6(u.host) ? 'udp6' : 'udp4');
      let done = false;
      const finish = (err: Error | null, msg?: Buffer): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        try {
          sock.close();
        } catch {}
        if (err) reject(err);
        else resolve(msg!);
      };
      const timer = setTimeout(() => {
        this.metrics.upstream.timeouts++;
        finish(new Error(`upstream ${u.host}:${u.port} timed out`));
      }, this.timeoutMs);
      sock.on('error', (e) => {
        this.metrics.upstream.errors++;
        finish(e);
      });
      sock.on('message', (msg, rinfo) => {
        if (rinfo.port !== u.port || !sameAddr(rinfo.address, u.host)) return;
        if (this.matches(msg, id, q)) finish(null, msg);
      });
      this.metrics.upstream.sent++;
      sock.send(this.encodeQuery(q, id), u.port, u.host, (e) => {
        if (e) {
          this.metrics.upstream.errors++;
          finish(e);
        }
      });
    });
  }

  private tcp(u: Upstream, q: QueryKey): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const id = randomInt(0, 65536);
      const sock = net.connect({ host: u.host, port: u.port });
      let buf = Buffer.alloc(0);
      let done = false;
      const finish = (err: Error | null, msg?: Buffer): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.destroy();
        if (err) reject(err);
        else resolve(msg!);
      };
      const timer = setTimeout(() => {
        this.metrics.upstream.timeouts++;
        finish(new Error(`upstream ${u.host}:${u.port} (tcp) timed out`));
      }, this.timeoutMs);
      sock.on('error', (e) => {
        this.metrics.upstream.errors++;
        finish(e);
      });
      sock.on('connect', () => {
        const m = this.encodeQuery(q, id);
        const len = Buffer.alloc(2);
        len.writeUInt16BE(m.length);
        this.metrics.upstream.sent++;
        sock.write(Buffer.concat([len, m]));
      });
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length < 2) return;
        const n = buf.readUInt16BE(0);
        if (buf.length < 2 + n) return;
        const msg = buf.subarray(2, 2 + n);
        if (this.matches(msg, id, q)) finish(null, Buffer.from(msg));
        else finish(new Error('upstream answered another question'));
      });
      sock.on('close', () => finish(new Error('upstream closed the connection')));
    });
  }
}

function sameAddr(a: string, b: string): boolean {
  return a === b || a.replace(/^::ffff:/, '') === b.replace(/^::ffff:/, '');
}
