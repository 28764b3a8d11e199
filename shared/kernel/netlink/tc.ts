/**
 * The `tc` commands of bandwidth's hot path, as rtnetlink requests (RTM_NEWQDISC,
 * RTM_DELQDISC, RTM_NEWTFILTER), built as iproute2 6.1's `tc` builds them: a TBF at a root
 * (with tc's rate table, buffer in ticks and limit from the latency), the ingress qdisc, a u32
 * match-all filter with a mirred egress redirect, and deleting a root or ingress qdisc.
 * `parseTcCommand` reads one `tc -batch` line into an operation; anything it does not know
 * (HTB, classes, subnet filters, other options) returns undefined and the whole batch runs
 * through `tc`, so a command is never half-understood (as ipcmd.ts for `ip`). Pure: link
 * indexes and the kernel's clock figures come from the caller.
 */
import * as C from './constants.ts';
import { attr, Attrs, ipBytes, type AttrSpec, type NlMsg, type NlRequest } from './codec.ts';

export const RTM_NEWQDISC = 36;
export const RTM_DELQDISC = 37;
export const RTM_GETQDISC = 38;
export const RTM_NEWTFILTER = 44;
export const RTM_DELTFILTER = 45;
export const RTM_GETTFILTER = 46;

export const TCA_KIND = 1;
export const TCA_OPTIONS = 2;

export const TC_H_ROOT = 0xffffffff;
export const TC_H_INGRESS = 0xfffffff1;

const TCA_TBF_PARMS = 1;
const TCA_TBF_RTAB = 2;
const TCA_TBF_RATE64 = 4;
const TCA_TBF_BURST = 6;

const TCA_U32_CLASSID = 1;
const TCA_U32_SEL = 5;
const TCA_U32_ACT = 7;
const TC_U32_TERMINAL = 1;

const TCA_ACT_KIND = 1;
const TCA_ACT_OPTIONS = 2;
const TCA_MIRRED_PARMS = 2;
const TCA_EGRESS_REDIR = 1;
const TC_ACT_STOLEN = 4;

const ETH_P_ALL = 0x0003;
const LINKLAYER_ETHERNET = 1;
const TIME_UNITS_PER_SEC = 1_000_000;

export const RTM_NEWTCLASS = 40;
export const RTM_GETTCLASS = 42;

const TCA_HTB_PARMS = 1;
const TCA_HTB_INIT = 2;
const TCA_HTB_CTAB = 3;
const TCA_HTB_RTAB = 4;
const TCA_HTB_RATE64 = 6;
const TCA_HTB_CEIL64 = 7;
/** tc's HTB class mtu (q_htb.c) and the scheduler clock tc divides a rate by for a default burst */
const HTB_MTU = 1600;

export type TcOp =
  | { op: 'tbf'; dev: string; handle: number; rateBytes: number; burstBytes: number; latencyUs: number }
  | { op: 'htb'; dev: string; handle: number; defcls: number }
  | { op: 'htb-class'; dev: string; parent: number; classid: number; rateBytes: number; burst: number; cburst?: number; quantum: number }
  | {
      op: 'u32-match';
      dev: string;
      parent: number;
      prio: number;
      family: 4 | 6;
      field: 'src' | 'dst';
      addr: Uint8Array;
      len: number;
      classid: number;
    }
  | { op: 'ingress'; dev: string }
  | { op: 'redirect'; dev: string; prio: number; flowid: number; to: string }
  | { op: 'qdisc-del'; dev: string; root: true; handle: number }
  | { op: 'qdisc-del'; dev: string; ingress: true };

