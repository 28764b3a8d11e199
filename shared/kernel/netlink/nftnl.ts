/**
 * nf_tables over netlink (NETLINK_NETFILTER), the messages our firewall owners send, without
 * libnftables: a batch (NFNL_MSG_BATCH_BEGIN … END) of NEWTABLE / NEWCHAIN / NEWRULE /
 * DELRULE / DELCHAIN / DELSETELEM, and the GETRULE / GETCHAIN / GETSETELEM dumps that DEL and GC
 * read. Pure: no I/O (the socket is ./nftsock.ts), unit-tested against the bytes `nft
 * --debug=mnl` sends and replies captured from the kernel (test/nft-netlink-codec.test.ts).
 *
 * The expressions are exactly what nft 1.0.6 (Debian 12) emits for the rule text of
 * shared/firewall/masquerade-nft.ts (`nft --debug=netlink`): the same bytecode and the same
 * userdata (the comment), so `nft -j list` shows the same rule whichever path wrote it
 * (test/nft-netlink.test.ts writes through both and compares). Byte order: nf_tables
 * attributes are big-endian (NLA_U32 through htonl), the netlink headers host order.
 */
import * as C from './constants.ts';
import { Attrs, encodeMessage, formatIp, ipBytes, type AttrSpec, type NlMsg } from './codec.ts';

// ---------------------------------------------------------------- numbers (linux/netfilter/nf_tables.h, nfnetlink.h)

export const NETLINK_NETFILTER = 12;
export const NFNL_SUBSYS_NFTABLES = 10;
export const NFNL_MSG_BATCH_BEGIN = 16;
export const NFNL_MSG_BATCH_END = 17;

export const NFT_MSG = {
  NEWTABLE: 0,
  GETTABLE: 1,
  DELTABLE: 2,
  NEWCHAIN: 3,
  GETCHAIN: 4,
  DELCHAIN: 5,
  NEWRULE: 6,
  GETRULE: 7,
  DELRULE: 8,
  NEWSET: 9,
  GETSET: 10,
  DELSET: 11,
  NEWSETELEM: 12,
  GETSETELEM: 13,
  DELSETELEM: 14,
} as const;

export const NFPROTO = { inet: 1, ip: 2, arp: 3, netdev: 5, bridge: 7, ip6: 10 } as const;
export type NftFamily = keyof typeof NFPROTO;

const NFTA_TABLE_NAME = 1;
const NFTA_TABLE_FLAGS = 2;
const NFTA_CHAIN_TABLE = 1;
const NFTA_CHAIN_NAME = 3;
const NFTA_CHAIN_HOOK = 4;
const NFTA_CHAIN_POLICY = 5;
const NFTA_CHAIN_TYPE = 7;
const NFTA_HOOK_HOOKNUM = 1;
const NFTA_HOOK_PRIORITY = 2;
export const NFTA_RULE_TABLE = 1;
export const NFTA_RULE_CHAIN = 2;
export const NFTA_RULE_HANDLE = 3;
export const NFTA_RULE_EXPRESSIONS = 4;
export const NFTA_RULE_USERDATA = 7;
const NFTA_LIST_ELEM = 1;
const NFTA_EXPR_NAME = 1;
const NFTA_EXPR_DATA = 2;
const NFTA_SET_ELEM_LIST_TABLE = 1;
const NFTA_SET_ELEM_LIST_SET = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_SET_ELEM_KEY = 1;
const NFTA_SET_ELEM_DATA = 2;
const NFTA_DATA_VALUE = 1;
const NFTA_DATA_VERDICT = 2;
const NFTA_VERDICT_CODE = 1;
const NFTA_VERDICT_CHAIN = 2;
/** userdata TLV types (libnftnl udata.h): a rule's comment */
const NFTNL_UDATA_RULE_COMMENT = 0;

/** Registers: NFT_REG_1 (16 bytes). */
export const REG_1 = 1;
export const META_NFPROTO = 15;
export const PAYLOAD_NETWORK = 1;
export const CMP_EQ = 0;
export const CMP_NEQ = 1;
/** Hooks (NF_INET_*) and priorities by name, as nft spells them. */
export const HOOK = { prerouting: 0, input: 1, forward: 2, output: 3, postrouting: 4 } as const;
export const PRIORITY = { dstnat: -100, filter: 0, srcnat: 100 } as const;
const NF_ACCEPT = 1;
/** verdict codes */
export const NFT_JUMP = -3;
export const NFT_GOTO = -4;

