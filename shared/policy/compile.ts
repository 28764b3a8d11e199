/**
 * The policy compiler: objects + node name -> the desired nftables state of that node's policy
 * table, as plain data (`Ruleset`). Pure; `nft.ts` renders it. Layout (docs/policy.md):
 *
 *   base chains   forward (pod <-> pod, same bridge included through br_netfilter; pods <-> world),
 *                 output (host -> local pod, only when allowFromNode is false),
 *                 input (local pod -> host, only when allowToNode is false):
 *                   ct state established,related accept; IPv6 neighbour discovery accept;
 *                   ct state invalid (local pods) drop;
 *                   a pod reaching itself accept;
 *                   ip saddr vmap @egress4 / ip6 saddr vmap @egress6   (local pods' egress)
 *                   ip daddr vmap @ingress4 / ip6 daddr vmap @ingress6 (local pods' ingress)
 *   group chains  one per distinct compiled rule list ("isolation group"): pods whose policy is
 *                 the same share it. ANP rules by priority (Allow: return, Deny: drop, Pass: goto
 *                 the NP part), NetworkPolicy allow rules (return), the isolated default deny or
 *                 BANP rules. "return" hands the packet back to the base chain, which then checks
 *                 the other side (egress first, then ingress) and accepts.
 *   named sets    peer pod addresses per distinct selection (ps4_/ps6_), ipBlock/networks ranges
 *                 with the excepts subtracted (cb4_/cb6_, interval), egress named-port targets
 *                 (pn4_/pn6_: address . protocol . port); endpoint churn changes only elements.
 *   counters      one named counter per policy rule (`counterName`), shared by every group chain.
 */
import type { Protocol } from '../objects/types.ts';
import type { Family } from '../ipnet.ts';
import {
  DEFAULT_DENY_COUNTER,
  NormalizeCache,
  PolicyIndex,
  cmp,
  inRanges,
  rangeElement,
  resolvePort,
  shortHash,
  type CounterMeaning,
  type Direction,
  type NormalizedPolicy,
  type Peer,
  type Pod,
  type PolicyObjects,
  type PolicyRule,
  type PortSpec,
} from './model.ts';

export interface CompileOptions {
  /** the node may open connections to its local pods (kubelet probes); default true */
  allowFromNode?: boolean;
  /** local pods may open connections to their node; default true (Kubernetes: always allowed) */
  allowToNode?: boolean;
}

export interface NftSet {
  name: string;
  /** nft type expression: "ipv4_addr", "ipv4_addr . inet_proto . inet_service", ... */
  type: string;
  flags?: string[];
  elements: string[];
}

export interface NftMap {
  name: string;
  type: string;
  /** [key, verdict] sorted by key */
  elements: [string, string][];
}

export interface NftChain {
  name: string;
  /** base chains only */
  hook?: 'forward' | 'input' | 'output';
  rules: string[];
}

export interface Ruleset {
  /** names of the named counters (one per policy rule, plus the default denies) */
  counters: string[];
  /** counter name -> the rule it counts (for metrics and diagnostics) */
  counterInfo: Record<string, CounterMeaning>;
  sets: NftSet[];
  maps: NftMap[];
  chains: NftChain[];
  /** local pods with policy per direction, and group chains, for logs and benchmarks */
  stats: { localPods: number; ingressPods: number; egressPods: number; groups: number; sets: number; elements: number; rules: number };
}

const FAMILIES: Family[] = [4, 6];
const ipKw = (f: Family): string => (f === 4 ? 'ip' : 'ip6');
const addrType = (f: Family): string => (f === 4 ? 'ipv4_addr' : 'ipv6_addr');
const protoKw = (p: Protocol): string => p.toLowerCase();

interface PortRange {
  protocol: Protocol;
  first: number;
  last: number;
}

