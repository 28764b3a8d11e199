/**
 * Two hosts on the overlay with the etcd store (fabric netns running etcd, host netns h1 and
 * h2): pods attached through overlay + endpoint on each host, `cni-ts agent` on both running
 * the policy and the overlay reconcilers (peers converge only through it: each host's first
 * ADD happened before the other host had a lease). A policy on one host admits or drops pods of the other by label, a
 * label changed on the other host's pod is re-evaluated, and egress is enforced on the
 * sending host.
 */
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NetworkPolicy } from '../shared/objects/types.ts';
import { Cleanup, inNs } from './helpers/netns.ts';
import { namespace, PORTS, startNodeAgent, startPodServer, type AgentProcess, type PodServer } from './helpers/policy-matrix.ts';
import { uid } from './helpers/run.ts';
import { makeEtcd, makeFabric, makeHost, type Etcd, type Fabric, type Host, attachOverlayPod } from './overlay-topology.ts';

const noEtcd = existsSync('/usr/bin/etcd') ? '' : '/usr/bin/etcd is not installed (Debian etcd-server)';
const np = (ns: string, name: string, spec: NetworkPolicy['spec']): NetworkPolicy => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name, namespace: ns },
  spec,
});

interface Pod {
  key: string;
  ip: string;
  server: PodServer;
}

describe.skipIf(noEtcd)('policy across two overlay hosts (etcd store)', { timeout: 120_000 }, () => {
  const cleanup = new Cleanup();
  const id = uid('hp');
  const prefix = `/cnits-test/${id}`;
  const NETWORK = '10.217.0.0/16';
  let fab: Fabric;
  let etcd: Etcd;
  const hosts: Host[] = [];
  const pods = new Map<string, Pod>();
  const agents: AgentProcess[] = [];
  const agentConfig = (h: Host): string => `${h.stateDir}.agent.json`;
  const overlayConf = (h: Host): Record<string, unknown> => ({
    cniVersion: '1.1.0',
    name: 'hpovl',
    type: 'overlay',
    network: NETWORK,
    stateDir: h.stateDir,
    nftTable: `${id}_ovl`,
    leaseTTL: 120,
    resyncInterval: 1,
    store: { type: 'etcd', endpoints: [etcd.endpoint], prefix: `${prefix}/overlay` },
  });
  const cnictl = async (h: Host, args: string[], input?: string): Promise<void> => {
    const r = await inNs(h.ns, path.join(process.cwd(), 'dist', 'bin', 'cnictl'), ['--config', agentConfig(h), ...args], true, input);
    if (r.exitCode !== 0) throw new Error(`cnictl ${args.join(' ')}: ${r.stdout} ${r.stderr}`);
  };

  async function addPod(h: Host, key: string, labels: Record<string, string>): Promise<Pod> {
    const p = await attachOverlayPod(cleanup, h, {
      nsPrefix: `${id}p`,
      containerId: `${id}-${key.replace('/', '-')}`,
      key,
      network: 'hpovl',
      overlayConf: overlayConf(h),
      agentConfig: agentConfig(h),
      labels,
    });
    const pod = { key, ip: p.ip, server: await startPodServer(cleanup, p.ns.path, key) };
    pods.set(key, pod);
    return pod;
  }

  /** Poll until from → to on TCP port 80 is `want` (bounded). */
  async function expectReach(from: string, to: string, want: boolean, withinMs = 20_000): Promise<void> {
    const deadline = Date.now() + withinMs;
    let got: boolean | undefined;
    do {
      got = (await pods.get(from)!.server.probe([{ ip: pods.get(to)!.ip, port: PORTS[0]!, proto: 'tcp' }], 700))[0];
      if (got === want) return;
      await new Promise((r) => setTimeout(r, 300));
    } while (Date.now() < deadline);
    throw new Error(`${from} -> ${to}: expected ${want ? 'allowed' : 'denied'}, observed ${got ? 'allowed' : 'denied'}`);
  }

  beforeAll(async () => {
    fab = await makeFabric(cleanup, '192.168.237');
    etcd = makeEtcd(cleanup, fab.dir, fab.ns, fab.gateway, 2379, 2380);
    await etcd.start();
    for (let i = 1; i <= 2; i++) {
      const h = await makeHost(cleanup, fab, i);
      hosts.push(h);
      const { cniVersion, name, ...plugin } = overlayConf(h);
      const overlayConflist = `${h.stateDir}.overlay.conflist`;
      writeFileSync(overlayConflist, JSON.stringify({ cniVersion, name, plugins: [plugin] }));
      writeFileSync(
        agentConfig(h),
        JSON.stringify({
          store: { type: 'etcd', endpoints: [etcd.endpoint], prefix },
          node: h.name,
          socket: `${h.stateDir}.agent.sock`,
          policy: { table: `${id}_policy`, lockFile: `${h.stateDir}.policy.lock` },
          overlay: { config: overlayConflist },
        }),
      );
      const a = startNodeAgent(h.ns.path, agentConfig(h), ['--resync', '1']);
      agents.push(a);
      cleanup.add(() => a.stop());
    }
    await cnictl(
      hosts[0]!,
      ['apply', '-f', '-'],
      [namespace('x', { ns: 'x' }), namespace('y', { ns: 'y' })].map((o) => JSON.stringify(o)).join('\n---\n'),
    );
    await addPod(hosts[0]!, 'x/a', { pod: 'a' });
    await addPod(hosts[1]!, 'y/b', { pod: 'b' });
    await addPod(hosts[1]!, 'y/c', { pod: 'c' });
  }, 180_000);
  afterAll(() => cleanup.run(), 120_000);

  it('pods reach each other across the hosts without policy', async () => {
    await expectReach('y/b', 'x/a', true, 30_000);
    await expectReach('y/c', 'x/a', true);
    await expectReach('x/a', 'y/c', true);
    for (const a of agents) expect(a.log()).toMatch(/reconcilers policy, .*overlay/);
    expect(agents[0]!.log()).toMatch(/overlay \([^)]*\): network hpovl: subnet [0-9./]+ via eth0 [0-9.]+, peers 10\.217\./);
  });

  it("a policy on h1 admits h2's pod=b and drops h2's pod=c; relabelling on h2's pod is re-evaluated", async () => {
    await cnictl(
      hosts[1]!,
      ['apply', '-f', '-'],
      JSON.stringify(
        np('x', 'a-from-b', {
          podSelector: { matchLabels: { pod: 'a' } },
          ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { pod: 'b' } } }] }],
        }),
      ),
    );
    await expectReach('y/c', 'x/a', false);
    await expectReach('y/b', 'x/a', true);
    await cnictl(hosts[0]!, ['label', 'endpoint', 'y/c', 'pod=b', '--overwrite']);
    await expectReach('y/c', 'x/a', true);
  });

  it('egress is enforced on the sending host (h2)', async () => {
    await cnictl(
      hosts[0]!,
      ['apply', '-f', '-'],
      JSON.stringify(
        np('y', 'no-egress-to-a', {
          podSelector: { matchLabels: { pod: 'b' } },
          policyTypes: ['Egress'],
          egress: [{ to: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }] }],
        }),
      ),
    );
    await expectReach('y/b', 'x/a', false);
    await expectReach('x/a', 'y/b', true); // ingress to y/b is not isolated; the reply passes
  });
});
