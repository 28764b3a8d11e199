/**
 * nftables rule generation and table parsing for portmap. Pure functions.
 *
 * One `inet` table (default `cni_portmap`), which may be shared with other owners (the bridge
 * plugin's masquerade keeps its rules in a chain `postrouting` of the table named by its own
 * `nftTable`). Portmap therefore only ever flushes chains whose names are its own:
 *
 *   chain portmap-prerouting  nat hook prerouting priority dstnat (-100): fib daddr type local jump hostports
 *   chain portmap-output      nat hook output     priority -100:          fib daddr type local jump hostports
 *   chain hostports   ip daddr . meta l4proto . th dport vmap @hostip4      (mappings with hostIP)
 *                     ip6 daddr . meta l4proto . th dport vmap @hostip6
 *                     meta nfproto ipv4 meta l4proto . th dport vmap @hostport4  (any host address)
 *                     meta nfproto ipv6 meta l4proto . th dport vmap @hostport6
 *   chain portmap-postrouting nat hook postrouting priority srcnat (100): meta mark & MARK == MARK masquerade
 *   chain pm-<tag>    one per attachment (containerID + ifname): the masquerade mark for
 *                     loopback and hairpin sources, then one dnat rule per mapping; `<tag>` is
 *                     the owner tag as a name (`<net8>-<att16>`, shared/firewall/owner.ts
 *                     `ownerName`) and every rule's comment starts with it (`cni:<net8>:<att16>`).
 *                     Earlier versions' plain comments (`<containerID> <ifname>`) do not matter:
 *                     DEL and GC find an attachment by its chain.
 *
 * The verdict-map elements `proto . port : goto pm-<tag>` are created with `create element`,
 * so a host port already published by another attachment fails the whole transaction
 * (EEXIST) in the kernel, atomically, without a lock. Every verb is one `nft -f` transaction.
 *
 * Earlier versions named the base chains `prerouting`, `output` and `postrouting` and flushed
 * them on every ADD, which erased another owner's rules in a shared table. `legacyRules`
 * finds what those versions wrote (by expression and comment) so it can be deleted by handle,
 * leaving everything else in those chains alone.
 */
import { commentWithTag } from '../../shared/firewall/owner.ts';
import { nft, nftExpr, nftString, NftText } from '../../shared/kernel/batch.ts';
import type { Family } from '../../shared/ipnet.ts';
import type { FamilyPlan, Mapping, Settings } from './config.ts';

export const CHAIN_PREFIX = 'pm-';
/** Base chains: names no other owner uses (never `prerouting`/`output`/`postrouting`). */
export const BASE_CHAINS = { prerouting: 'portmap-prerouting', output: 'portmap-output', postrouting: 'portmap-postrouting' } as const;
/** The chain names of earlier versions, which may be shared with other owners. */
export const LEGACY_CHAINS = ['prerouting', 'output', 'postrouting'] as const;
export const SNAT_COMMENT = 'cni-ts portmap: loopback and hairpin';
export const chainOf = (tag: string): string => `${CHAIN_PREFIX}${tag}`;

const MAPS = ['hostip4', 'hostip6', 'hostport4', 'hostport6'] as const;
export type MapName = (typeof MAPS)[number];

export const mapFor = (family: Family, m: Mapping): MapName => (m.hostIP ? `hostip${family}` : `hostport${family}`);

const ipKw = (f: Family): string => (f === 4 ? 'ip' : 'ip6');
const nfproto = (f: Family): string => (f === 4 ? 'ipv4' : 'ipv6');
const bracket = (f: Family, ip: string): NftText => (f === 4 ? nft`${ip}` : nft`[${ip}]`);
const hex = (n: number): string => `0x${n.toString(16)}`;
/** Script lines: every value in them went through shared/kernel/batch.ts. */
const text = (lines: NftText[]): string[] => lines.map((l) => l.text);

/** The element key of a mapping in its map, in nft syntax. */
export function elementKey(m: Mapping): string {
  return (m.hostIP ? nft`${m.hostIP} . ${m.protocol} . ${m.hostPort}` : nft`${m.protocol} . ${m.hostPort}`).text;
}

