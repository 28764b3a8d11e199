/**
 * The node's DNS server: UDP and TCP on the given addresses. Answers our zones from the
 * current Zone (shared/dns/records.ts; `setZone` swaps it atomically, in-flight queries finish
 * on the zone they started with), forwards everything else to upstream resolvers through a
 * bounded cache. Wire format by `dns-packet`; hostile input is answered FORMERR / NOTIMP /
 * REFUSED or dropped, never allowed to throw out of a handler.
 */
import net from 'node:net';
import { lookup, type Answer, type RR, type View, type Zone } from '../../shared/dns/records.ts';
import { AnswerCache, type CacheEntry } from './cache.ts';
import { Forwarder, type QueryKey, type Upstream } from './upstream.ts';
import { newMetrics, observeDuration, type DnsMetrics } from './metrics.ts';
import { openUdp, type UdpEndpoint } from './udp.ts';
import { QueryTable } from './qtable.ts';
import { AA, CD, copyOf, dnsPacket, OPCODE_MASK, QR, RA, RCODE, RCODE_NAMES, RD, TC, questionEnd, ttlOffsets, type Rcode } from './wire.ts';

export interface ListenSpec {
  address: string;
  port: number;
  /** networks whose container names clients on this address see (undefined: all) */
  networks?: string[];
}

export interface DnsServerOptions {
  listen?: ListenSpec[];
  upstreams?: Upstream[];
  zone?: Zone;
  /** per upstream attempt (ms): 2000 */
  upstreamTimeoutMs?: number;
  /** answers of upstreams kept (entries): 10000; 0 disables the cache */
  cacheSize?: number;
  /** cap on the TTL of cached upstream answers (s): 3600 */
  maxCacheTtl?: number;
  /** per source address, queries per second and burst; false/0 disables: 5000 / 10000 */
  rateLimit?: { qps: number; burst?: number } | false;
  /** concurrent TCP connections: 256; idle timeout (ms): 10000 */
  maxTcpConnections?: number;
  tcpIdleMs?: number;
  /** largest UDP answer we send to an EDNS client: 1232 (the DNS flag day value) */
  ednsUdpSize?: number;
  log?: (msg: string) => void;
  /** wall clock (ms) for the answer cache's TTLs (tests) */
  now?: () => number;
  /** the fast paths' hash of a query's bytes (tests: a constant one makes every key collide) */
  queryHash?: (ctx: number, buf: Uint8Array, from: number) => number;
}

interface Ctx {
  transport: 'udp' | 'tcp';
  view: View;
  viewKey: string;
  /** one number per distinct view + transport: the context part of the fast-path keys */
  keyId: number;
}

interface Listener {
  key: string;
  spec: ListenSpec;
  ctxUdp: Ctx;
  ctxTcp: Ctx;
  udp: UdpEndpoint;
  tcp: net.Server;
}

type Decoded = dnsPacket.DecodedPacket & { rcode?: string; questions: dnsPacket.Question[] };
type Opt = { type: 'OPT'; udpPayloadSize?: number; flags?: number; flag_do?: boolean };

const ZONE_CACHE_MAX = 20000;

/** A query known to be forwarded: its answer-cache key, UDP limit, question end, and the entry last served. */
interface Forwarded {
  key: string;
  limit: number;
  qe: number;
  entry?: CacheEntry;
}

