/**
 * portmap's nftables verbs as nf_tables messages (shared/kernel/netlink/nftnl.ts), the
 * netlink twin of ./nft.ts's text: `addMsgs` is `addScript` (first attempt, nothing to
 * remove) and `delMsgs` is DEL's `removeLines` + `legacyRemoveLines`, planned from a netlink
 * read (`readOwned`: GETCHAIN, GETSETELEM of the four maps, GETRULE of the legacy chains).
 * The bytecode is what nft 1.0.6 emits for ./nft.ts's text (`nft --debug=netlink`), so the
 * kernel holds the same table whichever path wrote it (test/nft-netlink.test.ts compares
 * `nft -j list table` of both). Whatever this file does not encode makes `addMsgs` return
 * undefined and the text path runs: user `conditionsV4/V6` (nft rule text, which only nft
 * parses), and a masquerade source range reaching 255.255.255.255 (nft flags an open interval).
 * A container subnet inside, beside or around 127.0.0.0/8 is merged with it, as nft does.
 * CHECK reads by netlink too (`readCheck`: GETCHAIN, GETRULE of the attachment's chain,
 * GETSETELEM of the maps it uses; `dumpedSignature` reads the dnat rules' bytecode).
 * Pure but for the reads.
 */
import { formatIp, ipBytes } from '../../shared/kernel/netlink/codec.ts';
import {
  addBaseChain,
  addChain,
  addElements,
  addRule,
  addrMatch,
  addSet,
  addTableWithComment,
  CMP_EQ,
  concatType,
  delChain,
  delElements,
  delRule,
  ex,
  ex2,
  flushChain,
  jumpTarget,
  nfprotoIs,
  NFT_GOTO,
  NFT_JUMP,
  NFT_SET_ANONYMOUS,
  NFT_SET_CONSTANT,
  NFT_SET_INTERVAL,
  NFT_SET_MAP,
  PRIORITY,
  readBe32,
  TYPE,
  type DumpedRule,
  type ElementSpec,
  type Expr,
  type NftMsg,
} from '../../shared/kernel/netlink/nftnl.ts';
import { commentWithTag } from '../../shared/firewall/owner.ts';
import type { FamilyPlan, Mapping, Settings } from './config.ts';
import { BASE_CHAINS, chainOf, mapFor, SNAT_COMMENT, type MapName } from './nft.ts';

const META_L4PROTO = 16;
const META_MARK = 3;
const PAYLOAD_TRANSPORT = 2;
const PROTO: Record<Mapping['protocol'], number> = { tcp: 6, udp: 17, sctp: 132 };
const TABLE_COMMENT = 'cni-ts portmap: published container ports';

/** nft's userdata of the four verdict maps (key byte order, typeof): the same bytes for each. */
const MAP_USERDATA = Uint8Array.of(0, 4, 0, 0, 0, 0, 1, 4, 0, 0, 0, 0, 3, 8, 0, 4, 13, 0, 0, 0, 1, 0, 6, 4, 0, 0, 0, 0);
/** nft's userdata of the anonymous set of `ip saddr { … }` (big-endian key, merge, typeof ip saddr). */
const SADDR4_SET_USERDATA = Uint8Array.of(
  0,
  4,
  2,
  0,
  0,
  0,
  2,
  4,
  1,
  0,
  0,
  0,
  3,
  20,
  0,
  4,
  7,
  0,
  0,
  0,
  1,
  12,
  0,
  4,
  12,
  0,
  0,
  0,
  1,
  4,
  11,
  0,
  0,
  0,
);

export const MAP_IDS: Record<MapName, number> = { hostip4: 1, hostip6: 2, hostport4: 3, hostport6: 4 };
const ANON_ID = 5;
const MAP_KEYS: Record<MapName, [number, number]> = {
  hostip4: [concatType(TYPE.ipv4_addr, TYPE.inet_proto, TYPE.inet_service), 12],
  hostip6: [concatType(TYPE.ipv6_addr, TYPE.inet_proto, TYPE.inet_service), 24],
  hostport4: [concatType(TYPE.inet_proto, TYPE.inet_service), 8],
  hostport6: [concatType(TYPE.inet_proto, TYPE.inet_service), 8],
};

const u32le = (n: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
};
const port2 = (p: number): Uint8Array => Uint8Array.of(p >> 8, p & 0xff);
/** a concatenation's fields, each padded to 4 bytes */
const concat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + ((p.length + 3) & ~3), 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += (p.length + 3) & ~3;
  }
  return out;
};

