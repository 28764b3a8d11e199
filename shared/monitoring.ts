/**
 * Monitoring shapes shared by the agent (sampler, alerts, dashboard), `cnictl top` / `cnictl
 * alerts` and the tests: what one endpoint's figures look like at one sample, what the alert
 * engine reads and what it reports. Pure types and small helpers; no I/O.
 */

/** The labels every per-endpoint series carries (issue 16): seen from the container. */
export interface EndpointLabels {
  namespace: string;
  pod: string;
  network: string;
  /** the container-side interface name (eth0) */
  interface: string;
  node: string;
}

/** Kernel counters of one endpoint, from the container's side (rx = what the container received). */
export interface EndpointCounters {
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
  rxErrors: number;
  txErrors: number;
  /** interface drops plus qdisc drops in that direction */
  rxDropped: number;
  txDropped: number;
}

/** One endpoint at one sample. */
export interface EndpointFigures extends EndpointLabels {
  hostInterface?: string;
  /** addresses without prefix length */
  ips: string[];
  counters: EndpointCounters;
  /** per second over the last sampling window (0 on the first sample) */
  rates: { rxBytes: number; txBytes: number; rxPackets: number; txPackets: number };
  /** open conntrack entries with one of the endpoint's addresses */
  connections: number;
  /** conntrack entries created since the agent started watching (new flows) */
  connectionsTotal: number;
  /** the shaping limit in bits/s (bandwidth plugin's TBF), else the network's configured capacity */
  limitBitsPerSecond?: number;
  /** max(rx, tx) rate in bits over limitBitsPerSecond; absent without a limit */
  utilization?: number;
  /** (errors + drops) / packets over the last window, both directions; 0 without packets */
  errorRatio: number;
  /** round-trip time in seconds (see docs/monitoring.md for how it is measured); absent when unknown */
  latencySeconds?: number;
}

export interface MetricsSnapshot {
  node: string;
  /** ISO time of the sample */
  at: string;
  intervalSeconds: number;
  endpoints: EndpointFigures[];
}

/** `namespace/pod/network/interface`: the identity of one endpoint's series (history, dashboard). */
export function endpointKey(e: EndpointLabels): string {
  return `${e.namespace}/${e.pod}/${e.network}/${e.interface}`;
}

/** One value of one series, as the alert engine reads it (a gauge or a ratio at the last sample). */
export interface Sample {
  metric: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * A value for people: `_ratio` metrics as percentages, `_seconds` as ms below 1 s, else 4
 * significant digits; the same text as Prometheus' humanizePercentage / humanizeDuration (below 1 min).
 */
export function formatMetricValue(metric: string, v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const sig = (x: number): string => String(Number(x.toPrecision(4)));
  if (metric.endsWith('_ratio')) return `${sig(v * 100)}%`;
  if (metric.endsWith('_seconds')) return Math.abs(v) < 1 ? `${sig(v * 1000)}ms` : `${sig(v)}s`;
  return sig(v);
}

export type AlertSeverity = 'info' | 'warning' | 'critical';
export type AlertOp = '>' | '>=' | '<' | '<=' | '==' | '!=';

/** An alert rule, as written in the agent config's `alerts.rules` (a rule named like a default replaces it). */
export interface AlertRule {
  name: string;
  metric: string;
  op: AlertOp;
  threshold: number;
  /** how long the condition must hold before the alert fires ("30s", "1m"); "0s": at once */
  for: string;
  severity: AlertSeverity;
  /** a template: {{value}}, {{threshold}} and any label ({{namespace}}, {{pod}}, ...) are filled in */
  description?: string;
}

/** One alert instance: a rule and one series' labels. */
export interface Alert {
  name: string;
  severity: AlertSeverity;
  state: 'pending' | 'firing' | 'resolved';
  /** alertname, severity, and the series' labels (namespace, pod, network, ...) */
  labels: Record<string, string>;
  value: number;
  /** the rule's metric and threshold (so clients can format `value`: formatMetricValue) */
  metric?: string;
  threshold?: number;
  description: string;
  /** when the condition started holding */
  activeAt: string;
  firedAt?: string;
  resolvedAt?: string;
}
