/**
 * `cnictl get KIND [NAME] [-n NS | -A] [-o wide|json|yaml|name]`: kubectl-like tables of what
 * the store holds; `-o json|yaml` for scripts (one object with NAME, else a List).
 */
import { parseArgs } from 'node:util';
import type { AdminNetworkPolicy, AnpSubject, BaselineAdminNetworkPolicy, CniObject, Endpoint, EndpointSlice, Kind, NetworkPolicy, Service, SubnetLease } from '../../shared/objects/types.ts';
import { matchesSelector, parseSelector, selectorString } from '../../shared/objects/selectors.ts';
import { effectivePolicyTypes } from '../../shared/objects/validate.ts';
import type { ObjectStore } from '../../shared/store/index.ts';
import { CliError, isNamespaced, labelsString, outputFormat, POLICY_KINDS, qualifiedName, resourceOf, serialize, splitName, table, UsageError, type Ctx, type OutputFormat } from './common.ts';

export const usage = `usage: cnictl get KIND [NAME|NAMESPACE/NAME] [-n NAMESPACE | -A] [-o wide|json|yaml|name]
  KIND: endpoints (ep), policies (every policy kind), networkpolicies (netpol),
        adminnetworkpolicies (anp), baselineadminnetworkpolicies (banp), namespaces (ns),
        services (svc), endpointslices, subnetleases
  -n, --namespace NS      namespaced kinds: this namespace (default "default")
  -A, --all-namespaces    namespaced kinds: every namespace (adds a NAMESPACE column)
  -o, --output FORMAT     wide (more columns), json, yaml, name
  -l, --selector SEL      only objects whose labels match: k=v, k!=v, k, !k, k in (a,b), k notin (a,b)
`;

const ips = (e: Endpoint): string => e.spec.ips.map((c) => c.replace(/\/\d+$/, '')).join(',') || '<none>';
const subjectString = (s: AnpSubject | undefined): string => {
  if (s?.namespaces) return `namespaces: ${selectorString(s.namespaces)}`;
  if (s?.pods) return `pods: ns ${selectorString(s.pods.namespaceSelector)}; pods ${selectorString(s.pods.podSelector)}`;
  return '<none>';
};
const count = (l: unknown[] | undefined): string => String(l?.length ?? 0);

/** Columns per kind: [header, cell] pairs; `wide` ones only with -o wide. */
type Column = [string, (o: CniObject) => string, 'wide'?];
const COLUMNS: Record<Kind, Column[]> = {
  Endpoint: [
    ['IPS', (o) => ips(o as Endpoint)],
    ['NODE', (o) => (o as Endpoint).spec.node],
    ['NETWORK', (o) => (o as Endpoint).spec.network],
    ['CONTAINER', (o) => (o as Endpoint).spec.containerId.slice(0, 12), 'wide'],
    ['IFNAME', (o) => (o as Endpoint).spec.ifname, 'wide'],
    ['HOST-IF', (o) => (o as Endpoint).spec.hostInterface ?? '<none>', 'wide'],
    ['LABELS', (o) => labelsString(o.metadata.labels), 'wide'],
  ],
  NetworkPolicy: [
    ['POD-SELECTOR', (o) => selectorString((o as NetworkPolicy).spec.podSelector)],
    ['POLICY-TYPES', (o) => effectivePolicyTypes(o as NetworkPolicy).join(',')],
    ['INGRESS-RULES', (o) => count((o as NetworkPolicy).spec.ingress), 'wide'],
    ['EGRESS-RULES', (o) => count((o as NetworkPolicy).spec.egress), 'wide'],
  ],
  AdminNetworkPolicy: [
    ['PRIORITY', (o) => String((o as AdminNetworkPolicy).spec.priority)],
    ['SUBJECT', (o) => subjectString((o as AdminNetworkPolicy).spec.subject)],
    ['INGRESS-RULES', (o) => count((o as AdminNetworkPolicy).spec.ingress)],
    ['EGRESS-RULES', (o) => count((o as AdminNetworkPolicy).spec.egress)],
  ],
  BaselineAdminNetworkPolicy: [
    ['SUBJECT', (o) => subjectString((o as BaselineAdminNetworkPolicy).spec.subject)],
    ['INGRESS-RULES', (o) => count((o as BaselineAdminNetworkPolicy).spec.ingress)],
    ['EGRESS-RULES', (o) => count((o as BaselineAdminNetworkPolicy).spec.egress)],
  ],
  Namespace: [['LABELS', (o) => labelsString(o.metadata.labels)]],
  Service: [
    ['CLUSTER-IP', (o) => (o as Service).spec.clusterIP || '<none>'],
    ['PORT(S)', (o) => ((o as Service).spec.ports ?? []).map((p) => `${p.port}/${p.protocol ?? 'TCP'}`).join(',') || '<none>'],
    ['SELECTOR', (o) => labelsString((o as Service).spec.selector), 'wide'],
  ],
  EndpointSlice: [
    ['SERVICE', (o) => (o as EndpointSlice).metadata.labels['kubernetes.io/service-name']],
    ['ADDRESSES', (o) => (o as EndpointSlice).endpoints.flatMap((e) => e.addresses).join(',') || '<none>'],
  ],
  SubnetLease: [
    ['NETWORK', (o) => (o as SubnetLease).spec.network],
    ['SUBNET', (o) => (o as SubnetLease).spec.subnet],
    ['PUBLIC-IP', (o) => (o as SubnetLease).spec.publicIP],
    ['EXPIRES', (o) => (o as SubnetLease).spec.expires],
  ],
};

