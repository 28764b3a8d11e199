/**
 * Regression tests for the hardening issue (#10): each reproduces a defect a fault and
 * hostile-input probe found, black box, the built executables run as a runtime runs them.
 * Every resource carries the prefix "hc" and is removed afterwards.
 */
import { execa } from 'execa';
import { existsSync, mkdirSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup, deleteLink, inNs, linkExists, makeNetns, sh, type TestNetns } from './helpers/netns.ts';
import { runCnitool } from './helpers/cnitool.ts';
import { BIN, runPlugin, uid, type PluginRun } from './helpers/run.ts';
import { hostVethCandidates, hostVethName } from '../shared/kernel/veth.ts';
import { IptablesMasquerade } from '../shared/firewall/masquerade-iptables.ts';

const cleanup = new Cleanup();
afterEach(() => cleanup.run());

/** HC_BIN=<dir> runs these tests against other executables (a build of the code before the fixes). */
const BINDIR = process.env.HC_BIN ?? BIN;

interface Net {
  id: string;
  br: string;
  prefix: string;
  table: string;
  dataDir: string;
  name: string;
}

function makeNet(): Net {
  const id = uid('');
  const n = parseInt(id.slice(0, 4), 16);
  const net: Net = {
    id,
    br: `hcbr${id}`,
    prefix: `10.${100 + (n % 100)}.${n >> 8}.`,
    table: `hc_${id}`,
    dataDir: `/var/lib/cni/hc-${id}`,
    name: `hcnet-${id}`,
  };
  cleanup.add(async () => {
    await deleteLink(net.br);
    await sh('nft', ['delete', 'table', 'inet', net.table], { allowFail: true });
    rmSync(net.dataDir, { recursive: true, force: true });
  });
  return net;
}

/** A bridge network whose pool holds exactly two addresses (.2 and .3), masquerade on. */
function twoAddressConf(net: Net): Record<string, unknown> {
  return {
    cniVersion: '1.1.0',
    name: net.name,
    type: 'bridge',
    bridge: net.br,
    isGateway: true,
    ipMasq: true,
    nftTable: net.table,
    ipam: {
      type: 'host-local',
      ranges: [[{ subnet: `${net.prefix}0/24`, rangeStart: `${net.prefix}2`, rangeEnd: `${net.prefix}3` }]],
      dataDir: net.dataDir,
    },
  };
}

const bridge = (command: string, id: string, ns: TestNetns | string, config: unknown, args?: string, ifname = 'eth0'): Promise<PluginRun> =>
  runPlugin('bridge', {
    command,
    containerId: id,
    netns: typeof ns === 'string' ? ns : ns.path,
    ifname,
    config,
    args,
    binDir: BINDIR,
    path: BINDIR,
  });

const ipOf = (r: PluginRun): string | undefined => (r.json?.ips as Array<{ address: string }> | undefined)?.[0]?.address.split('/')[0];

function reservations(net: Net): string[] {
  const dir = `${net.dataDir}/${net.name}`;
  return existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f))
        .sort()
    : [];
}

/** Saddrs of the masquerade rules in the network's table. */
async function masqSources(net: Net): Promise<string[]> {
  const r = await sh('nft', ['-j', 'list', 'table', 'inet', net.table], { allowFail: true });
  if (r.exitCode !== 0) return [];
  const out: string[] = [];
  for (const o of (
    JSON.parse(r.stdout) as {
      nftables: Array<{ rule?: { expr: Array<{ match?: { left?: { payload?: { field?: string } }; right?: unknown } }> } }>;
    }
  ).nftables) {
    for (const e of o.rule?.expr ?? [])
      if (e.match?.left?.payload?.field === 'saddr' && typeof e.match.right === 'string') out.push(e.match.right);
  }
  return out.sort();
}

async function pingable(ns: TestNetns, ip: string): Promise<boolean> {
  return (await inNs(ns, 'ping', ['-c', '1', '-w', '3', ip], true)).exitCode === 0;
}

