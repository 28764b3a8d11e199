/**
 * Policy semantics, pure: the evaluator against hand-written truth tables of the upstream
 * Kubernetes network-policy e2e model (namespaces x, y, z; pods a, b, c; ports 80/81 TCP+UDP),
 * and the compiler's output structure. Rows are sources, columns destinations x/a..z/c.
 */
import { describe, expect, it } from 'vitest';
import { ALL, anp, banp, model, np, objects, podIPs, reach, tableOf, truth } from './policy-unit-model.ts';
import {
  compileNode,
  counterName,
  describeDecision,
  evaluate,
  parseCounterName,
  policyTable,
  policyTableScript,
  policyTypesOf,
  renderNft,
  renderSetUpdates,
  renderUpdate,
  type Ruleset,
} from '../shared/policy/index.ts';
import { cidrRanges, parseAddr, rangeElement } from '../shared/policy/model.ts';
import { canonicalIP, parseIP } from '../shared/ipnet.ts';
import { portMatch } from '../shared/policy/compile.ts';
import type { Endpoint } from '../shared/objects/types.ts';
import { rulesetDrift } from '../shared/policysync.ts';
import { tableOf as firewallTableOf } from '../shared/firewall/nft.ts';
import type { NftObject } from '../shared/kernel/nft.ts';

const denyIngressX = np('x', 'deny-in', { podSelector: {} });
const denyEgressX = np('x', 'deny-eg', { podSelector: {}, policyTypes: ['Egress'] });
const podA = { matchLabels: { pod: 'a' } };
const podB = { matchLabels: { pod: 'b' } };
const nsY = { matchLabels: { ns: 'y' } };
const nsZ = { matchLabels: { ns: 'z' } };
const tcp = (port: number) => ({ port, protocol: 'TCP' as const });
const udp = (port: number) => ({ port, protocol: 'UDP' as const });

describe('NetworkPolicy: isolation and defaulting', () => {
  it('no policy: everything reaches everything', () => {
    expect(reach(objects())).toBe(ALL);
  });

  it('default deny ingress in x (policyTypes omitted = Ingress)', () => {
    const t = truth(`
      x/a .XX......
      x/b X.X......
      x/c XX.......
      y/a XXX......
      y/b XXX......
      y/c XXX......
      z/a XXX......
      z/b XXX......
      z/c XXX......`);
    const o = objects({ policies: [denyIngressX] });
    expect(reach(o)).toBe(t);
    expect(reach(o, udp(81))).toBe(t);
    expect(reach(o, { ...tcp(80), family: 6 })).toBe(t);
  });

  it('default deny egress in x', () => {
    expect(reach(objects({ policies: [denyEgressX] }))).toBe(
      truth(`
      x/a .XXXXXXXX
      x/b X.XXXXXXX
      x/c XX.XXXXXX
      y/a .........
      y/b .........
      y/c .........
      z/a .........
      z/b .........
      z/c .........`),
    );
  });

  it('policyTypes defaulting: egress rules present => Egress isolated too; ingress-only rules leave egress open', () => {
    const p = np('x', 'a-to-b', { podSelector: podA, egress: [{ to: [{ podSelector: podB }] }] });
    expect(policyTypesOf(p)).toEqual({ ingress: true, egress: true });
    expect(reach(objects({ policies: [p] }))).toBe(
      truth(`
      x/a ..XXXXXXX
      x/b X........
      x/c X........
      y/a X........
      y/b X........
      y/c X........
      z/a X........
      z/b X........
      z/c X........`),
    );
    const q = np('x', 'from-b', { podSelector: podA, ingress: [{ from: [{ podSelector: podB }] }] });
    expect(policyTypesOf(q)).toEqual({ ingress: true, egress: false });
    expect(policyTypesOf(np('x', 'e', { podSelector: {}, egress: [] }))).toEqual({ ingress: true, egress: false });
    expect(reach(objects({ policies: [q] })).split('\n')[0]).toBe('x/a .........');
  });

  it('ingress: [{}] allows all; ingress: [] denies all', () => {
    expect(reach(objects({ policies: [np('x', 'all', { podSelector: {}, ingress: [{}] })] }))).toBe(ALL);
    expect(reach(objects({ policies: [np('x', 'none', { podSelector: {}, policyTypes: ['Ingress'], ingress: [] })] }))).toBe(
      reach(objects({ policies: [denyIngressX] })),
    );
  });

  it('a pod reaches itself whatever the policy', () => {
    const o = objects({ policies: [denyIngressX, denyEgressX] });
    const r = evaluate(o, { src: o.endpoints[0], dst: o.endpoints[0], protocol: 'TCP', port: 80 });
    expect(r.verdict).toBe('allow');
    expect(r.decidedBy).toEqual({ default: 'self' });
  });

  it('egress denied on the source is not undone by ingress allowed at the destination', () => {
    const o = objects({
      policies: [
        np('x', 'b-no-egress', { podSelector: podB, policyTypes: ['Egress'] }),
        np('x', 'a-from-b', { podSelector: podA, ingress: [{ from: [{ podSelector: podB }] }] }),
      ],
    });
    const r = evaluate(o, { src: o.endpoints[1], dst: o.endpoints[0], protocol: 'TCP', port: 80 });
    expect(r.verdict).toBe('deny');
    expect(r.decidedBy).toMatchObject({ default: 'isolated', side: 'egress' });
    expect(r.ingress.verdict).toBe('allow');
    expect(r.ingress.decidedBy).toMatchObject({ kind: 'NetworkPolicy', namespace: 'x', name: 'a-from-b', direction: 'ingress', rule: 0 });
  });
});

