/**
 * The agent's Prometheus registry (prom-client) and `GET /metrics` (text format 0.0.4).
 *
 * Per-endpoint families are not prom-client Counters fed by `inc()`: their values are the
 * kernel's counters at the last sample, so each family is a small collector registered with
 * `registerMetric` whose `get()` reads the sampler's latest snapshot (one pass over the
 * endpoints per scrape, no per-series bookkeeping, series of a gone endpoint vanish with it).
 * Other parts of the agent (plugin calls, IPAM, services, DNS) register their own collectors
 * on the same registry (`collector()` below).
 */
import type http from 'node:http';
import { Registry, type MetricObjectWithValues, type MetricType, type MetricValue } from 'prom-client';
import type { EndpointFigures, MetricsSnapshot } from '../../shared/monitoring.ts';
import { ENDPOINT_FAMILIES, endpointLabelValues } from './families.ts';

export { Registry };

/** A fresh registry for the agent (one per Agent; tests make their own). */
export function createRegistry(): AgentRegistry {
  return new AgentRegistry();
}

export interface CollectedValue {
  labels?: Record<string, string | number>;
  /** labels prom-client formats once per object and caches (the same object across families) */
  sharedLabels?: Record<string, string>;
  value: number;
  /** histogram parts: `<name>_bucket` / `_sum` / `_count` */
  metricName?: string;
}

/**
 * Register a family whose values are computed at scrape time. `collect` returns every value
 * of the family (histograms: the `_bucket` (with `le`), `_sum` and `_count` lines by metricName).
 */
export function collector(
  registry: Registry,
  name: string,
  type: 'counter' | 'gauge' | 'histogram',
  help: string,
  collect: () => CollectedValue[] | Promise<CollectedValue[]>,
): void {
  const metric = {
    name,
    help,
    type,
    aggregator: 'sum' as const,
    get: async (): Promise<MetricObjectWithValues<MetricValue<string>>> =>
      ({
        name,
        help,
        type: type as unknown as MetricType,
        aggregator: 'sum',
        values: (await collect()) as MetricValue<string>[],
      }) as unknown as MetricObjectWithValues<MetricValue<string>>,
    reset: (): void => undefined,
  };
  registry.registerMetric(metric as unknown as Parameters<Registry['registerMetric']>[0]);
}

/**
 * The agent's registry: prom-client's, plus text blocks rendered by their owners and appended
 * to its output. The per-endpoint families use that: prom-client formats every value's labels
 * on every scrape (8000 series at 500 endpoints cost ~100 ms of CPU under Bun), while their
 * values only change once per sample — so they are rendered once per snapshot and reused by
 * every scrape until the next sample.
 */
export class AgentRegistry extends Registry {
  private readonly blocks: Array<() => string> = [];

  addText(render: () => string): void {
    this.blocks.push(render);
  }

  override async metrics(): Promise<string> {
    const base = await super.metrics();
    const extra = this.blocks.map((b) => b()).filter(Boolean);
    if (!extra.length) return base;
    return `${base.trim() ? `${base.replace(/\n*$/, '')}\n\n` : ''}${extra.join('\n')}`;
  }
}

const esc = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

/** The cni_ts_endpoint_* families of one snapshot in Prometheus text format (each family ends with a blank line). */
export function renderEndpointFamilies(snap: MetricsSnapshot | undefined): string {
  if (!snap) return '';
  const labels = snap.endpoints.map((f) => {
    const l = endpointLabelValues(f);
    return `{${Object.entries(l)
      .map(([k, v]) => `${k}="${esc(v)}"`)
      .join(',')}}`;
  });
  const out: string[] = [];
  for (const fam of ENDPOINT_FAMILIES) {
    out.push(`# HELP ${fam.name} ${fam.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}\n# TYPE ${fam.name} ${fam.type}\n`);
    snap.endpoints.forEach((f, i) => {
      const v = fam.value(f);
      if (v !== undefined && Number.isFinite(v)) out.push(`${fam.name}${labels[i]!} ${v}\n`);
    });
    out.push('\n');
  }
  return out.join('');
}

/** The cni_ts_endpoint_* families, read from `latest()` at each scrape (rendered once per snapshot on an AgentRegistry). */
export function registerEndpointFamilies(registry: Registry, latest: () => MetricsSnapshot | undefined): void {
  if (registry instanceof AgentRegistry) {
    let cached: { snap: MetricsSnapshot | undefined; text: string } | undefined;
    registry.addText(() => {
      const snap = latest();
      if (!cached || cached.snap !== snap) cached = { snap, text: renderEndpointFamilies(snap) };
      return cached.text;
    });
    return;
  }
  // a plain prom-client Registry: one collector per family; one label object per endpoint
  // figures shared by all families (prom-client formats `sharedLabels` once per object)
  const labels = new WeakMap<EndpointFigures, Record<string, string>>();
  const labelsOf = (f: EndpointFigures): Record<string, string> => {
    let l = labels.get(f);
    if (!l) labels.set(f, (l = endpointLabelValues(f)));
    return l;
  };
  for (const fam of ENDPOINT_FAMILIES) {
    collector(registry, fam.name, fam.type, fam.help, () => {
      const snap = latest();
      if (!snap) return [];
      const out: CollectedValue[] = [];
      for (const f of snap.endpoints) {
        const v = fam.value(f);
        if (v !== undefined && Number.isFinite(v)) out.push({ sharedLabels: labelsOf(f), value: v });
      }
      return out;
    });
  }
}

/** `GET /metrics`: the registry in Prometheus text format. */
export function metricsRoute(registry: Registry): (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void> {
  return async (_req, res) => {
    const text = await registry.metrics();
    res.writeHead(200, { 'content-type': registry.contentType, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
}