async function listKinds(store: ObjectStore, kinds: Kind[], namespace: string | undefined): Promise<CniObject[]> {
  const lists = await Promise.all(kinds.map((k) => store.list(k, isNamespaced(k) ? namespace : undefined)));
  return lists.flatMap((l) => l.items.map((i) => i.object));
}

export async function run(ctx: Ctx, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { namespace: { type: 'string', short: 'n' }, 'all-namespaces': { type: 'boolean', short: 'A' }, output: { type: 'string', short: 'o' }, selector: { type: 'string', short: 'l' } },
    allowPositionals: true,
    strict: true,
  });
  const format: OutputFormat = outputFormat(values.output);
  let selector;
  try {
    selector = values.selector === undefined ? undefined : parseSelector(values.selector);
  } catch (e) {
    throw new UsageError(`-l: ${(e as Error).message}`);
  }
  const [word, nameArg, ...extra] = positionals;
  if (!word) throw new UsageError('get needs a KIND');
  if (extra.length) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);
  if (values.namespace && values['all-namespaces']) throw new UsageError('-n and -A exclude each other');
  const policies = word === 'policies' || word === 'policy' || word === 'pol';
  const r = policies ? undefined : resourceOf(word);
  if (!policies && !r) throw new UsageError(`unknown kind ${JSON.stringify(word)}`);
  const kinds: Kind[] = policies ? POLICY_KINDS : [(r as { kind: Kind }).kind];
  const store = await ctx.store();

  if (nameArg !== undefined) {
    if (policies) throw new UsageError('get policies NAME: name the kind (networkpolicies, adminnetworkpolicies, ...)');
    const kind = kinds[0] as Kind;
    const ref = { kind, ...splitName(kind, nameArg, values.namespace) };
    const got = await store.get(ref);
    if (!got) throw new CliError(`${r?.plural} ${JSON.stringify(ref.name)} not found${ref.namespace ? ` in namespace ${ref.namespace}` : ''}`);
    return print(ctx, [got.object], kinds, format, false, true);
  }
  const all = Boolean(values['all-namespaces']);
  const namespace = all ? undefined : (values.namespace ?? 'default');
  const objects = (await listKinds(store, kinds, namespace)).filter((o) => !selector || matchesSelector(selector, o.metadata.labels));
  if (!objects.length && format !== 'json' && format !== 'yaml') {
    const scoped = kinds.some(isNamespaced);
    ctx.err(`No resources found${scoped && !all ? ` in ${namespace} namespace` : ''}.\n`);
    return 0;
  }
  return print(ctx, objects, kinds, format, all, false);
}

async function print(ctx: Ctx, objects: CniObject[], kinds: Kind[], format: OutputFormat, allNs: boolean, single: boolean): Promise<number> {
  if (format === 'json' || format === 'yaml') {
    ctx.out(await serialize(objects, format, single));
    return 0;
  }
  if (format === 'name') {
    for (const o of objects) ctx.out(`${qualifiedName(o.kind, o.metadata.name)}\n`);
    return 0;
  }
  const mixed = kinds.length > 1;
  const nsCol = allNs || mixed;
  if (mixed) {
    // `get policies`: one table over every policy kind
    const header = ['KIND', ...(nsCol ? ['NAMESPACE'] : []), 'NAME', 'PRIORITY', 'SELECTS'];
    const rows = objects.map((o) => {
      const sel =
        o.kind === 'NetworkPolicy' ? `pods: ${selectorString(o.spec.podSelector)}` : subjectString((o as AdminNetworkPolicy | BaselineAdminNetworkPolicy).spec.subject);
      const prio = o.kind === 'AdminNetworkPolicy' ? String(o.spec.priority) : o.kind === 'NetworkPolicy' ? '-' : 'baseline';
      return [o.kind, ...(nsCol ? [o.metadata.namespace || '-'] : []), o.metadata.name, prio, sel];
    });
    ctx.out(table(header, rows));
    return 0;
  }
  const kind = kinds[0] as Kind;
  const cols = COLUMNS[kind].filter(([, , w]) => !w || format === 'wide');
  const showNs = nsCol && isNamespaced(kind);
  const header = [...(showNs ? ['NAMESPACE'] : []), 'NAME', ...cols.map(([h]) => h)];
  const rows = objects.map((o) => [...(showNs ? [o.metadata.namespace ?? ''] : []), o.metadata.name, ...cols.map(([, f]) => f(o))]);
  ctx.out(table(header, rows));
  return 0;
}
