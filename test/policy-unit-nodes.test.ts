/**
 * AdminNetworkPolicy / BaselineAdminNetworkPolicy egress `nodes` peers (policy.networking.k8s.io
 * v1alpha1): nodes selected by their labels, matched by the addresses of their Node objects;
 * `networks` peers beside them. Pure: validation, the evaluator, the compiled sets, the trace.
 */
import { describe, expect, it } from 'vitest';
import { anp, banp, np, objects } from './policy-unit-model.ts';
import { compileNode, evaluate, PolicyCompiler, PolicyIndex, renderUpdate, type PolicyObjects } from '../shared/policy/index.ts';
import { validateObject } from '../shared/objects/validate.ts';
import { formatTrace, trace } from '../tools/cnictl/trace.ts';
import type { Node } from '../shared/objects/types.ts';

const node = (name: string, labels: Record<string, string>, addresses: string[]): Node => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name, labels },
  status: { addresses: addresses.map((address) => ({ type: 'InternalIP', address })) },
});

const nodes = [
  node('cp1', { 'node-role.kubernetes.io/control-plane': '' }, ['192.0.2.10', '2001:db8::10']),
  node('w1', { role: 'worker' }, ['192.0.2.21']),
  node('w2', { role: 'worker' }, ['192.0.2.22']),
];

const denyControlPlane = anp('no-control-plane', {
  priority: 5,
  subject: { namespaces: { matchLabels: { ns: 'x' } } },
  egress: [
    {
      name: 'no-cp-api',
      action: 'Deny',
      to: [{ nodes: { matchExpressions: [{ key: 'node-role.kubernetes.io/control-plane', operator: 'Exists' }] } }],
      ports: [{ portNumber: { protocol: 'TCP', port: 6443 } }],
    },
    { name: 'workers', action: 'Allow', to: [{ nodes: { matchLabels: { role: 'worker' } } }] },
    { name: 'dns', action: 'Allow', to: [{ networks: ['198.51.100.0/24'] }], ports: [{ portNumber: { protocol: 'UDP', port: 53 } }] },
  ],
});

const withNodes = (o: PolicyObjects, ns: Node[] = nodes): PolicyObjects => ({ ...o, nodes: ns });

describe('Node objects and nodes peers: validation', () => {
  it('accepts a Node as kubectl shows it, and refuses a bad address', () => {
    expect(validateObject(nodes[0])).toEqual([]);
    const bad = { ...nodes[1], status: { addresses: [{ type: 'InternalIP', address: '192.0.2.300' }] } };
    expect(validateObject(bad).join('\n')).toMatch(/status\.addresses\[0\]\.address/);
  });
  it('accepts nodes peers in ANP and BANP egress, not in ingress', () => {
    expect(validateObject(denyControlPlane)).toEqual([]);
    expect(validateObject(banp({ subject: { namespaces: {} }, egress: [{ action: 'Deny', to: [{ nodes: {} }] }] }))).toEqual([]);
    const ing = anp('in', { priority: 1, subject: { namespaces: {} }, ingress: [{ action: 'Deny', from: [{ nodes: {} } as never] }] });
    expect(validateObject(ing).join('\n')).toMatch(/spec\.ingress\[0\]\.from\[0\]/);
  });
});