describe('item 2: a repeated ADD of a live attachment never releases what it holds', () => {
  for (const variant of ['plain', 'CNI_ARGS IP=<other>'] as const) {
    it(`ADD A; ADD A again → 102; ADD B; ADD C does not get A's address (${variant})`, async () => {
      const net = makeNet();
      const c = twoAddressConf(net);
      const [nsA, nsB, nsC] = [await makeNetns(cleanup, 'hcns'), await makeNetns(cleanup, 'hcns'), await makeNetns(cleanup, 'hcns')];
      const a = await bridge('ADD', 'hc-a', nsA, c);
      expect(a.exitCode, a.stdout).toBe(0);
      expect(ipOf(a)).toBe(`${net.prefix}2`);
      expect(await masqSources(net)).toEqual([`${net.prefix}2`]);
      const again = await bridge('ADD', 'hc-a', nsA, c, variant === 'plain' ? undefined : `IP=${net.prefix}3`);
      expect(again.exitCode).toBe(1);
      expect(again.json?.code).toBe(102);
      // A keeps its address, its rule and its connectivity
      expect(reservations(net)).toEqual([`${net.prefix}2`]);
      expect(await masqSources(net)).toEqual([`${net.prefix}2`]);
      expect(await pingable(nsA, `${net.prefix}1`)).toBe(true);
      const b = await bridge('ADD', 'hc-b', nsB, c);
      expect(b.exitCode, b.stdout).toBe(0);
      expect(ipOf(b)).toBe(`${net.prefix}3`);
      const cc = await bridge('ADD', 'hc-c', nsC, c);
      expect(cc.exitCode).toBe(1);
      expect(cc.json?.code).toBe(103);
      expect(reservations(net)).toEqual([`${net.prefix}2`, `${net.prefix}3`]);
      for (const [id, ns] of [
        ['hc-a', nsA],
        ['hc-b', nsB],
        ['hc-c', nsC],
      ] as const)
        expect((await bridge('DEL', id, ns, c)).exitCode).toBe(0);
      expect(reservations(net)).toEqual([]);
      expect(await masqSources(net)).toEqual([]);
    });
  }
});

describe('item 2: a live attachment the names do not reveal (host end renamed, as another implementation names it)', () => {
  for (const backend of ['nftables', 'iptables'] as const) {
    it(`ADD again fails with 102; the address is not released and the masquerade rules are not duplicated (${backend})`, async () => {
      const net = makeNet();
      const chain = `HC-${net.id}`.toUpperCase();
      if (backend === 'iptables') cleanup.add(() => new IptablesMasquerade(chain).removeChain());
      const c = { ...twoAddressConf(net), ipMasqBackend: backend, iptablesChain: chain };
      const rules = async (): Promise<string[]> =>
        backend === 'nftables'
          ? masqSources(net)
          : (await sh('iptables-save', ['-t', 'nat'])).stdout.split('\n').filter((l) => l.startsWith(`-A ${chain} `));
      const [nsA, nsB] = [await makeNetns(cleanup, 'hcns'), await makeNetns(cleanup, 'hcns')];
      const a = await bridge('ADD', 'hc-r', nsA, c);
      expect(a.exitCode, a.stdout).toBe(0);
      const before = await rules();
      expect(before.length).toBeGreaterThan(0);
      const renamed = uid('hcv');
      await sh('ip', ['link', 'set', 'dev', hostVethName('hc-r', 'eth0'), 'name', renamed]);
      const again = await bridge('ADD', 'hc-r', nsA, c);
      expect(again.json?.code, again.stdout).toBe(102);
      expect(reservations(net)).toEqual([`${net.prefix}2`]);
      expect(await rules()).toEqual(before);
      expect(await pingable(nsA, `${net.prefix}1`)).toBe(true);
      const b = await bridge('ADD', 'hc-b', nsB, c);
      expect(ipOf(b)).toBe(`${net.prefix}3`);
      for (const [id, ns] of [
        ['hc-r', nsA],
        ['hc-b', nsB],
      ] as const)
        expect((await bridge('DEL', id, ns, c)).exitCode).toBe(0);
      expect(await linkExists(renamed)).toBe(false);
      expect(reservations(net)).toEqual([]);
      expect(await rules()).toEqual([]);
    });
  }
});

