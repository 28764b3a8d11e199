/**
 * Services across two overlay hosts (etcd store; fabric netns running etcd, host netns h1 and
 * h2; overlay agent and `cni-ts agent` on both): a client pod on h1 reaches a VIP whose
 * backends live on both hosts — the DNAT happens on the client's host, the overlay carries the
 * connection to a backend on the other host — and round robin spreads over both.
 */
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Service } from '../shared/objects/types.ts';
import { Cleanup, inNs } from './helpers/netns.ts';
import { startNodeAgent } from './helpers/policy-matrix.ts';
import { uid } from './helpers/run.ts';
import { startSvcPod, tally, type SvcPod } from './helpers/svc-pods.ts';
import { makeEtcd, makeFabric, makeHost, startAgent, type Etcd, type Fabric, type Host, attachOverlayPod } from './overlay-topology.ts';

const noEtcd = existsSync('/usr/bin/etcd') ? '' : '/usr/bin/etcd is not installed (Debian etcd-server)';

describe.skipIf(noEtcd)('services across two overlay hosts (etcd store)', { timeout: 120_000 }, () => {
  const cleanup = new Cleanup();
  const id = uid('hv');
  const prefix = `/cnits-test/${id}`;
  const NETWORK = '10.218.0.0/16';
  let fab: Fabric;
  let etcd: Etcd;
  const hosts: Host[] = [];
  const pods = new Map<string, SvcPod>();
  const agentConfig = (h: Host): string => `${h.stateDir}.agent.json`;
  const overlayConf = (h: Host): Record<string, unknown> => ({
    cniVersion: '1.1.0',
    name: 'hvovl',
    type: 'overlay',
    network: NETWORK,
    stateDir: h.stateDir,
    nftTable: `${id}_ovl`,
    leaseTTL: 120,
    resyncInterval: 1,
    store: { type: 'etcd', endpoints: [etcd.endpoint], prefix: `${prefix}/overlay` },
  });
  const cnictl = async (h: Host, args: string[], input?: string): Promise<string> => {
    const r = await inNs(h.ns, path.join(process.cwd(), 'dist', 'bin', 'cnictl'), ['--config', agentConfig(h), ...args], true, input);
    if (r.exitCode !== 0) throw new Error(`cnictl ${args.join(' ')}: ${r.stdout} ${r.stderr}`);
    return r.stdout;
  };

  async function addPod(h: Host, key: string, labels: Record<string, string>, serve: boolean): Promise<void> {
    const p = await attachOverlayPod(cleanup, h, {
      nsPrefix: `${id}p`,
      containerId: `${id}-${key.replace('/', '-')}`,
      key,
      network: 'hvovl',
      overlayConf: overlayConf(h),
      agentConfig: agentConfig(h),
      labels,
    });
    pods.set(key, await startSvcPod(cleanup, p.ns.path, key, serve));
  }

  beforeAll(async () => {
    fab = await makeFabric(cleanup, '192.168.238');
    etcd = makeEtcd(cleanup, fab.dir, fab.ns, fab.gateway, 2379, 2380);
    await etcd.start();
    for (let i = 1; i <= 2; i++) {
      const h = await makeHost(cleanup, fab, i);
      hosts.push(h);
      writeFileSync(
        agentConfig(h),
        JSON.stringify({
          store: { type: 'etcd', endpoints: [etcd.endpoint], prefix },
          node: h.name,
          socket: `${h.stateDir}.agent.sock`,
          policy: { table: `${id}_policy`, lockFile: `${h.stateDir}.policy.lock` },
          services: { table: `${id}_svc` },
          serviceCIDR: ['10.96.0.0/16'],
        }),
      );
      const { cniVersion, name, ...plugin } = overlayConf(h);
      startAgent(cleanup, h, { cniVersion, name, plugins: [plugin] });
      const a = startNodeAgent(h.ns.path, agentConfig(h), ['--resync', '1']);
      cleanup.add(() => a.stop());
    }
    await addPod(hosts[0]!, 'x/a', { app: 'web' }, true);
    await addPod(hosts[1]!, 'x/b', { app: 'web' }, true);
    await addPod(hosts[1]!, 'x/c', { app: 'web' }, true);
    await addPod(hosts[0]!, 'y/client', { role: 'client' }, false);
  }, 180_000);
  afterAll(() => cleanup.run(), 120_000);

  it('a client on h1 reaches backends on h1 and h2 through the VIP, in strict rotation', async () => {
    const svc: Service = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: 'x' },
      spec: { clusterIP: '10.96.0.20', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] },
    };
    await cnictl(hosts[1]!, ['apply', '-f', '-'], JSON.stringify(svc));
    const c = pods.get('y/client')!;
    const deadline = Date.now() + 40_000;
    let t: Record<string, number> = {};
    while (Date.now() < deadline) {
      t = tally((await c.ask({ op: 'hits', ip: '10.96.0.20', port: 80, n: 30, timeoutMs: 700 })).names as string[]);
      if (t['x/a'] === 10 && t['x/b'] === 10 && t['x/c'] === 10) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(t).toEqual({ 'x/a': 10, 'x/b': 10, 'x/c': 10 });
    expect(await cnictl(hosts[0]!, ['get', 'services', '-n', 'x'])).toMatch(/web\s+10\.96\.0\.20\s+80\/TCP\s+round-robin\s+3\/3/);
  });
});