/** "1:" / "ffff:" / "1:1" → the 32-bit handle (major:minor, hex as tc reads them). */
export function parseHandle(s: string | undefined, minor = false): number | undefined {
  if (!s) return undefined;
  const m = minor ? /^([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(s) : /^([0-9a-f]{1,4}):$/i.exec(s);
  if (!m) return undefined;
  return ((parseInt(m[1], 16) << 16) | (minor ? parseInt(m[2], 16) : 0)) >>> 0;
}

const uint = (s: string | undefined): number | undefined => (s !== undefined && /^\d+$/.test(s) ? Number(s) : undefined);

/** "20000000bit" → bytes per second (what tc's get_rate64 makes of it); only the plain "bit" unit. */
function rateOf(s: string | undefined): number | undefined {
  const m = s ? /^(\d+)bit$/.exec(s) : null;
  if (!m) return undefined;
  const bytes = Math.trunc(Number(m[1]) / 8);
  return bytes > 0 && Number.isSafeInteger(bytes) ? bytes : undefined;
}

const devName = (s: string | undefined): string | undefined => (s && s.length <= 15 && !s.includes('/') ? s : undefined);

/** One `tc` argv (without "tc") → an operation, or undefined when this module does not do it. */
export function parseTcCommand(a: string[]): TcOp | undefined {
  const w = a.join(' ');
  let m: RegExpExecArray | null;
  // qdisc add dev D root handle H tbf rate Rbit burst B latency Lus
  if ((m = /^qdisc add dev (\S+) root handle (\S+) tbf rate (\S+) burst (\d+) latency (\d+)us$/.exec(w))) {
    const [dev, handle, rate, burst, lat] = [devName(m[1]), parseHandle(m[2]), rateOf(m[3]), uint(m[4]), uint(m[5])];
    if (!dev || handle === undefined || !rate || !burst || burst > 0xffffffff || !lat || lat > 0xffffffff) return undefined;
    return { op: 'tbf', dev, handle, rateBytes: rate, burstBytes: burst, latencyUs: lat };
  }
  if ((m = /^qdisc add dev (\S+) root handle (\S+) htb default ([0-9a-f]{1,8})$/.exec(w))) {
    const [dev, handle] = [devName(m[1]), parseHandle(m[2])];
    return dev && handle !== undefined ? { op: 'htb', dev, handle, defcls: parseInt(m[3], 16) } : undefined;
  }
  if ((m = /^class add dev (\S+) parent (\S+) classid (\S+) htb rate (\S+) burst (\d+)(?: cburst (\d+))? quantum (\d+)$/.exec(w))) {
    const [dev, parent, classid, rate, burst, quantum] = [
      devName(m[1]),
      parseHandle(m[2]),
      parseHandle(m[3], true),
      rateOf(m[4]),
      uint(m[5]),
      uint(m[7]),
    ];
    const cburst = m[6] === undefined ? undefined : uint(m[6]);
    const ok = (n: number | undefined): boolean => n !== undefined && n > 0 && n <= 0xffffffff;
    if (!dev || parent === undefined || classid === undefined || !rate || !ok(burst) || (m[6] !== undefined && !ok(cburst)) || !ok(quantum))
      return undefined;
    return { op: 'htb-class', dev, parent, classid, rateBytes: rate, burst: burst!, cburst, quantum: quantum! };
  }
  if ((m = /^filter add dev (\S+) parent (\S+) protocol (ip|ipv6) prio (\d+) u32 match (ip|ip6) (src|dst) (\S+) classid (\S+)$/.exec(w))) {
    const [dev, parent, prio, classid] = [devName(m[1]), parseHandle(m[2]), uint(m[4]), parseHandle(m[8], true)];
    const family = m[3] === 'ip' ? 4 : 6;
    if ((m[5] === 'ip') !== (family === 4)) return undefined;
    const [ip, lenText, extra] = m[7].split('/');
    const addr = ipBytes(ip);
    const len = lenText === undefined ? undefined : uint(lenText);
    if (!dev || parent === undefined || !prio || prio > 0xffff || classid === undefined || !addr || extra !== undefined) return undefined;
    if (addr.length !== (family === 4 ? 4 : 16) || len === undefined || len > addr.length * 8) return undefined;
    return { op: 'u32-match', dev, parent, prio, family, field: m[6] as 'src' | 'dst', addr, len, classid };
  }
  if ((m = /^qdisc add dev (\S+) handle ffff: ingress$/.exec(w))) {
    const dev = devName(m[1]);
    return dev ? { op: 'ingress', dev } : undefined;
  }
  if (
    (m =
      /^filter add dev (\S+) parent ffff: protocol all prio (\d+) u32 match u32 0 0 flowid (\S+) action mirred egress redirect dev (\S+)$/.exec(
        w,
      ))
  ) {
    const [dev, prio, flowid, to] = [devName(m[1]), uint(m[2]), parseHandle(m[3], true), devName(m[4])];
    if (!dev || !prio || prio > 0xffff || flowid === undefined || !to) return undefined;
    return { op: 'redirect', dev, prio, flowid, to };
  }
  if ((m = /^qdisc del dev (\S+) root handle (\S+)$/.exec(w))) {
    const [dev, handle] = [devName(m[1]), parseHandle(m[2])];
    return dev && handle !== undefined ? { op: 'qdisc-del', dev, root: true, handle } : undefined;
  }
  if ((m = /^qdisc del dev (\S+) handle ffff: ingress$/.exec(w))) {
    const dev = devName(m[1]);
    return dev ? { op: 'qdisc-del', dev, ingress: true } : undefined;
  }
  return undefined;
}

/** Every line or none, as parseIpBatch. */
export function parseTcBatch(cmds: string[][]): TcOp[] | undefined {
  const out: TcOp[] = [];
  for (const c of cmds) {
    const op = parseTcCommand(c);
    if (!op) return undefined;
    out.push(op);
  }
  return out;
}

/** struct tcmsg: family, pad, ifindex, handle, parent, info. */
export function tcmsg(m: { index: number; handle?: number; parent?: number; info?: number }): Uint8Array {
  const b = new Uint8Array(20);
  const v = new DataView(b.buffer);
  v.setInt32(4, m.index, true);
  v.setUint32(8, (m.handle ?? 0) >>> 0, true);
  v.setUint32(12, (m.parent ?? 0) >>> 0, true);
  v.setUint32(16, (m.info ?? 0) >>> 0, true);
  return b;
}

/** The kernel's packet-scheduler clock as tc reads it (/proc/net/psched): ticks per microsecond. */
export function tickInUsec(psched: string): number {
  const [t2us, us2t, clockRes] = psched
    .trim()
    .split(/\s+/)
    .map((x) => parseInt(x, 16));
  if (!us2t || !clockRes) return 1;
  const t2 = clockRes === 1_000_000_000 ? us2t : t2us;
  return (t2 / us2t) * (clockRes / TIME_UNITS_PER_SEC);
}

/** C's conversion of a double to a 32-bit unsigned (x86-64: truncate to 64 bits, keep the low 32). */
const toU32 = (x: number): number => Number(BigInt.asUintN(32, BigInt(Math.trunc(x))));

/** tc_calc_xmittime (iproute2 6.1): microseconds to send `size` bytes at `rate` B/s, in ticks. */
export function xmittime(rate: number, size: number, tick: number): number {
  return toU32(toU32(TIME_UNITS_PER_SEC * (size / rate)) * tick); // size / rate first, in doubles, as tc_calc_xmittime
}

/**
 * TCA_OPTIONS of `tc qdisc add ... tbf rate R burst B latency L` (q_tbf.c, tc_core.c of
 * iproute2 6.1): struct tc_tbf_qopt with the rate spec (cell_log 3 from the default 2047
 * mtu, ethernet link layer, cell_align -1), limit = rate × latency + burst, buffer = the
 * burst's transmit time in ticks; TCA_TBF_BURST; TCA_TBF_RATE64 above 4 GB/s; the rate table.
 */
export function tbfOptions(rateBytes: number, burstBytes: number, latencyUs: number, tick: number): AttrSpec[] {
  const rate32 = rateBytes >= 2 ** 32 ? 0xffffffff : rateBytes;
  const limit = toU32((rateBytes * latencyUs) / TIME_UNITS_PER_SEC + burstBytes);
  const cellLog = 3; // mtu 2047 >> 3 <= 255
  const rtab = new Uint8Array(1024);
  const rv = new DataView(rtab.buffer);
  for (let i = 0; i < 256; i++) rv.setUint32(i * 4, xmittime(rate32, (i + 1) << cellLog, tick), true);
  const parms = new Uint8Array(36);
  const p = new DataView(parms.buffer);
  p.setUint8(0, cellLog);
  p.setUint8(1, LINKLAYER_ETHERNET);
  p.setInt16(4, -1, true); // cell_align
  p.setUint32(8, rate32, true);
  // peakrate (12 bytes) stays zero
  p.setUint32(24, limit, true);
  p.setUint32(28, xmittime(rate32, burstBytes, tick), true);
  const opts: AttrSpec[] = [attr.bytes(TCA_TBF_PARMS, parms), attr.u32(TCA_TBF_BURST, burstBytes)];
  if (rateBytes >= 2 ** 32) {
    const r64 = new Uint8Array(8);
    new DataView(r64.buffer).setBigUint64(0, BigInt(rateBytes), true);
    opts.push(attr.bytes(TCA_TBF_RATE64, r64));
  }
  opts.push(attr.bytes(TCA_TBF_RTAB, rtab));
  return opts;
}

/** tc_calc_rtable for `rate` with the HTB mtu: 256 transmit times for sizes 8·(i+1). */
function rateTable(rate32: number, tick: number): Uint8Array {
  const rtab = new Uint8Array(1024);
  const rv = new DataView(rtab.buffer);
  for (let i = 0; i < 256; i++) rv.setUint32(i * 4, xmittime(rate32, (i + 1) << 3, tick), true);
  return rtab;
}

const u64 = (n: number): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return b;
};

/**
 * TCA_OPTIONS of `tc class add … htb rate R burst B [cburst C] quantum Q` (q_htb.c of 6.1):
 * ceil = rate; a missing cburst is ceil / HZ + mtu 1600 (HZ from /proc/net/psched: 1e9 on a
 * nanosecond clock); buffer/cbuffer the transmit times of those at the 64-bit rates; rate
 * spec cell_log 3 from mtu 1600; RATE64/CEIL64 above 4 GB/s; the rate and ceil tables.
 */
export function htbClassOptions(op: Extract<TcOp, { op: 'htb-class' }>, tick: number, hz: number): AttrSpec[] {
  const rate64 = op.rateBytes;
  const rate32 = rate64 >= 2 ** 32 ? 0xffffffff : rate64;
  const cburst = op.cburst ?? Math.floor(rate64 / hz) + HTB_MTU;
  const parms = new Uint8Array(44);
  const p = new DataView(parms.buffer);
  for (const at of [0, 12]) {
    p.setUint8(at, 3); // cell_log
    p.setUint8(at + 1, LINKLAYER_ETHERNET);
    p.setInt16(at + 4, -1, true);
    p.setUint32(at + 8, rate32, true);
  }
  p.setUint32(24, xmittime(rate64, op.burst, tick), true);
  p.setUint32(28, xmittime(rate64, toU32(cburst), tick), true);
  p.setUint32(32, op.quantum, true);
  const out: AttrSpec[] = [];
  if (rate64 >= 2 ** 32) out.push(attr.bytes(TCA_HTB_RATE64, u64(rate64)), attr.bytes(TCA_HTB_CEIL64, u64(rate64)));
  const table = rateTable(rate32, tick);
  out.push(attr.bytes(TCA_HTB_PARMS, parms), attr.bytes(TCA_HTB_RTAB, table), attr.bytes(TCA_HTB_CTAB, table));
  return out;
}

/** The u32 selector of `match ip|ip6 src|dst A/L` (f_u32.c pack_key): one key per 32-bit word of the prefix, TC_U32_TERMINAL. */
export function u32Selector(family: 4 | 6, field: 'src' | 'dst', addr: Uint8Array, len: number): Uint8Array {
  const base = family === 4 ? (field === 'src' ? 12 : 16) : field === 'src' ? 8 : 24;
  const keys: Array<{ mask: Uint8Array; val: Uint8Array; off: number }> = [];
  // IPv4: always one key (mask 0 for /0); IPv6: a key per word the prefix touches
  const words = family === 4 ? 1 : Math.ceil(len / 32);
  for (let w = 0; w < words; w++) {
    const bits = Math.max(0, Math.min(32, len - 32 * w));
    const mask = new Uint8Array(4);
    for (let b = 0; b < 4; b++) mask[b] = bits >= 8 * (b + 1) ? 0xff : bits > 8 * b ? (0xff << (8 - (bits - 8 * b))) & 0xff : 0;
    const val = Uint8Array.from(addr.subarray(4 * w, 4 * w + 4), (x, i) => x & mask[i]);
    keys.push({ mask, val, off: base + 4 * w });
  }
  const sel = new Uint8Array(16 + 16 * keys.length);
  sel[0] = TC_U32_TERMINAL;
  sel[2] = keys.length;
  const v = new DataView(sel.buffer);
  keys.forEach((k, i) => {
    sel.set(k.mask, 16 + 16 * i);
    sel.set(k.val, 20 + 16 * i);
    v.setInt32(24 + 16 * i, k.off, true);
  });
  return sel;
}

/** TCA_OPTIONS of the u32 match-all filter with `action mirred egress redirect dev` (f_u32.c, m_mirred.c). */
function redirectOptions(flowid: number, toIndex: number): AttrSpec[] {
  const mirred = new Uint8Array(28); // struct tc_mirred: tc_gen (index, capab, action, refcnt, bindcnt), eaction, ifindex
  const mv = new DataView(mirred.buffer);
  mv.setInt32(8, TC_ACT_STOLEN, true);
  mv.setInt32(20, TCA_EGRESS_REDIR, true);
  mv.setUint32(24, toIndex, true);
  const sel = new Uint8Array(32); // struct tc_u32_sel (16 bytes) + one tc_u32_key (mask 0, val 0, off 0, offmask 0)
  sel[0] = TC_U32_TERMINAL;
  sel[2] = 1; // nkeys
  return [
    attr.u32(TCA_U32_CLASSID, flowid),
    attr.nest(TCA_U32_ACT, [
      attr.nest(1, [attr.str(TCA_ACT_KIND, 'mirred'), attr.nest(TCA_ACT_OPTIONS, [attr.bytes(TCA_MIRRED_PARMS, mirred)], true)]),
    ]),
    attr.bytes(TCA_U32_SEL, sel),
  ];
}

export interface TcContext {
  /** ifindex of a link in the socket's netns (throws tc's "Cannot find device" when absent) */
  index(name: string): number;
  /** ticks per microsecond (tickInUsec of /proc/net/psched) */
  tick(): number;
  /** the clock rate tc divides by for a default HTB cburst (hzOf of /proc/net/psched) */
  hz(): number;
}

/** iproute2's get_hz(): the 4th figure of /proc/net/psched when the 3rd is 1000000, else HZ (100). */
export function hzOf(psched: string): number {
  const [, , nom, denom] = psched
    .trim()
    .split(/\s+/)
    .map((x) => parseInt(x, 16));
  return nom === 1_000_000 && denom ? denom : 100;
}

const REQ_ACK = C.NLM_F_REQUEST | C.NLM_F_ACK;
const CREATE = REQ_ACK | C.NLM_F_CREATE | C.NLM_F_EXCL;

/** The netlink request for one operation, as tc builds it. */
export function buildTcRequest(op: TcOp, ctx: TcContext): NlRequest {
  const index = ctx.index(op.dev);
  switch (op.op) {
    case 'tbf':
      return {
        type: RTM_NEWQDISC,
        flags: CREATE,
        header: tcmsg({ index, handle: op.handle, parent: TC_H_ROOT }),
        attrs: [attr.str(TCA_KIND, 'tbf'), attr.nest(TCA_OPTIONS, tbfOptions(op.rateBytes, op.burstBytes, op.latencyUs, ctx.tick()))],
      };
    case 'htb': {
      const glob = new Uint8Array(20); // struct tc_htb_glob: version 3, rate2quantum 10, defcls, debug, direct_pkts
      const g = new DataView(glob.buffer);
      g.setUint32(0, 3, true);
      g.setUint32(4, 10, true);
      g.setUint32(8, op.defcls, true);
      return {
        type: RTM_NEWQDISC,
        flags: CREATE,
        header: tcmsg({ index, handle: op.handle, parent: TC_H_ROOT }),
        attrs: [attr.str(TCA_KIND, 'htb'), attr.nest(TCA_OPTIONS, [attr.bytes(TCA_HTB_INIT, glob)])],
      };
    }
    case 'htb-class':
      return {
        type: RTM_NEWTCLASS,
        flags: CREATE,
        header: tcmsg({ index, handle: op.classid, parent: op.parent }),
        attrs: [attr.str(TCA_KIND, 'htb'), attr.nest(TCA_OPTIONS, htbClassOptions(op, ctx.tick(), ctx.hz()))],
      };
    case 'u32-match': {
      const proto = op.family === 4 ? 0x0008 : 0xdd86; // htons(ETH_P_IP / ETH_P_IPV6)
      return {
        type: RTM_NEWTFILTER,
        flags: CREATE,
        header: tcmsg({ index, parent: op.parent, info: ((op.prio << 16) | proto) >>> 0 }),
        attrs: [
          attr.str(TCA_KIND, 'u32'),
          attr.nest(TCA_OPTIONS, [
            attr.u32(TCA_U32_CLASSID, op.classid),
            attr.bytes(TCA_U32_SEL, u32Selector(op.family, op.field, op.addr, op.len)),
          ]),
        ],
      };
    }
    case 'ingress':
      return {
        type: RTM_NEWQDISC,
        flags: CREATE,
        header: tcmsg({ index, handle: 0xffff0000, parent: TC_H_INGRESS }),
        attrs: [attr.str(TCA_KIND, 'ingress')],
      };
    case 'redirect': {
      // tcm_info: priority in the upper 16 bits, the protocol (network order) in the lower
      const proto = ((ETH_P_ALL & 0xff) << 8) | (ETH_P_ALL >> 8);
      return {
        type: RTM_NEWTFILTER,
        flags: CREATE,
        header: tcmsg({ index, parent: 0xffff0000, info: ((op.prio << 16) | proto) >>> 0 }),
        attrs: [attr.str(TCA_KIND, 'u32'), attr.nest(TCA_OPTIONS, redirectOptions(op.flowid, ctx.index(op.to)))],
      };
    }
    case 'qdisc-del':
      if ('root' in op) return { type: RTM_DELQDISC, flags: REQ_ACK, header: tcmsg({ index, handle: op.handle, parent: TC_H_ROOT }) };
      return {
        type: RTM_DELQDISC,
        flags: REQ_ACK,
        header: tcmsg({ index, handle: 0xffff0000, parent: TC_H_INGRESS }),
        attrs: [attr.str(TCA_KIND, 'ingress')],
      };
  }
}

/** The `tc` words of a line, for messages and traces. */
export const describeTc = (argv: string[]): string => `tc ${argv.slice(0, 8).join(' ')}`;

// ---------------------------------------------------------------- reading (bandwidth's CHECK)

/** A qdisc in the fields `tc -json qdisc show` prints that bandwidth's CHECK reads. */
export interface QdiscEntry {
  ifindex: number;
  kind: string;
  handle: string;
  root?: boolean;
  parent?: string;
  options?: Record<string, unknown>;
}

/** tc_calc_xmitsize (iproute2 6.1): the bytes sent in `ticks` at `rate` B/s, as tc prints a TBF's burst. */
export function xmitsize(rate: number, ticks: number, tick: number): number {
  return toU32((rate * toU32(ticks / tick)) / TIME_UNITS_PER_SEC);
}

const hexHandle = (h: number): string => `${(h >>> 16).toString(16)}:${(h & 0xffff) === 0 ? '' : (h & 0xffff).toString(16)}`;

/** RTM_NEWQDISC → `tc -json qdisc show` fields: kind, handle, root / parent, tbf rate and burst, htb default. */
export function decodeQdisc(m: NlMsg, tick: number): QdiscEntry {
  const v = new DataView(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength);
  const ifindex = v.getInt32(4, true);
  const handle = v.getUint32(8, true);
  const parent = v.getUint32(12, true);
  const a = new Attrs(m.payload, 20);
  const q: QdiscEntry = { ifindex, kind: a.str(TCA_KIND) ?? '', handle: `${(handle >>> 16).toString(16)}:` };
  if (parent === TC_H_ROOT) q.root = true;
  else if (parent) q.parent = hexHandle(parent);
  // TCA_OPTIONS is nested attributes for tbf and htb only (pfifo_fast sends a bare struct)
  const opts = q.kind === 'tbf' || q.kind === 'htb' ? a.nested(TCA_OPTIONS) : undefined;
  if (opts && q.kind === 'tbf') {
    const p = opts.bytes(TCA_TBF_PARMS);
    if (p && p.length >= 36) {
      const pv = new DataView(p.buffer, p.byteOffset, p.byteLength);
      const r64 = opts.bytes(TCA_TBF_RATE64);
      const rate =
        r64 && r64.length >= 8 ? Number(new DataView(r64.buffer, r64.byteOffset, 8).getBigUint64(0, true)) : pv.getUint32(8, true);
      q.options = { rate, burst: xmitsize(rate, pv.getUint32(28, true), tick) };
    }
  } else if (opts && q.kind === 'htb') {
    const g = opts.bytes(TCA_HTB_INIT);
    if (g && g.length >= 12)
      q.options = { default: `0x${new DataView(g.buffer, g.byteOffset, g.byteLength).getUint32(8, true).toString(16)}` };
  }
  return q;
}

/** A filter in the fields `tc -json filter show` prints that bandwidth's CHECK reads: its actions' kind and mirred target. */
export interface FilterEntry {
  ifindex: number;
  kind: string;
  options?: { actions?: Array<{ kind?: string; to_dev?: string }> };
}

/** RTM_NEWTFILTER → kind and (u32) actions, a mirred's target device named by `nameOf`. */
export function decodeFilter(m: NlMsg, nameOf: (index: number) => string | undefined): FilterEntry {
  const v = new DataView(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength);
  const a = new Attrs(m.payload, 20);
  const f: FilterEntry = { ifindex: v.getInt32(4, true), kind: a.str(TCA_KIND) ?? '' };
  const acts = f.kind === 'u32' ? a.nested(TCA_OPTIONS)?.nested(TCA_U32_ACT) : undefined;
  if (acts) {
    const actions: Array<{ kind?: string; to_dev?: string }> = [];
    for (const [, value] of acts.all) {
      const act = new Attrs(value);
      const kind = act.str(TCA_ACT_KIND);
      const entry: { kind?: string; to_dev?: string } = { kind };
      const parms = kind === 'mirred' ? act.nested(TCA_ACT_OPTIONS)?.bytes(TCA_MIRRED_PARMS) : undefined;
      if (parms && parms.length >= 28) {
        const idx = new DataView(parms.buffer, parms.byteOffset, parms.byteLength).getUint32(24, true);
        entry.to_dev = nameOf(idx) ?? `if${idx}`;
      }
      actions.push(entry);
    }
    f.options = { actions };
  }
  return f;
}

/** A class in the fields `tc class show` prints that bandwidth's CHECK reads: kind, handle ("1:30"), rate in bytes per second. */
export interface ClassEntry {
  ifindex: number;
  kind: string;
  handle: string;
  rate?: number;
}

/** RTM_NEWTCLASS → kind, handle and (htb) rate: TCA_HTB_RATE64 when the kernel sends it (rates of 4 GB/s and more), else the rate spec's. */
export function decodeClass(m: NlMsg): ClassEntry {
  const v = new DataView(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength);
  const a = new Attrs(m.payload, 20);
  const handle = v.getUint32(8, true);
  const c: ClassEntry = {
    ifindex: v.getInt32(4, true),
    kind: a.str(TCA_KIND) ?? '',
    handle: `${(handle >>> 16).toString(16)}:${(handle & 0xffff).toString(16)}`,
  };
  const opts = c.kind === 'htb' ? a.nested(TCA_OPTIONS) : undefined;
  const r64 = opts?.bytes(TCA_HTB_RATE64);
  const p = opts?.bytes(TCA_HTB_PARMS);
  if (r64 && r64.length >= 8) c.rate = Number(new DataView(r64.buffer, r64.byteOffset, 8).getBigUint64(0, true));
  else if (p && p.length >= 12) c.rate = new DataView(p.buffer, p.byteOffset, p.byteLength).getUint32(8, true);
  return c;
}
