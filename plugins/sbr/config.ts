/**
 * sbr (source-based routing) as pure functions: which addresses of the result are the
 * interface's, which table each gets, and the `ip` lines that move the interface's routes
 * from the main table to that table behind a `from <address>` rule — the Go reference's
 * algorithm step for step (plugins/meta/sbr), so the kernel state is the same.
 */
import { invalidConfig } from '../../shared/cni/errors.ts';
import type { IPConfig, NetConfBase, Result } from '../../shared/cni/types.ts';
import { contains, familyOf, formatCIDR, network, parseCIDR, parseIP, type IPNet } from '../../shared/ipnet.ts';

export interface SbrConf extends NetConfBase {
  table?: number;
  gateways?: string[];
  addSourceHints?: boolean;
}

/** The reference's first candidate table (tables from 100 up with no rule pointing at them). */
export const FIRST_TABLE = 100;

/** A route of the main table as `ip -d -j route show dev X` prints it. */
export interface MainRoute {
  type?: string;
  dst: string;
  gateway?: string;
  prefsrc?: string;
  protocol?: string;
  scope?: string;
  metric?: number;
  /** added by the reader: 4 or 6 */
  family: 4 | 6;
}

/** An `ip -j rule show` entry. */
export interface RuleInfo {
  priority?: number;
  src?: string;
  srclen?: number;
  table?: string;
  family?: 4 | 6;
}

/** The IPs of the result that belong to `ifname` (those without an interface index count, as in the reference). */
export function interfaceIps(ifname: string, prev: Result): IPConfig[] {
  const ips = prev.ips ?? [];
  if (!ips.length) throw invalidConfig('prevResult.ips', `No IP addresses supplied on interface: ${ifname}`);
  const ifaces = prev.interfaces ?? [];
  return ips.filter(
    (ip) => ip.interface === undefined || ip.interface < 0 || ip.interface >= ifaces.length || ifaces[ip.interface].name === ifname,
  );
}

/** `gateways`: at most one IPv4 and one IPv6 address. */
export function staticGateways(gws: string[] | undefined): { 4?: string; 6?: string } {
  const out: { 4?: string; 6?: string } = {};
  if (!gws?.length) return out;
  if (gws.length > 2) throw invalidConfig('gateways', 'gateways list cannot contain more than 2 entries (one IPv4, one IPv6)');
  for (const g of gws) {
    if (!parseIP(g)) throw invalidConfig('gateways', `invalid static gateway IP address: ${g}`);
    const f = familyOf(g);
    if (out[f]) throw invalidConfig('gateways', `gateways list contains multiple IPv${f} addresses: ${out[f]} and ${g}`);
    out[f] = g;
  }
  return out;
}

/** Numeric tables referenced by rules ("main"/"local"/"default" are 254/255/253). */
export function ruleTables(rules: RuleInfo[]): Set<number> {
  const named: Record<string, number> = { main: 254, local: 255, default: 253 };
  return new Set(rules.map((r) => named[r.table ?? ''] ?? Number(r.table)).filter((n) => Number.isInteger(n)));
}

/** The first table from `candidate` up that no rule uses (routes of the main table never collide). */
export function nextTable(used: Set<number>, candidate: number): number {
  let t = candidate;
  while (used.has(t) || t === 254) t++;
  return t;
}

const hostLen = (ip: string): number => (familyOf(ip) === 6 ? 128 : 32);
const ipOf = (cidr: string): string => cidr.split('/')[0];

function inSubnet(addr: IPNet, ip: string | undefined): boolean {
  const p = ip ? parseIP(ip) : null;
  return p !== null && contains(addr, p);
}

/** `ip route` words selecting a main-table route exactly (for replace into a table or delete). */
export function routeWords(r: MainRoute, dev: string): string[] {
  const w: string[] = [];
  if (r.type && r.type !== 'unicast') w.push(r.type);
  w.push(r.dst === 'default' ? (r.family === 6 ? '::/0' : '0.0.0.0/0') : r.dst);
  if (r.gateway) w.push('via', r.gateway);
  w.push('dev', dev);
  if (r.protocol) w.push('proto', r.protocol);
  if (r.scope) w.push('scope', r.scope);
  if (r.prefsrc) w.push('src', r.prefsrc);
  if (r.metric !== undefined) w.push('metric', String(r.metric));
  return w;
}