/** Table, maps, base chains and dispatch rules: idempotent, re-asserted by every ADD. */
export function baseScript(s: Settings): string[] {
  const t = nft`inet ${s.nftTable}`;
  const lines = [
    nft`add table ${t} { comment "cni-ts portmap: published container ports"; }`,
    nft`add map ${t} hostip4 { type ipv4_addr . inet_proto . inet_service : verdict; }`,
    nft`add map ${t} hostip6 { type ipv6_addr . inet_proto . inet_service : verdict; }`,
    nft`add map ${t} hostport4 { type inet_proto . inet_service : verdict; }`,
    nft`add map ${t} hostport6 { type inet_proto . inet_service : verdict; }`,
    nft`add chain ${t} hostports`,
    nft`add chain ${t} ${BASE_CHAINS.prerouting} { type nat hook prerouting priority dstnat; policy accept; }`,
    // "dstnat" is not accepted as a name on the output hook by every nft version: -100 is it.
    nft`add chain ${t} ${BASE_CHAINS.output} { type nat hook output priority -100; policy accept; }`,
    nft`flush chain ${t} hostports`,
    nft`add rule ${t} hostports ip daddr . meta l4proto . th dport vmap @hostip4`,
    nft`add rule ${t} hostports ip6 daddr . meta l4proto . th dport vmap @hostip6`,
    nft`add rule ${t} hostports meta nfproto ipv4 meta l4proto . th dport vmap @hostport4`,
    nft`add rule ${t} hostports meta nfproto ipv6 meta l4proto . th dport vmap @hostport6`,
    nft`flush chain ${t} ${BASE_CHAINS.prerouting}`,
    nft`add rule ${t} ${BASE_CHAINS.prerouting} fib daddr type local jump hostports`,
    nft`flush chain ${t} ${BASE_CHAINS.output}`,
    nft`add rule ${t} ${BASE_CHAINS.output} fib daddr type local jump hostports`,
  ];
  if (s.snat) {
    lines.push(
      nft`add chain ${t} ${BASE_CHAINS.postrouting} { type nat hook postrouting priority srcnat; policy accept; }`,
      nft`flush chain ${t} ${BASE_CHAINS.postrouting}`,
      nft`add rule ${t} ${BASE_CHAINS.postrouting} meta mark & ${hex(s.mark)} == ${hex(s.mark)} masquerade comment ${nftString(SNAT_COMMENT)}`,
    );
  }
  return text(lines);
}

/** The attachment's chain with its rules (flushed first, so a repeated ADD converges). */
export function attachmentRules(s: Settings, tag: string, comment: string, plans: FamilyPlan[]): string[] {
  const t = nft`inet ${s.nftTable}`;
  const chain = chainOf(tag);
  // every rule carries the owner tag (shared/firewall/owner.ts), like every firewall owner's
  const note = nftString(commentWithTag(tag, comment));
  const lines = [nft`add chain ${t} ${chain}`, nft`flush chain ${t} ${chain}`];
  const none = new NftText('');
  for (const p of plans) {
    const f = p.container.family;
    const conds = p.conditions.length ? new NftText(`${p.conditions.map((c) => nftExpr(c).text).join(' ')} `) : none;
    const head = nft`add rule ${t} ${chain} meta nfproto ${nfproto(f)} ${conds}`;
    if (s.snat) {
      // Replies must come back through this host: masquerade flows from loopback (v4 only:
      // ::1 cannot be routed) and from the container's own subnet (hairpin), or all of them.
      const sources = s.masqAll
        ? none
        : f === 4
          ? nft`ip saddr { 127.0.0.0/8, ${p.container.subnet} } `
          : nft`ip6 saddr ${p.container.subnet} `;
      lines.push(nft`${head}${sources}meta mark set meta mark | ${hex(s.mark)} comment ${note}`);
    }
    for (const m of p.mappings) {
      const daddr = m.hostIP ? nft`${ipKw(f)} daddr ${m.hostIP} ` : none;
      lines.push(
        nft`${head}${daddr}meta l4proto ${m.protocol} th dport ${m.hostPort} dnat ${ipKw(f)} to ${bracket(f, p.container.ip)}:${m.containerPort} comment ${note}`,
      );
    }
  }
  return text(lines);
}

