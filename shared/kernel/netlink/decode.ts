/**
 * RTM_NEWLINK / RTM_NEWADDR / RTM_NEWROUTE messages → the shapes `ip -json -details` prints
 * (LinkInfo, AddrInfo, RouteInfo of shared/kernel/ip.ts), for the fields the plugins read, with
 * iproute2's names and conventions (flag order, "default", table and scope names). Pure.
 */
import type { AddrInfo, LinkInfo, RouteInfo } from '../iptypes.ts';
import * as C from './constants.ts';
import {
  Attrs,
  formatIp,
  formatMac,
  IFADDRMSG_LEN,
  IFINFOMSG_LEN,
  parseIfaddrmsg,
  parseIfinfomsg,
  parseRtmsg,
  RTMSG_LEN,
  align4,
  type NlMsg,
} from './codec.ts';

/** iproute2's print order of link flags (ip/ipaddress.c print_link_flags), NO-CARRIER first. */
const LINK_FLAGS: Array<[number, string]> = [
  [0x8, 'LOOPBACK'],
  [0x2, 'BROADCAST'],
  [0x10, 'POINTOPOINT'],
  [0x1000, 'MULTICAST'],
  [0x80, 'NOARP'],
  [0x200, 'ALLMULTI'],
  [0x100, 'PROMISC'],
  [0x20, 'NOTRAILERS'],
  [0x400, 'MASTER'],
  [0x800, 'SLAVE'],
  [0x4, 'DEBUG'],
  [0x8000, 'DYNAMIC'],
  [0x4000, 'AUTOMEDIA'],
  [0x2000, 'PORTSEL'],
  [0x1, 'UP'],
  [0x10000, 'LOWER_UP'],
  [0x20000, 'DORMANT'],
  [0x40000, 'ECHO'],
];

export function linkFlagNames(flags: number): string[] {
  const out: string[] = [];
  if (flags & C.IFF_UP && !(flags & C.IFF_RUNNING)) out.push('NO-CARRIER');
  for (const [bit, name] of LINK_FLAGS) if (flags & bit) out.push(name);
  return out;
}

const OPERSTATES = ['UNKNOWN', 'NOTPRESENT', 'DOWN', 'LOWERLAYERDOWN', 'TESTING', 'DORMANT', 'UP'];

export function scopeName(s: number): string {
  switch (s) {
    case C.RT_SCOPE_UNIVERSE:
      return 'global';
    case C.RT_SCOPE_SITE:
      return 'site';
    case C.RT_SCOPE_LINK:
      return 'link';
    case C.RT_SCOPE_HOST:
      return 'host';
    case C.RT_SCOPE_NOWHERE:
      return 'nowhere';
    default:
      return String(s);
  }
}

/** A link as the kernel describes it, before names of other links are resolved. */
export interface RawLink {
  info: LinkInfo;
  /** IFLA_MASTER, to be named */
  masterIndex?: number;
  /** IFLA_LINK without IFLA_LINK_NETNSID, to be named */
  linkIndex?: number;
}

/** Bridge IFLA_INFO_DATA attributes the plugins read (iproute2's JSON names). */
function bridgeData(a: Attrs): Record<string, unknown> {
  const d: Record<string, unknown> = {};
  const vf = a.u8(C.IFLA_BR_VLAN_FILTERING);
  if (vf !== undefined) d.vlan_filtering = vf;
  return d;
}

const MACVLAN_MODES: Record<number, string> = { 1: 'private', 2: 'vepa', 4: 'bridge', 8: 'passthru', 16: 'source' };
const IPVLAN_MODES: Record<number, string> = { 0: 'l2', 1: 'l3', 2: 'l3s' };

/**
 * IFLA_INFO_DATA of the link kinds whose plugins read it in CHECK, in iproute2's JSON names:
 * macvlan/macvtap `mode`, ipvlan `mode`, vlan `id`, tun/tap `type`, `pi`, `vnet_hdr`,
 * `multi_queue`, `persist`, `user`, `group` (numeric: iproute2 prints a name when it can).
 */
