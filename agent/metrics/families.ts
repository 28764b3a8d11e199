/**
 * The per-endpoint metric families (issue 16), in one table read by the Prometheus export
 * (registry.ts) and by `MetricsSampler.samples()` (the alert engine): name, type, help and how
 * to read the value from one endpoint's figures (undefined: no series for that endpoint).
 */
import type { EndpointFigures } from '../../shared/monitoring.ts';

export interface EndpointFamily {
  name: string;
  type: 'counter' | 'gauge';
  help: string;
  value(f: EndpointFigures): number | undefined;
}

export const ENDPOINT_LABELS = ['namespace', 'pod', 'network', 'interface', 'node'] as const;

export const ENDPOINT_FAMILIES: EndpointFamily[] = [
  {
    name: 'cni_ts_endpoint_receive_bytes_total',
    type: 'counter',
    help: 'Bytes received by the container on this interface (host veth tx).',
    value: (f) => f.counters.rxBytes,
  },
  {
    name: 'cni_ts_endpoint_transmit_bytes_total',
    type: 'counter',
    help: 'Bytes sent by the container on this interface (host veth rx).',
    value: (f) => f.counters.txBytes,
  },
  {
    name: 'cni_ts_endpoint_receive_packets_total',
    type: 'counter',
    help: 'Packets received by the container on this interface.',
    value: (f) => f.counters.rxPackets,
  },
  {
    name: 'cni_ts_endpoint_transmit_packets_total',
    type: 'counter',
    help: 'Packets sent by the container on this interface.',
    value: (f) => f.counters.txPackets,
  },
  {
    name: 'cni_ts_endpoint_receive_errors_total',
    type: 'counter',
    help: 'Errors on traffic to the container (host veth transmit errors).',
    value: (f) => f.counters.rxErrors,
  },
  {
    name: 'cni_ts_endpoint_transmit_errors_total',
    type: 'counter',
    help: 'Errors on traffic from the container (host veth receive errors).',
    value: (f) => f.counters.txErrors,
  },
  {
    name: 'cni_ts_endpoint_receive_packets_dropped_total',
    type: 'counter',
    help: 'Packets to the container dropped: host veth transmit drops plus its root qdisc drops (shaping).',
    value: (f) => f.counters.rxDropped,
  },
  {
    name: 'cni_ts_endpoint_transmit_packets_dropped_total',
    type: 'counter',
    help: 'Packets from the container dropped: host veth receive drops plus ingress and IFB qdisc drops (shaping).',
    value: (f) => f.counters.txDropped,
  },
  {
    name: 'cni_ts_endpoint_connections',
    type: 'gauge',
    help: "Open conntrack entries with one of the endpoint's addresses.",
    value: (f) => f.connections,
  },
  {
    name: 'cni_ts_endpoint_connections_total',
    type: 'counter',
    help: "New conntrack entries with one of the endpoint's addresses since the agent started.",
    value: (f) => f.connectionsTotal,
  },
  {
    name: 'cni_ts_endpoint_receive_bytes_per_second',
    type: 'gauge',
    help: 'Bytes per second received by the container over the last sampling window.',
    value: (f) => f.rates.rxBytes,
  },
  {
    name: 'cni_ts_endpoint_transmit_bytes_per_second',
    type: 'gauge',
    help: 'Bytes per second sent by the container over the last sampling window.',
    value: (f) => f.rates.txBytes,
  },
  {
    name: 'cni_ts_endpoint_bandwidth_limit_bits_per_second',
    type: 'gauge',
    help: "The utilization denominator: the bandwidth plugin's TBF rate, else the network's configured capacity.",
    value: (f) => f.limitBitsPerSecond,
  },
  {
    name: 'cni_ts_endpoint_bandwidth_utilization_ratio',
    type: 'gauge',
    help: 'max(receive, transmit) rate in bits over its limit (bandwidth plugin TBF, else the network capacity), last window.',
    value: (f) => f.utilization,
  },
  {
    name: 'cni_ts_endpoint_error_ratio',
    type: 'gauge',
    help: '(errors + drops) / (packets + errors + drops) over the last window, both directions; 0 without packets.',
    value: (f) => f.errorRatio,
  },
  {
    name: 'cni_ts_endpoint_latency_seconds',
    type: 'gauge',
    help: 'Round-trip time to the endpoint (ICMP echo from the host and/or the kernel TCP RTT of its sockets; docs/monitoring.md).',
    value: (f) => f.latencySeconds,
  },
];

/** The Prometheus label values of one endpoint. */
export const endpointLabelValues = (f: EndpointFigures): Record<string, string> => ({
  namespace: f.namespace,
  pod: f.pod,
  network: f.network,
  interface: f.interface,
  node: f.node,
});