describe('NetworkPolicy: peers', () => {
  it('podSelector alone selects pods of the policy namespace', () => {
    expect(reach(objects({ policies: [np('x', 'p', { podSelector: podA, ingress: [{ from: [{ podSelector: podB }] }] })] }))).toBe(
      truth(`
      x/a .........
      x/b .........
      x/c X........
      y/a X........
      y/b X........
      y/c X........
      z/a X........
      z/b X........
      z/c X........`),
    );
  });

  it('namespaceSelector alone selects every pod of those namespaces', () => {
    expect(reach(objects({ policies: [np('x', 'p', { podSelector: podA, ingress: [{ from: [{ namespaceSelector: nsY }] }] })] }))).toBe(
      truth(`
      x/a .........
      x/b X........
      x/c X........
      y/a .........
      y/b .........
      y/c .........
      z/a X........
      z/b X........
      z/c X........`),
    );
  });

  it('namespaceSelector and podSelector in one peer: AND', () => {
    expect(
      reach(
        objects({ policies: [np('x', 'p', { podSelector: podA, ingress: [{ from: [{ namespaceSelector: nsY, podSelector: podB }] }] })] }),
      ),
    ).toBe(
      truth(`
      x/a .........
      x/b X........
      x/c X........
      y/a X........
      y/b .........
      y/c X........
      z/a X........
      z/b X........
      z/c X........`),
    );
  });

  it('namespaceSelector and podSelector as two peers: OR', () => {
    expect(
      reach(
        objects({
          policies: [np('x', 'p', { podSelector: podA, ingress: [{ from: [{ namespaceSelector: nsY }, { podSelector: podB }] }] })],
        }),
      ),
    ).toBe(
      truth(`
      x/a .........
      x/b .........
      x/c X........
      y/a .........
      y/b .........
      y/c .........
      z/a X........
      z/b X........
      z/c X........`),
    );
  });

  it('namespaceSelector {} selects every namespace; matchExpressions NotIn / Exists / DoesNotExist', () => {
    expect(reach(objects({ policies: [np('x', 'p', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: {} }] }] })] }))).toBe(ALL);
    const notA = np('y', 'p', {
      podSelector: {},
      ingress: [
        {
          from: [
            {
              namespaceSelector: { matchExpressions: [{ key: 'ns', operator: 'NotIn', values: ['x', 'y'] }] },
              podSelector: {
                matchExpressions: [
                  { key: 'pod', operator: 'Exists' },
                  { key: 'pod', operator: 'NotIn', values: ['a'] },
                ],
              },
            },
          ],
        },
      ],
    });
    expect(reach(objects({ policies: [notA] }))).toBe(tableOf((f, t) => !t.startsWith('y/') || f === 'z/b' || f === 'z/c'));
    const none = np('y', 'q', {
      podSelector: {},
      ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchExpressions: [{ key: 'pod', operator: 'DoesNotExist' }] } }] }],
    });
    expect(reach(objects({ policies: [none] }))).toBe(tableOf((_f, t) => !t.startsWith('y/')));
  });

  it('ipBlock with except matches pod addresses, per family', () => {
    const p = np('x', 'p', {
      podSelector: podA,
      ingress: [{ from: [{ ipBlock: { cidr: '10.77.0.0/24', except: [`${podIPs(4).v4}/32`] } }] }],
    });
    const o = objects({ policies: [p] });
    expect(reach(o)).toBe(
      truth(`
      x/a .........
      x/b .........
      x/c .........
      y/a .........
      y/b X........
      y/c .........
      z/a .........
      z/b .........
      z/c .........`),
    );
    // an IPv4 block says nothing about IPv6 flows
    expect(reach(o, { ...tcp(80), family: 6 })).toBe(tableOf((_f, t) => t !== 'x/a'));
    const p6 = np('x', 'p', {
      podSelector: podA,
      ingress: [{ from: [{ ipBlock: { cidr: 'fd77::/64', except: [`${podIPs(4).v6}/128`] } }] }],
    });
    expect(reach(objects({ policies: [p6] }), { ...tcp(80), family: 6 })).toBe(reach(o));
  });

  it('egress ipBlock to an address outside the cluster', () => {
    const o = objects({
      policies: [
        np('x', 'p', {
          podSelector: podA,
          policyTypes: ['Egress'],
          egress: [{ to: [{ ipBlock: { cidr: '192.0.2.0/24', except: ['192.0.2.128/25'] } }] }],
        }),
      ],
    });
    const at = (dst: string) => evaluate(o, { src: o.endpoints[0], dst, protocol: 'TCP', port: 443 });
    expect(at('192.0.2.1').verdict).toBe('allow');
    expect(at('192.0.2.200').verdict).toBe('deny');
    expect(at('198.51.100.1').verdict).toBe('deny');
    expect(at('192.0.2.1').ingress.decidedBy).toEqual({ default: 'not-a-pod' });
    // an address of a known pod is that pod
    expect(at(podIPs(1).v4).dst.pod).toBe('x/b');
  });
});

