/**
 * overlay across "hosts": each host is a network namespace with its own underlay address on a
 * shared underlay bridge (in a fabric namespace that also runs etcd and plays the outside
 * world). The plugin and its agent run inside the host namespaces; pods are namespaces too.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cleanup, countEchoSources, inNs, makeNetns, type TestNetns } from './helpers/netns.ts';
import { uid } from './helpers/run.ts';
import { hostVethName } from '../shared/kernel/veth.ts';
import {
  eventually,
  makeEtcd,
  makeFabric,
  makeHost,
  ping,
  runOnHost,
  startAgent,
  type AgentProc,
  type Etcd,
  type Fabric,
  type Host,
} from './overlay-topology.ts';

const cleanup = new Cleanup();
let fab: Fabric;
let etcd: Etcd;
const hosts: Host[] = [];
const agents = new Map<string, AgentProc>();
const NETWORK = '10.213.0.0/16';
const prefix = `/cnits-test/${uid('')}`;

interface Pod {
  host: Host;
  ns: TestNetns;
  id: string;
  ip: string;
  result: Record<string, unknown>;
}
const pods: Pod[] = [];

function config(h: Host, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    cniVersion: '1.1.0',
    name: 'ovltest',
    type: 'overlay',
    network: NETWORK,
    stateDir: h.stateDir,
    nftTable: 'cnits_ovl',
    // Long enough to outlive a slow test machine without an agent; the host that leaves has a short one.
    leaseTTL: h.name === 'h4' ? 5 : 120,
    resyncInterval: 1,
    store: { type: 'etcd', endpoints: [etcd.endpoint], prefix },
    ...extra,
  };
}
const conflist = (h: Host): Record<string, unknown> => {
  const { cniVersion, name, ...plugin } = config(h);
  return { cniVersion, name, plugins: [plugin] };
};

async function addPod(h: Host): Promise<Pod> {
  const ns = await makeNetns(cleanup, 'ovlp');
  const id = uid('c');
  const r = await runOnHost(h, { command: 'ADD', containerId: id, netns: ns.path, ifname: 'eth0', config: config(h) });
  expect(r.exitCode, r.stdout + r.stderr).toBe(0);
  const ip = String((r.json?.ips as Array<{ address: string }>)[0].address).split('/')[0];
  const pod = { host: h, ns, id, ip, result: r.json! };
  pods.push(pod);
  cleanup.add(() => runOnHost(h, { command: 'DEL', containerId: id, netns: ns.path, ifname: 'eth0', config: config(h) }));
  return pod;
}

/** host-local keeps one file per reserved address under stateDir/ipam/<network name>. */
const reservationOf = (h: Host, ip: string): string => path.join(h.stateDir, 'ipam', 'ovltest', ip);

/** Nothing of a pod is left on its host: reservation, host veth, any nft line naming its address. */
async function expectPodGone(h: Host, p: { id: string; ip: string }): Promise<void> {
  expect(existsSync(reservationOf(h, p.ip)), `reservation of ${p.ip}`).toBe(false);
  expect((await inNs(h.ns, 'ip', ['link', 'show', 'dev', hostVethName(p.id, 'eth0')], true)).exitCode, 'host veth').not.toBe(0);
  const rules = (await inNs(h.ns, 'nft', ['list', 'ruleset'])).stdout;
  expect(rules.split('\n').filter((l) => new RegExp(`(^|[^0-9.])${p.ip.replace(/\./g, '\\.')}([^0-9.]|$)`).test(l))).toEqual([]);
}

/** The first pod attached on a host. */
const firstOn = (h: Host): Pod => pods.find((p) => p.host === h)!;

async function routeDsts(h: Host): Promise<string[]> {
  const r = await inNs(h.ns, 'ip', ['-json', 'route', 'show', 'dev', 'ovl.1'], true);
  if (r.exitCode !== 0) return [];
  return (JSON.parse(r.stdout || '[]') as Array<{ dst: string }>).map((x) => x.dst);
}

async function subnetOf(h: Host): Promise<string> {
  const r = await inNs(h.ns, 'ip', ['-json', '-4', 'addr', 'show', 'dev', 'ovl.1']);
  const a = (JSON.parse(r.stdout) as Array<{ addr_info: Array<{ local: string }> }>)[0].addr_info[0].local;
  return `${a}/24`;
}

