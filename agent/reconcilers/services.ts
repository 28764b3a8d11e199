/**
 * The services reconciler: keeps this node's services table (nft, family inet; agent config
 * `services.table`, default "cni_ts_services") equal to what the pure compiler
 * (shared/services/compile.ts) renders from the store's Services, EndpointSlices, Endpoints
 * and BackendHealth objects. See docs/services.md.
 *
 * - Watches those kinds; every change kicks a pass (bursts collapse, agent/loop.ts).
 * - A pass reads the store, compiles, writes VIP allocations back to their Services (CAS: two
 *   agents allocating at once agree, the loser re-reads), and applies one nft transaction with
 *   only what changed since the last pass (a service's chains, map elements); the whole table
 *   on start, when the kernel's table drifted (checked on start and every resync: deleted,
 *   flushed or edited), or when the kernel refuses the difference.
 * - Backends that are gone (not merely unhealthy) have their tracked connections ended
 *   (conntrack -D by VIP and backend); unhealthy ones keep theirs.
 * - Health checks of local backends (agent/health/checker.ts) and the open-connection counts
 *   least-connections needs (agent/health/connections.ts) run beside it.
 */
import type { AgentConfig } from '../../shared/agentconfig.ts';
import type { Logger } from '../../shared/cni/log.ts';
import { readTable, tableCounts, tryTransaction, updateOrReplace } from '../../shared/firewall/nft.ts';
import { conntrackDeleteBackend } from '../../shared/kernel/conntrack.ts';
import { setSysctls } from '../../shared/kernel/sysctl.ts';
import type { BackendHealth, EndpointSlice, Endpoint, Kind, Service } from '../../shared/objects/types.ts';
import {
  compileServices,
  leastConnectionsChoice,
  lcElement,
  renderFragments,
  renderLcUpdate,
  renderServicesNft,
  renderServicesUpdate,
  SKELETON_CHAINS,
  SKELETON_SETS,
  type RenderedTable,
  type ServicePortEntry,
} from '../../shared/services/compile.ts';
import { ConflictError, refString } from '../../shared/store/index.ts';
import type { ObjectStore, WatchEvent } from '../../shared/store/types.ts';
import { ConnectionTracker } from '../health/connections.ts';
import { HealthChecker, orphanHealth } from '../health/checker.ts';

import { Loop } from '../loop.ts';
import { WatchedStore } from '../watched-store.ts';

/** a health object no backend has any more is deleted once its last check is this old */
const ORPHAN_GRACE_MS = 60_000;

export const SERVICE_KINDS: Kind[] = ['Service', 'EndpointSlice', 'Endpoint', 'BackendHealth'];
export const DEFAULT_SERVICES_TABLE = 'cni_ts_services';

export interface ServicesSettings {
  table: string;
  /** run health checks of local backends (default true) */
  healthChecks: boolean;
}

export function servicesSettings(cfg: AgentConfig): ServicesSettings {
  const s = (cfg.raw.services ?? {}) as { table?: unknown; healthChecks?: unknown };
  const table = typeof s.table === 'string' && /^[A-Za-z_][A-Za-z0-9_]{0,60}$/.test(s.table) ? s.table : DEFAULT_SERVICES_TABLE;
  return { table, healthChecks: s.healthChecks !== false };
}

