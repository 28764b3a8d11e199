/**
 * PolicyCompiler (the agent's remembering compiler) renders exactly what a fresh compileNode
 * renders, through a random sequence of policy, endpoint and namespace changes; and a policy
 * change at scale rebuilds only what it touches (the rest are the same objects, which
 * renderUpdate skips without comparing).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { anp, np, scaleObjects } from './policy-unit-model.ts';
import { compileNode, PolicyCompiler, renderUpdate, type PolicyObjects } from '../shared/policy/index.ts';
import type { Endpoint, NetworkPolicy } from '../shared/objects/types.ts';

type Change =
  | { op: 'addPolicy'; i: number }
  | { op: 'delPolicy'; i: number }
  | { op: 'editPolicy'; i: number }
  | { op: 'relabelPod'; i: number }
  | { op: 'delPod'; i: number }
  | { op: 'relabelNs'; i: number }
  | { op: 'anp'; i: number }
  | { op: 'same' };

const change: fc.Arbitrary<Change> = fc.oneof(
  fc.record({ op: fc.constant('addPolicy' as const), i: fc.nat(50) }),
  fc.record({ op: fc.constant('delPolicy' as const), i: fc.nat(50) }),
  fc.record({ op: fc.constant('editPolicy' as const), i: fc.nat(50) }),
  fc.record({ op: fc.constant('relabelPod' as const), i: fc.nat(80) }),
  fc.record({ op: fc.constant('delPod' as const), i: fc.nat(80) }),
  fc.record({ op: fc.constant('relabelNs' as const), i: fc.nat(20) }),
  fc.record({ op: fc.constant('anp' as const), i: fc.nat(5) }),
  fc.constant({ op: 'same' as const }),
);

let rv = 1000;
/** Objects as a store hands them out: a resourceVersion per write (or none, to test identity keys). */
function stamp<T extends { metadata: { resourceVersion?: string } }>(o: T, withRv: boolean): T {
  return withRv ? { ...o, metadata: { ...o.metadata, resourceVersion: String(++rv) } } : { ...o, metadata: { ...o.metadata } };
}

function apply(o: PolicyObjects, c: Change, withRv: boolean): PolicyObjects {
  const n = { ...o };
  switch (c.op) {
    case 'addPolicy': {
      const p = np(`ns-${c.i % 20}`, `new-${c.i}`, {
        podSelector: { matchLabels: { app: `app-${c.i % 10}` } },
        ingress: [{ from: [{ podSelector: { matchLabels: { tier: `tier-${c.i % 3}` } } }], ports: [{ port: 9000 + c.i }] }],
      });
      n.policies = [...o.policies.filter((x) => x.metadata.name !== p.metadata.name || x.metadata.namespace !== p.metadata.namespace)];
      n.policies.push(stamp(p, withRv));
      break;
    }
    case 'delPolicy':
      n.policies = o.policies.filter((_, j) => j !== c.i % Math.max(1, o.policies.length));
      break;
    case 'editPolicy': {
      const j = c.i % Math.max(1, o.policies.length);
      n.policies = o.policies.map((p, k): NetworkPolicy =>
        k === j ? stamp({ ...p, spec: { ...p.spec, podSelector: { matchLabels: { tier: `tier-${c.i % 3}` } } } }, withRv) : p,
      );
      break;
    }
    case 'relabelPod': {
      const j = c.i % o.endpoints.length;
      n.endpoints = o.endpoints.map((e, k): Endpoint =>
        k === j ? stamp({ ...e, metadata: { ...e.metadata, labels: { ...e.metadata.labels, app: `app-${(c.i * 7) % 10}` } } }, withRv) : e,
      );
      break;
    }
    case 'delPod':
      n.endpoints = o.endpoints.filter((_, k) => k !== c.i % o.endpoints.length);
      break;
    case 'relabelNs': {
      const j = c.i % o.namespaces.length;
      n.namespaces = o.namespaces.map((x, k) =>
        k === j ? stamp({ ...x, metadata: { ...x.metadata, labels: { team: `t${c.i % 5}` } } }, withRv) : x,
      );
      break;
    }
    case 'anp':
      n.anps = [
        ...o.anps.filter((a) => a.metadata.name !== `extra-${c.i}`),
        stamp(
          anp(`extra-${c.i}`, {
            priority: 20 + c.i,
            subject: { pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: `app-${c.i}` } } } },
            egress: [{ action: c.i % 2 ? 'Deny' : 'Pass', to: [{ networks: [`10.${c.i}.0.0/16`] }] }],
          }),
          withRv,
        ),
      ];
      break;
    case 'same':
      break;
  }
  return n;
}

describe('PolicyCompiler', () => {
  it('renders what a fresh compile renders, through random changes', () => {
    fc.assert(
      fc.property(fc.array(change, { minLength: 1, maxLength: 12 }), fc.boolean(), (changes, withRv) => {
        let o = scaleObjects(80, 50, 60);
        const pc = new PolicyCompiler();
        expect(pc.compile(o, 'n1')).toEqual(compileNode(o, 'n1'));
        for (const c of changes) {
          o = apply(o, c, withRv);
          expect(pc.compile(o, 'n1', { allowFromNode: false })).toEqual(compileNode(o, 'n1', { allowFromNode: false }));
        }
      }),
      { numRuns: 60 },
    );
  });

  it('a policy change at scale keeps every untouched chain and set as the same object', () => {
    const o = scaleObjects(1000, 200);
    const pc = new PolicyCompiler();
    const before = pc.compile(o, 'n1');
    const o2 = apply(o, { op: 'addPolicy', i: 7 }, true);
    const after = pc.compile(o2, 'n1');
    expect(after).toEqual(compileNode(o2, 'n1'));
    const prevChains = new Map(before.chains.map((c) => [c.name, c]));
    const prevSets = new Map(before.sets.map((s) => [s.name, s]));
    const newChains = after.chains.filter((c) => prevChains.get(c.name) !== c && !c.hook);
    const newSets = after.sets.filter((s) => prevSets.get(s.name) !== s && !/^(local|self)/.test(s.name));
    // the new policy selects app-7 pods of ns-7: one or two groups change, not 71
    expect(newChains.length).toBeGreaterThan(0);
    expect(newChains.length).toBeLessThanOrEqual(4);
    expect(newSets.length).toBeLessThanOrEqual(2);
    const script = renderUpdate(before, after);
    expect(script).toContain('add counter');
    // the groups the new policy joins are new chains (names are content hashes), their old
    // chains go; no set is dropped and nothing else is touched
    expect(script).not.toMatch(/delete set/);
    const touched = new Set([...script.matchAll(/(?:add|flush|delete) chain \S+ \S+ (\S+)/g)].map((m) => m[1]));
    expect(touched.size).toBeLessThanOrEqual(8);
  });
});
