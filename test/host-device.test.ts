/**
 * host-device: the built executable run as a runtime runs it, on devices this kernel can make
 * (veth ends, macvlan on a test veth, tap), in namespaces the tests create. Plus the pure
 * config/record logic as unit tests.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { selectorOf, type HostDeviceConf } from '../plugins/host-device/config.ts';
import { containerCommands, missingRoutes, restoreCommands } from '../plugins/host-device/device.ts';
import { attachmentKey, decodeAlias, encodeAlias, transitName, type DeviceRecord } from '../plugins/host-device/record.ts';
import { CniError } from '../shared/cni/errors.ts';
import { Cleanup, inNs, makeNetns, sh, type TestNetns } from './helpers/netns.ts';
import { BIN, REF_BIN, runPlugin, uid } from './helpers/run.ts';

interface Link {
  ifindex: number;
  ifname: string;
  flags: string[];
  mtu: number;
  address: string;
  ifalias?: string;
  addr_info?: Array<{ family: string; local: string; prefixlen: number; scope: string }>;
  linkinfo?: { info_kind?: string };
}

const cleanup = new Cleanup();
afterEach(async () => cleanup.run());

async function links(ns?: TestNetns | string): Promise<Link[]> {
  const args = ['-json', '-details', 'addr', 'show'];
  const r = ns ? await inNs(ns, 'ip', args) : await sh('ip', args);
  return JSON.parse(r.stdout || '[]') as Link[];
}
const link = async (name: string, ns?: TestNetns | string): Promise<Link | undefined> => (await links(ns)).find((l) => l.ifname === name);
const globalAddrs = (l: Link | undefined): string[] =>
  (l?.addr_info ?? [])
    .filter((a) => a.scope !== 'link')
    .map((a) => `${a.local}/${a.prefixlen}`)
    .sort();

/** Remove every host link this test made, under whatever name it carries now (prefix or alias). */
function cleanLinksOnExit(prefix: string): void {
  cleanup.add(async () => {
    for (const l of await links()) {
      if (l.ifname.startsWith(prefix) || (l.ifalias ?? '').includes(`;n=${prefix}`))
        await sh('ip', ['link', 'del', 'dev', l.ifname], { allowFail: true });
    }
  });
}

interface Setup {
  p: string;
  dataDir: string;
  ctr: TestNetns;
  /** subnet octets unique to the test: 10.a.b.0/24 */
  net: string;
}

async function setup(): Promise<Setup> {
  const p = uid('hd');
  cleanLinksOnExit(p);
  const dataDir = `/run/cnits-${p}`;
  cleanup.add(async () => rmSync(dataDir, { recursive: true, force: true }));
  const ctr = await makeNetns(cleanup, `cnits-${p}-c`);
  const n = Number.parseInt(p.slice(2), 16);
  return { p, dataDir, ctr, net: `10.${200 + (n % 50)}.${(n >> 8) % 256}` };
}

/** Two IPv6 groups unique to the test, in canonical spelling (no leading zeros). */
const v6mid = (s: Setup): string =>
  `${Number.parseInt(s.p.slice(2, 6), 16).toString(16)}:${Number.parseInt(s.p.slice(6), 16).toString(16)}`;

/** A veth pair: `<p>h` on the host (the device to hand over), `<p>p` in a peer netns with .2. */
async function vethWithPeer(
  s: Setup,
  opts: { mtu?: number; mac?: string; hostAddr?: string; hostAddr6?: string } = {},
): Promise<{ dev: string; peer: TestNetns }> {
  const peer = await makeNetns(cleanup, `cnits-${s.p}-p`);
  const dev = `${s.p}h`;
  await sh('ip', [
    'link',
    'add',
    dev,
    ...(opts.mtu ? ['mtu', String(opts.mtu)] : []),
    ...(opts.mac ? ['address', opts.mac] : []),
    'type',
    'veth',
    'peer',
    'name',
    `${s.p}p`,
    ...(opts.mtu ? ['mtu', String(opts.mtu)] : []),
    'netns',
    peer.path,
  ]);
  if (opts.hostAddr) await sh('ip', ['addr', 'add', opts.hostAddr, 'dev', dev]);
  if (opts.hostAddr6) await sh('ip', ['addr', 'add', opts.hostAddr6, 'dev', dev, 'nodad']);
  await sh('ip', ['link', 'set', dev, 'up']);
  await inNs(peer, 'ip', ['addr', 'add', `${s.net}.2/24`, 'dev', `${s.p}p`]);
  await inNs(peer, 'ip', ['link', 'set', `${s.p}p`, 'up']);
  return { dev, peer };
}

const conf = (s: Setup, extra: Record<string, unknown>, version = '1.1.0'): HostDeviceConf =>
  ({ cniVersion: version, name: `net-${s.p}`, type: 'host-device', dataDir: s.dataDir, ...extra }) as HostDeviceConf;

const staticIpam = (s: Setup): Record<string, unknown> => ({
  type: 'static',
  addresses: [{ address: `${s.net}.1/24`, gateway: `${s.net}.2` }],
  routes: [{ dst: '198.51.100.0/24' }],
  dns: { nameservers: [`${s.net}.53`] },
});

/** A CNI_PATH with the reference IPAM plugin `type` first, then ours. */
async function refIpamPath(s: Setup, type: string): Promise<string> {
  const dir = `/run/cnits-${s.p}-path`;
  mkdirSync(dir, { recursive: true });
  cleanup.add(async () => rmSync(dir, { recursive: true, force: true }));
  await sh('ln', ['-sf', `${REF_BIN}/${type}`, `${dir}/${type}`]);
  return `${dir}:${BIN}`;
}