export class DnsServer {
  readonly metrics: DnsMetrics = newMetrics();
  private zone: Zone | undefined;
  /** encoded answers from the current zone, keyed by view + transport + the query minus its ID (its bytes, no string) */
  private zoneAnswers: QueryTable<Buffer>;
  /**
   * Queries (same key) already known to be forwarded: their cache key, UDP limit and question
   * end, and the cache entry last served, so a repeat skips decoding, the zone lookup and the
   * cache's own map (while the entry is live and unexpired).
   * Cleared with every zone swap (the new zone may own the name).
   */
  private forwarded: QueryTable<Forwarded>;
  private readonly queryHash: ((ctx: number, buf: Uint8Array, from: number) => number) | undefined;
  private readonly cache: AnswerCache;
  private readonly forwarder: Forwarder;
  private readonly listeners = new Map<string, Listener>();
  private readonly buckets = new Map<string, { tokens: number; last: number }>();
  private tcpConns = 0;
  private readonly sockets = new Set<net.Socket>();
  private readonly pruneTimer: NodeJS.Timeout;
  private readonly o: Required<Omit<DnsServerOptions, 'zone' | 'listen' | 'upstreams' | 'log' | 'rateLimit' | 'now' | 'queryHash'>> & {
    rateLimit: { qps: number; burst: number } | false;
    log: (m: string) => void;
  };

  constructor(opts: DnsServerOptions = {}) {
    const rl = opts.rateLimit === undefined ? { qps: 5000, burst: 10000 } : opts.rateLimit;
    this.o = {
      upstreamTimeoutMs: opts.upstreamTimeoutMs ?? 2000,
      cacheSize: opts.cacheSize ?? 10000,
      maxCacheTtl: opts.maxCacheTtl ?? 3600,
      maxTcpConnections: opts.maxTcpConnections ?? 256,
      tcpIdleMs: opts.tcpIdleMs ?? 10000,
      ednsUdpSize: opts.ednsUdpSize ?? 1232,
      rateLimit: rl && rl.qps > 0 ? { qps: rl.qps, burst: rl.burst ?? rl.qps * 2 } : false,
      log: opts.log ?? (() => {}),
    };
    this.cache = new AnswerCache(this.o.cacheSize, this.o.maxCacheTtl, opts.now);
    this.queryHash = opts.queryHash;
    this.zoneAnswers = new QueryTable<Buffer>(ZONE_CACHE_MAX, 2, this.queryHash);
    this.forwarded = new QueryTable<Forwarded>(ZONE_CACHE_MAX, 2, this.queryHash);
    this.forwarder = new Forwarder(opts.upstreams ?? [], this.metrics, this.o.upstreamTimeoutMs);
    if (opts.zone) this.setZone(opts.zone);
    this.pruneTimer = setInterval(() => this.pruneBuckets(), 10000);
    this.pruneTimer.unref();
  }

  /** Serve this zone from now on (one reference swap). */
  setZone(zone: Zone): void {
    this.zone = zone;
    this.zoneAnswers = new QueryTable<Buffer>(ZONE_CACHE_MAX, 2, this.queryHash);
    this.forwarded = new QueryTable<Forwarded>(ZONE_CACHE_MAX, 2, this.queryHash);
    this.metrics.zone.swaps++;
    this.metrics.zone.names = zone.stats.names;
    this.metrics.zone.serial = zone.serial;
  }

  getZone(): Zone | undefined {
    return this.zone;
  }

  setUpstreams(u: Upstream[]): void {
    this.forwarder.upstreams = u;
  }

  /** Where each listener is bound (port resolved when 0 was asked). */
  addresses(): { address: string; port: number; networks?: string[] }[] {
    return [...this.listeners.values()].map((l) => ({
      address: l.spec.address,
      port: l.udp.port,
      networks: l.spec.networks,
    }));
  }

  /**
   * Listen on exactly these addresses: new ones are bound, gone ones closed, the networks of
   * kept ones updated. Returns the addresses that could not be bound (retried on the next call).
   */
  async setListeners(specs: ListenSpec[]): Promise<{ address: string; port: number; error: string }[]> {
    const want = new Map(specs.map((s) => [`${s.address}#${s.port}`, s]));
    for (const [k, l] of this.listeners) {
      if (!want.has(k)) {
        this.listeners.delete(k);
        await closeListener(l);
      }
    }
    const failed: { address: string; port: number; error: string }[] = [];
    for (const [k, s] of want) {
      const have = this.listeners.get(k);
      if (have) {
        have.spec = s;
        Object.assign(have.ctxUdp, ctxFor(s, 'udp'));
        Object.assign(have.ctxTcp, ctxFor(s, 'tcp'));
        continue;
      }
      try {
        this.listeners.set(k, await this.open(k, s));
      } catch (e) {
        failed.push({ address: s.address, port: s.port, error: (e as Error).message });
        this.o.log(`dns: cannot listen on ${s.address}:${s.port}: ${(e as Error).message}`);
      }
    }
    return failed;
  }

