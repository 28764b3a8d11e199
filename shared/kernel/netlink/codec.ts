/**
 * rtnetlink messages over Uint8Array/DataView, in host byte order (little-endian on every
 * machine we ship for): nlmsghdr, ifinfomsg, ifaddrmsg, rtmsg, attributes (nested ones too:
 * IFLA_LINKINFO > IFLA_INFO_DATA, VETH_INFO_PEER), NLMSG_ERROR with its extended ack. Pure:
 * no I/O, unit-tested against replies captured from the kernel (test/fixtures/netlink/).
 */
import * as C from './constants.ts';
import { errnoName, errnoText } from './errno.ts';

const LE = true;
export const align4 = (n: number): number => (n + 3) & ~3;

// ---------------------------------------------------------------- attributes (encoding)

/** An attribute to encode: raw bytes or nested attributes (NLA_F_NESTED set when `nested`). */
export interface AttrSpec {
  type: number;
  value: Uint8Array | AttrSpec[];
  /** set NLA_F_NESTED on a nest (the kernel accepts both; IFLA_LINKINFO is sent without, as iproute2 does) */
  flagNested?: boolean;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export const attr = {
  bytes: (type: number, value: Uint8Array): AttrSpec => ({ type, value }),
  u8: (type: number, n: number): AttrSpec => ({ type, value: Uint8Array.of(n & 0xff) }),
  u16: (type: number, n: number): AttrSpec => {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, n, LE);
    return { type, value: b };
  },
  u32: (type: number, n: number): AttrSpec => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n >>> 0, LE);
    return { type, value: b };
  },
  i32: (type: number, n: number): AttrSpec => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, n, LE);
    return { type, value: b };
  },
  /** NUL-terminated string (IFLA_IFNAME, IFLA_INFO_KIND) */
  str: (type: number, s: string): AttrSpec => {
    const e = enc.encode(s);
    const b = new Uint8Array(e.length + 1);
    b.set(e);
    return { type, value: b };
  },
  nest: (type: number, children: AttrSpec[], flagNested = false): AttrSpec => ({ type, value: children, flagNested }),
};

export function attrsLength(attrs: AttrSpec[]): number {
  let n = 0;
  for (const a of attrs) n += align4(C.NLA_HDRLEN + (a.value instanceof Uint8Array ? a.value.length : attrsLength(a.value)));
  return n;
}

/** Write `attrs` at `off` of `view`; returns the offset after them. */
export function writeAttrs(view: DataView, bytes: Uint8Array, off: number, attrs: AttrSpec[]): number {
  for (const a of attrs) {
    const start = off;
    let len: number;
    if (a.value instanceof Uint8Array) {
      len = C.NLA_HDRLEN + a.value.length;
      bytes.set(a.value, off + C.NLA_HDRLEN);
    } else {
      len = writeAttrs(view, bytes, off + C.NLA_HDRLEN, a.value) - off;
    }
    if (len > 0xffff) throw new RangeError(`netlink attribute ${a.type} too long (${len} bytes)`);
    view.setUint16(start, len, LE);
    view.setUint16(start + 2, a.type | (a.flagNested ? C.NLA_F_NESTED : 0), LE);
    off = start + align4(len);
  }
  return off;
}

// ---------------------------------------------------------------- fixed headers

export interface IfInfoMsg {
  family: number;
  type: number;
  index: number;
  flags: number;
  change: number;
}
export const IFINFOMSG_LEN = 16;

export function ifinfomsg(m: Partial<IfInfoMsg> = {}): Uint8Array {
  const b = new Uint8Array(IFINFOMSG_LEN);
  const v = new DataView(b.buffer);
  v.setUint8(0, m.family ?? C.AF_UNSPEC);
  v.setUint16(2, m.type ?? 0, LE);
  v.setInt32(4, m.index ?? 0, LE);
  v.setUint32(8, (m.flags ?? 0) >>> 0, LE);
  v.setUint32(12, (m.change ?? 0) >>> 0, LE);
  return b;
}

export function parseIfinfomsg(p: Uint8Array): IfInfoMsg {
  const v = view(p);
  return {
    family: v.getUint8(0),
    type: v.getUint16(2, LE),
    index: v.getInt32(4, LE),
    flags: v.getUint32(8, LE),
    change: v.getUint32(12, LE),
  };
}

export interface IfAddrMsg {
  family: number;
  prefixlen: number;
  flags: number;
  scope: number;
  index: number;
}
export const IFADDRMSG_LEN = 8;

export function ifaddrmsg(m: Partial<IfAddrMsg> = {}): Uint8Array {
  const b = new Uint8Array(IFADDRMSG_LEN);
  const v = new DataView(b.buffer);
  v.setUint8(0, m.family ?? 0);
  v.setUint8(1, m.prefixlen ?? 0);
  v.setUint8(2, m.flags ?? 0);
  v.setUint8(3, m.scope ?? 0);
  v.setUint32(4, m.index ?? 0, LE);
  return b;
}