function verb(
  s: Setup,
  command: string,
  config: unknown,
  o: { cid?: string; ifname?: string; netns?: string; path?: string; binDir?: string } = {},
): ReturnType<typeof runPlugin> {
  return runPlugin('host-device', {
    command,
    containerId: o.cid ?? `${s.p}-ctr`,
    netns: o.netns ?? s.ctr.path,
    ifname: o.ifname ?? 'net1',
    config,
    path: o.path,
    binDir: o.binDir,
  });
}

describe('host-device config and records (pure)', () => {
  const c = (x: Record<string, unknown>): HostDeviceConf => ({ name: 'n', ...x }) as HostDeviceConf;
  const code = (fn: () => unknown): string => {
    try {
      fn();
    } catch (e) {
      if (e instanceof CniError) return `${e.code} ${e.message}`;
      throw e;
    }
    return 'ok';
  };
  it('needs exactly one selector; runtimeConfig.deviceID replaces it (PCI address or name)', () => {
    expect(code(() => selectorOf(c({})))).toMatch(/^7 .*specify exactly one/);
    expect(code(() => selectorOf(c({ device: 'a', hwaddr: '02:00:00:00:00:01' })))).toMatch(
      /^7 invalid network config: hwaddr: only one selector/,
    );
    expect(code(() => selectorOf(c({ kernelpath: '/etc' })))).toMatch(/^7 invalid network config: kernelpath: .*under \/sys\/devices/);
    expect(selectorOf(c({ hwaddr: '02:AA:00:00:00:01' }))).toEqual({ by: 'hwaddr', field: 'hwaddr', mac: '02:aa:00:00:00:01' });
    expect(selectorOf(c({ pciBusID: '00:1F.6' }))).toEqual({ by: 'pciBusID', field: 'pciBusID', pci: '0000:00:1f.6' });
    expect(selectorOf(c({ device: 'x', runtimeConfig: { deviceID: '0000:04:00.5' } }))).toEqual({
      by: 'pciBusID',
      field: 'runtimeConfig.deviceID',
      pci: '0000:04:00.5',
    });
    expect(selectorOf(c({ runtimeConfig: { deviceID: 'ens5f1' } }))).toEqual({
      by: 'device',
      field: 'runtimeConfig.deviceID',
      name: 'ens5f1',
    });
    expect(code(() => selectorOf(c({ runtimeConfig: { deviceID: 'not a device' } })))).toMatch(/^7 .*runtimeConfig.deviceID/);
  });
  it('the alias round-trips and stays within IFALIASZ', () => {
    const key = attachmentKey('c'.repeat(64), 'eth0');
    const addrs = Array.from({ length: 30 }, (_, i) => ({ cidr: `10.0.${i}.1/24` }));
    const a = encodeAlias({ key, hostName: 'ens5', mac: '02:00:00:00:00:01', mtu: 9000, up: true, addrs });
    expect(a.length).toBeLessThanOrEqual(255);
    const d = decodeAlias(a);
    expect(d).toMatchObject({ key, hostName: 'ens5', mac: '02:00:00:00:00:01', mtu: 9000, up: true });
    expect(d?.addrs[0]).toEqual({ cidr: '10.0.0.1/24' });
    expect(decodeAlias('uplink to rack 3')).toBeUndefined();
    expect(transitName(key).length).toBeLessThanOrEqual(15);
  });
  it('container batch: name, up, addresses (IPv6 without DAD), routes take the family gateway', () => {
    const cmds = containerCommands('hdtmp', 'net1', {
      ips: [{ address: '10.1.0.5/24', gateway: '10.1.0.1' }, { address: 'fd00::5/64' }],
      routes: [{ dst: '0.0.0.0/0' }, { dst: 'fd01::/64', gw: 'fd00::1', priority: 10 }],
    });
    expect(cmds.map((c) => c.join(' '))).toEqual([
      'link set dev hdtmp name net1',
      'link set dev net1 up',
      'addr add 10.1.0.5/24 dev net1',
      'addr add fd00::5/64 dev net1 nodad',
      'route add 0.0.0.0/0 via 10.1.0.1 dev net1',
      'route add fd01::/64 via fd00::1 dev net1 metric 10',
    ]);
  });
  it('restore batch: only what differs; alias cleared last but before up; name clash is code 102', () => {
    const rec = {
      hostName: 'ens5',
      mtu: 1400,
      mac: '02:00:00:00:00:01',
      addrs: [{ cidr: '10.9.0.1/24', broadcast: '10.9.0.255' }],
      alias: '',
      up: true,
    } as DeviceRecord;
    expect(restoreCommands(rec, { ifname: 'hdx', mtu: 1400, address: '02:00:00:00:00:01' }, new Set()).map((c) => c.join(' '))).toEqual([
      'link set dev hdx name ens5',
      'addr replace 10.9.0.1/24 broadcast 10.9.0.255 dev ens5',
      'link set dev ens5 alias ',
      'link set dev ens5 up',
    ]);
    expect(code(() => restoreCommands(rec, { ifname: 'hdx' }, new Set(['ens5'])))).toMatch(/^102 /);
  });
  it('finds the recorded device by alias, transit name, ifindex+MAC, never by ifindex alone', async () => {
    const { findRecorded } = await import('../plugins/host-device/device.ts');
    const key = attachmentKey('c1', 'net1');
    const rec = { key, tmpName: transitName(key), ifindex: 7, mac: '02:00:00:00:00:07', hostName: 'ens5' } as DeviceRecord;
    const l = (ifname: string, ifindex: number, address: string, ifalias?: string): Parameters<typeof findRecorded>[0][number] => ({
      ifname,
      ifindex,
      address,
      flags: [],
      mtu: 1500,
      ...(ifalias ? { ifalias } : {}),
    });
    const tag = encodeAlias({ ...rec, mtu: 1500, up: true, addrs: [] });
    expect(findRecorded([l('lo', 1, '00:00:00:00:00:00'), l('renamed', 9, '02:99:00:00:00:01', tag)], rec)?.ifname).toBe('renamed');
    expect(findRecorded([l(rec.tmpName, 9, '02:99:00:00:00:01')], rec)?.ifname).toBe(rec.tmpName);
    expect(findRecorded([l('x', 7, '02:00:00:00:00:07')], rec)?.ifname).toBe('x');
    expect(findRecorded([l('net1', 7, '02:55:00:00:00:01')], rec, { containerName: 'net1' })).toBeUndefined();
    expect(findRecorded([l('net1', 3, '02:55:00:00:00:01', 'ens5')], rec, { containerName: 'net1' })?.ifname).toBe('net1');
  });
  it('ip -batch: only plain words are batched (shared/kernel/batch.ts); anything else goes one argv per process', async () => {
    const { batchable } = await import('../shared/kernel/batch.ts');
    expect(batchable([['link', 'set', 'dev', 'eth0', 'alias', 'cnits']])).toBe(true);
    for (const odd of ['', 'uplink to rack 3', "it's", 'a"b', 'x#y', 'a\nb'])
      expect(batchable([['link', 'set', 'dev', 'eth0', 'alias', odd]])).toBe(false);
  });
  it('CHECK route comparison understands "default" and host routes', () => {
    const have = [{ dst: 'default', gateway: '10.1.0.1' }, { dst: '10.2.0.7' }];
    expect(missingRoutes([{ dst: '0.0.0.0/0', gw: '10.1.0.1' }, { dst: '10.2.0.7/32' }], have, 4)).toEqual([]);
    expect(missingRoutes([{ dst: '0.0.0.0/0', gw: '10.1.0.9' }], have, 4)).toHaveLength(1);
  });
});

