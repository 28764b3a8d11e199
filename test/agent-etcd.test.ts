/**
 * The endpoint plugin and the agent on the etcd store (etcd inside the test's host netns):
 * policy applied with cnictl is enforced; etcd stopped → endpoint ADD answers 11 with nothing
 * half-done and STATUS 50; etcd back → the agent rides it out and enforces the next change.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NetworkPolicy } from '../shared/objects/types.ts';
import { Cleanup } from './helpers/netns.ts';
import { namespace, PolicyMatrix } from './helpers/policy-matrix.ts';
import { makeEtcd, type Etcd } from './overlay-topology.ts';

const np = (ns: string, name: string, spec: NetworkPolicy['spec']): NetworkPolicy => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name, namespace: ns },
  spec,
});
const noEtcd = existsSync('/usr/bin/etcd') ? '' : '/usr/bin/etcd is not installed (Debian etcd-server)';

describe.skipIf(noEtcd)('endpoint + agent on the etcd store', () => {
  const cleanup = new Cleanup();
  let m: PolicyMatrix;
  let etcd: Etcd;

  beforeAll(async () => {
    let prefix = '';
    m = await PolicyMatrix.create(cleanup, {
      store: (tb) => {
        prefix = `/${tb.id}`;
        return { type: 'etcd', endpoints: ['http://127.0.0.1:2379'], prefix };
      },
    });
    // inside the test host netns: its own loopback, so the usual ports are free
    etcd = makeEtcd(cleanup, m.tb.dir, m.tb.host, '127.0.0.1', 2379, 2380);
    await etcd.start();
    await m.apply(namespace('x', { ns: 'x' }), namespace('y', { ns: 'y' }));
    m.startAgent();
    for (const k of ['x/a', 'y/a'] as const) {
      const r = await m.addPod(k);
      expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    }
  }, 120_000);
  afterAll(() => cleanup.run(), 60_000);

  it('enforces a policy applied with cnictl', async () => {
    await m.apply(np('x', 'deny-in', { podSelector: {}, policyTypes: ['Ingress'] }));
    await m.expectMatrix(80, 'tcp', (f, t) => t !== 'x/a', 20_000, ['x/a', 'y/a']);
  });

  it('etcd stopped: endpoint ADD answers 11 and leaves nothing; STATUS answers 50', async () => {
    const before = (await m.nft(['-s', 'list', 'table', 'inet', m.table])).stdout;
    await etcd.stop();
    const r = await m.addPod('x/b');
    expect(r.json?.code, r.stdout + r.stderr).toBe(11);
    const st = await m.plugin('endpoint', {
      command: 'STATUS',
      config: { cniVersion: '1.1.0', name: `${m.tb.id}net`, ...m.endpointConf() },
    });
    expect(st.json?.code, st.stdout).toBe(50);
    expect((await m.nft(['-s', 'list', 'table', 'inet', m.table])).stdout).toBe(before);
  }, 60_000);

  it('etcd back: the agent rides out the outage and enforces the next change', async () => {
    await etcd.start();
    const get = await m.cnictl(['get', 'endpoints', '-A']);
    expect(get.stdout).not.toMatch(/\bx\s+b\b/); // the failed ADD registered nothing
    await m.apply(
      np('x', 'a-from-y', {
        podSelector: { matchLabels: { pod: 'a' } },
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }] }],
      }),
    );
    await m.expectMatrix(80, 'tcp', () => true, 30_000, ['x/a', 'y/a']);
    await m.remove('NetworkPolicy', 'x', 'a-from-y');
    await m.expectMatrix(80, 'tcp', (f, t) => t !== 'x/a', 30_000, ['x/a', 'y/a']);
  }, 90_000);
});
