/**
 * The DNS server's fast-path keys: QueryTable (a query's bytes after its ID, hashed in place and
 * verified byte for byte) and the server on top of it. Collisions must cost a compare, never a
 * wrong answer: a server whose hash puts every query in one chain answers exactly as one with
 * the real hash. The UDP fast path of forwarded names renders into the cache entry's own buffer:
 * TTLs still count down, the client's ID and spelling still come back.
 */
import { afterEach, describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';
import { hashQuery, QueryTable } from '../agent/dns/qtable.ts';
import { DnsServer } from '../agent/dns/server.ts';
import { AnswerCache } from '../agent/dns/cache.ts';
import { buildZone } from '../shared/dns/records.ts';
import { hostile } from './helpers/dns-fuzz.ts';
import { testPort } from './helpers/run.ts';

const q = (name: string, type = 'A', id = 4242, extra: Record<string, unknown> = {}): Buffer =>
  dnsPacket.encode({
    id,
    type: 'query',
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type: type as dnsPacket.RecordType, class: 'IN' }],
    ...extra,
  } as dnsPacket.Packet);
const edns = { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0, options: [] }] };
type Reply = {
  id: number;
  rcode: string;
  questions: { name: string }[];
  answers: { name: string; type: string; ttl: number; data: unknown }[];
};
const decode = (b: Buffer | null): Reply => dnsPacket.decode(b!) as unknown as Reply;

describe('QueryTable', () => {
  it('keys by context and the bytes after the ID; the ID itself is not part of the key', () => {
    const t = new QueryTable<string>(100);
    t.set(1, q('a.test', 'A', 1), 'a');
    expect(t.get(1, q('a.test', 'A', 999))).toBe('a');
    expect(t.get(2, q('a.test', 'A', 1))).toBeUndefined();
    expect(t.get(1, q('a.test', 'AAAA', 1))).toBeUndefined();
    expect(t.get(1, q('A.test', 'A', 1))).toBeUndefined(); // exact bytes: another spelling is another key
    expect(t.get(1, q('a.test', 'A', 1, edns))).toBeUndefined(); // a longer message with the same start
    t.set(1, q('a.test', 'A', 7), 'a2');
    expect(t.size).toBe(1);
    expect(t.get(1, q('a.test'))).toBe('a2');
  });

  it('keeps its own copy of the key: the datagram it came from may be reused', () => {
    const t = new QueryTable<string>(100);
    const m = q('copy.test');
    t.set(0, m, 'x');
    m.fill(0, 2);
    expect(t.get(0, q('copy.test'))).toBe('x');
    expect(t.get(0, m)).toBeUndefined();
  });

  it('every key colliding: each lookup still finds only its own value', () => {
    const t = new QueryTable<number>(10000, 2, () => 42);
    const msgs: Buffer[] = [];
    for (let i = 0; i < 300; i++) msgs.push(q(`n${i}.test`, i % 2 ? 'A' : 'AAAA', i));
    msgs.forEach((m, i) => t.set(i % 3, m, i));
    msgs.forEach((m, i) => {
      expect(t.get(i % 3, m)).toBe(i);
      expect(t.get((i % 3) + 3, m)).toBeUndefined();
    });
    expect(t.get(0, q('absent.test'))).toBeUndefined();
    // a message shorter than the key, one of the same length with one byte changed
    expect(t.get(0, msgs[0].subarray(0, 10))).toBeUndefined();
    const flipped = Buffer.from(msgs[0]);
    flipped[flipped.length - 1] ^= 1;
    expect(t.get(0, flipped)).toBeUndefined();
  });

  it('bounded: the entry past `max` starts a new table', () => {
    const t = new QueryTable<number>(3);
    for (let i = 0; i < 3; i++) t.set(0, q(`b${i}.test`), i);
    expect(t.size).toBe(3);
    t.set(0, q('b3.test'), 3);
    expect(t.size).toBe(1);
    expect(t.get(0, q('b0.test'))).toBeUndefined();
    expect(t.get(0, q('b3.test'))).toBe(3);
  });

  it('hashQuery: an int32 of the context and bytes, stable, spread over many names', () => {
    const m = q('h.test');
    expect(hashQuery(1, m, 2)).toBe(hashQuery(1, Buffer.from(m), 2));
    expect(hashQuery(1, m, 2)).not.toBe(hashQuery(2, m, 2));
    const seen = new Set<number>();
    for (let i = 0; i < 5000; i++) {
      const h = hashQuery(0, q(`svc-${i}.default.svc.cluster.local`), 2);
      expect(h | 0).toBe(h);
      seen.add(h);
    }
    expect(seen.size).toBeGreaterThan(4990);
  });
});