/** `meta l4proto ... th dport ...` for numeric ranges ('' when every port of every protocol). */
export function portMatch(ranges: PortRange[]): string {
  const byProto = new Map<Protocol, PortRange[]>();
  for (const r of ranges) byProto.set(r.protocol, [...(byProto.get(r.protocol) ?? []), r]);
  const fmt = (r: PortRange): string => (r.first === r.last ? String(r.first) : `${r.first}-${r.last}`);
  const full = (rs: PortRange[]): boolean => rs.some((r) => r.first === 0 && r.last === 65535);
  const protos = [...byProto.keys()].sort();
  if (protos.length === 1) {
    const rs = byProto.get(protos[0]) as PortRange[];
    if (full(rs)) return `meta l4proto ${protoKw(protos[0])}`;
    const items = uniq(rs.map(fmt));
    return `meta l4proto ${protoKw(protos[0])} th dport ${items.length === 1 ? items[0] : `{ ${items.join(', ')} }`}`;
  }
  if (protos.every((p) => full(byProto.get(p) as PortRange[]))) return `meta l4proto { ${protos.map(protoKw).join(', ')} }`;
  const items: string[] = [];
  for (const p of protos) {
    const rs = byProto.get(p) as PortRange[];
    if (full(rs)) items.push(`${protoKw(p)} . 0-65535`);
    else for (const r of rs) items.push(`${protoKw(p)} . ${fmt(r)}`);
  }
  return `meta l4proto . th dport { ${uniq(items).join(', ')} }`;
}

function uniq<T>(a: T[]): T[] {
  return [...new Set(a)];
}

class Builder {
  readonly sets = new Map<string, NftSet>();
  readonly chains = new Map<string, NftChain>();

  readonly idx: PolicyIndex;
  constructor(idx: PolicyIndex) {
    this.idx = idx;
  }

  selected(peer: Extract<Peer, { kind: 'pods' }>): Pod[] {
    return this.idx.selectPeer(peer);
  }

  selectedSet(peer: Extract<Peer, { kind: 'pods' }>): Set<Pod> {
    return this.idx.selectPeerSet(peer);
  }

  /** Pods a peer list stands for, for named-port targets ('all': every pod). */
  podsOf(peers: Peer[] | 'all'): Pod[] {
    if (peers === 'all') return this.idx.pods;
    const out = new Set<Pod>();
    for (const p of peers) {
      if (p.kind === 'pods') for (const pod of this.selected(p)) out.add(pod);
      else if (p.kind === 'nodes')
        continue; // node addresses are no pods: named ports never resolve on them
      else for (const pod of this.idx.pods) if (pod.ips.some((ip) => inRanges(p.ranges, ip))) out.add(pod);
    }
    return [...out];
  }

  addSet(s: NftSet): string {
    if (!this.sets.has(s.name)) this.sets.set(s.name, s);
    this.memoSets.set(s.name, s);
    return s.name;
  }

  /** sets built for these pods by earlier compiles (their content depends on the pods and the name's key only) */
  private get memoSets(): Map<string, NftSet> {
    return this.idx.memo.sets as Map<string, NftSet>;
  }

  /** Take `name` from this or an earlier compile of the same pods; false when it must be built. */
  private haveSet(name: string): boolean {
    if (this.sets.has(name)) return true;
    const m = this.memoSets.get(name);
    if (!m) return false;
    this.sets.set(name, m);
    return true;
  }

