/**
 * The normalized policy model both the evaluator (the "truth") and the nftables compiler are
 * built on, so the two cannot disagree about what a policy means. Pure: no kernel, no store.
 *
 * NetworkPolicy (networking.k8s.io/v1), AdminNetworkPolicy and BaselineAdminNetworkPolicy
 * (policy.networking.k8s.io/v1alpha1) are turned into `PolicyRule`s: a peer list (pods chosen by
 * selectors, address ranges, or everything), a port list (numbers, ranges, names resolved on the
 * destination pod, or everything) and an action.
 */
import type {
  AdminNetworkPolicy,
  AnpPeer,
  AnpPort,
  AnpSubject,
  BaselineAdminNetworkPolicy,
  Endpoint,
  LabelSelector,
  Namespace,
  NetworkPolicy,
  NetworkPolicyPeer,
  NetworkPolicyPort,
  Node,
  Protocol,
} from '../objects/types.ts';
import { matchesSelector, namespaceLabels } from '../objects/selectors.ts';
import { bitsOf, formatIP, formatV6Groups, lastAddr, networkAddr, parseCIDR, parseIP, type Family, type IP } from '../ipnet.ts';

/** Everything policy depends on: what the store holds (every node's endpoints). */
export interface PolicyObjects {
  endpoints: Endpoint[];
  namespaces: Namespace[];
  policies: NetworkPolicy[];
  anps: AdminNetworkPolicy[];
  banp?: BaselineAdminNetworkPolicy | null;
  /** Node objects (ANP/BANP egress `nodes` peers match their addresses); none: such peers match nothing */
  nodes?: Node[];
}

export type Direction = 'ingress' | 'egress';
export type Action = 'Allow' | 'Deny' | 'Pass';
export type FlowProtocol = Protocol | 'ICMP';
export const PROTOCOLS: readonly Protocol[] = ['TCP', 'UDP', 'SCTP'];

/** Which policy rule something came from (also what a counter name maps back to). */
export interface RuleRef {
  kind: 'NetworkPolicy' | 'AdminNetworkPolicy' | 'BaselineAdminNetworkPolicy';
  /** NetworkPolicy only */
  namespace?: string;
  name: string;
  direction: Direction;
  /** index in spec.ingress / spec.egress */
  rule: number;
  /** ANP/BANP rule name, when given */
  ruleName?: string;
}

/** A set of pods: namespace fixed (an NP peer with only podSelector) and/or selectors. */
export interface PodSelection {
  namespace?: string;
  namespaceSelector?: LabelSelector;
  podSelector?: LabelSelector;
}

/** One address range [first, last] of one family. */
export interface Range {
  family: Family;
  first: bigint;
  last: bigint;
}

export type Peer =
  /** id: a short stable hash of the selection (names its address sets) */
  | { kind: 'pods'; sel: PodSelection; id: string }
  /** ipBlock / networks: the CIDR minus its excepts, as disjoint ranges */
  | { kind: 'cidr'; cidr: string; except: string[]; ranges: Range[]; id: string }
  /** ANP/BANP egress `nodes`: the addresses of the Node objects the selector selects */
  | { kind: 'nodes'; sel: LabelSelector; id: string };

export type PortSpec =
  /** numeric port or range (port undefined: every port of the protocol) */
  | { kind: 'number'; protocol: Protocol; port?: number; endPort?: number }
  /** a container port name, resolved on the destination pod; protocol undefined: any (ANP namedPort) */
  | { kind: 'named'; protocol?: Protocol; name: string };

export interface PolicyRule {
  ref: RuleRef;
  action: Action;
  /** 'all': every peer (NP rule without from/to) */
  peers: Peer[] | 'all';
  /** 'all': every port and protocol */
  ports: PortSpec[] | 'all';
  /** the named counter this rule counts into */
  counter: string;
}

/** One policy, normalized: who it applies to and, per direction it isolates/acts in, its rules. */
export interface NormalizedPolicy {
  kind: RuleRef['kind'];
  namespace?: string;
  name: string;
  /** ANP: priority (lower first); NP: 0; BANP: 0 */
  priority: number;
  subject: PodSelection[];
  /** present iff the policy applies in that direction (for NP: iff it isolates it) */
  ingress?: PolicyRule[];
  egress?: PolicyRule[];
}

