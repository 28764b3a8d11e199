/**
 * The endpoint plugin and the agent on the real kernel (test host netns, file store): deny
 * before the first packet with the agent stopped, a flushed or deleted table restored by the
 * agent, store down → 11 with nothing half-done, DEL / CHECK / GC / STATUS.
 */
import { renameSync, writeFileSync, rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Endpoint, NetworkPolicy } from '../shared/objects/types.ts';
import { Cleanup } from './helpers/netns.ts';
import { PolicyMatrix } from './helpers/policy-matrix.ts';

const denyIn = (ns: string): NetworkPolicy => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name: 'deny-in', namespace: ns },
  spec: { podSelector: {}, policyTypes: ['Ingress'] },
});

describe('endpoint plugin + agent on the kernel', () => {
  const cleanup = new Cleanup();
  let m: PolicyMatrix;

  beforeAll(async () => {
    m = await PolicyMatrix.create(cleanup);
  }, 60_000);
  afterAll(() => cleanup.run(), 60_000);

  it('deny before the first packet: ADD of a pod default deny selects, agent stopped', async () => {
    await m.apply(denyIn('x'));
    expect((await m.addPod('y/a')).exitCode).toBe(0);
    // x/a serves before its endpoint ADD: reachable then (not registered yet; a runtime starts
    // no process in it before the chain returns) ...
    let before: boolean | undefined;
    const ep = await m.addPod('x/a', {
      serveBeforeEndpoint: true,
      beforeEndpoint: async () => void (before = (await m.probe(80, 'tcp', 700, ['y/a', 'x/a']))['y/a']['x/a']),
    });
    expect(before).toBe(true);
    expect(ep.exitCode, ep.stdout + ep.stderr).toBe(0);
    // ... and the very first probe after ADD returned is denied: no agent runs
    const r = await m.probe(80, 'tcp', 700, ['y/a', 'x/a']);
    expect(r['y/a']['x/a']).toBe(false);
    expect(r['x/a']['y/a']).toBe(true);
    // prevResult passed through, its dns pointed at the agent's DNS server on the gateway
    expect(JSON.parse(ep.stdout)).toEqual({
      ...(m.prevResultOf('x/a') as object),
      dns: {
        nameservers: [m.tb.gateway],
        search: ['x.svc.cluster.local', 'svc.cluster.local', 'cluster.local', 'dns.podman'],
        options: ['ndots:5'],
      },
    });
  });

  it('CHECK passes for a registered pod and fails (105) when its registration is gone', async () => {
    const prev = m.prevResultOf('x/a');
    const ok = await m.endpoint('CHECK', 'x/a', prev);
    expect(ok.exitCode, ok.stdout + ok.stderr).toBe(0);
    const cur = await m.store.get<Endpoint>({ kind: 'Endpoint', namespace: 'x', name: 'a' });
    expect(cur?.object.spec).toMatchObject({
      node: m.node,
      containerId: m.pods.get('x/a')!.containerId,
      ifname: 'eth0',
      ips: [expect.stringMatching(/\/24$/)],
    });
    expect(cur?.object.metadata.labels).toEqual({ pod: 'a' });
    expect(cur?.object.spec.ports?.map((p) => p.name)).toContain('serve-80-tcp');
    expect(cur?.object.spec.hostInterface).toMatch(/^veth/);
    await m.store.delete({ kind: 'Endpoint', namespace: 'x', name: 'a' });
    const bad = await m.endpoint('CHECK', 'x/a', prev);
    expect(bad.exitCode).not.toBe(0);
    expect(bad.json?.code).toBe(105);
    await m.store.put(cur!.object);
  });

  it('a second attachment of the same pod registers as <pod>-<ifname>; its DEL removes only it', async () => {
    const p = m.pods.get('x/a')!;
    const run = (command: string, prevResult?: unknown): ReturnType<PolicyMatrix['plugin']> =>
      m.plugin('endpoint', {
        command,
        containerId: p.containerId,
        netns: p.netns.path,
        ifname: 'net1',
        args: 'K8S_POD_NAMESPACE=x;K8S_POD_NAME=a',
        config: { cniVersion: '1.1.0', name: `${m.tb.id}net2`, ...m.endpointConf(), ...(prevResult ? { prevResult } : {}) },
      });
    const add = await run('ADD', {
      cniVersion: '1.1.0',
      interfaces: [{ name: 'net1', sandbox: p.netns.path }],
      ips: [{ interface: 0, address: '10.254.254.7/24' }],
    });
    expect(add.exitCode, add.stdout + add.stderr).toBe(0);
    expect((await m.store.get<Endpoint>({ kind: 'Endpoint', namespace: 'x', name: 'a-net1' }))?.object.spec.ips).toEqual([
      '10.254.254.7/24',
    ]);
    expect((await m.store.get<Endpoint>({ kind: 'Endpoint', namespace: 'x', name: 'a' }))?.object.spec.ifname).toBe('eth0');
    expect((await run('DEL')).exitCode).toBe(0);
    expect(await m.store.get({ kind: 'Endpoint', namespace: 'x', name: 'a-net1' })).toBeUndefined();
    expect(await m.store.get({ kind: 'Endpoint', namespace: 'x', name: 'a' })).toBeDefined();
  });

  it('the agent restores a flushed and a deleted table and a deleted map element (periodic resync)', async () => {
    const agent = m.startAgent();
    await m.expectMatrix(80, 'tcp', (f, t) => t !== 'x/a', 15_000, ['x/a', 'y/a']);
    expect((await m.nft(['flush', 'table', 'inet', m.table])).exitCode).toBe(0);
    await waitFor(async () => (await m.nft(['list', 'table', 'inet', m.table])).stdout.includes('vmap @ingress4'), 10_000);
    const r = await m.probe(80, 'tcp', 700, ['y/a', 'x/a']);
    expect(r['y/a']['x/a']).toBe(false);
    expect((await m.nft(['delete', 'table', 'inet', m.table])).exitCode).toBe(0);
    await waitFor(async () => (await m.nft(['list', 'table', 'inet', m.table])).exitCode === 0, 10_000);
    expect((await m.probe(80, 'tcp', 700, ['y/a', 'x/a']))['y/a']['x/a']).toBe(false);
    expect(agent.log()).toMatch(/replacing it/);
    // one element deleted by hand (x/a's entry of the ingress map: x/a would be open) is drift too
    const xa = m.pods.get('x/a')!.ip;
    expect((await m.nft(['delete', 'element', 'inet', m.table, 'ingress4', `{ ${xa} }`])).exitCode).toBe(0);
    await waitFor(async () => /map ingress4 has \d+ elements/.test(agent.log()), 10_000);
    await waitFor(async () => (await m.nft(['list', 'map', 'inet', m.table, 'ingress4'])).stdout.includes(xa), 10_000);
    expect((await m.probe(80, 'tcp', 700, ['y/a', 'x/a']))['y/a']['x/a']).toBe(false);
    await m.stopAgent();
  });

  it('store down during ADD: code 11, nothing half-done; STATUS answers 50', async () => {
    const before = (await m.nft(['-s', 'list', 'table', 'inet', m.table])).stdout;
    const aside = `${m.storeDir}.aside`;
    renameSync(m.storeDir, aside);
    writeFileSync(m.storeDir, 'not a directory');
    try {
      const r = await m.addPod('x/c');
      expect(r.exitCode).not.toBe(0);
      expect(r.json?.code, r.stdout).toBe(11);
      const st = await m.plugin('endpoint', {
        command: 'STATUS',
        config: { cniVersion: '1.1.0', name: `${m.tb.id}net`, ...m.endpointConf() },
      });
      expect(st.json?.code, st.stdout).toBe(50);
      expect((await m.nft(['-s', 'list', 'table', 'inet', m.table])).stdout).toBe(before);
    } finally {
      rmSync(m.storeDir, { force: true });
      renameSync(aside, m.storeDir);
    }
    expect(await m.store.get({ kind: 'Endpoint', namespace: 'x', name: 'c' })).toBeUndefined();
    const st = await m.plugin('endpoint', {
      command: 'STATUS',
      config: { cniVersion: '1.1.0', name: `${m.tb.id}net`, ...m.endpointConf() },
    });
    expect(st.exitCode, st.stdout).toBe(0);
  });

  it('DEL removes registration and rules, is idempotent, needs neither netns nor prevResult', async () => {
    const ip = m.pods.get('x/a')!.ip;
    const del = (): ReturnType<PolicyMatrix['plugin']> =>
      m.plugin('endpoint', {
        command: 'DEL',
        containerId: m.pods.get('x/a')!.containerId,
        netns: '',
        args: 'K8S_POD_NAMESPACE=x;K8S_POD_NAME=a',
        // what only ADD reads never fails a DEL (a runtime DELs after a refused ADD too)
        config: { cniVersion: '1.1.0', name: `${m.tb.id}net`, ...m.endpointConf(), args: { cni: { labels: { 'not a key': 'x' } } } },
      });
    const first = await del();
    expect(first.exitCode, first.stdout + first.stderr).toBe(0);
    expect(await m.store.get({ kind: 'Endpoint', namespace: 'x', name: 'a' })).toBeUndefined();
    expect((await m.nft(['list', 'table', 'inet', m.table])).stdout).not.toContain(ip);
    const again = await del();
    expect(again.exitCode, again.stdout + again.stderr).toBe(0);
  });

  it("GC removes this node's endpoints of the network that are not valid attachments", async () => {
    const keep = m.pods.get('y/a')!;
    // a stale registration of this node and network, and one of another node (left alone)
    const stale: Endpoint = {
      apiVersion: 'cni-ts.dev/v1',
      kind: 'Endpoint',
      metadata: { name: 'gone', namespace: 'x' },
      spec: { node: m.node, network: `${m.tb.id}net`, containerId: 'gone1', ifname: 'eth0', ips: ['10.255.255.9/24'] },
    };
    const other: Endpoint = {
      ...stale,
      metadata: { name: 'elsewhere', namespace: 'x' },
      spec: { ...stale.spec, node: 'other-node', containerId: 'other1' },
    };
    await m.apply(stale, other);
    const gc = await m.plugin('endpoint', {
      command: 'GC',
      config: {
        cniVersion: '1.1.0',
        name: `${m.tb.id}net`,
        ...m.endpointConf(),
        'cni.dev/valid-attachments': [{ containerID: keep.containerId, ifname: 'eth0' }],
      },
    });
    expect(gc.exitCode, gc.stdout + gc.stderr).toBe(0);
    expect(await m.store.get({ kind: 'Endpoint', namespace: 'x', name: 'gone' })).toBeUndefined();
    expect(await m.store.get({ kind: 'Endpoint', namespace: 'x', name: 'elsewhere' })).toBeDefined();
    expect(await m.store.get({ kind: 'Endpoint', namespace: 'y', name: 'a' })).toBeDefined();
  });
});

async function waitFor(cond: () => Promise<boolean>, withinMs: number): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 200));
  }
}