function kindData(kind: string, a: Attrs): Record<string, unknown> | undefined {
  switch (kind) {
    case 'macvlan':
    case 'macvtap': {
      const mode = a.u32(1); // IFLA_MACVLAN_MODE
      return mode === undefined ? {} : { mode: MACVLAN_MODES[mode] ?? String(mode) };
    }
    case 'ipvlan':
    case 'ipvtap': {
      const mode = a.u16(1); // IFLA_IPVLAN_MODE
      return mode === undefined ? {} : { mode: IPVLAN_MODES[mode] ?? String(mode) };
    }
    case 'vlan': {
      const id = a.u16(1); // IFLA_VLAN_ID
      return id === undefined ? {} : { id };
    }
    case 'tun': {
      // IFLA_TUN_OWNER 1, GROUP 2, TYPE 3 (IFF_TUN 1 / IFF_TAP 2), PI 4, VNET_HDR 5, PERSIST 6, MULTI_QUEUE 7
      const d: Record<string, unknown> = {};
      const type = a.u8(3);
      if (type !== undefined) d.type = type === 2 ? 'tap' : type === 1 ? 'tun' : String(type);
      for (const [t, name] of [
        [4, 'pi'],
        [5, 'vnet_hdr'],
        [7, 'multi_queue'],
        [6, 'persist'],
      ] as const) {
        const v = a.u8(t);
        if (v !== undefined) d[name] = v === 1;
      }
      const user = a.u32(1);
      if (user !== undefined) d.user = user;
      const group = a.u32(2);
      if (group !== undefined) d.group = group;
      return d;
    }
    default:
      return undefined;
  }
}

function bridgePortData(a: Attrs): Record<string, unknown> {
  const d: Record<string, unknown> = {};
  const mode = a.u8(C.IFLA_BRPORT_MODE);
  if (mode !== undefined) d.hairpin = mode === 1;
  const iso = a.u8(C.IFLA_BRPORT_ISOLATED);
  if (iso !== undefined) d.isolated = iso === 1;
  return d;
}

export function decodeLink(m: NlMsg): RawLink {
  const h = parseIfinfomsg(m.payload);
  const a = new Attrs(m.payload, align4(IFINFOMSG_LEN));
  const info: LinkInfo = {
    ifindex: h.index,
    ifname: a.str(C.IFLA_IFNAME) ?? '',
    flags: linkFlagNames(h.flags),
    mtu: a.u32(C.IFLA_MTU) ?? 0,
  };
  const raw: RawLink = { info };
  const qdisc = a.str(C.IFLA_QDISC);
  if (qdisc !== undefined) info.qdisc = qdisc;
  const op = a.u8(C.IFLA_OPERSTATE);
  if (op !== undefined) info.operstate = OPERSTATES[op] ?? String(op);
  const txq = a.u32(C.IFLA_TXQLEN);
  if (txq !== undefined) info.txqlen = txq;
  const mac = a.bytes(C.IFLA_ADDRESS);
  if (mac) info.address = formatMac(mac);
  const brd = a.bytes(C.IFLA_BROADCAST);
  if (brd) info.broadcast = formatMac(brd);
  const alias = a.str(C.IFLA_IFALIAS);
  if (alias) info.ifalias = alias;
  const link = a.i32(C.IFLA_LINK);
  const netnsid = a.i32(C.IFLA_LINK_NETNSID);
  // as `ip` prints it: whatever the kernel sent (a peer in another netns may have our own index)
  if (link) {
    if (netnsid !== undefined) {
      info.link_index = link;
      info.link_netnsid = netnsid;
    } else raw.linkIndex = link;
  }
  const master = a.u32(C.IFLA_MASTER);
  if (master) raw.masterIndex = master;
  const minMtu = a.u32(C.IFLA_MIN_MTU);
  if (minMtu !== undefined) info.min_mtu = minMtu;
  const maxMtu = a.u32(C.IFLA_MAX_MTU);
  if (maxMtu !== undefined) info.max_mtu = maxMtu;
  const li = a.nested(C.IFLA_LINKINFO);
  if (li) {
    const linkinfo: NonNullable<LinkInfo['linkinfo']> = {};
    const kind = li.str(C.IFLA_INFO_KIND);
    if (kind) linkinfo.info_kind = kind;
    const data = li.nested(C.IFLA_INFO_DATA);
    if (kind === 'bridge' && data) linkinfo.info_data = bridgeData(data);
    else if (kind === 'vrf' && data) {
      const t = data.u32(C.IFLA_VRF_TABLE);
      if (t !== undefined) linkinfo.info_data = { table: t };
    } else if (kind && data) {
      const d = kindData(kind, data);
      if (d) linkinfo.info_data = d;
    }
    const skind = li.str(C.IFLA_INFO_SLAVE_KIND);
    if (skind) linkinfo.info_slave_kind = skind;
    const sdata = li.nested(C.IFLA_INFO_SLAVE_DATA);
    if (skind === 'bridge' && sdata) linkinfo.info_slave_data = bridgePortData(sdata);
    info.linkinfo = linkinfo;
  }
  return raw;
}

