/**
 * The host side of the overlay: the VXLAN device (VTEP), one route + permanent neighbour +
 * FDB entry per peer host, and the masquerade table. Planning is pure (state in, commands
 * out); this module's kernel layer only reads state and applies the plans in batches.
 */
import { CniError, ErrorCode } from '../cni/errors.ts';
import { bridgeBatch, bridgeJsonMaybe, ipBatch, ipJsonMaybe, type LinkInfo, type RouteInfo } from '../kernel/ip.ts';
import { nft, nftScript, nftString } from '../kernel/batch.ts';
import { readTable, transaction } from '../firewall/nft.ts';
import { ownerComment, type FirewallOwner } from '../firewall/owner.ts';
import { formatCIDR, formatIP, network, overlaps, parseCIDR, type IPNet } from '../ipnet.ts';
import { vxlanOverhead, type Settings } from './config.ts';
import { isHostSubnet } from './lease.ts';
import type { Lease } from './store-contract.ts';

export interface NeighInfo {
  dst: string;
  lladdr?: string;
  state?: string[];
}
export interface FdbInfo {
  mac: string;
  dst?: string;
  state?: string;
}

export interface HostState {
  links: LinkInfo[];
  routes: RouteInfo[];
  /** neighbours on the VXLAN device */
  neigh: NeighInfo[];
  /** FDB entries on the VXLAN device */
  fdb: FdbInfo[];
  /** comments of the rules in our masquerade table; undefined when the table is absent */
  masq?: string[];
}

export interface Underlay {
  dev: string;
  ip: string;
  family: 4 | 6;
  mtu: number;
}

/** Read everything a reconcile needs: four reads, run in parallel. */
export async function readHost(s: Settings): Promise<HostState> {
  const json = async <T>(read: Promise<T[] | undefined>): Promise<T[]> => (await read) ?? [];
  // the masquerade rules' comments; undefined when the table cannot be read (absent or not)
  const masqTable = async (): Promise<string[] | undefined> => {
    const t = await readTable('ip', s.nftTable).catch(() => undefined);
    return t?.rules.map((r) => String(r.comment ?? ''));
  };
  const [links, routes, neigh, fdb, masq] = await Promise.all([
    json(ipJsonMaybe<LinkInfo[]>(['-details', 'addr', 'show'])),
    json(ipJsonMaybe<RouteInfo[]>(['route', 'show', 'table', 'main'])),
    json(ipJsonMaybe<NeighInfo[]>(['neigh', 'show', 'dev', s.vxlan])),
    json(bridgeJsonMaybe<FdbInfo[]>(['fdb', 'show', 'dev', s.vxlan])),
    masqTable(),
  ]);
  // An IPv6-only underlay: its default route is in the IPv6 table (one more read, only then).
  if (!s.underlayInterface && !routes.some((r) => r.dst === 'default')) {
    for (const r of await json(ipJsonMaybe<RouteInfo[]>(['-6', 'route', 'show', 'default']))) routes.push({ ...r, dst: '::/0' });
  }
  return { links, routes, neigh, fdb, masq };
}

/** The underlay device and address: the configured device, else the default route's. */
export function underlayOf(s: Settings, st: HostState): Underlay {
  let dev = s.underlayInterface;
  if (!dev) {
    const def = st.routes.find((r) => r.dst === 'default' && r.dev) ?? st.routes.find((r) => r.dst === '::/0' && r.dev);
    if (!def?.dev) {
      throw new CniError(
        ErrorCode.InvalidConfig,
        'invalid network config: underlayInterface: not set and there is no default route to take it from',
        'field "underlayInterface"',
      );
    }
    dev = def.dev;
  }
  const link = st.links.find((l) => l.ifname === dev);
  if (!link)
    throw new CniError(
      ErrorCode.InvalidConfig,
      `invalid network config: underlayInterface: device "${dev}" does not exist`,
      'field "underlayInterface"',
    );
  const addrs = (link.addr_info ?? []).filter((a) => a.scope === 'global' && !a.tentative && !a.dadfailed);
  const a = addrs.find((x) => x.family === 'inet') ?? addrs.find((x) => x.family === 'inet6');
  if (!a)
    throw new CniError(
      ErrorCode.InvalidConfig,
      `invalid network config: underlayInterface: "${dev}" has no global address`,
      'field "underlayInterface"',
    );
  return { dev, ip: a.local, family: a.family === 'inet6' ? 6 : 4, mtu: link.mtu };
}

export const mtuOf = (s: Settings, u: Underlay): number => s.mtu ?? u.mtu - vxlanOverhead(u.family);

/** The VTEP address of a host subnet: its network address, as a /32 (flannel's convention). */
export const vtepIP = (subnet: string): string => formatIP(network(parseCIDR(subnet)!));
/** The pods' gateway on the local bridge: the subnet's first host address. */
export function gatewayOf(subnet: string): string {
  const n = network(parseCIDR(subnet)!);
  return formatIP({ family: n.family, value: n.value + 1n });
}