  async close(): Promise<void> {
    clearInterval(this.pruneTimer);
    for (const s of this.sockets) s.destroy();
    const ls = [...this.listeners.values()];
    this.listeners.clear();
    await Promise.all(ls.map(closeListener));
  }

  private async open(key: string, spec: ListenSpec): Promise<Listener> {
    const v6 = net.isIPv6(spec.address);
    // the listener the datagrams are for (set below; none arrive before bind returns)
    const ref: { l?: Listener } = {};
    const udp = await openUdp(
      spec.address,
      spec.port,
      (msg, port, address) => ref.l && this.onUdp(ref.l, msg, port, address),
      this.metrics.dropped,
      this.o.log,
    );
    const port = udp.port;
    const tcp = net.createServer({ noDelay: true });
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen({ host: spec.address, port, exclusive: true, ipv6Only: v6 }, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      await udp.close();
      throw e;
    }
    const l: Listener = { key, spec, udp, tcp, ctxUdp: ctxFor(spec, 'udp'), ctxTcp: ctxFor(spec, 'tcp') };
    ref.l = l;
    tcp.on('error', (e) => this.o.log(`dns: tcp ${spec.address}: ${e.message}`));
    tcp.on('connection', (sock) => this.onTcp(l, sock));
    return l;
  }

  // ------------------------------------------------------------------ transports

  private onUdp(l: Listener, msg: Buffer, port: number, address: string): void {
    this.metrics.queries.udp++;
    if (port === 0) return;
    if (!this.allow(address)) {
      this.metrics.dropped.rateLimited++;
      return;
    }
    const t0 = performance.now();
    // the fast paths of a name asked before: a cluster name's cached answer itself, or a
    // forwarded name's cache entry rendered into the entry's own reply buffer, with this
    // query's ID (and spelling of the question) written in, goes to the socket, which copies
    // it only if it cannot send at once: a query allocates nothing of ours
    if (msg.length >= 12 && !(msg.readUInt16BE(2) & QR)) {
      const out = this.cachedReply(msg, l.ctxUdp, true);
      if (out) {
        this.account(out, t0);
        l.udp.send(out, port, address, true);
        return;
      }
    }
    const send = (out: Buffer | null): void => {
      if (!out) return;
      this.account(out, t0);
      l.udp.send(out, port, address);
    };
    const r = this.safeAnswer(msg, l.ctxUdp);
    if (r instanceof Promise) r.then(send, () => {});
    else send(r);
  }

