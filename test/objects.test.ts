/** Cluster objects: label selectors, namespace labels, validation and defaulting (pure). */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AgentConfigError, configPathFrom, loadAgentConfig, parseAgentConfig } from '../shared/agentconfig.ts';
import { isEmptySelector, matchesSelector, namespaceLabels, parseSelector, selectorString } from '../shared/objects/selectors.ts';
import type { LabelSelector, NetworkPolicy } from '../shared/objects/types.ts';
import {
  assertValidObject,
  defaultNetworkPolicy,
  defaultService,
  effectivePolicyTypes,
  ObjectValidationError,
  validateObject,
} from '../shared/objects/validate.ts';

describe('matchesSelector (Kubernetes semantics)', () => {
  const labels = { app: 'web', tier: 'fe', env: '' };
  const cases: Array<[string, LabelSelector | undefined, boolean]> = [
    ['undefined selects all', undefined, true],
    ['{} selects all', {}, true],
    ['empty lists select all', { matchLabels: {}, matchExpressions: [] }, true],
    ['matchLabels equal', { matchLabels: { app: 'web' } }, true],
    ['matchLabels all must hold', { matchLabels: { app: 'web', tier: 'be' } }, false],
    ['matchLabels missing key', { matchLabels: { role: 'x' } }, false],
    ['empty value label', { matchLabels: { env: '' } }, true],
    ['In', { matchExpressions: [{ key: 'tier', operator: 'In', values: ['fe', 'be'] }] }, true],
    ['In, other value', { matchExpressions: [{ key: 'tier', operator: 'In', values: ['be'] }] }, false],
    ['In, key absent', { matchExpressions: [{ key: 'role', operator: 'In', values: ['x'] }] }, false],
    ['NotIn', { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['be'] }] }, true],
    ['NotIn, value listed', { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['fe'] }] }, false],
    ['NotIn, key absent holds', { matchExpressions: [{ key: 'role', operator: 'NotIn', values: ['x'] }] }, true],
    ['Exists', { matchExpressions: [{ key: 'env', operator: 'Exists' }] }, true],
    ['Exists, absent', { matchExpressions: [{ key: 'role', operator: 'Exists' }] }, false],
    ['DoesNotExist', { matchExpressions: [{ key: 'role', operator: 'DoesNotExist' }] }, true],
    ['DoesNotExist, present', { matchExpressions: [{ key: 'app', operator: 'DoesNotExist' }] }, false],
    ['labels AND expressions', { matchLabels: { app: 'web' }, matchExpressions: [{ key: 'tier', operator: 'In', values: ['be'] }] }, false],
  ];
  it.each(cases)('%s', (_name, sel, want) => {
    expect(matchesSelector(sel, labels)).toBe(want);
  });
  it('no labels at all', () => {
    expect(matchesSelector({}, undefined)).toBe(true);
    expect(matchesSelector({ matchLabels: { a: 'b' } }, undefined)).toBe(false);
    expect(matchesSelector({ matchExpressions: [{ key: 'a', operator: 'DoesNotExist' }] }, {})).toBe(true);
  });
  it('selectorString and isEmptySelector', () => {
    expect(isEmptySelector({})).toBe(true);
    expect(isEmptySelector({ matchLabels: { a: 'b' } })).toBe(false);
    expect(selectorString({})).toBe('<none>');
    expect(
      selectorString({
        matchLabels: { app: 'web' },
        matchExpressions: [
          { key: 't', operator: 'In', values: ['a', 'b'] },
          { key: 'x', operator: 'Exists' },
          { key: 'y', operator: 'DoesNotExist' },
        ],
      }),
    ).toBe('app=web,t in (a,b),x,!y');
  });
});

describe('parseSelector (kubectl -l)', () => {
  it('reads every form', () => {
    expect(parseSelector('app=web,tier==fe, env!=prod,team,!legacy,zone in (a, b),ring notin (0)')).toEqual({
      matchLabels: { app: 'web', tier: 'fe' },
      matchExpressions: [
        { key: 'env', operator: 'NotIn', values: ['prod'] },
        { key: 'team', operator: 'Exists' },
        { key: 'legacy', operator: 'DoesNotExist' },
        { key: 'zone', operator: 'In', values: ['a', 'b'] },
        { key: 'ring', operator: 'NotIn', values: ['0'] },
      ],
    });
    expect(parseSelector('')).toEqual({ matchLabels: {}, matchExpressions: [] });
    expect(matchesSelector(parseSelector('example.com/team=a,!x'), { 'example.com/team': 'a' })).toBe(true);
    expect(() => parseSelector('a in ()')).toThrow('the list is empty');
    expect(() => parseSelector('a=b=c')).toThrow('"a=b=c"');
  });
});

