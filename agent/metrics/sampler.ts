/**
 * The metrics sampler (issue 16; docs/monitoring.md): every `metrics.intervalSeconds` it reads
 * this node's Endpoint objects (store, watched) and, for ALL of them at once, the kernel's
 * counters — one `ip -s -json link show`, one `tc -s -json qdisc show`, one `conntrack -L` per
 * sample — and turns them into per-endpoint figures (figures.ts). A long-running
 * `conntrack -E -e NEW` counts new connections; latency probes (ICMP from the host and/or the
 * kernel TCP RTT inside the pod's netns) run beside the sampling, bounded per sample.
 *
 * Contract (other parts of the agent code against it; keep its shape):
 *   latest(namespace?) the last snapshot; samples() per-endpoint gauges for the alert engine;
 *   onSample(cb) called after each sample (returns an unsubscribe function).
 */
import type { AgentConfig } from '../../shared/agentconfig.ts';
import type { Logger } from '../../shared/cni/log.ts';
import { conntrackEvents, conntrackList, type CtEntry, type CtFamily } from '../../shared/kernel/conntrack.ts';
import { icmpRtt, tcpRtt } from '../../shared/kernel/probe.ts';
import { readLinkStats, readQdiscStats } from '../../shared/kernel/stats.ts';
import type { EndpointFigures, MetricsSnapshot, Sample } from '../../shared/monitoring.ts';
import { endpointKey } from '../../shared/monitoring.ts';
import type { Endpoint } from '../../shared/objects/types.ts';
import type { WatchEvent } from '../../shared/store/types.ts';
import { ifbName } from '../../shared/kernel/tc.ts';
import { WatchedStore } from '../watched-store.ts';
import { metricsSettings, type MetricsSettings } from './config.ts';
import { advance, containerCounters, figuresOf, labelsOf, limitsOf, type EndpointState } from './figures.ts';
import { ENDPOINT_FAMILIES, endpointLabelValues } from './families.ts';
import { collector, registerEndpointFamilies, type Registry } from './registry.ts';

/** The families `samples()` reports (gauges the alert engine reads). */
export const SAMPLE_METRICS = [
  'cni_ts_endpoint_bandwidth_utilization_ratio',
  'cni_ts_endpoint_error_ratio',
  'cni_ts_endpoint_latency_seconds',
  'cni_ts_endpoint_connections',
  'cni_ts_endpoint_receive_bytes_per_second',
  'cni_ts_endpoint_transmit_bytes_per_second',
];

/** Endpoint list re-read at least this often even without watch events. */
const RELIST_MS = 60_000;

interface LatencyState {
  seconds?: number;
  atMs: number;
}

export class MetricsSampler {
  readonly settings: MetricsSettings;
  readonly intervalMs: number;
  private readonly conn: WatchedStore;
  private revision = 0;
  private endpoints: Endpoint[] = [];
  private listedAt = 0;
  private dirty = true;
  private state = new Map<string, EndpointState>();
  private newConns = new Map<string, number>();
  private latency = new Map<string, LatencyState>();
  private probing = false;
  private snapshot: MetricsSnapshot | undefined;
  private listeners = new Set<(s: MetricsSnapshot) => void>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** one `conntrack -E -e NEW` follower per family */
  private stopEvents = new Map<CtFamily, () => void>();
  private eventsRestart = new Map<CtFamily, NodeJS.Timeout>();
  private stopped = true;
  /** ip → endpoint keys (for conntrack events between samples) */
  private byIp = new Map<string, string[]>();
  /** the last sample's duration and failures (self-metrics) */
  readonly stats = { samples: 0, failures: 0, lastDurationSeconds: 0, lastError: '' };

