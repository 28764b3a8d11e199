/**
 * A stand-in for the metrics sampler (agent/metrics/sampler.ts) in unit tests and the bench:
 * snapshots of `n` endpoints with traffic that follows a known pattern.
 */
import type { EndpointFigures, MetricsSnapshot } from '../../shared/monitoring.ts';

export function fakeEndpoint(i: number, t: number, o: Partial<EndpointFigures> = {}): EndpointFigures {
  const rx = 1000 * (i + 1) + 100 * t;
  const tx = 500 * (i + 1) + 50 * t;
  return {
    namespace: `ns${i % 5}`,
    pod: `pod-${i}`,
    network: 'net',
    interface: 'eth0',
    node: 'node-a',
    hostInterface: `veth${i}`,
    ips: [`10.1.${i >> 8}.${i & 255}`],
    counters: {
      rxBytes: rx * t,
      txBytes: tx * t,
      rxPackets: 10 * t,
      txPackets: 8 * t,
      rxErrors: 0,
      txErrors: 0,
      rxDropped: 2 * t,
      txDropped: t,
    },
    rates: { rxBytes: rx, txBytes: tx, rxPackets: 10, txPackets: 8 },
    connections: i % 7,
    connectionsTotal: 3 * t,
    limitBitsPerSecond: i % 2 ? 10_000_000 : undefined,
    utilization: i % 2 ? (rx * 8) / 10_000_000 : undefined,
    errorRatio: 0.01,
    latencySeconds: 0.002 + i / 1e5,
    ...o,
  };
}

/** Sample number `t` (taken at start + t × interval) of `n` endpoints. */
export function fakeSnapshot(n: number, t: number, opts: { intervalSeconds?: number; startMs?: number } = {}): MetricsSnapshot {
  const interval = opts.intervalSeconds ?? 5;
  const start = opts.startMs ?? Date.parse('2026-12-06T07:00:00Z');
  return {
    node: 'node-a',
    at: new Date(start + t * interval * 1000).toISOString(),
    intervalSeconds: interval,
    endpoints: Array.from({ length: n }, (_, i) => fakeEndpoint(i, t)),
  };
}
