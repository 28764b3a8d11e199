/**
 * `cnictl describe KIND NAME|NAMESPACE/NAME`: one object for people, with what it relates to:
 * an endpoint lists the policies that select it (NetworkPolicies of its namespace, cluster-wide
 * AdminNetworkPolicies and the Baseline, by their selectors); a policy lists the endpoints it
 * selects; a namespace its effective labels and endpoints; a service its matching endpoints.
 */
import { parseArgs } from 'node:util';
import { matchesSelector, namespaceLabels } from '../../shared/objects/selectors.ts';
import { describeService } from './services.ts';
import type {
  AdminNetworkPolicy,
  AnpSubject,
  BaselineAdminNetworkPolicy,
  CniObject,
  Endpoint,
  Namespace,
  NetworkPolicy,
  Service,
} from '../../shared/objects/types.ts';
import { effectivePolicyTypes } from '../../shared/objects/validate.ts';
import type { ObjectStore } from '../../shared/store/index.ts';
import { CliError, resourceOf, splitName, UsageError, type Ctx } from './common.ts';

export const usage = `usage: cnictl describe KIND NAME|NAMESPACE/NAME [-n NAMESPACE]
  endpoints: addresses, labels, node, network, and the policies that select it
  networkpolicies, adminnetworkpolicies, baselineadminnetworkpolicies: the rules and the endpoints selected
  namespaces: effective labels and endpoints;  services: ports and matching endpoints
`;

/** Does an AdminNetworkPolicy / Baseline subject select this endpoint? */
export function subjectSelects(subject: AnpSubject | undefined, ep: Endpoint, nsLabels: Record<string, string>): boolean {
  if (subject?.namespaces) return matchesSelector(subject.namespaces, nsLabels);
  if (subject?.pods)
    return matchesSelector(subject.pods.namespaceSelector, nsLabels) && matchesSelector(subject.pods.podSelector, ep.metadata.labels);
  return false;
}

interface World {
  endpoints: Endpoint[];
  namespaces: Map<string, Namespace>;
  netpols: NetworkPolicy[];
  anps: AdminNetworkPolicy[];
  banps: BaselineAdminNetworkPolicy[];
}

async function world(store: ObjectStore): Promise<World> {
  const [eps, nss, nps, anps, banps] = await Promise.all([
    store.list<Endpoint>('Endpoint'),
    store.list<Namespace>('Namespace'),
    store.list<NetworkPolicy>('NetworkPolicy'),
    store.list<AdminNetworkPolicy>('AdminNetworkPolicy'),
    store.list<BaselineAdminNetworkPolicy>('BaselineAdminNetworkPolicy'),
  ]);
  return {
    endpoints: eps.items.map((i) => i.object),
    namespaces: new Map(nss.items.map((i) => [i.object.metadata.name, i.object])),
    netpols: nps.items.map((i) => i.object),
    anps: anps.items.map((i) => i.object).sort((a, b) => a.spec.priority - b.spec.priority),
    banps: banps.items.map((i) => i.object),
  };
}

const nsLabelsOf = (w: World, ns: string): Record<string, string> => namespaceLabels(w.namespaces.get(ns), ns);

/** The policies selecting an endpoint, in evaluation order (admin tiers, namespaced, baseline). */
export function policiesSelecting(w: World, ep: Endpoint): string[][] {
  const ns = ep.metadata.namespace ?? 'default';
  const nsl = nsLabelsOf(w, ns);
  const dirs = (p: { spec: { ingress?: unknown[]; egress?: unknown[] } }): string =>
    [p.spec.ingress?.length ? 'ingress' : '', p.spec.egress?.length ? 'egress' : ''].filter(Boolean).join(', ') || '(no rules)';
  const rows: string[][] = [];
  for (const p of w.anps)
    if (subjectSelects(p.spec.subject, ep, nsl)) rows.push(['AdminNetworkPolicy', p.metadata.name, `priority ${p.spec.priority}`, dirs(p)]);
  for (const p of w.netpols) {
    if ((p.metadata.namespace ?? 'default') === ns && matchesSelector(p.spec.podSelector, ep.metadata.labels)) {
      rows.push(['NetworkPolicy', `${ns}/${p.metadata.name}`, '', effectivePolicyTypes(p).join(', ')]);
    }
  }
  for (const p of w.banps)
    if (subjectSelects(p.spec.subject, ep, nsl)) rows.push(['BaselineAdminNetworkPolicy', p.metadata.name, 'baseline', dirs(p)]);
  return rows;
}

/** kubectl-style `Key:   value` lines, multi-valued fields one per line. */
function fields(pairs: Array<[string, string | string[]]>): string {
  const w = Math.max(...pairs.map(([k]) => k.length)) + 2;
  const out: string[] = [];
  for (const [k, v] of pairs) {
    const vals = Array.isArray(v) ? (v.length ? v : ['<none>']) : [v || '<none>'];
    vals.forEach((x, i) => out.push(`${(i === 0 ? `${k}:` : '').padEnd(w)}${x}`));
  }
  return `${out.join('\n')}\n`;
}
const labelLines = (l: Record<string, string> | undefined): string[] => Object.entries(l ?? {}).map(([k, v]) => `${k}=${v}`);
const epLine = (e: Endpoint): string => `${e.metadata.namespace}/${e.metadata.name}  ${e.spec.ips.join(',')}  (node ${e.spec.node})`;