/** Commands (ip -batch) that make the VXLAN device match; empty when it already does. */
export function planVtep(s: Settings, u: Underlay, lease: Lease, st: HostState): { cmds: string[][]; recreated: boolean } {
  const mtu = mtuOf(s, u);
  const addr = `${vtepIP(lease.subnet)}/32`;
  const link = st.links.find((l) => l.ifname === s.vxlan);
  const d = link?.linkinfo?.info_data ?? {};
  const matches =
    link?.linkinfo?.info_kind === 'vxlan' &&
    d.id === s.vni &&
    d.port === s.port &&
    (d.local === u.ip || d.local6 === u.ip) &&
    d.link === u.dev &&
    d.learning === false;
  const cmds: string[][] = [];
  if (!link || !matches) {
    if (link) cmds.push(['link', 'del', s.vxlan]);
    cmds.push([
      'link',
      'add',
      s.vxlan,
      'type',
      'vxlan',
      'id',
      String(s.vni),
      'local',
      u.ip,
      'dev',
      u.dev,
      'dstport',
      String(s.port),
      'nolearning',
    ]);
    cmds.push(['link', 'set', s.vxlan, 'address', lease.vtepMAC, 'mtu', String(mtu)]);
    cmds.push(['addr', 'add', addr, 'dev', s.vxlan]);
    cmds.push(['link', 'set', s.vxlan, 'up']);
    return { cmds, recreated: true };
  }
  if (link.address !== lease.vtepMAC || link.mtu !== mtu) cmds.push(['link', 'set', s.vxlan, 'address', lease.vtepMAC, 'mtu', String(mtu)]);
  const have = (link.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`);
  if (!have.includes(addr)) {
    for (const h of have) cmds.push(['addr', 'del', h, 'dev', s.vxlan]);
    cmds.push(['addr', 'add', addr, 'dev', s.vxlan]);
  }
  if (!link.flags.includes('UP')) cmds.push(['link', 'set', s.vxlan, 'up']);
  return { cmds, recreated: false };
}

/**
 * What a CHECK finds wrong with this host's side of the overlay for `lease` (empty: all in
 * place): the VTEP, the pod bridge and its gateway, the masquerade table. Pure; CHECK reports
 * these and never repairs them.
 */
export function hostDrift(s: Settings, u: Underlay, lease: Lease, st: HostState): string[] {
  const out: string[] = [];
  const vtep = planVtep(s, u, lease, st);
  if (!st.links.some((l) => l.ifname === s.vxlan)) out.push(`VXLAN device ${s.vxlan} is missing`);
  else if (vtep.recreated) out.push(`VXLAN device ${s.vxlan} is not as configured (vni, port, underlay or learning)`);
  else if (vtep.cmds.length) out.push(`VXLAN device ${s.vxlan} differs in address, MAC, MTU or state`);
  const br = st.links.find((l) => l.ifname === s.bridge);
  if (!br) out.push(`bridge ${s.bridge} is missing`);
  else if (!br.addr_info?.some((a) => a.local === gatewayOf(lease.subnet)))
    out.push(`bridge ${s.bridge} lacks the gateway ${gatewayOf(lease.subnet)} of ${lease.subnet}`);
  if (!masqInPlace(s, lease, st)) out.push(`masquerade table ip ${s.nftTable} is not as configured`);
  return out;
}

export interface PeerPlan {
  /** ip -batch commands (routes, neighbours) */
  ip: string[][];
  /** bridge -batch commands (FDB) */
  fdb: string[][];
  added: string[];
  removed: string[];
  /** peers left out because a local device (the pod bridge) holds an address in their subnet */
  skipped: string[];
}

/**
 * The networks local devices other than the VTEP are connected to (IPv4). A peer's subnet
 * that overlaps one of them is never routed into the VXLAN: that would override the local
 * bridge's connected route and cut off the pods on it.
 */
export function localNets(s: Settings, st: HostState, dropped: string[] = []): IPNet[] {
  const out: IPNet[] = [];
  for (const l of st.links) {
    if (l.ifname === s.vxlan) continue;
    for (const a of l.addr_info ?? []) {
      if (a.family !== 'inet' || dropped.includes(`${a.local}/${a.prefixlen}`)) continue;
      const n = parseCIDR(`${a.local}/${a.prefixlen}`);
      if (n) out.push(network(n));
    }
  }
  return out;
}

/**
 * What to change so the VXLAN device knows exactly the live peers: for each, a route to its
 * subnet via its VTEP address (onlink), a permanent neighbour entry and an FDB entry.
 * `fresh`: the device was just (re)created, so it holds nothing yet.
 */
export function planPeers(
  s: Settings,
  mine: Lease,
  leases: Lease[],
  st: HostState,
  fresh: boolean,
  held: IPNet[] = localNets(s, st),
): PeerPlan {
  const dev = s.vxlan;
  const peers = new Map<string, Lease>();
  const skipped: string[] = [];
  for (const l of leases) {
    if (l.subnet === mine.subnet || l.publicIP === mine.publicIP || !isHostSubnet(s, l.subnet)) continue;
    const n = parseCIDR(l.subnet)!;
    if (held.some((h) => overlaps(h, n))) {
      skipped.push(`${l.subnet}@${l.publicIP}`);
      continue;
    }
    peers.set(l.subnet, l);
  }
  const routes = fresh ? [] : st.routes.filter((r) => r.dev === dev && r.dst !== 'default' && r.dst.includes('/'));
  const neigh = fresh ? [] : st.neigh;
  const fdb = fresh ? [] : st.fdb.filter((f) => f.dst);
  const plan: PeerPlan = { ip: [], fdb: [], added: [], removed: [], skipped };
  const wantNeigh = new Map<string, string>();
  const wantFdb = new Map<string, string>();
  for (const [subnet, l] of peers) {
    const gw = vtepIP(subnet);
    wantNeigh.set(gw, l.vtepMAC.toLowerCase());
    wantFdb.set(l.vtepMAC.toLowerCase(), l.publicIP);
    const r = routes.find((x) => x.dst === subnet);
    const n = neigh.find((x) => x.dst === gw);
    const f = fdb.find((x) => x.mac.toLowerCase() === l.vtepMAC.toLowerCase());
    let changed = false;
    if (!n || n.lladdr?.toLowerCase() !== l.vtepMAC.toLowerCase() || !n.state?.includes('PERMANENT')) {
      plan.ip.push(['neigh', 'replace', gw, 'lladdr', l.vtepMAC, 'dev', dev, 'nud', 'permanent']);
      changed = true;
    }
    if (!r || r.gateway !== gw || !(r.flags ?? []).includes('onlink')) {
      plan.ip.push(['route', 'replace', subnet, 'via', gw, 'dev', dev, 'onlink']);
      changed = true;
    }
    if (!f || f.dst !== l.publicIP) {
      plan.fdb.push(['fdb', 'replace', l.vtepMAC, 'dev', dev, 'dst', l.publicIP, 'self', 'permanent']);
      changed = true;
    }
    if (changed) plan.added.push(`${subnet}@${l.publicIP}`);
  }
  for (const r of routes) {
    const p = parseCIDR(r.dst);
    if (!p || peers.has(r.dst)) continue;
    plan.ip.push(['route', 'del', r.dst, 'dev', dev]);
    plan.removed.push(r.dst);
  }
  for (const n of neigh) if (wantNeigh.get(n.dst) === undefined) plan.ip.push(['neigh', 'del', n.dst, 'dev', dev]);
  for (const f of fdb) {
    const want = wantFdb.get(f.mac.toLowerCase());
    if (want !== f.dst && f.dst) plan.fdb.push(['fdb', 'del', f.mac, 'dev', dev, 'dst', f.dst, 'self']);
  }
  return plan;
}

/** Apply peer changes: FDB first (where to send), then neighbours and routes. */
export async function applyPeers(p: PeerPlan): Promise<void> {
  await bridgeBatch(p.fdb);
  await ipBatch(p.ip);
}

/**
 * The masquerade table: pods' traffic leaving the cluster network goes out with the host's
 * address. A firewall owner (shared/firewall/owners.ts) that owns its whole table: its owner is
 * the node's share of the network, its rule tagged like every owner's rules.
 */
export const overlayMasqOwner = (s: Settings): FirewallOwner => ({ network: s.name, containerId: 'node', ifname: 'overlay-masquerade' });
/**
 * The masquerade rule's comment: the owner tag, then the network, subnet and cluster it was made
 * for. A rule of an earlier release (`cni-ts overlay <name> <subnet> <cluster>`, no tag) is not in
 * place: the next reconcile replaces the table's contents (`flush table`), so it is found and removed.
 */
export const masqComment = (s: Settings, lease: Lease): string =>
  ownerComment(overlayMasqOwner(s), `cni-ts overlay ${s.name} ${lease.subnet} ${formatCIDR(s.network)}`);

/** Whether the masquerade table is already as `masqScript` would make it (then it is left alone, counters and all). */
export function masqInPlace(s: Settings, lease: Lease, st: HostState): boolean {
  if (!s.ipMasq) return st.masq === undefined;
  return st.masq?.length === 1 && st.masq[0] === masqComment(s, lease);
}

export function masqScript(s: Settings, lease: Lease): string {
  const t = s.nftTable;
  if (!s.ipMasq) return nftScript([nft`table ip ${t} {}`, nft`delete table ip ${t}`]);
  const cluster = formatCIDR(s.network);
  return nftScript([
    nft`table ip ${t} {}`,
    nft`flush table ip ${t}`,
    nft`table ip ${t} {`,
    nft`  chain postrouting {`,
    nft`    type nat hook postrouting priority srcnat; policy accept;`,
    nft`    ip saddr ${lease.subnet} ip daddr != ${cluster} ip daddr != 224.0.0.0/4 counter masquerade comment ${nftString(masqComment(s, lease))}`,
    nft`  }`,
    nft`}`,
  ]);
}

export async function applyMasq(s: Settings, lease: Lease): Promise<void> {
  await transaction(masqScript(s, lease));
}