// ---------------------------------------------------------------- attributes (big-endian values)

const enc = new TextEncoder();
const dec = new TextDecoder();

const str = (type: number, s: string): AttrSpec => {
  const e = enc.encode(s);
  const b = new Uint8Array(e.length + 1);
  b.set(e);
  return { type, value: b };
};
const be32 = (type: number, n: number): AttrSpec => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, false);
  return { type, value: b };
};
const bytes = (type: number, value: Uint8Array): AttrSpec => ({ type, value });
/** Every nest flagged NLA_F_NESTED, as libnftnl sends them. */
const nest = (type: number, children: AttrSpec[]): AttrSpec => ({ type, value: children, flagNested: true });

/** Read a big-endian u32 / u64 attribute. */
export const readBe32 = (b: Uint8Array | undefined): number | undefined =>
  b && b.length >= 4 ? new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0, false) : undefined;
export const readBe64 = (b: Uint8Array | undefined): number | undefined =>
  b && b.length >= 8 ? Number(new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(0, false)) : undefined;
const readStr = (b: Uint8Array | undefined): string | undefined => {
  if (!b) return undefined;
  const z = b.indexOf(0);
  return dec.decode(z >= 0 ? b.subarray(0, z) : b);
};

// ---------------------------------------------------------------- messages

/** One nf_tables message of a batch (or a dump request): type, flags and attributes; nfgenmsg made from `family`. */
export interface NftMsg {
  /** NFT_MSG_* */
  msg: number;
  family: NftFamily;
  /** NLM_F_* besides NLM_F_REQUEST */
  flags: number;
  attrs: AttrSpec[];
  /** for people and errors: what nft would have said (`add rule inet t c …`) */
  what: string;
}

/** nfgenmsg: family, version 0, res_id (big-endian) */
export function nfgenmsg(family: number, resId = 0): Uint8Array {
  return Uint8Array.of(family, 0, (resId >> 8) & 0xff, resId & 0xff);
}

/**
 * The datagram of one batch: BATCH_BEGIN, the messages (seq = first+2, first+3, …), BATCH_END.
 * Only the last message asks for an ACK (NLM_F_ACK): nfnetlink answers every refused message
 * with its error anyway and keeps going to the end of the batch, so the last answer closes it
 * (one ACK instead of one per message: a portmap ADD has ~36). Returns it and the seqs.
 */
export function encodeBatch(msgs: NftMsg[], firstSeq: number): { datagram: Uint8Array; seqs: number[] } {
  const parts: Uint8Array[] = [];
  const seqs: number[] = [];
  let seq = firstSeq >>> 0;
  const next = (): number => (seq = (seq + 1) >>> 0);
  const sub = nfgenmsg(C.AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
  parts.push(encodeMessage({ type: NFNL_MSG_BATCH_BEGIN, flags: C.NLM_F_REQUEST, seq: next(), header: sub }));
  for (const [i, m] of msgs.entries()) {
    const s = next();
    seqs.push(s);
    parts.push(
      encodeMessage({
        type: (NFNL_SUBSYS_NFTABLES << 8) | m.msg,
        flags: C.NLM_F_REQUEST | (i === msgs.length - 1 ? C.NLM_F_ACK : 0) | m.flags,
        seq: s,
        header: nfgenmsg(NFPROTO[m.family]),
        attrs: m.attrs,
      }),
    );
  }
  parts.push(encodeMessage({ type: NFNL_MSG_BATCH_END, flags: C.NLM_F_REQUEST, seq: next(), header: sub }));
  const datagram = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    datagram.set(p, off);
    off += p.length;
  }
  return { datagram, seqs };
}

/** A dump request (GETRULE, GETCHAIN, GETSETELEM) with its filter attributes. */
export function encodeDump(msg: number, family: NftFamily, attrs: AttrSpec[], seq: number): Uint8Array {
  return encodeMessage({
    type: (NFNL_SUBSYS_NFTABLES << 8) | msg,
    flags: C.NLM_F_REQUEST | C.NLM_F_DUMP,
    seq,
    header: nfgenmsg(NFPROTO[family]),
    attrs,
  });
}

