/**
 * Policy routing rules (`ip rule`) over rtnetlink: the lines sbr writes (`rule add from A/L
 * table T`, `rule del from A/L [table T] [pref P]`) as the RTM_NEWRULE / RTM_DELRULE requests
 * iproute2 6.1 builds (struct fib_rule_hdr + FRA_SRC, FRA_TABLE above 255, FRA_PRIORITY), and
 * RTM_NEWRULE messages of a dump decoded to what `ip -json rule show` prints (priority, src,
 * srclen, table). Pure.
 */
import * as C from './constants.ts';
import { align4, attr, Attrs, formatIp, ipBytes, type AttrSpec, type NlMsg, type NlRequest } from './codec.ts';
import { tableName } from './decode.ts';

export const RTM_NEWRULE = 32;
export const RTM_DELRULE = 33;
export const RTM_GETRULE = 34;

export const FRA_DST = 1;
export const FRA_SRC = 2;
export const FRA_IIFNAME = 3;
export const FRA_PRIORITY = 6;
export const FRA_FWMARK = 10;
export const FRA_TABLE = 15;
export const FRA_OIFNAME = 17;
export const FR_ACT_TO_TBL = 1;
export const FIB_RULE_HDR_LEN = 12;

export interface RuleOp {
  op: 'rule';
  verb: 'add' | 'del';
  family: 4 | 6;
  src: Uint8Array;
  srcLen: number;
  table?: number;
  priority?: number;
}

const TABLES: Record<string, number> = { main: C.RT_TABLE_MAIN, local: C.RT_TABLE_LOCAL, default: C.RT_TABLE_DEFAULT };
const num = (s: string | undefined): number | undefined =>
  s !== undefined && /^\d+$/.test(s) && Number(s) <= 0xffffffff ? Number(s) : undefined;

/** `rule add|del from A/L [table T] [pref P]` (argv after "rule") → an operation; undefined for anything else. */
export function parseRule(verb: string, a: string[]): RuleOp | undefined {
  if (verb !== 'add' && verb !== 'del' && verb !== 'delete') return undefined;
  if (a[0] !== 'from' || !a[1]) return undefined;
  const [ip, len, extra] = a[1].split('/');
  const src = ipBytes(ip);
  if (!src || extra !== undefined) return undefined;
  const full = src.length * 8;
  const srcLen = len === undefined ? full : num(len);
  if (srcLen === undefined || srcLen > full || srcLen === 0) return undefined;
  const op: RuleOp = { op: 'rule', verb: verb === 'add' ? 'add' : 'del', family: src.length === 4 ? 4 : 6, src, srcLen };
  for (let i = 2; i < a.length; i += 2) {
    const [k, v] = [a[i], a[i + 1]];
    if (v === undefined) return undefined;
    if ((k === 'table' || k === 'lookup') && op.table === undefined) {
      const t = TABLES[v] ?? num(v);
      if (t === undefined || t === 0) return undefined;
      op.table = t;
    } else if ((k === 'pref' || k === 'priority' || k === 'preference') && op.priority === undefined) {
      const p = num(v);
      if (p === undefined) return undefined;
      op.priority = p;
    } else return undefined;
  }
  // iproute2 makes an added rule without a table look up main; keep to what sbr writes
  if (op.verb === 'add' && op.table === undefined) return undefined;
  return op;
}

/** struct fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2, action, flags. */
export function fibRuleHdr(m: { family: number; srcLen?: number; table?: number; action?: number }): Uint8Array {
  const b = new Uint8Array(FIB_RULE_HDR_LEN);
  b[0] = m.family;
  b[2] = m.srcLen ?? 0;
  b[4] = m.table ?? 0;
  b[7] = m.action ?? 0;
  return b;
}

/** The request iproute2 sends for the rule (iprule_modify): add is CREATE|EXCL with action to-table. */
export function buildRuleRequest(op: RuleOp): NlRequest {
  const add = op.verb === 'add';
  const table = op.table ?? 0;
  const at: AttrSpec[] = [attr.bytes(FRA_SRC, op.src)];
  if (table >= 256) at.push(attr.u32(FRA_TABLE, table));
  if (op.priority !== undefined) at.push(attr.u32(FRA_PRIORITY, op.priority));
  return {
    type: add ? RTM_NEWRULE : RTM_DELRULE,
    flags: C.NLM_F_REQUEST | C.NLM_F_ACK | (add ? C.NLM_F_CREATE | C.NLM_F_EXCL : 0),
    header: fibRuleHdr({
      family: op.family === 4 ? C.AF_INET : C.AF_INET6,
      srcLen: op.srcLen,
      table: table < 256 ? table : C.RT_TABLE_UNSPEC,
      action: add ? FR_ACT_TO_TBL : 0,
    }),
    attrs: at,
  };
}

/** A rule as `ip -json rule show` prints the fields sbr reads. */
export interface RuleEntry {
  priority: number;
  src: string;
  srclen?: number;
  table?: string;
  family: 4 | 6;
}

/** RTM_NEWRULE → the `ip -json rule show` fields (iprule.c print_rule). */
export function decodeRule(m: NlMsg): RuleEntry {
  const p = m.payload;
  const family = p[0] === C.AF_INET6 ? 6 : 4;
  const srcLen = p[2];
  const a = new Attrs(p, align4(FIB_RULE_HDR_LEN));
  const full = family === 6 ? 128 : 32;
  const out: RuleEntry = { priority: a.u32(FRA_PRIORITY) ?? 0, src: 'all', family };
  const src = a.bytes(FRA_SRC);
  if (src) {
    out.src = formatIp(src);
    if (srcLen !== full) out.srclen = srcLen;
  } else if (srcLen) {
    out.src = '0';
    out.srclen = srcLen;
  }
  const table = a.u32(FRA_TABLE) ?? p[4];
  if (table) out.table = tableName(table);
  return out;
}