describe('namespaceLabels', () => {
  it('adds kubernetes.io/metadata.name, also for a namespace never applied', () => {
    expect(namespaceLabels(undefined, 'x')).toEqual({ 'kubernetes.io/metadata.name': 'x' });
    expect(
      namespaceLabels(
        { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'y', labels: { team: 'a', 'kubernetes.io/metadata.name': 'wrong' } } },
        'y',
      ),
    ).toEqual({
      team: 'a',
      'kubernetes.io/metadata.name': 'y',
    });
  });
});

const np = (spec: unknown, meta: Record<string, unknown> = { name: 'p', namespace: 'x' }): unknown => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: meta,
  spec,
});

describe('validateObject', () => {
  it('accepts the upstream examples', () => {
    const full = np({
      podSelector: { matchLabels: { role: 'db' } },
      policyTypes: ['Ingress', 'Egress'],
      ingress: [
        {
          from: [
            { ipBlock: { cidr: '172.17.0.0/16', except: ['172.17.1.0/24'] } },
            { namespaceSelector: { matchLabels: { project: 'myproject' } }, podSelector: { matchLabels: { role: 'frontend' } } },
          ],
          ports: [{ protocol: 'TCP', port: 6379 }, { port: 'http' }],
        },
      ],
      egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/24' } }], ports: [{ protocol: 'TCP', port: 32000, endPort: 32768 }] }],
    });
    expect(validateObject(full)).toEqual([]);
    expect(
      validateObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x', labels: { 'example.com/team': 'a_b.c' } } }),
    ).toEqual([]);
    expect(
      validateObject({
        apiVersion: 'policy.networking.k8s.io/v1alpha1',
        kind: 'AdminNetworkPolicy',
        metadata: { name: 'cluster-control' },
        spec: {
          priority: 34,
          subject: { namespaces: {} },
          ingress: [
            {
              name: 'allow-ns',
              action: 'Pass',
              from: [{ namespaces: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }],
              ports: [{ portNumber: { protocol: 'TCP', port: 80 } }],
            },
          ],
          egress: [
            {
              action: 'Deny',
              to: [{ networks: ['10.0.0.0/8'] }],
              ports: [{ portRange: { start: 1000, end: 2000 } }, { namedPort: 'dns' }],
            },
            { action: 'Allow', to: [{ pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'dns' } } } }] },
          ],
        },
      }),
    ).toEqual([]);
    expect(
      validateObject({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'web', namespace: 'x' },
        spec: {
          selector: { app: 'web' },
          ports: [
            { name: 'http', port: 80, targetPort: 'http' },
            { name: 'https', port: 443, targetPort: 8443 },
          ],
          clusterIP: '10.96.0.10',
          sessionAffinity: 'ClientIP',
        },
      }),
    ).toEqual([]);
  });

  const bad: Array<[string, unknown, string]> = [
    ['unknown kind', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'a' } }, 'kind: "Pod" is not a kind'],
    [
      'wrong apiVersion',
      { apiVersion: 'v1', kind: 'NetworkPolicy', metadata: { name: 'a' }, spec: { podSelector: {} } },
      'apiVersion: "v1" is not the apiVersion of NetworkPolicy',
    ],
    ['no name', { apiVersion: 'v1', kind: 'Namespace', metadata: {} }, 'metadata.name: is required'],
    ['bad name', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'Foo_bar' } }, 'metadata.name: "Foo_bar" must be lowercase'],
    [
      'label value not a string',
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'a', labels: { n: 1 } } },
      'metadata.labels.n: must be a string',
    ],
    [
      'bad label key',
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'a', labels: { '-x': 'y' } } },
      'metadata.labels.-x: label key',
    ],
    ['no podSelector', np({}), 'spec.podSelector: is required'],
    [
      'port out of range',
      np({ podSelector: {}, ingress: [{ ports: [{ port: 70000 }] }] }),
      'spec.ingress[0].ports[0].port: 70000 is not a port number',
    ],
    ['port 0', np({ podSelector: {}, egress: [{ ports: [{ port: 0 }] }] }), 'spec.egress[0].ports[0].port: 0 is not a port number'],
    [
      'endPort below port',
      np({ podSelector: {}, ingress: [{ ports: [{ port: 100, endPort: 90 }] }] }),
      'spec.ingress[0].ports[0].endPort: 90 is below port 100',
    ],
    [
      'endPort with a named port',
      np({ podSelector: {}, ingress: [{ ports: [{ port: 'http', endPort: 90 }] }] }),
      'endPort: is only allowed with a numeric port',
    ],
    ['numeric string port', np({ podSelector: {}, ingress: [{ ports: [{ port: '80' }] }] }), 'port: "80" is not a port name'],
    [
      'protocol',
      np({ podSelector: {}, ingress: [{ ports: [{ protocol: 'ICMP', port: 1 }] }] }),
      'protocol: "ICMP" is not one of TCP, UDP, SCTP',
    ],
    [
      'policyTypes value',
      np({ podSelector: {}, policyTypes: ['Inbound'] }),
      'spec.policyTypes[0]: "Inbound" is not one of Ingress, Egress',
    ],
    [
      'bad CIDR',
      np({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/33' } }] }] }),
      'spec.ingress[0].from[0].ipBlock.cidr: "10.0.0.0/33" is not a CIDR',
    ],
    [
      'except outside cidr',
      np({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/16', except: ['10.1.0.0/24'] } }] }] }),
      'except[0]: "10.1.0.0/24" must be a strict subset',
    ],
    [
      'except equal to cidr',
      np({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/16', except: ['10.0.0.0/16'] } }] }] }),
      'must be a strict subset',
    ],
    [
      'except other family',
      np({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/16', except: ['fd00::/64'] } }] }] }),
      'not the same IP family',
    ],
    [
      'ipBlock with a selector',
      np({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8' }, podSelector: {} }] }] }),
      'ipBlock cannot be combined',
    ],
    [
      'empty peer',
      np({ podSelector: {}, ingress: [{ from: [{}] }] }),
      'spec.ingress[0].from[0]: must set podSelector, namespaceSelector or ipBlock',
    ],
    [
      'In without values',
      np({ podSelector: { matchExpressions: [{ key: 'a', operator: 'In' }] } }),
      'spec.podSelector.matchExpressions[0].values: must be non-empty',
    ],
    [
      'bad operator',
      np({ podSelector: { matchExpressions: [{ key: 'a', operator: 'Gt', values: ['1'] }] } }),
      'operator: "Gt" is not one of',
    ],
    [
      'ANP priority',
      {
        apiVersion: 'policy.networking.k8s.io/v1alpha1',
        kind: 'AdminNetworkPolicy',
        metadata: { name: 'a' },
        spec: { priority: 1001, subject: { namespaces: {} } },
      },
      'spec.priority: 1001 must be an integer from 0 to 1000',
    ],
    [
      'ANP action',
      {
        apiVersion: 'policy.networking.k8s.io/v1alpha1',
        kind: 'AdminNetworkPolicy',
        metadata: { name: 'a' },
        spec: { priority: 1, subject: { namespaces: {} }, ingress: [{ action: 'Drop', from: [{ namespaces: {} }] }] },
      },
      'spec.ingress[0].action: "Drop" is not one of Allow, Deny, Pass',
    ],
    [
      'ANP subject with both',
      {
        apiVersion: 'policy.networking.k8s.io/v1alpha1',
        kind: 'AdminNetworkPolicy',
        metadata: { name: 'a' },
        spec: { priority: 1, subject: { namespaces: {}, pods: { namespaceSelector: {}, podSelector: {} } } },
      },
      'spec.subject: must set exactly one of namespaces, pods',
    ],
    [
      'BANP name',
      {
        apiVersion: 'policy.networking.k8s.io/v1alpha1',
        kind: 'BaselineAdminNetworkPolicy',
        metadata: { name: 'other' },
        spec: { subject: { namespaces: {} } },
      },
      'metadata.name: must be "default"',
    ],
    [
      'BANP has no Pass',
      {
        apiVersion: 'policy.networking.k8s.io/v1alpha1',
        kind: 'BaselineAdminNetworkPolicy',
        metadata: { name: 'default' },
        spec: { subject: { namespaces: {} }, egress: [{ action: 'Pass', to: [{ namespaces: {} }] }] },
      },
      'spec.egress[0].action: "Pass" is not one of Allow, Deny',
    ],
    [
      'Service port',
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 's' }, spec: { ports: [{ port: 0 }] } },
      'spec.ports[0].port: 0 is not a port number',
    ],
    [
      'Service names',
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 's' }, spec: { ports: [{ port: 1 }, { port: 2 }] } },
      'spec.ports[0].name: is required when a Service has more than one port',
    ],
    [
      'Service clusterIP',
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 's' }, spec: { clusterIP: '10.96.0.300' } },
      'spec.clusterIP: "10.96.0.300" is not an IP address',
    ],
  ];
  it.each(bad)('rejects: %s', (_name, doc, msg) => {
    const problems = validateObject(doc);
    expect(problems.join('\n')).toContain(msg);
  });

  it('assertValidObject names the document and every problem', () => {
    const doc = np({ podSelector: {}, ingress: [{ ports: [{ port: 0 }, { port: 1, endPort: 0 }] }] }, { name: 'deny', namespace: 'x' });
    try {
      assertValidObject(doc);
      throw new Error('accepted');
    } catch (e) {
      expect(e).toBeInstanceOf(ObjectValidationError);
      const v = e as ObjectValidationError;
      expect(v.document).toBe('NetworkPolicy x/deny');
      expect(v.problems).toHaveLength(2);
    }
  });
});

describe('defaulting', () => {
  const base = (spec: Partial<NetworkPolicy['spec']>): NetworkPolicy => ({
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: 'p' },
    spec: { podSelector: {}, ...spec },
  });
  it('policyTypes: Ingress always, Egress only with egress rules; explicit ones kept', () => {
    expect(effectivePolicyTypes(base({}))).toEqual(['Ingress']);
    expect(effectivePolicyTypes(base({ egress: [{}] }))).toEqual(['Ingress', 'Egress']);
    expect(effectivePolicyTypes(base({ egress: [] }))).toEqual(['Ingress']);
    expect(effectivePolicyTypes(base({ policyTypes: ['Egress'] }))).toEqual(['Egress']);
  });
  it('protocol TCP', () => {
    const d = defaultNetworkPolicy(base({ ingress: [{ ports: [{ port: 80 }, { protocol: 'UDP', port: 53 }] }] }));
    expect(d.spec.ingress?.[0]?.ports).toEqual([
      { protocol: 'TCP', port: 80 },
      { protocol: 'UDP', port: 53 },
    ]);
    expect(d.spec.policyTypes).toEqual(['Ingress']);
    const s = defaultService({ apiVersion: 'v1', kind: 'Service', metadata: { name: 's' }, spec: { ports: [{ port: 80 }] } });
    expect(s.spec.ports).toEqual([{ port: 80, protocol: 'TCP', targetPort: 80 }]);
    expect(s.spec.sessionAffinity).toBe('None');
  });
});