/**
 * The scenario's steps, memoised: a test calls the ones it needs, so each test runs alone
 * (`vitest run test/overlay.test.ts -t '<name>'`) and in any order, and in a full run each step
 * happens once (the first test that needs it performs it).
 */
let threeStarted: Promise<Pod[]> | undefined;
/** Two pods on each of hosts 1-3, all ADDs at once (no agent yet). */
const startThree = (): Promise<Pod[]> => (threeStarted ??= Promise.all([...hosts.slice(0, 3), ...hosts.slice(0, 3)].map((h) => addPod(h))));
let clusterUp: Promise<void> | undefined;
/** startThree, then one CHECK per host (converges peers without an agent), then each host's agent. */
async function cluster(): Promise<void> {
  await startThree();
  clusterUp ??= (async () => {
    for (const h of hosts.slice(0, 3)) {
      const p = firstOn(h);
      const r = await runOnHost(h, {
        command: 'CHECK',
        containerId: p.id,
        netns: p.ns.path,
        ifname: 'eth0',
        config: { ...config(h), prevResult: p.result },
      });
      expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    }
    // From here on each host runs its agent, which keeps the short test leases alive.
    for (const h of hosts.slice(0, 3)) agents.set(h.name, startAgent(cleanup, h, conflist(h)));
  })();
  await clusterUp;
}
let h4Joined: Promise<Pod> | undefined;
/** cluster, then host 4 joins: its agent, then one pod. */
async function joinH4(): Promise<Pod> {
  await cluster();
  h4Joined ??= (async () => {
    agents.set(hosts[3].name, startAgent(cleanup, hosts[3], conflist(hosts[3])));
    return addPod(hosts[3]);
  })();
  return h4Joined;
}

beforeAll(async () => {
  fab = await makeFabric(cleanup);
  etcd = makeEtcd(cleanup, fab.dir, fab.ns, fab.gateway, 2379, 2380);
  await etcd.start();
  for (let i = 1; i <= 5; i++) hosts.push(await makeHost(cleanup, fab, i));
}, 120_000);
afterAll(() => cleanup.run(), 120_000);