export function parseIfaddrmsg(p: Uint8Array): IfAddrMsg {
  const v = view(p);
  return { family: v.getUint8(0), prefixlen: v.getUint8(1), flags: v.getUint8(2), scope: v.getUint8(3), index: v.getUint32(4, LE) };
}

export interface RtMsg {
  family: number;
  dstLen: number;
  srcLen: number;
  tos: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
}
export const RTMSG_LEN = 12;

export function rtmsg(m: Partial<RtMsg> = {}): Uint8Array {
  const b = new Uint8Array(RTMSG_LEN);
  const v = new DataView(b.buffer);
  v.setUint8(0, m.family ?? 0);
  v.setUint8(1, m.dstLen ?? 0);
  v.setUint8(2, m.srcLen ?? 0);
  v.setUint8(3, m.tos ?? 0);
  v.setUint8(4, m.table ?? 0);
  v.setUint8(5, m.protocol ?? 0);
  v.setUint8(6, m.scope ?? 0);
  v.setUint8(7, m.type ?? 0);
  v.setUint32(8, (m.flags ?? 0) >>> 0, LE);
  return b;
}

export function parseRtmsg(p: Uint8Array): RtMsg {
  const v = view(p);
  return {
    family: v.getUint8(0),
    dstLen: v.getUint8(1),
    srcLen: v.getUint8(2),
    tos: v.getUint8(3),
    table: v.getUint8(4),
    protocol: v.getUint8(5),
    scope: v.getUint8(6),
    type: v.getUint8(7),
    flags: v.getUint32(8, LE),
  };
}

// ---------------------------------------------------------------- messages

export interface NlRequest {
  type: number;
  flags: number;
  seq?: number;
  pid?: number;
  /** the fixed header (ifinfomsg, ifaddrmsg, rtmsg) */
  header: Uint8Array;
  attrs?: AttrSpec[];
}

/** One nlmsghdr + fixed header + attributes. */
export function encodeMessage(r: NlRequest): Uint8Array {
  const attrs = r.attrs ?? [];
  const len = C.NLMSG_HDRLEN + align4(r.header.length) + attrsLength(attrs);
  const bytes = new Uint8Array(len);
  const v = new DataView(bytes.buffer);
  v.setUint32(0, len, LE);
  v.setUint16(4, r.type, LE);
  v.setUint16(6, r.flags, LE);
  v.setUint32(8, (r.seq ?? 0) >>> 0, LE);
  v.setUint32(12, (r.pid ?? 0) >>> 0, LE);
  bytes.set(r.header, C.NLMSG_HDRLEN);
  writeAttrs(v, bytes, C.NLMSG_HDRLEN + align4(r.header.length), attrs);
  return bytes;
}

export interface NlMsg {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  /** everything after the nlmsghdr */
  payload: Uint8Array;
}

const view = (p: Uint8Array): DataView => new DataView(p.buffer, p.byteOffset, p.byteLength);

