/**
 * The DNS reconciler: serves the cluster's names (agent/dns, docs/dns.md) from the objects of
 * the cluster store. Holds every Service, EndpointSlice, Endpoint and Namespace in memory (list
 * + watch: a `put` replaces an object, a `delete` drops it, a watch `resync` replaces them all)
 * and, on every change, asks the DNS server for a rebuild (`scheduleRefresh`: a burst of events
 * becomes one rebuild within 50 ms, so a change is served well within 1 s).
 *
 * - The loop's pass (start, periodic resync, retries) re-lists the four kinds and, when they
 *   differ from what it holds or a listener is missing, rebuilds the zone and reconciles the
 *   listeners: the gateway of every network with an Endpoint of this
 *   node (`spec.gateways`), plus `dns.listen`. A gateway that appears or disappears with its
 *   endpoints is bound or closed on the next rebuild; one that cannot be bound yet (the bridge
 *   is not up) is retried on the next pass.
 * - After three failed passes in a row the store client and its watch are replaced (as the
 *   policy reconciler does); the server keeps answering from the last zone meanwhile.
 * - Healthy-only headless answers: `setUnhealthy(fn)` is the hook for the services
 *   reconciler's health checks (a set of addresses, or a predicate); call `healthChanged()`
 *   when a backend changes state. No `BackendHealth` kind exists in the store yet: when it
 *   does, read it here into the same hook.
 */
import { AgentConfigError, type AgentConfig } from '../../shared/agentconfig.ts';
import type { DnsLookupReport, DnsRecord, DnsRecordsReport } from '../../shared/agentapi.ts';
import type { Logger } from '../../shared/cni/log.ts';
import type { RR, UnhealthyInput, ZoneObjects } from '../../shared/dns/records.ts';
import type { CniObject, Endpoint, EndpointSlice, Kind, Namespace, Service } from '../../shared/objects/types.ts';
import { refString } from '../../shared/store/index.ts';
import type { Stored, WatchEvent } from '../../shared/store/types.ts';
import { validateDnsConfig, type DnsAgentConfig, type DnsSection } from '../dns/config.ts';
import { listenSpecs, startDns, type DnsHandle } from '../dns/index.ts';
import type { DnsMetrics } from '../dns/metrics.ts';
import { Loop } from '../loop.ts';
import { WatchedStore } from '../watched-store.ts';

export const DNS_KINDS: Kind[] = ['Service', 'EndpointSlice', 'Endpoint', 'Namespace', 'BackendHealth'];

/** The DNS part of the agent config, checked (code 7 naming the key); undefined when `dns.enabled` is false. */
export function dnsConfigOf(cfg: AgentConfig): DnsAgentConfig | undefined {
  const d = cfg.dns as DnsSection;
  if (d.enabled === false) return undefined;
  const out: DnsAgentConfig = { node: cfg.node, clusterDomain: cfg.clusterDomain, serviceCIDR: cfg.serviceCIDR, dns: d };
  try {
    validateDnsConfig(out);
  } catch (e) {
    const m = /^([\w.]+): (.*)$/.exec((e as Error).message);
    throw new AgentConfigError(cfg.source, m ? m[1]! : 'dns', m ? m[2]! : (e as Error).message);
  }
  return out;
}

/** One record as cnictl prints it: SRV "priority weight port target", SOA "mname rname serial refresh retry expire minimum". */
export function recordOf(rr: RR, network?: string): DnsRecord {
  let data: string;
  if (rr.type === 'SRV') data = `${rr.data.priority} ${rr.data.weight} ${rr.data.port} ${rr.data.target}.`;
  else if (rr.type === 'SOA')
    data = `${rr.data.mname}. ${rr.data.rname}. ${rr.data.serial} ${rr.data.refresh} ${rr.data.retry} ${rr.data.expire} ${rr.data.minimum}`;
  else if (rr.type === 'TXT') data = JSON.stringify(rr.data);
  else if (rr.type === 'PTR' || rr.type === 'CNAME') data = `${rr.data}.`;
  else data = rr.data;
  const r: DnsRecord = { name: `${rr.name}.`, type: rr.type, ttl: rr.ttl, data };
  if (network !== undefined) r.network = network;
  return r;
}