/** The verdict-map elements that send the mappings' packets to the attachment's chain. */
export function elementLines(s: Settings, tag: string, plans: FamilyPlan[], verb: 'create' | 'add'): string[] {
  const t = nft`inet ${s.nftTable}`;
  const byMap = new Map<MapName, NftText[]>();
  for (const p of plans) {
    for (const m of p.mappings) {
      const name = mapFor(p.container.family, m);
      byMap.set(name, [...(byMap.get(name) ?? []), nft`${new NftText(elementKey(m))} : goto ${chainOf(tag)}`]);
    }
  }
  return text([...byMap].map(([name, els]) => nft`${verb} element ${t} ${name} { ${els} }`));
}

export function addScript(s: Settings, tag: string, comment: string, plans: FamilyPlan[], remove: OwnedState | undefined): string {
  const lines = [...baseScript(s)];
  if (remove) lines.push(...removeLines(s.nftTable, remove, false));
  lines.push(...attachmentRules(s, tag, comment, plans), ...elementLines(s, tag, plans, 'create'));
  return lines.join('\n') + '\n';
}

// ---- reading the table (nft -j list table inet T) ----

export interface Element {
  map: MapName;
  /** key in nft syntax, e.g. "tcp . 8080" or "192.0.2.1 . udp . 53" */
  key: string;
  target: string;
}

export interface DnatRule {
  chain: string;
  handle: number;
  comment?: string;
  /** "tcp/8080>10.88.0.5:80" (with "@192.0.2.1" after the port when the rule has a daddr) */
  signature: string;
}

export interface TableState {
  elements: Element[];
  chains: Set<string>;
  rules: DnatRule[];
  /** Number of rules per chain (mark rules included). */
  ruleCount: Map<string, number>;
  /** Every rule of the table (for `legacyRemoveLines`). */
  listed: ListedRule[];
}

/** What one attachment owns in the table. */
export interface OwnedState {
  chain: string;
  chainExists: boolean;
  elements: Element[];
}

type Json = Record<string, unknown>;

function keyText(k: unknown): string {
  if (k && typeof k === 'object' && 'concat' in (k as Json)) return ((k as Json).concat as unknown[]).map((x) => String(x)).join(' . ');
  return String(k);
}

function ruleSignature(expr: Json[]): string | undefined {
  let proto: string | undefined;
  let port: unknown;
  let daddr: unknown;
  let target: string | undefined;
  for (const e of expr) {
    const match = e.match as Json | undefined;
    if (match && match.op === '==') {
      const payload = (match.left as Json | undefined)?.payload as Json | undefined;
      if (payload?.field === 'dport') {
        proto = String(payload.protocol);
        port = match.right;
      } else if (payload?.field === 'daddr') {
        daddr = match.right;
      }
    }
    const dnat = e.dnat as Json | undefined;
    if (dnat) target = `${String(dnat.addr)}:${String(dnat.port)}`;
  }
  if (!target || !proto) return undefined;
  return `${proto}/${String(port)}${typeof daddr === 'string' ? `@${daddr}` : ''}>${target}`;
}

export function expectedSignatures(plans: FamilyPlan[]): string[] {
  return plans.flatMap((p) =>
    p.mappings.map((m) => `${m.protocol}/${m.hostPort}${m.hostIP ? `@${m.hostIP}` : ''}>${p.container.ip}:${m.containerPort}`),
  );
}

export function parseTable(json: { nftables?: Json[] }): TableState {
  const st: TableState = { elements: [], chains: new Set(), rules: [], ruleCount: new Map(), listed: [] };
  for (const item of json.nftables ?? []) {
    if (item.map) {
      const m = item.map as Json;
      if (!(MAPS as readonly string[]).includes(String(m.name))) continue;
      for (const el of (m.elem as unknown[][] | undefined) ?? []) {
        const [key, val] = el as [unknown, Json];
        const target = ((val?.goto ?? val?.jump) as Json | undefined)?.target;
        if (typeof target === 'string') st.elements.push({ map: m.name as MapName, key: keyText(key), target });
      }
    } else if (item.chain) {
      st.chains.add(String((item.chain as Json).name));
    } else if (item.rule) {
      const r = item.rule as Json;
      const chain = String(r.chain);
      st.ruleCount.set(chain, (st.ruleCount.get(chain) ?? 0) + 1);
      st.listed.push({
        chain,
        handle: Number(r.handle),
        comment: typeof r.comment === 'string' ? r.comment : undefined,
        expr: (r.expr as unknown[]) ?? [],
      });
      const sig = ruleSignature((r.expr as Json[]) ?? []);
      if (sig)
        st.rules.push({ chain, handle: Number(r.handle), comment: typeof r.comment === 'string' ? r.comment : undefined, signature: sig });
    }
  }
  return st;
}

