/**
 * containerd 1.6 through CRI drives our loopback + bridge + host-local + portmap as kubelet
 * would: RunPodSandbox (ADD), pods that reach each other, a hostPort reached from 127.0.0.1 and
 * an "outside" namespace, StopPodSandbox (DEL with the netns) and RemovePodSandbox (DEL again
 * with CNI_NETNS empty), and nothing left afterwards. A private containerd (own config, root,
 * state, socket) is started for this file and stopped at the end.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { Cleanup, inNs, sh } from './helpers/netns.ts';
import { uid } from './helpers/run.ts';
import {
  bridgePorts,
  cachedResultsOf,
  cleanupNetwork,
  expectScopedMasquerade,
  firewallLinesMentioning,
  masqueradeLinesOf,
  httpBody,
  logLines,
  makeOutside,
  makeTempTree,
  randomHostPort,
  randomSubnet,
  reservations,
} from './helpers/runtime/common.ts';
import { bridgeConflist, type TestNetwork } from './helpers/runtime/conflist.ts';
import { makeContainerd, type Containerd } from './helpers/runtime/containerd.ts';
import { describePlan, planPlugins } from './helpers/runtime/plugins.ts';

// containerd execs `loopback` itself for lo (go-cni WithLoNetwork), so it must be in bin_dir too
const plan = await planPlugins(['bridge', 'host-local', 'portmap', 'loopback']);
const skip =
  plan.skip ||
  ((await sh('which', ['containerd', 'ctr'], { allowFail: true })).exitCode !== 0
    ? 'containerd/ctr not installed (apt-get install containerd)'
    : '');
if (skip) console.log(`runtime-containerd: skipped: ${skip}`);
else console.log(`runtime-containerd: plugins ${describePlan(plan)}`);

describe('containerd (CRI) drives the plugins', () => {
  const cleanup = new Cleanup();
  const tag = uid('');
  let ctrd: Containerd;
  let net: TestNetwork;
  let sub: ReturnType<typeof randomSubnet>;
  const ours = plan.impl.bridge === 'ours';

  beforeAll(async () => {
    if (skip) return;
    const tmp = makeTempTree(cleanup, `cnits-ctrd-net-${tag}`);
    sub = randomSubnet();
    net = {
      name: `cnits-cd-${tag}`,
      bridge: `cncd${tag}`,
      subnet: sub.subnet,
      gateway: sub.gateway,
      dataDir: path.join(tmp, 'ipam'),
      logFile: path.join(tmp, 'cni.log'),
      portmap: true,
      // masquerade on: "nothing left afterwards" then covers it; the tests' traffic stays between
      // pods (same subnet: not masqueraded) and test namespaces, so it never reaches eth0
      ipMasq: true,
    };
    cleanupNetwork(cleanup, net, sub.prefix, 'runtime-containerd');
    ctrd = await makeContainerd(cleanup, tag, plan, bridgeConflist(net));
    const v = await ctrd.cri.version();
    console.log(`runtime-containerd: ${v.runtimeName} ${v.runtimeVersion} CRI ${v.runtimeApiVersion}`);
  }, 120_000);

  afterEach(async () => {
    for (const id of [...(ctrd?.pods ?? [])]) await ctrd.removePod(id).catch(() => undefined);
  }, 120_000);

  afterAll(async () => {
    await cleanup.run();
  }, 120_000);

  /** Log lines of one plugin's calls of one verb for one sandbox (our plugins log each call at debug level). */
  const calls = (plugin: string, verb: string, id: string): string[] =>
    logLines(net.logFile ?? '').filter((l) => l.includes(` ${plugin}: ${verb} container=${id} `));

  it.skipIf(skip)(
    'RunPodSandbox: three pods at once (first ADDs race on the new bridge) get addresses from host-local and reach each other',
    async () => {
      const [a, b, c] = await Promise.all(['pa', 'pb', 'pe'].map((p) => ctrd.runPod(`${p}-${tag}`)));
      const st = await Promise.all([a, b, c].map((id) => ctrd.cri.podSandboxStatus(id)));
      for (const s of st) expect(s.status.state).toBe('SANDBOX_READY');
      const [ipA, ipB, ipC] = st.map((s) => s.status.network?.ip ?? '');
      for (const ip of [ipA, ipB, ipC]) expect(ip.startsWith(`${sub.prefix}.`)).toBe(true);
      expect(new Set([ipA, ipB, ipC]).size).toBe(3);
      for (const ip of [ipA, ipB, ipC]) await expectScopedMasquerade(ip, net.subnet, ours);
      expect(reservations(net.dataDir, net.name).sort()).toEqual([ipA, ipB, ipC].sort());
      expect((await bridgePorts(net.bridge)).length).toBe(3);
      const nsA = await ctrd.netnsPath(a);
      expect(nsA).toMatch(/^\/var\/run\/netns\/cni-/);
      const addr = await inNs(nsA, 'ip', ['-4', '-o', 'addr', 'show', 'dev', 'eth0']);
      expect(addr.stdout).toContain(`${ipA}/24`);
      const lo = await inNs(nsA, 'ip', ['-o', 'link', 'show', 'dev', 'lo']);
      expect(lo.stdout).toMatch(/UP/);
      for (const peer of [ipB, ipC]) {
        const ping = await inNs(nsA, 'ping', ['-c', '2', '-W', '2', peer], true);
        expect(ping.stdout, ping.stderr).toMatch(/2 (packets )?received/);
      }
      if (ours) expect(calls('bridge', 'ADD', a).length).toBe(1);
    },
    120_000,
  );

  it.skipIf(skip)(
    'StopPodSandbox DELs with the netns, RemovePodSandbox DELs again with CNI_NETNS empty; all released',
    async () => {
      const a = await ctrd.runPod(`pc-${tag}`);
      const ip = (await ctrd.cri.podSandboxStatus(a)).status.network?.ip ?? '';
      const nsPath = await ctrd.netnsPath(a);
      expect(reservations(net.dataDir, net.name)).toEqual([ip]);
      await expectScopedMasquerade(ip, net.subnet, ours);
      await ctrd.cri.stopPodSandbox(a);
      expect(reservations(net.dataDir, net.name)).toEqual([]);
      expect(await bridgePorts(net.bridge)).toEqual([]);
      if (ours) expect(calls('bridge', 'DEL', a).filter((l) => l.endsWith(`netns=${nsPath}`)).length).toBeGreaterThan(0);
      // a second stop is legal (kubelet repeats it) and must not fail
      await ctrd.cri.stopPodSandbox(a);
      await ctrd.cri.removePodSandbox(a);
      ctrd.pods.delete(a);
      if (ours) {
        const del = calls('bridge', 'DEL', a);
        const empty = del.filter((l) => l.endsWith('netns='));
        console.log(`runtime-containerd: bridge DEL calls for one pod: ${del.length} (${empty.length} with CNI_NETNS empty)`);
        expect(empty.length).toBeGreaterThan(0);
        // every call succeeded: our engine logs failures at info/error level
        expect(logLines(net.logFile ?? '').filter((l) => / (info|error|warn) /.test(l) && /error \d+|failed/.test(l))).toEqual([]);
      }
      expect(reservations(net.dataDir, net.name)).toEqual([]);
      expect(await bridgePorts(net.bridge)).toEqual([]);
      expect(await firewallLinesMentioning([a])).toEqual([]);
      expect(await masqueradeLinesOf(ip)).toEqual([]);
      expect(cachedResultsOf([a])).toEqual([]);
      const netns = await sh('ip', ['netns', 'list']);
      expect(netns.stdout).not.toContain(path.basename(nsPath));
    },
    120_000,
  );

  it.skipIf(skip)(
    'hostPort: portmap forwards 127.0.0.1 and an outside namespace to the pod',
    async () => {
      const hostPort = randomHostPort();
      const a = await ctrd.runPod(`pd-${tag}`, { portMappings: [{ protocol: 'TCP', containerPort: 80, hostPort }] });
      const ip = (await ctrd.cri.podSandboxStatus(a)).status.network?.ip ?? '';
      await expectScopedMasquerade(ip, net.subnet, ours);
      const { ns: outside, transfer: t } = await makeOutside(cleanup, 'cncdo', `cncv${tag}`);
      const body = (netnsPath: string | undefined, addr: string): Promise<string> => httpBody(netnsPath, addr, hostPort);
      expect((await firewallLinesMentioning([hostPort])).length).toBeGreaterThan(0);
      expect(await body(undefined, '127.0.0.1')).toBe('cni-ts');
      expect(await body(outside.path, t.host)).toBe('cni-ts');
      await ctrd.removePod(a);
      expect(await firewallLinesMentioning([a, hostPort])).toEqual([]);
      expect(await masqueradeLinesOf(ip)).toEqual([]);
      expect(reservations(net.dataDir, net.name)).toEqual([]);
    },
    120_000,
  );
});