describe('overlay: VXLAN pod network across hosts (etcd store)', { timeout: 120_000 }, () => {
  it('concurrent ADDs on three hosts get distinct subnets and addresses; CHECK converges peers without an agent', async () => {
    const first = await startThree();
    const ips = first.map((p) => p.ip);
    expect(new Set(ips).size).toBe(6);
    const subnets = await Promise.all(hosts.slice(0, 3).map(subnetOf));
    expect(new Set(subnets).size).toBe(3);
    for (const p of first) expect(p.ip.startsWith(subnets[hosts.indexOf(p.host)].split('.').slice(0, 3).join('.') + '.')).toBe(true);
    for (const h of hosts.slice(0, 3)) {
      const p = pods.find((x) => x.host === h)!;
      const r = await runOnHost(h, {
        command: 'CHECK',
        containerId: p.id,
        netns: p.ns.path,
        ifname: 'eth0',
        config: { ...config(h), prevResult: p.result },
      });
      expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    }
    for (const [i, h] of hosts.slice(0, 3).entries()) {
      const others = subnets.filter((_, j) => j !== i).sort();
      expect((await routeDsts(h)).sort()).toEqual(others);
    }
    await cluster();
  });

  it('pods on different hosts reach each other in both directions', async () => {
    await cluster();
    const firstPerHost = hosts.slice(0, 3).map((h) => pods.find((p) => p.host === h)!);
    const pairs = firstPerHost.flatMap((a) => firstPerHost.filter((b) => b !== a).map((b) => [a, b] as const));
    const ok = await Promise.all(pairs.map(([a, b]) => ping(a.ns, b.ip)));
    expect(ok).toEqual(pairs.map(() => true));
  });

  it('a full-size packet crosses at the derived MTU (underlay 1500 - 50), one byte more does not', async () => {
    await cluster();
    const [a, b] = [firstOn(hosts[0]), firstOn(hosts[1])];
    const link = JSON.parse((await inNs(a.ns, 'ip', ['-json', 'link', 'show', 'dev', 'eth0'])).stdout) as Array<{ mtu: number }>;
    expect(link[0].mtu).toBe(1450);
    expect(await ping(a.ns, b.ip, ['-M', 'do', '-s', String(1450 - 28)])).toBe(true);
    expect(await ping(a.ns, b.ip, ['-M', 'do', '-s', String(1450 - 27)])).toBe(false);
  });

  it('masquerades traffic leaving the cluster network only', async () => {
    await cluster();
    // Count echo requests by source where they arrive (the plugin's own table is re-applied by
    // reconciles, which resets its counters).
    const seen = (ns: TestNetns, sources: string[]) => countEchoSources(cleanup, ns, sources);
    const [a, c] = [firstOn(hosts[0]), firstOn(hosts[2])];
    // Pod to pod across hosts: the source address is kept.
    const atC = await seen(c.ns, [a.ip]);
    expect(await ping(a.ns, c.ip)).toBe(true);
    expect((await atC())[a.ip]).toBeGreaterThan(0);
    // Leaving the cluster network: the fabric (no route to pod subnets) sees the host's address.
    const atFab = await seen(fab.ns, [hosts[0].ip, a.ip]);
    expect(await ping(a.ns, fab.gateway)).toBe(true);
    const f = await atFab();
    expect(f[hosts[0].ip]).toBeGreaterThan(0);
    expect(f[a.ip]).toBe(0);
  });

  it('a host that joins later is reachable from existing pods and reaches them', async () => {
    const p4 = await joinH4();
    const p1 = firstOn(hosts[0]);
    const ok1 = await eventually(() => ping(p1.ns, p4.ip), 40);
    if (!ok1) console.log([...agents.entries()].map(([k, a]) => `--- ${k}\n${a.log()}`).join('\n'));
    expect(ok1).toBe(true);
    expect(await ping(p4.ns, p1.ip)).toBe(true);
    expect(await ping(p4.ns, firstOn(hosts[2]).ip)).toBe(true);
  });

  it('the agent re-creates a deleted VXLAN device', async () => {
    await cluster();
    const h2 = hosts[1];
    const before = await routeDsts(h2);
    expect(before.length).toBeGreaterThan(0);
    await inNs(h2.ns, 'ip', ['link', 'del', 'ovl.1']);
    expect(
      await eventually(async () => {
        const now = await routeDsts(h2);
        return before.every((d) => now.includes(d));
      }, 40),
    ).toBe(true);
    expect(await eventually(() => ping(firstOn(hosts[0]).ns, firstOn(hosts[1]).ip), 20)).toBe(true);
  });

  it('a host that leaves (agent stopped, lease expired) is removed from its peers', async () => {
    await joinH4();
    const h4 = hosts[3];
    const s4 = await subnetOf(h4);
    expect(await eventually(async () => (await routeDsts(hosts[0])).includes(s4), 40)).toBe(true);
    await agents.get(h4.name)!.stop();
    const gone = await eventually(async () => {
      const all = await Promise.all(hosts.slice(0, 3).map(routeDsts));
      return all.every((d) => !d.includes(s4));
    }, 60);
    expect(gone).toBe(true);
  });

  it('rides out an etcd restart: STATUS says 51 (50 without a VTEP), ADD says 11 and leaves nothing, later joins are seen', async () => {
    await cluster();
    const h1 = hosts[0];
    await etcd.stop();
    const st = await runOnHost(h1, { command: 'STATUS', config: config(h1) });
    expect(st.exitCode).not.toBe(0);
    expect(st.json?.code).toBe(51);
    // A host that has no VTEP yet cannot offer any connectivity: 50.
    const fresh = await runOnHost(hosts[4], { command: 'STATUS', config: config(hosts[4]) });
    expect(fresh.json?.code, fresh.stdout).toBe(50);
    const ns = await makeNetns(cleanup, 'ovlp');
    const add = await runOnHost(h1, { command: 'ADD', containerId: uid('c'), netns: ns.path, ifname: 'eth0', config: config(h1) });
    expect(add.json?.code, add.stdout).toBe(11);
    expect((await inNs(ns, 'ip', ['link', 'show', 'dev', 'eth0'], true)).exitCode).not.toBe(0);
    // Existing pods keep working while the store is down.
    expect(await ping(firstOn(hosts[0]).ns, firstOn(hosts[1]).ip)).toBe(true);
    await etcd.start();
    const h5 = hosts[4];
    agents.set(h5.name, startAgent(cleanup, h5, conflist(h5)));
    const p5 = await addPod(h5);
    expect(await eventually(() => ping(firstOn(hosts[0]).ns, p5.ip), 60)).toBe(true);
    expect(await ping(p5.ns, firstOn(hosts[1]).ip)).toBe(true);
    const ok = await runOnHost(h1, { command: 'STATUS', config: config(h1) });
    expect(ok.exitCode, ok.stdout).toBe(0);
  });

  it('DEL is idempotent and works with an empty CNI_NETNS; GC releases stale attachments', async () => {
    await cluster();
    const h = hosts[2];
    const p = await addPod(h);
    expect(existsSync(reservationOf(h, p.ip))).toBe(true);
    expect(await inNs(h.ns, 'ip', ['link', 'show', 'dev', hostVethName(p.id, 'eth0')], true)).toMatchObject({ exitCode: 0 });
    for (const netns of [p.ns.path, '', '']) {
      const r = await runOnHost(h, { command: 'DEL', containerId: p.id, netns, ifname: 'eth0', config: config(h) });
      expect(r.exitCode, r.stdout).toBe(0);
      await expectPodGone(h, p);
    }
    const q = await addPod(h);
    // host-local keeps one file per reserved address under stateDir/ipam/<network name>.
    const reserved = path.join(h.stateDir, 'ipam', 'ovltest', q.ip);
    expect(existsSync(reserved)).toBe(true);
    const keep = pods.filter((x) => x.host === h && x !== q && x !== p).map((x) => ({ containerID: x.id, ifname: 'eth0' }));
    const gc = await runOnHost(h, { command: 'GC', config: { ...config(h), 'cni.dev/valid-attachments': keep } });
    expect(gc.exitCode, gc.stdout).toBe(0);
    expect(existsSync(reserved)).toBe(false);
    const kept = firstOn(h);
    expect(existsSync(path.join(h.stateDir, 'ipam', 'ovltest', kept.ip))).toBe(true);
    expect(await ping(kept.ns, firstOn(hosts[0]).ip)).toBe(true);
  });

  it('refuses encryption the kernel cannot do with code 101 naming the feature', async () => {
    const h = hosts[0];
    const ns = await makeNetns(cleanup, 'ovlp');
    for (const [mode, feature] of [
      ['wireguard', /WireGuard/],
      ['ipsec', /ESP/],
    ] as const) {
      const r = await runOnHost(h, {
        command: 'ADD',
        containerId: uid('c'),
        netns: ns.path,
        ifname: 'eth0',
        config: config(h, { encryption: mode }),
      });
      expect(r.json?.code, r.stdout).toBe(101);
      expect(String(r.json?.msg)).toMatch(feature);
    }
  });

  it('rejects bad config with code 7 naming the field', async () => {
    const h = hosts[0];
    const r = await runOnHost(h, {
      command: 'ADD',
      containerId: 'x',
      netns: '/proc/self/ns/net',
      ifname: 'eth0',
      config: config(h, { subnetLen: 8 }),
    });
    expect(r.json?.code).toBe(7);
    expect(String(r.json?.msg)).toContain('subnetLen');
  });
});