  private onTcp(l: Listener, sock: net.Socket): void {
    if (this.tcpConns >= this.o.maxTcpConnections) {
      this.metrics.dropped.tcpConnections++;
      sock.destroy();
      return;
    }
    this.tcpConns++;
    this.sockets.add(sock);
    sock.setTimeout(this.o.tcpIdleMs);
    sock.on('timeout', () => sock.destroy());
    sock.on('error', () => {});
    sock.on('close', () => {
      this.tcpConns--;
      this.sockets.delete(sock);
    });
    const src = sock.remoteAddress ?? '';
    let buf: Buffer = Buffer.alloc(0);
    let pending = 0;
    sock.on('data', (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      while (buf.length >= 2) {
        const n = buf.readUInt16BE(0);
        if (n < 12) {
          this.metrics.dropped.malformed++;
          sock.destroy();
          return;
        }
        if (buf.length < 2 + n) break;
        const frame = Buffer.from(buf.subarray(2, 2 + n));
        buf = buf.subarray(2 + n);
        this.metrics.queries.tcp++;
        if (!this.allow(src)) {
          this.metrics.dropped.rateLimited++;
          continue;
        }
        if (pending >= 64) {
          sock.destroy();
          return;
        }
        pending++;
        const t0 = performance.now();
        const send = (out: Buffer | null): void => {
          pending--;
          if (!out || sock.destroyed) return;
          this.account(out, t0);
          const len = Buffer.alloc(2);
          len.writeUInt16BE(out.length);
          sock.write(Buffer.concat([len, out]));
        };
        const r = this.safeAnswer(frame, l.ctxTcp);
        if (r instanceof Promise) r.then(send, () => send(null));
        else send(r);
      }
    });
  }

  private account(out: Buffer, t0: number): void {
    const rc = out.readUInt16BE(2) & 0xf;
    const name = RCODE_NAMES[rc];
    if (name) this.metrics.responses[name]++;
    else this.metrics.responses.other++;
    observeDuration(this.metrics, (performance.now() - t0) / 1000);
  }