// ---------------------------------------------------------------- objects

/** `add table FAMILY NAME`: created when absent, left alone when present. */
export function addTable(family: NftFamily, table: string): NftMsg {
  return {
    msg: NFT_MSG.NEWTABLE,
    family,
    flags: 0,
    attrs: [str(NFTA_TABLE_NAME, table), be32(NFTA_TABLE_FLAGS, 0)],
    what: `add table ${family} ${table}`,
  };
}

/** `add chain FAMILY T NAME { type TYPE hook HOOK priority P; policy accept; }` (a base chain). */
export function addBaseChain(
  family: NftFamily,
  table: string,
  chain: string,
  type: 'nat' | 'filter',
  hook: keyof typeof HOOK,
  priority: number,
): NftMsg {
  return {
    msg: NFT_MSG.NEWCHAIN,
    family,
    flags: C.NLM_F_CREATE,
    attrs: [
      str(NFTA_CHAIN_TABLE, table),
      str(NFTA_CHAIN_NAME, chain),
      str(NFTA_CHAIN_TYPE, type),
      be32(NFTA_CHAIN_POLICY, NF_ACCEPT),
      nest(NFTA_CHAIN_HOOK, [be32(NFTA_HOOK_HOOKNUM, HOOK[hook]), be32(NFTA_HOOK_PRIORITY, priority)]),
    ],
    what: `add chain ${family} ${table} ${chain}`,
  };
}

/** `delete chain FAMILY T NAME` */
export function delChain(family: NftFamily, table: string, chain: string): NftMsg {
  return {
    msg: NFT_MSG.DELCHAIN,
    family,
    flags: 0,
    attrs: [str(NFTA_CHAIN_TABLE, table), str(NFTA_CHAIN_NAME, chain)],
    what: `delete chain ${family} ${table} ${chain}`,
  };
}

/** `flush chain FAMILY T NAME` (DELRULE without a handle) */
export function flushChain(family: NftFamily, table: string, chain: string): NftMsg {
  return {
    msg: NFT_MSG.DELRULE,
    family,
    flags: 0,
    attrs: [str(NFTA_RULE_TABLE, table), str(NFTA_RULE_CHAIN, chain)],
    what: `flush chain ${family} ${table} ${chain}`,
  };
}

/** `delete rule FAMILY T CHAIN handle H` */
export function delRule(family: NftFamily, table: string, chain: string, handle: number): NftMsg {
  const h = new Uint8Array(8);
  new DataView(h.buffer).setBigUint64(0, BigInt(handle), false);
  return {
    msg: NFT_MSG.DELRULE,
    family,
    flags: 0,
    attrs: [str(NFTA_RULE_TABLE, table), str(NFTA_RULE_CHAIN, chain), bytes(NFTA_RULE_HANDLE, h)],
    what: `delete rule ${family} ${table} ${chain} handle ${handle}`,
  };
}

/** `delete element FAMILY T SET { k1, k2 }` with the keys as the kernel holds them (read from a dump). */
export function delElements(family: NftFamily, table: string, set: string, keys: Uint8Array[]): NftMsg {
  return {
    msg: NFT_MSG.DELSETELEM,
    family,
    flags: 0,
    attrs: [
      str(NFTA_SET_ELEM_LIST_TABLE, table),
      str(NFTA_SET_ELEM_LIST_SET, set),
      nest(
        NFTA_SET_ELEM_LIST_ELEMENTS,
        keys.map((k) => nest(NFTA_LIST_ELEM, [nest(NFTA_SET_ELEM_KEY, [bytes(NFTA_DATA_VALUE, k)])])),
      ),
    ],
    what: `delete element ${family} ${table} ${set}`,
  };
}

// ---------------------------------------------------------------- expressions

/** One expression of a rule: its name and its attributes. */
export interface Expr {
  name: string;
  data: AttrSpec[];
}

const expr = (name: string, data: AttrSpec[]): Expr => ({ name, data });

