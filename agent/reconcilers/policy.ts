/**
 * The policy reconciler: keeps this node's policy table (nft, family inet) equal to what the
 * pure compiler renders from the cluster store (every node's Endpoints, Namespaces,
 * NetworkPolicies, AdminNetworkPolicies, the BaselineAdminNetworkPolicy).
 *
 * - Watches those kinds and kicks a pass on every change (logging each one).
 * - A pass takes the table's lock (the endpoint plugin takes the same one), re-reads the store
 *   and renders: the watch only says when, the read under the lock says what, so a pass can
 *   never undo a registration an endpoint ADD just made.
 * - Diff: the compiled Ruleset is diffed against the one the last writer (this agent or an
 *   endpoint plugin) applied, recorded beside the lock: one nft transaction with only the
 *   difference (element updates for endpoint churn; counters keep counting), nothing when
 *   equal, the whole table when there is no record or the kernel refuses the difference.
 * - Drift: on start and every periodic resync (10 s by default) the kernel's table is listed
 *   without its elements and compared with the record (chains and their rule counts, sets,
 *   maps, counters); a deleted, flushed or edited table is replaced whole.
 * - Incremental: the reconciler keeps a PolicySession (shared/policysync.ts): normalized
 *   policies, and while endpoints and namespaces are unchanged, selections, sets and group
 *   chains are reused, so a policy change compiles only the groups it touches; the last state
 *   is kept in memory (the state file is re-read only when another writer replaced it), and
 *   unchanged chains and sets are skipped by identity in the diff.
 * - Rides out store restarts: a failing pass is retried with backoff (agent/loop.ts), and after
 *   three failures in a row the store client and its watch are replaced (reconnect + re-list).
 */
import type { AgentConfig } from '../../shared/agentconfig.ts';
import type { Logger } from '../../shared/cni/log.ts';
import type { Kind, Node } from '../../shared/objects/types.ts';
import { getLink, routes } from '../../shared/kernel/ip.ts';
import { parseIP } from '../../shared/ipnet.ts';
import { AgentConfigError } from '../../shared/agentconfig.ts';
import { refString } from '../../shared/store/index.ts';
import type { WatchEvent } from '../../shared/store/types.ts';
import {
  policySettings,
  PolicySession,
  programPolicy,
  recordedRuleset,
  tableDrift,
  withPolicyLock,
  type PolicySettings,
} from '../../shared/policysync.ts';
import { Loop } from '../loop.ts';
import { WatchedStore } from '../watched-store.ts';

export const POLICY_KINDS: Kind[] = ['Endpoint', 'Namespace', 'NetworkPolicy', 'AdminNetworkPolicy', 'BaselineAdminNetworkPolicy', 'Node'];

/**
 * This host's Node object (ANP/BANP egress `nodes` peers select nodes by these labels and
 * match their addresses): labels `kubernetes.io/hostname: <node>` plus `policy.nodeLabels`;
 * addresses `policy.nodeAddresses`, else the global addresses of the devices of this host's
 * default routes (IPv4 and IPv6).
 */
export async function nodeObject(cfg: Pick<AgentConfig, 'node' | 'policy' | 'source'>): Promise<Node> {
  const p = cfg.policy ?? {};
  const labels = p.nodeLabels ?? {};
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels) || Object.values(labels).some((v) => typeof v !== 'string'))
    throw new AgentConfigError(cfg.source, 'policy.nodeLabels', 'must be an object of string labels');
  let addresses: string[];
  if (p.nodeAddresses !== undefined) {
    const a = p.nodeAddresses;
    if (!Array.isArray(a) || a.some((x) => typeof x !== 'string' || !parseIP(x)))
      throw new AgentConfigError(cfg.source, 'policy.nodeAddresses', 'must be a list of IP addresses');
    addresses = a as string[];
  } else {
    addresses = [];
    for (const f of [4, 6] as const) {
      const devs = new Set((await routes(f).catch(() => [])).filter((r) => r.dst === 'default' && r.dev).map((r) => r.dev as string));
      for (const d of devs)
        for (const ai of (await getLink(d).catch(() => undefined))?.addr_info ?? [])
          if (ai.scope === 'global' && !addresses.includes(ai.local)) addresses.push(ai.local);
    }
  }
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: cfg.node, labels: { 'kubernetes.io/hostname': cfg.node, ...(labels as Record<string, string>) } },
    status: { addresses: addresses.map((address) => ({ type: 'InternalIP', address })) },
  };
}

