/**
 * Program this node's policy table from the cluster store: the one routine the `endpoint`
 * plugin (ADD/DEL/GC, synchronously, so a pod is never unprotected) and the agent's policy
 * reconciler (on every change and every resync) share.
 *
 * Under one flock per table (plugin processes and the agent serialize on it): read every object
 * policy depends on (one list per kind, at once), render the whole table with the pure compiler
 * (shared/policy), apply it as one `nft -f` transaction. Reading and applying under the same
 * lock is what makes it correct: whoever applies last read the store after every earlier
 * writer's change.
 */
import { readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CniError, ErrorCode } from './cni/errors.ts';
import { trace } from './trace.ts';
import type { AgentConfig } from './agentconfig.ts';
import { AgentConfigError } from './agentconfig.ts';
import { withFlock } from './flock.ts';
import { mkdirSync } from 'node:fs';
import { readTable, tableCounts, updateOrReplace, type NftTable } from './firewall/nft.ts';
import { tryModprobe } from './kernel/feature.ts';
import { setSysctls } from './kernel/sysctl.ts';
import { StoreUnavailableError, type ObjectStore } from './store/types.ts';
import type { AdminNetworkPolicy, BaselineAdminNetworkPolicy, Endpoint, Namespace, NetworkPolicy, Node } from './objects/types.ts';
import type { PolicyObjects } from './policy/model.ts';
import { compileNode, POLICY_TABLE, PolicyCompiler, renderNft, renderUpdate, type Ruleset } from './policy/index.ts';

export const DEFAULT_POLICY_TABLE = POLICY_TABLE;
export const DEFAULT_LOCK_DIR = '/run/cni-ts/locks';

export interface PolicySettings {
  /** nft table (family inet) this node's policy lives in */
  table: string;
  /** the flock file serializing every writer of that table */
  lockFile: string;
  /**
   * What the kernel's table holds, as the last writer left it (its compiled Ruleset, JSON): the
   * next writer applies only the difference (element updates, changed chains) in one
   * transaction. Missing or refused: the whole table is replaced.
   */
  stateFile: string;
  /** the node may open connections to its local pods (kubelet probes); default true */
  allowFromNode: boolean;
  /** local pods may open connections to their node; default true */
  allowToNode: boolean;
}

/** The agent config's `policy` section: {table, lockFile, allowFromNode, allowToNode}. */
export function policySettings(cfg: Pick<AgentConfig, 'policy' | 'source'>): PolicySettings {
  const p = cfg.policy ?? {};
  const table = p.table ?? DEFAULT_POLICY_TABLE;
  if (typeof table !== 'string' || !/^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(table))
    throw new AgentConfigError(cfg.source, 'policy.table', 'must be an nft table name (letters, digits, "_")');
  const lockFile = p.lockFile ?? path.join(DEFAULT_LOCK_DIR, `policy-${table}.lock`);
  if (typeof lockFile !== 'string' || !path.isAbsolute(lockFile))
    throw new AgentConfigError(cfg.source, 'policy.lockFile', 'must be an absolute path');
  const flag = (k: 'allowFromNode' | 'allowToNode'): boolean => {
    const v = p[k] ?? true;
    if (typeof v !== 'boolean') throw new AgentConfigError(cfg.source, `policy.${k}`, 'must be true or false');
    return v;
  };
  const stateFile = lockFile.replace(/\.lock$/, '') + '.ruleset.json';
  return { table, lockFile, stateFile, allowFromNode: flag('allowFromNode'), allowToNode: flag('allowToNode') };
}