/** A rule as `nft -j list table` gives it (the fields `legacyRules` reads). */
export interface ListedRule {
  chain: string;
  handle: number;
  comment?: string;
  expr?: unknown[];
}

/**
 * The rules earlier versions of portmap wrote into the legacy base chains: the dispatch
 * `jump hostports` in `prerouting`/`output` and the tagged masquerade in `postrouting`.
 * Nothing else in those chains is ours. Pure.
 */
export function legacyRules(rules: ListedRule[]): ListedRule[] {
  return rules.filter((r) => {
    if (r.chain === 'postrouting') return r.comment === SNAT_COMMENT;
    if (r.chain !== 'prerouting' && r.chain !== 'output') return false;
    return (r.expr ?? []).some((e) => ((e as { jump?: { target?: string } }).jump?.target ?? '') === 'hostports');
  });
}

/**
 * Lines that remove the legacy rules by handle, and the legacy `prerouting`/`output` chains
 * when nothing else is in them (`postrouting` is left: it may be another owner's chain).
 */
export function legacyRemoveLines(table: string, rules: ListedRule[]): string[] {
  const t = nft`inet ${table}`;
  const mine = legacyRules(rules);
  const lines = mine.map((r) => nft`delete rule ${t} ${r.chain} handle ${r.handle}`);
  for (const chain of ['prerouting', 'output']) {
    const all = rules.filter((r) => r.chain === chain).length;
    const ours = mine.filter((r) => r.chain === chain).length;
    if (ours > 0 && ours === all) lines.push(nft`delete chain ${t} ${chain}`);
  }
  return text(lines);
}

export function ownedBy(st: TableState, tag: string): OwnedState {
  const chain = chainOf(tag);
  return { chain, chainExists: st.chains.has(chain), elements: st.elements.filter((e) => e.target === chain) };
}

/** Tags of the network's attachments that have a chain in the table. */
export function attachmentTags(st: TableState, netTag: string): string[] {
  const prefix = `${CHAIN_PREFIX}${netTag}-`;
  return [...st.chains].filter((c) => c.startsWith(prefix)).map((c) => c.slice(CHAIN_PREFIX.length));
}

/** Lines that remove an attachment: its elements first (they reference the chain), then the chain. */
export function removeLines(table: string, o: OwnedState, deleteChain = true): string[] {
  const t = nft`inet ${table}`;
  const byMap = new Map<MapName, NftText[]>();
  // keys read back from `nft -j` ("tcp . 8080", "192.0.2.1 . udp . 53"): each part one word
  const key = (k: string): NftText =>
    new NftText(
      k
        .split(' . ')
        .map((part) => nft`${part}`.text)
        .join(' . '),
    );
  for (const e of o.elements) byMap.set(e.map, [...(byMap.get(e.map) ?? []), key(e.key)]);
  const lines = [...byMap].map(([name, keys]) => nft`delete element ${t} ${name} { ${keys} }`);
  if (o.chainExists && deleteChain) lines.push(nft`flush chain ${t} ${o.chain}`, nft`delete chain ${t} ${o.chain}`);
  return text(lines);
}

/** Elements another attachment holds for keys this plan wants. */
export function conflicts(
  st: TableState,
  tag: string,
  plans: FamilyPlan[],
): Array<{ mapping: Mapping; holder: Element; holderComment?: string }> {
  const out: Array<{ mapping: Mapping; holder: Element; holderComment?: string }> = [];
  for (const p of plans) {
    for (const m of p.mappings) {
      const map = mapFor(p.container.family, m);
      const key = elementKey(m);
      const holder = st.elements.find((e) => e.map === map && e.key === key && e.target !== chainOf(tag));
      if (holder) out.push({ mapping: m, holder, holderComment: st.rules.find((r) => r.chain === holder.target && r.comment)?.comment });
    }
  }
  return out;
}
