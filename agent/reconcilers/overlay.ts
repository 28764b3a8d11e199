/**
 * The overlay reconciler: what `overlay agent` does (plugins/overlay/agent.ts), as one
 * reconciler of the node agent: hold and renew this host's subnet lease, keep the VTEP, the
 * local bridge and the masquerade table right, install exactly the live peers. Turned on by the
 * agent config's `overlay.config`: the .conf / .conflist holding the overlay plugin the runtime
 * uses (its `store`, `network`, `resyncInterval`, `leaseTTL`, ...).
 *
 * Desired state and the diff are the overlay's own `converge` (shared with its ADD and CHECK);
 * this file only drives it: the store's watch kicks a pass, the loop resyncs at
 * min(resyncInterval, leaseTTL / 3) so the lease is renewed in time, failures back off, and after
 * three failures in a row the store client and its watch are replaced.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { AgentConfigError, type AgentConfig } from '../../shared/agentconfig.ts';
import type { Logger } from '../../shared/cni/log.ts';
import { prepareValidators, validate } from '../../shared/cni/validate.ts';
import schema from '../../conf/schemas/overlay.schema.json' with { type: 'json' };
import { overlayConfigOf, settingsOf, type OverlayConf, type Settings } from '../../shared/overlay/config.ts';
import { converge } from '../../shared/overlay/converge.ts';
import { checkEncryption } from '../../shared/overlay/encryption.ts';
import { openStore, type ClusterLeaseStore } from '../../shared/overlay/store.ts';
import { Loop } from '../loop.ts';

/** The overlay settings the agent config points at (`overlay.config`), or undefined when off. */
export async function overlaySettings(cfg: AgentConfig): Promise<Settings | undefined> {
  const file = cfg.overlay.config;
  if (file === undefined) return undefined;
  if (typeof file !== 'string' || !file)
    throw new AgentConfigError(cfg.source, 'overlay.config', 'must be the path of the .conf or .conflist holding the overlay plugin');
  const p = cfg.source && !path.isAbsolute(file) ? path.resolve(path.dirname(cfg.source), file) : file;
  await prepareValidators([[schema, 'overlay']]);
  let conf: OverlayConf;
  try {
    conf = validate<OverlayConf>(schema, overlayConfigOf(JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>), 'overlay');
  } catch (e) {
    throw new AgentConfigError(cfg.source, 'overlay.config', `${p}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const s = settingsOf(conf);
  await checkEncryption(s.encryption);
  return s;
}

export class OverlayReconciler {
  readonly loop: Loop;
  private store: ClusterLeaseStore | undefined;
  private lastPrune = 0;
  private stopWatch: (() => void) | undefined;
  private first = true;
  private last = '';

  constructor(
    private readonly s: Settings,
    private readonly log: Logger,
  ) {
    const tick = Math.max(0.2, Math.min(s.resyncInterval, s.leaseTTL / 3));
    this.loop = new Loop({ name: 'overlay', log, resyncMs: tick * 1000, reconcile: () => this.pass() });
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

  private async ensureStore(): Promise<ClusterLeaseStore> {
    if (!this.store) {
      const store = await openStore(this.s.store, this.s.name, { persistent: true });
      try {
        this.stopWatch = await store.watch(() => this.loop.kick('watch'));
      } catch (e) {
        await store.close().catch(() => undefined); // no store without its watch: the next pass opens both again
        throw e;
      }
      this.store = store;
    }
    return this.store;
  }

  /** Expired leases of the network leave the store (at most once a minute, or once a leaseTTL when shorter). */
  private async prune(store: ClusterLeaseStore): Promise<void> {
    if (Date.now() - this.lastPrune < Math.min(60, this.s.leaseTTL) * 1000) return;
    this.lastPrune = Date.now();
    try {
      const gone = await store.prune();
      if (gone.length) this.log.info(`network ${this.s.name}: removed expired lease(s) ${gone.join(' ')}`);
    } catch (e) {
      this.log.warn(`network ${this.s.name}: removing expired leases: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private async pass(): Promise<string | undefined> {
    try {
      const store = await this.ensureStore();
      const c = await converge(this.s, store, this.log, { masq: this.first });
      this.first = false;
      await this.prune(store);
      // a summary only when what the host holds changed (the lease renewal every tick is not news)
      const state = `network ${this.s.name}: subnet ${c.lease.subnet} via ${c.underlay.dev} ${c.underlay.ip}, peers ${
        c.peers
          .map((p) => p.subnet)
          .sort()
          .join(',') || 'none'
      }`;
      if (state === this.last && !c.vtepRecreated) return undefined;
      this.last = state;
      return `${state}${c.vtepRecreated ? ' (VTEP created)' : ''}`;
    } catch (e) {
      if (this.loop.status().consecutiveFailures >= 2) await this.dropStore(); // the 3rd failure in a row: reconnect next time
      throw e;
    }
  }
}