export const ex = {
  /** [ meta load KEY => reg 1 ] */
  metaLoad: (key: number): Expr => expr('meta', [be32(2 /* KEY */, key), be32(1 /* DREG */, REG_1)]),
  /** [ cmp OP reg 1 VALUE ] */
  cmp: (op: number, value: Uint8Array): Expr =>
    expr('cmp', [be32(1 /* SREG */, REG_1), be32(2 /* OP */, op), nest(3 /* DATA */, [bytes(NFTA_DATA_VALUE, value)])]),
  /** [ payload load LEN b @ BASE header + OFFSET => reg 1 ] */
  payload: (base: number, offset: number, len: number): Expr =>
    expr('payload', [be32(1 /* DREG */, REG_1), be32(2 /* BASE */, base), be32(3 /* OFFSET */, offset), be32(4 /* LEN */, len)]),
  /** [ bitwise reg 1 = ( reg 1 & MASK ) ^ XOR ] */
  bitwise: (mask: Uint8Array, xor: Uint8Array): Expr =>
    expr('bitwise', [
      be32(1 /* SREG */, REG_1),
      be32(2 /* DREG */, REG_1),
      be32(3 /* LEN */, mask.length),
      nest(4 /* MASK */, [bytes(NFTA_DATA_VALUE, mask)]),
      nest(5 /* XOR */, [bytes(NFTA_DATA_VALUE, xor)]),
    ]),
  counter: (): Expr => expr('counter', []),
  masq: (): Expr => expr('masq', []),
};

/** userdata of a rule with a comment: one TLV (type 0, length, the text and its NUL). */
export function commentUserdata(comment: string): Uint8Array {
  const e = enc.encode(comment);
  if (e.length + 1 > 255) throw new RangeError('nft comment longer than 254 bytes');
  const b = new Uint8Array(2 + e.length + 1);
  b[0] = NFTNL_UDATA_RULE_COMMENT;
  b[1] = e.length + 1;
  b.set(e, 2);
  return b;
}

/** The comment in a rule's userdata, if any. Pure. */
export function commentOfUserdata(u: Uint8Array | undefined): string | undefined {
  if (!u) return undefined;
  for (let off = 0; off + 2 <= u.length;) {
    const type = u[off];
    const len = u[off + 1];
    if (off + 2 + len > u.length) return undefined;
    if (type === NFTNL_UDATA_RULE_COMMENT) return readStr(u.subarray(off + 2, off + 2 + len));
    off += 2 + len;
  }
  return undefined;
}

/** `add rule FAMILY T CHAIN <exprs> comment "…"` (appended: NLM_F_CREATE | NLM_F_APPEND). */
export function addRule(family: NftFamily, table: string, chain: string, exprs: Expr[], comment: string | undefined, what: string): NftMsg {
  const attrs: AttrSpec[] = [
    str(NFTA_RULE_TABLE, table),
    str(NFTA_RULE_CHAIN, chain),
    nest(
      NFTA_RULE_EXPRESSIONS,
      exprs.map((e) => nest(NFTA_LIST_ELEM, [str(NFTA_EXPR_NAME, e.name), nest(NFTA_EXPR_DATA, e.data)])),
    ),
  ];
  if (comment !== undefined) attrs.push(bytes(NFTA_RULE_USERDATA, commentUserdata(comment)));
  return { msg: NFT_MSG.NEWRULE, family, flags: C.NLM_F_CREATE | 0x800 /* NLM_F_APPEND */, attrs, what };
}

// ---------------------------------------------------------------- address matches, as nft linearizes them

/** The address family's payload: `ip` (IPv4 header) or `ip6`; saddr/daddr offsets and lengths. */
const IPHDR = { 4: { nfproto: 2, saddr: 12, daddr: 16, len: 4 }, 6: { nfproto: 10, saddr: 8, daddr: 24, len: 16 } } as const;

/** `meta nfproto ipv4|ipv6` as nft adds it before an `ip`/`ip6` match in an inet table. */
export const nfprotoIs = (v: 4 | 6): Expr[] => [ex.metaLoad(META_NFPROTO), ex.cmp(CMP_EQ, Uint8Array.of(IPHDR[v].nfproto))];

/**
 * `ip[6] FIELD [!=] ADDR[/LEN]` as nft 1.0.6 emits it: an address (or a prefix of whole bytes)
 * loads only the bytes it compares; any other prefix loads the whole address and masks it.
 * undefined for what nft would write otherwise (prefix 0, a malformed address): the caller
 * then takes the text path.
 */
