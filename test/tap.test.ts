/**
 * tap against the real kernel. The Go reference `tap` is not in Debian 12's plugin package
 * (/usr/lib/cni has no tap), so its behaviour is pinned from its source (plugins/main/tap):
 * same keys, result [container interface with MAC and sandbox], addresses on interface 0,
 * the tap device's flags (netlink path with owner+group: vnet_hdr, pi unless multi-queue).
 */
import { rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup, inNs, makeNetns, sh, type TestNetns } from './helpers/netns.ts';
import { runPlugin, uid, type PluginRun } from './helpers/run.ts';
import { resolveTap, tapAddCommand, tapDrift, tapThenCommands } from '../plugins/tap/config.ts';

const PREFIX = 'pq';
const cleanup = new Cleanup();
afterEach(async () => cleanup.run());

async function probeTun(): Promise<string> {
  const ns = `pq-tunprobe-${uid('')}`;
  await sh('ip', ['netns', 'add', ns]);
  const r = await sh('ip', ['-n', ns, 'tuntap', 'add', 'mode', 'tap', 'name', 'pqprobe'], { allowFail: true });
  await sh('ip', ['netns', 'del', ns], { allowFail: true });
  return r.exitCode === 0 ? '' : `kernel cannot create tap devices: ${r.stderr.trim()}`;
}
const lacks = await probeTun();
if (lacks) console.log(`skipping tap kernel tests: ${lacks}`);

interface TapInfo {
  mtu: number;
  address: string;
  master?: string;
  flags: string[];
  linkinfo: {
    info_kind: string;
    info_data: { type: string; pi: boolean; vnet_hdr: boolean; multi_queue: boolean; persist: boolean; user?: string; group?: string };
  };
}
const details = async (ns: TestNetns, dev: string): Promise<TapInfo> =>
  (JSON.parse((await inNs(ns, 'ip', ['-j', '-d', 'addr', 'show', 'dev', dev])).stdout) as TapInfo[])[0];

function call(
  command: string,
  ns: TestNetns | undefined,
  id: string,
  conf: Record<string, unknown>,
  opts: { prevResult?: unknown; ifname?: string; args?: string } = {},
): Promise<PluginRun> {
  return runPlugin('tap', {
    command,
    containerId: id,
    netns: ns?.path ?? '',
    ifname: opts.ifname ?? 'tap0',
    args: opts.args,
    config: { ...conf, ...(opts.prevResult ? { prevResult: opts.prevResult } : {}) },
  });
}

describe('tap: config (pure)', () => {
  it('MAC precedence runtimeConfig > CNI_ARGS > mac; ip tuntap argv as the reference picks its path; then-lines; drift', () => {
    const s = resolveTap(
      { name: 'n', mac: '02:00:00:00:00:01', runtimeConfig: { mac: '02:00:00:00:00:02' } },
      { args: new Map([['MAC', '02:00:00:00:00:03']]) },
    );
    expect(s.mac).toBe('02:00:00:00:00:02');
    expect(resolveTap({ name: 'n', mac: '02:00:00:00:00:01' }, { args: new Map([['MAC', '02:00:00:00:00:03']]) }).mac).toBe(
      '02:00:00:00:00:03',
    );
    expect(() => resolveTap({ name: 'n', mac: 'zz' }, { args: new Map() })).toThrow(/MAC/);
    expect(() => resolveTap({ name: 'n', bridge: 'a b' }, { args: new Map() })).toThrow(/bridge/);
    const base = resolveTap({ name: 'n' }, { args: new Map() });
    expect(tapAddCommand(base, 't')).toEqual(['tuntap', 'add', 'mode', 'tap', 'name', 't']);
    expect(tapAddCommand({ ...base, multiQueue: true, owner: 5 }, 't')).toEqual([
      'tuntap',
      'add',
      'mode',
      'tap',
      'name',
      't',
      'multi_queue',
      'user',
      '5',
    ]);
    // owner and group both: the reference's netlink path (IFF_VNET_HDR; IFF_NO_PI only with multi-queue)
    expect(tapAddCommand({ ...base, owner: 1, group: 2 }, 't')).toEqual([
      'tuntap',
      'add',
      'mode',
      'tap',
      'name',
      't',
      'vnet_hdr',
      'pi',
      'user',
      '1',
      'group',
      '2',
    ]);
    expect(tapAddCommand({ ...base, owner: 1, group: 2, multiQueue: true }, 't')).toEqual([
      'tuntap',
      'add',
      'mode',
      'tap',
      'name',
      't',
      'vnet_hdr',
      'multi_queue',
      'user',
      '1',
      'group',
      '2',
    ]);
    expect(tapThenCommands({ ...base, mtu: 1400, mac: '02:00:00:00:00:09', bridge: 'br0' }, 't')).toEqual([
      ['link', 'set', 'dev', 't', 'mtu', '1400', 'address', '02:00:00:00:00:09'],
      ['link', 'set', 'dev', 't', 'master', 'br0'],
    ]);
    expect(tapThenCommands(base, 't')).toEqual([]);
    expect(tapDrift({ linkinfo: { info_data: { type: 'tap', multi_queue: false } } }, base)).toBeUndefined();
    expect(tapDrift({ linkinfo: { info_data: { type: 'tun' } } }, base)).toMatch(/not a tap/);
    expect(tapDrift({ linkinfo: { info_data: { type: 'tap', multi_queue: true } } }, base)).toMatch(/multi_queue/);
    expect(tapDrift({ master: 'x', linkinfo: { info_data: { type: 'tap' } } }, { ...base, bridge: 'br0' })).toMatch(/bridge br0/);
  });
});