/** StoreUnavailableError (or anything a backend throws on I/O) → CNI code 11. */
export function storeError(e: unknown, what: string): CniError {
  if (e instanceof CniError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  if (e instanceof StoreUnavailableError) return new CniError(ErrorCode.TryAgainLater, `cluster store unavailable: ${what}`, msg);
  return new CniError(ErrorCode.TryAgainLater, `cluster store: ${what} failed`, msg);
}

/** Every object policy depends on, read at once (one list per kind). */
export async function readPolicyObjects(store: ObjectStore): Promise<PolicyObjects & { revision: number }> {
  const [eps, nss, nps, anps, banps, nodes] = await Promise.all([
    store.list<Endpoint>('Endpoint'),
    store.list<Namespace>('Namespace'),
    store.list<NetworkPolicy>('NetworkPolicy'),
    store.list<AdminNetworkPolicy>('AdminNetworkPolicy'),
    store.list<BaselineAdminNetworkPolicy>('BaselineAdminNetworkPolicy'),
    store.list<Node>('Node'),
  ]);
  trace('store read');
  return {
    endpoints: eps.items.map((s) => s.object),
    namespaces: nss.items.map((s) => s.object),
    policies: nps.items.map((s) => s.object),
    anps: anps.items.map((s) => s.object),
    banp: banps.items.find((s) => s.object.metadata.name === 'default')?.object ?? banps.items[0]?.object ?? null,
    nodes: nodes.items.map((s) => s.object),
    revision: Math.max(eps.revision, nss.revision, nps.revision, anps.revision, banps.revision, nodes.revision),
  };
}

/** Hold the table's lock for `body` (every writer of the table: plugin processes, the agent). */
export async function withPolicyLock<T>(s: PolicySettings, body: () => Promise<T>): Promise<T> {
  mkdirSync(path.dirname(s.lockFile), { recursive: true, mode: 0o755 });
  return withFlock(s.lockFile, body);
}

/**
 * Same-bridge traffic is switched at L2; with br_netfilter's call-ip(6)tables on, it crosses
 * the inet forward hook where the policy table filters it.
 */
export async function ensureBridgeNetfilter(): Promise<void> {
  const want = { 'net.bridge.bridge-nf-call-iptables': '1', 'net.bridge.bridge-nf-call-ip6tables': '1' };
  try {
    await setSysctls(want);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new CniError(ErrorCode.KernelOperation, 'could not enable bridge netfilter', (e as Error).message);
    // br_netfilter is a module on this kernel and not loaded yet
    await tryModprobe('br_netfilter');
    try {
      await setSysctls(want);
    } catch (e2) {
      throw new CniError(
        ErrorCode.KernelFeatureMissing,
        'bridge netfilter (br_netfilter) is not available: same-bridge traffic could not be policed',
        (e2 as Error).message,
      );
    }
  }
}

export interface Programmed {
  objects: PolicyObjects & { revision: number };
  ruleset: Ruleset;
  /** full: the whole table replaced; update: only the difference applied; unchanged: nothing to do */
  mode: 'full' | 'update' | 'unchanged';
  /** size of the nft script applied */
  bytes: number;
  /** where the pass's time went (ms of wall time per step: read, compile, diff, nft, state) */
  timings?: Record<string, number>;
}

/**
 * What a long-lived writer (the agent) keeps between passes: a remembering compiler (a policy
 * change rebuilds only the groups it touches), the state it last wrote with the file's stat
 * (when no other writer replaced the file since, it is not read and parsed again), and whether
 * bridge netfilter is already on.
 */
export class PolicySession {
  readonly compiler = new PolicyCompiler();
  state: State | undefined;
  stateStamp = '';
  bridgeOk = false;
}

function fileStamp(file: string): string {
  try {
    const st = statSync(file, { bigint: true });
    return `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  } catch {
    return 'absent';
  }
}

/** What the kernel's table holds: the Ruleset, and the store revision and inputs it came from. */
interface State {
  v: 1;
  /** node and compile options */
  key: string;
  revision: number;
  ruleset: Ruleset;
}

const stateKey = (node: string, s: PolicySettings): string => `${node}|${s.allowFromNode}|${s.allowToNode}`;

function readState(file: string): State | undefined {
  try {
    const st = JSON.parse(readFileSync(file, 'utf8')) as State;
    return st.v === 1 && st.ruleset ? st : undefined;
  } catch {
    return undefined;
  }
}

function writeState(file: string, st: State | undefined): void {
  if (!st) {
    rmSync(file, { force: true });
    return;
  }
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(st));
  renameSync(tmp, file);
}

/** Read every policy object (the caller holds the lock). */
async function readObjects(store: ObjectStore): Promise<PolicyObjects & { revision: number }> {
  try {
    return await readPolicyObjects(store);
  } catch (e) {
    throw storeError(e, 'reading policy objects');
  }
}

/** Read every policy object (the caller holds the lock) and compile this node's Ruleset. */
export async function compilePolicy(
  store: ObjectStore,
  node: string,
  s: PolicySettings,
): Promise<{ objects: PolicyObjects & { revision: number }; ruleset: Ruleset }> {
  const objects = await readObjects(store);
  const ruleset = compileNode(objects, node, { allowFromNode: s.allowFromNode, allowToNode: s.allowToNode });
  trace('policy compiled');
  return { objects, ruleset };
}

/**
 * Program this node's table from the store (the caller holds the lock): one transaction with
 * the difference from what the last writer left (`stateFile`), or the whole table when there
 * is no state, `full` is asked, or the kernel refuses the difference (it does not hold what the
 * state says: the transaction changed nothing). When the store is at the revision the last
 * writer compiled (the agent's pass after an endpoint ADD already applied), nothing is
 * compiled, unless `recompile` (a new compiler, on agent start).
 */
export async function programPolicy(
  store: ObjectStore,
  node: string,
  s: PolicySettings,
  opts: { full?: boolean; recompile?: boolean; session?: PolicySession } = {},
): Promise<Programmed> {
  const session = opts.session;
  const timings: Record<string, number> = {};
  let t = performance.now();
  let c = process.cpuUsage();
  // wall ms per step, and the process's CPU ms in it as `<step>_cpu`
  const step = (name: string): void => {
    const now = performance.now();
    const d = process.cpuUsage(c);
    timings[name] = (timings[name] ?? 0) + (now - t);
    timings[`${name}_cpu`] = (timings[`${name}_cpu`] ?? 0) + (d.user + d.system) / 1000;
    t = now;
    c = process.cpuUsage();
  };
  const [objects] = await Promise.all([
    readObjects(store),
    session?.bridgeOk ? undefined : ensureBridgeNetfilter().then(() => session && (session.bridgeOk = true)),
  ]);
  const key = stateKey(node, s);
  // the session's state when the file is still the one it wrote (no plugin wrote since)
  const stamp = session ? fileStamp(s.stateFile) : '';
  const prevState = session?.state && session.stateStamp === stamp ? session.state : readState(s.stateFile);
  const prev = prevState?.key === key ? prevState : undefined;
  step('read');
  const save = (st: State | undefined): void => {
    writeState(s.stateFile, st);
    if (session) {
      session.state = st;
      session.stateStamp = st ? fileStamp(s.stateFile) : '';
    }
  };
  if (prev && !opts.full && !opts.recompile && prev.revision === objects.revision) {
    return { objects, ruleset: prev.ruleset, mode: 'unchanged', bytes: 0, timings };
  }
  const copts = { allowFromNode: s.allowFromNode, allowToNode: s.allowToNode };
  const ruleset = session ? session.compiler.compile(objects, node, copts) : compileNode(objects, node, copts);
  trace('policy compiled');
  step('compile');
  const state: State = { v: 1, key, revision: objects.revision, ruleset };
  let update: string | undefined;
  if (prev && !opts.full) {
    try {
      update = renderUpdate(prev.ruleset, ruleset, s.table);
    } catch {
      update = undefined; // a set changed type: the whole table
    }
    step('diff');
  }
  let bytes = update?.length ?? 0;
  const mode = await updateOrReplace(
    update,
    () => {
      save(undefined); // a crash between apply and the write below must not leave a stale state
      const full = renderNft(ruleset, s.table);
      bytes = full.length;
      return full;
    },
    () => trace('policy update refused: replacing the table'),
  );
  if (mode !== 'unchanged') {
    trace(mode === 'update' ? 'policy updated' : 'policy applied');
    step('nft');
  }
  save(state);
  step('state');
  return { objects, ruleset, mode, bytes: mode === 'unchanged' ? 0 : bytes, timings };
}

/**
 * Does the kernel's table still hold `rs`? Lists it (nft -j) and compares chains with their rule
 * counts, sets, maps, counters, and the number of elements of every map and of every set without
 * the interval flag (the kernel merges adjacent intervals, so their count is not comparable).
 * Returns why not, or undefined. Catches a deleted or flushed table, changed chains, and an
 * element someone added or deleted by hand.
 */
export async function tableDrift(rs: Ruleset | undefined, table: string): Promise<string | undefined> {
  // any failure to read it counts as gone (the caller rewrites it)
  const have = await readTable('inet', table).catch(() => undefined);
  if (have === undefined) return 'is gone';
  if (!rs) return 'has no recorded state';
  return rulesetDrift(rs, have);
}

/** `tableDrift`'s comparison of `rs` with a read of the table (shared/firewall `readTable`, or `tableOf` over `nft -j list`). Pure. */
export function rulesetDrift(rs: Ruleset, table: NftTable): string | undefined {
  const have = tableCounts(table);
  const chains = table.chains;
  for (const c of rs.chains) {
    if (!chains.has(c.name)) return `lacks chain ${c.name}`;
    const n = have.rules.get(c.name) ?? 0;
    if (n !== c.rules.length) return `chain ${c.name} has ${n} rules, not ${c.rules.length}`;
  }
  if (chains.size !== rs.chains.length) return `has ${chains.size} chains, not ${rs.chains.length}`;
  for (const x of rs.sets) {
    const n = have.sets.get(x.name);
    if (n === undefined) return `lacks set ${x.name}`;
    if (!x.flags?.includes('interval') && n !== new Set(x.elements).size)
      return `set ${x.name} has ${n} elements, not ${new Set(x.elements).size}`;
  }
  for (const m of rs.maps) {
    const n = have.maps.get(m.name);
    if (n === undefined) return `lacks map ${m.name}`;
    if (n !== m.elements.length) return `map ${m.name} has ${n} elements, not ${m.elements.length}`;
  }
  for (const c of rs.counters) if (!have.counters.has(c)) return `lacks counter ${c}`;
  return undefined;
}

/** The Ruleset the last writer applied (agent: drift checks). */
export const recordedRuleset = (s: PolicySettings): Ruleset | undefined => readState(s.stateFile)?.ruleset;