/** What `resolveLink` needs to know of another link in the same netns. */
export interface LinkRef {
  name: string;
  up: boolean;
}

/**
 * Name the master and lower link as `ip` does (an index it cannot name prints as "if<N>"),
 * with its "M-DOWN" flag when the lower link in the same netns is down.
 */
export function resolveLink(raw: RawLink, lookup: (index: number) => LinkRef | undefined): LinkInfo {
  const info = { ...raw.info };
  if (raw.masterIndex) info.master = lookup(raw.masterIndex)?.name ?? `if${raw.masterIndex}`;
  if (raw.linkIndex) {
    const l = lookup(raw.linkIndex);
    info.link = l?.name ?? `if${raw.linkIndex}`;
    if (!l?.up) info.flags = [...info.flags, 'M-DOWN'];
  }
  return info;
}

export interface RawAddr {
  index: number;
  info: AddrInfo;
}

export function decodeAddr(m: NlMsg): RawAddr {
  const h = parseIfaddrmsg(m.payload);
  const a = new Attrs(m.payload, align4(IFADDRMSG_LEN));
  const flags = a.u32(C.IFA_FLAGS) ?? h.flags;
  const local = a.bytes(C.IFA_LOCAL);
  const address = a.bytes(C.IFA_ADDRESS);
  const info: AddrInfo = {
    family: h.family === C.AF_INET6 ? 'inet6' : 'inet',
    local: formatIp(local ?? address ?? new Uint8Array(h.family === C.AF_INET6 ? 16 : 4)),
    prefixlen: h.prefixlen,
  };
  // a peer address (point-to-point) differs from the local one
  if (local && address && formatIp(local) !== formatIp(address)) info.address = formatIp(address);
  const brd = a.bytes(C.IFA_BROADCAST);
  if (brd) info.broadcast = formatIp(brd);
  info.scope = scopeName(h.scope);
  if (!(flags & C.IFA_F_PERMANENT)) info.dynamic = true;
  if (flags & C.IFA_F_SECONDARY) info.secondary = true;
  if (flags & C.IFA_F_TENTATIVE) info.tentative = true;
  if (flags & C.IFA_F_DEPRECATED) info.deprecated = true;
  if (flags & C.IFA_F_HOMEADDRESS) info.home = true;
  if (flags & C.IFA_F_NODAD) info.nodad = true;
  if (flags & C.IFA_F_OPTIMISTIC) info.optimistic = true;
  if (flags & C.IFA_F_DADFAILED) info.dadfailed = true;
  if (flags & C.IFA_F_MANAGETEMPADDR) info.mngtmpaddr = true;
  if (flags & C.IFA_F_NOPREFIXROUTE) info.noprefixroute = true;
  const label = a.str(C.IFA_LABEL);
  if (label) info.label = label;
  const ci = a.bytes(C.IFA_CACHEINFO);
  if (ci && ci.length >= 8) {
    const v = new DataView(ci.buffer, ci.byteOffset, ci.byteLength);
    info.valid_life_time = v.getUint32(4, true);
    info.preferred_life_time = v.getUint32(0, true);
  }
  return { index: h.index, info };
}