describe('overlay: file store shared by two hosts', { timeout: 120_000 }, () => {
  it('leases distinct subnets from one JSON file and connects pods across the hosts', async () => {
    const store = { type: 'file', path: path.join(fab.dir, 'leases.json') };
    const hs = [await makeHost(cleanup, fab, 11), await makeHost(cleanup, fab, 12)];
    const cfg = (h: Host): Record<string, unknown> => ({
      ...config(h),
      network: '10.214.0.0/16',
      nftTable: 'cnits_ovlf',
      stateDir: `${h.stateDir}-file`,
      leaseTTL: 120,
      store,
    });
    const run = async (h: Host): Promise<{ ns: TestNetns; ip: string; id: string; result: unknown }> => {
      const ns = await makeNetns(cleanup, 'ovlp');
      const id = uid('c');
      const r = await runOnHost(h, { command: 'ADD', containerId: id, netns: ns.path, ifname: 'eth0', config: cfg(h) });
      expect(r.exitCode, r.stdout + r.stderr).toBe(0);
      cleanup.add(() => runOnHost(h, { command: 'DEL', containerId: id, netns: ns.path, ifname: 'eth0', config: cfg(h) }));
      return { ns, id, result: r.json, ip: String((r.json?.ips as Array<{ address: string }>)[0].address).split('/')[0] };
    };
    const [a, b] = await Promise.all(hs.map(run));
    expect(a.ip.split('.').slice(0, 3)).not.toEqual(b.ip.split('.').slice(0, 3));
    // The first host to lease did not know the second yet: its next call (CHECK) converges it.
    for (const [h, p] of [
      [hs[0], a],
      [hs[1], b],
    ] as const) {
      const r = await runOnHost(h, {
        command: 'CHECK',
        containerId: p.id,
        netns: p.ns.path,
        ifname: 'eth0',
        config: { ...cfg(h), prevResult: p.result },
      });
      expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    }
    expect(await ping(a.ns, b.ip)).toBe(true);
    expect(await ping(b.ns, a.ip)).toBe(true);
  });
});

