/**
 * overlay against hostile or broken store content and a lost lease (issue 10 items 1, 6, 7,
 * 10; issue 21's error naming), on the real kernel: hosts are network namespaces on a fabric
 * bridge, the plugin runs inside them as a runtime would, the store is the cluster store's file
 * backend (SubnetLease objects; one case reads the previous version's JSON lease file).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vtepMacFor } from '../shared/overlay/lease.ts';
import { leaseName, openStore } from '../shared/overlay/store.ts';
import { FileStore as ObjectFileStore } from '../shared/store/file.ts';
import type { CniObject, SubnetLease } from '../shared/objects/types.ts';
import { Cleanup, inNs, makeNetns, type TestNetns } from './helpers/netns.ts';
import { uid } from './helpers/run.ts';
import { eventually, makeFabric, makeHost, runOnHost, startAgent, type Fabric, type Host } from './overlay-topology.ts';

const cleanup = new Cleanup();
let fab: Fabric;
let n = 0;
beforeAll(async () => {
  fab = await makeFabric(cleanup, '192.168.232', 'ho-fab');
}, 60_000);
afterAll(() => cleanup.run(), 120_000);

interface Net {
  host: Host;
  store: string;
  cfg: (extra?: Record<string, unknown>) => Record<string, unknown>;
}

/**
 * A fresh host with its own file store (a cluster store directory; `legacy`: the previous
 * version's JSON lease file) and cluster network 10.<second>.0.0/16.
 */
async function net(second: number, legacy = false): Promise<Net> {
  const host = await makeHost(cleanup, fab, ++n, 'ho-h');
  const store = path.join(fab.dir, legacy ? `ho-leases-${second}.json` : `ho-store-${second}`);
  const cfg = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    cniVersion: '1.1.0',
    name: 'hotest',
    type: 'overlay',
    network: `10.${second}.0.0/16`,
    stateDir: host.stateDir,
    nftTable: 'ho_ovl',
    leaseTTL: 120,
    resyncInterval: 1,
    store: { type: 'file', path: store },
    ...extra,
  });
  return { host, store, cfg };
}

const expiresSoon = (): string => new Date(Date.now() + 600_000).toISOString();
const peer = (subnet: string, ip: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  network: 'hotest',
  subnet,
  publicIP: ip,
  vtepMAC: vtepMacFor(ip, 1),
  expires: expiresSoon(),
  ...extra,
});
/** Write lease objects as another (possibly hostile) host would: straight into the cluster store, unchecked. */
const writeStore = async (dir: string, leases: Record<string, Record<string, unknown>>): Promise<void> => {
  const st = new ObjectFileStore(dir);
  for (const [subnet, spec] of Object.entries(leases))
    await st.put({
      apiVersion: 'cni-ts.dev/v1',
      kind: 'SubnetLease',
      metadata: { name: leaseName('hotest', subnet) },
      spec,
    } as unknown as CniObject);
};
const leaseObject = async (dir: string, subnet: string): Promise<SubnetLease | undefined> =>
  (await new ObjectFileStore(dir).get<SubnetLease>({ kind: 'SubnetLease', namespace: '', name: leaseName('hotest', subnet) }))?.object;

interface Pod {
  ns: TestNetns;
  id: string;
  ip: string;
  result: Record<string, unknown>;
}

async function add(nt: Net): Promise<{ r: Awaited<ReturnType<typeof runOnHost>>; pod?: Pod }> {
  const ns = await makeNetns(cleanup, 'ho-p');
  const id = uid('ho');
  const r = await runOnHost(nt.host, { command: 'ADD', containerId: id, netns: ns.path, ifname: 'eth0', config: nt.cfg() });
  if (r.exitCode !== 0) return { r };
  cleanup.add(() => runOnHost(nt.host, { command: 'DEL', containerId: id, netns: ns.path, ifname: 'eth0', config: nt.cfg() }));
  const ip = String((r.json?.ips as Array<{ address: string }>)[0].address).split('/')[0];
  return { r, pod: { ns, id, ip, result: r.json! } };
}