  /** Address match of one peer for family f, or null when the peer holds nothing of that family (never matches). */
  peerMatch(peer: Peer, dir: Direction, f: Family): string | null {
    const field = `${ipKw(f)} ${dir === 'ingress' ? 'saddr' : 'daddr'}`;
    if (peer.kind === 'pods') {
      const name = `ps${f}_${peer.id}`;
      if (!this.haveSet(name)) {
        const elements = uniq(this.selected(peer).flatMap((p) => p.ips.filter((ip) => ip.family === f).map((ip) => ip.text)));
        this.addSet({ name, type: addrType(f), elements });
      }
      return `${field} @${name}`;
    }
    if (peer.kind === 'nodes') {
      // always the set (empty when no node matches yet): a node joining is an element update
      const name = `nd${f}_${peer.id}`;
      if (!this.haveSet(name)) {
        const elements = this.idx
          .nodeAddresses(peer.sel, peer.id)
          .filter((ip) => ip.family === f)
          .map((ip) => ip.text);
        this.addSet({ name, type: addrType(f), elements });
      }
      return `${field} @${name}`;
    }
    const ranges = peer.ranges.filter((r) => r.family === f);
    if (ranges.length === 0) return null;
    const name = `cb${f}_${peer.id}`;
    if (this.haveSet(name)) return `${field} @${name}`;
    this.addSet({ name, type: addrType(f), flags: ['interval'], elements: ranges.map(rangeElement) });
    return `${field} @${name}`;
  }

  /** Named-port targets of an egress rule: a set of address . protocol . port, per family. */
  namedTargets(rule: PolicyRule, named: PortSpec[], f: Family): string {
    const name = `pn${f}_${shortHash(JSON.stringify([rule.peers === 'all' ? 'all' : rule.peers.map((p) => p.id), named]))}`;
    if (!this.haveSet(name)) {
      const elements: string[] = [];
      const peers = rule.peers;
      for (const pod of this.podsOf(peers)) {
        for (const ip of pod.ips) {
          if (ip.family !== f) continue;
          // a pod reached through a cidr peer counts only with its addresses inside the ranges
          if (
            peers !== 'all' &&
            !peers.some((p) => (p.kind === 'pods' ? this.selectedSet(p).has(pod) : p.kind === 'cidr' && inRanges(p.ranges, ip)))
          )
            continue;
          for (const spec of named)
            for (const r of resolvePort(spec, pod)) elements.push(`${ip.text} . ${protoKw(r.protocol)} . ${r.first}`);
        }
      }
      this.addSet({ name, type: `${addrType(f)} . inet_proto . inet_service`, elements: uniq(elements) });
    }
    return `${ipKw(f)} daddr . meta l4proto . th dport @${name}`;
  }

  /** nft rules of one policy rule for subject `pod` in `dir`, ending in `verdict`. */
  ruleLines(rule: PolicyRule, dir: Direction, pod: Pod, verdict: string): string[] {
    const tail = `counter name ${rule.counter} ${verdict}`;
    const numeric: PortRange[] = [];
    const named: PortSpec[] = [];
    const portsAll = rule.ports === 'all';
    if (rule.ports !== 'all') {
      // ingress: names resolve on the subject pod itself; egress: on each destination (a set)
      for (const s of rule.ports) {
        if (s.kind === 'number' || dir === 'ingress') numeric.push(...resolvePort(s, pod));
        else named.push(s);
      }
    }
    const out: string[] = [];
    const join = (...parts: string[]): string => parts.filter((p) => p !== '').join(' ');
    if (portsAll || numeric.length > 0) {
      const pm = portsAll ? '' : portMatch(numeric);
      if (rule.peers === 'all') out.push(join(pm, tail));
      else
        for (const peer of rule.peers)
          for (const f of FAMILIES) {
            const m = this.peerMatch(peer, dir, f);
            if (m !== null) out.push(join(m, pm, tail));
          }
    }
    if (named.length > 0) for (const f of FAMILIES) out.push(join(this.namedTargets(rule, named, f), tail));
    return out;
  }

  private bySignature = new Map<string, BuiltGroup>();
  private used = new Set<BuiltGroup>();

  /** Put a group built by an earlier compile (of the same pods) into this one. */
  useGroup(g: BuiltGroup): void {
    if (this.used.has(g)) return;
    this.used.add(g);
    for (const c of g.chains) if (!this.chains.has(c.name)) this.chains.set(c.name, c);
    for (const n of g.sets) this.haveSet(n);
  }