const TYPES: Record<number, string> = {
  2: 'local',
  3: 'broadcast',
  4: 'anycast',
  5: 'multicast',
  6: 'blackhole',
  7: 'unreachable',
  8: 'prohibit',
  9: 'throw',
  10: 'nat',
};
const PROTOCOLS: Record<number, string> = {
  1: 'redirect',
  2: 'kernel',
  3: 'boot',
  4: 'static',
  8: 'gated',
  9: 'ra',
  10: 'mrt',
  11: 'zebra',
  12: 'bird',
  13: 'dnrouted',
  14: 'xorp',
  15: 'ntk',
  16: 'dhcp',
  42: 'babel',
  99: 'keepalived',
  186: 'bgp',
  187: 'isis',
  188: 'ospf',
  189: 'rip',
  192: 'eigrp',
};

export function tableName(t: number): string {
  if (t === C.RT_TABLE_MAIN) return 'main';
  if (t === C.RT_TABLE_LOCAL) return 'local';
  if (t === C.RT_TABLE_DEFAULT) return 'default';
  return String(t);
}

export interface RawRoute {
  table: number;
  family: number;
  dstLen: number;
  type: number;
  cloned: boolean;
  oif?: number;
  info: RouteInfo;
}

const RTM_F_CLONED = 0x200;
const RTNH_F_ONLINK = 4;
const RTNH_F_LINKDOWN = 16;
const RTNH_F_DEAD = 1;

export function decodeRoute(m: NlMsg): RawRoute {
  const h = parseRtmsg(m.payload);
  const a = new Attrs(m.payload, align4(RTMSG_LEN));
  const table = a.u32(C.RTA_TABLE) ?? h.table;
  const full = h.family === C.AF_INET6 ? 128 : 32;
  const dstBytes = a.bytes(C.RTA_DST);
  const info: RouteInfo = { dst: '' };
  if (h.type !== C.RTN_UNICAST && TYPES[h.type]) info.type = TYPES[h.type];
  info.dst = dstBytes
    ? h.dstLen === full
      ? formatIp(dstBytes)
      : `${formatIp(dstBytes)}/${h.dstLen}`
    : h.dstLen
      ? `0/${h.dstLen}`
      : 'default';
  const gw = a.bytes(C.RTA_GATEWAY);
  if (gw) info.gateway = formatIp(gw);
  const oif = a.u32(C.RTA_OIF);
  if (table !== C.RT_TABLE_MAIN) info.table = tableName(table);
  if (h.protocol !== C.RTPROT_BOOT) info.protocol = PROTOCOLS[h.protocol] ?? String(h.protocol);
  if (h.scope !== C.RT_SCOPE_UNIVERSE) info.scope = scopeName(h.scope);
  const prio = a.u32(C.RTA_PRIORITY);
  if (prio !== undefined) info.metric = prio;
  const pref = a.bytes(C.RTA_PREFSRC);
  if (pref) info.prefsrc = formatIp(pref);
  const metrics = a.nested(C.RTA_METRICS);
  const mtu = metrics?.u32(C.RTAX_MTU);
  if (mtu !== undefined) info.mtu = mtu;
  const advmss = metrics?.u32(C.RTAX_ADVMSS);
  if (advmss !== undefined) info.advmss = advmss;
  const flags: string[] = [];
  if (h.flags & RTNH_F_DEAD) flags.push('dead');
  if (h.flags & RTNH_F_ONLINK) flags.push('onlink');
  if (h.flags & RTNH_F_LINKDOWN) flags.push('linkdown');
  info.flags = flags;
  const pref6 = a.u8(C.RTA_PREF);
  if (pref6 !== undefined) info.pref = pref6 === 1 ? 'high' : pref6 === 3 ? 'low' : 'medium';
  return { table, family: h.family, dstLen: h.dstLen, type: h.type, cloned: (h.flags & RTM_F_CLONED) !== 0, oif, info };
}

/** Name the route's device (`dev`), as `ip` prints it. */
export function resolveRoute(raw: RawRoute, nameOf: (index: number) => string | undefined): RouteInfo {
  const info = { ...raw.info };
  if (raw.oif) {
    const dev = nameOf(raw.oif) ?? `if${raw.oif}`;
    // `ip` prints dev right after gateway: rebuild in its order for readable fixtures
    const { type, dst, gateway, ...rest } = info;
    return { ...(type ? { type } : {}), dst, ...(gateway ? { gateway } : {}), dev, ...rest } as RouteInfo;
  }
  return info;
}