export class ServicesReconciler {
  readonly loop: Loop;
  readonly settings: ServicesSettings;
  private readonly conn: WatchedStore;
  private revision = 0;
  private applied: RenderedTable | undefined;
  private entries: ServicePortEntry[] = [];
  private health: HealthChecker | undefined;
  private conns: ConnectionTracker;
  /** passes and least-connections updates write the table one at a time */
  private tableLock: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly cfg: AgentConfig,
    private readonly log: Logger,
    opts: { resyncMs?: number } = {},
  ) {
    this.settings = servicesSettings(cfg);
    this.conn = new WatchedStore(
      cfg.store,
      SERVICE_KINDS,
      (e) => this.onEvent(e),
      () => this.revision,
    );
    this.loop = new Loop({ name: 'services', log, resyncMs: opts.resyncMs, settleMs: 2, reconcile: (why) => this.pass(why) });
    this.conns = new ConnectionTracker(log, (keys) => void this.onConnections(keys));
    if (this.settings.healthChecks)
      this.health = new HealthChecker(
        cfg.node,
        () => this.conn.get(),
        log,
        (why) => this.loop.kick(why),
      );
  }

  start(): void {
    this.loop.start();
  }

  async stop(): Promise<void> {
    this.health?.stop();
    this.conns.stop();
    await this.loop.stop();
    await this.tableLock.catch(() => undefined);
    await this.conn.drop();
  }

  /** The last compiled service ports and open-connection counts (API, cnictl). */
  snapshot(): { entries: ServicePortEntry[]; connections: Record<string, number> } {
    return { entries: this.entries, connections: Object.fromEntries(this.conns.counts) };
  }

  private onEvent(e: WatchEvent): void {
    if (e.type === 'resync') {
      this.loop.kick('watch resync');
      return;
    }
    this.loop.kick(`${e.type} ${refString(e.ref)}`);
  }

  private async pass(why: string): Promise<string | undefined> {
    try {
      return await this.withTable(() => this.reconcile(why));
    } catch (e) {
      if (this.loop.status().consecutiveFailures >= 2) await this.conn.drop(); // the 3rd failure in a row: reconnect next time
      throw e;
    }
  }

  private withTable<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.tableLock.then(fn, fn);
    this.tableLock = p.catch(() => undefined);
    return p;
  }

  private async reconcile(why: string): Promise<string | undefined> {
    const store = await this.conn.get();
    const t0 = performance.now();
    const [svcs, slices, eps, hs] = await Promise.all([
      store.list<Service>('Service'),
      store.list<EndpointSlice>('EndpointSlice'),
      store.list<Endpoint>('Endpoint'),
      store.list<BackendHealth>('BackendHealth'),
    ]);
    const revision = Math.min(svcs.revision, slices.revision, eps.revision, hs.revision);
    this.revision = Math.max(this.revision, revision);
    const health = hs.items.map((i) => i.object);
    const table = compileServices(
      {
        services: svcs.items.map((i) => i.object),
        endpointSlices: slices.items.map((i) => i.object),
        endpoints: eps.items.map((i) => i.object),
        health,
      },
      this.cfg.node,
      { serviceCIDR: this.cfg.serviceCIDR },
    );
    for (const p of table.problems) this.log.warn(`services: ${p}`);
    const known = new Map(health.map((h) => [`${h.metadata.namespace ?? 'default'}/${h.metadata.name}`, h]));
    if (this.health) {
      this.health.update(table.entries, known);
      const gone = new Set([...this.health.stale(known), ...orphanHealth(table.entries, known, Date.now(), ORPHAN_GRACE_MS)]);
      for (const k of gone) {
        const [namespace, name] = [k.slice(0, k.indexOf('/')), k.slice(k.indexOf('/') + 1)];
        await store.delete({ kind: 'BackendHealth', namespace, name }).catch(() => undefined);
      }
      if (gone.size) this.log.info(`services: deleted ${gone.size} health object(s) no backend has any more: ${[...gone].join(', ')}`);
    }
    await this.conns.setEntries(table.entries);
    if (table.entries.length) await setSysctls({ 'net.bridge.bridge-nf-call-iptables': '1' }).catch(() => undefined);

    const next = renderFragments(table, this.settings.table, this.conns.counts, this.applied);
    let full = !this.applied;
    if (!full && /\b(start|resync|retry)\b/.test(why)) {
      const drift = await this.drift(this.applied!);
      if (drift) {
        this.log.warn(`services: table inet ${this.settings.table} ${drift}: replacing it`);
        full = true;
      }
    }
    // one transaction through the firewall door (shared/firewall/nft.ts): the difference from
    // what we applied last, or the whole table on start, on drift, or when the kernel refuses it
    let script = full ? '' : renderServicesUpdate(this.applied!, next);
    // decision → committed: the one transaction (figures in docs/benchmarks.md, services)
    const tApply = performance.now();
    full =
      (await updateOrReplace(
        full ? undefined : script,
        () => (script = renderServicesNft(next, this.settings.table)),
        (stderr) => this.log.warn(`services: the kernel refused the update (${stderr.trim()}); replacing the table`),
      )) === 'full';
    // allocations are written once the data plane has them: a client that reads the VIP from
    // the store finds it programmed on this node
    const applyMs = performance.now() - tApply;
    await this.writeAllocations(store, table.allocations);
    const prevEntries = this.entries;
    this.applied = next;
    this.entries = table.entries;
    const ended = await this.endDeletedBackends(prevEntries, table.entries);
    if (!script) return undefined;
    const withBackends = table.entries.filter((e) => e.active.length).length;
    return `${full ? 'replaced' : 'updated'} table inet ${this.settings.table} at revision ${revision}: ${table.entries.length} service ports (${withBackends} with backends), ${script.split('\n').length - 1} statements, ${script.length} bytes (transaction ${applyMs.toFixed(1)} ms)${ended ? `, ${ended} connections to deleted backends ended` : ''} in ${(performance.now() - t0).toFixed(1)} ms`;
  }

  private async writeAllocations(
    store: ObjectStore,
    allocations: Array<{ namespace: string; name: string; clusterIP: string }>,
  ): Promise<void> {
    for (const a of allocations) {
      const cur = await store.get<Service>({ kind: 'Service', namespace: a.namespace, name: a.name });
      if (!cur || cur.object.spec.clusterIP) continue;
      const svc = structuredClone(cur.object) as Service;
      svc.spec.clusterIP = a.clusterIP;
      svc.spec.clusterIPs = [a.clusterIP];
      try {
        await store.put(svc, { expectRevision: cur.revision });
        this.log.info(`services: allocated ${a.clusterIP} to Service ${a.namespace}/${a.name}`);
      } catch (e) {
        if (!(e instanceof ConflictError)) throw e;
        this.loop.kick(`allocation conflict ${a.namespace}/${a.name}`);
      }
    }
  }

  /** conntrack -D for the backends that left a service port (deleted, not merely unhealthy). */
  private async endDeletedBackends(prev: ServicePortEntry[], next: ServicePortEntry[]): Promise<number> {
    const now = new Map(next.map((e) => [e.key, new Set(e.backends.map((b) => b.key))]));
    let n = 0;
    for (const e of prev) {
      const keep = now.get(e.key);
      for (const b of e.backends) {
        if (keep?.has(b.key)) continue;
        n += await conntrackDeleteBackend({ proto: e.protocol, vip: e.vip, port: e.port, backend: b.address, backendPort: b.port }).catch(
          () => 0,
        );
      }
    }
    return n;
  }

  /** Why the kernel's table is not what we applied (undefined when it is). */
  private async drift(applied: RenderedTable): Promise<string | undefined> {
    // any failure to read it counts as gone (the next pass rewrites it)
    const t = await readTable('inet', this.settings.table, undefined, { terse: true }).catch(() => undefined);
    if (!t) return 'is gone';
    const chains = t.chains;
    const counts = tableCounts(t);
    const rules = counts.rules;
    const sets = new Set([...counts.sets.keys(), ...counts.maps.keys()]);
    const want = new Map(Object.entries(SKELETON_CHAINS));
    const wantSets = new Set(SKELETON_SETS);
    for (const f of applied.fragments.values()) {
      for (const c of f.chains) want.set(c.name, c.rules.length);
      for (const s of f.sets) wantSets.add(s.name);
    }
    for (const [c, n] of want) {
      if (!chains.has(c)) return `lacks chain ${c}`;
      if ((rules.get(c) ?? 0) !== n) return `chain ${c} has ${rules.get(c) ?? 0} rules, not ${n}`;
    }
    if (chains.size !== want.size) return `has ${chains.size} chains, not ${want.size}`;
    for (const s of wantSets) if (!sets.has(s)) return `lacks set/map ${s}`;
    return undefined;
  }

  /** Least-connections: repoint the map of every service whose counts changed (one nft call). */
  private async onConnections(keys: Set<string>): Promise<void> {
    await this.withTable(async () => {
      const applied = this.applied;
      if (!applied) return;
      const lines: string[] = [];
      for (const e of this.entries) {
        if (!keys.has(e.key) || e.algorithm !== 'least-connections') continue;
        const f = applied.fragments.get(e.key);
        const pick = leastConnectionsChoice(e, this.conns.counts);
        if (!f?.lc || !pick) continue;
        const el = lcElement(e, pick);
        if (el === f.lc.element) continue;
        lines.push(renderLcUpdate(applied.table, e, pick));
        f.lc = { ...f.lc, element: el };
      }
      const r = await tryTransaction(lines.join(''));
      if (!r.ok) this.log.warn(`services: least-connections update failed: ${r.stderr.trim()}`);
    }).catch(() => undefined);
  }
}