  /** The group chain of `pod` in `dir`, or undefined when nothing applies to it. */
  podChain(pod: Pod, dir: Direction): BuiltGroup | undefined {
    const { anps, nps, banp } = this.idx.policiesFor(pod, dir);
    if (anps.length === 0 && nps.length === 0 && !banp) return undefined;
    // pods acted on by the same policies (and, for ingress named ports, serving the same
    // ports) get the same chain: compile it once (per compile, and across compiles of the
    // same pods while those policies are unchanged: policyId is stable per normalized policy)
    const all = [...anps, ...nps, ...(banp ? [banp] : [])];
    const named =
      dir === 'ingress' && all.some((p) => (p[dir] ?? []).some((r) => r.ports !== 'all' && r.ports.some((s) => s.kind === 'named')));
    const signature = `${dir}|${all.map(policyId).join(',')}|${named ? JSON.stringify(pod.ep.spec.ports ?? []) : ''}`;
    const known = this.bySignature.get(signature);
    if (known) return known;
    const memo = this.idx.memo.chains as Map<string, BuiltGroup>;
    let built = memo.get(signature);
    if (built) {
      this.useGroup(built);
    } else {
      built = this.buildChain(pod, dir, anps, nps, banp);
      this.used.add(built);
      memo.set(signature, built);
    }
    this.bySignature.set(signature, built);
    return built;
  }

  private buildChain(
    pod: Pod,
    dir: Direction,
    anps: NormalizedPolicy[],
    nps: NormalizedPolicy[],
    banp: NormalizedPolicy | undefined,
  ): BuiltGroup {
    const hasPass = anps.some((a) => (a[dir] ?? []).some((r) => r.action === 'Pass'));
    const verdictOf = (action: string): string => (action === 'Deny' ? 'drop' : action === 'Pass' ? 'goto @NP@' : 'return');
    const head: string[] = [];
    for (const a of anps) for (const r of a[dir] ?? []) head.push(...this.ruleLines(r, dir, pod, verdictOf(r.action)));
    const tail: string[] = [];
    if (nps.length > 0) {
      for (const n of nps) for (const r of n[dir] ?? []) tail.push(...this.ruleLines(r, dir, pod, 'return'));
      tail.push(`counter name ${DEFAULT_DENY_COUNTER[dir]} drop`);
    } else if (banp) {
      for (const r of banp[dir] ?? []) if (r.action !== 'Pass') tail.push(...this.ruleLines(r, dir, pod, verdictOf(r.action)));
    }
    const prefix = dir === 'ingress' ? 'in' : 'eg';
    const name = `${prefix}_${shortHash(JSON.stringify([head, tail, hasPass]))}`;
    let chains: NftChain[];
    if (hasPass) {
      const np = `${name}_np`;
      chains = [
        { name, rules: [...head.map((l) => l.replace('@NP@', np)), `goto ${np}`] },
        { name: np, rules: tail },
      ];
    } else {
      chains = [{ name, rules: [...head, ...tail] }];
    }
    chains = chains.map((c) => this.chains.get(c.name) ?? c);
    for (const c of chains) if (!this.chains.has(c.name)) this.chains.set(c.name, c);
    const sets = new Set<string>();
    for (const c of chains) for (const r of c.rules) for (const m of r.matchAll(/@([A-Za-z0-9_]+)/g)) sets.add(m[1]!);
    return { name, jump: `jump ${name}`, chains, sets: [...sets] };
  }
}

/** What compileNode decided for one node's pods, kept in the pods' memo for the next compile. */
interface LocalMemo {
  policies: Set<NormalizedPolicy>;
  local: Pod[];
  groups: Record<Direction, Map<Pod, BuiltGroup>>;
  localSets: NftSet[];
  /** no address is on two local endpoints (the verdict maps need no de-duplication) */
  uniqueIPs: boolean;
  maps: NftMap[];
}

/** A group chain (and its Pass part) as built, with the sets its rules name. */
interface BuiltGroup {
  name: string;
  /** the verdict map's value for its pods */
  jump: string;
  chains: NftChain[];
  sets: string[];
}

