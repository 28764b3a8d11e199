/**
 * Plain counters of the DNS server, for the monitoring issue to export (Prometheus names are
 * suggested in docs/dns.md). Everything is a number that only grows, except `cache.size`.
 */
import type { Rcode } from './wire.ts';

/** Upper bounds (seconds) of the duration histogram buckets; the last bucket is +Inf. */
export const DURATION_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export interface DnsMetrics {
  /** responses sent, by rcode */
  responses: Record<Rcode | 'other', number>;
  /** queries received, by transport */
  queries: { udp: number; tcp: number };
  /** where answers came from */
  answered: { zone: number; cache: number; upstream: number; error: number };
  truncated: number;
  dropped: { rateLimited: number; malformed: number; notQuery: number; tcpConnections: number; sendDropped: number };
  upstream: { sent: number; timeouts: number; errors: number; tcpRetries: number; servfail: number };
  cache: { hits: number; misses: number; evictions: number; size: number };
  zone: { swaps: number; names: number; serial: number };
  /** request durations (receive to send), cumulative histogram: counts per DURATION_BUCKETS + Inf */
  duration: { buckets: number[]; sum: number; count: number };
}

export function newMetrics(): DnsMetrics {
  return {
    responses: { NOERROR: 0, FORMERR: 0, SERVFAIL: 0, NXDOMAIN: 0, NOTIMP: 0, REFUSED: 0, other: 0 },
    queries: { udp: 0, tcp: 0 },
    answered: { zone: 0, cache: 0, upstream: 0, error: 0 },
    truncated: 0,
    dropped: { rateLimited: 0, malformed: 0, notQuery: 0, tcpConnections: 0, sendDropped: 0 },
    upstream: { sent: 0, timeouts: 0, errors: 0, tcpRetries: 0, servfail: 0 },
    cache: { hits: 0, misses: 0, evictions: 0, size: 0 },
    zone: { swaps: 0, names: 0, serial: 0 },
    duration: { buckets: new Array<number>(DURATION_BUCKETS.length + 1).fill(0), sum: 0, count: 0 },
  };
}

export function observeDuration(m: DnsMetrics, seconds: number): void {
  let i = 0;
  while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]) i++;
  m.duration.buckets[i]++;
  m.duration.sum += seconds;
  m.duration.count++;
}
