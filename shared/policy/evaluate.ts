/**
 * The policy evaluator: the "truth" for one flow, with Kubernetes semantics. Used by
 * `cnictl policy trace` and by tests to compute expected reachability matrices. Pure.
 *
 * A flow passes when the source's egress side allows it AND the destination's ingress side
 * allows it; each side is judged as its own node would (evaluate() judges both). Per side:
 *   1. AdminNetworkPolicies selecting the pod, lowest priority number first (ties by name),
 *      rules in order: the first match decides Allow / Deny; Pass skips every remaining ANP.
 *   2. NetworkPolicies: once any policy of that policyType selects the pod it is isolated in
 *      that direction and the union of their rules is what is allowed (no match: deny).
 *   3. Not isolated: the BaselineAdminNetworkPolicy's rules in order (first match decides).
 *   4. Otherwise allowed.
 * A pod reaching itself is always allowed (it cannot block itself, as Kubernetes says).
 */
import type { Endpoint } from '../objects/types.ts';
import { formatIP, type Family, type IP } from '../ipnet.ts';
import {
  PolicyIndex,
  parseAddr,
  peerMatches,
  portsMatch,
  type Action,
  type Direction,
  type FlowProtocol,
  type Pod,
  type PolicyObjects,
  type RuleRef,
} from './model.ts';

/** A flow end: an Endpoint, or an address (a known endpoint's address means that pod). */
export type FlowEnd = Endpoint | string;

export interface Flow {
  src: FlowEnd;
  dst: FlowEnd;
  protocol: FlowProtocol;
  /** destination port (none for ICMP) */
  port?: number;
  /** address family for pod-to-pod flows (default: 4 when both pods have IPv4) */
  family?: Family;
}

export type DefaultReason =
  /** the side is not a pod we know: nothing of ours applies there */
  | 'not-a-pod'
  /** no NetworkPolicy isolates the pod in this direction and no admin rule matched */
  | 'not-isolated'
  /** isolated by NetworkPolicy and no rule allows the flow */
  | 'isolated'
  /** a pod reaching itself */
  | 'self';

export type Decision = (RuleRef & { action: Action }) | { default: DefaultReason };

export interface SideResult {
  direction: Direction;
  /** the pod judged on this side (ns/name), when it is one */
  pod?: string;
  verdict: 'allow' | 'deny';
  decidedBy: Decision;
  /** every policy that selects the pod for this direction */
  selectedBy: {
    adminNetworkPolicies: { name: string; priority: number }[];
    networkPolicies: { namespace: string; name: string }[];
    baselineAdminNetworkPolicy?: string;
  };
  /** isolated by NetworkPolicy in this direction */
  isolated: boolean;
  /** all NetworkPolicy rules allowing the flow (union), when NetworkPolicy decided */
  allowedBy?: RuleRef[];
  /** an ANP Pass rule that handed the decision down, if any */
  passedBy?: RuleRef;
}

export interface EvaluateResult {
  verdict: 'allow' | 'deny';
  /** the side that denied, else the ingress side's decision (the egress one's when ingress is not ours) */
  decidedBy: Decision & { side?: Direction };
  src: { pod?: string; ip?: string };
  dst: { pod?: string; ip?: string };
  family: Family;
  egress: SideResult;
  ingress: SideResult;
}

interface End {
  pod?: Pod;
  ip?: IP;
}

function resolveEnd(idx: PolicyIndex, e: FlowEnd): End {
  if (typeof e === 'string') {
    const ip = parseAddr(e);
    if (!ip) throw new TypeError(`"${e}" is not an IP address`);
    return { pod: idx.byIP.get(ip.text), ip };
  }
  const pod = idx.pods.find((p) => p.ep === e) ?? idx.podByName(e.metadata.namespace ?? 'default', e.metadata.name);
  if (pod) return { pod };
  // an endpoint not in the objects: judge it by its own labels
  const extra = new PolicyIndex({ ...idx.objects, endpoints: [e] });
  return { pod: extra.pods[0] };
}

const podName = (p: Pod | undefined): string | undefined => (p ? `${p.namespace}/${p.name}` : undefined);