describe('item 2: overlay (bridge by delegation, inside a host netns of the test)', () => {
  it('a repeated ADD of a live pod fails with 102 and leaves its address, and the next pod gets another', async () => {
    const dir = `/tmp/hc-ovl-${uid('')}`;
    mkdirSync(dir, { recursive: true });
    cleanup.add(async () => rmSync(dir, { recursive: true, force: true }));
    const fab = await makeNetns(cleanup, 'hcfab');
    const host = await makeNetns(cleanup, 'hch');
    await inNs(fab, 'ip', ['link', 'add', 'hcu0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host.path]);
    await inNs(fab, 'ip', ['addr', 'add', '192.168.232.254/24', 'dev', 'hcu0']);
    await inNs(fab, 'ip', ['link', 'set', 'hcu0', 'up']);
    await sh('ip', ['-n', host.name, '-batch', '-'], {
      input: 'addr add 192.168.232.1/24 dev eth0\nlink set eth0 up\nlink set lo up\nroute add default via 192.168.232.254\n',
    });
    const config = {
      cniVersion: '1.1.0',
      name: 'hcovl',
      type: 'overlay',
      network: '10.215.0.0/16',
      stateDir: path.join(dir, 'state'),
      nftTable: 'hc_ovl',
      leaseTTL: 120,
      store: { type: 'file', path: path.join(dir, 'leases.json') },
    };
    const ovl = (command: string, id: string, ns: TestNetns, args?: string): Promise<PluginRun> =>
      runPlugin('overlay', {
        command,
        containerId: id,
        netns: ns.path,
        ifname: 'eth0',
        config,
        args,
        hostNetns: host.path,
        binDir: BINDIR,
        path: BINDIR,
      });
    const [pa, pb] = [await makeNetns(cleanup, 'hcns'), await makeNetns(cleanup, 'hcns')];
    const a = await ovl('ADD', 'hc-oa', pa);
    expect(a.exitCode, a.stdout + a.stderr).toBe(0);
    const ipA = ipOf(a)!;
    const store = path.join(dir, 'state', 'ipam', 'hcovl');
    for (const args of [undefined, `IP=${ipA.replace(/\.\d+$/, '.77')}`]) {
      const again = await ovl('ADD', 'hc-oa', pa, args);
      expect(again.json?.code, again.stdout).toBe(102);
      expect(readdirSync(store)).toContain(ipA);
    }
    const b = await ovl('ADD', 'hc-ob', pb);
    expect(b.exitCode, b.stdout + b.stderr).toBe(0);
    expect(ipOf(b)).not.toBe(ipA);
    expect(await pingable(pa, ipOf(b)!)).toBe(true);
    for (const [id, ns] of [
      ['hc-oa', pa],
      ['hc-ob', pb],
    ] as const)
      expect((await ovl('DEL', id, ns)).exitCode).toBe(0);
  });
});

describe('item 3: colliding host veth names', () => {
  const [A, B] = ['rlcoll31894', 'rlcoll35609'];

  it('the IDs of the issue collide in our hash', () => {
    expect(hostVethName(A, 'eth0')).toBe(hostVethName(B, 'eth0'));
    expect(hostVethCandidates(A, 'eth0')[1]).not.toBe(hostVethCandidates(B, 'eth0')[1]);
  });

  it('a DEL of the colliding ID (never added) leaves the first container attached', async () => {
    const net = makeNet();
    const c = twoAddressConf(net);
    const [nsA, nsB] = [await makeNetns(cleanup, 'hcns'), await makeNetns(cleanup, 'hcns')];
    const a = await bridge('ADD', A, nsA, c);
    expect(a.exitCode, a.stdout).toBe(0);
    const r = await bridge('DEL', B, nsB, c);
    expect(r.exitCode, r.stdout).toBe(0);
    expect(await linkExists(hostVethName(A, 'eth0'))).toBe(true);
    expect(await pingable(nsA, `${net.prefix}1`)).toBe(true);
    expect((await bridge('DEL', A, nsA, c)).exitCode).toBe(0);
    expect(await linkExists(hostVethName(A, 'eth0'))).toBe(false);
  });

  it('the second ADD takes another host name; each DEL removes only its own pair', async () => {
    const net = makeNet();
    const c = twoAddressConf(net);
    const [nsA, nsB] = [await makeNetns(cleanup, 'hcns'), await makeNetns(cleanup, 'hcns')];
    const a = await bridge('ADD', A, nsA, c);
    expect(a.exitCode, a.stdout).toBe(0);
    const b = await bridge('ADD', B, nsB, c);
    expect(b.exitCode, b.stdout).toBe(0);
    const hostA = (a.json?.interfaces as Array<{ name: string }>)[1].name;
    const hostB = (b.json?.interfaces as Array<{ name: string }>)[1].name;
    expect(hostA).toBe(hostVethName(A, 'eth0'));
    expect(hostB).toBe(hostVethCandidates(B, 'eth0')[1]);
    expect(await pingable(nsA, ipOf(b)!)).toBe(true);
    // DEL without prevResult (the runtime lost it), then with it: A stays
    expect((await bridge('DEL', B, nsB, c)).exitCode).toBe(0);
    expect((await bridge('DEL', B, nsB, { ...c, prevResult: b.json })).exitCode).toBe(0);
    expect(await linkExists(hostB)).toBe(false);
    expect(await linkExists(hostA)).toBe(true);
    expect(await pingable(nsA, `${net.prefix}1`)).toBe(true);
    expect(reservations(net)).toEqual([ipOf(a)]);
    expect((await bridge('DEL', A, nsA, c)).exitCode).toBe(0);
    expect(await linkExists(hostA)).toBe(false);
  });
});

/** A plugin run with a time bound (a delegation loop must not hang the suite). */
async function bounded(
  name: string,
  env: Record<string, string>,
  config: unknown,
  ms = 15_000,
): Promise<PluginRun & { timedOut: boolean }> {
  const r = await execa(path.join(BINDIR, name), [], {
    input: JSON.stringify(config),
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', CNI_PATH: BINDIR, ...env },
    extendEnv: false,
    reject: false,
    timeout: ms,
    killSignal: 'SIGKILL',
  });
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(String(r.stdout)) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), json, timedOut: Boolean(r.timedOut) };
}