const subnetOfIP = (ip: string): string => `${ip.split('.').slice(0, 3).join('.')}.0/24`;

async function vxRoutes(h: Host): Promise<string[]> {
  const r = await inNs(h.ns, 'ip', ['-json', 'route', 'show', 'dev', 'ovl.1'], true);
  return r.exitCode === 0 ? (JSON.parse(r.stdout || '[]') as Array<{ dst: string }>).map((x) => x.dst).sort() : [];
}
async function fdb(h: Host): Promise<Array<{ mac: string; dst?: string }>> {
  const r = await inNs(h.ns, 'bridge', ['-json', 'fdb', 'show', 'dev', 'ovl.1'], true);
  return r.exitCode === 0 ? (JSON.parse(r.stdout || '[]') as Array<{ mac: string; dst?: string }>) : [];
}
async function bridgeAddrs(h: Host): Promise<string[]> {
  const r = await inNs(h.ns, 'ip', ['-json', '-4', 'addr', 'show', 'dev', 'ovl0'], true);
  if (r.exitCode !== 0) return [];
  return (JSON.parse(r.stdout || '[]') as Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>).flatMap((l) =>
    l.addr_info.map((a) => `${a.local}/${a.prefixlen}`),
  );
}
/** The device the host routes `subnet` through. */
async function routeDev(h: Host, subnet: string): Promise<string[]> {
  const r = await inNs(h.ns, 'ip', ['-json', 'route', 'show', 'match', subnet.replace(/\/24$/, '/32').replace(/\.0\/32$/, '.5/32')], true);
  return (JSON.parse(r.stdout || '[]') as Array<{ dst: string; dev: string }>)
    .filter((x) => x.dst !== 'default')
    .map((x) => `${x.dst} ${x.dev}`);
}

describe('overlay: hostile and malformed leases (issue 10 item 1)', { timeout: 120_000 }, () => {
  it('a lease whose publicIP smuggles a second bridge command is skipped: no flood entry, valid peers still installed, ADD succeeds', async () => {
    const nt = await net(216);
    const hostile = '192.168.77.66 self permanent\nfdb append 00:00:00:00:00:00 dev ovl.1 dst 192.168.77.66 self permanent';
    await writeStore(nt.store, {
      '10.216.9.0/24': peer('10.216.9.0/24', '192.168.232.66', { publicIP: hostile }),
      '10.216.7.0/24': peer('10.216.7.0/24', '192.168.232.77'),
    });
    const { r } = await add(nt);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    const entries = await fdb(nt.host);
    expect(entries.filter((e) => e.mac === '00:00:00:00:00:00')).toEqual([]);
    expect(entries.filter((e) => e.dst === '192.168.77.66')).toEqual([]);
    expect(await vxRoutes(nt.host)).toEqual(['10.216.7.0/24']);
    expect(r.stderr).toMatch(/ignoring invalid lease for "10.216.9.0\/24"/);
  });

  it('a lease with vtepMAC "zz:zz:zz" is skipped: ADD succeeds and the agent keeps converging new peers', async () => {
    const nt = await net(217);
    await writeStore(nt.store, { '10.217.8.0/24': peer('10.217.8.0/24', '192.168.232.88', { vtepMAC: 'zz:zz:zz' }) });
    const { r } = await add(nt);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(await vxRoutes(nt.host)).toEqual([]);
    const agent = startAgent(cleanup, nt.host, { cniVersion: '1.1.0', name: 'hotest', plugins: [nt.cfg()] });
    // A host joining later (written through the store's own lock) is picked up by the agent.
    const joining = await openStore({ type: 'file', path: nt.store }, 'hotest');
    expect(
      await joining.create({ subnet: '10.217.6.0/24', publicIP: '192.168.232.89', vtepMAC: vtepMacFor('192.168.232.89', 1) }, 120),
    ).toBe(true);
    await joining.close();
    const ok = await eventually(async () => (await vxRoutes(nt.host)).includes('10.217.6.0/24'), 40);
    if (!ok) console.log(agent.log());
    expect(ok).toBe(true);
    await agent.stop();
    // logged once per lease content, not once per pass
    expect(agent.log().match(/ignoring invalid lease/g) ?? []).toHaveLength(1);
  });
});