// ---------------------------------------------------------------- counters

const MAX_NAME = 200;
const shortDir = (d: Direction): string => (d === 'ingress' ? 'in' : 'eg');

/**
 * Named counter of a rule: `np_<ns>_<name>_<in|eg>_<idx>`, `anp_<name>_<in|eg>_<idx>`,
 * `banp_<name>_<in|eg>_<idx>` (Kubernetes names never contain `_`, so the name splits back).
 * Names too long for nftables get a hashed form; `parseCounterName` needs the ruleset's
 * `counters` map for those.
 */
export function counterName(ref: RuleRef): string {
  const prefix =
    ref.kind === 'NetworkPolicy'
      ? `np_${ref.namespace}_${ref.name}`
      : ref.kind === 'AdminNetworkPolicy'
        ? `anp_${ref.name}`
        : `banp_${ref.name}`;
  const n = `${prefix}_${shortDir(ref.direction)}_${ref.rule}`;
  if (n.length <= MAX_NAME && /^[a-z][a-z0-9_.-]*$/.test(n)) return n;
  return `${ref.kind === 'NetworkPolicy' ? 'np' : ref.kind === 'AdminNetworkPolicy' ? 'anp' : 'banp'}x_${fnv(n)}_${shortDir(ref.direction)}_${ref.rule}`;
}

/** Counters of the implicit deny of an isolated pod (NetworkPolicy default deny), per direction. */
export const DEFAULT_DENY_COUNTER: Record<Direction, string> = { ingress: 'default_deny_in', egress: 'default_deny_eg' };

export type CounterMeaning = RuleRef | { default: 'isolated'; direction: Direction };

/** Counter name back to the rule (without a ruleset: fails only for hashed long names). */
export function parseCounterName(name: string, known?: Record<string, CounterMeaning>): CounterMeaning | undefined {
  if (known?.[name]) return known[name];
  if (name === DEFAULT_DENY_COUNTER.ingress) return { default: 'isolated', direction: 'ingress' };
  if (name === DEFAULT_DENY_COUNTER.egress) return { default: 'isolated', direction: 'egress' };
  const p = name.split('_');
  const dir = (s: string): Direction | undefined => (s === 'in' ? 'ingress' : s === 'eg' ? 'egress' : undefined);
  if (p[0] === 'np' && p.length === 5 && dir(p[3]) && /^\d+$/.test(p[4])) {
    return { kind: 'NetworkPolicy', namespace: p[1], name: p[2], direction: dir(p[3]) as Direction, rule: Number(p[4]) };
  }
  if ((p[0] === 'anp' || p[0] === 'banp') && p.length === 4 && dir(p[2]) && /^\d+$/.test(p[3])) {
    return {
      kind: p[0] === 'anp' ? 'AdminNetworkPolicy' : 'BaselineAdminNetworkPolicy',
      name: p[1],
      direction: dir(p[2]) as Direction,
      rule: Number(p[3]),
    };
  }
  return undefined;
}