export function addrMatch(v: 4 | 6, field: 'saddr' | 'daddr', neq: boolean, cidr: string): Expr[] | undefined {
  const [ip, lenText] = cidr.split('/');
  const b = ipBytes(ip);
  const h = IPHDR[v];
  if (!b || b.length !== h.len) return undefined;
  const plen = lenText === undefined ? h.len * 8 : Number(lenText);
  if (!Number.isInteger(plen) || plen <= 0 || plen > h.len * 8) return undefined;
  const op = neq ? CMP_NEQ : CMP_EQ;
  const off = h[field];
  if (plen % 8 === 0) {
    const n = plen / 8;
    return [ex.payload(PAYLOAD_NETWORK, off, n), ex.cmp(op, b.slice(0, n))];
  }
  const mask = new Uint8Array(h.len);
  for (let i = 0; i < plen; i++) mask[i >> 3] |= 0x80 >> (i & 7);
  const net = b.map((x, i) => x & mask[i]);
  return [ex.payload(PAYLOAD_NETWORK, off, h.len), ex.bitwise(mask, new Uint8Array(h.len)), ex.cmp(op, net)];
}

// ---------------------------------------------------------------- decoding dumps

/** A rule as a GETRULE dump gives it: where, its handle, its comment and its expressions (name and raw data). */
export interface DumpedRule {
  family: number;
  table: string;
  chain: string;
  handle: number;
  comment?: string;
  exprs: Array<{ name: string; data: Attrs }>;
}

const payloadOf = (m: NlMsg): Uint8Array => m.payload.subarray(4); // after nfgenmsg

/** A NEWRULE message of a dump. Pure. */
export function decodeRule(m: NlMsg): DumpedRule {
  const a = new Attrs(payloadOf(m));
  const exprs: DumpedRule['exprs'] = [];
  const list = a.bytes(NFTA_RULE_EXPRESSIONS);
  if (list)
    for (const [, el] of new Attrs(list).all) {
      const e = new Attrs(el);
      exprs.push({ name: readStr(e.bytes(NFTA_EXPR_NAME)) ?? '', data: new Attrs(e.bytes(NFTA_EXPR_DATA) ?? new Uint8Array(0)) });
    }
  return {
    family: m.payload[0],
    table: readStr(a.bytes(NFTA_RULE_TABLE)) ?? '',
    chain: readStr(a.bytes(NFTA_RULE_CHAIN)) ?? '',
    handle: readBe64(a.bytes(NFTA_RULE_HANDLE)) ?? 0,
    comment: commentOfUserdata(a.bytes(NFTA_RULE_USERDATA)),
    exprs,
  };
}

/** The GETRULE dump request for one chain of a table (the kernel filters by both). */
export function rulesDump(family: NftFamily, table: string, chain: string | undefined, seq: number): Uint8Array {
  const attrs = [str(NFTA_RULE_TABLE, table)];
  if (chain) attrs.push(str(NFTA_RULE_CHAIN, chain));
  return encodeDump(NFT_MSG.GETRULE, family, attrs, seq);
}

/** The GETCHAIN dump request (every chain of the family; filtered by table here). */
export function chainsDump(family: NftFamily, table: string, seq: number): Uint8Array {
  return encodeDump(NFT_MSG.GETCHAIN, family, [str(NFTA_CHAIN_TABLE, table)], seq);
}