/** The key of a mapping in its map, as the kernel holds it. */
export function elementKeyBytes(m: Mapping): Uint8Array | undefined {
  const pp = [Uint8Array.of(PROTO[m.protocol]), port2(m.hostPort)];
  if (!m.hostIP) return concat(...pp);
  const a = ipBytes(m.hostIP);
  return a && concat(a, ...pp);
}

/** The table, maps, base chains and dispatch rules (`baseScript`). */
function baseMsgs(s: Settings): NftMsg[] {
  const T = s.nftTable;
  const out: NftMsg[] = [addTableWithComment('inet', T, TABLE_COMMENT)];
  for (const name of ['hostip4', 'hostip6', 'hostport4', 'hostport6'] as const) {
    const [keyType, keyLen] = MAP_KEYS[name];
    out.push(
      addSet('inet', T, {
        name,
        id: MAP_IDS[name],
        flags: NFT_SET_MAP,
        keyType,
        keyLen,
        dataType: TYPE.verdict,
        dataLen: 0,
        userdata: MAP_USERDATA,
      }),
    );
  }
  out.push(
    addChain('inet', T, 'hostports'),
    addBaseChain('inet', T, BASE_CHAINS.prerouting, 'nat', 'prerouting', PRIORITY.dstnat),
    addBaseChain('inet', T, BASE_CHAINS.output, 'nat', 'output', -100),
    flushChain('inet', T, 'hostports'),
  );
  const th = (reg: number): Expr => ex2.payload(PAYLOAD_TRANSPORT, 2, 2, reg);
  const rule = (chain: string, exprs: Expr[], comment?: string): NftMsg =>
    addRule('inet', T, chain, exprs, comment, `add rule inet ${T} ${chain}`);
  out.push(
    rule('hostports', [
      ...nfprotoIs(4),
      ex2.payload(1, 16, 4, 1),
      ex2.metaLoad(META_L4PROTO, 9),
      th(10),
      ex2.lookup('hostip4', MAP_IDS.hostip4, 1, 0),
    ]),
    rule('hostports', [
      ...nfprotoIs(6),
      ex2.payload(1, 24, 16, 1),
      ex2.metaLoad(META_L4PROTO, 2),
      th(13),
      ex2.lookup('hostip6', MAP_IDS.hostip6, 1, 0),
    ]),
    rule('hostports', [...nfprotoIs(4), ex2.metaLoad(META_L4PROTO, 1), th(9), ex2.lookup('hostport4', MAP_IDS.hostport4, 1, 0)]),
    rule('hostports', [...nfprotoIs(6), ex2.metaLoad(META_L4PROTO, 1), th(9), ex2.lookup('hostport6', MAP_IDS.hostport6, 1, 0)]),
  );
  const dispatch = [ex2.fibDaddrType(), ex2.cmp(CMP_EQ, u32le(2 /* RTN_LOCAL */)), ex2.verdict(NFT_JUMP, 'hostports')];
  out.push(flushChain('inet', T, BASE_CHAINS.prerouting), rule(BASE_CHAINS.prerouting, dispatch));
  out.push(flushChain('inet', T, BASE_CHAINS.output), rule(BASE_CHAINS.output, dispatch));
  if (s.snat) {
    const mark = u32le(s.mark);
    out.push(
      addBaseChain('inet', T, BASE_CHAINS.postrouting, 'nat', 'postrouting', PRIORITY.srcnat),
      flushChain('inet', T, BASE_CHAINS.postrouting),
      rule(
        BASE_CHAINS.postrouting,
        [ex2.metaLoad(META_MARK, 1), ex2.bitwise(mark, new Uint8Array(4)), ex2.cmp(CMP_EQ, mark), ex.masq()],
        SNAT_COMMENT,
      ),
    );
  }
  return out;
}

/**
 * The elements of the constant interval set `{ 127.0.0.0/8, SUBNET }` as nft sends them: an
 * end element at 0 when the first range starts above it, then each range's start and the end
 * (the address after it). Ranges that touch or overlap are merged first, as nft's automerge
 * does (a container subnet inside, beside or around 127.0.0.0/8). undefined: a malformed CIDR,
 * or a range reaching 255.255.255.255 (the text path then runs). Pure.
 */