/** 32-bit FNV-1a as 8 hex digits (names only, not security). */
export function fnv(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

/** A short stable id of a key (two FNV rounds: 16 hex digits). */
export function shortHash(s: string): string {
  return fnv(s) + fnv(`${s.length}:${s}`);
}

// ---------------------------------------------------------------- address ranges

export function cidrRanges(cidr: string, except: string[] = []): Range[] {
  const n = parseCIDR(cidr);
  if (!n) return [];
  let out: Range[] = [{ family: n.family, first: networkAddr(n), last: lastAddr(n) }];
  for (const e of except) {
    const x = parseCIDR(e);
    if (!x || x.family !== n.family) continue;
    const xf = networkAddr(x);
    const xl = lastAddr(x);
    const next: Range[] = [];
    for (const r of out) {
      if (xl < r.first || xf > r.last) {
        next.push(r);
        continue;
      }
      if (xf > r.first) next.push({ family: r.family, first: r.first, last: xf - 1n });
      if (xl < r.last) next.push({ family: r.family, first: xl + 1n, last: r.last });
    }
    out = next;
  }
  return out;
}

export const inRanges = (ranges: Range[], ip: IP): boolean =>
  ranges.some((r) => r.family === ip.family && ip.value >= r.first && ip.value <= r.last);

/** nft interval element: "a.b.c.d/nn" when the range is a prefix, else "first-last". */
export function rangeElement(r: Range): string {
  const size = r.last - r.first + 1n;
  const bits = bitsOf(r.family);
  if ((size & (size - 1n)) === 0n && r.first % size === 0n) {
    const prefix = bits - (size.toString(2).length - 1);
    return `${formatIP({ family: r.family, value: r.first })}/${prefix}`;
  }
  return `${formatIP({ family: r.family, value: r.first })}-${formatIP({ family: r.family, value: r.last })}`;
}

// ---------------------------------------------------------------- pods

/** An address with its canonical text (what nft prints and set diffs compare). */
export interface PodIP extends IP {
  text: string;
}

export interface Pod {
  ep: Endpoint;
  namespace: string;
  name: string;
  labels: Record<string, string>;
  nsLabels: Record<string, string>;
  ips: PodIP[];
  node: string;
  /** position in the index (sorted by namespace, name, node, container, ifname) */
  order: number;
}

const V4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const V6 = /^[0-9a-fA-F:]+$/;

/**
 * Parse an address into value and canonical text (RFC 5952 for IPv6), fast: endpoints are
 * parsed on every compile. Unusual spellings (IPv4-suffixed IPv6) go through shared/ipnet.ts.
 */
export function parseAddr(s: string): PodIP | null {
  const hit = addrCache.get(s);
  if (hit) return hit;
  const ip = parseAddrUncached(s);
  if (ip) {
    // a long-running agent parses the same endpoint addresses on every compile
    if (addrCache.size >= 200_000) addrCache.clear();
    addrCache.set(s, ip);
  }
  return ip;
}

const addrCache = new Map<string, PodIP>();

function parseAddrUncached(s: string): PodIP | null {
  const m = V4.exec(s);
  if (m) {
    const o = [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])];
    if (o.some((x) => x > 255)) return null;
    return { family: 4, value: BigInt(((o[0] << 24) >>> 0) + (o[1] << 16) + (o[2] << 8) + o[3]), text: o.join('.') };
  }
  if (V6.test(s) && s.includes(':')) {
    const halves = s.split('::');
    if (halves.length > 2) return null;
    const head = halves[0] ? halves[0].split(':') : [];
    const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
    const missing = 8 - head.length - tail.length;
    if ((halves.length === 1 && missing !== 0) || (halves.length === 2 && missing < 1)) return null;
    const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail];
    const nums: number[] = [];
    for (const g of groups) {
      if (g.length === 0 || g.length > 4) return null;
      nums.push(parseInt(g, 16));
    }
    const value = BigInt(`0x${nums.map((n) => n.toString(16).padStart(4, '0')).join('')}`);
    return { family: 6, value, text: formatV6Groups(nums) };
  }
  const ip = parseIP(s);
  return ip ? { ...ip, text: formatIP(ip) } : null;
}

/** The endpoint's addresses without prefix length ("10.1.0.5/24" -> "10.1.0.5"). */
export function endpointIPs(ep: Endpoint): PodIP[] {
  const out: PodIP[] = [];
  for (const s of ep.spec.ips ?? []) {
    const slash = s.indexOf('/');
    const ip = parseAddr(slash < 0 ? s : s.slice(0, slash));
    if (ip) out.push(ip);
  }
  return out;
}

/**
 * What one set of pods (endpoints + namespaces, unchanged) lets later compiles reuse: the
 * selections of peers and subjects, and (compile.ts) the sets and group chains built from them.
 * Lives as long as the pods do: an endpoint or namespace change starts a new one.
 */