/** Split a datagram into messages; a truncated or malformed header ends the list with an error. */
export function parseMessages(buf: Uint8Array): NlMsg[] {
  const out: NlMsg[] = [];
  const v = view(buf);
  let off = 0;
  while (off + C.NLMSG_HDRLEN <= buf.length) {
    const len = v.getUint32(off, LE);
    if (len < C.NLMSG_HDRLEN || off + len > buf.length)
      throw new RangeError(`malformed netlink message at offset ${off} (length ${len}, ${buf.length - off} bytes left)`);
    out.push({
      type: v.getUint16(off + 4, LE),
      flags: v.getUint16(off + 6, LE),
      seq: v.getUint32(off + 8, LE),
      pid: v.getUint32(off + 12, LE),
      payload: buf.subarray(off + C.NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** Decoded attributes: type → value (the last one wins for a repeated type; `all` keeps each). */
export class Attrs {
  readonly map = new Map<number, Uint8Array>();
  readonly all: Array<[number, Uint8Array]> = [];
  constructor(buf: Uint8Array, offset = 0) {
    const v = view(buf);
    let off = offset;
    while (off + C.NLA_HDRLEN <= buf.length) {
      const len = v.getUint16(off, LE);
      if (len < C.NLA_HDRLEN || off + len > buf.length)
        throw new RangeError(`malformed netlink attribute at offset ${off} (length ${len})`);
      const type = v.getUint16(off + 2, LE) & C.NLA_TYPE_MASK;
      const value = buf.subarray(off + C.NLA_HDRLEN, off + len);
      this.map.set(type, value);
      this.all.push([type, value]);
      off += align4(len);
    }
  }
  has(t: number): boolean {
    return this.map.has(t);
  }
  bytes(t: number): Uint8Array | undefined {
    return this.map.get(t);
  }
  u8(t: number): number | undefined {
    const b = this.map.get(t);
    return b && b.length >= 1 ? b[0] : undefined;
  }
  u16(t: number): number | undefined {
    const b = this.map.get(t);
    return b && b.length >= 2 ? view(b).getUint16(0, LE) : undefined;
  }
  u32(t: number): number | undefined {
    const b = this.map.get(t);
    return b && b.length >= 4 ? view(b).getUint32(0, LE) : undefined;
  }
  i32(t: number): number | undefined {
    const b = this.map.get(t);
    return b && b.length >= 4 ? view(b).getInt32(0, LE) : undefined;
  }
  str(t: number): string | undefined {
    const b = this.map.get(t);
    if (!b) return undefined;
    const z = b.indexOf(0);
    return dec.decode(z >= 0 ? b.subarray(0, z) : b);
  }
  nested(t: number): Attrs | undefined {
    const b = this.map.get(t);
    return b ? new Attrs(b) : undefined;
  }
}

// ---------------------------------------------------------------- errors

export interface NlError {
  /** positive errno; 0 is an ACK */
  errno: number;
  /** the kernel's extended-ack text (NLMSGERR_ATTR_MSG), e.g. "Unknown device type" */
  message?: string;
  /** the type of the request this answers */
  requestType: number;
  requestSeq: number;
}

/** The payload of an NLMSG_ERROR: struct nlmsgerr {int error; struct nlmsghdr msg;} + extack TLVs. */
export function parseError(m: NlMsg): NlError {
  const v = view(m.payload);
  const errno = 0 - v.getInt32(0, LE); // 0 - x: an ACK is +0, not -0
  const requestType = v.getUint16(4 + 4, LE);
  const requestSeq = v.getUint32(4 + 8, LE);
  const out: NlError = { errno, requestType, requestSeq };
  if (m.flags & C.NLM_F_ACK_TLVS) {
    // the echoed request: its header only when capped, the whole request otherwise
    const reqLen = m.flags & C.NLM_F_CAPPED ? C.NLMSG_HDRLEN : v.getUint32(4, LE);
    const tlvStart = 4 + align4(reqLen);
    if (tlvStart <= m.payload.length) {
      const msg = new Attrs(m.payload, tlvStart).str(C.NLMSGERR_ATTR_MSG);
      if (msg) out.message = msg;
    }
  }
  return out;
}

/** "RTNETLINK answers: File exists" (as `ip` says it), with the kernel's own message first when it sent one. */
export function describeError(e: NlError): string {
  const ext = e.message ? `Error: ${e.message.replace(/\.?$/, '.')} ` : '';
  return `${ext}RTNETLINK answers: ${errnoText(e.errno)} (${errnoName(e.errno)})`;
}

// ---------------------------------------------------------------- addresses

/** Parse an IPv4 or IPv6 address (no prefix) into its network-order bytes; undefined when malformed. */
export function ipBytes(s: string): Uint8Array | undefined {
  if (s.includes(':')) return ip6Bytes(s);
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const b = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    if (!/^\d{1,3}$/.test(parts[i])) return undefined;
    const n = Number(parts[i]);
    if (n > 255) return undefined;
    b[i] = n;
  }
  return b;
}

function ip6Bytes(s: string): Uint8Array | undefined {
  let text = s;
  let tail: Uint8Array | undefined;
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    tail = ipBytes(text.slice(lastColon + 1));
    if (!tail) return undefined;
    text = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const words = (h: string): number[] | undefined => {
    if (h === '') return [];
    const out: number[] = [];
    for (const w of h.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(w)) return undefined;
      out.push(parseInt(w, 16));
    }
    return out;
  };
  const head = words(halves[0]);
  const rest = halves.length === 2 ? words(halves[1]) : [];
  if (!head || !rest) return undefined;
  const fill = 8 - head.length - rest.length;
  if (halves.length === 2 ? fill < 1 : fill !== 0) return undefined;
  const all = [...head, ...new Array<number>(halves.length === 2 ? fill : 0).fill(0), ...rest];
  const b = new Uint8Array(16);
  all.forEach((w, i) => {
    b[2 * i] = w >> 8;
    b[2 * i + 1] = w & 0xff;
  });
  if (tail) b.set(tail, 12);
  return b;
}

/** inet_ntop(3): dotted quad, or RFC 5952 text with glibc's embedded-IPv4 forms. */
export function formatIp(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length !== 16) return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push((b[2 * i] << 8) | b[2 * i + 1]);
  let bestBase = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      bestBase = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) bestBase = -1;
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (bestBase !== -1 && i >= bestBase && i < bestBase + bestLen) {
      if (i === bestBase) out += ':';
      continue;
    }
    if (i !== 0) out += ':';
    if (i === 6 && bestBase === 0 && (bestLen === 6 || (bestLen === 5 && w[5] === 0xffff))) {
      out += `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
      break;
    }
    out += w[i].toString(16);
  }
  if (bestBase !== -1 && bestBase + bestLen === 8) out += ':';
  return out;
}

export const formatMac = (b: Uint8Array): string => [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');

export function macBytes(s: string): Uint8Array | undefined {
  const parts = s.split(':');
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{1,2}$/.test(p))) return undefined;
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}