describe('NetworkPolicy: ports', () => {
  const onlyA = (ports: NonNullable<Parameters<typeof np>[2]['ingress']>[number]['ports']) =>
    objects({ policies: [np('x', 'p', { podSelector: podA, ingress: [{ ports }] })] });
  const openA = tableOf(() => true);
  const closedA = tableOf((_f, t) => t !== 'x/a');

  it('numeric port; protocol defaults to TCP', () => {
    const o = onlyA([{ port: 80 }]);
    expect(reach(o, tcp(80))).toBe(openA);
    expect(reach(o, tcp(81))).toBe(closedA);
    expect(reach(o, udp(80))).toBe(closedA);
  });

  it('a rule naming only UDP never opens TCP', () => {
    const o = onlyA([{ protocol: 'UDP', port: 80 }]);
    expect(reach(o, udp(80))).toBe(openA);
    expect(reach(o, tcp(80))).toBe(closedA);
    const noPort = onlyA([{ protocol: 'UDP' }]);
    expect(reach(noPort, udp(81))).toBe(openA);
    expect(reach(noPort, tcp(81))).toBe(closedA);
  });

  it('named ports resolve on the destination pod (with their protocol)', () => {
    const o = onlyA([{ port: 'serve-81-tcp' }]);
    expect(reach(o, tcp(81))).toBe(openA);
    expect(reach(o, tcp(80))).toBe(closedA);
    expect(reach(o, udp(81))).toBe(closedA);
    const u = onlyA([{ protocol: 'UDP', port: 'serve-81-udp' }]);
    expect(reach(u, udp(81))).toBe(openA);
    expect(reach(u, tcp(81))).toBe(closedA);
    // a name with the wrong protocol resolves to nothing
    expect(reach(onlyA([{ protocol: 'UDP', port: 'serve-81-tcp' }]), udp(81))).toBe(closedA);
  });

  it('egress named ports resolve on each destination pod', () => {
    const m = model();
    // z/c serves "serve-80-tcp" on 81 instead
    const eps = m.endpoints.map((e) =>
      e.metadata.namespace === 'z' && e.metadata.name === 'c'
        ? { ...e, spec: { ...e.spec, ports: [{ name: 'serve-80-tcp', containerPort: 81 }] } }
        : e,
    );
    const o = objects({
      endpoints: eps,
      policies: [np('x', 'p', { podSelector: podA, policyTypes: ['Egress'], egress: [{ ports: [{ port: 'serve-80-tcp' }] }] })],
    });
    const row = (probe: { port: number; protocol: 'TCP' | 'UDP' }) => reach(o, probe).split('\n')[0];
    expect(row(tcp(80))).toBe('x/a ........X');
    expect(row(tcp(81))).toBe('x/a .XXXXXXX.');
  });

  it('endPort ranges', () => {
    const o = onlyA([{ port: 80, endPort: 81 }]);
    expect(reach(o, tcp(80))).toBe(openA);
    expect(reach(o, tcp(81))).toBe(openA);
    expect(reach(o, udp(81))).toBe(closedA);
    const only81 = onlyA([{ port: 81, endPort: 90 }]);
    expect(reach(only81, tcp(80))).toBe(closedA);
    expect(reach(only81, tcp(81))).toBe(openA);
  });

  it('ICMP passes only rules without ports', () => {
    const o = onlyA([{ port: 80 }]);
    expect(evaluate(o, { src: o.endpoints[1], dst: o.endpoints[0], protocol: 'ICMP' }).verdict).toBe('deny');
    const all = objects({ policies: [np('x', 'p', { podSelector: podA, ingress: [{ from: [{ podSelector: podB }] }] })] });
    expect(evaluate(all, { src: all.endpoints[1], dst: all.endpoints[0], protocol: 'ICMP' }).verdict).toBe('allow');
  });
});

describe('NetworkPolicy: several policies, label changes', () => {
  it('the union of what policies allow', () => {
    const o = objects({
      policies: [
        np('x', 'from-b', { podSelector: podA, ingress: [{ from: [{ podSelector: podB }] }] }),
        np('x', 'from-z', { podSelector: podA, ingress: [{ from: [{ namespaceSelector: nsZ }] }] }),
        denyIngressX,
      ],
    });
    expect(reach(o)).toBe(
      truth(`
      x/a .XX......
      x/b ..X......
      x/c XX.......
      y/a XXX......
      y/b XXX......
      y/c XXX......
      z/a .XX......
      z/b .XX......
      z/c .XX......`),
    );
    const r = evaluate(o, { src: o.endpoints[1], dst: o.endpoints[0], protocol: 'TCP', port: 80 });
    expect(r.ingress.selectedBy.networkPolicies).toEqual([
      { namespace: 'x', name: 'deny-in' },
      { namespace: 'x', name: 'from-b' },
      { namespace: 'x', name: 'from-z' },
    ]);
    expect(describeDecision(r.decidedBy)).toBe('NetworkPolicy x/from-b ingress rule 0: Allow');
  });

  it('a label change re-evaluates every policy', () => {
    const base = objects({ policies: [np('x', 'p', { podSelector: podA, ingress: [{ from: [{ podSelector: podB }] }] })] });
    const relabeled = {
      ...base,
      endpoints: base.endpoints.map((e): Endpoint =>
        e.metadata.namespace === 'x' && e.metadata.name === 'c' ? { ...e, metadata: { ...e.metadata, labels: { pod: 'b' } } } : e,
      ),
    };
    expect(reach(base).split('\n')[2]).toBe('x/c X........');
    expect(reach(relabeled).split('\n')[2]).toBe('x/c .........');
    const nsRelabeled = {
      ...base,
      namespaces: base.namespaces.map((n) => (n.metadata.name === 'y' ? { ...n, metadata: { ...n.metadata, labels: { ns: 'z' } } } : n)),
    };
    const q = np('x', 'q', { podSelector: podA, ingress: [{ from: [{ namespaceSelector: nsZ }] }] });
    expect(reach({ ...nsRelabeled, policies: [q] }).split('\n')[3]).toBe('y/a .........');
    // kubernetes.io/metadata.name is there even without a Namespace object
    const byName = np('x', 'n', {
      podSelector: podA,
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'y' } } }] }],
    });
    expect(reach({ ...base, namespaces: [], policies: [byName] })).toBe(
      reach(objects({ policies: [np('x', 'p', { podSelector: podA, ingress: [{ from: [{ namespaceSelector: nsY }] }] })] })),
    );
  });
});