export class PodMemo {
  /** peer selection id -> pods, in index order */
  readonly selections = new Map<string, Pod[]>();
  readonly selectionSets = new Map<string, Set<Pod>>();
  /** normalized policy -> the pods its subject selects */
  readonly subjects = new WeakMap<NormalizedPolicy, Set<Pod>>();
  /** compile.ts: set name -> set (depends on the pods and the set's key only) */
  readonly sets = new Map<string, unknown>();
  /** compile.ts: group signature -> built chains */
  readonly chains = new Map<string, unknown>();
  /** compile.ts: per node, its local sets and verdict maps' pod part */
  readonly local = new Map<string, unknown>();
  /** node selector -> the selected nodes' addresses */
  readonly nodes = new Map<string, PodIP[]>();
}

/**
 * Normalized policies kept across compiles, keyed by what the store says of each object
 * (kind, namespace, name, resourceVersion) or, without a resourceVersion, by the object itself:
 * an unchanged policy is not normalized again and keeps its identity (group chains are cached
 * by it).
 */
export class NormalizeCache {
  private byKey = new Map<unknown, NormalizedPolicy>();
  private next = new Map<unknown, NormalizedPolicy>();

  get<T extends NetworkPolicy | AdminNetworkPolicy | BaselineAdminNetworkPolicy>(o: T, f: (o: T) => NormalizedPolicy): NormalizedPolicy {
    const rv = o.metadata.resourceVersion;
    const k: unknown = rv === undefined ? o : `${o.kind}|${o.metadata.namespace ?? ''}|${o.metadata.name}|${rv}`;
    let n = this.byKey.get(k) ?? this.next.get(k);
    if (!n) n = f(o);
    this.next.set(k, n);
    return n;
  }

  /** Forget what the last compile did not use. */
  sweep(): void {
    this.byKey = this.next;
    this.next = new Map();
  }
}

/** What a new PolicyIndex may take over from the previous one. */
export interface IndexReuse {
  prev?: PolicyIndex;
  normalized?: NormalizeCache;
}

const objKey = (o: Endpoint | Namespace | Node): unknown =>
  o.metadata.resourceVersion === undefined ? o : `${o.metadata.namespace ?? ''}|${o.metadata.name}|${o.metadata.resourceVersion}`;

function sameObjects(a: (Endpoint | Namespace | Node)[], b: (Endpoint | Namespace | Node)[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && objKey(a[i]!) !== objKey(b[i]!)) return false;
  return true;
}

/** Objects indexed once for evaluation and compilation. */
export class PolicyIndex {
  readonly pods: Pod[];
  readonly byIP = new Map<string, Pod>();
  readonly nsLabels = new Map<string, Record<string, string>>();
  readonly anps: NormalizedPolicy[];
  readonly nps: NormalizedPolicy[];
  readonly banp?: NormalizedPolicy;
  readonly objects: PolicyObjects;
  /** NetworkPolicies by namespace (they select pods of their own namespace only) */
  readonly npsByNs = new Map<string, NormalizedPolicy[]>();
  /** pods by namespace, in index order */
  readonly podsByNs = new Map<string, Pod[]>();
  /** selections and compiled parts valid for these pods (shared with the previous index when the pods are the same) */
  readonly memo: PodMemo;

