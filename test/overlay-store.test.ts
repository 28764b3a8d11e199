/**
 * The lease-store contract, run against both backends of the cluster store the leases live in
 * (SubnetLease objects): the file store and a real etcd (Debian's /usr/bin/etcd on 127.0.0.1
 * with random ports and a temp data dir). Then the previous version's layouts (its JSON lease
 * file, its `<prefix>/subnets/` etcd keys): still read, carried over on renewal.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { settingsOf, type StoreConf } from '../shared/overlay/config.ts';
import { acquireLease, nthSubnet, vtepMacFor } from '../shared/overlay/lease.ts';
import {
  leaseName,
  listLeases,
  openStore,
  storeLayoutOf,
  withDeadline,
  type ClusterLeaseStore,
  type Lease,
  type Store,
} from '../shared/overlay/store.ts';
import { Etcd3 } from 'etcd3';
import { validateObject } from '../shared/objects/validate.ts';
import { CniError } from '../shared/cni/errors.ts';
import { Cleanup } from './helpers/netns.ts';
import { uid, testPort } from './helpers/run.ts';
import { eventually, makeEtcd, type Etcd } from './overlay-topology.ts';

const cleanup = new Cleanup();
let dir = '';
let etcd: Etcd;
const prefix = `/cnits-test/${uid('')}`;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'ovs-ovlstore-'));
  cleanup.add(async () => rmSync(dir, { recursive: true, force: true }));
  const port = testPort();
  etcd = makeEtcd(cleanup, dir, undefined, '127.0.0.1', port, port + 1);
  await etcd.start();
}, 120_000);
afterAll(() => cleanup.run());

const NET = 'ovlstore';

const backends: Array<[string, () => StoreConf]> = [
  ['file', () => ({ type: 'file', path: path.join(dir, `${uid('s')}.json`) })],
  ['etcd', () => ({ type: 'etcd', endpoints: [etcd.endpoint], prefix: `${prefix}/${uid('')}` })],
];

const lease = (subnet: string, n: number): Lease => ({ subnet, publicIP: `192.0.2.${n}`, vtepMAC: vtepMacFor(`192.0.2.${n}`, 1) });

describe.each(backends)('overlay store contract: %s', (_kind, confOf) => {
  let conf: StoreConf;
  const open: Store[] = [];
  const mk = async (): Promise<ClusterLeaseStore> => {
    const s = await openStore(conf, NET);
    open.push(s);
    return s;
  };
  beforeAll(() => {
    conf = confOf();
  });
  afterAll(async () => {
    for (const s of open) await s.close();
  });

  it('creates a free subnet once; a second holder is refused', async () => {
    const a = await mk();
    const b = await mk();
    expect(await a.create(lease('10.50.1.0/24', 1), 60)).toBe(true);
    expect(await b.create(lease('10.50.1.0/24', 2), 60)).toBe(false);
    expect(await listLeases(b, {})).toContainEqual(lease('10.50.1.0/24', 1));
  });

  it('renews only for the holder, and updates its fields', async () => {
    const a = await mk();
    expect(await a.create(lease('10.50.2.0/24', 1), 60)).toBe(true);
    expect(await a.renew(lease('10.50.2.0/24', 2), 60)).toBe(false);
    const moved = { ...lease('10.50.2.0/24', 1), vtepMAC: '02:00:00:00:00:99' };
    expect(await a.renew(moved, 60)).toBe(true);
    expect((await listLeases(a, {})).find((l) => l.subnet === '10.50.2.0/24')?.vtepMAC).toBe('02:00:00:00:00:99');
    expect(await a.renew(lease('10.50.99.0/24', 1), 60)).toBe(false);
  });

  it('releases only for the holder', async () => {
    const a = await mk();
    expect(await a.create(lease('10.50.3.0/24', 1), 60)).toBe(true);
    await a.release('10.50.3.0/24', '192.0.2.2');
    expect((await listLeases(a, {})).some((l) => l.subnet === '10.50.3.0/24')).toBe(true);
    await a.release('10.50.3.0/24', '192.0.2.1');
    expect((await listLeases(a, {})).some((l) => l.subnet === '10.50.3.0/24')).toBe(false);
    expect(await a.create(lease('10.50.3.0/24', 2), 60)).toBe(true);
  });

  it('expires a lease that is not renewed, and the subnet becomes free', async () => {
    const a = await mk();
    expect(await a.create(lease('10.50.4.0/24', 1), 2)).toBe(true);
    const gone = await eventually(async () => !(await listLeases(a, {})).some((l) => l.subnet === '10.50.4.0/24'), 40, 250);
    expect(gone).toBe(true);
    expect(await a.renew(lease('10.50.4.0/24', 1), 2)).toBe(false);
    expect(await a.create(lease('10.50.4.0/24', 2), 60)).toBe(true);
  });

  it('lets exactly one of many concurrent creators win a subnet', async () => {
    const stores = await Promise.all(Array.from({ length: 6 }, () => mk()));
    const won = await Promise.all(stores.map((s, i) => s.create(lease('10.50.5.0/24', i + 10), 60)));
    expect(won.filter(Boolean)).toHaveLength(1);
  });

  it('tells watchers about changes', async () => {
    const a = await mk();
    const b = await mk();
    let seen = 0;
    const stop = await a.watch(() => seen++);
    await b.create(lease('10.50.6.0/24', 3), 60);
    expect(await eventually(async () => seen > 0, 40, 100)).toBe(true);
    stop();
  });

  it('keeps networks apart: one subnet can be leased in two networks of one store', async () => {
    const a = await mk();
    const other = await openStore(conf, `${NET}-b`);
    open.push(other);
    expect(await a.create(lease('10.50.7.0/24', 1), 60)).toBe(true);
    expect(await other.create(lease('10.50.7.0/24', 2), 60)).toBe(true);
    expect((await listLeases(a, {})).filter((l) => l.subnet === '10.50.7.0/24')).toEqual([lease('10.50.7.0/24', 1)]);
    expect((await listLeases(other, {})).filter((l) => l.subnet === '10.50.7.0/24')).toEqual([lease('10.50.7.0/24', 2)]);
  });

  it('stores SubnetLease objects; a renewal soon after the last write writes nothing, a changed field does', async () => {
    const a = await mk();
    expect(await a.create(lease('10.50.8.0/24', 1), 60)).toBe(true);
    const ref = { kind: 'SubnetLease' as const, namespace: '', name: leaseName(NET, '10.50.8.0/24') };
    const first = await a.objects.get(ref);
    expect(first?.object).toMatchObject({
      apiVersion: 'cni-ts.dev/v1',
      kind: 'SubnetLease',
      spec: { network: NET, subnet: '10.50.8.0/24', publicIP: '192.0.2.1', expires: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) },
    });
    // the shape `cnictl apply` accepts for the kind
    expect(validateObject(JSON.parse(JSON.stringify(first?.object)))).toEqual([]);
    expect(await a.renew(lease('10.50.8.0/24', 1), 60)).toBe(true);
    expect((await a.objects.get(ref))?.revision).toBe(first?.revision);
    expect(await a.renew({ ...lease('10.50.8.0/24', 1), hostname: 'moved' }, 60)).toBe(true);
    expect((await a.objects.get(ref))?.revision).toBeGreaterThan(first!.revision);
  });

  it('wakes watchers when a lease expires (no store event for that)', async () => {
    const a = await mk();
    expect(await a.create(lease('10.50.9.0/24', 1), 2)).toBe(true);
    let seen = 0;
    const stop = await a.watch(() => seen++);
    try {
      expect(await eventually(async () => seen > 0, 40, 100)).toBe(true);
    } finally {
      stop();
    }
  });

  it('prunes expired leases of its own network only', async () => {
    const a = await mk();
    const other = await openStore(conf, `${NET}-p`);
    open.push(other);
    expect(await a.create(lease('10.50.10.0/24', 1), 2)).toBe(true);
    expect(await a.create(lease('10.50.11.0/24', 1), 60)).toBe(true);
    expect(await other.create(lease('10.50.10.0/24', 2), 2)).toBe(true);
    await new Promise((r) => setTimeout(r, 2200));
    expect(await a.prune()).toContain('10.50.10.0/24');
    const names = (await a.objects.list('SubnetLease')).items.map((s) => s.object.metadata.name);
    expect(names).not.toContain(leaseName(NET, '10.50.10.0/24'));
    expect(names).toContain(leaseName(NET, '10.50.11.0/24'));
    expect(names).toContain(leaseName(`${NET}-p`, '10.50.10.0/24'));
  });

  it('hands concurrent hosts distinct subnets, and a restarted host its own again', async () => {
    const base = { name: 'ovlstore', type: 'overlay', network: '10.60.0.0/22', subnetLen: 26, store: conf, leaseTTL: 60 };
    const hosts = Array.from({ length: 8 }, (_, i) => ({ publicIP: `198.51.100.${i + 1}`, vtepMAC: vtepMacFor(`198.51.100.${i + 1}`, 1) }));
    const got = await Promise.all(
      hosts.map(async (h, i) => {
        const s = settingsOf({ ...base, stateDir: path.join(dir, `acq-${_kind}-${i}`) });
        const st = await mk();
        return acquireLease(st, s, h, await listLeases(st, {}));
      }),
    );
    expect(new Set(got.map((l) => l.subnet)).size).toBe(8);
    const s0 = settingsOf({ ...base, stateDir: path.join(dir, `acq-${_kind}-0`) });
    const st = await mk();
    const again = await acquireLease(st, s0, hosts[0], await listLeases(st, {}));
    expect(again.subnet).toBe(got[0].subnet);
    // A full pool: 16 /26 in a /22; 8 taken, so 8 more fit and the 17th host is refused.
    const more = [];
    for (let i = 0; i < 8; i++) {
      const h = { publicIP: `198.51.100.${i + 50}`, vtepMAC: vtepMacFor(`198.51.100.${i + 50}`, 1) };
      more.push(
        await acquireLease(st, settingsOf({ ...base, stateDir: path.join(dir, `acq2-${_kind}-${i}`) }), h, await listLeases(st, {})),
      );
    }
    expect(new Set([...got, ...more].map((l) => l.subnet)).size).toBe(16);
    const late = { publicIP: '198.51.100.200', vtepMAC: vtepMacFor('198.51.100.200', 1) };
    await expect(
      acquireLease(st, settingsOf({ ...base, stateDir: path.join(dir, `acq3-${_kind}`) }), late, await listLeases(st, {})),
    ).rejects.toMatchObject({ code: 103 });
  });
});

describe('overlay store: unreachable etcd', () => {
  it('fails with code 11 (try again later) within the deadline', async () => {
    const st = await openStore({ type: 'etcd', endpoints: ['127.0.0.1:1'], prefix: '/cnits-none' }, NET);
    try {
      const err = await withDeadline('list', 3000, () => st.list()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CniError);
      expect((err as CniError).code).toBe(11);
    } finally {
      await st.close();
    }
  });
  it('lists subnets of a cluster network in order', () => {
    const s = settingsOf({ name: 'x', network: '10.70.0.0/16', store: { type: 'file', path: '/x' } });
    expect(nthSubnet(s.network, 24, 0)).toBe('10.70.0.0/24');
    expect(nthSubnet(s.network, 24, 255)).toBe('10.70.255.0/24');
  });
});

describe("overlay store: the previous version's layouts", () => {
  const acquire = async (st: Store, i: number, h: { publicIP: string; vtepMAC: string }, conf: Record<string, unknown>): Promise<Lease> =>
    acquireLease(
      st,
      settingsOf({
        name: NET,
        type: 'overlay',
        network: '10.51.0.0/16',
        store: conf as never,
        leaseTTL: 60,
        stateDir: path.join(dir, uid(`leg${i}`)),
      }),
      h,
      await listLeases(st, {}),
    );

  it('maps the store key: a .json path (or an existing file) is the old lease file, other paths a store directory, etcd prefixes stay', () => {
    expect(storeLayoutOf({ type: 'file', path: '/v/leases.json' })).toEqual({
      config: { type: 'file', path: '/v/leases.json.d' },
      legacy: { type: 'file', path: '/v/leases.json' },
    });
    expect(storeLayoutOf({ type: 'file', path: dir })).toEqual({ config: { type: 'file', path: dir } });
    const jsonDir = path.join(dir, 'adir.json');
    mkdirSync(jsonDir);
    expect(storeLayoutOf({ type: 'file', path: jsonDir })).toEqual({ config: { type: 'file', path: jsonDir } });
    const plain = path.join(dir, 'plainfile');
    writeFileSync(plain, '{"leases":{}}');
    expect(storeLayoutOf({ type: 'file', path: plain }).legacy).toEqual({ type: 'file', path: plain });
    expect(storeLayoutOf({ type: 'etcd', endpoints: ['h:2379'] })).toEqual({
      config: { type: 'etcd', endpoints: ['h:2379'] },
      legacy: { type: 'etcd', dir: '/cni-ts/overlay/subnets/' },
    });
    expect(storeLayoutOf({ type: 'etcd', endpoints: ['h:2379'], prefix: '/x/' })).toEqual({
      config: { type: 'etcd', endpoints: ['h:2379'], prefix: '/x/' },
      legacy: { type: 'etcd', dir: '/x/subnets/' },
    });
  });

  it('file: the old lease file is read, its holder keeps its subnet and carries it over, others see it taken; the file is never written', async () => {
    const file = path.join(dir, `${uid('old')}.json`);
    const old = (subnet: string, n: number, expires = Date.now() + 600_000): Record<string, unknown> => ({ ...lease(subnet, n), expires });
    writeFileSync(
      file,
      JSON.stringify({
        leases: {
          '10.51.1.0/24': old('10.51.1.0/24', 1),
          '10.51.2.0/24': old('10.51.2.0/24', 2),
          '10.51.3.0/24': old('10.51.3.0/24', 3, Date.now() - 1000),
        },
      }),
    );
    const before = readFileSync(file, 'utf8');
    const conf = { type: 'file' as const, path: file };
    const st = await openStore(conf, NET);
    try {
      expect((await listLeases(st, {})).map((l) => l.subnet).sort()).toEqual(['10.51.1.0/24', '10.51.2.0/24']);
      // taken by a host of the old layout; the expired one is free
      expect(await st.create(lease('10.51.1.0/24', 9), 60)).toBe(false);
      expect(await st.create(lease('10.51.3.0/24', 9), 60)).toBe(true);
      // host 1 upgrades: same subnet, now an object in the store directory
      expect((await acquire(st, 1, lease('', 1), conf)).subnet).toBe('10.51.1.0/24');
      expect(existsSync(path.join(`${file}.d`, 'objects.json'))).toBe(true);
      const got = await listLeases(st, {});
      expect(got.map((l) => `${l.subnet} ${l.publicIP}`).sort()).toEqual([
        '10.51.1.0/24 192.0.2.1',
        '10.51.2.0/24 192.0.2.2',
        '10.51.3.0/24 192.0.2.9',
      ]);
      // a new host never gets a subnet the old file still leases
      const fresh = await acquire(st, 4, lease('', 4), conf);
      expect(['10.51.1.0/24', '10.51.2.0/24', '10.51.3.0/24']).not.toContain(fresh.subnet);
      expect(readFileSync(file, 'utf8')).toBe(before);
    } finally {
      await st.close();
    }
  });

  it('etcd: old keys <prefix>/subnets/* (and the default /cni-ts/overlay) are read and carried over on renewal', async () => {
    const client = new Etcd3({ hosts: etcd.endpoint });
    try {
      for (const p of [`${prefix}/old-${uid('')}`, undefined]) {
        const dirKey = `${p ?? '/cni-ts/overlay'}/subnets/`;
        await client.put(`${dirKey}10.51.1.0-24`).value(JSON.stringify({ publicIP: '192.0.2.1', vtepMAC: vtepMacFor('192.0.2.1', 1) }));
        await client.put(`${dirKey}10.51.2.0-24`).value(JSON.stringify({ publicIP: '192.0.2.2', vtepMAC: vtepMacFor('192.0.2.2', 1) }));
        await client.put(`${dirKey}10.51.5.0-24`).value('{"publicIP": "127.0.0.1", "vtepMAC": "zz"}');
        const conf = { type: 'etcd' as const, endpoints: [etcd.endpoint], ...(p ? { prefix: p } : {}) };
        const st = await openStore(conf, NET);
        try {
          expect((await listLeases(st, {})).map((l) => l.subnet).sort()).toEqual(['10.51.1.0/24', '10.51.2.0/24']);
          expect(await st.create(lease('10.51.2.0/24', 9), 60)).toBe(false);
          expect((await acquire(st, 1, lease('', 1), conf)).subnet).toBe('10.51.1.0/24');
          const moved = await client.get(`${p ?? '/cni-ts'}/SubnetLease/${leaseName(NET, '10.51.1.0/24')}`).string();
          expect(JSON.parse(moved ?? '{}')).toMatchObject({ kind: 'SubnetLease', spec: { network: NET, publicIP: '192.0.2.1' } });
          const fresh = await acquire(st, 4, lease('', 4), conf);
          expect(['10.51.1.0/24', '10.51.2.0/24']).not.toContain(fresh.subnet);
          expect((await listLeases(st, {})).map((l) => l.subnet).sort()).toEqual(['10.51.1.0/24', '10.51.2.0/24', fresh.subnet].sort());
        } finally {
          await st.close();
        }
      }
    } finally {
      client.close();
    }
  });
});