describe('nodes peers: evaluation', () => {
  const o = withNodes(objects({ anps: [denyControlPlane], policies: [np('x', 'deny-eg', { podSelector: {}, policyTypes: ['Egress'] })] }));
  const idx = new PolicyIndex(o);
  const ev = (dst: string, port: number, protocol: 'TCP' | 'UDP' = 'TCP', src = 'x/a') => {
    const [ns, name] = src.split('/');
    return evaluate(idx, { src: idx.podByName(ns!, name!)!.ep, dst, protocol, port });
  };
  it('Deny to control-plane nodes on 6443; their other ports fall to NetworkPolicy (isolated: denied)', () => {
    expect(ev('192.0.2.10', 6443).verdict).toBe('deny');
    expect(ev('192.0.2.10', 6443).egress.decidedBy).toMatchObject({ kind: 'AdminNetworkPolicy', name: 'no-control-plane', rule: 0 });
    expect(ev('2001:db8::10', 6443).verdict).toBe('deny');
    expect(ev('192.0.2.10', 22).egress.decidedBy).toMatchObject({ default: 'isolated' });
  });
  it('Allow to worker nodes by label, on any port', () => {
    expect(ev('192.0.2.21', 22).verdict).toBe('allow');
    expect(ev('192.0.2.22', 10250).egress.decidedBy).toMatchObject({ kind: 'AdminNetworkPolicy', rule: 1 });
  });
  it('an address of no selected node is no node peer; networks peers still match', () => {
    expect(ev('192.0.2.99', 22).egress.decidedBy).toMatchObject({ default: 'isolated' });
    expect(ev('198.51.100.7', 53, 'UDP').egress.decidedBy).toMatchObject({ kind: 'AdminNetworkPolicy', rule: 2 });
  });
  it('without Node objects a nodes peer matches nothing', () => {
    const bare = new PolicyIndex({ ...o, nodes: [] });
    const r = evaluate(bare, { src: bare.podByName('x', 'a')!.ep, dst: '192.0.2.21', protocol: 'TCP', port: 22 });
    expect(r.egress.decidedBy).toMatchObject({ default: 'isolated' });
  });
  it('pods outside the subject are not affected', () => {
    expect(ev('192.0.2.10', 6443, 'TCP', 'y/a').verdict).toBe('allow');
  });
});

describe('nodes peers: compiled', () => {
  it('compile to one address set per selector and family; a node joining is an element update', () => {
    const o = withNodes(objects({ anps: [denyControlPlane] }));
    const rs = compileNode(o, 'n1');
    const nd = rs.sets.filter((s) => s.name.startsWith('nd'));
    expect(nd.map((s) => s.elements).sort()).toEqual([['192.0.2.10'], ['192.0.2.21', '192.0.2.22'], ['2001:db8::10'], []].sort());
    const rules = rs.chains.flatMap((c) => c.rules).join('\n');
    expect(rules).toMatch(/ip daddr @nd4_\w+ meta l4proto tcp th dport 6443 counter name anp_no-control-plane_eg_0 drop/);
    expect(rules).toMatch(/ip6 daddr @nd6_\w+ meta l4proto tcp th dport 6443 counter name anp_no-control-plane_eg_0 drop/);
    const pc = new PolicyCompiler();
    const before = pc.compile(o, 'n1');
    const more = withNodes(o, [...nodes, node('w3', { role: 'worker' }, ['192.0.2.23'])]);
    const after = pc.compile(more, 'n1');
    expect(after).toEqual(compileNode(more, 'n1'));
    const script = renderUpdate(before, after);
    expect(script.trim().split('\n')).toEqual([expect.stringMatching(/^add element inet cni_ts_policy nd4_\w+ \{ 192\.0\.2\.23 \}$/)]);
  });
});

describe('nodes peers: cnictl policy trace', () => {
  const o = withNodes(objects({ anps: [denyControlPlane] }));
  it('--to node/NAME resolves the node, names it and the rule', () => {
    const a = { from: 'x/b', to: 'node/cp1', protocol: 'TCP' as const, port: 6443, json: false };
    const r = trace(o, a);
    expect(r.verdict).toBe('deny');
    const text = formatTrace(r, a, o);
    expect(text).toContain('192.0.2.10 (node cp1)');
    expect(text).toMatch(/rule: Deny to nodes node-role\.kubernetes\.io\/control-plane, ports TCP\/6443/);
    expect(trace(o, { ...a, family: 6 }).dst.ip).toBe('2001:db8::10');
    expect(() => trace(o, { ...a, to: 'node/nope' })).toThrow(/no node nope/);
  });
});