describe('overlay: malformed lease file and expiries (issue 10 item 7)', { timeout: 120_000 }, () => {
  it('a previous version\'s lease file with {"leases": [...]} or null entries fails ADD with code 5 naming the file, and the file is left as it was', async () => {
    const nt = await net(219, true);
    const old = { ...peer('10.219.7.0/24', '192.168.232.77'), expires: Date.now() + 600_000 };
    for (const content of [{ leases: [old] }, { leases: { '10.219.7.0/24': null } }]) {
      writeFileSync(nt.store, JSON.stringify(content));
      const before = readFileSync(nt.store, 'utf8');
      const { r } = await add(nt);
      expect(r.json, r.stdout).toMatchObject({ code: 5, msg: expect.stringContaining(nt.store) });
      expect(readFileSync(nt.store, 'utf8')).toBe(before);
    }
  });

  it('a lease whose expires is no timestamp or lies beyond the longest TTL is treated as expired: never routed', async () => {
    const nt = await net(220);
    await writeStore(nt.store, {
      '10.220.7.0/24': peer('10.220.7.0/24', '192.168.232.77', { expires: '99999999999999999' }),
      '10.220.8.0/24': peer('10.220.8.0/24', '192.168.232.78', { expires: '9999-12-31T00:00:00Z' }),
      '10.220.9.0/24': peer('10.220.9.0/24', '192.168.232.79'),
    });
    const { r } = await add(nt);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(await vxRoutes(nt.host)).toEqual(['10.220.9.0/24']);
  });
});

describe("overlay: upgrading from the previous version's lease file", { timeout: 120_000 }, () => {
  it("a host keeps the subnet its old lease file gives it, routes the old file's peers, and carries its lease into the cluster store", async () => {
    const nt = await net(222, true);
    const old = (subnet: string, ip: string): Record<string, unknown> => ({
      subnet,
      publicIP: ip,
      vtepMAC: vtepMacFor(ip, 1),
      expires: Date.now() + 600_000,
    });
    writeFileSync(
      nt.store,
      JSON.stringify({
        leases: { '10.222.77.0/24': old('10.222.77.0/24', nt.host.ip), '10.222.78.0/24': old('10.222.78.0/24', '192.168.232.78') },
      }),
    );
    const before = readFileSync(nt.store, 'utf8');
    const { r, pod } = await add(nt);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(subnetOfIP(pod!.ip)).toBe('10.222.77.0/24');
    expect(await vxRoutes(nt.host)).toEqual(['10.222.78.0/24']);
    expect((await leaseObject(`${nt.store}.d`, '10.222.77.0/24'))?.spec).toMatchObject({ network: 'hotest', publicIP: nt.host.ip });
    expect(readFileSync(nt.store, 'utf8')).toBe(before);
  });
});