  private allow(src: string): boolean {
    const rl = this.o.rateLimit;
    if (!rl) return true;
    const now = performance.now();
    let b = this.buckets.get(src);
    if (!b) {
      if (this.buckets.size > 100000) this.buckets.clear();
      b = { tokens: rl.burst, last: now };
      this.buckets.set(src, b);
    } else {
      b.tokens = Math.min(rl.burst, b.tokens + ((now - b.last) / 1000) * rl.qps);
      b.last = now;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  private pruneBuckets(): void {
    const rl = this.o.rateLimit;
    if (!rl) return;
    const now = performance.now();
    for (const [k, b] of this.buckets) if (b.tokens + ((now - b.last) / 1000) * rl.qps >= rl.burst) this.buckets.delete(k);
  }

  // ------------------------------------------------------------------ answering

  /** Answer one message as received on a transport; exported through `query` for tests. */
  private safeAnswer(msg: Buffer, ctx: Ctx): Buffer | null | Promise<Buffer | null> {
    try {
      const r = this.answer(msg, ctx);
      if (r instanceof Promise) return r.catch((e: Error) => this.internalError(msg, e));
      return r;
    } catch (e) {
      return this.internalError(msg, e as Error);
    }
  }

  /** Answer `msg` as if it came over `transport` to a listener serving `networks` (tests, `cnictl dns lookup`). */
  query(msg: Buffer, transport: 'udp' | 'tcp' = 'udp', networks?: string[]): Promise<Buffer | null> {
    return Promise.resolve(this.safeAnswer(msg, ctxFor({ address: '', port: 0, networks }, transport)));
  }

  private internalError(msg: Buffer, e: Error): Buffer | null {
    this.o.log(`dns: internal error: ${e.stack ?? e.message}`);
    this.metrics.answered.error++;
    return msg.length >= 12 ? headerOnly(msg, RCODE.SERVFAIL) : null;
  }

  private answer(msg: Buffer, ctx: Ctx): Buffer | null | Promise<Buffer | null> {
    if (msg.length < 12) {
      this.metrics.dropped.malformed++;
      return null;
    }
    const flags = msg.readUInt16BE(2);
    if (flags & QR) {
      this.metrics.dropped.notQuery++;
      return null;
    }
    const zone = this.zone;
    const cached = this.cachedReply(msg, ctx, false);
    if (cached) return cached;

    let d: Decoded;
    try {
      d = dnsPacket.decode(msg) as Decoded;
    } catch {
      this.metrics.dropped.malformed++;
      this.metrics.answered.error++;
      return headerOnly(msg, RCODE.FORMERR);
    }
    if ((flags & OPCODE_MASK) !== 0) {
      this.metrics.answered.error++;
      return headerOnly(msg, RCODE.NOTIMP);
    }
    const opts = (d.additionals ?? []).filter((a) => a.type === 'OPT') as unknown as Opt[];
    if (d.questions.length !== 1 || opts.length > 1) {
      this.metrics.answered.error++;
      return headerOnly(msg, RCODE.FORMERR);
    }
    const q = d.questions[0];
    const opt = opts[0];
    if (q.class !== 'IN' || q.type === 'AXFR' || q.type === 'IXFR' || (q.type as string) === 'OPT') {
      this.metrics.answered.error++;
      // a class dns-packet cannot name would be echoed as 0: answer with the header only
      if (String(q.class).startsWith('UNKNOWN')) return headerOnly(msg, RCODE.REFUSED);
      return this.reply(d, ctx, 'REFUSED', undefined, false, opt);
    }
    const limit = ctx.transport === 'tcp' ? 65535 : opt ? Math.max(512, Math.min(opt.udpPayloadSize ?? 512, this.o.ednsUdpSize)) : 512;

    const ans = zone ? lookup(zone, q.name, q.type, ctx.view) : null;
    if (ans) {
      this.metrics.answered.zone++;
      const last = ans.answers[ans.answers.length - 1];
      if (last?.type === 'CNAME' && q.type !== 'CNAME' && zone && !lookup(zone, last.data, q.type, ctx.view)) {
        return this.chase(d, ctx, ans, last.data, opt);
      }
      const out = this.reply(d, ctx, ans.rcode, ans, true, opt, limit);
      if (this.zone === zone) this.zoneAnswers.set(ctx.keyId, msg, copyOf(out));
      return out;
    }
    return this.forward(msg, d, ctx, opt, limit);
  }

  /**
   * The live, unexpired cache entry a known forwarded query is answered from, counted as a
   * cache hit; undefined (and nothing counted) when it is gone or no longer fits the query.
   */
  /**
   * The reply to a name asked before, with this query's ID (and, forwarded, the client's
   * spelling of the question: 0x20 case randomisation) written in: a cluster name's cached
   * answer, or a forwarded name's cache entry rendered. `shared`: the cached buffers themselves
   * (the UDP fast path; its socket copies only when it must queue), else a copy of its own.
   */
  private cachedReply(msg: Buffer, ctx: Ctx, shared: boolean): Buffer | undefined {
    const hit = this.zoneAnswers.get(ctx.keyId, msg);
    if (hit) {
      this.metrics.answered.zone++;
      const out = shared ? hit : copyOf(hit);
      out.writeUInt16BE(msg.readUInt16BE(0), 0);
      return out;
    }
    const fwd = this.forwarded.get(ctx.keyId, msg);
    if (!fwd) return undefined;
    const now = this.cache.now();
    const e = this.cachedForward(fwd, now);
    if (!e) return undefined;
    const out = shared ? AnswerCache.renderShared(e, now) : AnswerCache.render(e, now);
    out.writeUInt16BE(msg.readUInt16BE(0), 0);
    msg.copy(out, 12, 12, fwd.qe);
    return out;
  }

  private cachedForward(fwd: Forwarded, now: number): CacheEntry | undefined {
    let e = fwd.entry;
    if (e && e.live && now < e.expiresMs) this.cache.touch(fwd.key, e, now);
    else e = fwd.entry = this.cache.entry(fwd.key, now);
    if (!e || e.msg.length > fwd.limit || e.qe !== fwd.qe) return undefined;
    this.metrics.cache.hits++;
    this.metrics.answered.cache++;
    return e;
  }

  /** Our own answer: AA (when authoritative), RA, the client's RD/CD echoed, EDNS when asked. */
  private reply(d: Decoded, ctx: Ctx, rcode: Rcode, ans: Answer | undefined, aa: boolean, opt: Opt | undefined, limit = 512): Buffer {
    const flags = (d.flags ?? 0) & (RD | CD);
    const ednsOut = opt ? [{ type: 'OPT', name: '.', udpPayloadSize: this.o.ednsUdpSize, flags: 0, options: [] }] : [];
    const pkt = {
      id: d.id,
      type: 'response' as const,
      flags: flags | RA | (aa ? AA : 0) | RCODE[rcode],
      questions: d.questions,
      answers: (ans?.answers ?? []) as RR[],
      authorities: (ans?.authority ?? []) as RR[],
      additionals: [...((ans?.additionals ?? []) as RR[]), ...ednsOut],
    };
    const enc = (p: typeof pkt): Buffer => dnsPacket.encode(p as unknown as dnsPacket.Packet);
    let out = enc(pkt);
    if (out.length <= limit) return out;
    // drop optional additional records first
    out = enc({ ...pkt, additionals: ednsOut });
    if (out.length <= limit) return out;
    if (ctx.transport === 'udp') {
      this.metrics.truncated++;
      return enc({ ...pkt, flags: pkt.flags | TC, answers: [], authorities: [], additionals: ednsOut });
    }
    // TCP: as many answers as fit in one message
    let lo = 0;
    let hi = pkt.answers.length;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (enc({ ...pkt, answers: pkt.answers.slice(0, mid), additionals: ednsOut }).length <= limit) lo = mid;
      else hi = mid - 1;
    }
    this.metrics.truncated++;
    return enc({ ...pkt, answers: pkt.answers.slice(0, lo), additionals: ednsOut });
  }

  private queryKey(d: Decoded, opt: Opt | undefined, name?: string, type?: string): { q: QueryKey; key: string } {
    const q0 = d.questions[0];
    const q: QueryKey = {
      name: name ?? q0.name,
      type: type ?? q0.type,
      class: q0.class ?? 'IN',
      dnssecOk: !!opt?.flag_do,
      checkingDisabled: !!((d.flags ?? 0) & CD),
    };
    return { q, key: AnswerCache.key(q.name, q.type, q.class, q.dnssecOk) };
  }

  /** Cached or fresh upstream answer (raw), caching what the upstream said for its TTLs. */
  private upstream(q: QueryKey, key: string): Buffer | Promise<Buffer> {
    const cached = this.cache.get(key);
    if (cached) {
      this.metrics.cache.hits++;
      return cached;
    }
    this.metrics.cache.misses++;
    return this.forwarder.query(q, key).then((resp) => {
      const ttl = cacheTtl(resp);
      if (ttl > 0) this.cache.put(key, resp, ttl);
      this.metrics.cache.size = this.cache.size;
      this.metrics.cache.evictions = this.cache.evictions;
      return resp;
    });
  }

  private forward(msg: Buffer, d: Decoded, ctx: Ctx, opt: Opt | undefined, limit: number): Buffer | Promise<Buffer> {
    const { q, key } = this.queryKey(d, opt);
    const zone = this.zone;
    const finish = (resp: Buffer): Buffer => {
      const out = Buffer.from(resp);
      out.writeUInt16BE(d.id ?? 0, 0);
      // the client's spelling of the question (0x20 case randomisation)
      const qe = questionEnd(msg);
      if (qe > 0 && questionEnd(out) === qe) {
        msg.copy(out, 12, 12, qe);
        if (this.zone === zone) this.forwarded.set(ctx.keyId, msg, { key, limit, qe });
      }
      if (out.length > limit) {
        this.metrics.truncated++;
        const fl = out.readUInt16BE(2);
        return dnsPacket.encode({ id: d.id, type: 'response', flags: (fl & 0x7fff) | TC, questions: d.questions } as dnsPacket.Packet);
      }
      return out;
    };
    const fail = (): Buffer => {
      this.metrics.upstream.servfail++;
      return this.reply(d, ctx, 'SERVFAIL', undefined, false, opt);
    };
    try {
      const r = this.upstream(q, key);
      if (r instanceof Promise) {
        return r.then(
          (resp) => {
            this.metrics.answered.upstream++;
            return finish(resp);
          },
          () => fail(),
        );
      }
      this.metrics.answered.cache++;
      return finish(r);
    } catch {
      return fail();
    }
  }

  /** A CNAME of ours (ExternalName) to a name elsewhere: append the target's records from upstream. */
  private async chase(d: Decoded, ctx: Ctx, ans: Answer, target: string, opt: Opt | undefined): Promise<Buffer> {
    const limit = ctx.transport === 'tcp' ? 65535 : opt ? Math.max(512, Math.min(opt.udpPayloadSize ?? 512, this.o.ednsUdpSize)) : 512;
    try {
      const { q, key } = this.queryKey(d, opt, target);
      const resp = dnsPacket.decode(await this.upstream(q, key)) as Decoded;
      const extra = (resp.answers ?? []).filter((a) => !a.type.startsWith('UNKNOWN')) as unknown as RR[];
      const rcode = (resp.rcode === 'NXDOMAIN' ? 'NXDOMAIN' : 'NOERROR') as Answer['rcode'];
      return this.reply(d, ctx, rcode, { ...ans, rcode, answers: [...ans.answers, ...extra] }, true, opt, limit);
    } catch {
      return this.reply(d, ctx, ans.rcode, ans, true, opt, limit);
    }
  }
}

/** The number of each view + transport seen (the context part of the fast-path keys). */
const keyIds = new Map<string, number>();

function ctxFor(s: ListenSpec, transport: 'udp' | 'tcp'): Ctx {
  const viewKey = s.networks ? s.networks.join(',') : '*';
  const k = `${viewKey}|${transport}`;
  let keyId = keyIds.get(k);
  if (keyId === undefined) keyIds.set(k, (keyId = keyIds.size));
  return { transport, view: { networks: s.networks }, viewKey, keyId };
}

async function closeListener(l: Listener): Promise<void> {
  await Promise.all([l.udp.close(), new Promise<void>((r) => l.tcp.close(() => r()))]);
}

/** A reply that is the query's header with QR and `rcode`, no sections (FORMERR, NOTIMP, SERVFAIL). */
function headerOnly(msg: Buffer, rcode: number): Buffer {
  const flags = msg.readUInt16BE(2);
  return dnsPacket.encode({
    id: msg.readUInt16BE(0),
    type: 'response',
    flags: (flags & (OPCODE_MASK | RD | CD)) | RA | rcode,
    questions: [],
  } as dnsPacket.Packet);
}

/**
 * How long an upstream answer may be cached (s): the smallest TTL of its answer and authority
 * records when it has answers; min(SOA TTL, SOA minimum) for NXDOMAIN / NODATA with an SOA;
 * 0 (not cached) otherwise, and for SERVFAIL, REFUSED and truncated answers.
 */
export function cacheTtl(resp: Buffer): number {
  let d: Decoded;
  try {
    d = dnsPacket.decode(resp) as Decoded;
  } catch {
    return 0;
  }
  if ((d.flags ?? 0) & TC) return 0;
  if (!ttlOffsets(resp)) return 0;
  const rc = d.rcode;
  const recs = [...(d.answers ?? []), ...(d.authorities ?? [])].filter((a) => a.type !== 'OPT') as {
    type: string;
    ttl?: number;
    data?: unknown;
  }[];
  if (rc === 'NOERROR' && (d.answers ?? []).length > 0) return Math.min(...recs.map((r) => r.ttl ?? 0));
  if (rc === 'NXDOMAIN' || rc === 'NOERROR') {
    const soa = (d.authorities ?? []).find((a) => a.type === 'SOA') as { ttl?: number; data: { minimum: number } } | undefined;
    return soa ? Math.min(soa.ttl ?? 0, soa.data.minimum) : 0;
  }
  return 0;
}