export class PolicyReconciler {
  readonly loop: Loop;
  readonly settings: PolicySettings;
  private readonly conn: WatchedStore;
  private revision = 0;
  private compiled = false;
  private nodeRegistered = false;
  /** compiler memo and last state kept between passes (a policy change recompiles only what it touches) */
  private readonly session = process.env.CNI_TS_POLICY_INCREMENTAL === '0' ? undefined : new PolicySession();

  constructor(
    private readonly cfg: AgentConfig,
    private readonly log: Logger,
    opts: { resyncMs?: number } = {},
  ) {
    this.settings = policySettings(cfg);
    this.conn = new WatchedStore(
      cfg.store,
      POLICY_KINDS,
      (e) => this.onEvent(e),
      () => this.revision,
    );
    this.loop = new Loop({ name: 'policy', log, resyncMs: opts.resyncMs, settleMs: 2, reconcile: (why) => this.pass(why) });
  }

  start(): void {
    this.loop.start();
  }

  async stop(): Promise<void> {
    await this.loop.stop();
    await this.conn.drop();
  }

  private onEvent(e: WatchEvent): void {
    if (e.type === 'resync') {
      this.log.info(`policy: watch resynced at revision ${e.revision} (${e.items.length} objects)`);
      this.loop.kick('watch resync');
      return;
    }
    const what = `${e.type} ${refString(e.ref)} (rev ${e.revision})`;
    this.log.info(`policy: ${what}`);
    this.loop.kick(`${e.type} ${refString(e.ref)}`);
  }

  private async pass(why: string): Promise<string | undefined> {
    try {
      return await this.reconcile(why);
    } catch (e) {
      if (this.loop.status().consecutiveFailures >= 2) await this.conn.drop(); // the 3rd failure in a row: reconnect next time
      throw e;
    }
  }

  /** Put this host's Node object when the store's differs (once per agent start, and after a failure). */
  private async registerNode(store: Awaited<ReturnType<WatchedStore['get']>>): Promise<void> {
    const want = await nodeObject(this.cfg);
    const have = await store.get<Node>({ kind: 'Node', namespace: '', name: this.cfg.node });
    const same =
      have &&
      JSON.stringify(have.object.metadata.labels ?? {}) === JSON.stringify(want.metadata.labels) &&
      JSON.stringify(have.object.status ?? {}) === JSON.stringify(want.status);
    if (!same) {
      await store.put(want);
      this.log.info(
        `policy: registered node ${this.cfg.node} (${(want.status?.addresses ?? []).map((a) => a.address).join(', ') || 'no addresses'})`,
      );
    }
    this.nodeRegistered = true;
  }

  private async reconcile(why: string): Promise<string | undefined> {
    const store = await this.conn.get();
    const s = this.settings;
    if (!this.nodeRegistered) await this.registerNode(store);
    return withPolicyLock(s, async () => {
      const t0 = performance.now();
      // on start and every resync: is the kernel's table still what the last writer left?
      let full = false;
      if (/\b(start|resync|retry)\b/.test(why)) {
        const recorded = recordedRuleset(s);
        const drift = await tableDrift(recorded, s.table);
        if (drift) {
          // a table nobody wrote yet (first start on this host) is news, not drift
          if (!recorded && drift === 'is gone') this.log.info(`policy: table inet ${s.table} not there yet: creating it`);
          else this.log.warn(`policy: table inet ${s.table} ${drift}: replacing it`);
          full = true;
        }
      }
      // the first pass compiles whatever the record says (this agent may be a newer compiler)
      const r = await programPolicy(store, this.cfg.node, s, { full, recompile: !this.compiled, session: this.session });
      this.compiled = true;
      const o = r.objects;
      this.revision = Math.max(this.revision, o.revision);
      if (r.mode === 'unchanged') return undefined;
      const local = o.endpoints.filter((e) => e.spec.node === this.cfg.node).length;
      const st = r.ruleset.stats;
      return `${r.mode === 'full' ? 'replaced' : 'updated'} table inet ${s.table} at revision ${o.revision}: ${local} local / ${o.endpoints.length} endpoints, ${o.namespaces.length} namespaces, ${o.policies.length} policies, ${o.anps.length} ANP, ${o.banp ? 1 : 0} BANP; ${st.groups} groups, ${st.rules} rules, ${st.elements} elements; ${r.bytes} bytes in ${(performance.now() - t0).toFixed(1)} ms (${Object.entries(
        r.timings ?? {},
      )
        .map(([k, v]) => `${k} ${v.toFixed(1)}`)
        .join(', ')})`;
    });
  }
}