/** Judge one side: `pod` (the subject) in `direction`, the other end `other`. */
export function evaluateSide(
  idx: PolicyIndex,
  direction: Direction,
  pod: Pod | undefined,
  other: End,
  protocol: FlowProtocol,
  port: number | undefined,
  dstPod: Pod | undefined,
): SideResult {
  const base = { direction, pod: podName(pod) };
  if (!pod)
    return {
      ...base,
      verdict: 'allow',
      decidedBy: { default: 'not-a-pod' },
      selectedBy: { adminNetworkPolicies: [], networkPolicies: [] },
      isolated: false,
    };
  const { anps, nps, banp } = idx.policiesFor(pod, direction);
  const selectedBy: SideResult['selectedBy'] = {
    adminNetworkPolicies: anps.map((a) => ({ name: a.name, priority: a.priority })),
    networkPolicies: nps.map((n) => ({ namespace: n.namespace as string, name: n.name })),
    ...(banp ? { baselineAdminNetworkPolicy: banp.name } : {}),
  };
  const isolated = nps.length > 0;
  const res = { ...base, selectedBy, isolated };
  const matches = (r: { peers: Parameters<typeof peerMatches>[0]; ports: Parameters<typeof portsMatch>[0] }): boolean =>
    peerMatches(r.peers, other.pod, other.ip, idx) && portsMatch(r.ports, protocol, port, dstPod);

  let passedBy: RuleRef | undefined;
  anpLoop: for (const a of anps) {
    for (const r of a[direction] ?? []) {
      if (!matches(r)) continue;
      if (r.action === 'Pass') {
        passedBy = r.ref;
        break anpLoop;
      }
      return { ...res, verdict: r.action === 'Allow' ? 'allow' : 'deny', decidedBy: { ...r.ref, action: r.action } };
    }
  }
  const pass = passedBy ? { passedBy } : {};
  if (isolated) {
    const allowedBy = nps.flatMap((n) => (n[direction] ?? []).filter(matches).map((r) => r.ref));
    if (allowedBy.length > 0) return { ...res, ...pass, verdict: 'allow', decidedBy: { ...allowedBy[0], action: 'Allow' }, allowedBy };
    return { ...res, ...pass, verdict: 'deny', decidedBy: { default: 'isolated' }, allowedBy };
  }
  for (const r of banp?.[direction] ?? []) {
    if (matches(r) && r.action !== 'Pass')
      return { ...res, ...pass, verdict: r.action === 'Allow' ? 'allow' : 'deny', decidedBy: { ...r.ref, action: r.action } };
  }
  return { ...res, ...pass, verdict: 'allow', decidedBy: { default: 'not-isolated' } };
}

/** Evaluate one flow against all policy objects (an index may be passed instead, to reuse it). */
export function evaluate(objects: PolicyObjects | PolicyIndex, flow: Flow): EvaluateResult {
  const idx = objects instanceof PolicyIndex ? objects : new PolicyIndex(objects);
  const src = resolveEnd(idx, flow.src);
  const dst = resolveEnd(idx, flow.dst);
  const family: Family =
    flow.family ??
    src.ip?.family ??
    dst.ip?.family ??
    (src.pod?.ips.some((i) => i.family === 4) && dst.pod?.ips.some((i) => i.family === 4) ? 4 : 6);
  if (!src.ip) src.ip = src.pod?.ips.find((i) => i.family === family);
  if (!dst.ip) dst.ip = dst.pod?.ips.find((i) => i.family === family);
  const ends = {
    src: { pod: podName(src.pod), ip: src.ip ? formatIP(src.ip) : undefined },
    dst: { pod: podName(dst.pod), ip: dst.ip ? formatIP(dst.ip) : undefined },
  };
  if (src.pod && dst.pod && src.pod === dst.pod) {
    const self = (direction: Direction): SideResult => ({
      direction,
      pod: podName(src.pod),
      verdict: 'allow',
      decidedBy: { default: 'self' },
      selectedBy: { adminNetworkPolicies: [], networkPolicies: [] },
      isolated: false,
    });
    return { verdict: 'allow', decidedBy: { default: 'self' }, ...ends, family, egress: self('egress'), ingress: self('ingress') };
  }
  const egress = evaluateSide(idx, 'egress', src.pod, dst, flow.protocol, flow.port, dst.pod);
  const ingress = evaluateSide(idx, 'ingress', dst.pod, src, flow.protocol, flow.port, dst.pod);
  const decider = egress.verdict === 'deny' ? egress : ingress.verdict === 'deny' ? ingress : dst.pod ? ingress : egress;
  return {
    verdict: egress.verdict === 'allow' && ingress.verdict === 'allow' ? 'allow' : 'deny',
    decidedBy: { ...decider.decidedBy, side: decider.direction },
    ...ends,
    family,
    egress,
    ingress,
  };
}

/** One-line description of a decision ("NetworkPolicy x/allow-a ingress rule 0", "default: isolated"). */
export function describeDecision(d: Decision): string {
  if ('default' in d) {
    return {
      'not-a-pod': 'default (not a pod: no policy applies)',
      'not-isolated': 'default allow (not isolated)',
      isolated: 'default deny (isolated, no rule allows)',
      self: 'default allow (a pod reaching itself)',
    }[d.default];
  }
  const who = d.kind === 'NetworkPolicy' ? `NetworkPolicy ${d.namespace}/${d.name}` : `${d.kind} ${d.name}`;
  return `${who} ${d.direction} rule ${d.rule}${d.ruleName ? ` (${d.ruleName})` : ''}: ${d.action}`;
}
