/**
 * What every cnictl verb shares: the context (agent config, store, output), errors with their
 * exit codes (1 error, 2 usage), resource names as kubectl spells them, tables, -o json|yaml,
 * and reading manifests (YAML or JSON, several documents, `kind: List`).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { loadAgentConfig, type AgentConfig } from '../../shared/agentconfig.ts';
import { API_VERSIONS } from '../../shared/objects/validate.ts';
import { CLUSTER_SCOPED, type CniObject, type Kind } from '../../shared/objects/types.ts';
import { openStore, type ObjectStore } from '../../shared/store/index.ts';

/** Wrong invocation: exit code 2, with the verb's usage. */
export class UsageError extends Error {}
/** Anything else that failed: exit code 1. */
export class CliError extends Error {}

export interface Ctx {
  /** the agent config file (--config, $CNI_TS_CONFIG, /etc/cni-ts/agent.json) */
  configPath: string;
  config(): AgentConfig;
  /** the store the config names, opened on first use */
  store(): Promise<ObjectStore>;
  out(s: string): void;
  err(s: string): void;
  stdin(): string;
}

export function makeCtx(configPath: string): Ctx & { close(): Promise<void> } {
  let config: AgentConfig | undefined;
  let store: Promise<ObjectStore> | undefined;
  return {
    configPath,
    config() {
      config ??= loadAgentConfig(configPath);
      return config;
    },
    store() {
      store ??= openStore(this.config().store);
      return store;
    },
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
    stdin: () => readFileSync(0, 'utf8'),
    async close() {
      if (store) await (await store.catch(() => undefined))?.close();
    },
  };
}

// ---- resources as kubectl names them ----
export interface Resource {
  kind: Kind;
  /** `kubectl get` name (plural) */
  plural: string;
  aliases: string[];
}
export const RESOURCES: Resource[] = [
  { kind: 'Endpoint', plural: 'endpoints', aliases: ['endpoint', 'ep'] },
  { kind: 'NetworkPolicy', plural: 'networkpolicies', aliases: ['networkpolicy', 'netpol', 'np'] },
  { kind: 'AdminNetworkPolicy', plural: 'adminnetworkpolicies', aliases: ['adminnetworkpolicy', 'anp'] },
  { kind: 'BaselineAdminNetworkPolicy', plural: 'baselineadminnetworkpolicies', aliases: ['baselineadminnetworkpolicy', 'banp'] },
  { kind: 'Namespace', plural: 'namespaces', aliases: ['namespace', 'ns'] },
  { kind: 'Service', plural: 'services', aliases: ['service', 'svc'] },
  { kind: 'EndpointSlice', plural: 'endpointslices', aliases: ['endpointslice'] },
  { kind: 'SubnetLease', plural: 'subnetleases', aliases: ['subnetlease', 'leases', 'lease'] },
  { kind: 'BackendHealth', plural: 'backendhealths', aliases: ['backendhealth', 'bh'] },
  { kind: 'DockerNetwork', plural: 'dockernetworks', aliases: ['dockernetwork', 'dknet'] },
  { kind: 'DockerEndpoint', plural: 'dockerendpoints', aliases: ['dockerendpoint', 'dkep'] },
  { kind: 'DockerPool', plural: 'dockerpools', aliases: ['dockerpool', 'dkpool'] },
  { kind: 'Node', plural: 'nodes', aliases: ['node', 'no'] },
];
/** `policies`: every policy kind in one table. */
export const POLICY_KINDS: Kind[] = ['AdminNetworkPolicy', 'NetworkPolicy', 'BaselineAdminNetworkPolicy'];

export function resourceOf(word: string): Resource | undefined {
  const w = word.toLowerCase();
  return RESOURCES.find((r) => r.plural === w || r.aliases.includes(w) || r.kind.toLowerCase() === w);
}

/** kubectl's `<resource>.<group>/<name>` for messages: networkpolicy.networking.k8s.io/deny. */
export function qualifiedName(kind: Kind, name: string): string {
  const api = API_VERSIONS[kind];
  const group = api.includes('/') ? `.${api.slice(0, api.lastIndexOf('/'))}` : '';
  return `${kind.toLowerCase()}${group}/${name}`;
}

export const isNamespaced = (kind: Kind): boolean => !CLUSTER_SCOPED.has(kind);