describe('AdminNetworkPolicy and BaselineAdminNetworkPolicy', () => {
  const subjectX = { namespaces: { matchLabels: { ns: 'x' } } };

  it('lower priority number first: Allow beats a later Deny, and beats NetworkPolicy isolation', () => {
    const allowYB = anp('allow-yb', {
      priority: 5,
      subject: subjectX,
      ingress: [{ name: 'yb', action: 'Allow', from: [{ pods: { namespaceSelector: nsY, podSelector: podB } }] }],
    });
    const denyY = anp('deny-y', { priority: 10, subject: subjectX, ingress: [{ name: 'y', action: 'Deny', from: [{ namespaces: nsY }] }] });
    expect(reach(objects({ anps: [denyY, allowYB] }))).toBe(tableOf((f, t) => !(t.startsWith('x/') && (f === 'y/a' || f === 'y/c'))));
    const o = objects({ anps: [denyY, allowYB], policies: [denyIngressX] });
    expect(reach(o)).toBe(
      truth(`
      x/a .XX......
      x/b X.X......
      x/c XX.......
      y/a XXX......
      y/b .........
      y/c XXX......
      z/a XXX......
      z/b XXX......
      z/c XXX......`),
    );
    const r = evaluate(o, { src: o.endpoints[4], dst: o.endpoints[0], protocol: 'TCP', port: 80 });
    expect(r.decidedBy).toMatchObject({
      kind: 'AdminNetworkPolicy',
      name: 'allow-yb',
      direction: 'ingress',
      rule: 0,
      ruleName: 'yb',
      action: 'Allow',
    });
    expect(r.ingress.selectedBy.adminNetworkPolicies).toEqual([
      { name: 'allow-yb', priority: 5 },
      { name: 'deny-y', priority: 10 },
    ]);
  });

  it('Deny beats a NetworkPolicy allow', () => {
    const o = objects({
      policies: [np('x', 'all', { podSelector: {}, ingress: [{}] })],
      anps: [anp('no-z', { priority: 1, subject: subjectX, ingress: [{ action: 'Deny', from: [{ namespaces: nsZ }] }] })],
    });
    expect(reach(o)).toBe(tableOf((f, t) => !(t.startsWith('x/') && f.startsWith('z/'))));
  });

  it('Pass skips the remaining ANPs and hands the decision to NetworkPolicy', () => {
    const pass = anp('pass-y', { priority: 1, subject: subjectX, ingress: [{ action: 'Pass', from: [{ namespaces: nsY }] }] });
    const denyAll = anp('deny-all', { priority: 2, subject: subjectX, ingress: [{ action: 'Deny', from: [{ namespaces: {} }] }] });
    expect(reach(objects({ anps: [pass, denyAll] }))).toBe(tableOf((f, t) => !t.startsWith('x/') || f.startsWith('y/')));
    // with NetworkPolicy isolating x, the passed traffic is denied by it
    const o = objects({
      anps: [pass, denyAll],
      policies: [np('x', 'from-yb', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: nsY, podSelector: podB }] }] })],
    });
    expect(reach(o)).toBe(tableOf((f, t) => !t.startsWith('x/') || f === 'y/b'));
    const r = evaluate(o, { src: o.endpoints[3], dst: o.endpoints[0], protocol: 'TCP', port: 80 });
    expect(r.ingress.passedBy).toMatchObject({ name: 'pass-y' });
    expect(r.decidedBy).toEqual({ default: 'isolated', side: 'ingress' });
  });

  it('ANP ports: portNumber, portRange, namedPort', () => {
    const deny = (ports: NonNullable<Parameters<typeof anp>[1]['ingress']>[number]['ports']) =>
      objects({ anps: [anp('d', { priority: 1, subject: subjectX, ingress: [{ action: 'Deny', from: [{ namespaces: nsY }], ports }] })] });
    const denied = tableOf((f, t) => !(t.startsWith('x/') && f.startsWith('y/')));
    const num = deny([{ portNumber: { protocol: 'TCP', port: 80 } }]);
    expect(reach(num, tcp(80))).toBe(denied);
    expect(reach(num, tcp(81))).toBe(ALL);
    expect(reach(num, udp(80))).toBe(ALL);
    const range = deny([{ portRange: { start: 81, end: 82, protocol: 'UDP' } }]);
    expect(reach(range, udp(81))).toBe(denied);
    expect(reach(range, tcp(81))).toBe(ALL);
    const named = deny([{ namedPort: 'serve-81-udp' }]);
    expect(reach(named, udp(81))).toBe(denied);
    expect(reach(named, tcp(81))).toBe(ALL);
  });

  it('egress networks peers', () => {
    const o = objects({
      anps: [
        anp('no-c', {
          priority: 3,
          subject: subjectX,
          egress: [{ action: 'Deny', to: [{ networks: [`${podIPs(8).v4}/32`, '192.0.2.0/24'] }] }],
        }),
      ],
    });
    expect(reach(o)).toBe(tableOf((f, t) => !(f.startsWith('x/') && t === 'z/c')));
    expect(evaluate(o, { src: o.endpoints[0], dst: '192.0.2.9', protocol: 'UDP', port: 53 }).verdict).toBe('deny');
    expect(evaluate(o, { src: o.endpoints[0], dst: '198.51.100.9', protocol: 'UDP', port: 53 }).verdict).toBe('allow');
  });

  it('a rule with an unknown action acts on nothing (it never allows)', () => {
    const bad = anp('bad', { priority: 1, subject: subjectX, ingress: [{ action: 'Allow!' as 'Allow', from: [{ namespaces: {} }] }] });
    const o = objects({ anps: [bad], policies: [denyIngressX] });
    expect(reach(o)).toBe(reach(objects({ policies: [denyIngressX] })));
    expect(compileNode(o, 'n1').chains.some((c) => c.rules.some((r) => r.includes('anp_bad')))).toBe(false);
  });

  it('BaselineAdminNetworkPolicy applies only where NetworkPolicy does not isolate', () => {
    const b = banp({
      subject: subjectX,
      ingress: [
        { action: 'Allow', from: [{ namespaces: nsZ }] },
        { action: 'Deny', from: [{ namespaces: {} }] },
      ],
    });
    expect(reach(objects({ banp: b }))).toBe(tableOf((f, t) => !t.startsWith('x/') || f.startsWith('z/')));
    const o = objects({
      banp: b,
      policies: [np('x', 'a-from-y', { podSelector: podA, ingress: [{ from: [{ namespaceSelector: nsY }] }] })],
    });
    expect(reach(o)).toBe(
      truth(`
      x/a .XX......
      x/b X.X......
      x/c XX.......
      y/a .XX......
      y/b .XX......
      y/c .XX......
      z/a X........
      z/b X........
      z/c X........`),
    );
    const r = evaluate(o, { src: o.endpoints[6], dst: o.endpoints[1], protocol: 'TCP', port: 80 });
    expect(r.decidedBy).toMatchObject({ kind: 'BaselineAdminNetworkPolicy', name: 'default', rule: 0, action: 'Allow' });
  });
});