  constructor(
    private readonly cfg: AgentConfig,
    private readonly log: Logger,
    opts: { intervalMs?: number; registry?: Registry } = {},
  ) {
    this.settings = metricsSettings(cfg);
    this.intervalMs = opts.intervalMs ?? this.settings.intervalSeconds * 1000;
    this.conn = new WatchedStore(
      cfg.store,
      ['Endpoint'],
      (e) => this.onEvent(e),
      () => this.revision,
    );
    if (opts.registry) {
      registerEndpointFamilies(opts.registry, () => this.snapshot);
      const reg = opts.registry;
      collector(reg, 'cni_ts_metrics_samples_total', 'counter', 'Samples of the endpoint metrics taken by this agent.', () => [
        { value: this.stats.samples },
      ]);
      collector(reg, 'cni_ts_metrics_sample_failures_total', 'counter', 'Samples that failed (store or kernel read).', () => [
        { value: this.stats.failures },
      ]);
      collector(
        reg,
        'cni_ts_metrics_sample_duration_seconds',
        'gauge',
        'How long the last sample took (store list + the batched kernel reads + figures).',
        () => [{ value: this.stats.lastDurationSeconds }],
      );
      collector(reg, 'cni_ts_metrics_endpoints', 'gauge', 'Endpoints of this node sampled at the last sample.', () => [
        { value: this.snapshot?.endpoints.length ?? 0 },
      ]);
    }
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.startEvents('ipv4');
    this.startEvents('ipv6');
    const tick = (): void => {
      if (this.stopped) return;
      this.running = this.sampleNow()
        .then(
          () => undefined,
          () => undefined,
        )
        .finally(() => {
          this.running = undefined;
          if (!this.stopped) this.timer = setTimeout(tick, this.intervalMs);
        });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    for (const t of this.eventsRestart.values()) clearTimeout(t);
    this.eventsRestart.clear();
    this.timer = undefined;
    for (const stop of this.stopEvents.values()) stop();
    this.stopEvents.clear();
    await this.running;
    await this.conn.drop();
  }

  /** The last sample (only `namespace`'s endpoints when given). */
  latest(namespace?: string): MetricsSnapshot | undefined {
    const s = this.snapshot;
    if (!s || namespace === undefined) return s;
    return { ...s, endpoints: s.endpoints.filter((e) => e.namespace === namespace) };
  }

  /** This node's Endpoint objects as of the last sample (IPAM pool sizes, diagnostics). */
  endpointObjects(): readonly Endpoint[] {
    return this.endpoints;
  }

  /** Per-endpoint gauges at the last sample (labels: namespace, pod, network, interface, node). */
  samples(): Sample[] {
    const s = this.snapshot;
    if (!s) return [];
    const out: Sample[] = [];
    for (const fam of ENDPOINT_FAMILIES) {
      if (!SAMPLE_METRICS.includes(fam.name)) continue;
      for (const f of s.endpoints) {
        const v = fam.value(f);
        if (v !== undefined && Number.isFinite(v)) out.push({ metric: fam.name, labels: endpointLabelValues(f), value: v });
      }
    }
    return out;
  }

  onSample(cb: (s: MetricsSnapshot) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  private onEvent(e: WatchEvent): void {
    if (e.type === 'resync' || e.ref.kind === 'Endpoint') this.dirty = true;
  }

  private async localEndpoints(): Promise<Endpoint[]> {
    if (!this.dirty && Date.now() - this.listedAt < RELIST_MS) return this.endpoints;
    this.dirty = false;
    try {
      const store = await this.conn.get();
      const l = await store.list<Endpoint>('Endpoint');
      this.revision = Math.max(this.revision, l.revision);
      this.endpoints = l.items.map((i) => i.object).filter((e) => e.spec.node === this.cfg.node);
      this.listedAt = Date.now();
    } catch (e) {
      this.dirty = true;
      await this.conn.drop();
      throw e;
    }
    return this.endpoints;
  }

  /** One sample now (the timer calls it; tests and benchmarks may too). */
  async sampleNow(): Promise<MetricsSnapshot | undefined> {
    const t0 = performance.now();
    try {
      const eps = await this.localEndpoints();
      const atMs = Date.now();
      // IPv6 entries are listed only when some endpoint has an IPv6 address (one conntrack read per family)
      const v6 = eps.some((ep) => ep.spec.ips.some((c) => c.includes(':')));
      const [links, qdiscs, ct4, ct6] = await Promise.all([
        readLinkStats(),
        readQdiscStats(),
        eps.length ? conntrackList() : Promise.resolve([] as CtEntry[]),
        v6 ? conntrackList(undefined, 'ipv6') : Promise.resolve([] as CtEntry[]),
      ]);
      const ct = ct6.length ? [...ct4, ...ct6] : ct4;
      const byIp = new Map<string, string[]>();
      const figures: EndpointFigures[] = [];
      const keys = eps.map((ep) => endpointKey(labelsOf(ep, this.cfg.node)));
      eps.forEach((ep, i) => {
        for (const c of ep.spec.ips) {
          const ip = c.split('/')[0]!;
          const l = byIp.get(ip);
          if (l) l.push(keys[i]!);
          else byIp.set(ip, [keys[i]!]);
        }
      });
      this.byIp = byIp;
      const open = countConnections(ct, byIp);
      const seen = new Set<string>();
      eps.forEach((ep, i) => {
        const key = keys[i]!;
        const host = ep.spec.hostInterface;
        const link = host ? links.get(host) : undefined;
        if (!host || !link) return; // no host-side interface (host-device, ...) or not there (yet)
        seen.add(key);
        const hostQ = qdiscs.get(host);
        const ifbQ = qdiscs.get(ifbName(ep.spec.network, ep.spec.containerId));
        const prev = this.state.get(key);
        const next = advance(prev, link.ifindex, containerCounters(link, hostQ, ifbQ), atMs);
        this.state.set(key, next);
        const lat = this.latency.get(key);
        figures.push(
          figuresOf({
            ep,
            node: this.cfg.node,
            prev,
            next,
            limits: limitsOf(hostQ, ifbQ),
            capacity: this.settings.capacity[ep.spec.network] ?? this.settings.defaultCapacity,
            connections: open.get(key) ?? 0,
            connectionsTotal: this.newConns.get(key) ?? 0,
            latencySeconds: lat?.seconds,
          }),
        );
      });
      for (const k of [...this.state.keys()]) if (!seen.has(k)) this.state.delete(k);
      for (const k of [...this.latency.keys()]) if (!seen.has(k)) this.latency.delete(k);
      const known = new Set(keys);
      for (const k of [...this.newConns.keys()]) if (!known.has(k)) this.newConns.delete(k);
      const snap: MetricsSnapshot = {
        node: this.cfg.node,
        at: new Date(atMs).toISOString(),
        intervalSeconds: this.intervalMs / 1000,
        endpoints: figures,
      };
      this.snapshot = snap;
      this.stats.samples++;
      this.stats.lastDurationSeconds = (performance.now() - t0) / 1000;
      this.stats.lastError = '';
      for (const cb of this.listeners) {
        try {
          cb(snap);
        } catch (e) {
          this.log.warn(`metrics: an onSample listener failed: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
      this.probeLatency(eps, keys);
      return snap;
    } catch (e) {
      this.stats.failures++;
      const msg = e instanceof Error ? e.message : String(e);
      if (msg !== this.stats.lastError) this.log.warn(`metrics: sample failed: ${msg}`);
      this.stats.lastError = msg;
      throw e;
    }
  }

  /** Count NEW conntrack events of one family per endpoint (restarted with a delay when conntrack exits). */
  private startEvents(family: CtFamily): void {
    if (this.stopped) return;
    const stop = conntrackEvents(
      (e) => {
        if (e.event !== 'NEW') return;
        const keys = new Set([
          ...(this.byIp.get(e.orig.src) ?? []),
          ...(this.byIp.get(e.orig.dst) ?? []),
          ...(this.byIp.get(e.reply.src) ?? []),
        ]);
        for (const k of keys) this.newConns.set(k, (this.newConns.get(k) ?? 0) + 1);
      },
      (why) => {
        this.stopEvents.delete(family);
        if (this.stopped) return;
        this.log.warn(`metrics: ${family} conntrack events stopped (${why}); restarting in 30 s`);
        const t = setTimeout(() => this.startEvents(family), 30_000);
        t.unref();
        this.eventsRestart.set(family, t);
      },
      undefined,
      { events: 'NEW', family },
    );
    this.stopEvents.set(family, stop);
  }

  /**
   * Latency probes, in the background: at most `maxProbesPerSample` endpoints per sample (the
   * ones measured longest ago first), `concurrency` at a time; a new round starts only when the
   * previous one is done.
   */
  private probeLatency(eps: Endpoint[], keys: string[]): void {
    const l = this.settings.latency;
    if (l.mode === 'off' || this.probing || l.maxProbesPerSample === 0 || !eps.length) return;
    const order = eps
      .map((ep, i) => ({ ep, key: keys[i]!, at: this.latency.get(keys[i]!)?.atMs ?? 0 }))
      .filter((x) => this.state.has(x.key));
    order.sort((a, b) => a.at - b.at);
    const batch = order.slice(0, l.maxProbesPerSample);
    if (!batch.length) return;
    this.probing = true;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < batch.length && !this.stopped) {
        const { ep, key } = batch[next++]!;
        const seconds = await this.measure(ep).catch(() => undefined);
        this.latency.set(key, { seconds, atMs: Date.now() });
      }
    };
    void Promise.all(Array.from({ length: Math.min(l.concurrency, batch.length) }, worker)).finally(() => (this.probing = false));
  }

  private async measure(ep: Endpoint): Promise<number | undefined> {
    const { mode, timeoutMs } = this.settings.latency;
    if ((mode === 'tcp' || mode === 'both') && ep.spec.sandbox) {
      const t = await tcpRtt(ep.spec.sandbox);
      if (t !== undefined || mode === 'tcp') return t;
    }
    if (mode === 'tcp') return undefined;
    const ip = ep.spec.ips.map((c) => c.split('/')[0]!).find((a) => !a.includes(':')) ?? ep.spec.ips[0]?.split('/')[0];
    return ip ? icmpRtt(ip, timeoutMs) : undefined;
  }
}

/** Open conntrack entries per endpoint key (an entry counts once per endpoint it touches). */
export function countConnections(entries: CtEntry[], byIp: Map<string, string[]>): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of entries) {
    const a = byIp.get(e.orig.src);
    const b = byIp.get(e.orig.dst);
    const c = byIp.get(e.reply.src);
    if (!a && !b && !c) continue;
    const keys = new Set([...(a ?? []), ...(b ?? []), ...(c ?? [])]);
    for (const k of keys) out.set(k, (out.get(k) ?? 0) + 1);
  }
  return out;
}