describe('item 4: ipam.type naming an interface plugin, delegation depth', () => {
  it('bridge with ipam.type naming an interface or chained plugin (bridge, host-device, overlay, portmap, loopback) is refused with code 7; DEL is not blocked', async () => {
    const ns = await makeNetns(cleanup, 'hcns');
    const env = { CNI_CONTAINERID: 'hc-loop', CNI_NETNS: ns.path, CNI_IFNAME: 'eth0' };
    const br = uid('hcbr');
    for (const ipamType of ['bridge', 'host-device', 'overlay', 'portmap', 'loopback']) {
      const config = { cniVersion: '1.1.0', name: 'hcloop', type: 'bridge', bridge: br, ipam: { type: ipamType } };
      const r = await bounded('bridge', { ...env, CNI_COMMAND: 'ADD' }, config);
      expect(r.timedOut).toBe(false);
      expect(r.json?.code, r.stdout).toBe(7);
      expect(String(r.json?.msg)).toMatch(/ipam\.type/);
      const d = await bounded('bridge', { ...env, CNI_COMMAND: 'DEL' }, config);
      expect(d.exitCode, d.stdout).toBe(0);
    }
    expect(await linkExists(br)).toBe(false);
  });

  it('host-device with ipam.type "host-device" is refused with code 7 and gives the device back', async () => {
    const ns = await makeNetns(cleanup, 'hcns');
    const dev = uid('hcd');
    await sh('ip', ['link', 'add', dev, 'type', 'veth', 'peer', 'name', `${dev}p`]);
    cleanup.add(() => deleteLink(dev));
    const dataDir = `/run/hc-hostdev-${uid('')}`;
    cleanup.add(async () => rmSync(dataDir, { recursive: true, force: true }));
    const config = { cniVersion: '1.1.0', name: 'hcloop', type: 'host-device', device: dev, dataDir, ipam: { type: 'host-device' } };
    const r = await bounded(
      'host-device',
      { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'hc-loop', CNI_NETNS: ns.path, CNI_IFNAME: 'eth0' },
      config,
    );
    expect(r.timedOut).toBe(false);
    expect(r.json?.code, r.stdout).toBe(7);
    expect(await linkExists(dev)).toBe(true);
  });

  it.skipIf(process.env.HC_BIN !== undefined)(
    'with CNI_TS_NO_INPROCESS=1 (one process per delegate) it is refused before any exec',
    async () => {
      const ns = await makeNetns(cleanup, 'hcns');
      const r = await bounded(
        'bridge',
        { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'hc-loop', CNI_NETNS: ns.path, CNI_IFNAME: 'eth0', CNI_TS_NO_INPROCESS: '1' },
        { cniVersion: '1.1.0', name: 'hcloop', type: 'bridge', bridge: 'hcbrx', ipam: { type: 'bridge' } },
      );
      expect(r.timedOut).toBe(false);
      expect(r.json?.code, r.stdout).toBe(7);
    },
  );

  it('CNI_TS_DELEGATION_DEPTH bounds delegation across processes: at the bound the delegate is refused with code 7', async () => {
    const net = makeNet();
    const ns = await makeNetns(cleanup, 'hcns');
    const c = twoAddressConf(net);
    const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'hc-depth', CNI_NETNS: ns.path, CNI_IFNAME: 'eth0', CNI_TS_NO_INPROCESS: '1' };
    const deep = await bounded('bridge', { ...env, CNI_TS_DELEGATION_DEPTH: '4' }, c);
    expect(deep.json?.code, deep.stdout).toBe(7);
    expect(String(deep.json?.msg)).toMatch(/levels deep/);
    expect(reservations(net)).toEqual([]);
    const ok = await bounded('bridge', { ...env, CNI_TS_DELEGATION_DEPTH: '3' }, c);
    expect(ok.exitCode, ok.stdout).toBe(0);
    expect((await bridge('DEL', 'hc-depth', ns, c)).exitCode).toBe(0);
  });
});

