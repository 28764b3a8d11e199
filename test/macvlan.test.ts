/**
 * macvlan against the real kernel and the Go reference. The "host" is a test netns whose
 * master is one end of a veth; the other end sits in a "peer" netns (the outside world of the
 * test). Never eth0: the plugin runs inside the test host netns through nsenter.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup, inNs, kernelLacks, makeNetns, sh, type TestNetns } from './helpers/netns.ts';
import { REF_BIN, runPlugin, uid, type PluginRun } from './helpers/run.ts';
import { macvlanAddCommand, resolveMacvlan } from '../plugins/macvlan/config.ts';
import { checkMtu } from '../plugins/sublink/core.ts';

const PREFIX = 'hr';
const cleanup = new Cleanup();
afterEach(async () => cleanup.run());

const macvlanLacks = await kernelLacks('macvlan', []);
// kernelLacks creates without a lower device; macvlan needs one, so probe with a veth below
async function probeMacvlan(): Promise<string> {
  const v = uid('hrp');
  await sh('ip', ['link', 'add', v, 'type', 'veth', 'peer', 'name', `${v}b`]);
  const r = await sh('ip', ['link', 'add', 'link', v, 'name', `${v}m`, 'type', 'macvlan'], { allowFail: true });
  await sh('ip', ['link', 'del', v], { allowFail: true });
  return r.exitCode === 0 ? '' : `kernel cannot create macvlan links: ${r.stderr.trim()}`;
}
const lacks = macvlanLacks.includes('Unknown device type') ? macvlanLacks : await probeMacvlan();
if (lacks) console.log(`skipping macvlan kernel tests: ${lacks}`);

interface Lab {
  host: TestNetns;
  peer: TestNetns;
  master: string;
  subnet: string;
  dataDir: string;
  conf: Record<string, unknown>;
}

async function lab(extra: Record<string, unknown> = {}): Promise<Lab> {
  const host = await makeNetns(cleanup, PREFIX);
  const peer = await makeNetns(cleanup, PREFIX);
  const master = uid('hrm');
  await inNs(host, 'ip', ['link', 'add', master, 'type', 'veth', 'peer', 'name', 'outside', 'netns', peer.path]);
  const subnet = `10.${1 + (randomBytes(1)[0] % 250)}.${1 + (randomBytes(1)[0] % 250)}.`;
  await inNs(host, 'ip', ['link', 'set', master, 'up']);
  await inNs(peer, 'ip', ['addr', 'add', `${subnet}254/24`, 'dev', 'outside']);
  await inNs(peer, 'ip', ['link', 'set', 'outside', 'up']);
  // the host's default route goes through the master (the default master when none is given)
  await inNs(host, 'ip', ['route', 'add', 'default', 'dev', master]);
  const dataDir = `/tmp/${uid(PREFIX)}`;
  cleanup.add(async () => rmSync(dataDir, { recursive: true, force: true }));
  const conf = {
    cniVersion: '1.0.0',
    name: uid(PREFIX),
    type: 'macvlan',
    master,
    ipam: {
      type: 'host-local',
      subnet: `${subnet}0/24`,
      rangeStart: `${subnet}10`,
      dataDir,
      routes: [{ dst: '0.0.0.0/0' }],
      gateway: `${subnet}254`,
    },
    ...extra,
  };
  return { host, peer, master, subnet, dataDir, conf };
}

async function call(
  l: Lab,
  command: string,
  ns: TestNetns | undefined,
  id: string,
  opts: { conf?: Record<string, unknown>; prevResult?: unknown; ref?: boolean; ifname?: string } = {},
): Promise<PluginRun> {
  return runPlugin('macvlan', {
    command,
    containerId: id,
    netns: ns?.path ?? '',
    ifname: opts.ifname ?? 'eth0',
    config: { ...(opts.conf ?? l.conf), ...(opts.prevResult ? { prevResult: opts.prevResult } : {}) },
    hostNetns: l.host.path,
    ...(opts.ref ? { binDir: REF_BIN, path: REF_BIN } : {}),
  });
}

async function attach(
  l: Lab,
  opts: { conf?: Record<string, unknown>; ref?: boolean; ifname?: string; ns?: TestNetns } = {},
): Promise<{ ns: TestNetns; id: string; res: Record<string, unknown> }> {
  const ns = opts.ns ?? (await makeNetns(cleanup, PREFIX));
  const id = uid(PREFIX);
  const r = await call(l, 'ADD', ns, id, opts);
  expect(r.exitCode, r.stdout + r.stderr).toBe(0);
  cleanup.add(() => call(l, 'DEL', ns, id, { ...opts, prevResult: r.json }));
  return { ns, id, res: r.json! };
}

const ipOf = (res: Record<string, unknown>): string => (res.ips as Array<{ address: string }>)[0].address.split('/')[0];
const details = async (
  ns: TestNetns,
  dev = 'eth0',
): Promise<{ mtu: number; address: string; link?: string; linkinfo: { info_kind: string; info_data: { mode: string } } }> =>
  (
    JSON.parse((await inNs(ns, 'ip', ['-j', '-d', 'link', 'show', 'dev', dev])).stdout) as Array<{
      mtu: number;
      address: string;
      linkinfo: { info_kind: string; info_data: { mode: string } };
    }>
  )[0];

describe('macvlan: config (pure)', () => {
  it('mode defaults to bridge, MAC precedence runtimeConfig > CNI_ARGS > mac, MTU bounded by the master, add command', () => {
    const s = resolveMacvlan(
      { name: 'n', mac: '02:00:00:00:00:01', runtimeConfig: { mac: '02:00:00:00:00:02' } },
      { args: new Map([['MAC', '02:00:00:00:00:03']]) },
    );
    expect([s.mode, s.mac, s.master, s.layer3, s.linkInContainer]).toEqual(['bridge', '02:00:00:00:00:02', undefined, false, false]);
    expect(resolveMacvlan({ name: 'n', mac: '02:00:00:00:00:01' }, { args: new Map([['MAC', '02:00:00:00:00:03']]) }).mac).toBe(
      '02:00:00:00:00:03',
    );
    expect(() => resolveMacvlan({ name: 'n', master: 'a/b' }, { args: new Map() })).toThrow(/master/);
    expect(() => resolveMacvlan({ name: 'n', mac: '01:00:00:00:00:01' }, { args: new Map() })).toThrow(/multicast/);
    expect(() => checkMtu(9000, 1500)).toThrow(/invalid MTU 9000, must be \[0, master MTU\(1500\)\]/);
    checkMtu(1500, 1500);
    const cmd = macvlanAddCommand({ ...s, mtu: 1400, mode: 'vepa' }, 'ens1', 'mvtmp', '/run/netns/x');
    expect(cmd).toEqual([
      'link',
      'add',
      'link',
      'ens1',
      'name',
      'mvtmp',
      'mtu',
      '1400',
      'address',
      '02:00:00:00:00:02',
      'netns',
      '/run/netns/x',
      'type',
      'macvlan',
      'mode',
      'vepa',
    ]);
  });
});

describe.skipIf(lacks)('macvlan: kernel', () => {
  it('bridge mode: containers reach each other and the outside; same result and link as the reference; DEL removes the link and the reservation', async () => {
    const l = await lab({ mtu: 1400 });
    const a = await attach(l);
    const b = await attach(l);
    expect((await inNs(a.ns, 'ping', ['-c1', '-W2', ipOf(b.res)], true)).exitCode).toBe(0);
    expect((await inNs(a.ns, 'ping', ['-c1', '-W2', `${l.subnet}254`], true)).exitCode).toBe(0);
    const r = await attach(l, { ref: true });
    const norm = (res: Record<string, unknown>, ns: TestNetns): string =>
      JSON.stringify(res)
        .replaceAll(ns.path, 'NS')
        .replace(/"mac":"[0-9a-f:]+"/, '"mac":"M"')
        .replace(/"address":"[^"]+"/, '"address":"A"');
    expect(norm({ ...a.res, dns: undefined }, a.ns)).toBe(norm({ ...r.res, dns: undefined }, r.ns));
    const [mine, theirs] = [await details(a.ns), await details(r.ns)];
    expect([mine.mtu, mine.linkinfo.info_kind, mine.linkinfo.info_data.mode]).toEqual([
      theirs.mtu,
      theirs.linkinfo.info_kind,
      theirs.linkinfo.info_data.mode,
    ]);
    expect(mine.mtu).toBe(1400);
    expect(mine.address).toBe((a.res.interfaces as Array<{ mac: string }>)[0].mac);
    for (const p of [a, b]) expect((await call(l, 'DEL', p.ns, p.id, { prevResult: p.res })).exitCode).toBe(0);
    expect((await inNs(a.ns, 'ip', ['link', 'show', 'eth0'], true)).exitCode).not.toBe(0);
    expect((await call(l, 'DEL', a.ns, a.id)).exitCode).toBe(0);
    expect((await call(l, 'DEL', undefined, a.id)).exitCode).toBe(0);
    for (const p of [a, b]) expect(existsSync(`${l.dataDir}/${l.conf.name as string}/${ipOf(p.res)}`)).toBe(false);
    expect(existsSync(`${l.dataDir}/${l.conf.name as string}/${ipOf(r.res)}`)).toBe(true);
  });

  it('private mode isolates containers on one master; the default master is the default-route interface; MTU above the master refused (7)', async () => {
    const l = await lab({ mode: 'private', master: undefined });
    const a = await attach(l);
    const b = await attach(l);
    expect((await details(a.ns)).linkinfo.info_data.mode).toBe('private');
    expect((await inNs(a.ns, 'ping', ['-c1', '-W1', ipOf(b.res)], true)).exitCode).not.toBe(0);
    expect((await inNs(a.ns, 'ping', ['-c1', '-W2', `${l.subnet}254`], true)).exitCode).toBe(0);
    const ns = await makeNetns(cleanup, PREFIX);
    const r = await call(l, 'ADD', ns, uid(PREFIX), { conf: { ...l.conf, mtu: 9000 } });
    expect(r.json).toMatchObject({ code: 7 });
    expect(String(r.json?.msg)).toMatch(/invalid MTU 9000/);
    expect((await inNs(ns, 'ip', ['-o', 'link'])).stdout.trim().split('\n')).toHaveLength(1);
    // IPAM fails after the link was made (unknown IPAM type): the link goes
    const f = await call(l, 'ADD', ns, uid(PREFIX), { conf: { ...l.conf, ipam: { type: 'hr-no-such-ipam' } } });
    expect(f.exitCode).not.toBe(0);
    expect((await inNs(ns, 'ip', ['-o', 'link'])).stdout.trim().split('\n')).toHaveLength(1);
    // IPAM answers without addresses: refused, the link goes
    const g = await call(l, 'ADD', ns, uid(PREFIX), { conf: { ...l.conf, ipam: { type: 'static' } } });
    expect(g.exitCode).not.toBe(0);
    expect((await inNs(ns, 'ip', ['-o', 'link'])).stdout.trim().split('\n')).toHaveLength(1);
  });

  it('L2 only (no ipam), runtimeConfig MAC, passthru and vepa modes, linkInContainer', async () => {
    const l = await lab();
    const l2 = await attach(l, { conf: { ...l.conf, ipam: undefined, mode: 'vepa', runtimeConfig: { mac: '02:12:34:56:78:9a' } } });
    expect(l2.res.ips).toBeUndefined();
    const d = await details(l2.ns);
    expect([d.address, d.linkinfo.info_data.mode]).toEqual(['02:12:34:56:78:9a', 'vepa']);
    const l3 = await lab({ mode: 'passthru', ipam: undefined });
    const p = await attach(l3);
    expect((await details(p.ns)).linkinfo.info_data.mode).toBe('passthru');
    // master inside the container
    const ns = await makeNetns(cleanup, PREFIX);
    await inNs(ns, 'ip', ['link', 'add', 'inner0', 'type', 'veth', 'peer', 'name', 'inner1']);
    await inNs(ns, 'ip', ['link', 'set', 'inner0', 'up']);
    const c = await attach(l, { ns, ifname: 'net1', conf: { ...l.conf, master: 'inner0', linkInContainer: true, ipam: undefined } });
    expect((await details(ns, 'net1')).link).toBe('inner0');
    expect(
      (
        await call(l, 'CHECK', ns, c.id, {
          ifname: 'net1',
          conf: { ...l.conf, master: 'inner0', linkInContainer: true, ipam: undefined },
          prevResult: c.res,
        })
      ).exitCode,
    ).toBe(0);
  });

  it('CHECK passes, detects a wrong mode, a missing address or route, and a missing master; interop with the reference CHECK', async () => {
    const l = await lab();
    const a = await attach(l);
    const chk = (conf = l.conf): Promise<PluginRun> => call(l, 'CHECK', a.ns, a.id, { conf, prevResult: a.res });
    expect((await chk()).exitCode).toBe(0);
    expect((await call(l, 'CHECK', a.ns, a.id, { prevResult: a.res, ref: true })).exitCode).toBe(0);
    expect((await chk({ ...l.conf, mode: 'private' })).json).toMatchObject({ code: 105 });
    await inNs(a.ns, 'ip', ['route', 'del', 'default']);
    expect(String((await chk()).json?.msg)).toMatch(/route 0\.0\.0\.0\/0/);
    await inNs(a.ns, 'ip', ['addr', 'flush', 'dev', 'eth0']);
    expect(String((await chk()).json?.msg)).toMatch(/address .* is missing/);
    const r = await attach(l, { ref: true });
    expect((await call(l, 'CHECK', r.ns, r.id, { prevResult: r.res })).exitCode).toBe(0);
    expect((await call(l, 'CHECK', r.ns, r.id, { conf: { ...l.conf, master: 'hrnomaster' }, prevResult: r.res })).json).toMatchObject({
      code: 105,
    });
  });
});