export class DnsReconciler {
  readonly loop: Loop;
  private readonly conn: WatchedStore;
  private dns: DnsHandle | undefined;
  private revision = 0;
  private readonly objects = new Map<string, CniObject>();
  /** per kind, the revision of the last full list: older watch events are already in it */
  private listedAt = new Map<Kind, number>();
  /** objects changed since the last rebuild (a pass with nothing new only rechecks listeners) */
  private dirty = true;
  private unhealthy: (() => UnhealthyInput | undefined) | undefined;

  constructor(
    private readonly cfg: AgentConfig,
    readonly dnsCfg: DnsAgentConfig,
    private readonly log: Logger,
    opts: { resyncMs?: number } = {},
  ) {
    this.conn = new WatchedStore(
      cfg.store,
      DNS_KINDS,
      (e) => this.onEvent(e),
      () => this.revision,
    );
    this.loop = new Loop({ name: 'dns', log, resyncMs: opts.resyncMs, settleMs: 2, reconcile: (why) => this.pass(why) });
    // Headless answers leave out backends the services health checks marked down: the
    // BackendHealth objects (written on each transition) are watched with the other kinds.
    this.unhealthy = () => this.downBackends();
  }

  /** Backends whose latest BackendHealth says unhealthy: `<namespace>/<service>/<address>`. */
  private downBackends(): UnhealthyInput | undefined {
    const down = new Set<string>();
    for (const o of this.objects.values()) {
      if (o.kind !== 'BackendHealth' || o.spec.healthy) continue;
      down.add(`${o.metadata.namespace ?? ''}/${o.spec.service}/${o.spec.address}`);
    }
    return down.size ? (address, svc) => down.has(`${svc.namespace}/${svc.name}/${address}`) : undefined;
  }

  /** Hook for the services reconciler's health checks: addresses (or a predicate) of backends that are down. */
  setUnhealthy(fn: (() => UnhealthyInput | undefined) | undefined): void {
    this.unhealthy = fn;
    this.dirty = true;
    this.healthChanged();
  }

  /** A backend changed state: rebuild (within 50 ms). */
  healthChanged(): void {
    this.dirty = true;
    this.dns?.scheduleRefresh();
  }

  start(): void {
    this.loop.start();
  }

  async stop(): Promise<void> {
    await this.loop.stop();
    await this.conn.drop();
    const d = this.dns;
    this.dns = undefined;
    await d?.close();
  }