describe('DNS server fast paths', () => {
  const closers: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });

  const zone = buildZone(
    {
      namespaces: [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } }],
      services: Array.from({ length: 20 }, (_, i) => ({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: `s${i}`, namespace: 'default' },
        spec: { clusterIPs: [`10.96.0.${i + 1}`, `fd96::${i + 1}`] },
      })),
    },
    { serial: 1 },
  );

  /** A resolver on loopback: `*.fwd.test` A 192.0.2.N (N = how many it has answered), TTL 60. */
  async function upstream(): Promise<{ port: number; fetches: () => number }> {
    let n = 0;
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    closers.push(() => void sock.close());
    sock.on('message', (m, r) => {
      const d = dnsPacket.decode(m);
      n++;
      const out = dnsPacket.encode({
        id: d.id,
        type: 'response',
        flags: dnsPacket.RECURSION_AVAILABLE,
        questions: d.questions,
        answers: [{ name: d.questions![0].name, type: 'A', ttl: 60, data: `192.0.2.${n}` }],
      });
      sock.send(out, r.port, r.address);
    });
    return { port: (sock.address() as { port: number }).port, fetches: () => n };
  }

  const server = (o: ConstructorParameters<typeof DnsServer>[0]): DnsServer => {
    const s = new DnsServer({ zone, rateLimit: false, ...o });
    closers.push(() => s.close());
    return s;
  };

  it('every fast-path key colliding: the same answers as with the real hash, over query() and the hostile sweep', async () => {
    // each its own upstream: both see the same sequence of fetches, so the same addresses
    const worst = server({ upstreams: [{ host: '127.0.0.1', port: (await upstream()).port }], queryHash: () => 0 });
    const real = server({ upstreams: [{ host: '127.0.0.1', port: (await upstream()).port }] });
    const msgs: [Buffer, 'udp' | 'tcp'][] = [];
    for (let i = 0; i < 20; i++) {
      for (const t of ['A', 'AAAA', 'TXT']) {
        msgs.push([q(`s${i}.default.svc.cluster.local`, t, i), i % 2 ? 'tcp' : 'udp']);
        msgs.push([q(`S${i}.Default.svc.cluster.local`, t, i, edns), 'udp']);
      }
      msgs.push([q(`x${i}.default.svc.cluster.local`, 'A', i), 'udp']);
      msgs.push([q(`f${i}.fwd.test`, 'A', i), 'udp']);
      msgs.push([q(`F${i}.fwd.test`, 'A', i, edns), 'tcp']);
    }
    // each asked three times (the first fills the fast paths, the others are served from them)
    for (let round = 0; round < 3; round++) {
      for (const [m, t] of msgs) {
        const a = await worst.query(m, t);
        expect(a!.equals((await real.query(m, t))!)).toBe(true);
        expect(decode(a).id).toBe(m.readUInt16BE(0));
      }
    }
    for (let i = 0; i < 1000; i++) {
      const m = hostile(i);
      const t = i % 2 ? 'tcp' : 'udp';
      const a = await worst.query(m, t);
      const b = await real.query(m, t);
      expect(a === null).toBe(b === null);
      if (a && b) expect(a.readUInt16BE(0)).toBe(b.readUInt16BE(0));
    }
    expect(worst.metrics.answered.zone).toBe(real.metrics.answered.zone);
    expect(worst.metrics.cache.hits).toBe(real.metrics.cache.hits);
  });

  it('over UDP with every key colliding: each reply is for its own query (cluster and forwarded names, several spellings)', async () => {
    const up = await upstream();
    const s = server({ upstreams: [{ host: '127.0.0.1', port: up.port }], queryHash: () => 0 });
    const port = testPort();
    expect(await s.setListeners([{ address: '127.0.0.1', port }])).toEqual([]);
    const c = dgram.createSocket('udp4');
    closers.push(() => void c.close());
    const replies = new Map<number, Reply>();
    c.on('message', (m) => replies.set(m.readUInt16BE(0), decode(m)));
    const ask = (i: number): [string, string] => {
      const k = i % 40;
      const spell = (n: string): string => (i % 3 === 0 ? n.toUpperCase() : i % 3 === 1 ? n : n[0].toUpperCase() + n.slice(1));
      return k < 20 ? [spell(`s${k}.default.svc.cluster.local`), `10.96.0.${k + 1}`] : [spell(`f${k}.fwd.test`), ''];
    };
    for (let w = 0; w < 600; w += 60) {
      for (let i = w; i < w + 60; i++) c.send(q(ask(i)[0], 'A', i), port, '127.0.0.1');
      for (let k = 0; k < 100 && replies.size < w + 60; k++) await new Promise((r) => setTimeout(r, 10));
    }
    expect(replies.size).toBe(600);
    const fwd = new Map<string, unknown>();
    for (let i = 0; i < 600; i++) {
      const r = replies.get(i)!;
      const [name, data] = ask(i);
      expect(r.questions[0].name).toBe(name);
      if (data) expect(r.answers[0].data).toBe(data);
      else {
        // one upstream answer per forwarded name, whatever the spelling
        const k = name.toLowerCase();
        if (!fwd.has(k)) fwd.set(k, r.answers[0].data);
        expect(r.answers[0].data).toBe(fwd.get(k));
      }
    }
    expect(up.fetches()).toBe(20);
  });

  it('UDP fast path of forwarded names: TTLs count down, the ID and spelling are the query’s, expiry and eviction fetch again', async () => {
    const up = await upstream();
    let now = 1_000_000;
    const s = server({ upstreams: [{ host: '127.0.0.1', port: up.port }], cacheSize: 1, now: () => now });
    const port = testPort();
    expect(await s.setListeners([{ address: '127.0.0.1', port }])).toEqual([]);
    const c = dgram.createSocket('udp4');
    closers.push(() => void c.close());
    const replies = new Map<number, Reply>();
    c.on('message', (m) => replies.set(m.readUInt16BE(0), decode(m)));
    let id = 0;
    const ask = async (name: string): Promise<Reply['answers'][0]> => {
      const mine = ++id;
      c.send(q(name, 'A', mine, edns), port, '127.0.0.1');
      for (let k = 0; k < 200 && !replies.has(mine); k++) await new Promise((r) => setTimeout(r, 5));
      const r = replies.get(mine)!;
      expect(r.id).toBe(mine);
      expect(r.questions[0].name).toBe(name);
      return r.answers[0];
    };
    expect(await ask('Ttl.fwd.test')).toMatchObject({ ttl: 60, data: '192.0.2.1' });
    expect(await ask('Ttl.fwd.test')).toMatchObject({ ttl: 60, data: '192.0.2.1' });
    now += 10_500;
    expect(await ask('Ttl.fwd.test')).toMatchObject({ ttl: 50, data: '192.0.2.1' });
    expect(await ask('Ttl.fwd.test')).toMatchObject({ ttl: 50, data: '192.0.2.1' });
    // the same entry for another spelling: its own question comes back, the TTL is the entry's
    expect(await ask('tTL.FWD.test')).toMatchObject({ ttl: 50, data: '192.0.2.1' });
    expect(await ask('tTL.FWD.test')).toMatchObject({ ttl: 50, data: '192.0.2.1' });
    expect(await ask('Ttl.fwd.test')).toMatchObject({ ttl: 50, data: '192.0.2.1' });
    now += 49_000;
    expect(await ask('Ttl.fwd.test')).toMatchObject({ ttl: 1, data: '192.0.2.1' });
    expect(up.fetches()).toBe(1);
    now += 1_000;
    expect(await ask('Ttl.fwd.test')).toMatchObject({ ttl: 60, data: '192.0.2.2' });
    expect(await ask('Ttl.fwd.test')).toMatchObject({ ttl: 60, data: '192.0.2.2' });
    expect(await ask('other.fwd.test')).toMatchObject({ data: '192.0.2.3' });
    expect(await ask('Ttl.fwd.test')).toMatchObject({ ttl: 60, data: '192.0.2.4' });
    expect(up.fetches()).toBe(4);
    // query() (TCP, cnictl) gets a copy: later UDP answers do not change it
    const viaQuery = await s.query(q('Ttl.fwd.test', 'A', 77, edns));
    const copy = Buffer.from(viaQuery!);
    await ask('TTL.fwd.test');
    expect(viaQuery!.equals(copy)).toBe(true);
    expect(s.metrics.cache.hits).toBe(10);
  });

  it('renderShared: one buffer per entry, TTLs rewritten when the age in seconds changes, from the original', () => {
    let now = 5_000_000;
    const c = new AnswerCache(10, 3600, () => now);
    const msg = dnsPacket.encode({
      id: 1,
      type: 'response',
      questions: [{ name: 'r.test', type: 'A' }],
      answers: [
        { name: 'r.test', type: 'A', ttl: 30, data: '192.0.2.1' },
        { name: 'r.test', type: 'A', ttl: 5, data: '192.0.2.2' },
      ],
    });
    c.put('r', msg, 5);
    const e = c.entry('r')!;
    const ttls = (b: Buffer): number[] => (dnsPacket.decode(b).answers as { ttl: number }[]).map((a) => a.ttl);
    const a = AnswerCache.renderShared(e, now);
    expect(ttls(a)).toEqual([30, 5]);
    now += 3_200;
    expect(AnswerCache.renderShared(e, now)).toBe(a);
    expect(ttls(a)).toEqual([27, 2]);
    expect(ttls(AnswerCache.render(e, now))).toEqual([27, 2]);
    now += 1_000;
    expect(ttls(AnswerCache.renderShared(e, now))).toEqual([26, 1]);
    // a clock that went back: the original TTLs
    expect(ttls(AnswerCache.renderShared(e, now - 10_000))).toEqual([30, 5]);
    expect(ttls(e.msg)).toEqual([30, 5]);
  });
});