// ---------------------------------------------------------------- compiler

const flat = (rs: Ruleset): string => renderNft(rs, 'hqtest');
const setOf = (rs: Ruleset, name: string) => rs.sets.find((s) => s.name === name);
const mapOf = (rs: Ruleset, name: string) => rs.maps.find((m) => m.name === name) as Ruleset['maps'][number];

describe('compiler', () => {
  it('no policy: base chain only, empty verdict maps', () => {
    const rs = compileNode(objects(), 'n1');
    expect(rs.chains.map((c) => c.name)).toEqual(['forward']);
    expect(rs.maps.every((m) => m.elements.length === 0)).toBe(true);
    expect(setOf(rs, 'local4')?.elements).toHaveLength(9);
    expect(rs.chains[0].rules[0]).toBe('ct state established,related accept');
    const script = flat(rs);
    expect(script.startsWith('table inet hqtest {}\ndelete table inet hqtest\ntable inet hqtest {\n')).toBe(true);
    expect(script).toContain('type filter hook forward priority filter; policy accept;');
    expect(script).not.toMatch(/elements = \{ \}/);
  });

  it('default deny: one group chain shared by the isolated local pods, keyed by address in the vmaps', () => {
    const m = model({ node: (ns) => (ns === 'x' ? 'n1' : 'n2') });
    const rs = compileNode(objects({ ...m, policies: [denyIngressX] }), 'n1');
    const in4 = mapOf(rs, 'ingress4');
    expect(in4.elements.map(([k]) => k).sort()).toEqual([0, 1, 2].map((i) => podIPs(i).v4).sort());
    expect(new Set(in4.elements.map(([, v]) => v)).size).toBe(1);
    expect(mapOf(rs, 'ingress6').elements).toHaveLength(3);
    expect(mapOf(rs, 'egress4').elements).toHaveLength(0);
    const chain = rs.chains.find((c) => `jump ${c.name}` === in4.elements[0][1]);
    expect(chain?.rules).toEqual(['counter name default_deny_in drop']);
    // the other node's pods are not local
    expect(setOf(rs, 'local4')?.elements).toHaveLength(3);
    expect(compileNode(objects({ ...m, policies: [denyIngressX] }), 'n2').stats.ingressPods).toBe(0);
  });

  it('selectors compile to named address sets holding every node’s pods', () => {
    const m = model({ node: (ns) => (ns === 'x' ? 'n1' : 'n2') });
    const rs = compileNode(
      objects({
        ...m,
        policies: [
          np('x', 'p', {
            podSelector: podA,
            ingress: [
              {
                from: [{ namespaceSelector: nsY }, { podSelector: podB }],
                ports: [{ port: 80 }, { protocol: 'UDP', port: 81, endPort: 82 }],
              },
            ],
          }),
        ],
      }),
      'n1',
    );
    const chain = rs.chains.find((c) => c.name.startsWith('in_'));
    expect(chain?.rules).toHaveLength(5);
    const setNames = [...(chain?.rules.join('\n').matchAll(/@(ps[46]_[0-9a-f]+)/g) ?? [])].map((x) => x[1]);
    const elements = setNames.map((n) => setOf(rs, n)?.elements.sort());
    expect(elements).toContainEqual([3, 4, 5].map((i) => podIPs(i).v4).sort());
    expect(elements).toContainEqual([3, 4, 5].map((i) => podIPs(i).v6).sort());
    expect(elements).toContainEqual([podIPs(1).v4]);
    expect(chain?.rules[0]).toMatch(
      /^ip saddr @ps4_\w+ meta l4proto \. th dport \{ tcp \. 80, udp \. 81-82 \} counter name np_x_p_in_0 return$/,
    );
    expect(chain?.rules[4]).toBe('counter name default_deny_in drop');
  });

  it('ipBlock except is subtracted into interval elements', () => {
    expect(cidrRanges('10.0.0.0/24', ['10.0.0.64/26']).map(rangeElement)).toEqual(['10.0.0.0/26', '10.0.0.128/25']);
    expect(cidrRanges('10.0.0.0/24', ['10.0.0.1/32', '10.0.0.0/30', '11.0.0.0/8']).map(rangeElement)).toEqual(['10.0.0.4-10.0.0.255']);
    expect(cidrRanges('fd00::/64', ['fd00::/65']).map(rangeElement)).toEqual(['fd00::8000:0:0:0/65']);
    const rs = compileNode(
      objects({
        policies: [
          np('x', 'p', { podSelector: podA, ingress: [{ from: [{ ipBlock: { cidr: '10.77.0.0/24', except: ['10.77.0.0/28'] } }] }] }),
        ],
      }),
      'n1',
    );
    const cb = rs.sets.find((s) => s.name.startsWith('cb4_'));
    expect(cb).toMatchObject({ flags: ['interval'], elements: ['10.77.0.16-10.77.0.255'] });
    expect(rs.sets.some((s) => s.name.startsWith('cb6_'))).toBe(false);
  });

  it('endpoint addresses parse to the canonical text shared/ipnet.ts prints', () => {
    for (const a of [
      '10.1.2.3',
      '0.0.0.0',
      '255.255.255.255',
      'fd00::1',
      'FD00:0:0:0:0:0:0:1',
      '2001:db8:0:0:1:0:0:1',
      '2001:db8::',
      '::',
      '::1',
      '1:0:0:2:0:0:0:3',
      'fe80::abcd:0:0:1',
      '::ffff:10.1.2.3',
      '1:2:3:4:5:6:7:8',
    ]) {
      expect(parseAddr(a)?.text, a).toBe(canonicalIP(a));
      expect(parseAddr(a)?.value, a).toBe(parseIP(a)?.value);
    }
    for (const bad of ['10.1.2.256', '1:2:3:4:5:6:7:8:9', '1::2::3', 'fd00::12345', 'x', '10.1.2']) expect(parseAddr(bad), bad).toBeNull();
  });

  it('port matches', () => {
    expect(portMatch([{ protocol: 'TCP', first: 80, last: 80 }])).toBe('meta l4proto tcp th dport 80');
    expect(portMatch([{ protocol: 'TCP', first: 0, last: 65535 }])).toBe('meta l4proto tcp');
    expect(
      portMatch([
        { protocol: 'UDP', first: 0, last: 65535 },
        { protocol: 'TCP', first: 0, last: 65535 },
      ]),
    ).toBe('meta l4proto { tcp, udp }');
    expect(
      portMatch([
        { protocol: 'SCTP', first: 5, last: 9 },
        { protocol: 'TCP', first: 80, last: 80 },
      ]),
    ).toBe('meta l4proto . th dport { sctp . 5-9, tcp . 80 }');
  });

  it('ingress named ports resolve per local pod; egress named ports to a set of address . protocol . port', () => {
    const rs = compileNode(
      objects({
        policies: [
          np('x', 'p', {
            podSelector: podA,
            policyTypes: ['Ingress', 'Egress'],
            ingress: [{ ports: [{ port: 'serve-81-udp', protocol: 'UDP' }] }],
            egress: [{ to: [{ namespaceSelector: nsZ }], ports: [{ port: 'serve-80-tcp' }] }],
          }),
        ],
      }),
      'n1',
    );
    const inChain = rs.chains.find((c) => c.name.startsWith('in_'));
    expect(inChain?.rules[0]).toBe('meta l4proto udp th dport 81 counter name np_x_p_in_0 return');
    const eg = rs.chains.find((c) => c.name.startsWith('eg_'));
    expect(eg?.rules[0]).toMatch(/^ip daddr \. meta l4proto \. th dport @pn4_\w+ counter name np_x_p_eg_0 return$/);
    const pn4 = rs.sets.find((s) => s.name.startsWith('pn4_'));
    expect(pn4?.type).toBe('ipv4_addr . inet_proto . inet_service');
    expect(pn4?.elements.sort()).toEqual([6, 7, 8].map((i) => `${podIPs(i).v4} . tcp . 80`).sort());
  });

  it('ANP Pass jumps to the NetworkPolicy part; Allow returns, Deny drops', () => {
    const rs = compileNode(
      objects({
        anps: [
          anp('pass', {
            priority: 1,
            subject: { namespaces: {} },
            ingress: [
              { action: 'Pass', from: [{ namespaces: nsY }] },
              { action: 'Deny', from: [{ namespaces: nsZ }] },
              { action: 'Allow', from: [{ namespaces: {} }] },
            ],
          }),
        ],
        policies: [denyIngressX],
      }),
      'n1',
    );
    const names = rs.chains.map((c) => c.name);
    const x = rs.chains.find(
      (c) =>
        c.name.startsWith('in_') &&
        !c.name.endsWith('_np') &&
        names.includes(`${c.name}_np`) &&
        rs.chains.find((d) => d.name === `${c.name}_np`)?.rules.length === 1,
    );
    expect(x).toBeDefined();
    expect(x?.rules.filter((r) => r.includes(`goto ${x.name}_np`))).toHaveLength(3);
    expect(x?.rules.some((r) => r.endsWith('counter name anp_pass_in_1 drop'))).toBe(true);
    expect(x?.rules.some((r) => r.endsWith('counter name anp_pass_in_2 return'))).toBe(true);
  });

  it('the node reaches its pods unless allowFromNode is false; pods reach the node unless allowToNode is false', () => {
    const o = objects({ policies: [denyIngressX] });
    expect(compileNode(o, 'n1').chains.some((c) => c.hook === 'output' || c.hook === 'input')).toBe(false);
    const strict = compileNode(o, 'n1', { allowFromNode: false, allowToNode: false });
    expect(strict.chains.find((c) => c.hook === 'output')?.rules).toContain('ip daddr vmap @ingress4');
    expect(strict.chains.find((c) => c.hook === 'input')?.rules).toContain('ip6 saddr vmap @egress6');
    expect(policyTableScript(o, 'n1', { allowHostToPods: false, table: 'hqt' })).toContain('hook output');
  });

  it('counters: one per rule, named predictably, mapped back', () => {
    const o = objects({
      policies: [np('x', 'allow-web.v2', { podSelector: podA, ingress: [{}, {}] })],
      anps: [
        anp('a1', {
          priority: 1,
          subject: { namespaces: {} },
          egress: [{ name: 'dns', action: 'Allow', to: [{ networks: ['10.0.0.10/32'] }] }],
        }),
      ],
    });
    const rs = compileNode(o, 'n1');
    expect(rs.counters).toEqual(['anp_a1_eg_0', 'default_deny_eg', 'default_deny_in', 'np_x_allow-web.v2_in_0', 'np_x_allow-web.v2_in_1']);
    expect(parseCounterName('np_x_allow-web.v2_in_1')).toEqual({
      kind: 'NetworkPolicy',
      namespace: 'x',
      name: 'allow-web.v2',
      direction: 'ingress',
      rule: 1,
    });
    expect(parseCounterName('anp_a1_eg_0')).toEqual({ kind: 'AdminNetworkPolicy', name: 'a1', direction: 'egress', rule: 0 });
    expect(rs.counterInfo['anp_a1_eg_0']).toMatchObject({ ruleName: 'dns' });
    expect(parseCounterName('default_deny_in')).toEqual({ default: 'isolated', direction: 'ingress' });
    const long = counterName({ kind: 'NetworkPolicy', namespace: 'n'.repeat(63), name: 'p'.repeat(200), direction: 'egress', rule: 3 });
    expect(long).toMatch(/^npx_[0-9a-f]{8}_eg_3$/);
    expect(parseCounterName(long)).toBeUndefined();
  });

  it('endpoint churn inside existing groups is element updates; a new group is a full replace', () => {
    const o = objects({
      policies: [denyIngressX, np('y', 'from-b', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: {}, podSelector: podB }] }] })],
    });
    const before = policyTable(o, 'n1').ruleset;
    const extra: Endpoint = {
      ...o.endpoints[1],
      metadata: { namespace: 'y', name: 'b2', labels: { pod: 'b' } },
      spec: { ...o.endpoints[1].spec, containerId: 'c-y-b2', ips: ['10.77.0.99/24'] },
    };
    const after = compileNode({ ...o, endpoints: [...o.endpoints, extra] }, 'n1');
    const up = renderSetUpdates(before, after, 'hqt');
    expect(up).not.toBeNull();
    const lines = (up as string).trim().split('\n');
    expect(lines).toContain('add element inet hqt local4 { 10.77.0.99 }');
    expect(lines).toContain('add element inet hqt self4 { 10.77.0.99 . 10.77.0.99 }');
    expect(lines.some((l) => /^add element inet hqt ps4_\w+ \{ 10\.77\.0\.99 \}$/.test(l))).toBe(true);
    expect(lines.some((l) => /^add element inet hqt ingress4 \{ 10\.77\.0\.99 : jump in_\w+ \}$/.test(l))).toBe(true);
    expect(renderSetUpdates(after, before, 'hqt')).toContain('delete element inet hqt ingress4 { 10.77.0.99 }');
    expect(renderSetUpdates(after, after, 'hqt')).toBe('');
    // z's pods joining the existing default-deny group: elements only
    expect(renderSetUpdates(before, compileNode({ ...o, policies: [...o.policies, np('z', 'n', { podSelector: {} })] }, 'n1'))).toMatch(
      /^add element inet cni_ts_policy ingress4 /,
    );
    // a policy with new rules changes chains
    expect(
      renderSetUpdates(
        before,
        compileNode(
          { ...o, policies: [...o.policies, np('z', 'n', { podSelector: {}, ingress: [{ from: [{ podSelector: podA }] }] })] },
          'n1',
        ),
      ),
    ).toBeNull();
  });

  it('renderUpdate adds what is new, diffs elements, refills changed chains and removes what is gone, in that order', () => {
    const a = compileNode(
      objects({ policies: [np('x', 'p', { podSelector: podA, ingress: [{ from: [{ namespaceSelector: nsY }] }] })] }),
      'n1',
    );
    const b = compileNode(
      objects({ policies: [np('x', 'p', { podSelector: podA, ingress: [{ from: [{ namespaceSelector: nsZ }] }] })] }),
      'n1',
    );
    const lines = renderUpdate(a, b, 'hqt').trim().split('\n');
    const first = (re: RegExp) => lines.findIndex((l) => re.test(l));
    expect(first(/^add set inet hqt ps4_\w+ \{ type ipv4_addr; \}$/)).toBeGreaterThanOrEqual(0);
    expect(first(/^add chain inet hqt in_\w+$/)).toBeGreaterThanOrEqual(0);
    expect(first(/^add element inet hqt ingress4 /)).toBeGreaterThan(first(/^add chain/));
    expect(first(/^add rule inet hqt in_\w+ ip saddr @ps4_\w+ counter name np_x_p_in_0 return$/)).toBeGreaterThan(
      first(/^add element inet hqt ingress4 /),
    );
    expect(first(/^flush chain inet hqt in_/)).toBeGreaterThan(first(/^add element inet hqt ingress4 /));
    expect(first(/^delete chain inet hqt in_/)).toBeGreaterThan(first(/^flush chain/));
    expect(first(/^delete set inet hqt ps4_/)).toBeGreaterThan(first(/^delete chain/));
    expect(lines.some((l) => l.startsWith('delete counter') || l.startsWith('add counter'))).toBe(false);
    expect(renderUpdate(b, b, 'hqt')).toBe('');
    // to and from the empty state
    const none = compileNode(objects(), 'n1');
    expect(renderUpdate(none, b, 'hqt')).toContain('add counter inet hqt np_x_p_in_0');
    expect(renderUpdate(b, none, 'hqt')).toContain('delete counter inet hqt np_x_p_in_0');
  });

  it('is deterministic', () => {
    const o = objects({ policies: [denyIngressX, np('y', 'p', { podSelector: podA, ingress: [{ from: [{ namespaceSelector: nsZ }] }] })] });
    const shuffled = { ...o, endpoints: [...o.endpoints].reverse(), policies: [...o.policies].reverse() };
    expect(flat(compileNode(shuffled, 'n1'))).toBe(flat(compileNode(o, 'n1')));
  });
});

