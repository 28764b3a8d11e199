/**
 * Network policy end to end on the real kernel, the upstream Kubernetes e2e model: namespaces
 * x, y, z × pods a, b, c attached through our bridge + host-local + endpoint in a test host
 * netns, the agent running as a real process there; objects written to the store (as cnictl
 * apply does); the full 9×9 matrix probed and compared with the policy evaluator's truth (and,
 * for the simple cases, with a hand-written one too).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AdminNetworkPolicy, BaselineAdminNetworkPolicy, Kind, NetworkPolicy } from '../shared/objects/types.ts';
import { Cleanup } from './helpers/netns.ts';
import { namespace, PolicyMatrix, type PodKey } from './helpers/policy-matrix.ts';

const np = (ns: string, name: string, spec: NetworkPolicy['spec']): NetworkPolicy => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name, namespace: ns },
  spec,
});
const anp = (name: string, spec: AdminNetworkPolicy['spec']): AdminNetworkPolicy => ({
  apiVersion: 'policy.networking.k8s.io/v1alpha1',
  kind: 'AdminNetworkPolicy',
  metadata: { name },
  spec,
});
const banp = (spec: BaselineAdminNetworkPolicy['spec']): BaselineAdminNetworkPolicy => ({
  apiVersion: 'policy.networking.k8s.io/v1alpha1',
  kind: 'BaselineAdminNetworkPolicy',
  metadata: { name: 'default' },
  spec,
});
const nsOf = (k: PodKey): string => k.split('/')[0]!;
const podOf = (k: PodKey): string => k.split('/')[1]!;

describe('network policy e2e: x,y,z × a,b,c through bridge + host-local + endpoint, agent running', () => {
  const cleanup = new Cleanup();
  let m: PolicyMatrix;

  beforeAll(async () => {
    m = await PolicyMatrix.create(cleanup);
    m.startAgent();
    await m.addAllPods();
  }, 180_000);
  afterAll(() => cleanup.run(), 60_000);
  afterEach(async () => {
    // back to the model's starting point: no policies, original labels
    const objs = await m.objects();
    const refs: Array<[Kind, string, string]> = [
      ...objs.policies.map((p): [Kind, string, string] => ['NetworkPolicy', p.metadata.namespace ?? 'default', p.metadata.name]),
      ...objs.anps.map((p): [Kind, string, string] => ['AdminNetworkPolicy', '', p.metadata.name]),
      ...(objs.banp ? [['BaselineAdminNetworkPolicy', '', objs.banp.metadata.name] as [Kind, string, string]] : []),
    ];
    for (const [k, ns, n] of refs) await m.remove(k, ns, n);
    for (const e of objs.endpoints) {
      const key = `${e.metadata.namespace}/${e.metadata.name}` as PodKey;
      if (JSON.stringify(e.metadata.labels) !== JSON.stringify({ pod: podOf(key) })) await m.label(key, { pod: podOf(key) });
    }
    for (const ns of ['x', 'y', 'z']) await m.apply(namespace(ns, { ns }));
  });

  it('no policy: everything is allowed (TCP and UDP)', async () => {
    await m.expectMatrix(80, 'tcp', () => true);
    await m.expectMatrix(81, 'udp', () => true);
  });

  it('default deny ingress in x', async () => {
    await m.apply(np('x', 'deny-in', { podSelector: {}, policyTypes: ['Ingress'] }));
    const truth = (f: PodKey, t: PodKey): boolean => nsOf(t) !== 'x';
    await m.expectMatrix(80, 'tcp', truth);
    await m.expectMatrix(80, 'udp', truth);
    expect(await m.truth(80, 'tcp')).toEqual(await m.probe(80, 'tcp'));
  });

  it('default deny egress in x', async () => {
    await m.apply(np('x', 'deny-eg', { podSelector: {}, policyTypes: ['Egress'] }));
    await m.expectMatrix(81, 'tcp', (f) => nsOf(f) !== 'x');
    await m.expectMatrix(81, 'tcp');
  });

  it('pod selector: x/a admits only pod=b of its namespace', async () => {
    await m.apply(
      np('x', 'a-from-b', {
        podSelector: { matchLabels: { pod: 'a' } },
        ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }],
      }),
    );
    await m.expectMatrix(80, 'tcp', (f, t) => t !== 'x/a' || f === 'x/b');
  });

  it('namespace selector: x/a admits every pod of y', async () => {
    await m.apply(
      np('x', 'a-from-y', {
        podSelector: { matchLabels: { pod: 'a' } },
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }] }],
      }),
    );
    await m.expectMatrix(80, 'tcp', (f, t) => t !== 'x/a' || nsOf(f) === 'y');
  });

  it('AND (one peer with both selectors) versus OR (two peers)', async () => {
    await m.apply(
      np('x', 'and', {
        podSelector: { matchLabels: { pod: 'a' } },
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } }, podSelector: { matchLabels: { pod: 'b' } } }] }],
      }),
    );
    await m.expectMatrix(80, 'tcp', (f, t) => t !== 'x/a' || f === 'y/b');
    await m.remove('NetworkPolicy', 'x', 'and');
    await m.apply(
      np('x', 'or', {
        podSelector: { matchLabels: { pod: 'a' } },
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }, { podSelector: { matchLabels: { pod: 'b' } } }] }],
      }),
    );
    await m.expectMatrix(80, 'tcp', (f, t) => t !== 'x/a' || nsOf(f) === 'y' || f === 'x/b');
  });

  it('ipBlock with except', async () => {
    const yb = m.pods.get('y/b')!.ip;
    await m.apply(
      np('x', 'a-from-block', {
        podSelector: { matchLabels: { pod: 'a' } },
        ingress: [{ from: [{ ipBlock: { cidr: m.tb.subnet, except: [`${yb}/32`] } }] }],
      }),
    );
    await m.expectMatrix(80, 'tcp', (f, t) => t !== 'x/a' || f !== 'y/b');
    // egress ipBlock: x/c may reach only y's pods' addresses other than y/b
    const ys = ['y/a', 'y/c'].map((k) => `${m.pods.get(k as PodKey)!.ip}/32`);
    await m.apply(
      np('x', 'c-to-block', {
        podSelector: { matchLabels: { pod: 'c' } },
        policyTypes: ['Egress'],
        egress: [{ to: ys.map((cidr) => ({ ipBlock: { cidr } })) }],
      }),
    );
    await m.expectMatrix(80, 'tcp');
  });

  it('named ports: x/a admits serve-81-tcp only', async () => {
    await m.apply(
      np('x', 'a-81', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ ports: [{ port: 'serve-81-tcp', protocol: 'TCP' }] }] }),
    );
    await m.expectMatrix(81, 'tcp', () => true);
    await m.expectMatrix(80, 'tcp', (f, t) => t !== 'x/a');
    await m.expectMatrix(81, 'udp', (f, t) => t !== 'x/a');
  });

  it('endPort: x/a admits TCP 80-81, not UDP', async () => {
    await m.apply(
      np('x', 'a-range', {
        podSelector: { matchLabels: { pod: 'a' } },
        ingress: [{ ports: [{ protocol: 'TCP', port: 80, endPort: 81 }] }],
      }),
    );
    await m.expectMatrix(80, 'tcp', () => true);
    await m.expectMatrix(81, 'tcp', () => true);
    await m.expectMatrix(80, 'udp', (f, t) => t !== 'x/a');
  });

  it('several policies together (union), then one deleted', async () => {
    await m.apply(
      np('x', 'deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] }),
      np('x', 'a-from-y', {
        podSelector: { matchLabels: { pod: 'a' } },
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }] }],
      }),
      np('x', 'b-to-c', {
        podSelector: { matchLabels: { pod: 'b' } },
        policyTypes: ['Egress'],
        egress: [{ to: [{ podSelector: { matchLabels: { pod: 'c' } } }] }],
      }),
      np('x', 'c-from-b', {
        podSelector: { matchLabels: { pod: 'c' } },
        ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }],
      }),
    );
    await m.expectMatrix(80, 'tcp', (f, t) => {
      if (nsOf(f) === 'x' && f !== 'x/b') return false; // x/a, x/c: no egress at all
      if (f === 'x/b') return t === 'x/c';
      return nsOf(t) !== 'x' || (t === 'x/a' && nsOf(f) === 'y');
    });
    await m.remove('NetworkPolicy', 'x', 'deny-all');
    await m.expectMatrix(80, 'tcp');
  });

  it('label changes through the store are re-evaluated (pod and namespace labels)', async () => {
    await m.apply(
      np('x', 'a-from-b', {
        podSelector: { matchLabels: { pod: 'a' } },
        ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { pod: 'b' } } }] }],
      }),
    );
    await m.expectMatrix(80, 'tcp', (f, t) => t !== 'x/a' || podOf(f) === 'b');
    await m.label('z/c', { pod: 'b' });
    await m.expectMatrix(80, 'tcp', (f, t) => t !== 'x/a' || podOf(f) === 'b' || f === 'z/c');
    // namespace labels: admit namespace y by label, then move the label to z
    await m.apply(
      np('x', 'a-from-y', {
        podSelector: { matchLabels: { pod: 'a' } },
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'blue' } } }] }],
      }),
      namespace('y', { ns: 'y', team: 'blue' }),
    );
    await m.expectMatrix(80, 'tcp');
    await m.apply(namespace('y', { ns: 'y' }), namespace('z', { ns: 'z', team: 'blue' }));
    await m.expectMatrix(80, 'tcp', (f, t) => t !== 'x/a' || podOf(f) === 'b' || f === 'z/c' || nsOf(f) === 'z');
  });

  it('policy deletion restores reachability', async () => {
    await m.apply(np('y', 'deny-in', { podSelector: {}, policyTypes: ['Ingress'] }));
    await m.expectMatrix(80, 'tcp', (f, t) => nsOf(t) !== 'y');
    await m.remove('NetworkPolicy', 'y', 'deny-in');
    await m.expectMatrix(80, 'tcp', () => true);
  });

  it('AdminNetworkPolicy: priorities, Deny, Allow and Pass before NetworkPolicy', async () => {
    await m.apply(
      // x admits only z/c by NetworkPolicy
      np('x', 'from-zc', {
        podSelector: {},
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'z' } }, podSelector: { matchLabels: { pod: 'c' } } }] }],
      }),
      // priority 10: deny y -> x; priority 5 (first): allow y/b -> x/a
      anp('deny-y-to-x', {
        priority: 10,
        subject: { namespaces: { matchLabels: { ns: 'x' } } },
        ingress: [{ name: 'deny-y', action: 'Deny', from: [{ namespaces: { matchLabels: { ns: 'y' } } }] }],
      }),
      anp('allow-yb-to-xa', {
        priority: 5,
        subject: { pods: { namespaceSelector: { matchLabels: { ns: 'x' } }, podSelector: { matchLabels: { pod: 'a' } } } },
        ingress: [
          {
            name: 'allow-yb',
            action: 'Allow',
            from: [{ pods: { namespaceSelector: { matchLabels: { ns: 'y' } }, podSelector: { matchLabels: { pod: 'b' } } } }],
          },
        ],
      }),
      // priority 20: pass z -> x to NetworkPolicy; priority 30 would allow z, never reached for x
      anp('pass-z', {
        priority: 20,
        subject: { namespaces: { matchLabels: { ns: 'x' } } },
        ingress: [{ name: 'pass-z', action: 'Pass', from: [{ namespaces: { matchLabels: { ns: 'z' } } }] }],
      }),
      anp('allow-z', {
        priority: 30,
        subject: { namespaces: {} },
        ingress: [{ name: 'allow-z', action: 'Allow', from: [{ namespaces: { matchLabels: { ns: 'z' } } }] }],
      }),
    );
    await m.expectMatrix(80, 'tcp', (f, t) => {
      if (nsOf(t) !== 'x') return true;
      if (f === 'y/b' && t === 'x/a') return true;
      if (nsOf(f) === 'y') return false;
      return f === 'z/c'; // z passed down to NetworkPolicy; x's own pods: NetworkPolicy denies
    });
    await m.expectMatrix(80, 'tcp');
  });

  it('BaselineAdminNetworkPolicy: applies where no NetworkPolicy isolates, after ANP', async () => {
    await m.apply(
      banp({
        subject: { namespaces: { matchLabels: { ns: 'x' } } },
        ingress: [{ name: 'deny-y', action: 'Deny', from: [{ namespaces: { matchLabels: { ns: 'y' } } }] }],
      }),
      anp('allow-ya', {
        priority: 1,
        subject: { namespaces: { matchLabels: { ns: 'x' } } },
        ingress: [
          {
            name: 'ya',
            action: 'Allow',
            from: [{ pods: { namespaceSelector: { matchLabels: { ns: 'y' } }, podSelector: { matchLabels: { pod: 'a' } } } }],
          },
        ],
      }),
    );
    await m.expectMatrix(80, 'tcp', (f, t) => nsOf(t) !== 'x' || nsOf(f) !== 'y' || f === 'y/a');
    // a NetworkPolicy isolating x/b takes it out of the baseline: y reaches x/b only by that policy
    await m.apply(
      np('x', 'b-from-yb', {
        podSelector: { matchLabels: { pod: 'b' } },
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'y' } }, podSelector: { matchLabels: { pod: 'b' } } }] }],
      }),
    );
    await m.expectMatrix(80, 'tcp');
  });
});