describe('item 5: cnitool validates container ID, ifname and network name before building a path', () => {
  it('del with an ifname or container ID that climbs out of the cache dir deletes nothing outside it', async () => {
    const dir = `/tmp/hc-cnitool-${uid('')}`;
    cleanup.add(async () => rmSync(dir, { recursive: true, force: true }));
    const confDir = path.join(dir, 'conf');
    const cacheDir = path.join(dir, 'cache');
    mkdirSync(confDir, { recursive: true });
    mkdirSync(path.join(cacheDir, 'results'), { recursive: true });
    writeFileSync(
      path.join(confDir, 'hc.conflist'),
      JSON.stringify({ cniVersion: '1.1.0', name: 'hcnet', plugins: [{ type: 'loopback' }] }),
    );
    const victim = path.join(dir, 'victim');
    const e = { confDir, cacheDir, cniPath: BINDIR, binDir: BINDIR };
    for (const [flag, value] of [
      ['-i', 'x/../../../victim'],
      ['--container-id', 'c/../../../victim'],
      ['-i', '..'],
      ['-i', 'a b'],
      ['-i', 'sixteen-bytes-xx'],
      ['--container-id=-leading-dash', ''],
    ] as const) {
      writeFileSync(victim, 'not json, not a cache file');
      const args = ['del', 'hcnet', '--json', ...(flag === '-i' ? ['--container-id', 'cid'] : []), flag, ...(value ? [value] : [])];
      const r = await runCnitool(args, e);
      expect(existsSync(victim), `${flag} ${value}`).toBe(true);
      expect(r.exitCode, `${flag} ${value}: ${r.stdout} ${r.stderr}`).toBe(1);
      expect([4, 7]).toContain(r.json?.code);
    }
    // a plain one works
    expect((await runCnitool(['del', 'hcnet', '--container-id', 'cid', '-i', 'eth0'], e)).exitCode).toBe(0);
  });
});