describe('overlay: IPv6 underlay', { timeout: 120_000 }, () => {
  it('derives the MTU as underlay - 70 and carries a full-size packet, one byte more does not pass', async () => {
    await inNs(fab.ns, 'ip', ['addr', 'add', 'fd00:231::fe/64', 'dev', 'ubr0', 'nodad']);
    const store = { type: 'file', path: path.join(fab.dir, 'leases6.json') };
    const hs: Host[] = [];
    for (const n of [21, 22]) {
      const ns = await makeNetns(cleanup, 'ovlh');
      const port = `u${n}${uid('')}`.slice(0, 15);
      await inNs(fab.ns, 'ip', ['link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.path]);
      await inNs(fab.ns, 'ip', ['link', 'set', port, 'master', 'ubr0', 'up']);
      for (const c of [
        ['addr', 'add', `fd00:231::${n}/64`, 'dev', 'eth0', 'nodad'],
        ['link', 'set', 'eth0', 'up'],
        ['link', 'set', 'lo', 'up'],
        ['-6', 'route', 'add', 'default', 'via', 'fd00:231::fe'],
      ])
        await inNs(ns, 'ip', c);
      hs.push({ name: `h${n}`, ns, ip: `fd00:231::${n}`, stateDir: path.join(fab.dir, `h${n}`) });
    }
    const cfg = (h: Host): Record<string, unknown> => ({
      ...config(h),
      network: '10.215.0.0/16',
      nftTable: 'cnits_ovl6',
      leaseTTL: 120,
      store,
    });
    const attached: Array<{ ns: TestNetns; ip: string; result: unknown; id: string }> = [];
    for (const h of hs) {
      const ns = await makeNetns(cleanup, 'ovlp');
      const id = uid('c');
      const r = await runOnHost(h, { command: 'ADD', containerId: id, netns: ns.path, ifname: 'eth0', config: cfg(h) });
      expect(r.exitCode, r.stdout + r.stderr).toBe(0);
      cleanup.add(() => runOnHost(h, { command: 'DEL', containerId: id, netns: ns.path, ifname: 'eth0', config: cfg(h) }));
      attached.push({ ns, id, result: r.json, ip: String((r.json?.ips as Array<{ address: string }>)[0].address).split('/')[0] });
    }
    // The first host leased before the second existed: CHECK brings it up to date.
    const c = await runOnHost(hs[0], {
      command: 'CHECK',
      containerId: attached[0].id,
      netns: attached[0].ns.path,
      ifname: 'eth0',
      config: { ...cfg(hs[0]), prevResult: attached[0].result },
    });
    expect(c.exitCode, c.stdout + c.stderr).toBe(0);
    const vx = JSON.parse((await inNs(hs[0].ns, 'ip', ['-json', '-d', 'link', 'show', 'dev', 'ovl.1'])).stdout) as Array<{
      mtu: number;
      linkinfo: { info_data: { local6?: string } };
    }>;
    expect(vx[0].mtu).toBe(1430);
    expect(vx[0].linkinfo.info_data.local6).toBe('fd00:231::21');
    const [a, b] = attached;
    expect(await ping(a.ns, b.ip, ['-M', 'do', '-s', String(1430 - 28)])).toBe(true);
    expect(await ping(b.ns, a.ip, ['-M', 'do', '-s', String(1430 - 28)])).toBe(true);
    expect(await ping(a.ns, b.ip, ['-M', 'do', '-s', String(1430 - 27)])).toBe(false);
  });
});