export function intervalElements4(cidrs: string[]): ElementSpec[] | undefined {
  const ranges: Array<[number, number]> = [];
  for (const c of cidrs) {
    const [ip, l] = c.split('/');
    const b = ipBytes(ip);
    const len = Number(l ?? 32);
    if (!b || b.length !== 4 || !Number.isInteger(len) || len < 1 || len > 32) return undefined;
    const size = 2 ** (32 - len);
    const start = Math.floor((((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0) / size) * size;
    ranges.push([start, start + size]);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  // ranges that touch or overlap become one, as nft's automerge of an anonymous set does
  const merged: Array<[number, number]> = [];
  for (const r of ranges) {
    const last = merged[merged.length - 1];
    if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
    else merged.push([r[0], r[1]]);
  }
  const key = (n: number): Uint8Array => Uint8Array.of((n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
  const out: ElementSpec[] = [];
  // A range up to 255.255.255.255 is open-ended: nft flags it in the element's userdata and counts
  // the set one larger (captured); rare enough (a container subnet at the top of the space) for the text.
  if (merged[merged.length - 1][1] >= 2 ** 32) return undefined;
  if (merged[0][0] !== 0) out.push({ key: key(0), end: true });
  for (const [a, z] of merged) {
    out.push({ key: key(a) }, { key: key(z), end: true });
  }
  return out;
}

/** The attachment's chain, its rules and its map elements (`attachmentRules` + `elementLines(…, 'create')`). */
function attachmentMsgs(s: Settings, tag: string, comment: string, plans: FamilyPlan[]): NftMsg[] | undefined {
  const T = s.nftTable;
  const chain = chainOf(tag);
  const note = commentWithTag(tag, comment);
  const out: NftMsg[] = [addChain('inet', T, chain), flushChain('inet', T, chain)];
  const rule = (exprs: Expr[]): NftMsg => addRule('inet', T, chain, exprs, note, `add rule inet ${T} ${chain}`);
  const elements = new Map<MapName, ElementSpec[]>();
  for (const p of plans) {
    if (p.conditions.length) return undefined; // the user's nft text: only nft parses it
    const f = p.container.family;
    if (s.snat) {
      let sources: Expr[] = [];
      const markSet = [ex2.metaLoad(META_MARK, 1), ex2.bitwise(u32le(~s.mark), u32le(s.mark)), ex2.metaSet(META_MARK, 1)];
      if (!s.masqAll) {
        if (f === 4) {
          const els = intervalElements4(['127.0.0.0/8', p.container.subnet]);
          if (!els) return undefined;
          out.push(
            addSet('inet', T, {
              name: '__set%d',
              id: ANON_ID,
              flags: NFT_SET_ANONYMOUS | NFT_SET_CONSTANT | NFT_SET_INTERVAL,
              keyType: TYPE.ipv4_addr,
              keyLen: 4,
              size: els.length,
              userdata: SADDR4_SET_USERDATA,
            }),
            addElements('inet', T, '__set%d', ANON_ID, els, false),
          );
          sources = [ex2.payload(1, 12, 4, 1), ex2.lookup('__set%d', ANON_ID, 1)];
        } else {
          const m = addrMatch(6, 'saddr', false, p.container.subnet);
          if (!m) return undefined;
          sources = m;
        }
      }
      out.push(rule([...nfprotoIs(f), ...sources, ...markSet]));
    }
    const addr = ipBytes(p.container.ip);
    if (!addr) return undefined;
    for (const m of p.mappings) {
      const daddr = m.hostIP ? addrMatch(f, 'daddr', false, m.hostIP) : [];
      const key = elementKeyBytes(m);
      if (!daddr || !key) return undefined;
      out.push(
        rule([
          ...nfprotoIs(f),
          ...daddr,
          ex2.metaLoad(META_L4PROTO, 1),
          ex2.cmp(CMP_EQ, Uint8Array.of(PROTO[m.protocol])),
          ex2.payload(PAYLOAD_TRANSPORT, 2, 2, 1),
          ex2.cmp(CMP_EQ, port2(m.hostPort)),
          ex2.immediate(1, addr),
          ex2.immediate(2, port2(m.containerPort)),
          ex2.dnat(f),
        ]),
      );
      const name = mapFor(f, m);
      elements.set(name, [...(elements.get(name) ?? []), { key, verdict: { code: NFT_GOTO, chain } }]);
    }
  }
  for (const [name, els] of elements) out.push(addElements('inet', T, name, MAP_IDS[name], els, true));
  return out;
}

/** `addScript(s, tag, comment, plans, undefined)` as messages; undefined: take the text. Pure. */
export function addMsgs(s: Settings, tag: string, comment: string, plans: FamilyPlan[]): NftMsg[] | undefined {
  const att = attachmentMsgs(s, tag, comment, plans);
  return att && [...baseMsgs(s), ...att];
}

// ---- DEL and GC: read by netlink, delete by handle and key

/** What DEL and GC need of the table: its chains, the maps' elements, the legacy chains' rules. */
export interface RawState {
  chains: Set<string>;
  elements: Array<{ map: MapName; key: Uint8Array; target?: string }>;
  legacy: DumpedRule[];
}

/** The messages that remove attachment `tag` (elements, then its chain) and what earlier versions left. Pure. */
export function removeMsgs(table: string, st: RawState, tags: string[]): NftMsg[] {
  const out: NftMsg[] = [];
  for (const tag of tags) {
    const chain = chainOf(tag);
    const byMap = new Map<MapName, Uint8Array[]>();
    for (const e of st.elements) if (e.target === chain) byMap.set(e.map, [...(byMap.get(e.map) ?? []), e.key]);
    for (const [map, keys] of byMap) out.push(delElements('inet', table, map, keys));
    if (st.chains.has(chain)) out.push(flushChain('inet', table, chain), delChain('inet', table, chain));
  }
  // ./nft.ts legacyRules / legacyRemoveLines, on dumped rules
  const mine = st.legacy.filter((r) =>
    r.chain === 'postrouting'
      ? r.comment === SNAT_COMMENT
      : (r.chain === 'prerouting' || r.chain === 'output') && jumpTarget(r) === 'hostports',
  );
  out.push(...mine.map((r) => delRule('inet', table, r.chain, r.handle)));
  for (const chain of ['prerouting', 'output']) {
    const all = st.legacy.filter((r) => r.chain === chain).length;
    const ours = mine.filter((r) => r.chain === chain).length;
    if (ours > 0 && ours === all) out.push(delChain('inet', table, chain));
  }
  return out;
}

/**
 * Reads for `removeMsgs`, given the netlink dumps (shared/kernel/nft.ts). undefined: no table.
 * `tag`: one attachment's DEL, which asks for its own chain and the legacy ones by name (a GC
 * lists every chain of the table).
 */
export async function readRaw(
  table: string,
  dump: {
    chains(table: string): Promise<string[] | undefined>;
    chainsNamed(table: string, names: string[]): Promise<string[] | undefined>;
    elements(table: string, set: string): Promise<Array<{ key: Uint8Array; verdict?: { code: number; chain?: string } }> | undefined>;
    rules(table: string, chain: string): Promise<DumpedRule[] | undefined>;
  },
  tag?: string,
): Promise<RawState | undefined> {
  const chains = tag ? await dump.chainsNamed(table, [chainOf(tag), 'prerouting', 'output', 'postrouting']) : await dump.chains(table);
  if (!chains) return undefined;
  const st: RawState = { chains: new Set(chains), elements: [], legacy: [] };
  for (const map of Object.keys(MAP_IDS) as MapName[]) {
    for (const e of (await dump.elements(table, map)) ?? []) st.elements.push({ map, key: e.key, target: e.verdict?.chain });
  }
  for (const chain of ['prerouting', 'output', 'postrouting'])
    if (st.chains.has(chain)) st.legacy.push(...((await dump.rules(table, chain)) ?? []));
  return st;
}

// ---- CHECK: read by netlink (GETCHAIN, GETRULE of the attachment's chain, GETSETELEM of its maps)

const PROTO_NAME: Record<number, Mapping['protocol']> = { 6: 'tcp', 17: 'udp', 132: 'sctp' };
const be16 = (b: Uint8Array): number => (b[0] << 8) | b[1];

/**
 * A dumped dnat rule's signature as ./nft.ts `ruleSignature` makes it from `nft -j`
 * ("tcp/8080@192.0.2.1>10.88.0.5:80"), read from its bytecode: the `meta l4proto` and `th
 * dport` compares, an `ip[6] daddr` compare, and the dnat's address and port registers
 * (immediates). undefined for any other rule (the masquerade mark). Pure.
 */
export function dumpedSignature(r: DumpedRule): string | undefined {
  const loaded = new Map<number, 'l4proto' | 'dport' | 'daddr' | 'other'>();
  const imm = new Map<number, Uint8Array>();
  let proto: string | undefined;
  let port: number | undefined;
  let daddr: string | undefined;
  let target: string | undefined;
  for (const { name, data: d } of r.exprs) {
    if (name === 'meta') {
      const dreg = readBe32(d.bytes(1 /* DREG */));
      if (dreg !== undefined) loaded.set(dreg, readBe32(d.bytes(2 /* KEY */)) === META_L4PROTO ? 'l4proto' : 'other');
    } else if (name === 'payload') {
      const [dreg, base, off, len] = [1, 2, 3, 4].map((t) => readBe32(d.bytes(t)));
      if (dreg === undefined) continue;
      const kind =
        base === PAYLOAD_TRANSPORT && off === 2 && len === 2
          ? 'dport'
          : base === 1 && ((off === 16 && len === 4) || (off === 24 && len === 16))
            ? 'daddr'
            : 'other';
      loaded.set(dreg, kind);
    } else if (name === 'cmp') {
      const v = d.nested(3 /* DATA */)?.bytes(1 /* VALUE */);
      const src = loaded.get(readBe32(d.bytes(1 /* SREG */)) ?? -1);
      if (!v || readBe32(d.bytes(2 /* OP */)) !== CMP_EQ) continue;
      if (src === 'l4proto' && v.length === 1) proto = PROTO_NAME[v[0]] ?? String(v[0]);
      else if (src === 'dport' && v.length === 2) port = be16(v);
      else if (src === 'daddr' && (v.length === 4 || v.length === 16)) daddr = formatIp(v);
    } else if (name === 'immediate') {
      const dreg = readBe32(d.bytes(1 /* DREG */));
      const v = d.nested(2 /* DATA */)?.bytes(1 /* VALUE */);
      if (dreg !== undefined && v) imm.set(dreg, v);
    } else if (name === 'nat' && readBe32(d.bytes(1 /* TYPE */)) === 1 /* DNAT */) {
      const a = imm.get(readBe32(d.bytes(3 /* REG_ADDR_MIN */)) ?? -1);
      const p = imm.get(readBe32(d.bytes(5 /* REG_PROTO_MIN */)) ?? -1);
      if (a && (a.length === 4 || a.length === 16) && p && p.length >= 2) target = `${formatIp(a)}:${be16(p)}`;
    }
  }
  if (!target || !proto) return undefined;
  return `${proto}/${String(port)}${daddr !== undefined ? `@${daddr}` : ''}>${target}`;
}

/** What CHECK reads of one attachment: whether the table and its chain exist, the chain's rules, the maps' elements. */
export interface CheckState {
  table: boolean;
  chain: boolean;
  signatures: string[];
  /** per map: the keys (hex) whose verdict goes to the attachment's chain */
  keys: Map<MapName, Set<string>>;
}

const hexOf = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

/** The netlink reads of CHECK: the chain (one GETCHAIN), its rules and the elements of the maps `plans` use. */
export async function readCheck(table: string, dump: Parameters<typeof readRaw>[1], tag: string, plans: FamilyPlan[]): Promise<CheckState> {
  const chain = chainOf(tag);
  const st: CheckState = { table: true, chain: true, signatures: [], keys: new Map() };
  if (!(await dump.chainsNamed(table, [chain]))) {
    st.chain = false;
    st.table = (await dump.chains(table)) !== undefined; // only on the way to an error: which one is missing
    return st;
  }
  st.signatures = ((await dump.rules(table, chain)) ?? []).map(dumpedSignature).filter((s): s is string => s !== undefined);
  const maps = new Set(plans.flatMap((p) => p.mappings.map((m) => mapFor(p.container.family, m))));
  for (const map of maps) {
    const keys = new Set<string>();
    for (const e of (await dump.elements(table, map)) ?? []) if (e.verdict?.chain === chain) keys.add(hexOf(e.key));
    st.keys.set(map, keys);
  }
  return st;
}

/** The mappings of `plans` whose key is not in its map going to the attachment's chain. Pure. */
export function lostMappings(st: CheckState, plans: FamilyPlan[]): Mapping[] {
  return plans.flatMap((p) =>
    p.mappings.filter((m) => {
      const k = elementKeyBytes(m);
      return !k || !st.keys.get(mapFor(p.container.family, m))?.has(hexOf(k));
    }),
  );
}