describe('item 8: host-local store hygiene and subnets', () => {
  const hl = (command: string, config: unknown, id = 'hc-c1'): Promise<PluginRun> =>
    runPlugin('host-local', { command, containerId: id, netns: '/proc/self/ns/net', ifname: 'eth0', config, binDir: BINDIR, path: BINDIR });
  const conf = (dataDir: string, subnet = '10.77.0.0/24', name = 'hcnet'): Record<string, unknown> => ({
    cniVersion: '1.1.0',
    name,
    ipam: { type: 'host-local', dataDir, ranges: [[{ subnet }]] },
  });

  it('the next ADD removes temporaries of killed writers (dead pid, or old), not fresh ones of live writers', async () => {
    const dataDir = `/var/lib/cni/hc-${uid('')}`;
    cleanup.add(async () => rmSync(dataDir, { recursive: true, force: true }));
    const store = path.join(dataDir, 'hcnet');
    mkdirSync(store, { recursive: true });
    // a pid that is not running: a child that has exited
    const dead = (await execa('sh', ['-c', 'echo $$'])).stdout.trim();
    const past = new Date(Date.now() - 20_000);
    const files = {
      deadOld: `.cnits-tmp.${dead}.aaaaaaaaaaaa`,
      veryOld: `.cnits-tmp.1.bbbbbbbbbbbb`,
      liveFresh: `.cnits-tmp.1.cccccccccccc`,
    };
    for (const f of Object.values(files)) writeFileSync(path.join(store, f), 'hc-x\r\neth0');
    utimesSync(path.join(store, files.deadOld), past, past);
    const ancient = new Date(Date.now() - 120_000);
    utimesSync(path.join(store, files.veryOld), ancient, ancient);
    const r = await hl('ADD', conf(dataDir));
    expect(r.exitCode, r.stdout).toBe(0);
    const left = readdirSync(store).filter((f) => f.startsWith('.cnits-tmp.'));
    expect(left).toEqual([files.liveFresh]);
    expect((await hl('DEL', conf(dataDir))).exitCode).toBe(0);
  });

  it('a read-only store is reported as EROFS (code 5), not ENOENT', async (ctx) => {
    const mnt = `/tmp/hc-ro-${uid('')}`;
    mkdirSync(mnt);
    cleanup.add(async () => {
      await sh('umount', [mnt], { allowFail: true });
      rmSync(mnt, { recursive: true, force: true });
    });
    const m = await sh('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', mnt], { allowFail: true });
    if (m.exitCode !== 0) {
      const why = `cannot mount a read-only tmpfs here: ${m.stderr.trim() || `exit ${String(m.exitCode)}`}`;
      console.log(`skipped: ${why}`);
      ctx.skip(why);
    }
    const r = await hl('ADD', conf(path.join(mnt, 'data')));
    expect(r.json?.code, r.stdout).toBe(5);
    expect(`${String(r.json?.msg)} ${String(r.json?.details)}`).toMatch(/EROFS/);
    expect(`${String(r.json?.msg)} ${String(r.json?.details)}`).not.toMatch(/ENOENT/);
  });

  it('subnets the reference rejects are refused with code 7 naming the field', async () => {
    const dataDir = `/var/lib/cni/hc-${uid('')}`;
    cleanup.add(async () => rmSync(dataDir, { recursive: true, force: true }));
    for (const subnet of ['10.0.0.1/24', '0.0.0.0/0', '::/0', '::ffff:10.0.0.0/120']) {
      const r = await hl('ADD', conf(dataDir, subnet));
      expect(r.json?.code, `${subnet}: ${r.stdout}`).toBe(7);
      expect(String(r.json?.msg)).toMatch(/ipam\.ranges\[0\]\[0\]\.subnet/);
    }
    expect(
      existsSync(path.join(dataDir, 'hcnet')) ? readdirSync(path.join(dataDir, 'hcnet')).filter((f) => /^[0-9a-f.:]+$/.test(f)) : [],
    ).toEqual([]);
  });
});