export type ByFamily = { 4: string[][]; 6: string[][] };

export interface SbrPlan {
  /** `ip rule` lines per family (run first: `ip -4/-6 -batch`) */
  rules: ByFamily;
  /** `ip route` lines, in order (the family follows from the prefixes) */
  commands: string[][];
  /** main-table routes to delete afterwards (failure tolerated with addSourceHints only) */
  deletions: string[][];
  tables: number[];
}

/**
 * The reference's doRoutes: per address a rule `from A/32 lookup T`, a default route via the
 * gateway (static `gateways` first) in T, every main-table route of the interface that is
 * generic or whose source or gateway is in A's subnet replaced into T; then the interface's
 * main-table routes go (with `addSourceHints`: subnet routes stay, with `src A`).
 */
export function planRoutes(
  ips: IPConfig[],
  dev: string,
  mainRoutes: MainRoute[],
  usedTables: Set<number>,
  gws: { 4?: string; 6?: string },
  addSourceHints: boolean,
): SbrPlan {
  const commands: string[][] = [];
  const rules: ByFamily = { 4: [], 6: [] };
  const tables: number[] = [];
  let table = nextTable(usedTables, FIRST_TABLE);
  for (const ipc of ips) {
    const ip = ipOf(ipc.address);
    const fam = familyOf(ip);
    const addr = parseCIDR(ipc.address);
    if (!addr) throw invalidConfig('prevResult.ips', `${ipc.address} is not an address with a prefix`);
    tables.push(table);
    rules[fam].push(['rule', 'add', 'from', `${ip}/${hostLen(ip)}`, 'table', String(table)]);
    const gw = gws[fam] ?? ipc.gateway;
    if (gw) commands.push(['route', 'add', fam === 6 ? '::/0' : '0.0.0.0/0', 'via', gw, 'dev', dev, 'table', String(table)]);
    for (const r of mainRoutes) {
      if (inSubnet(addr, r.prefsrc) || inSubnet(addr, r.gateway) || (!r.prefsrc && !r.gateway)) {
        commands.push(['route', 'replace', ...routeWords(r, dev), 'table', String(table)]);
      }
    }
    table = nextTable(usedTables, table + 1);
  }
  const deletions: string[][] = [];
  if (addSourceHints) {
    for (const ipc of ips) {
      const addr = parseCIDR(ipc.address)!;
      const ip = ipOf(ipc.address);
      const net = formatCIDR(network(addr));
      commands.push(['route', 'replace', net, 'dev', dev, 'src', ip, 'scope', 'link', 'table', 'main']);
    }
    for (const r of mainRoutes) if (r.scope !== 'link') deletions.push(['route', 'del', ...routeWords(r, dev), 'table', 'main']);
  } else {
    for (const r of mainRoutes) deletions.push(['route', 'del', ...routeWords(r, dev), 'table', 'main']);
  }
  return { rules, commands, deletions, tables };
}

/** `with table`: only the rules (`from A/32 lookup table`), the routes are the operator's. */
export function planRulesOnly(ips: IPConfig[], table: number): ByFamily {
  const out: ByFamily = { 4: [], 6: [] };
  for (const ipc of ips) {
    const ip = ipOf(ipc.address);
    out[familyOf(ip)].push(['rule', 'add', 'from', `${ip}/${hostLen(ip)}`, 'table', String(table)]);
  }
  return out;
}

/** DEL: the rules (of `table` when given) whose source is one of the interface's addresses. */
export function rulesToDelete(rules: RuleInfo[], addrs: string[], table?: number): ByFamily {
  const have = new Set(
    addrs
      .map((a) => parseIP(a))
      .filter((p) => p !== null)
      .map((p) => `${p.family}/${p.value}`),
  );
  const out: ByFamily = { 4: [], 6: [] };
  for (const r of rules) {
    if (!r.src || r.src === 'all') continue;
    if (table !== undefined && String(r.table) !== String(table)) continue;
    const p = parseIP(r.src);
    if (!p || !have.has(`${p.family}/${p.value}`)) continue;
    const cmd = ['rule', 'del', 'from', `${r.src}/${r.srclen ?? hostLen(r.src)}`];
    if (r.table) cmd.push('table', r.table);
    if (r.priority !== undefined) cmd.push('pref', String(r.priority));
    out[p.family].push(cmd);
  }
  return out;
}
