/**
 * Pure part of the metrics sampler: one endpoint's figures from the batched kernel reads
 * (shared/kernel/stats.ts) and the previous sample's state. No I/O.
 *
 * Direction: the host-side veth's rx is what the container sent (tx), its tx what the container
 * received (rx). Drops: the veth's own drops plus the qdisc drops in that direction — the host
 * veth's root qdisc (the bandwidth plugin's ingress TBF: traffic to the container) counts as
 * receive drops, the IFB's root qdisc (its egress TBF: traffic from the container) and the host
 * veth's ingress qdisc as transmit drops.
 *
 * Resets: counters are the kernel's (an agent restart does not move them). When the veth is
 * recreated (new ifindex) or a counter goes down (a qdisc replaced), the previous value is kept
 * as an offset, so the exported counter stays monotonic for this agent's lifetime and the rate
 * of that window counts only what the new counter shows.
 */
import type { Endpoint } from '../../shared/objects/types.ts';
import type { EndpointCounters, EndpointFigures, EndpointLabels } from '../../shared/monitoring.ts';
import type { DevQdiscs, LinkCounters } from '../../shared/kernel/stats.ts';

export const COUNTER_FIELDS = ['rxBytes', 'txBytes', 'rxPackets', 'txPackets', 'rxErrors', 'txErrors', 'rxDropped', 'txDropped'] as const;

export const zeroCounters = (): EndpointCounters => ({
  rxBytes: 0,
  txBytes: 0,
  rxPackets: 0,
  txPackets: 0,
  rxErrors: 0,
  txErrors: 0,
  rxDropped: 0,
  txDropped: 0,
});

/** What the sampler remembers of one endpoint between samples. */
export interface EndpointState {
  ifindex: number;
  /** the kernel values at the last sample (container view, offsets not applied) */
  raw: EndpointCounters;
  /** added to the kernel values (resets seen while this agent ran) */
  offset: EndpointCounters;
  /** the exported counters at the last sample */
  counters: EndpointCounters;
  atMs: number;
}

/** The labels of an Endpoint object's series. */
export function labelsOf(ep: Endpoint, node: string): EndpointLabels {
  return {
    namespace: ep.metadata.namespace ?? 'default',
    pod: ep.metadata.name,
    network: ep.spec.network,
    interface: ep.spec.ifname,
    node,
  };
}

/** The container-view kernel counters of an endpoint: its host veth and (when shaped) its IFB. */
export function containerCounters(
  link: LinkCounters,
  hostQdiscs: DevQdiscs | undefined,
  ifbQdiscs: DevQdiscs | undefined,
): EndpointCounters {
  const hostRootDrops = hostQdiscs?.root?.drops ?? 0;
  const hostIngressDrops = (hostQdiscs?.drops ?? 0) - hostRootDrops;
  return {
    rxBytes: link.txBytes,
    txBytes: link.rxBytes,
    rxPackets: link.txPackets,
    txPackets: link.rxPackets,
    rxErrors: link.txErrors,
    txErrors: link.rxErrors,
    rxDropped: link.txDropped + hostRootDrops,
    txDropped: link.rxDropped + hostIngressDrops + (ifbQdiscs?.root?.drops ?? 0),
  };
}

/** Fold this sample's kernel values into the state: offsets for resets, exported counters. */
export function advance(prev: EndpointState | undefined, ifindex: number, raw: EndpointCounters, atMs: number): EndpointState {
  const offset = prev ? { ...prev.offset } : zeroCounters();
  const recreated = prev !== undefined && prev.ifindex !== ifindex;
  const counters = zeroCounters();
  for (const f of COUNTER_FIELDS) {
    if (prev && (recreated || raw[f] < prev.raw[f])) offset[f] += prev.raw[f];
    counters[f] = raw[f] + offset[f];
  }
  return { ifindex, raw, offset, counters, atMs };
}

export interface Limits {
  /** bits/s of traffic to the container (the host veth's root TBF) */
  rx?: number;
  /** bits/s of traffic from the container (the IFB's root TBF) */
  tx?: number;
}

/** Shaping limits from the qdiscs (TBF rates are bytes/s in tc -json). */
export function limitsOf(hostQdiscs: DevQdiscs | undefined, ifbQdiscs: DevQdiscs | undefined): Limits {
  const bits = (q: DevQdiscs | undefined): number | undefined => (q?.root?.kind === 'tbf' && q.root.rate ? q.root.rate * 8 : undefined);
  const out: Limits = {};
  const rx = bits(hostQdiscs);
  const tx = bits(ifbQdiscs);
  if (rx) out.rx = rx;
  if (tx) out.tx = tx;
  return out;
}

export interface FigureInputs {
  ep: Endpoint;
  node: string;
  prev: EndpointState | undefined;
  next: EndpointState;
  limits: Limits;
  /** the network's capacity (bits/s) for directions without a limit */
  capacity?: number;
  connections: number;
  connectionsTotal: number;
  latencySeconds?: number;
}

/** One endpoint's figures at this sample. */
export function figuresOf(i: FigureInputs): EndpointFigures {
  const { prev, next } = i;
  const dt = prev ? (next.atMs - prev.atMs) / 1000 : 0;
  const d = (f: (typeof COUNTER_FIELDS)[number]): number => (prev ? Math.max(0, next.counters[f] - prev.counters[f]) : 0);
  const rate = (f: (typeof COUNTER_FIELDS)[number]): number => (dt > 0 ? d(f) / dt : 0);
  const rates = { rxBytes: rate('rxBytes'), txBytes: rate('txBytes'), rxPackets: rate('rxPackets'), txPackets: rate('txPackets') };
  const bad = d('rxErrors') + d('txErrors') + d('rxDropped') + d('txDropped');
  const attempted = d('rxPackets') + d('txPackets') + bad;
  const rxLimit = i.limits.rx ?? i.capacity;
  const txLimit = i.limits.tx ?? i.capacity;
  const rxU = rxLimit ? (rates.rxBytes * 8) / rxLimit : undefined;
  const txU = txLimit ? (rates.txBytes * 8) / txLimit : undefined;
  let utilization: number | undefined;
  let limit: number | undefined;
  if (rxU !== undefined || txU !== undefined) {
    if ((txU ?? -1) > (rxU ?? -1)) [utilization, limit] = [txU, txLimit];
    else [utilization, limit] = [rxU, rxLimit];
  }
  const ips = i.ep.spec.ips.map((c) => c.split('/')[0]!);
  return {
    ...labelsOf(i.ep, i.node),
    ...(i.ep.spec.hostInterface ? { hostInterface: i.ep.spec.hostInterface } : {}),
    ips,
    counters: next.counters,
    rates,
    connections: i.connections,
    connectionsTotal: i.connectionsTotal,
    ...(limit !== undefined ? { limitBitsPerSecond: limit } : {}),
    ...(utilization !== undefined ? { utilization } : {}),
    errorRatio: attempted > 0 ? bad / attempted : 0,
    ...(i.latencySeconds !== undefined ? { latencySeconds: i.latencySeconds } : {}),
  };
}