describe('host-device on a real kernel', () => {
  it('ADD moves a veth end in (traffic flows), CHECK passes, DEL restores name, MTU, MAC, addresses, state', async () => {
    const s = await setup();
    const mac = '02:5e:00:aa:bb:01';
    const { dev } = await vethWithPeer(s, {
      mtu: 1400,
      mac,
      hostAddr: `198.18.${s.net.split('.')[2]}.1/24`,
      hostAddr6: `fd5e:${v6mid(s)}::1/64`,
    });
    await sh('ip', ['link', 'set', 'dev', dev, 'alias', 'uplink to peer']);
    const before = await link(dev);
    expect(globalAddrs(before)).toHaveLength(2);
    const ipam = staticIpam(s);
    ipam.addresses = [...(ipam.addresses as object[]), { address: `fd5f:${v6mid(s)}::5/64` }];
    const config = conf(s, { device: dev, ipam });
    const t0 = performance.now();
    const add = await verb(s, 'ADD', config);
    const addMs = performance.now() - t0;
    expect(add.exitCode, add.stdout + add.stderr).toBe(0);
    expect(add.json).toEqual({
      cniVersion: '1.1.0',
      interfaces: [{ name: 'net1', mac, mtu: 1400, sandbox: s.ctr.path }],
      ips: [
        { interface: 0, address: `${s.net}.1/24`, gateway: `${s.net}.2` },
        { interface: 0, address: `fd5f:${v6mid(s)}::5/64` },
      ],
      routes: [{ dst: '198.51.100.0/24' }],
      dns: { nameservers: [`${s.net}.53`] },
    });
    expect(await link(dev)).toBeUndefined();
    const inside = await link('net1', s.ctr);
    expect(inside?.flags).toContain('UP');
    expect(globalAddrs(inside)).toEqual([`${s.net}.1/24`, `fd5f:${v6mid(s)}::5/64`]);
    expect((await inNs(s.ctr, 'ip', ['-4', 'route', 'show', '198.51.100.0/24'])).stdout).toContain(`via ${s.net}.2 dev net1`);
    expect(existsSync(`${s.dataDir}/${s.p}-ctr-net1.json`)).toBe(true);
    const ping = await inNs(s.ctr, 'ping', ['-c', '2', '-W', '5', `${s.net}.2`], true);
    expect(ping.exitCode, ping.stdout).toBe(0);

    const check = await verb(s, 'CHECK', { ...config, prevResult: add.json });
    expect(check.exitCode, check.stdout).toBe(0);

    const t1 = performance.now();
    const del = await verb(s, 'DEL', { ...config, prevResult: add.json });
    const delMs = performance.now() - t1;
    expect(del.exitCode, del.stdout + del.stderr).toBe(0);
    const after = await link(dev);
    expect(after).toBeDefined();
    expect({
      mtu: after?.mtu,
      mac: after?.address,
      up: after?.flags.includes('UP'),
      alias: after?.ifalias,
      addrs: globalAddrs(after),
    }).toEqual({
      mtu: before?.mtu,
      mac: before?.address,
      up: true,
      alias: 'uplink to peer',
      addrs: globalAddrs(before),
    });
    expect(await link('net1', s.ctr)).toBeUndefined();
    expect(existsSync(`${s.dataDir}/${s.p}-ctr-net1.json`)).toBe(false);
    console.log(`host-device veth round trip: ADD ${addMs.toFixed(0)} ms, DEL ${delMs.toFixed(0)} ms (with static IPAM in-process)`);
  });

  it('DEL restores after the container renamed the device, changed MTU and MAC and brought it down; DEL twice is fine', async () => {
    const s = await setup();
    const { dev } = await vethWithPeer(s, { mtu: 1450, hostAddr: `198.18.${s.net.split('.')[2]}.1/24` });
    const before = await link(dev);
    const config = conf(s, { device: dev });
    const add = await verb(s, 'ADD', config);
    expect(add.exitCode, add.stdout).toBe(0);
    await inNs(s.ctr, 'ip', ['link', 'set', 'net1', 'down']);
    await inNs(s.ctr, 'ip', ['link', 'set', 'net1', 'name', 'renamed0']);
    await inNs(s.ctr, 'ip', ['link', 'set', 'renamed0', 'mtu', '1300', 'address', '02:00:00:12:34:56']);
    for (let i = 0; i < 2; i++) {
      const del = await verb(s, 'DEL', config);
      expect(del.exitCode, del.stdout).toBe(0);
    }
    const after = await link(dev);
    expect({
      mtu: after?.mtu,
      mac: after?.address,
      up: after?.flags.includes('UP'),
      alias: after?.ifalias,
      addrs: globalAddrs(after),
    }).toEqual({
      mtu: 1450,
      mac: before?.address,
      up: true,
      alias: undefined,
      addrs: globalAddrs(before),
    });
    expect(await link('renamed0', s.ctr)).toBeUndefined();
  });

  it('DEL with empty CNI_NETNS still brings the device home (the record remembers the netns); then a repeat DEL is a no-op', async () => {
    const s = await setup();
    const { dev } = await vethWithPeer(s);
    const config = conf(s, { device: dev });
    expect((await verb(s, 'ADD', config)).exitCode).toBe(0);
    const del = await verb(s, 'DEL', config, { netns: '' });
    expect(del.exitCode, del.stdout).toBe(0);
    expect(await link(dev)).toBeDefined();
    expect((await verb(s, 'DEL', config, { netns: '' })).exitCode).toBe(0);
  });

  it('DEL when another host interface took the original name: 102, record kept; once the name is free DEL finishes', async () => {
    const s = await setup();
    const { dev } = await vethWithPeer(s, { mtu: 1460 });
    const config = conf(s, { device: dev });
    expect((await verb(s, 'ADD', config)).exitCode).toBe(0);
    await sh('ip', ['link', 'add', dev, 'type', 'veth', 'peer', 'name', `${s.p}x`]);
    const clash = await verb(s, 'DEL', config);
    expect(clash.json?.code, clash.stdout).toBe(102);
    expect(String(clash.json?.msg)).toContain(`cannot give "${dev}" its name back`);
    expect(existsSync(`${s.dataDir}/${s.p}-ctr-net1.json`)).toBe(true);
    await sh('ip', ['link', 'del', dev]);
    const del = await verb(s, 'DEL', config);
    expect(del.exitCode, del.stdout).toBe(0);
    const after = await link(dev);
    expect({ mtu: after?.mtu, alias: after?.ifalias, up: after?.flags.includes('UP') }).toEqual({ mtu: 1460, alias: undefined, up: true });
    expect(existsSync(`${s.dataDir}/${s.p}-ctr-net1.json`)).toBe(false);
  });

  it('DEL finds the device by its alias when the record file is lost', async () => {
    const s = await setup();
    const { dev } = await vethWithPeer(s, { mtu: 1420 });
    const config = conf(s, { device: dev });
    expect((await verb(s, 'ADD', config)).exitCode).toBe(0);
    rmSync(`${s.dataDir}/${s.p}-ctr-net1.json`);
    await inNs(s.ctr, 'ip', ['link', 'set', 'net1', 'name', 'other7', 'mtu', '1280']);
    expect((await verb(s, 'DEL', config)).exitCode).toBe(0);
    const after = await link(dev);
    expect(after?.mtu).toBe(1420);
    expect(after?.ifalias).toBeUndefined();
  });

  for (const kind of ['veth', 'macvlan', 'tap'] as const) {
    it(`netns deleted with a ${kind} inside: DEL succeeds, releases, drops the record (what the kernel did is logged)`, async () => {
      const s = await setup();
      let dev: string;
      let peer: TestNetns | undefined;
      if (kind === 'veth') ({ dev, peer } = await vethWithPeer(s));
      else if (kind === 'macvlan') {
        await sh('ip', ['link', 'add', `${s.p}l`, 'type', 'veth', 'peer', 'name', `${s.p}m`]);
        dev = `${s.p}v`;
        await sh('ip', ['link', 'add', dev, 'link', `${s.p}l`, 'type', 'macvlan', 'mode', 'bridge']);
      } else {
        dev = `${s.p}t`;
        await sh('ip', ['tuntap', 'add', 'dev', dev, 'mode', 'tap']);
      }
      // host-local (ours, in-process), so DEL has a reservation to release.
      const ipamDir = `${s.dataDir}-ipam`;
      cleanup.add(async () => rmSync(ipamDir, { recursive: true, force: true }));
      const config = conf(s, { device: dev, ipam: { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet: `${s.net}.0/24` }]] } });
      const reserved = (): string[] =>
        existsSync(`${ipamDir}/${config.name}`) ? readdirSync(`${ipamDir}/${config.name}`).filter((f) => f.startsWith(`${s.net}.`)) : [];
      const add = await verb(s, 'ADD', config);
      expect(add.exitCode, add.stdout).toBe(0);
      expect(reserved()).toEqual([`${s.net}.2`]);
      await sh('ip', ['netns', 'del', s.ctr.name]);
      // The kernel tears a deleted namespace down asynchronously (cleanup_net): wait (bounded)
      // until its device is either back on the host or, for a veth, gone with its peer.
      let back = await link(dev);
      let tagged = (await links()).find((l) => (l.ifalias ?? '').includes(`;n=${dev};`));
      // (a deadline, not a count of 50 ms rounds: teardown waits for RCU, slow on a loaded machine)
      const end = Date.now() + 30_000;
      while (Date.now() < end && peer && !tagged && !back && (await link(`${s.p}p`, peer))) {
        await new Promise((r) => setTimeout(r, 50));
        back = await link(dev);
        tagged = (await links()).find((l) => (l.ifalias ?? '').includes(`;n=${dev};`));
      }
      console.log(
        `kernel ${(await sh('uname', ['-r'])).stdout}: a ${kind} in a deleted netns is ${tagged || back ? 'returned to the host' : 'destroyed'}`,
      );
      if (peer && !tagged && !back) expect(await link(`${s.p}p`, peer), 'a destroyed veth takes its peer with it').toBeUndefined();
      const del = await verb(s, 'DEL', config);
      expect(del.exitCode, del.stdout).toBe(0);
      expect(reserved(), 'DEL released the host-local reservation').toEqual([]);
      expect(existsSync(`${s.dataDir}/${s.p}-ctr-net1.json`)).toBe(false);
      const now = (await links()).find((l) => (l.ifalias ?? '').includes(`;n=${dev};`));
      expect(now).toBeUndefined();
      expect((await verb(s, 'DEL', config, { netns: '' })).exitCode).toBe(0);
    });
  }

  it('a device the kernel returned to the host under its container name (physical NIC behaviour): DEL restores it', async () => {
    const s = await setup();
    const { dev } = await vethWithPeer(s, { mtu: 1410, hostAddr: `198.18.${s.net.split('.')[2]}.1/24` });
    const before = await link(dev);
    const config = conf(s, { device: dev });
    expect((await verb(s, 'ADD', config, { ifname: `${s.p}c` })).exitCode).toBe(0);
    // What default_device_exit does for a NIC without rtnl_link_ops: back to init_net, same name.
    await inNs(s.ctr, 'ip', ['link', 'set', `${s.p}c`, 'netns', `/proc/${process.pid}/ns/net`]);
    await sh('ip', ['netns', 'del', s.ctr.name]);
    expect(await link(`${s.p}c`)).toBeDefined();
    // Another container may not take it while it is still recorded.
    const other = await makeNetns(cleanup, `cnits-${s.p}-o`);
    const steal = await verb(s, 'ADD', conf(s, { hwaddr: before?.address }), { cid: `${s.p}-other`, netns: other.path });
    expect(steal.json?.code, steal.stdout).toBe(102);
    const del = await verb(s, 'DEL', config, { ifname: `${s.p}c` });
    expect(del.exitCode, del.stdout).toBe(0);
    const after = await link(dev);
    expect({
      mtu: after?.mtu,
      mac: after?.address,
      up: after?.flags.includes('UP'),
      alias: after?.ifalias,
      addrs: globalAddrs(after),
    }).toEqual({
      mtu: 1410,
      mac: before?.address,
      up: true,
      alias: undefined,
      addrs: globalAddrs(before),
    });
  });

  it('a NIC the kernel hands back only after DEL started (async netns cleanup): DEL waits for it and restores it', async () => {
    const s = await setup();
    const { dev } = await vethWithPeer(s, { mtu: 1430 });
    const config = conf(s, { device: dev });
    expect((await verb(s, 'ADD', config, { ifname: `${s.p}c` })).exitCode).toBe(0);
    // A physical NIC has no link kind: make the record say so (a veth is destroyed, not returned).
    const file = `${s.dataDir}/${s.p}-ctr-${s.p}c.json`;
    const rec = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    delete rec.kind;
    writeFileSync(file, JSON.stringify(rec));
    // The namespace loses its path but lives on (a process still holds it), as during teardown.
    const holder = execa('nsenter', [`--net=${s.ctr.path}`, '--', 'sleep', '300'], { reject: false });
    cleanup.add(async () => holder.kill('SIGKILL'));
    // Only drop the path once the holder is inside the namespace (spawning races the delete).
    const want = `net:[${statSync(s.ctr.path).ino}]`;
    for (let i = 0; i < 500; i++) {
      let ns = '';
      try {
        ns = readlinkSync(`/proc/${holder.pid}/ns/net`);
      } catch {}
      if (ns === want) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(readlinkSync(`/proc/${holder.pid}/ns/net`), 'the holder process entered the container netns').toBe(want);
    await sh('ip', ['netns', 'del', s.ctr.name]);
    const delP = verb(s, 'DEL', config, { ifname: `${s.p}c` });
    await sh('nsenter', [`--net=/proc/${holder.pid}/ns/net`, '--', 'ip', 'link', 'set', `${s.p}c`, 'netns', `/proc/${process.pid}/ns/net`]);
    const del = await delP;
    expect(del.exitCode, del.stdout + del.stderr).toBe(0);
    const after = await link(dev);
    expect({ mtu: after?.mtu, alias: after?.ifalias }).toEqual({ mtu: 1430, alias: undefined });
    expect(existsSync(file)).toBe(false);
  });

  it('GC gives back a returned device whose attachment is not valid, keeps valid ones, forwards to IPAM', async () => {
    const s = await setup();
    const a = await vethWithPeer(s);
    const bDev = `${s.p}b`;
    await sh('ip', ['link', 'add', bDev, 'type', 'veth', 'peer', 'name', `${s.p}q`]);
    const ctr2 = await makeNetns(cleanup, `cnits-${s.p}-d`);
    const cfgA = conf(s, { device: a.dev, ipam: staticIpam(s) });
    const cfgB = conf(s, { device: bDev });
    expect((await verb(s, 'ADD', cfgA, { ifname: `${s.p}c` })).exitCode).toBe(0);
    expect((await verb(s, 'ADD', cfgB, { cid: `${s.p}-keep`, netns: ctr2.path })).exitCode).toBe(0);
    await inNs(s.ctr, 'ip', ['link', 'set', `${s.p}c`, 'netns', `/proc/${process.pid}/ns/net`]);
    await sh('ip', ['netns', 'del', s.ctr.name]);
    const gc = await runPlugin('host-device', {
      command: 'GC',
      config: {
        ...conf(s, { device: a.dev, ipam: staticIpam(s) }),
        'cni.dev/valid-attachments': [{ containerID: `${s.p}-keep`, ifname: 'net1' }],
      },
    });
    expect(gc.exitCode, gc.stdout + gc.stderr).toBe(0);
    expect(await link(a.dev)).toBeDefined();
    expect(existsSync(`${s.dataDir}/${s.p}-ctr-${s.p}c.json`)).toBe(false);
    expect(existsSync(`${s.dataDir}/${s.p}-keep-net1.json`)).toBe(true);
    expect(await link('net1', ctr2)).toBeDefined();
    expect((await verb(s, 'DEL', cfgB, { cid: `${s.p}-keep`, netns: ctr2.path })).exitCode).toBe(0);
    expect(await link(bDev)).toBeDefined();
    const status = await runPlugin('host-device', { command: 'STATUS', config: cfgA });
    expect(status.exitCode, status.stdout).toBe(0);
  });

  it('two containers asking for the same device: the second gets 102 and nothing changes; absent device is code 7', async () => {
    const s = await setup();
    const { dev } = await vethWithPeer(s);
    const config = conf(s, { device: dev, ipam: staticIpam(s) });
    expect((await verb(s, 'ADD', config)).exitCode).toBe(0);
    const ctr2 = await makeNetns(cleanup, `cnits-${s.p}-2`);
    const second = await verb(s, 'ADD', config, { cid: `${s.p}-two`, netns: ctr2.path });
    expect(second.exitCode).not.toBe(0);
    expect(second.json?.code, second.stdout).toBe(102);
    expect(String(second.json?.msg)).toContain(`${s.p}-ctr`);
    expect((await links(ctr2)).map((l) => l.ifname)).toEqual(['lo']);
    expect(existsSync(`${s.dataDir}/${s.p}-two-net1.json`)).toBe(false);
    expect(await link('net1', s.ctr)).toBeDefined();
    // The same container again: the attachment exists.
    expect((await verb(s, 'ADD', config)).json?.code).toBe(102);
    const absent = await verb(s, 'ADD', conf(s, { device: `${s.p}zz` }), { cid: `${s.p}-three`, netns: ctr2.path });
    expect(absent.json?.code, absent.stdout).toBe(7);
    expect(String(absent.json?.msg)).toContain('not found');
    expect((await verb(s, 'DEL', config)).exitCode).toBe(0);
  });

  it('selects by hwaddr (any case) and gives it back', async () => {
    const s = await setup();
    const mac = '02:5e:00:ab:cd:0f';
    const { dev } = await vethWithPeer(s, { mac });
    const config = conf(s, { hwaddr: mac.toUpperCase() });
    const add = await verb(s, 'ADD', config, { ifname: 'eth0' });
    expect(add.exitCode, add.stdout).toBe(0);
    expect((add.json?.interfaces as Array<{ mac: string }>)[0].mac).toBe(mac);
    expect((await link('eth0', s.ctr))?.address).toBe(mac);
    expect((await verb(s, 'DEL', config, { ifname: 'eth0' })).exitCode).toBe(0);
    expect((await link(dev))?.address).toBe(mac);
  });

  it('kernelpath and pciBusID / deviceID that name no device fail with code 7 naming the field; no selector is code 7', async () => {
    const s = await setup();
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ kernelpath: `/sys/devices/${s.p}-nonexistent` }, 'kernelpath'],
      [{ kernelpath: '/tmp/x' }, 'kernelpath'],
      [{ pciBusID: 'ffff:ff:1f.7' }, 'pciBusID'],
      [{ pciBusID: 'not-pci' }, 'pciBusID'],
      [{ runtimeConfig: { deviceID: 'ffff:ff:1f.7' } }, 'runtimeConfig.deviceID'],
      [{}, 'device'],
      [{ device: 'a', pciBusID: '0000:00:01.0' }, 'pciBusID'],
    ];
    for (const [extra, field] of cases) {
      const r = await verb(s, 'ADD', conf(s, extra));
      expect(r.json?.code, `${JSON.stringify(extra)}: ${r.stdout}`).toBe(7);
      expect(String(r.json?.msg), JSON.stringify(extra)).toContain(field);
    }
    expect((await links(s.ctr)).map((l) => l.ifname)).toEqual(['lo']);
  });

  it('a failed ADD gives the device back unchanged: CNI_IFNAME taken in the container, IPAM failure', async () => {
    const s = await setup();
    const { dev } = await vethWithPeer(s, { mtu: 1440, hostAddr: `198.18.${s.net.split('.')[2]}.1/24` });
    const before = await link(dev);
    await inNs(s.ctr, 'ip', ['link', 'add', 'net1', 'type', 'veth', 'peer', 'name', 'net1peer']);
    const taken = await verb(s, 'ADD', conf(s, { device: dev }));
    expect(taken.json?.code, taken.stdout).toBe(102);
    expect(String(taken.json?.msg)).toContain('"net1" already exists in the container');
    const badIpam = await verb(s, 'ADD', conf(s, { device: dev, ipam: { type: 'static', addresses: [{ address: 'bogus' }] } }), {
      ifname: 'net2',
    });
    expect(badIpam.json?.code, badIpam.stdout).toBe(7);
    for (const r of [taken, badIpam]) expect(r.stderr).not.toMatch(/could not give/);
    const after = await link(dev);
    expect({
      mtu: after?.mtu,
      mac: after?.address,
      up: after?.flags.includes('UP'),
      alias: after?.ifalias,
      addrs: globalAddrs(after),
    }).toEqual({
      mtu: 1440,
      mac: before?.address,
      up: true,
      alias: undefined,
      addrs: globalAddrs(before),
    });
    expect((await links(s.ctr)).map((l) => l.ifname).sort()).toEqual(['lo', 'net1', 'net1peer']);
    expect(existsSync(`${s.dataDir}/${s.p}-ctr-net1.json`) || existsSync(`${s.dataDir}/${s.p}-ctr-net2.json`)).toBe(false);
  });

  it('IPAM (host-local) is released when ADD fails after the move, and never taken when the device is in use', async () => {
    const s = await setup();
    const { dev } = await vethWithPeer(s);
    const ipamDir = `/run/cnits-${s.p}-ipam`;
    cleanup.add(async () => rmSync(ipamDir, { recursive: true, force: true }));
    const hostLocal = {
      type: 'host-local',
      dataDir: ipamDir,
      ranges: [[{ subnet: `${s.net}.0/24`, rangeStart: `${s.net}.10`, rangeEnd: `${s.net}.20` }]],
    };
    const reserved = (): string[] =>
      existsSync(`${ipamDir}/net-${s.p}`) ? readdirSync(`${ipamDir}/net-${s.p}`).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
    // The reference host-local (1.0.0; same store layout as ours) keeps this test about host-device.
    const config = conf(s, { device: dev, ipam: hostLocal }, '1.0.0');
    const path = await refIpamPath(s, 'host-local');
    // CNI_IFNAME already taken in the container: the rename fails after IPAM ADD and the move.
    await inNs(s.ctr, 'ip', ['link', 'add', 'busy0', 'type', 'veth', 'peer', 'name', 'busy1']);
    const failed = await verb(s, 'ADD', config, { ifname: 'busy0', path });
    expect(failed.json?.code, failed.stdout).toBe(102);
    expect(reserved()).toEqual([]);
    expect(await link(dev)).toBeDefined();
    const ok = await verb(s, 'ADD', config, { path });
    expect(ok.exitCode, ok.stdout).toBe(0);
    const mine = reserved();
    expect(mine).toHaveLength(1); // host-local goes round-robin: .11 after the released .10
    const ctr2 = await makeNetns(cleanup, `cnits-${s.p}-2`);
    const second = await verb(s, 'ADD', config, { cid: `${s.p}-two`, netns: ctr2.path, path });
    expect(second.json?.code, second.stdout).toBe(102);
    expect(reserved()).toEqual(mine);
    expect((await verb(s, 'DEL', config, { path })).exitCode).toBe(0);
    expect(reserved()).toEqual([]);
    expect(await link(dev)).toBeDefined();
  });

  it('GC is forwarded to IPAM (our host-local): a stale reservation goes, a device in a live netns is left to DEL', async () => {
    const s = await setup();
    const { dev } = await vethWithPeer(s);
    const ipamDir = `/run/cnits-${s.p}-ipam`;
    cleanup.add(async () => rmSync(ipamDir, { recursive: true, force: true }));
    const hostLocal = { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet: `${s.net}.0/24` }]] };
    const reserved = (): string[] =>
      existsSync(`${ipamDir}/net-${s.p}`) ? readdirSync(`${ipamDir}/net-${s.p}`).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
    const config = conf(s, { device: dev, ipam: hostLocal });
    const add = await verb(s, 'ADD', config);
    expect(add.exitCode, add.stdout).toBe(0);
    expect(reserved()).toHaveLength(1);
    const gc = await runPlugin('host-device', { command: 'GC', config: { ...config, 'cni.dev/valid-attachments': [] } });
    expect(gc.exitCode, gc.stdout + gc.stderr).toBe(0);
    expect(reserved()).toEqual([]);
    expect(existsSync(`${s.dataDir}/${s.p}-ctr-net1.json`)).toBe(true);
    expect((await verb(s, 'DEL', config)).exitCode).toBe(0);
    expect(await link(dev)).toBeDefined();
  });

  it('two concurrent ADDs for one device: exactly one wins, the other gets 102', async () => {
    const s = await setup();
    const { dev } = await vethWithPeer(s);
    const ctr2 = await makeNetns(cleanup, `cnits-${s.p}-2`);
    const config = conf(s, { device: dev });
    const [a, b] = await Promise.all([verb(s, 'ADD', config), verb(s, 'ADD', config, { cid: `${s.p}-two`, netns: ctr2.path })]);
    expect([a.exitCode, b.exitCode].sort()).toEqual([0, 1]);
    expect([a, b].find((r) => r.exitCode !== 0)?.json?.code).toBe(102);
    const winner = a.exitCode === 0 ? { cid: `${s.p}-ctr`, netns: s.ctr.path } : { cid: `${s.p}-two`, netns: ctr2.path };
    expect((await verb(s, 'DEL', config, winner)).exitCode).toBe(0);
    expect(await link(dev)).toBeDefined();
  });

  it('CHECK reports a missing address, a wrong MAC and a missing interface (code 105)', async () => {
    const s = await setup();
    const { dev } = await vethWithPeer(s);
    const config = conf(s, { device: dev, ipam: staticIpam(s) });
    const add = await verb(s, 'ADD', config);
    expect(add.exitCode).toBe(0);
    await inNs(s.ctr, 'ip', ['addr', 'del', `${s.net}.1/24`, 'dev', 'net1']);
    const r1 = await verb(s, 'CHECK', { ...config, prevResult: add.json });
    expect(r1.json?.code, r1.stdout).toBe(105);
    expect(String(r1.json?.msg)).toContain('address');
    await inNs(s.ctr, 'ip', ['addr', 'add', `${s.net}.1/24`, 'dev', 'net1']);
    await inNs(s.ctr, 'ip', ['link', 'set', 'net1', 'address', '02:00:00:00:00:42']);
    const r2 = await verb(s, 'CHECK', { ...config, prevResult: add.json });
    expect(String(r2.json?.msg), r2.stdout).toContain('MAC');
    await inNs(s.ctr, 'ip', ['link', 'set', 'net1', 'name', 'moved9']);
    const r3 = await verb(s, 'CHECK', { ...config, prevResult: add.json });
    expect(r3.json?.code).toBe(105);
    expect((await verb(s, 'DEL', config)).exitCode).toBe(0);
    expect(await link(dev)).toBeDefined();
  });

  for (const version of ['0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
    it(`result shape for cniVersion ${version}`, async () => {
      const s = await setup();
      const { dev } = await vethWithPeer(s, { mtu: 1400 });
      const config = conf(s, { device: dev, ipam: staticIpam(s) }, version);
      const add = await verb(s, 'ADD', config);
      expect(add.exitCode, add.stdout).toBe(0);
      const r = add.json as { cniVersion: string; interfaces: Array<Record<string, unknown>>; ips: Array<Record<string, unknown>> };
      expect(r.cniVersion).toBe(version);
      expect(Object.keys(r.interfaces[0]).sort()).toEqual(
        version === '1.1.0' ? ['mac', 'mtu', 'name', 'sandbox'] : ['mac', 'name', 'sandbox'],
      );
      expect(r.ips[0]).toEqual({
        ...(version < '1.0.0' ? { version: '4' } : {}),
        interface: 0,
        address: `${s.net}.1/24`,
        gateway: `${s.net}.2`,
      });
      expect((await verb(s, 'DEL', config)).exitCode).toBe(0);
    });
  }

  it('interop: the reference host-device and ours give the same result shape on the same kind of device', async () => {
    const s = await setup();
    const ours = await vethWithPeer(s, { mtu: 1400 });
    const refDev = `${s.p}r`;
    await sh('ip', ['link', 'add', refDev, 'mtu', '1400', 'type', 'veth', 'peer', 'name', `${s.p}s`]);
    const refNs = await makeNetns(cleanup, `cnits-${s.p}-r`);
    const version = '1.0.0'; // the newest the reference speaks
    const refConf = { ...conf(s, { device: refDev, ipam: staticIpam(s) }, version) };
    const ref = await runPlugin('host-device', {
      command: 'ADD',
      containerId: `${s.p}-ref`,
      netns: refNs.path,
      ifname: 'net1',
      config: refConf,
      path: REF_BIN,
      binDir: REF_BIN,
    });
    cleanup.add(() =>
      runPlugin('host-device', {
        command: 'DEL',
        containerId: `${s.p}-ref`,
        netns: refNs.path,
        ifname: 'net1',
        config: refConf,
        path: REF_BIN,
        binDir: REF_BIN,
      }),
    );
    expect(ref.exitCode, ref.stdout + ref.stderr).toBe(0);
    const mine = await verb(s, 'ADD', conf(s, { device: ours.dev, ipam: staticIpam(s) }, version), { path: BIN });
    expect(mine.exitCode, mine.stdout).toBe(0);
    const shape = (r: Record<string, unknown> | undefined, ns: string): unknown =>
      JSON.parse(
        JSON.stringify(r)
          .replaceAll(ns, 'NETNS')
          .replace(/"mac":"[0-9a-f:]+"/g, '"mac":"MAC"'),
      );
    // One deliberate difference: the reference replaces the IPAM DNS with the config's `dns`
    // even when that is empty; ours keeps the IPAM DNS unless the config sets one (as bridge does).
    expect(ref.json?.dns).toEqual({});
    expect(mine.json?.dns).toEqual({ nameservers: [`${s.net}.53`] });
    expect(shape({ ...mine.json, dns: {} }, s.ctr.path)).toEqual(shape(ref.json, refNs.path));
    expect((await verb(s, 'DEL', conf(s, { device: ours.dev, ipam: staticIpam(s) }, version))).exitCode).toBe(0);
    expect(await link(ours.dev)).toBeDefined();
  });

  it('a device attached by the reference host-device is detached by ours (its alias is the host name)', async () => {
    const s = await setup();
    const { dev } = await vethWithPeer(s);
    const refConf = conf(s, { device: dev }, '1.0.0');
    const ref = await runPlugin('host-device', {
      command: 'ADD',
      containerId: `${s.p}-ctr`,
      netns: s.ctr.path,
      ifname: 'net1',
      config: refConf,
      path: REF_BIN,
      binDir: REF_BIN,
    });
    expect(ref.exitCode, ref.stdout).toBe(0);
    expect((await link('net1', s.ctr))?.ifalias).toBe(dev);
    const del = await verb(s, 'DEL', refConf);
    expect(del.exitCode, del.stdout + del.stderr).toBe(0);
    expect(await link(dev)).toBeDefined();
    expect(await link('net1', s.ctr)).toBeUndefined();
  });

  it('IPAM through the reference static (out of process, via CNI_PATH)', async () => {
    const s = await setup();
    const { dev } = await vethWithPeer(s);
    const path = await refIpamPath(s, 'static');
    const config = conf(s, { device: dev, ipam: staticIpam(s) }, '1.0.0');
    const add = await verb(s, 'ADD', config, { path });
    expect(add.exitCode, add.stdout).toBe(0);
    expect(globalAddrs(await link('net1', s.ctr))).toEqual([`${s.net}.1/24`]);
    const ping = await inNs(s.ctr, 'ping', ['-c', '1', '-W', '5', `${s.net}.2`], true);
    expect(ping.exitCode, ping.stdout).toBe(0);
    expect((await verb(s, 'DEL', config, { path })).exitCode).toBe(0);
  });
});
