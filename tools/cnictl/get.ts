/**
 * `cnictl get KIND [NAME] [-n NS | -A] [-o wide|json|yaml|name]`: kubectl-like tables of what
 * the store holds; `-o json|yaml` for scripts (one object with NAME, else a List).
 */
import { parseArgs } from 'node:util';
import type {
  AdminNetworkPolicy,
  AnpSubject,
  BackendHealth,
  BaselineAdminNetworkPolicy,
  CniObject,
  DockerEndpoint,
  DockerNetwork,
  DockerPool,
  Endpoint,
  EndpointSlice,
  Kind,
  NetworkPolicy,
  Service,
  SubnetLease,
} from '../../shared/objects/types.ts';
import { matchesSelector, parseSelector, selectorString } from '../../shared/objects/selectors.ts';
import { effectivePolicyTypes } from '../../shared/objects/validate.ts';
import type { ObjectStore, WatchEvent } from '../../shared/store/index.ts';
import { servicesTable } from './services.ts';
import {
  CliError,
  isNamespaced,
  labelsString,
  outputFormat,
  POLICY_KINDS,
  qualifiedName,
  resourceOf,
  serialize,
  splitName,
  table,
  UsageError,
  type Ctx,
  type OutputFormat,
} from './common.ts';

export const usage = `usage: cnictl get KIND [NAME|NAMESPACE/NAME] [-n NAMESPACE | -A] [-o wide|json|yaml|name]
  KIND: endpoints (ep), policies (every policy kind), networkpolicies (netpol),
        adminnetworkpolicies (anp), baselineadminnetworkpolicies (banp), namespaces (ns),
        services (svc), endpointslices, subnetleases;
        dns: the records the node agent's DNS server serves (from the agent, -o json)
  -n, --namespace NS      namespaced kinds: this namespace (default "default")
  -A, --all-namespaces    namespaced kinds: every namespace (adds a NAMESPACE column)
  -o, --output FORMAT     wide (more columns), json, yaml, name
  -l, --selector SEL      only objects whose labels match: k=v, k!=v, k, !k, k in (a,b), k notin (a,b)
  -w, --watch             then print every change (EVENT column; json: {"type","object"} lines) until interrupted
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
  BackendHealth: [
    ['SERVICE', (o) => (o as BackendHealth).spec.service],
    ['BACKEND', (o) => `${(o as BackendHealth).spec.address}:${(o as BackendHealth).spec.port}`],
    ['HEALTHY', (o) => String((o as BackendHealth).spec.healthy)],
    ['NODE', (o) => (o as BackendHealth).spec.node, 'wide'],
    ['REASON', (o) => (o as BackendHealth).spec.reason ?? '', 'wide'],
  ],
  // the agent's Docker driver state (docs/docker.md)
  DockerNetwork: [
    ['NETWORK', (o) => (o as DockerNetwork).spec.network],
    ['SUBNETS', (o) => [...(o as DockerNetwork).spec.ipv4, ...(o as DockerNetwork).spec.ipv6].map((p) => p.pool).join(',')],
    ['NODE', (o) => (o as DockerNetwork).spec.node, 'wide'],
  ],
  DockerEndpoint: [
    ['NETWORK-ID', (o) => (o as DockerEndpoint).spec.networkId.slice(0, 12)],
    ['INTERFACE', (o) => (o as DockerEndpoint).spec.srcName],
    ['SANDBOX', (o) => (o as DockerEndpoint).spec.sandboxKey ?? '<none>', 'wide'],
  ],
  DockerPool: [
    ['POOL', (o) => (o as DockerPool).spec.pool],
    ['RESERVED', (o) => String(Object.keys((o as DockerPool).spec.reservations).length)],
    ['NODE', (o) => (o as DockerPool).spec.node, 'wide'],
  ],
  Node: [
    [
      'ADDRESSES',
      (o) =>
        ((o as CniObject & { status?: { addresses?: { address: string }[] } }).status?.addresses ?? []).map((a) => a.address).join(',') ||
        '<none>',
    ],
    [
      'LABELS',
      (o) =>
        Object.entries(o.metadata.labels ?? {})
          .map(([k, v]) => `${k}=${v}`)
          .join(',') || '<none>',
      'wide',
    ],
  ],
};

/** The objects, and a revision to watch from that misses nothing after any of the lists. */
async function listKinds(
  store: ObjectStore,
  kinds: Kind[],
  namespace: string | undefined,
): Promise<{ objects: CniObject[]; revision: number }> {
  const lists = await Promise.all(kinds.map((k) => store.list(k, isNamespaced(k) ? namespace : undefined)));
  return { objects: lists.flatMap((l) => l.items.map((i) => i.object)), revision: Math.min(...lists.map((l) => l.revision)) };
}

export async function run(ctx: Ctx, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      namespace: { type: 'string', short: 'n' },
      'all-namespaces': { type: 'boolean', short: 'A' },
      output: { type: 'string', short: 'o' },
      selector: { type: 'string', short: 'l' },
      watch: { type: 'boolean', short: 'w' },
    },
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
  if (word === 'dns') return (await import('./dns.ts')).getDns(ctx, values.output); // the agent's records, over its socket
  if (extra.length) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);
  if (values.namespace && values['all-namespaces']) throw new UsageError('-n and -A exclude each other');
  const policies = word === 'policies' || word === 'policy' || word === 'pol';
  const r = policies ? undefined : resourceOf(word);
  if (!policies && !r) throw new UsageError(`unknown kind ${JSON.stringify(word)}`);
  const kinds: Kind[] = policies ? POLICY_KINDS : [(r as { kind: Kind }).kind];
  const store = await ctx.store();

  if (nameArg !== undefined) {
    if (values.watch) throw new UsageError('-w watches a kind: leave out NAME (use -l to narrow it)');
    if (policies) throw new UsageError('get policies NAME: name the kind (networkpolicies, adminnetworkpolicies, ...)');
    const kind = kinds[0] as Kind;
    const ref = { kind, ...splitName(kind, nameArg, values.namespace) };
    const got = await store.get(ref);
    if (!got)
      throw new CliError(`${r?.plural} ${JSON.stringify(ref.name)} not found${ref.namespace ? ` in namespace ${ref.namespace}` : ''}`);
    return print(ctx, [got.object], kinds, format, false, true);
  }
  const all = Boolean(values['all-namespaces']);
  const namespace = all ? undefined : (values.namespace ?? 'default');
  if (kinds[0] === 'Service' && !policies && !values.watch && (format === 'table' || format === 'wide')) {
    const t = await servicesTable(
      store,
      ctx.config().serviceCIDR,
      namespace,
      format === 'wide',
      (o) => !selector || matchesSelector(selector, o.metadata.labels),
    );
    ctx.out(t.rows.length ? table(t.header, t.rows) : '');
    if (!t.rows.length) ctx.err(`No resources found${all ? '' : ` in ${namespace} namespace`}.\n`);
    return 0;
  }
  const listed = await listKinds(store, kinds, namespace);
  const objects = listed.objects.filter((o) => !selector || matchesSelector(selector, o.metadata.labels));
  if (values.watch) {
    const keep = (o: CniObject): boolean =>
      (all || !isNamespaced(o.kind) || o.metadata.namespace === namespace) && (!selector || matchesSelector(selector, o.metadata.labels));
    return watchKinds(ctx, store, kinds, format, all, objects, listed.revision, keep);
  }
  if (!objects.length && format !== 'json' && format !== 'yaml') {
    const scoped = kinds.some(isNamespaced);
    ctx.err(`No resources found${scoped && !all ? ` in ${namespace} namespace` : ''}.\n`);
    return 0;
  }
  return print(ctx, objects, kinds, format, all, false);
}

async function print(
  ctx: Ctx,
  objects: CniObject[],
  kinds: Kind[],
  format: OutputFormat,
  allNs: boolean,
  single: boolean,
): Promise<number> {
  if (format === 'json' || format === 'yaml') {
    ctx.out(await serialize(objects, format, single));
    return 0;
  }
  if (format === 'name') {
    for (const o of objects) ctx.out(`${qualifiedName(o.kind, o.metadata.name)}\n`);
    return 0;
  }
  const t = tableOf(objects, kinds, format, allNs);
  ctx.out(table(t.header, t.rows));
  return 0;
}

/** Header and rows of the table for these objects (`get policies` mixes kinds in one table). */
function tableOf(objects: CniObject[], kinds: Kind[], format: OutputFormat, allNs: boolean): { header: string[]; rows: string[][] } {
  const mixed = kinds.length > 1;
  const nsCol = allNs || mixed;
  if (mixed) {
    const header = ['KIND', ...(nsCol ? ['NAMESPACE'] : []), 'NAME', 'PRIORITY', 'SELECTS'];
    const rows = objects.map((o) => {
      const sel =
        o.kind === 'NetworkPolicy'
          ? `pods: ${selectorString(o.spec.podSelector)}`
          : subjectString((o as AdminNetworkPolicy | BaselineAdminNetworkPolicy).spec.subject);
      const prio = o.kind === 'AdminNetworkPolicy' ? String(o.spec.priority) : o.kind === 'NetworkPolicy' ? '-' : 'baseline';
      return [o.kind, ...(nsCol ? [o.metadata.namespace || '-'] : []), o.metadata.name, prio, sel];
    });
    return { header, rows };
  }
  const kind = kinds[0] as Kind;
  const cols = COLUMNS[kind].filter(([, , w]) => !w || format === 'wide');
  const showNs = nsCol && isNamespaced(kind);
  const header = [...(showNs ? ['NAMESPACE'] : []), 'NAME', ...cols.map(([h]) => h)];
  const rows = objects.map((o) => [...(showNs ? [o.metadata.namespace ?? ''] : []), o.metadata.name, ...cols.map(([, f]) => f(o))]);
  return { header, rows };
}

/**
 * `get -w`: what there is (ADDED), then every change (ADDED, MODIFIED, DELETED; SYNC rows after
 * a resync) until SIGINT/SIGTERM. Tables get an EVENT column; json/yaml print
 * {type, object} per change (one JSON per line, YAML documents).
 */
async function watchKinds(
  ctx: Ctx,
  store: ObjectStore,
  kinds: Kind[],
  format: OutputFormat,
  allNs: boolean,
  initial: CniObject[],
  fromRevision: number,
  keep: (o: CniObject) => boolean,
): Promise<number> {
  const shown = new Map<string, CniObject>();
  const key = (k: Kind, ns: string, name: string): string => `${k}/${ns}/${name}`;
  const keyOfObj = (o: CniObject): string => key(o.kind, o.metadata.namespace ?? '', o.metadata.name);
  const emit = async (type: string, o: CniObject, header: boolean): Promise<void> => {
    if (format === 'json') ctx.out(`${JSON.stringify({ type, object: o })}\n`);
    else if (format === 'yaml') ctx.out(`---\n${await serialize([{ type, object: o } as unknown as CniObject], 'yaml', true)}`);
    else if (format === 'name') ctx.out(`${type} ${qualifiedName(o.kind, o.metadata.name)}\n`);
    else {
      const t = tableOf([o], kinds, format, allNs);
      const h = ['EVENT', ...t.header];
      const r = [type, ...(t.rows[0] ?? [])];
      if (header) {
        line(r); // widths from this row too
        ctx.out(line(h));
      }
      ctx.out(line(r));
    }
  };
  // columns as wide as the first screen (or the first row) made them, growing when a row needs it
  const widths: number[] = [];
  const line = (cells: string[]): string => {
    cells.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length, i === 0 ? 'MODIFIED'.length : 0)));
    return `${cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('   ')}\n`;
  };
  let first = true;
  for (const o of initial) shown.set(keyOfObj(o), o);
  if (initial.length && (format === 'table' || format === 'wide')) {
    const t = tableOf(initial, kinds, format, allNs);
    const all = [['EVENT', ...t.header], ...t.rows.map((r) => ['ADDED', ...r])];
    for (const r of all) line(r); // widths first
    for (const r of all) ctx.out(line(r));
    first = false;
  } else {
    for (const o of initial) {
      await emit('ADDED', o, first);
      first = false;
    }
  }
  let queue = Promise.resolve();
  const onEvent = (e: WatchEvent): void => {
    queue = queue.then(async () => {
      if (e.type === 'resync') {
        const now = new Set<string>();
        for (const i of e.items) {
          if (!keep(i.object)) continue;
          now.add(keyOfObj(i.object));
          shown.set(keyOfObj(i.object), i.object);
          await emit('SYNC', i.object, first);
          first = false;
        }
        for (const [k, o] of [...shown])
          if (!now.has(k)) {
            shown.delete(k);
            await emit('DELETED', o, first);
            first = false;
          }
        return;
      }
      const k = key(e.ref.kind, e.ref.namespace, e.ref.name);
      if (e.type === 'delete') {
        const o = shown.get(k);
        if (!o) return;
        shown.delete(k);
        await emit('DELETED', o, first);
      } else if (keep(e.object)) {
        await emit(shown.has(k) ? 'MODIFIED' : 'ADDED', e.object, first);
        shown.set(k, e.object);
      } else if (shown.has(k)) {
        // no longer matches (a label changed): gone from this view
        const o = shown.get(k) as CniObject;
        shown.delete(k);
        await emit('DELETED', o, first);
      } else return;
      first = false;
    });
  };
  const stop = await store.watch(onEvent, { fromRevision, kinds });
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  stop();
  await queue;
  return 0;
}
