/**
 * Service backends and the DNS server through the agent's registry, read at scrape time from
 * what the services reconciler and the DNS server already keep (no extra kernel reads):
 *   cni_ts_service_backend_up{namespace,service,port,backend}           1 healthy / 0 not
 *   cni_ts_service_backend_connections{namespace,service,port,backend}  open connections
 *                                (tracked for every service: agent/health/connections.ts)
 *   cni_ts_dns_queries_total{transport}, cni_ts_dns_responses_total{rcode},
 *   cni_ts_dns_answers_total{source}, cni_ts_dns_dropped_total{reason},
 *   cni_ts_dns_upstream_total{outcome}, cni_ts_dns_cache_{hits,misses,evictions}_total,
 *   cni_ts_dns_cache_entries, cni_ts_dns_zone_names, cni_ts_dns_truncated_total,
 *   cni_ts_dns_request_duration_seconds (histogram, receive → send)
 * (names as suggested in docs/dns.md).
 */
import type { DnsMetrics } from '../dns/metrics.ts';
import { DURATION_BUCKETS } from '../dns/metrics.ts';
import type { ServicePortEntry } from '../../shared/services/compile.ts';
import { collector, type CollectedValue, type Registry } from './registry.ts';

export interface ServicesView {
  entries: ServicePortEntry[];
  /** `${entry.key}|${address}:${port}` → open connections */
  connections: Record<string, number>;
}

const portLabel = (e: ServicePortEntry): string => `${e.portName || e.port}/${e.protocol}`;

export function registerServiceFamilies(registry: Registry, view: () => ServicesView | undefined): void {
  collector(
    registry,
    'cni_ts_service_backend_up',
    'gauge',
    'Service backends by health: 1 healthy (takes new connections), 0 unhealthy (health checks, agent/health).',
    () => {
      const v = view();
      const out: CollectedValue[] = [];
      for (const e of v?.entries ?? [])
        for (const b of e.backends)
          out.push({ labels: { namespace: e.namespace, service: e.name, port: portLabel(e), backend: b.key }, value: b.healthy ? 1 : 0 });
      return out;
    },
  );
  collector(registry, 'cni_ts_service_backend_connections', 'gauge', 'Open connections per service backend (conntrack).', () => {
    const v = view();
    const out: CollectedValue[] = [];
    for (const e of v?.entries ?? [])
      for (const b of e.backends)
        out.push({
          labels: { namespace: e.namespace, service: e.name, port: portLabel(e), backend: b.key },
          value: v?.connections[`${e.key}|${b.key}`] ?? 0,
        });
    return out;
  });
}

export function registerDnsFamilies(registry: Registry, metrics: () => DnsMetrics | undefined): void {
  const fam = (name: string, type: 'counter' | 'gauge', help: string, f: (m: DnsMetrics) => CollectedValue[]): void =>
    collector(registry, name, type, help, () => {
      const m = metrics();
      return m ? f(m) : [];
    });
  const byKey = (label: string, o: Record<string, number>): CollectedValue[] =>
    Object.entries(o).map(([k, value]) => ({ labels: { [label]: k }, value }));
  fam('cni_ts_dns_queries_total', 'counter', 'DNS queries received by the agent, by transport.', (m) => byKey('transport', m.queries));
  fam('cni_ts_dns_responses_total', 'counter', 'DNS responses sent, by rcode.', (m) => byKey('rcode', m.responses));
  fam('cni_ts_dns_answers_total', 'counter', 'Where answers came from: zone, cache, upstream, error.', (m) => byKey('source', m.answered));
  fam('cni_ts_dns_truncated_total', 'counter', 'UDP responses truncated (TC set).', (m) => [{ value: m.truncated }]);
  fam('cni_ts_dns_dropped_total', 'counter', 'DNS requests dropped, by reason.', (m) => byKey('reason', m.dropped));
  fam('cni_ts_dns_upstream_total', 'counter', 'Upstream forwarding: sent, timeouts, errors, TCP retries, SERVFAIL.', (m) =>
    byKey('outcome', m.upstream),
  );
  fam('cni_ts_dns_cache_hits_total', 'counter', 'DNS cache hits.', (m) => [{ value: m.cache.hits }]);
  fam('cni_ts_dns_cache_misses_total', 'counter', 'DNS cache misses.', (m) => [{ value: m.cache.misses }]);
  fam('cni_ts_dns_cache_evictions_total', 'counter', 'DNS cache evictions.', (m) => [{ value: m.cache.evictions }]);
  fam('cni_ts_dns_cache_entries', 'gauge', 'DNS cache entries now.', (m) => [{ value: m.cache.size }]);
  fam('cni_ts_dns_zone_names', 'gauge', 'Names in the served zone.', (m) => [{ value: m.zone.names }]);
  collector(registry, 'cni_ts_dns_request_duration_seconds', 'histogram', 'DNS request duration, receive to send.', () => {
    const m = metrics();
    if (!m) return [];
    const out: CollectedValue[] = [];
    let cum = 0;
    DURATION_BUCKETS.forEach((le, i) => {
      cum += m.duration.buckets[i] ?? 0;
      out.push({ metricName: 'cni_ts_dns_request_duration_seconds_bucket', labels: { le }, value: cum });
    });
    out.push({ metricName: 'cni_ts_dns_request_duration_seconds_bucket', labels: { le: '+Inf' }, value: m.duration.count });
    out.push({ metricName: 'cni_ts_dns_request_duration_seconds_sum', value: m.duration.sum });
    out.push({ metricName: 'cni_ts_dns_request_duration_seconds_count', value: m.duration.count });
    return out;
  });
}