/** GETCHAIN of one chain (not a dump): the chain and an ACK, or ENOENT. */
export function chainGet(family: NftFamily, table: string, chain: string, seq: number): Uint8Array {
  return encodeMessage({
    type: (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG.GETCHAIN,
    flags: C.NLM_F_REQUEST | C.NLM_F_ACK,
    seq,
    header: nfgenmsg(NFPROTO[family]),
    attrs: [str(NFTA_CHAIN_TABLE, table), str(NFTA_CHAIN_NAME, chain)],
  });
}

/** A NEWCHAIN message of a dump: table and name. Pure. */
export function decodeChain(m: NlMsg): { table: string; name: string } {
  const a = new Attrs(payloadOf(m));
  return { table: readStr(a.bytes(NFTA_CHAIN_TABLE)) ?? '', name: readStr(a.bytes(NFTA_CHAIN_NAME)) ?? '' };
}

/** The GETSETELEM dump request for one set or map. */
export function elementsDump(family: NftFamily, table: string, set: string, seq: number): Uint8Array {
  return encodeDump(NFT_MSG.GETSETELEM, family, [str(NFTA_SET_ELEM_LIST_TABLE, table), str(NFTA_SET_ELEM_LIST_SET, set)], seq);
}

/** An element of a map as dumped: its key bytes and, for a verdict map, the verdict (code, chain). */
export interface DumpedElement {
  set: string;
  key: Uint8Array;
  verdict?: { code: number; chain?: string };
}

/** A NEWSETELEM message of a dump: its elements. Pure. */
export function decodeElements(m: NlMsg): DumpedElement[] {
  const a = new Attrs(payloadOf(m));
  const set = readStr(a.bytes(NFTA_SET_ELEM_LIST_SET)) ?? '';
  const out: DumpedElement[] = [];
  const list = a.bytes(NFTA_SET_ELEM_LIST_ELEMENTS);
  if (!list) return out;
  for (const [, el] of new Attrs(list).all) {
    const e = new Attrs(el);
    const key = e.nested(NFTA_SET_ELEM_KEY)?.bytes(NFTA_DATA_VALUE);
    if (!key) continue;
    const v = e.nested(NFTA_SET_ELEM_DATA)?.nested(NFTA_DATA_VERDICT);
    const code = v && readBe32(v.bytes(NFTA_VERDICT_CODE));
    out.push({
      set,
      key: key.slice(),
      ...(code !== undefined ? { verdict: { code: code | 0, chain: readStr(v?.bytes(NFTA_VERDICT_CHAIN)) } } : {}),
    });
  }
  return out;
}

/** The target chain of a rule's `jump`/`goto` (an immediate verdict), if it has one. Pure. */
export function jumpTarget(r: DumpedRule): string | undefined {
  for (const e of r.exprs) {
    if (e.name !== 'immediate') continue;
    const v = e.data.nested(2 /* NFTA_IMMEDIATE_DATA */)?.nested(NFTA_DATA_VERDICT);
    const code = readBe32(v?.bytes(NFTA_VERDICT_CODE));
    if (code !== undefined && ((code | 0) === NFT_JUMP || (code | 0) === NFT_GOTO)) return readStr(v?.bytes(NFTA_VERDICT_CHAIN));
  }
  return undefined;
}

/** The source address a masquerade rule matches (`ip[6] saddr A`), from its bytecode. Pure. */
export function saddrOf(r: DumpedRule): string | undefined {
  for (let i = 0; i + 1 < r.exprs.length; i++) {
    const p = r.exprs[i];
    const c = r.exprs[i + 1];
    if (p.name !== 'payload' || c.name !== 'cmp') continue;
    const off = readBe32(p.data.bytes(3));
    const len = readBe32(p.data.bytes(4));
    const op = readBe32(c.data.bytes(2));
    const v = c.data.nested(3)?.bytes(NFTA_DATA_VALUE);
    if (op !== CMP_EQ || !v || readBe32(p.data.bytes(2)) !== PAYLOAD_NETWORK) continue;
    if ((off === 12 && len === 4 && v.length === 4) || (off === 8 && len === 16 && v.length === 16)) return formatIp(v);
  }
  return undefined;
}

// ---------------------------------------------------------------- more objects (portmap's table)

const NFTA_TABLE_USERDATA = 6;
const NFTA_SET_TABLE = 1;
const NFTA_SET_NAME = 2;
const NFTA_SET_FLAGS = 3;
const NFTA_SET_KEY_TYPE = 4;
const NFTA_SET_KEY_LEN = 5;
const NFTA_SET_DATA_TYPE = 6;
const NFTA_SET_DATA_LEN = 7;
const NFTA_SET_DESC = 9;
const NFTA_SET_DESC_SIZE = 1;
const NFTA_SET_ID = 10;
const NFTA_SET_USERDATA = 13;
const NFTA_SET_ELEM_LIST_SET_ID = 4;
const NFTA_SET_ELEM_FLAGS = 3;
export const NFT_SET_ELEM_INTERVAL_END = 1;
/** set flags */
export const NFT_SET_ANONYMOUS = 0x1;
export const NFT_SET_CONSTANT = 0x2;
export const NFT_SET_INTERVAL = 0x4;
export const NFT_SET_MAP = 0x8;
/** nft's data type ids (datatype.h), and concatenations of them (6 bits each) */
export const TYPE = { ipv4_addr: 7, ipv6_addr: 8, inet_proto: 12, inet_service: 13, verdict: 0xffffff00 } as const;
export const concatType = (...ids: number[]): number => ids.reduce((t, id) => (t << 6) | id, 0);

/** `add table FAMILY NAME { comment "…"; }` (the comment: userdata TLV type 0). */
export function addTableWithComment(family: NftFamily, table: string, comment: string): NftMsg {
  const m = addTable(family, table);
  m.attrs.push(bytes(NFTA_TABLE_USERDATA, commentUserdata(comment)));
  return m;
}

/** `add chain FAMILY T NAME` (a regular chain). */
export function addChain(family: NftFamily, table: string, chain: string): NftMsg {
  return {
    msg: NFT_MSG.NEWCHAIN,
    family,
    flags: C.NLM_F_CREATE,
    attrs: [str(NFTA_CHAIN_TABLE, table), str(NFTA_CHAIN_NAME, chain)],
    what: `add chain ${family} ${table} ${chain}`,
  };
}

/** A set or map to add: `userdata` is nft's (the key's byte order and type, as `nft list` reads them back). */
export interface SetSpec {
  name: string;
  /** batch-local id (NFTA_SET_ID), what lookups and elements of the same batch refer to */
  id: number;
  flags: number;
  keyType: number;
  keyLen: number;
  dataType?: number;
  dataLen?: number;
  /** number of elements of a constant set (NFTA_SET_DESC_SIZE) */
  size?: number;
  userdata: Uint8Array;
}

/** `add map|set FAMILY T NAME { … }` (NEWSET, created when absent). */
export function addSet(family: NftFamily, table: string, s: SetSpec): NftMsg {
  const attrs = [
    str(NFTA_SET_TABLE, table),
    str(NFTA_SET_NAME, s.name),
    be32(NFTA_SET_FLAGS, s.flags),
    be32(NFTA_SET_KEY_TYPE, s.keyType),
    be32(NFTA_SET_KEY_LEN, s.keyLen),
  ];
  if (s.dataType !== undefined) attrs.push(be32(NFTA_SET_DATA_TYPE, s.dataType), be32(NFTA_SET_DATA_LEN, s.dataLen ?? 0));
  attrs.push(be32(NFTA_SET_ID, s.id));
  if (s.size !== undefined) attrs.push(nest(NFTA_SET_DESC, [be32(NFTA_SET_DESC_SIZE, s.size)]));
  attrs.push(bytes(NFTA_SET_USERDATA, s.userdata));
  return {
    msg: NFT_MSG.NEWSET,
    family,
    flags: C.NLM_F_CREATE,
    attrs,
    what: `add ${s.flags & NFT_SET_MAP ? 'map' : 'set'} ${family} ${table} ${s.name}`,
  };
}

/** An element to add: key bytes, interval-end flag, and for a verdict map the verdict. */
export interface ElementSpec {
  key: Uint8Array;
  end?: boolean;
  verdict?: { code: number; chain: string };
}

/** `add|create element FAMILY T SET { … }` (NEWSETELEM; `create`: EEXIST when a key is there). */
export function addElements(family: NftFamily, table: string, set: string, setId: number, els: ElementSpec[], create: boolean): NftMsg {
  const list = els.map((e, i) => {
    const a: AttrSpec[] = [];
    if (e.end) a.push(be32(NFTA_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END));
    a.push(nest(NFTA_SET_ELEM_KEY, [bytes(NFTA_DATA_VALUE, e.key)]));
    if (e.verdict)
      a.push(
        nest(NFTA_SET_ELEM_DATA, [
          nest(NFTA_DATA_VERDICT, [be32(NFTA_VERDICT_CODE, e.verdict.code), str(NFTA_VERDICT_CHAIN, e.verdict.chain)]),
        ]),
      );
    return nest(i + 1, a); // nft numbers the list's elements 1, 2, …
  });
  return {
    msg: NFT_MSG.NEWSETELEM,
    family,
    flags: C.NLM_F_CREATE | (create ? C.NLM_F_EXCL : 0),
    attrs: [
      str(NFTA_SET_ELEM_LIST_TABLE, table),
      str(NFTA_SET_ELEM_LIST_SET, set),
      be32(NFTA_SET_ELEM_LIST_SET_ID, setId),
      nest(NFTA_SET_ELEM_LIST_ELEMENTS, list),
    ],
    what: `${create ? 'create' : 'add'} element ${family} ${table} ${set}`,
  };
}

/** More expressions, with explicit registers (nft's choice for each rule, `nft --debug=netlink`). */
export const ex2 = {
  /** [ meta load KEY => reg R ] */
  metaLoad: (key: number, reg: number): Expr => expr('meta', [be32(2, key), be32(1, reg)]),
  /** [ meta set KEY with reg R ] */
  metaSet: (key: number, reg: number): Expr => expr('meta', [be32(2, key), be32(3 /* SREG */, reg)]),
  /** [ payload load LEN b @ BASE header + OFFSET => reg R ] */
  payload: (base: number, offset: number, len: number, reg: number): Expr =>
    expr('payload', [be32(1, reg), be32(2, base), be32(3, offset), be32(4, len)]),
  /** [ lookup reg SREG set NAME (dreg 0: a verdict map) ] */
  lookup: (set: string, setId: number, sreg: number, dreg?: number): Expr =>
    expr('lookup', [
      be32(2 /* SREG */, sreg),
      ...(dreg !== undefined ? [be32(3 /* DREG */, dreg)] : []),
      str(1 /* SET */, set),
      be32(4 /* SET_ID */, setId),
    ]),
  /** [ fib daddr type => reg 1 ] */
  fibDaddrType: (): Expr =>
    expr('fib', [be32(3 /* FLAGS */, 2 /* DADDR */), be32(2 /* RESULT */, 3 /* ADDRTYPE */), be32(1 /* DREG */, REG_1)]),
  /** [ immediate reg 0 jump|goto -> CHAIN ] */
  verdict: (code: number, chain: string): Expr =>
    expr('immediate', [
      be32(1 /* DREG */, 0),
      nest(2 /* DATA */, [nest(NFTA_DATA_VERDICT, [be32(NFTA_VERDICT_CODE, code), str(NFTA_VERDICT_CHAIN, chain)])]),
    ]),
  /** [ immediate reg R VALUE ] */
  immediate: (reg: number, value: Uint8Array): Expr => expr('immediate', [be32(1, reg), nest(2, [bytes(NFTA_DATA_VALUE, value)])]),
  /** [ immediate reg 0 drop|accept ] (a verdict without a chain) */
  verdictCode: (code: number): Expr => expr('immediate', [be32(1, 0), nest(2, [nest(NFTA_DATA_VERDICT, [be32(NFTA_VERDICT_CODE, code)])])]),
  /** [ nat dnat FAMILY addr_min reg 1 proto_min reg 2 flags 0x2 ] */
  dnat: (family: 4 | 6): Expr =>
    expr('nat', [
      be32(1 /* TYPE */, 1 /* DNAT */),
      be32(2 /* FAMILY */, family === 4 ? NFPROTO.ip : NFPROTO.ip6),
      be32(3 /* REG_ADDR_MIN */, 1),
      be32(5 /* REG_PROTO_MIN */, 2),
      be32(7 /* FLAGS */, 2 /* PROTO_SPECIFIED */),
    ]),
  /** [ cmp OP reg R VALUE ] */
  cmp: (op: number, value: Uint8Array, reg = REG_1): Expr =>
    expr('cmp', [be32(1, reg), be32(2, op), nest(3, [bytes(NFTA_DATA_VALUE, value)])]),
  /** [ bitwise reg 1 = ( reg 1 & MASK ) ^ XOR ] with NFTA_BITWISE_OP (bool), as nft writes an explicit `&`/`|` */
  bitwise: (mask: Uint8Array, xor: Uint8Array): Expr =>
    expr('bitwise', [
      be32(1 /* SREG */, REG_1),
      be32(2 /* DREG */, REG_1),
      be32(6 /* OP */, 0 /* NFT_BITWISE_BOOL */),
      be32(3 /* LEN */, mask.length),
      nest(4 /* MASK */, [bytes(NFTA_DATA_VALUE, mask)]),
      nest(5 /* XOR */, [bytes(NFTA_DATA_VALUE, xor)]),
    ]),
};
