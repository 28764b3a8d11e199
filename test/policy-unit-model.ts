/**
 * The upstream Kubernetes network-policy e2e model, as objects: namespaces x, y, z (label
 * ns=x|y|z), pods a, b, c in each (label pod=a|b|c) serving TCP and UDP on 80 and 81 (container
 * ports named serve-80-tcp, serve-80-udp, serve-81-tcp, serve-81-udp), and truth tables.
 * Shared by test/policy-unit.test.ts and test/policy-nft.test.ts.
 */
import type {
  AdminNetworkPolicy,
  BaselineAdminNetworkPolicy,
  Endpoint,
  Namespace,
  NetworkPolicy,
  Protocol,
} from '../shared/objects/types.ts';
import { evaluate, PolicyIndex, type PolicyObjects } from '../shared/policy/index.ts';

export const NAMESPACES = ['x', 'y', 'z'] as const;
export const PODS = ['a', 'b', 'c'] as const;
export const PEERS = NAMESPACES.flatMap((ns) => PODS.map((p) => `${ns}/${p}`));

/** Pod i (0..8, x/a first) gets 10.<net>.0.(10+i) and fd<net>::(10+i). */
export function podIPs(i: number, net = 77): { v4: string; v6: string } {
  return { v4: `10.${net}.0.${10 + i}`, v6: `fd${net}::${(10 + i).toString(16)}` };
}

export function model(
  opts: { net?: number; node?: (ns: string, pod: string) => string; ips?: (i: number) => { v4: string; v6: string } } = {},
): { namespaces: Namespace[]; endpoints: Endpoint[] } {
  const namespaces: Namespace[] = NAMESPACES.map((ns) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { ns } } }));
  const endpoints: Endpoint[] = PEERS.map((id, i) => {
    const [ns, pod] = id.split('/');
    const ip = opts.ips ? opts.ips(i) : podIPs(i, opts.net);
    return {
      apiVersion: 'cni-ts.dev/v1',
      kind: 'Endpoint',
      metadata: { namespace: ns, name: pod, labels: { pod } },
      spec: {
        node: opts.node ? opts.node(ns, pod) : 'n1',
        network: 'hq',
        containerId: `c-${ns}-${pod}`,
        ifname: 'eth0',
        ips: [`${ip.v4}/24`, `${ip.v6}/64`],
        ports: [80, 81].flatMap((port) =>
          (['TCP', 'UDP'] as const).map((protocol) => ({ name: `serve-${port}-${protocol.toLowerCase()}`, containerPort: port, protocol })),
        ),
      },
    };
  });
  return { namespaces, endpoints };
}

export function objects(
  parts: {
    policies?: NetworkPolicy[];
    anps?: AdminNetworkPolicy[];
    banp?: BaselineAdminNetworkPolicy;
    endpoints?: Endpoint[];
    namespaces?: Namespace[];
  } = {},
): PolicyObjects {
  const m = model();
  return {
    endpoints: parts.endpoints ?? m.endpoints,
    namespaces: parts.namespaces ?? m.namespaces,
    policies: parts.policies ?? [],
    anps: parts.anps ?? [],
    banp: parts.banp ?? null,
  };
}

export function np(ns: string, name: string, spec: NetworkPolicy['spec']): NetworkPolicy {
  return { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace: ns, name }, spec };
}
export function anp(name: string, spec: AdminNetworkPolicy['spec']): AdminNetworkPolicy {
  return { apiVersion: 'policy.networking.k8s.io/v1alpha1', kind: 'AdminNetworkPolicy', metadata: { name }, spec };
}
export function banp(spec: BaselineAdminNetworkPolicy['spec']): BaselineAdminNetworkPolicy {
  return { apiVersion: 'policy.networking.k8s.io/v1alpha1', kind: 'BaselineAdminNetworkPolicy', metadata: { name: 'default' }, spec };
}

export interface Probe {
  port: number;
  protocol: Protocol;
  family?: 4 | 6;
}

/** The evaluator's 9x9 matrix: one line per source, "x/a ..X......" ('.' reaches, 'X' not), destinations x/a..z/c. */
export function reach(o: PolicyObjects, probe: Probe = { port: 80, protocol: 'TCP' }): string {
  const idx = new PolicyIndex(o);
  return PEERS.map((from, i) => {
    const src = o.endpoints[i];
    const row = PEERS.map((_to, j) =>
      evaluate(idx, { src, dst: o.endpoints[j], protocol: probe.protocol, port: probe.port, family: probe.family ?? 4 }).verdict === 'allow'
        ? '.'
        : 'X',
    ).join('');
    return `${from} ${row}`;
  }).join('\n');
}

/** A hand-written truth table: 9 lines "x/a ........." in any indentation. */
export function truth(s: string): string {
  const lines = s
    .trim()
    .split('\n')
    .map((l) => l.trim().replace(/\s+/g, ' '))
    .filter((l) => l);
  if (lines.length !== 9) throw new Error(`truth table needs 9 rows, has ${lines.length}`);
  return lines.join('\n');
}