/** `NS/NAME` or `NAME` (namespace from -n, else "default"); cluster-scoped kinds take NAME. */
export function splitName(kind: Kind, arg: string, namespace: string | undefined): { namespace: string; name: string } {
  const slash = arg.indexOf('/');
  if (!isNamespaced(kind)) {
    if (slash >= 0) throw new UsageError(`${kind} is cluster-scoped: give NAME, not ${arg}`);
    return { namespace: '', name: arg };
  }
  if (slash >= 0) {
    const ns = arg.slice(0, slash);
    const name = arg.slice(slash + 1);
    if (!ns || !name || name.includes('/')) throw new UsageError(`${JSON.stringify(arg)} is not NAMESPACE/NAME`);
    if (namespace !== undefined && namespace !== ns) throw new UsageError(`${arg} is in namespace ${ns}, not ${namespace} (-n)`);
    return { namespace: ns, name };
  }
  return { namespace: namespace ?? 'default', name: arg };
}

// ---- output ----
export type OutputFormat = 'table' | 'wide' | 'json' | 'yaml' | 'name';

export function outputFormat(o: string | undefined): OutputFormat {
  if (o === undefined) return 'table';
  if (o === 'wide' || o === 'json' || o === 'yaml' || o === 'name') return o;
  throw new UsageError(`-o ${o}: expected wide, json, yaml or name`);
}

/** Columns padded as kubectl does: three spaces between, header in capitals. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('   ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

/** JSON or YAML of one object, or of a kubectl-style List. */
export async function serialize(objects: CniObject[], format: 'json' | 'yaml', single: boolean): Promise<string> {
  const value = single ? objects[0] : { apiVersion: 'v1', kind: 'List', items: objects, metadata: { resourceVersion: '' } };
  if (format === 'json') return `${JSON.stringify(value, null, 2)}\n`;
  const { stringify } = await import('yaml');
  return stringify(value);
}

export function labelsString(labels: Record<string, string> | undefined): string {
  const e = Object.entries(labels ?? {});
  return e.length ? e.map(([k, v]) => `${k}=${v}`).join(',') : '<none>';
}

// ---- manifests ----
export interface Manifest {
  /** the file it came from ("stdin" for -) */
  source: string;
  /** 1-based position in its file, counting every non-empty document (for messages) */
  index: number;
  doc: unknown;
}

/**
 * Read -f FILE (- for stdin, a directory for its *.yaml, *.yml and *.json files in name order):
 * YAML or JSON, several documents; `kind: List` is flattened.
 */
export async function readManifests(ctx: Ctx, file: string): Promise<Manifest[]> {
  if (file !== '-') {
    let st;
    try {
      st = statSync(file);
    } catch (e) {
      throw new CliError(`cannot read ${file}: ${(e as Error).message}`);
    }
    if (st.isDirectory()) {
      const files = readdirSync(file)
        .filter((f) => /\.(ya?ml|json)$/.test(f))
        .sort()
        .map((f) => path.join(file, f));
      if (!files.length) throw new CliError(`${file}: no *.yaml, *.yml or *.json files in it`);
      return (await Promise.all(files.map((f) => parseManifests(readText(ctx, f), f)))).flat();
    }
  }
  return parseManifests(readText(ctx, file), file === '-' ? 'stdin' : file);
}

function readText(ctx: Ctx, file: string): string {
  try {
    return file === '-' ? ctx.stdin() : readFileSync(file, 'utf8');
  } catch (e) {
    throw new CliError(`cannot read ${file === '-' ? 'stdin' : file}: ${(e as Error).message}`);
  }
}

async function parseManifests(text: string, source: string): Promise<Manifest[]> {
  const { parseAllDocuments } = await import('yaml');
  const out: Manifest[] = [];
  let index = 0;
  for (const d of parseAllDocuments(text)) {
    index += 1;
    if (!('errors' in d) || d.errors.length) {
      const e = 'errors' in d ? d.errors[0] : undefined;
      const where = e?.linePos?.[0] ? ` (line ${e.linePos[0].line}, column ${e.linePos[0].col})` : '';
      throw new CliError(`${source}: document ${index}: not valid YAML or JSON${where}: ${e?.message.split('\n')[0] ?? 'unreadable'}`);
    }
    const doc: unknown = d.toJS();
    if (doc === null || doc === undefined) {
      index -= 1; // an empty document (a trailing ---) is not counted
      continue;
    }
    const o = doc as { kind?: unknown; items?: unknown };
    if (o.kind === 'List' && Array.isArray(o.items)) for (const item of o.items) out.push({ source, index, doc: item });
    else out.push({ source, index, doc });
  }
  if (!out.length) throw new CliError(`${source}: no objects in it`);
  return out;
}

/** `policy.yaml: document 2 (NetworkPolicy x/deny)` */
export function docLabel(m: Manifest, describe: string): string {
  return `${m.source}: document ${m.index} (${describe})`;
}