describe('drift check (rulesetDrift over a shared/firewall table read)', () => {
  /** The objects `nft -j list table` would print for a loaded `rs` (one rule object per rule line). */
  const listedAs = (rs: Ruleset): NftObject[] => [
    { table: { family: 'inet', name: 't' } },
    ...rs.counters.map((name) => ({ counter: { family: 'inet', table: 't', name } })),
    ...rs.sets.map((x) => ({ set: { family: 'inet', table: 't', name: x.name, elem: [...new Set(x.elements)] } })),
    ...rs.maps.map((m) => ({ map: { family: 'inet', table: 't', name: m.name, elem: [...m.elements] } })),
    ...rs.chains.flatMap((c) => [
      { chain: { family: 'inet', table: 't', name: c.name } },
      ...c.rules.map((_, i) => ({ rule: { family: 'inet', table: 't', chain: c.name, handle: i + 1 } })),
    ]),
  ];

  it('a table holding the ruleset shows none; a missing element, rule, chain or counter does', () => {
    const rs = compileNode(
      objects({ policies: [denyIngressX, np('y', 'allow', { podSelector: podA, ingress: [{ from: [{ podSelector: podB }] }] })] }),
      'n1',
    );
    const listed = listedAs(rs);
    expect(rulesetDrift(rs, firewallTableOf('inet', 't', listed))).toBeUndefined();
    const m = rs.maps.find((x) => x.elements.length > 0)!;
    const fewer = listed.map((o) => (o.map?.name === m.name ? { map: { ...o.map, elem: m.elements.slice(1) } } : o));
    expect(rulesetDrift(rs, firewallTableOf('inet', 't', fewer))).toBe(
      `map ${m.name} has ${m.elements.length - 1} elements, not ${m.elements.length}`,
    );
    const c = rs.chains.find((x) => x.rules.length > 0)!;
    const oneRuleLess = listed.filter((o) => !(o.rule?.chain === c.name && o.rule.handle === 1));
    expect(rulesetDrift(rs, firewallTableOf('inet', 't', oneRuleLess))).toBe(
      `chain ${c.name} has ${c.rules.length - 1} rules, not ${c.rules.length}`,
    );
    expect(
      rulesetDrift(
        rs,
        firewallTableOf(
          'inet',
          't',
          listed.filter((o) => o.chain?.name !== c.name),
        ),
      ),
    ).toBe(`lacks chain ${c.name}`);
    expect(
      rulesetDrift(
        rs,
        firewallTableOf(
          'inet',
          't',
          listed.filter((o) => !o.counter),
        ),
      ),
    ).toBe(`lacks counter ${rs.counters[0]}`);
    expect(rulesetDrift(rs, firewallTableOf('inet', 't', []))).toBe(`lacks chain ${rs.chains[0]!.name}`);
  });
});