describe('agent config', () => {
  it('picks the file: --config, then CNI_TS_CONFIG, then /etc/cni-ts/agent.json', () => {
    expect(configPathFrom(['get', '--config', '/a.json'], { CNI_TS_CONFIG: '/b.json' })).toBe('/a.json');
    expect(configPathFrom(['--config=/c.json'], {})).toBe('/c.json');
    expect(configPathFrom([], { CNI_TS_CONFIG: '/b.json' })).toBe('/b.json');
    expect(configPathFrom([], {})).toBe('/etc/cni-ts/agent.json');
  });
  it('defaults everything but store', () => {
    const c = parseAgentConfig({ store: { type: 'file', path: '/var/lib/cni-ts/cluster' } });
    expect(c).toMatchObject({
      node: hostname(),
      listen: '127.0.0.1:9464',
      socket: '/run/cni-ts/agent.sock',
      clusterDomain: 'cluster.local',
      serviceCIDR: ['10.96.0.0/16'],
      dns: {},
    });
  });
  it('names the file and the field in errors', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hs-agentconf-'));
    try {
      const f = path.join(dir, 'agent.json');
      writeFileSync(f, JSON.stringify({ store: { type: 'etcd', endpoints: [] } }));
      expect(() => loadAgentConfig(f)).toThrow(`agent config ${f}: store.endpoints: needs at least one endpoint`);
      writeFileSync(f, JSON.stringify({ store: { type: 'file', path: 'state' }, serviceCIDR: ['10.96.0.0/40'] }));
      expect(() => loadAgentConfig(f)).toThrow('serviceCIDR[0]: "10.96.0.0/40" is not a CIDR');
      writeFileSync(f, JSON.stringify({ store: { type: 'file', path: 'state' }, listen: 'nope' }));
      expect(() => loadAgentConfig(f)).toThrow('listen:');
      writeFileSync(f, JSON.stringify({ store: { type: 'file', path: 'state' } }));
      expect(loadAgentConfig(f).store).toEqual({ type: 'file', path: path.join(dir, 'state') });
      writeFileSync(f, '{');
      expect(() => loadAgentConfig(f)).toThrow('not valid JSON');
      expect(() => loadAgentConfig(path.join(dir, 'absent.json'))).toThrow(AgentConfigError);
      expect(() => parseAgentConfig({})).toThrow('store: is required');
      expect(() => parseAgentConfig({ store: { type: 'redis' } })).toThrow('store.type: must be "file" or "etcd"');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