/** A table where `allowed(from, to)` holds ('.') and else 'X' (the diagonal always reaches). */
export function tableOf(allowed: (from: string, to: string) => boolean): string {
  return PEERS.map((f) => `${f} ${PEERS.map((t) => (f === t || allowed(f, t) ? '.' : 'X')).join('')}`).join('\n');
}

export const ALL = tableOf(() => true);

/**
 * A synthetic cluster for scale runs: `nEndpoints` pods over 20 namespaces (labels team, app,
 * tier; a named port), `nPolicies` NetworkPolicies of the usual shapes (default deny, same-
 * namespace app allow, namespace-selector allow, ipBlock with except, named port, egress), a
 * few AdminNetworkPolicies; `local` of the pods on node "n1", the rest on other nodes.
 */
export function scaleObjects(nEndpoints: number, nPolicies: number, local = nEndpoints): PolicyObjects {
  const NS = 20;
  const namespaces: Namespace[] = Array.from({ length: NS }, (_, i) => ({
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: `ns-${i}`, labels: { team: `t${i % 5}` } },
  }));
  const endpoints: Endpoint[] = Array.from({ length: nEndpoints }, (_, i) => ({
    apiVersion: 'cni-ts.dev/v1',
    kind: 'Endpoint',
    metadata: { namespace: `ns-${i % NS}`, name: `pod-${i}`, labels: { app: `app-${i % 10}`, tier: `tier-${i % 3}` } },
    spec: {
      node: i < local ? 'n1' : `n${2 + (i % 7)}`,
      network: 'hq',
      containerId: `c${i}`,
      ifname: 'eth0',
      ips: [`10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/16`, `fd64::${i.toString(16)}/64`],
      ports: [
        { name: 'http', containerPort: 8080 + (i % 3) },
        { name: 'dns', containerPort: 53, protocol: 'UDP' },
      ],
    },
  }));
  const policies: NetworkPolicy[] = Array.from({ length: nPolicies }, (_, i) => {
    const ns = `ns-${i % NS}`;
    const app = { matchLabels: { app: `app-${i % 10}` } };
    switch (i % 6) {
      case 0:
        return np(ns, `deny-${i}`, { podSelector: {}, policyTypes: ['Ingress', 'Egress'] });
      case 1:
        return np(ns, `app-${i}`, {
          podSelector: app,
          ingress: [{ from: [{ podSelector: { matchLabels: { app: `app-${(i + 1) % 10}` } } }], ports: [{ port: 8080, endPort: 8082 }] }],
        });
      case 2:
        return np(ns, `team-${i}`, {
          podSelector: app,
          ingress: [
            {
              from: [
                {
                  namespaceSelector: { matchLabels: { team: `t${i % 5}` } },
                  podSelector: { matchExpressions: [{ key: 'tier', operator: 'In', values: ['tier-0', 'tier-1'] }] },
                },
              ],
            },
          ],
        });
      case 3:
        return np(ns, `cidr-${i}`, {
          podSelector: { matchLabels: { tier: `tier-${i % 3}` } },
          ingress: [
            {
              from: [
                { ipBlock: { cidr: '10.100.0.0/16', except: [`10.100.${i % 4}.0/24`] } },
                { ipBlock: { cidr: 'fd64::/64', except: [`fd64::${i.toString(16)}/128`] } },
              ],
              ports: [{ port: 'http' }],
            },
          ],
        });
      case 4:
        return np(ns, `egress-${i}`, {
          podSelector: app,
          policyTypes: ['Egress'],
          egress: [
            {
              to: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: 'app-0' } } }],
              ports: [{ port: 'dns', protocol: 'UDP' }, { port: 'http' }],
            },
            { to: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['10.0.0.0/8'] } }] },
          ],
        });
      default:
        return np(ns, `multi-${i}`, {
          podSelector: { matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['app-1'] }] },
          ingress: [
            {
              from: [{ namespaceSelector: { matchLabels: { team: 't1' } } }, { podSelector: { matchLabels: { tier: 'tier-2' } } }],
              ports: [{ protocol: 'UDP', port: 53 }, { port: 443 }],
            },
          ],
        });
    }
  });
  const anps: AdminNetworkPolicy[] = [
    anp('deny-t4', {
      priority: 10,
      subject: { namespaces: { matchLabels: { team: 't3' } } },
      ingress: [{ action: 'Deny', from: [{ namespaces: { matchLabels: { team: 't4' } } }] }],
    }),
    anp('pass-t0', {
      priority: 5,
      subject: { namespaces: {} },
      ingress: [{ action: 'Pass', from: [{ namespaces: { matchLabels: { team: 't0' } } }] }],
      egress: [{ action: 'Allow', to: [{ networks: ['10.96.0.10/32'] }], ports: [{ portNumber: { protocol: 'UDP', port: 53 } }] }],
    }),
  ];
  return {
    endpoints,
    namespaces,
    policies,
    anps,
    banp: banp({ subject: { namespaces: {} }, ingress: [{ action: 'Deny', from: [{ namespaces: { matchLabels: { team: 't2' } } }] }] }),
  };
}
