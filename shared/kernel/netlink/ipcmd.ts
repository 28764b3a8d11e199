/**
 * The `ip` commands of the hot path, as netlink requests. `parseIpCommand` reads one argv of
 * an `ip -batch` line (what shared/kernel builds: link add veth/bridge, link set, addr, route)
 * into an operation; anything it does not know returns undefined and the whole batch goes to
 * the `ip` process instead, so a command is never half-understood. `buildRequest` turns an
 * operation into the request iproute2 would send (same flags, defaults and attributes). Pure:
 * link indexes and netns descriptors come from the caller.
 */
import * as C from './constants.ts';
import { attr, ifaddrmsg, ifinfomsg, rtmsg, type AttrSpec, type NlRequest, ipBytes, macBytes, encodeMessage } from './codec.ts';
import { buildRuleRequest, parseRule, type RuleOp } from './rule.ts';

export interface LinkSide {
  name: string;
  mtu?: number;
  mac?: string;
  /** netns path (the peer of a veth, or `link set netns`) */
  netns?: string;
  /** `txqueuelen N` */
  txqlen?: number;
  /** `up`: created up (IFF_UP in the request, as `ip link add ... up`) */
  up?: boolean;
  /** `link DEV`: the lower device (IFLA_LINK) of a macvlan */
  lower?: string;
}

const MACVLAN_MODES: Record<string, number> = { private: 1, vepa: 2, bridge: 4, passthru: 8, source: 16 };

export type IpOp =
  | { op: 'link-add'; kind: 'veth'; link: LinkSide; peer: LinkSide }
  | { op: 'link-add'; kind: 'bridge'; link: LinkSide; vlanFiltering?: number }
  | { op: 'link-add'; kind: 'ifb'; link: LinkSide }
  | { op: 'link-add'; kind: 'macvlan'; link: LinkSide; mode: number }
  | {
      op: 'link-set';
      dev: string;
      up?: boolean;
      promisc?: boolean;
      mtu?: number;
      mac?: string;
      /** '' = nomaster */
      master?: string;
      netns?: string;
      name?: string;
      hairpin?: boolean;
      isolated?: boolean;
      vlanFiltering?: number;
      allmulti?: boolean;
      txqlen?: number;
      /** `alias TEXT` (IFLA_IFALIAS, without a NUL as iproute2 sends it; '' clears it) */
      alias?: string;
    }
  | { op: 'link-del'; dev: string }
  | RuleOp
  | { op: 'addr'; verb: 'add' | 'replace' | 'del'; cidr: string; dev: string; nodad?: boolean; noprefixroute?: boolean }
  | {
      op: 'route';
      verb: 'add' | 'replace' | 'del';
      dst: string;
      via?: string;
      dev: string;
      metric?: number;
      table?: number;
      scope?: number;
      src?: string;
      mtu?: number;
      advmss?: number;
      /** `proto NAME|N` (rtnetlink protocol number) */
      protocol?: number;
    };

const uint = (s: string | undefined, max = 0xffffffff): number | undefined =>
  s !== undefined && /^\d+$/.test(s) && Number(s) <= max ? Number(s) : undefined;
const isPath = (s: string | undefined): s is string => !!s && s.startsWith('/');
const onOff = (s: string | undefined): boolean | undefined => (s === 'on' ? true : s === 'off' ? false : undefined);

/** Read `name X mtu N address M` style options of one side of `link add`; undefined on anything else. */
function linkSide(args: string[], stopAt: string[]): [LinkSide, number] | undefined {
  const side: Partial<LinkSide> = {};
  let i = 0;
  for (; i < args.length && !stopAt.includes(args[i]); i += 2) {
    const [k, v] = [args[i], args[i + 1]];
    if (k === 'up') {
      side.up = true;
      i -= 1; // a word without a value
      continue;
    }
    if (v === undefined) return undefined;
    if (k === 'name') side.name = v;
    else if (k === 'txqueuelen' && uint(v) !== undefined) side.txqlen = uint(v);
    else if (k === 'link' && v.length <= 15) side.lower = v;
    else if (k === 'mtu') side.mtu = uint(v);
    else if (k === 'address') side.mac = macBytes(v) ? v : undefined;
    else if (k === 'netns' && isPath(v)) side.netns = v;
    else return undefined;
    if ((k === 'mtu' && side.mtu === undefined) || (k === 'address' && side.mac === undefined)) return undefined;
  }
  if (!side.name || side.name.length > 15) return undefined;
  return [side as LinkSide, i];
}