async function yamlOf(v: unknown): Promise<string> {
  const { stringify } = await import('yaml');
  return stringify(v)
    .trimEnd()
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
}

export async function run(ctx: Ctx, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { namespace: { type: 'string', short: 'n' } },
    allowPositionals: true,
    strict: true,
  });
  const [word, nameArg, ...extra] = positionals;
  if (!word || !nameArg) throw new UsageError('describe needs KIND and NAME');
  if (extra.length) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);
  const r = resourceOf(word);
  if (!r) throw new UsageError(`unknown kind ${JSON.stringify(word)}`);
  const ref = { kind: r.kind, ...splitName(r.kind, nameArg, values.namespace) };
  const store = await ctx.store();
  const w = await world(store);
  const got = ref.kind === 'Namespace' ? undefined : await store.get(ref);
  const o: CniObject | undefined = got?.object;

  switch (ref.kind) {
    case 'Endpoint': {
      if (!o) break;
      const e = o as Endpoint;
      const sel = policiesSelecting(w, e);
      ctx.out(
        fields([
          ['Name', e.metadata.name],
          ['Namespace', e.metadata.namespace ?? 'default'],
          ['Labels', labelLines(e.metadata.labels)],
          ['Node', e.spec.node],
          ['Network', e.spec.network],
          ['Container', e.spec.containerId],
          ['Interface', `${e.spec.ifname}${e.spec.hostInterface ? ` (host side ${e.spec.hostInterface})` : ''}`],
          ['IPs', e.spec.ips],
          ['MAC', e.spec.mac ?? ''],
          ['Gateways', e.spec.gateways ?? []],
          ['Aliases', e.spec.aliases ?? []],
          ['Ports', (e.spec.ports ?? []).map((p) => `${p.name ? `${p.name} ` : ''}${p.containerPort}/${p.protocol ?? 'TCP'}`)],
          ['Revision', got?.revision ? String(got.revision) : ''],
        ]),
      );
      ctx.out(`Selected by policies:${sel.length ? '' : ' <none> (all traffic allowed)'}\n`);
      if (sel.length) {
        const widths = [0, 1, 2].map((i) => Math.max(...sel.map((row) => (row[i] ?? '').length)));
        for (const row of sel) ctx.out(`  ${row.map((c, i) => (i < 3 ? c.padEnd(widths[i] ?? 0) : c)).join('  ')}\n`);
      }
      return 0;
    }
    case 'NetworkPolicy': {
      if (!o) break;
      const p = o as NetworkPolicy;
      const ns = p.metadata.namespace ?? 'default';
      const selected = w.endpoints.filter((e) => e.metadata.namespace === ns && matchesSelector(p.spec.podSelector, e.metadata.labels));
      ctx.out(
        fields([
          ['Name', p.metadata.name],
          ['Namespace', ns],
          ['Labels', labelLines(p.metadata.labels)],
          ['Policy Types', effectivePolicyTypes(p).join(', ')],
        ]),
      );
      ctx.out(`Spec:\n${await yamlOf(p.spec)}\n`);
      ctx.out(fields([['Selects endpoints', selected.map(epLine)]]));
      return 0;
    }
    case 'AdminNetworkPolicy':
    case 'BaselineAdminNetworkPolicy': {
      if (!o) break;
      const p = o as AdminNetworkPolicy | BaselineAdminNetworkPolicy;
      const selected = w.endpoints.filter((e) => subjectSelects(p.spec.subject, e, nsLabelsOf(w, e.metadata.namespace ?? 'default')));
      ctx.out(
        fields([
          ['Name', p.metadata.name],
          ['Kind', p.kind],
          ...(p.kind === 'AdminNetworkPolicy' ? ([['Priority', String(p.spec.priority)]] as Array<[string, string]>) : []),
        ]),
      );
      ctx.out(`Spec:\n${await yamlOf(p.spec)}\n`);
      ctx.out(fields([['Selects endpoints', selected.map(epLine)]]));
      return 0;
    }
    case 'Namespace': {
      const applied = w.namespaces.get(ref.name);
      const eps = w.endpoints.filter((e) => e.metadata.namespace === ref.name);
      if (!applied && !eps.length) break;
      ctx.out(
        fields([
          ['Name', ref.name],
          ['Applied', applied ? 'yes' : 'no (implied by its endpoints)'],
          ['Labels', labelLines(nsLabelsOf(w, ref.name))],
          ['NetworkPolicies', w.netpols.filter((p) => p.metadata.namespace === ref.name).map((p) => p.metadata.name)],
          ['Endpoints', eps.map(epLine)],
        ]),
      );
      return 0;
    }
    case 'Service': {
      if (!o) break;
      ctx.out(await describeService(store, ctx.config().serviceCIDR, o as Service));
      return 0;
    }
    default:
      if (!o) break;
      ctx.out(`${await yamlOf(o)}\n`);
      return 0;
  }
  throw new CliError(`${r.plural} ${JSON.stringify(ref.name)} not found${ref.namespace ? ` in namespace ${ref.namespace}` : ''}`);
}