const policyIds = new WeakMap<NormalizedPolicy, number>();
let nextPolicyId = 0;
/** A number per normalized policy object, stable while the object lives (NormalizeCache keeps unchanged ones). */
function policyId(p: NormalizedPolicy): number {
  let n = policyIds.get(p);
  if (n === undefined) policyIds.set(p, (n = nextPolicyId++));
  return n;
}

/** The desired policy table of `node`: every local endpoint's ingress and egress. */
export function compileNode(objects: PolicyObjects | PolicyIndex, node: string, opts: CompileOptions = {}): Ruleset {
  const idx = objects instanceof PolicyIndex ? objects : new PolicyIndex(objects);
  const b = new Builder(idx);
  // what an earlier compile of the same pods on this node decided per pod: only pods some
  // changed policy selects (before or after the change) are looked at again
  const memoKey = `node:${node}`;
  const before = idx.memo.local.get(memoKey) as LocalMemo | undefined;
  const current = new Set<NormalizedPolicy>([...idx.anps, ...idx.nps, ...(idx.banp ? [idx.banp] : [])]);
  let dirty: Set<Pod> | undefined;
  if (before) {
    dirty = new Set();
    const changed = [...[...current].filter((p) => !before.policies.has(p)), ...[...before.policies].filter((p) => !current.has(p))];
    for (const p of changed) for (const pod of idx.subjectPods(p)) dirty.add(pod);
  }
  const local = before?.local ?? idx.pods.filter((p) => p.node === node);
  const groups: LocalMemo['groups'] = { ingress: new Map(), egress: new Map() };
  const vmaps: Record<string, [string, string][]> = { ingress4: [], ingress6: [], egress4: [], egress6: [] };
  let ingressPods = 0;
  let egressPods = 0;
  for (const pod of local) {
    for (const dir of ['ingress', 'egress'] as const) {
      let g: BuiltGroup | undefined;
      if (before && !dirty?.has(pod)) {
        g = before.groups[dir].get(pod);
        if (g) b.useGroup(g);
      } else {
        g = b.podChain(pod, dir);
      }
      if (!g) continue;
      groups[dir].set(pod, g);
      if (dir === 'ingress') ingressPods++;
      else egressPods++;
      for (const ip of pod.ips) vmaps[`${dir}${ip.family}`].push([ip.text, g.jump]);
    }
  }
  let localSets = before?.localSets;
  let uniqueIPs = before?.uniqueIPs ?? false;
  if (!localSets) {
    const localIPs: Record<Family, string[]> = { 4: [], 6: [] };
    for (const pod of local) for (const ip of pod.ips) localIPs[ip.family].push(ip.text);
    uniqueIPs = FAMILIES.every((f) => new Set(localIPs[f]).size === localIPs[f].length);
    localSets = [];
    for (const f of FAMILIES) {
      const ips = uniq(localIPs[f]);
      localSets.push({ name: `local${f}`, type: addrType(f), elements: ips });
      localSets.push({ name: `self${f}`, type: `${addrType(f)} . ${addrType(f)}`, elements: ips.map((ip) => `${ip} . ${ip}`) });
    }
  }
  const maps: NftMap[] =
    before && dirty?.size === 0
      ? before.maps
      : Object.entries(vmaps).map(([k, els]) => ({
          name: k,
          type: `${addrType(k.endsWith('4') ? 4 : 6)} : verdict`,
          // two endpoints with one address (a stale registration): the first wins
          elements: uniqueIPs ? els : uniqByKey(els),
        }));
  idx.memo.local.set(memoKey, { policies: current, local, groups, localSets, uniqueIPs, maps } satisfies LocalMemo);

  const counterInfo: Record<string, CounterMeaning> = {
    [DEFAULT_DENY_COUNTER.ingress]: { default: 'isolated', direction: 'ingress' },
    [DEFAULT_DENY_COUNTER.egress]: { default: 'isolated', direction: 'egress' },
  };
  for (const p of [...idx.anps, ...idx.nps, ...(idx.banp ? [idx.banp] : [])])
    for (const r of [...(p.ingress ?? []), ...(p.egress ?? [])]) counterInfo[r.counter] = r.ref;

  // elements come in index order (pods sorted by namespace/name/...): deterministic unsorted
  const sets: NftSet[] = [...localSets];
  sets.push(...[...b.sets.values()].sort((x, y) => cmp(x.name, y.name)));

  // replies pass; IPv6 neighbour discovery is not policy's business (conntrack does not track
  // it, so it would otherwise look invalid, and unicast advertisements hit the ingress maps)
  const guard = (): string[] => [
    'ct state established,related accept',
    'icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert, nd-redirect } accept',
  ];
  const forward: string[] = [
    ...guard(),
    ...FAMILIES.flatMap((f) => [`ct state invalid ${ipKw(f)} saddr @local${f} drop`, `ct state invalid ${ipKw(f)} daddr @local${f} drop`]),
    ...FAMILIES.map((f) => `${ipKw(f)} saddr . ${ipKw(f)} daddr @self${f} accept`),
    ...FAMILIES.map((f) => `${ipKw(f)} saddr vmap @egress${f}`),
    ...FAMILIES.map((f) => `${ipKw(f)} daddr vmap @ingress${f}`),
  ];
  const chains: NftChain[] = [{ name: 'forward', hook: 'forward', rules: forward }];
  if (opts.allowFromNode === false)
    chains.push({ name: 'output', hook: 'output', rules: [...guard(), ...FAMILIES.map((f) => `${ipKw(f)} daddr vmap @ingress${f}`)] });
  if (opts.allowToNode === false)
    chains.push({ name: 'input', hook: 'input', rules: [...guard(), ...FAMILIES.map((f) => `${ipKw(f)} saddr vmap @egress${f}`)] });
  chains.push(...[...b.chains.values()].sort((x, y) => cmp(x.name, y.name)));

  // what earlier compiles of these pods built and this one did not use stays for a while
  // (a policy deleted and applied again); bounded
  const memo = idx.memo;
  if (memo.chains.size > 2 * b.chains.size + 512 || memo.sets.size > 2 * b.sets.size + 1024) {
    memo.chains.clear();
    memo.sets.clear();
    memo.local.clear();
    memo.selections.clear();
    memo.selectionSets.clear();
  }

  const counters = Object.keys(counterInfo).sort();
  return {
    counters,
    counterInfo,
    sets,
    maps,
    chains,
    stats: {
      localPods: local.length,
      ingressPods,
      egressPods,
      groups: b.chains.size,
      sets: sets.length + maps.length,
      elements: sets.reduce((n, s) => n + s.elements.length, 0) + maps.reduce((n, m) => n + m.elements.length, 0),
      rules: chains.reduce((n, c) => n + c.rules.length, 0),
    },
  };
}

/**
 * compileNode that remembers: normalized policies of unchanged objects, and, while the
 * endpoints and namespaces are unchanged, the selections, sets and group chains built from them.
 * A policy change then builds only the groups whose policy lists changed. Same output as
 * compileNode (test/policy-unit-incremental.test.ts).
 */
export class PolicyCompiler {
  private prev: PolicyIndex | undefined;
  private readonly normalized = new NormalizeCache();

  compile(objects: PolicyObjects, node: string, opts: CompileOptions = {}): Ruleset {
    const idx = new PolicyIndex(objects, { prev: this.prev, normalized: this.normalized });
    this.prev = idx;
    return compileNode(idx, node, opts);
  }

  /** Whether the last compile reused the previous pods (for logs). */
  get lastIndex(): PolicyIndex | undefined {
    return this.prev;
  }
}

function uniqByKey(els: [string, string][]): [string, string][] {
  const m = new Map<string, string>();
  for (const [k, v] of els) if (!m.has(k)) m.set(k, v);
  return [...m.entries()];
}