  /** What the objects are, cheaply (resourceVersion-free: the objects' JSON, by key). */
  private fingerprint(): string {
    return JSON.stringify([...this.objects].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  /** The objects the zone is built from (the watch cache). */
  zoneObjects(): ZoneObjects {
    const out: Required<ZoneObjects> = { services: [], endpointSlices: [], endpoints: [], namespaces: [] };
    for (const o of this.objects.values()) {
      if (o.kind === 'Service') out.services.push(o as Service);
      else if (o.kind === 'EndpointSlice') out.endpointSlices.push(o as EndpointSlice);
      else if (o.kind === 'Endpoint') out.endpoints.push(o as Endpoint);
      else if (o.kind === 'Namespace') out.namespaces.push(o as Namespace);
    }
    return out;
  }

  private onEvent(e: WatchEvent): void {
    if (e.type === 'resync') {
      this.replaceAll(e.items);
      for (const k of DNS_KINDS) this.listedAt.set(k, e.revision);
      this.log.info(`dns: watch resynced at revision ${e.revision} (${e.items.length} objects)`);
    } else {
      if (e.revision <= (this.listedAt.get(e.ref.kind) ?? 0)) return; // a list already holds it (or something newer)
      const key = refString(e.ref);
      if (e.type === 'put') this.objects.set(key, e.object);
      else this.objects.delete(key);
      this.log.debug(`dns: ${e.type} ${key} (rev ${e.revision})`);
    }
    this.revision = Math.max(this.revision, e.revision);
    this.dirty = true;
    this.dns?.scheduleRefresh();
  }

  private replaceAll(items: Stored[]): void {
    this.objects.clear();
    for (const i of items)
      if (DNS_KINDS.includes(i.object.kind))
        this.objects.set(
          refString({ kind: i.object.kind, namespace: i.object.metadata.namespace ?? '', name: i.object.metadata.name }),
          i.object,
        );
  }

  private async pass(why: string): Promise<string | undefined> {
    try {
      const store = await this.conn.get();
      // the full re-list repairs anything a watch could have missed
      const lists = await Promise.all(DNS_KINDS.map((k) => store.list(k)));
      const before = this.fingerprint();
      this.replaceAll(lists.flatMap((l) => l.items));
      DNS_KINDS.forEach((k, i) => this.listedAt.set(k, lists[i]!.revision));
      this.revision = Math.max(this.revision, ...lists.map((l) => l.revision));
      if (this.fingerprint() !== before) this.dirty = true;
      const hooks = {
        unhealthy: () => this.unhealthy?.(),
        serial: () => this.revision,
        log: (m: string) => this.log.warn(m),
      };
      if (!this.dns) this.dns = await startDns(this.dnsCfg, () => this.zoneObjects(), hooks);
      else if (this.dirty || this.dns.server.addresses().length < listenSpecs(this.dnsCfg, this.zoneObjects()).length)
        await this.dns.refresh();
      this.dirty = false;
      const z = this.dns.server.getZone();
      const listening = this.dns.server.addresses().map((a) => `${a.address}:${a.port}`);
      const summary = `zone ${z?.domain} serial ${z?.serial}: ${z?.stats.services ?? 0} services (${z?.stats.headless ?? 0} headless), ${z?.stats.endpoints ?? 0} endpoints, ${z?.stats.names ?? 0} names; listening on ${listening.join(' ') || 'nothing'}`;
      // log on start and when something changed, not every periodic resync
      return /\b(start|retry|api)\b/.test(why) || summary !== this.loop.status().lastSummary ? summary : undefined;
    } catch (e) {
      if (this.loop.status().consecutiveFailures >= 2) await this.conn.drop();
      throw e;
    }
  }

  /** Every record served (cnictl get dns): the cluster zone, then each network's container names. */
  /** The DNS server's counters (agent/dns/metrics.ts; exported by agent/metrics/services-dns.ts); undefined before it started. */
  serverMetrics(): DnsMetrics | undefined {
    return this.dns?.server.metrics;
  }

  records(): DnsRecordsReport {
    const z = this.dns?.server.getZone();
    const listeners = this.dns?.server.addresses() ?? [];
    if (!z) return { domain: this.dnsCfg.clusterDomain ?? 'cluster.local', serial: 0, listeners, records: [] };
    const records: DnsRecord[] = [];
    for (const node of z.names.values()) for (const rrs of node.values()) for (const rr of rrs) records.push(recordOf(rr));
    for (const [network, names] of z.views)
      for (const node of names.values()) for (const rrs of node.values()) for (const rr of rrs) records.push(recordOf(rr, network));
    return { domain: z.domain, serial: z.serial, listeners, records };
  }

  /** What the server answers for NAME/TYPE (as seen from a network's gateway when `network` is given); null: forwarded upstream. */
  lookup(name: string, type = 'A', network?: string): DnsLookupReport {
    if (!this.dns) throw new Error('dns: not serving yet (no pass has finished)');
    const a = this.dns.lookup(name, type.toUpperCase(), network);
    if (!a) return { name, type: type.toUpperCase(), forwarded: true };
    return {
      name,
      type: type.toUpperCase(),
      forwarded: false,
      rcode: a.rcode,
      answers: a.answers.map((r) => recordOf(r)),
      authority: a.authority.map((r) => recordOf(r)),
      additionals: a.additionals.map((r) => recordOf(r)),
    };
  }
}