  /**
   * `reuse.prev`: the index of the previous compile; when its endpoints and namespaces are the
   * same objects (or the same resourceVersions), its pods and memo are taken over.
   * `reuse.normalized`: normalized policies kept across compiles.
   */
  constructor(objects: PolicyObjects, reuse: IndexReuse = {}) {
    this.objects = objects;
    const prev = reuse.prev;
    if (
      prev &&
      sameObjects(prev.objects.endpoints, objects.endpoints) &&
      sameObjects(prev.objects.namespaces, objects.namespaces) &&
      sameObjects(prev.objects.nodes ?? [], objects.nodes ?? [])
    ) {
      this.pods = prev.pods;
      this.byIP = prev.byIP;
      this.nsLabels = prev.nsLabels;
      this.podsByNs = prev.podsByNs;
      this.memo = prev.memo;
    } else {
      this.memo = new PodMemo();
      const nsObj = new Map(objects.namespaces.map((n) => [n.metadata.name, n]));
      for (const n of objects.namespaces) this.nsLabels.set(n.metadata.name, namespaceLabels(n, n.metadata.name));
      this.pods = objects.endpoints
        .map((ep) => ({ ep, k: key(ep) }))
        .sort((a, b) => cmp(a.k, b.k))
        .map(({ ep }, order) => {
          const namespace = ep.metadata.namespace ?? 'default';
          if (!this.nsLabels.has(namespace)) this.nsLabels.set(namespace, namespaceLabels(nsObj.get(namespace), namespace));
          return {
            ep,
            namespace,
            name: ep.metadata.name,
            labels: ep.metadata.labels ?? {},
            nsLabels: this.nsLabels.get(namespace) as Record<string, string>,
            ips: endpointIPs(ep),
            node: ep.spec.node,
            order,
          };
        });
      for (const p of this.pods) {
        const list = this.podsByNs.get(p.namespace);
        if (list) list.push(p);
        else this.podsByNs.set(p.namespace, [p]);
      }
      for (const p of this.pods) for (const ip of p.ips) if (!this.byIP.has(ip.text)) this.byIP.set(ip.text, p);
    }
    const nc = reuse.normalized;
    const norm = <T extends NetworkPolicy | AdminNetworkPolicy | BaselineAdminNetworkPolicy>(
      o: T,
      f: (o: T) => NormalizedPolicy,
    ): NormalizedPolicy => (nc ? nc.get(o, f) : f(o));
    this.anps = objects.anps.map((a) => norm(a, normalizeAnp)).sort((a, b) => a.priority - b.priority || cmp(a.name, b.name));
    this.nps = objects.policies
      .map((p) => norm(p, normalizeNetworkPolicy))
      .sort((a, b) => cmp(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`));
    for (const n of this.nps) {
      const list = this.npsByNs.get(n.namespace as string);
      if (list) list.push(n);
      else this.npsByNs.set(n.namespace as string, [n]);
    }
    this.banp = objects.banp ? norm(objects.banp, normalizeBanp) : undefined;
    nc?.sweep();
  }

  /** The IP addresses (canonical text) of the nodes `sel` selects, by family (memoized). */
  nodeAddresses(sel: LabelSelector, id: string): PodIP[] {
    const k = `nodes:${id}`;
    let out = this.memo.nodes.get(k);
    if (!out) {
      const seen = new Set<string>();
      out = [];
      for (const n of [...(this.objects.nodes ?? [])].sort((a, b) => cmp(a.metadata.name, b.metadata.name))) {
        if (!matchesSelector(sel, n.metadata.labels ?? {})) continue;
        for (const a of n.status?.addresses ?? []) {
          const ip = parseAddr(a.address);
          if (ip && !seen.has(ip.text)) {
            seen.add(ip.text);
            out.push(ip);
          }
        }
      }
      this.memo.nodes.set(k, out);
    }
    return out;
  }

  /** The node an address belongs to (traces). */
  nodeByIP(s: string): Node | undefined {
    const ip = parseAddr(s);
    if (!ip) return undefined;
    return (this.objects.nodes ?? []).find((n) => (n.status?.addresses ?? []).some((a) => parseAddr(a.address)?.text === ip.text));
  }

  /** The pods `p`'s subject selects (memoized for these pods). */
  subjectPods(p: NormalizedPolicy): Set<Pod> {
    let s = this.memo.subjects.get(p);
    if (!s) {
      s = new Set<Pod>();
      for (const sel of p.subject) for (const pod of this.select(sel)) s.add(pod);
      this.memo.subjects.set(p, s);
    }
    return s;
  }

  /** The pods of a peer selection (memoized for these pods by the selection's id). */
  selectPeer(peer: { sel: PodSelection; id: string }): Pod[] {
    let pods = this.memo.selections.get(peer.id);
    if (!pods) {
      pods = this.select(peer.sel);
      this.memo.selections.set(peer.id, pods);
    }
    return pods;
  }

  selectPeerSet(peer: { sel: PodSelection; id: string }): Set<Pod> {
    let s = this.memo.selectionSets.get(peer.id);
    if (!s) {
      s = new Set(this.selectPeer(peer));
      this.memo.selectionSets.set(peer.id, s);
    }
    return s;
  }

  /** The policies acting on `pod` in `dir`: ANPs in evaluation order, NetworkPolicies, the BANP. */
  policiesFor(pod: Pod, dir: Direction): { anps: NormalizedPolicy[]; nps: NormalizedPolicy[]; banp?: NormalizedPolicy } {
    const anps = this.anps.filter((a) => a[dir] && this.subjectPods(a).has(pod));
    const nps = (this.npsByNs.get(pod.namespace) ?? []).filter((n) => n[dir] && this.subjectPods(n).has(pod));
    const banp = this.banp && this.banp[dir] && this.subjectPods(this.banp).has(pod) ? this.banp : undefined;
    return { anps, nps, banp };
  }

  nsLabelsOf(ns: string): Record<string, string> {
    return this.nsLabels.get(ns) ?? namespaceLabels(undefined, ns);
  }

  podByIP(s: string): Pod | undefined {
    const ip = parseAddr(s);
    return ip ? this.byIP.get(ip.text) : undefined;
  }

  podByName(namespace: string, name: string): Pod | undefined {
    return this.pods.find((p) => p.namespace === namespace && p.name === name);
  }

  /** Pods of a selection, in index order: namespaces first (few), then pods of those only. */
  select(sel: PodSelection): Pod[] {
    const namespaces = [...this.podsByNs.keys()].filter(
      (ns) =>
        (sel.namespace === undefined || ns === sel.namespace) &&
        (!sel.namespaceSelector || matchesSelector(sel.namespaceSelector, this.nsLabelsOf(ns))),
    );
    const out: Pod[] = [];
    const ps = sel.podSelector ?? {};
    for (const ns of namespaces) for (const p of this.podsByNs.get(ns) ?? []) if (matchesSelector(ps, p.labels)) out.push(p);
    return namespaces.length > 1 ? out.sort((a, b) => a.order - b.order) : out;
  }
}

/** Code-unit order (stable across locales, and fast: no ICU collator). */
export const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

const key = (ep: Endpoint): string =>
  `${ep.metadata.namespace ?? 'default'}/${ep.metadata.name}/${ep.spec.node}/${ep.spec.containerId}/${ep.spec.ifname}`;

export function selectionMatches(sel: PodSelection, pod: Pod): boolean {
  if (sel.namespace !== undefined && pod.namespace !== sel.namespace) return false;
  if (sel.namespaceSelector && !matchesSelector(sel.namespaceSelector, pod.nsLabels)) return false;
  return matchesSelector(sel.podSelector ?? {}, pod.labels);
}

export const subjectMatches = (p: NormalizedPolicy, pod: Pod): boolean => p.subject.some((s) => selectionMatches(s, pod));

/** Canonical text of a selection (set names, group keys). */
export function selectionKey(sel: PodSelection): string {
  const canon = (s?: LabelSelector): unknown =>
    s === undefined
      ? null
      : {
          l: Object.entries(s.matchLabels ?? {}).sort(([a], [b]) => cmp(a, b)),
          e: (s.matchExpressions ?? [])
            .map((e) => [e.key, e.operator, [...(e.values ?? [])].sort()])
            .sort((a, b) => cmp(JSON.stringify(a), JSON.stringify(b))),
        };
  return JSON.stringify([sel.namespace ?? null, canon(sel.namespaceSelector), canon(sel.podSelector ?? {})]);
}

// ---------------------------------------------------------------- normalization

function npPeer(p: NetworkPolicyPeer, ns: string): Peer | undefined {
  if (p.ipBlock) return cidrPeer(p.ipBlock.cidr, p.ipBlock.except ?? []);
  if (p.namespaceSelector) return podsPeer({ namespaceSelector: p.namespaceSelector, podSelector: p.podSelector ?? {} });
  if (p.podSelector) return podsPeer({ namespace: ns, podSelector: p.podSelector });
  return undefined; // an empty peer: invalid upstream; selects nothing here
}

function cidrPeer(cidr: string, except: string[]): Peer {
  return { kind: 'cidr', cidr, except, ranges: cidrRanges(cidr, except), id: shortHash(JSON.stringify([cidr, except])) };
}

function podsPeer(sel: PodSelection): Peer {
  return { kind: 'pods', sel, id: shortHash(selectionKey(sel)) };
}

function npPorts(ports: NetworkPolicyPort[] | undefined): PortSpec[] | 'all' {
  if (!ports || ports.length === 0) return 'all';
  return ports.map((p): PortSpec => {
    const protocol = (p.protocol ?? 'TCP').toUpperCase() as Protocol;
    if (typeof p.port === 'string') {
      // a numeric string is a number (IntOrString parses "80" as the name "80" upstream, but
      // our YAML/JSON inputs may quote numbers): treat digits as the number
      if (/^\d+$/.test(p.port)) return { kind: 'number', protocol, port: Number(p.port), endPort: p.endPort };
      return { kind: 'named', protocol, name: p.port };
    }
    return { kind: 'number', protocol, port: p.port, endPort: p.port === undefined ? undefined : p.endPort };
  });
}

/** policyTypes defaulting: Ingress always; Egress only when the policy has egress rules. */
export function policyTypesOf(np: NetworkPolicy): { ingress: boolean; egress: boolean } {
  const t = np.spec.policyTypes;
  if (t && t.length > 0) return { ingress: t.includes('Ingress'), egress: t.includes('Egress') };
  return { ingress: true, egress: (np.spec.egress ?? []).length > 0 };
}

export function normalizeNetworkPolicy(np: NetworkPolicy): NormalizedPolicy {
  const ns = np.metadata.namespace ?? 'default';
  const types = policyTypesOf(np);
  const out: NormalizedPolicy = {
    kind: 'NetworkPolicy',
    namespace: ns,
    name: np.metadata.name,
    priority: 0,
    subject: [{ namespace: ns, podSelector: np.spec.podSelector ?? {} }],
  };
  const mk = (
    direction: Direction,
    rule: number,
    peers: NetworkPolicyPeer[] | undefined,
    ports: NetworkPolicyPort[] | undefined,
  ): PolicyRule => {
    const ref: RuleRef = { kind: 'NetworkPolicy', namespace: ns, name: np.metadata.name, direction, rule };
    return {
      ref,
      action: 'Allow',
      peers: !peers || peers.length === 0 ? 'all' : peers.map((p) => npPeer(p, ns)).filter((p): p is Peer => !!p),
      ports: npPorts(ports),
      counter: counterName(ref),
    };
  };
  if (types.ingress) out.ingress = (np.spec.ingress ?? []).map((r, i) => mk('ingress', i, r.from, r.ports));
  if (types.egress) out.egress = (np.spec.egress ?? []).map((r, i) => mk('egress', i, r.to, r.ports));
  return out;
}

function anpSubject(s: AnpSubject): PodSelection[] {
  const out: PodSelection[] = [];
  if (s.namespaces) out.push({ namespaceSelector: s.namespaces, podSelector: {} });
  if (s.pods) out.push({ namespaceSelector: s.pods.namespaceSelector ?? {}, podSelector: s.pods.podSelector ?? {} });
  return out;
}

function anpPeers(peers: AnpPeer[] | undefined, direction: Direction): Peer[] {
  const out: Peer[] = [];
  for (const p of peers ?? []) {
    if (p.namespaces) out.push(podsPeer({ namespaceSelector: p.namespaces, podSelector: {} }));
    if (p.pods) out.push(podsPeer({ namespaceSelector: p.pods.namespaceSelector ?? {}, podSelector: p.pods.podSelector ?? {} }));
    if (direction === 'egress') for (const n of p.networks ?? []) out.push(cidrPeer(n, []));
    if (direction === 'egress' && p.nodes)
      out.push({ kind: 'nodes', sel: p.nodes, id: shortHash(`nodes:${selectionKey({ podSelector: p.nodes })}`) });
  }
  return out;
}

function anpPorts(ports: AnpPort[] | undefined): PortSpec[] | 'all' {
  if (!ports || ports.length === 0) return 'all';
  const out: PortSpec[] = [];
  for (const p of ports) {
    if ('portNumber' in p)
      out.push({ kind: 'number', protocol: (p.portNumber.protocol ?? 'TCP').toUpperCase() as Protocol, port: p.portNumber.port });
    else if ('namedPort' in p) out.push({ kind: 'named', name: p.namedPort });
    else if ('portRange' in p)
      out.push({
        kind: 'number',
        protocol: (p.portRange.protocol ?? 'TCP').toUpperCase() as Protocol,
        port: p.portRange.start,
        endPort: p.portRange.end,
      });
  }
  return out;
}

function normalizeAdmin(
  kind: 'AdminNetworkPolicy' | 'BaselineAdminNetworkPolicy',
  name: string,
  priority: number,
  spec: AdminNetworkPolicy['spec'] | BaselineAdminNetworkPolicy['spec'],
): NormalizedPolicy {
  const out: NormalizedPolicy = { kind, name, priority, subject: anpSubject(spec.subject ?? {}) };
  for (const direction of ['ingress', 'egress'] as const) {
    const rules = spec[direction];
    if (!rules || rules.length === 0) continue;
    const actions: readonly string[] = kind === 'AdminNetworkPolicy' ? ['Allow', 'Deny', 'Pass'] : ['Allow', 'Deny'];
    // indices stay those of the spec; a rule with an action we do not know (validation rejects
    // it before it is stored) acts on nothing rather than allowing
    out[direction] = rules.flatMap((r, i): PolicyRule[] => {
      if (!actions.includes(r.action)) return [];
      const ref: RuleRef = { kind, name, direction, rule: i, ...(r.name ? { ruleName: r.name } : {}) };
      return [
        {
          ref,
          action: r.action,
          peers: anpPeers(direction === 'ingress' ? r.from : r.to, direction),
          ports: anpPorts(r.ports),
          counter: counterName(ref),
        },
      ];
    });
  }
  return out;
}

export const normalizeAnp = (a: AdminNetworkPolicy): NormalizedPolicy =>
  normalizeAdmin('AdminNetworkPolicy', a.metadata.name, a.spec.priority ?? 0, a.spec);
export const normalizeBanp = (b: BaselineAdminNetworkPolicy): NormalizedPolicy =>
  normalizeAdmin('BaselineAdminNetworkPolicy', b.metadata.name, 0, b.spec);

// ---------------------------------------------------------------- ports

/** Numeric [protocol, first, last] a port spec stands for on destination `dst` (named ports resolve there). */
export function resolvePort(spec: PortSpec, dst: Pod | undefined): { protocol: Protocol; first: number; last: number }[] {
  if (spec.kind === 'number') {
    if (spec.port === undefined) return [{ protocol: spec.protocol, first: 0, last: 65535 }];
    return [
      {
        protocol: spec.protocol,
        first: spec.port,
        last: spec.endPort !== undefined && spec.endPort >= spec.port ? spec.endPort : spec.port,
      },
    ];
  }
  if (!dst) return [];
  const out: { protocol: Protocol; first: number; last: number }[] = [];
  for (const cp of dst.ep.spec.ports ?? []) {
    const proto = cp.protocol ?? 'TCP';
    if (cp.name === spec.name && (spec.protocol === undefined || spec.protocol === proto))
      out.push({ protocol: proto, first: cp.containerPort, last: cp.containerPort });
  }
  return out;
}

export function portsMatch(ports: PortSpec[] | 'all', protocol: FlowProtocol, port: number | undefined, dst: Pod | undefined): boolean {
  if (ports === 'all') return true;
  if (protocol === 'ICMP' || port === undefined) return false;
  return ports.some((s) => resolvePort(s, dst).some((r) => r.protocol === protocol && port >= r.first && port <= r.last));
}

/** `idx`: for `nodes` peers (the nodes' addresses); without it they match nothing. */
export function peerMatches(peers: Peer[] | 'all', other: Pod | undefined, otherIP: IP | undefined, idx?: PolicyIndex): boolean {
  if (peers === 'all') return true;
  return peers.some((p) => {
    if (p.kind === 'pods') return !!other && selectionMatches(p.sel, other);
    if (p.kind === 'cidr') return !!otherIP && inRanges(p.ranges, otherIP);
    return !!otherIP && !!idx && idx.nodeAddresses(p.sel, p.id).some((a) => a.family === otherIP.family && a.value === otherIP.value);
  });
}
