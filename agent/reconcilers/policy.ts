/**
 * The policy reconciler: keeps this node's policy table (nft, family inet) equal to what the
 * pure compiler renders from the cluster store (every node's Endpoints, Namespaces,
 * NetworkPolicies, AdminNetworkPolicies, the BaselineAdminNetworkPolicy).
 *
 * - Watches those kinds and kicks a pass on every change (logging each one).
 * - A pass takes the table's lock (the endpoint plugin takes the same one), re-reads the store
 *   and renders: the watch only says when, the read under the lock says what, so a pass can
 *   never undo a registration an endpoint ADD just made.
 * - Diff: the rendered script is compared with the last one applied, and the kernel's table
 *   (listed without counter values) with what it was right after that apply; equal on both
 *   counts = nothing to do. Otherwise one nft transaction. The periodic resync (every 10 s by
 *   default) is what repairs drift: a flushed or deleted table comes back.
 * - Rides out store restarts: a failing pass is retried with backoff (agent/loop.ts), and after
 *   three failures in a row the store client and its watch are replaced (reconnect + re-list).
 */
import type { AgentConfig } from '../../shared/agentconfig.ts';
import type { Logger } from '../../shared/cni/log.ts';
import { run } from '../../shared/kernel/exec.ts';
import type { Kind } from '../../shared/objects/types.ts';
import { openStore, refString } from '../../shared/store/index.ts';
import type { ObjectStore, WatchEvent } from '../../shared/store/types.ts';
import { applyPolicy, ensureBridgeNetfilter, policySettings, renderPolicy, withPolicyLock, type PolicySettings } from '../../shared/policysync.ts';
import { Loop } from '../loop.ts';

export const POLICY_KINDS: Kind[] = ['Endpoint', 'Namespace', 'NetworkPolicy', 'AdminNetworkPolicy', 'BaselineAdminNetworkPolicy'];

/** The table as the kernel has it, counter values left out (nft -s), or '' when it is missing. */
async function kernelTable(table: string): Promise<string> {
  const r = await run('nft', ['-s', 'list', 'table', 'inet', table], { allowFail: true });
  return r.exitCode === 0 ? r.stdout : '';
}

export class PolicyReconciler {
  readonly loop: Loop;
  readonly settings: PolicySettings;
  private store: ObjectStore | undefined;
  private stopWatch: (() => void) | undefined;
  private lastScript = '';
  private lastKernel = '';
  private revision = 0;

  constructor(
    private readonly cfg: AgentConfig,
    private readonly log: Logger,
    opts: { resyncMs?: number } = {},
  ) {
    this.settings = policySettings(cfg);
    this.loop = new Loop({ name: 'policy', log, resyncMs: opts.resyncMs, settleMs: 2, reconcile: () => this.pass() });
  }

  start(): void {
    this.loop.start();
  }

  async stop(): Promise<void> {
    await this.loop.stop();
    await this.dropStore();
  }

  private async dropStore(): Promise<void> {
    this.stopWatch?.();
    this.stopWatch = undefined;
    const st = this.store;
    this.store = undefined;
    await st?.close().catch(() => undefined);
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

  private async ensureStore(): Promise<ObjectStore> {
    if (this.store) return this.store;
    const store = await openStore(this.cfg.store, { persistent: true });
    try {
      // watch from the revision of the last read: nothing between that read and now is missed
      const from = this.revision || (await store.list('Namespace')).revision;
      this.stopWatch = await store.watch((e) => this.onEvent(e), { fromRevision: from, kinds: POLICY_KINDS });
    } catch (e) {
      await store.close().catch(() => undefined);
      throw e;
    }
    this.store = store;
    return store;
  }

  private async pass(): Promise<string | undefined> {
    try {
      return await this.reconcile();
    } catch (e) {
      if (this.loop.status().consecutiveFailures >= 2) await this.dropStore(); // the 3rd failure in a row: reconnect next time
      throw e;
    }
  }

  private async reconcile(): Promise<string | undefined> {
    const store = await this.ensureStore();
    const s = this.settings;
    return withPolicyLock(s, async () => {
      const t0 = performance.now();
      const [r, kernel] = await Promise.all([renderPolicy(store, this.cfg.node, s), kernelTable(s.table)]);
      this.revision = Math.max(this.revision, r.objects.revision);
      const drift = kernel !== this.lastKernel;
      if (r.script === this.lastScript && !drift) return undefined;
      if (drift && this.lastKernel && r.script === this.lastScript) {
        this.log.warn(`policy: table inet ${s.table} ${kernel ? 'changed outside the agent' : 'is gone'}: restoring it`);
      }
      await ensureBridgeNetfilter();
      await applyPolicy(r.script);
      this.lastScript = r.script;
      this.lastKernel = await kernelTable(s.table);
      const o = r.objects;
      const local = o.endpoints.filter((e) => e.spec.node === this.cfg.node).length;
      return `applied table inet ${s.table} at revision ${o.revision}: ${local} local / ${o.endpoints.length} endpoints, ${o.namespaces.length} namespaces, ${o.policies.length} policies, ${o.anps.length} ANP, ${o.banp ? 1 : 0} BANP, ${r.script.length} bytes in ${(performance.now() - t0).toFixed(1)} ms`;
    });
  }
}