function parseLinkAdd(a: string[]): IpOp | undefined {
  const first = linkSide(a, ['type']);
  if (!first || a[first[1]] !== 'type') return undefined;
  const [link, at] = first;
  const kind = a[at + 1];
  const rest = a.slice(at + 2);
  if (kind === 'macvlan') {
    // `link M name X [mtu N] [address A] [netns P] type macvlan mode MODE`
    if (!link.lower || link.up || link.txqlen !== undefined || rest.length !== 2 || rest[0] !== 'mode') return undefined;
    const mode = MACVLAN_MODES[rest[1]];
    return mode ? { op: 'link-add', kind, link, mode } : undefined;
  }
  if (link.netns || link.lower) return undefined;
  if (kind === 'ifb') return rest.length ? undefined : { op: 'link-add', kind, link };
  if (link.up || link.txqlen !== undefined) return undefined;
  if (kind === 'veth') {
    if (rest[0] !== 'peer') return undefined;
    const peer = linkSide(rest.slice(1), []);
    if (!peer || peer[0].up || peer[0].txqlen !== undefined || peer[0].lower) return undefined;
    return { op: 'link-add', kind: 'veth', link, peer: peer[0] };
  }
  if (kind === 'bridge') {
    if (!rest.length) return { op: 'link-add', kind: 'bridge', link };
    if (rest.length === 2 && rest[0] === 'vlan_filtering' && (rest[1] === '0' || rest[1] === '1'))
      return { op: 'link-add', kind: 'bridge', link, vlanFiltering: Number(rest[1]) };
  }
  return undefined;
}

/** the kernel's limit on an interface alias (ip refuses `alias` of this many bytes or more) */
const IFALIASZ = 256;
const enc = new TextEncoder();

function parseLinkSet(a: string[]): IpOp | undefined {
  if (a[0] !== 'dev' || !a[1]) return undefined;
  const op: Extract<IpOp, { op: 'link-set' }> = { op: 'link-set', dev: a[1] };
  for (let i = 2; i < a.length;) {
    const [k, v] = [a[i], a[i + 1]];
    if (k === 'up' || k === 'down') {
      op.up = k === 'up';
      i += 1;
    } else if (k === 'nomaster') {
      op.master = '';
      i += 1;
    } else if (k === 'master' && v) {
      op.master = v;
      i += 2;
    } else if (k === 'mtu' && uint(v) !== undefined) {
      op.mtu = uint(v);
      i += 2;
    } else if (k === 'address' && v && macBytes(v)) {
      op.mac = v;
      i += 2;
    } else if (k === 'promisc' && onOff(v) !== undefined) {
      op.promisc = onOff(v);
      i += 2;
    } else if (k === 'allmulticast' && onOff(v) !== undefined) {
      op.allmulti = onOff(v);
      i += 2;
    } else if (k === 'txqueuelen' && uint(v) !== undefined) {
      op.txqlen = uint(v);
      i += 2;
    } else if (k === 'netns' && isPath(v)) {
      op.netns = v;
      i += 2;
    } else if (k === 'alias' && v !== undefined && !v.includes('\0') && enc.encode(v).length < IFALIASZ) {
      op.alias = v;
      i += 2;
    } else if (k === 'name' && v && v.length <= 15) {
      op.name = v;
      i += 2;
    } else if (k === 'type' && v === 'bridge_slave') {
      i += 2;
      for (; i < a.length; i += 2) {
        const val = onOff(a[i + 1]);
        if (val === undefined) return undefined;
        if (a[i] === 'hairpin') op.hairpin = val;
        else if (a[i] === 'isolated') op.isolated = val;
        else return undefined;
      }
    } else if (
      k === 'type' &&
      v === 'bridge' &&
      a[i + 2] === 'vlan_filtering' &&
      (a[i + 3] === '0' || a[i + 3] === '1') &&
      a.length === i + 4
    ) {
      op.vlanFiltering = Number(a[i + 3]);
      i += 4;
    } else return undefined;
  }
  return op;
}

function splitCidr(s: string): [Uint8Array, number] | undefined {
  const [ip, len, extra] = s.split('/');
  if (extra !== undefined) return undefined;
  const b = ipBytes(ip);
  if (!b) return undefined;
  const full = b.length * 8;
  const n = len === undefined ? full : uint(len, full);
  return n === undefined ? undefined : [b, n];
}