describe('item 9: DEL validates only what it needs; cniVersion null is 0.1.0', () => {
  it('a schema-invalid config does not block teardown: DEL removes the veth, the rule and releases IPAM', async () => {
    const net = makeNet();
    const c = twoAddressConf(net);
    const ns = await makeNetns(cleanup, 'hcns');
    const a = await bridge('ADD', 'hc-del', ns, c);
    expect(a.exitCode, a.stdout).toBe(0);
    const ipam = c.ipam as Record<string, unknown>;
    const broken = {
      ...c,
      mtu: 'big',
      vlanTrunk: 'x',
      hairpinMode: 'yes',
      logLevel: 'loud',
      dns: { nameservers: ['not-an-ip'] },
      ipam: { ...ipam, ranges: [[{ subnet: 42, gateway: 'x' }]], routes: 'none' },
    };
    const r = await bridge('DEL', 'hc-del', ns, broken);
    expect(r.exitCode, r.stdout).toBe(0);
    expect(reservations(net)).toEqual([]);
    expect(await masqSources(net)).toEqual([]);
    expect(await linkExists('eth0', ns)).toBe(false);
    // ADD keeps validating everything
    const again = await bridge('ADD', 'hc-del', ns, broken);
    expect(again.json?.code).toBe(7);
    // a name DEL cannot use is still an error
    expect((await bridge('DEL', 'hc-del', ns, { ...c, name: '../x' })).json?.code).toBe(7);
  });

  it('portmap DEL with conditions and ports that would be refused on ADD succeeds (nothing of it exists)', async () => {
    const table = `hc_pm_${uid('')}`;
    cleanup.add(() => sh('nft', ['delete', 'table', 'inet', table], { allowFail: true }));
    const config = {
      cniVersion: '1.1.0',
      name: 'hcpm',
      type: 'portmap',
      nftTable: table,
      conditionsV4: ['ip saddr 1.2.3.4; flush ruleset'],
      runtimeConfig: { portMappings: [{ hostPort: 70000, containerPort: 1, protocol: 'tcp' }] },
    };
    const env = { command: 'DEL', containerId: 'hc-pm', netns: '/proc/self/ns/net', ifname: 'eth0', config, binDir: BINDIR, path: BINDIR };
    const r = await runPlugin('portmap', env);
    expect(r.exitCode, r.stdout).toBe(0);
    expect(
      (await runPlugin('portmap', { ...env, command: 'ADD', config: { ...config, prevResult: { cniVersion: '1.1.0', ips: [] } } })).json
        ?.code,
    ).toBe(7);
  });

  it('cniVersion null is read as 0.1.0 (the reference does), not code 6', async () => {
    const dataDir = `/var/lib/cni/hc-${uid('')}`;
    cleanup.add(async () => rmSync(dataDir, { recursive: true, force: true }));
    const config = { cniVersion: null, name: 'hcnull', ipam: { type: 'host-local', dataDir, subnet: '10.78.0.0/24' } };
    const r = await runPlugin('host-local', {
      command: 'ADD',
      containerId: 'hc-null',
      netns: '/proc/self/ns/net',
      ifname: 'eth0',
      config,
      binDir: BINDIR,
      path: BINDIR,
    });
    expect(r.exitCode, r.stdout).toBe(0);
    expect(r.json?.cniVersion).toBe('0.1.0');
    expect((r.json?.ip4 as { ip: string }).ip).toBe('10.78.0.2/24');
  });
});
