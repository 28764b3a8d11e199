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
import path from 'node:path';
import { CniError, ErrorCode } from './cni/errors.ts';
import { trace } from './cni/trace.ts';
import type { AgentConfig } from './agentconfig.ts';
import { AgentConfigError } from './agentconfig.ts';
import { withFlock } from './flock.ts';
import { mkdirSync } from 'node:fs';
import { nftApply } from './kernel/nft.ts';
import { run } from './kernel/exec.ts';
import { setSysctls } from './kernel/sysctl.ts';
import { StoreUnavailableError, type ObjectStore } from './store/types.ts';
import type { AdminNetworkPolicy, BaselineAdminNetworkPolicy, Endpoint, Namespace, NetworkPolicy } from './objects/types.ts';
import type { PolicyObjects } from './policy/model.ts';
import { POLICY_TABLE, policyTable, type Ruleset } from './policy/index.ts';

export const DEFAULT_POLICY_TABLE = POLICY_TABLE;
export const DEFAULT_LOCK_DIR = '/run/cni-ts/locks';

export interface PolicySettings {
  /** nft table (family inet) this node's policy lives in */
  table: string;
  /** the flock file serializing every writer of that table */
  lockFile: string;
  /** the node may open connections to its local pods (kubelet probes); default true */
  allowFromNode: boolean;
  /** local pods may open connections to their node; default true */
  allowToNode: boolean;
}

/** The agent config's `policy` section: {table, lockFile, allowFromNode, allowToNode}. */
export function policySettings(cfg: Pick<AgentConfig, 'policy' | 'source'>): PolicySettings {
  const p = cfg.policy ?? {};
  const table = p.table ?? DEFAULT_POLICY_TABLE;
  if (typeof table !== 'string' || !/^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(table)) throw new AgentConfigError(cfg.source, 'policy.table', 'must be an nft table name (letters, digits, "_")');
  const lockFile = p.lockFile ?? path.join(DEFAULT_LOCK_DIR, `policy-${table}.lock`);
  if (typeof lockFile !== 'string' || !path.isAbsolute(lockFile)) throw new AgentConfigError(cfg.source, 'policy.lockFile', 'must be an absolute path');
  const flag = (k: 'allowFromNode' | 'allowToNode'): boolean => {
    const v = p[k] ?? true;
    if (typeof v !== 'boolean') throw new AgentConfigError(cfg.source, `policy.${k}`, 'must be true or false');
    return v;
  };
  return { table, lockFile, allowFromNode: flag('allowFromNode'), allowToNode: flag('allowToNode') };
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
  const [eps, nss, nps, anps, banps] = await Promise.all([
    store.list<Endpoint>('Endpoint'),
    store.list<Namespace>('Namespace'),
    store.list<NetworkPolicy>('NetworkPolicy'),
    store.list<AdminNetworkPolicy>('AdminNetworkPolicy'),
    store.list<BaselineAdminNetworkPolicy>('BaselineAdminNetworkPolicy'),
  ]);
  trace('store read');
  return {
    endpoints: eps.items.map((s) => s.object),
    namespaces: nss.items.map((s) => s.object),
    policies: nps.items.map((s) => s.object),
    anps: anps.items.map((s) => s.object),
    banp: banps.items.find((s) => s.object.metadata.name === 'default')?.object ?? banps.items[0]?.object ?? null,
    revision: Math.max(eps.revision, nss.revision, nps.revision, anps.revision, banps.revision),
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
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new CniError(ErrorCode.KernelOperation, 'could not enable bridge netfilter', (e as Error).message);
    // br_netfilter is a module on this kernel and not loaded yet
    await run('modprobe', ['br_netfilter'], { allowFail: true });
    try {
      await setSysctls(want);
    } catch (e2) {
      throw new CniError(ErrorCode.KernelFeatureMissing, 'bridge netfilter (br_netfilter) is not available: same-bridge traffic could not be policed', (e2 as Error).message);
    }
  }
}

export interface RenderedTable {
  script: string;
  ruleset: Ruleset;
  objects: PolicyObjects & { revision: number };
}

/** Read (the caller holds the lock) and render this node's table. */
export async function renderPolicy(store: ObjectStore, node: string, s: PolicySettings): Promise<RenderedTable> {
  let objects: PolicyObjects & { revision: number };
  try {
    objects = await readPolicyObjects(store);
  } catch (e) {
    throw storeError(e, 'reading policy objects');
  }
  const { script, ruleset } = policyTable(objects, node, { table: s.table, allowFromNode: s.allowFromNode, allowToNode: s.allowToNode });
  trace('policy rendered');
  return { script, ruleset, objects };
}

/** Apply a rendered table (one nft transaction). */
export async function applyPolicy(script: string): Promise<void> {
  await nftApply(script);
  trace('policy applied');
}