function parseAddr(verb: string, a: string[]): IpOp | undefined {
  if (verb !== 'add' && verb !== 'replace' && verb !== 'del') return undefined;
  const cidr = a[0];
  if (!cidr || !splitCidr(cidr) || a[1] !== 'dev' || !a[2]) return undefined;
  const op: Extract<IpOp, { op: 'addr' }> = { op: 'addr', verb, cidr, dev: a[2] };
  for (const k of a.slice(3)) {
    if (k === 'nodad') op.nodad = true;
    else if (k === 'noprefixroute') op.noprefixroute = true;
    else return undefined;
  }
  return op;
}

const SCOPES: Record<string, number> = {
  global: C.RT_SCOPE_UNIVERSE,
  universe: C.RT_SCOPE_UNIVERSE,
  site: C.RT_SCOPE_SITE,
  link: C.RT_SCOPE_LINK,
  host: C.RT_SCOPE_HOST,
  nowhere: C.RT_SCOPE_NOWHERE,
};
/** iproute2's names of route protocols (/usr/share/iproute2/rt_protos) that `ip -d route` prints */
const PROTOS: Record<string, number> = { redirect: 1, kernel: 2, boot: 3, static: 4, ra: 9, dhcp: 16 };
const TABLES: Record<string, number> = { main: C.RT_TABLE_MAIN, local: C.RT_TABLE_LOCAL, default: C.RT_TABLE_DEFAULT };

function parseRoute(verb: string, a: string[]): IpOp | undefined {
  if (verb !== 'add' && verb !== 'replace' && verb !== 'del') return undefined;
  if (a[0] === 'unicast') a = a.slice(1); // the default type, as `ip -d route` prints it
  const dst = a[0];
  if (!dst || !splitCidr(dst)) return undefined;
  const op: Partial<Extract<IpOp, { op: 'route' }>> = { op: 'route', verb, dst };
  for (let i = 1; i < a.length; i += 2) {
    const [k, v] = [a[i], a[i + 1]];
    if (v === undefined) return undefined;
    if (k === 'via' && ipBytes(v)) op.via = v;
    else if (k === 'dev') op.dev = v;
    else if (k === 'metric' && uint(v) !== undefined) op.metric = uint(v);
    else if (k === 'table' && uint(v) !== undefined) op.table = uint(v);
    else if (k === 'scope' && (SCOPES[v] ?? uint(v, 255)) !== undefined) op.scope = SCOPES[v] ?? uint(v, 255);
    else if (k === 'proto' && op.protocol === undefined && (PROTOS[v] ?? uint(v, 255)) !== undefined)
      op.protocol = PROTOS[v] ?? uint(v, 255);
    else if (k === 'table' && TABLES[v] !== undefined) op.table = TABLES[v];
    else if (k === 'src' && ipBytes(v)) op.src = v;
    else if (k === 'mtu' && uint(v) !== undefined) op.mtu = uint(v);
    else if (k === 'advmss' && uint(v) !== undefined) op.advmss = uint(v);
    else return undefined;
  }
  if (!op.dev) return undefined;
  const fam = ipBytes(dst.split('/')[0])!.length;
  // a gateway or source of the other family (RTA_VIA) is left to `ip`
  if ((op.via && ipBytes(op.via)!.length !== fam) || (op.src && ipBytes(op.src)!.length !== fam)) return undefined;
  return op as IpOp;
}

/** One `ip` argv (without "ip") → an operation, or undefined when this module does not do it. */
export function parseIpCommand(argv: string[]): IpOp | undefined {
  const [obj, verb, ...a] = argv;
  if (obj === 'link' && verb === 'add') return parseLinkAdd(a);
  if (obj === 'link' && verb === 'set') return parseLinkSet(a);
  if (obj === 'link' && (verb === 'del' || verb === 'delete') && a[0] === 'dev' && a[1] && a.length === 2)
    return { op: 'link-del', dev: a[1] };
  if (obj === 'addr' || obj === 'address') return parseAddr(verb, a);
  if (obj === 'route') return parseRoute(verb, a);
  if (obj === 'rule') return parseRule(verb, a);
  return undefined;
}

/** Every line or none: a batch with one unknown line runs through `ip`. */
export function parseIpBatch(cmds: string[][]): IpOp[] | undefined {
  const out: IpOp[] = [];
  for (const c of cmds) {
    const op = parseIpCommand(c);
    if (!op) return undefined;
    out.push(op);
  }
  return out;
}

/** What `buildRequest` needs from the kernel side. */
export interface BuildContext {
  /** ifindex of a link in the socket's netns (throws when absent, with ip's "Cannot find device") */
  index(name: string): number;
  /** an open fd of the netns at `path` */
  nsFd(path: string): number;
}

const REQ_ACK = C.NLM_F_REQUEST | C.NLM_F_ACK;
const IFF_ALLMULTI = 0x200;