describe('overlay: a host that lost its lease (issue 10 item 6)', { timeout: 120_000 }, () => {
  it('with pods on the old subnet: ADD fails 11, STATUS 50, the subnet stays on the bridge; once they are gone it renumbers cleanly', async () => {
    const nt = await net(218);
    const first = await add(nt);
    expect(first.r.exitCode, first.r.stdout + first.r.stderr).toBe(0);
    const old = subnetOfIP(first.pod!.ip);
    const oldGw = `${old.replace(/0\/24$/, '1')}/24`;
    expect(await bridgeAddrs(nt.host)).toContain(oldGw);
    // The lease is lost (expired while the host was cut off) and another host took the subnet.
    await writeStore(nt.store, { [old]: peer(old, '192.168.232.99') });

    const second = await add(nt);
    expect(second.r.json, second.r.stdout + second.r.stderr).toMatchObject({ code: 11, msg: expect.stringMatching(/lost its lease/) });
    expect(second.r.stderr).toMatch(/LEASE LOST/);
    const st = await runOnHost(nt.host, { command: 'STATUS', config: nt.cfg() });
    expect(st.json, st.stdout).toMatchObject({ code: 50 });
    const chk = await runOnHost(nt.host, {
      command: 'CHECK',
      containerId: first.pod!.id,
      netns: first.pod!.ns.path,
      ifname: 'eth0',
      config: { ...nt.cfg(), prevResult: first.pod!.result },
    });
    expect(chk.exitCode).not.toBe(0);
    // Never routed into the VXLAN: the bridge keeps its connected route, the store is unchanged.
    expect(await vxRoutes(nt.host)).toEqual([]);
    expect(await routeDev(nt.host, old)).toEqual([`${old} ovl0`]);
    expect(await bridgeAddrs(nt.host)).toContain(oldGw);
    expect((await leaseObject(nt.store, old))?.spec.publicIP).toBe('192.168.232.99');

    // The pod goes: the host may renumber, and the old subnet then belongs to its new holder.
    const del = await runOnHost(nt.host, {
      command: 'DEL',
      containerId: first.pod!.id,
      netns: first.pod!.ns.path,
      ifname: 'eth0',
      config: nt.cfg(),
    });
    expect(del.exitCode, del.stdout).toBe(0);
    const third = await add(nt);
    expect(third.r.exitCode, third.r.stdout + third.r.stderr).toBe(0);
    const now = subnetOfIP(third.pod!.ip);
    expect(now).not.toBe(old);
    expect(await bridgeAddrs(nt.host)).toEqual([`${now.replace(/0\/24$/, '1')}/24`]);
    expect(await vxRoutes(nt.host)).toEqual([old]);
    const st2 = await runOnHost(nt.host, { command: 'STATUS', config: nt.cfg() });
    expect(st2.exitCode, st2.stdout).toBe(0);
  });
});

describe('overlay: errors name the plugin the runtime called, once (issue 10 item 10, issue 21)', { timeout: 120_000 }, () => {
  it('CHECK without prevResult is refused by the engine (7), a delegate failure reads "overlay: <cause>"', async () => {
    const nt = await net(221);
    const { r, pod } = await add(nt);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    const base = { containerId: pod!.id, netns: pod!.ns.path, ifname: 'eth0' };
    const noPrev = await runOnHost(nt.host, { command: 'CHECK', ...base, config: nt.cfg() });
    expect(noPrev.json).toMatchObject({ code: 7, msg: 'invalid network config: prevResult: is required for CHECK' });
    // The address reservation disappears: host-local's CHECK fails, through bridge, through overlay.
    const { rmSync } = await import('node:fs');
    rmSync(path.join(nt.host.stateDir, 'ipam', 'hotest', pod!.ip));
    const c = await runOnHost(nt.host, { command: 'CHECK', ...base, config: { ...nt.cfg(), prevResult: pod!.result } });
    expect(c.exitCode).toBe(1);
    const msg = String(c.json?.msg);
    expect(msg, c.stdout).toMatch(/^overlay: /);
    expect(msg).not.toMatch(/bridge:|host-local:/);
    expect(String(c.json?.details)).toMatch(/^via bridge > host-local/);
    // and with out-of-process delegation the same message
    const c2 = await runOnHost(nt.host, {
      command: 'CHECK',
      ...base,
      config: { ...nt.cfg(), prevResult: pod!.result },
      env: { CNI_TS_NO_INPROCESS: '1' },
    });
    expect(c2.json?.msg).toBe(msg);
  });
});