describe.skipIf(lacks)('tap: kernel', () => {
  it('L2 tap: multi-queue, owner, group, MTU, MAC, bridge port; result as the reference; CHECK; DEL idempotent', async () => {
    const ns = await makeNetns(cleanup, PREFIX);
    await inNs(ns, 'ip', ['link', 'add', 'pqbr0', 'type', 'bridge']);
    const conf = {
      cniVersion: '1.0.0',
      name: uid(PREFIX),
      type: 'tap',
      multiQueue: true,
      owner: 1,
      group: 2,
      mtu: 1400,
      mac: '02:11:22:33:44:55',
      bridge: 'pqbr0',
      selinuxContext: '',
    };
    const id = uid(PREFIX);
    const r = await call('ADD', ns, id, conf);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.json).toEqual({ cniVersion: '1.0.0', interfaces: [{ name: 'tap0', mac: '02:11:22:33:44:55', sandbox: ns.path }], dns: {} });
    const d = await details(ns, 'tap0');
    expect([d.mtu, d.address, d.master, d.flags.includes('UP'), d.linkinfo.info_kind]).toEqual([
      1400,
      '02:11:22:33:44:55',
      'pqbr0',
      true,
      'tun',
    ]);
    expect(d.linkinfo.info_data).toMatchObject({ type: 'tap', multi_queue: true, vnet_hdr: true, pi: false, persist: true });
    expect(d.linkinfo.info_data.user).toBeDefined();
    expect((await call('CHECK', ns, id, conf, { prevResult: r.json })).exitCode).toBe(0);
    expect((await call('CHECK', ns, id, { ...conf, multiQueue: false }, { prevResult: r.json })).json).toMatchObject({ code: 105 });
    // no temporary link left behind
    expect((await inNs(ns, 'ip', ['-o', 'link'])).stdout.trim().split('\n')).toHaveLength(3);
    for (let i = 0; i < 2; i++) expect((await call('DEL', ns, id, conf, { prevResult: r.json })).exitCode).toBe(0);
    expect((await inNs(ns, 'ip', ['link', 'show', 'tap0'], true)).exitCode).not.toBe(0);
    expect((await call('DEL', undefined, id, conf)).exitCode).toBe(0);
  });

  it('single-queue with owner and group gets pi as the reference netlink path; CNI_ARGS MAC; a missing bridge fails and leaves nothing', async () => {
    const ns = await makeNetns(cleanup, PREFIX);
    const conf = { cniVersion: '0.4.0', name: uid(PREFIX), type: 'tap', owner: 0, group: 0 };
    const r = await call('ADD', ns, uid(PREFIX), conf, { args: 'IgnoreUnknown=1;MAC=02:aa:bb:cc:dd:ee' });
    expect(r.exitCode, r.stdout).toBe(0);
    const d = await details(ns, 'tap0');
    expect(d.linkinfo.info_data).toMatchObject({ multi_queue: false, vnet_hdr: true, pi: true });
    expect(d.address).toBe('02:aa:bb:cc:dd:ee');
    const f = await call('ADD', ns, uid(PREFIX), { ...conf, bridge: 'pqnobr' }, { ifname: 'tap1' });
    expect(f.exitCode).not.toBe(0);
    expect((await inNs(ns, 'ip', ['-o', 'link'])).stdout.trim().split('\n')).toHaveLength(2);
  });

  it('with IPAM: addresses on interface 0, routes, DNS from the config; IPAM released on DEL; CHECK finds a missing address', async () => {
    const ns = await makeNetns(cleanup, PREFIX);
    const dataDir = `/tmp/${uid(PREFIX)}`;
    cleanup.add(async () => rmSync(dataDir, { recursive: true, force: true }));
    const conf = {
      cniVersion: '1.0.0',
      name: uid(PREFIX),
      type: 'tap',
      dns: { nameservers: ['10.66.0.1'] },
      ipam: { type: 'host-local', subnet: '10.66.0.0/24', dataDir, routes: [{ dst: '10.67.0.0/16' }] },
    };
    const id = uid(PREFIX);
    const r = await call('ADD', ns, id, conf);
    expect(r.exitCode, r.stdout).toBe(0);
    expect(r.json).toMatchObject({
      ips: [{ address: '10.66.0.2/24', gateway: '10.66.0.1', interface: 0 }],
      routes: [{ dst: '10.67.0.0/16' }],
      dns: { nameservers: ['10.66.0.1'] },
    });
    const addrs = (await details(ns, 'tap0')) as unknown as { addr_info: Array<{ local: string }> };
    expect(addrs.addr_info.map((a) => a.local)).toContain('10.66.0.2');
    expect((await inNs(ns, 'ip', ['route', 'show', '10.67.0.0/16'])).stdout).toMatch(/via 10\.66\.0\.1 dev tap0/);
    expect((await call('CHECK', ns, id, conf, { prevResult: r.json })).exitCode).toBe(0);
    await inNs(ns, 'ip', ['addr', 'flush', 'dev', 'tap0']);
    expect((await call('CHECK', ns, id, conf, { prevResult: r.json })).json).toMatchObject({ code: 105 });
    expect((await call('DEL', ns, id, conf)).exitCode).toBe(0);
    expect((await sh('ls', [`${dataDir}/${conf.name}`])).stdout).not.toMatch(/10\.66\.0\.2/);
  });
});