function sideAttrs(s: LinkSide, ctx: BuildContext): AttrSpec[] {
  const at: AttrSpec[] = [attr.str(C.IFLA_IFNAME, s.name)];
  if (s.mtu) at.push(attr.u32(C.IFLA_MTU, s.mtu));
  if (s.txqlen !== undefined) at.push(attr.u32(C.IFLA_TXQLEN, s.txqlen));
  if (s.lower) at.push(attr.u32(C.IFLA_LINK, ctx.index(s.lower)));
  if (s.mac) at.push(attr.bytes(C.IFLA_ADDRESS, macBytes(s.mac)!));
  if (s.netns) at.push(attr.u32(C.IFLA_NET_NS_FD, ctx.nsFd(s.netns)));
  return at;
}

/** ifinfomsg + attributes as one attribute value (VETH_INFO_PEER carries a whole link request). */
function withHeader(header: Uint8Array, attrs: AttrSpec[]): Uint8Array {
  const m = encodeMessage({ type: 0, flags: 0, header, attrs });
  return m.subarray(C.NLMSG_HDRLEN);
}

/** The netlink request for one operation, as iproute2 builds it. */
export function buildRequest(op: IpOp, ctx: BuildContext): NlRequest {
  switch (op.op) {
    case 'link-add': {
      const data: AttrSpec[] = [];
      if (op.kind === 'veth') data.push(attr.bytes(C.VETH_INFO_PEER, withHeader(ifinfomsg(), sideAttrs(op.peer, ctx))));
      else if (op.kind === 'macvlan')
        data.push(attr.u32(1, op.mode)); // IFLA_MACVLAN_MODE
      else if (op.kind === 'bridge' && op.vlanFiltering !== undefined) data.push(attr.u8(C.IFLA_BR_VLAN_FILTERING, op.vlanFiltering));
      const info: AttrSpec[] = [attr.str(C.IFLA_INFO_KIND, op.kind)];
      if (data.length) info.push(attr.nest(C.IFLA_INFO_DATA, data));
      return {
        type: C.RTM_NEWLINK,
        flags: REQ_ACK | C.NLM_F_CREATE | C.NLM_F_EXCL,
        header: op.link.up ? ifinfomsg({ flags: C.IFF_UP, change: C.IFF_UP }) : ifinfomsg(),
        attrs: [...sideAttrs(op.link, ctx), attr.nest(C.IFLA_LINKINFO, info)],
      };
    }
    case 'link-set': {
      let flags = 0;
      let change = 0;
      if (op.up !== undefined) {
        change |= C.IFF_UP;
        if (op.up) flags |= C.IFF_UP;
      }
      if (op.promisc !== undefined) {
        change |= C.IFF_PROMISC;
        if (op.promisc) flags |= C.IFF_PROMISC;
      }
      if (op.allmulti !== undefined) {
        change |= IFF_ALLMULTI;
        if (op.allmulti) flags |= IFF_ALLMULTI;
      }
      const at: AttrSpec[] = [];
      if (op.txqlen !== undefined) at.push(attr.u32(C.IFLA_TXQLEN, op.txqlen));
      if (op.name) at.push(attr.str(C.IFLA_IFNAME, op.name));
      if (op.mtu) at.push(attr.u32(C.IFLA_MTU, op.mtu));
      if (op.mac) at.push(attr.bytes(C.IFLA_ADDRESS, macBytes(op.mac)!));
      if (op.master !== undefined) at.push(attr.u32(C.IFLA_MASTER, op.master ? ctx.index(op.master) : 0));
      if (op.netns) at.push(attr.u32(C.IFLA_NET_NS_FD, ctx.nsFd(op.netns)));
      if (op.alias !== undefined) at.push(attr.bytes(C.IFLA_IFALIAS, enc.encode(op.alias)));
      if (op.hairpin !== undefined || op.isolated !== undefined) {
        const port: AttrSpec[] = [];
        if (op.hairpin !== undefined) port.push(attr.u8(C.IFLA_BRPORT_MODE, op.hairpin ? 1 : 0));
        if (op.isolated !== undefined) port.push(attr.u8(C.IFLA_BRPORT_ISOLATED, op.isolated ? 1 : 0));
        at.push(attr.nest(C.IFLA_LINKINFO, [attr.str(C.IFLA_INFO_SLAVE_KIND, 'bridge'), attr.nest(C.IFLA_INFO_SLAVE_DATA, port)]));
      }
      if (op.vlanFiltering !== undefined) {
        at.push(
          attr.nest(C.IFLA_LINKINFO, [
            attr.str(C.IFLA_INFO_KIND, 'bridge'),
            attr.nest(C.IFLA_INFO_DATA, [attr.u8(C.IFLA_BR_VLAN_FILTERING, op.vlanFiltering)]),
          ]),
        );
      }
      return { type: C.RTM_NEWLINK, flags: REQ_ACK, header: ifinfomsg({ index: ctx.index(op.dev), flags, change }), attrs: at };
    }
    case 'link-del':
      return { type: C.RTM_DELLINK, flags: REQ_ACK, header: ifinfomsg({ index: ctx.index(op.dev) }) };
    case 'rule':
      return buildRuleRequest(op);
    case 'addr': {
      const [bytes, len] = splitCidr(op.cidr)!;
      const family = bytes.length === 16 ? C.AF_INET6 : C.AF_INET;
      let f = 0;
      if (op.nodad && family === C.AF_INET6) f |= C.IFA_F_NODAD;
      if (op.noprefixroute) f |= C.IFA_F_NOPREFIXROUTE;
      const del = op.verb === 'del';
      // iproute2: scope host for 127/8, else universe (not set on delete)
      const scope = !del && family === C.AF_INET && bytes[0] === 127 ? C.RT_SCOPE_HOST : 0;
      const at: AttrSpec[] = [attr.bytes(C.IFA_LOCAL, bytes), attr.bytes(C.IFA_ADDRESS, bytes)];
      if (f > 0xff) at.push(attr.u32(C.IFA_FLAGS, f));
      return {
        type: del ? C.RTM_DELADDR : C.RTM_NEWADDR,
        flags: REQ_ACK | (del ? 0 : op.verb === 'replace' ? C.NLM_F_CREATE | C.NLM_F_REPLACE : C.NLM_F_CREATE | C.NLM_F_EXCL),
        header: ifaddrmsg({ family, prefixlen: len, flags: f & 0xff, scope, index: ctx.index(op.dev) }),
        attrs: at,
      };
    }
    case 'route': {
      const [bytes, len] = splitCidr(op.dst)!;
      const family = bytes.length === 16 ? C.AF_INET6 : C.AF_INET;
      const del = op.verb === 'del';
      const table = op.table ?? C.RT_TABLE_MAIN;
      // iproute2 (iproute_modify): add = proto boot, type unicast, scope link without a
      // gateway; del = scope nowhere, no protocol or type
      // (an IPv6 route always universe: the kernel has no scope for them)
      const scope =
        op.scope ??
        (family === C.AF_INET6 ? C.RT_SCOPE_UNIVERSE : del ? C.RT_SCOPE_NOWHERE : op.via ? C.RT_SCOPE_UNIVERSE : C.RT_SCOPE_LINK);
      const at: AttrSpec[] = [];
      if (table >= 256) at.push(attr.u32(C.RTA_TABLE, table));
      at.push(attr.bytes(C.RTA_DST, bytes)); // iproute2 sends it for any address given, 0.0.0.0/0 too (only `default` goes without)
      if (op.src) at.push(attr.bytes(C.RTA_PREFSRC, ipBytes(op.src)!));
      if (op.via) at.push(attr.bytes(C.RTA_GATEWAY, ipBytes(op.via)!));
      if (op.metric !== undefined) at.push(attr.u32(C.RTA_PRIORITY, op.metric));
      const metrics: AttrSpec[] = [];
      if (op.mtu) metrics.push(attr.u32(C.RTAX_MTU, op.mtu));
      if (op.advmss) metrics.push(attr.u32(C.RTAX_ADVMSS, op.advmss));
      if (metrics.length) at.push(attr.nest(C.RTA_METRICS, metrics));
      at.push(attr.u32(C.RTA_OIF, ctx.index(op.dev)));
      return {
        type: del ? C.RTM_DELROUTE : C.RTM_NEWROUTE,
        flags: REQ_ACK | (del ? 0 : op.verb === 'replace' ? C.NLM_F_CREATE | C.NLM_F_REPLACE : C.NLM_F_CREATE | C.NLM_F_EXCL),
        header: rtmsg({
          family,
          dstLen: len,
          table: table < 256 ? table : C.RT_TABLE_UNSPEC,
          protocol: op.protocol ?? (del ? 0 : C.RTPROT_BOOT),
          scope,
          type: del ? 0 : C.RTN_UNICAST,
        }),
        attrs: at,
      };
    }
  }
}

/** The `ip` words of an operation, for messages and traces. */
export const describeOp = (argv: string[]): string => `ip ${argv.slice(0, 8).join(' ')}`;
