/**
 * Generic link helpers shared by the interface plugins (bridge, host-device, overlay): read a
 * link's state, move a link into a netns (by path), configure addresses and routes inside a
 * netns in one `ip -batch`, delete links idempotently. Command builders are pure functions.
 */
import { randomBytes, randomHex } from '../hash.ts';
import { readFileSync } from 'node:fs';
import { CniError, ErrorCode } from '../cni/errors.ts';
import { familyOf } from '../ipnet.ts';
import { run } from './exec.ts';
import { getLink, ipBatch, type LinkInfo } from './ip.ts';
import { nlDeleteLink } from './netlink/rtnl.ts';
import { netlinkEnabled, writeSysctlInNetns } from './netlink/socket.ts';

export { getLink, type LinkInfo };

/** A random locally administered unicast MAC (02:xx:...), the kind the kernel gives a veth. */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0] & 0xfc) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

export const normalizeMac = (mac: string): string => mac.toLowerCase();

/** One address to put on an interface. `nodad`: skip IPv6 duplicate address detection. */
export interface AddrSpec {
  cidr: string;
  nodad?: boolean;
  /** no prefix route for the address (ptp routes its subnet through the gateway instead) */
  noprefixroute?: boolean;
}

/** One route via an interface (the 1.1.0 route fields map to ip-route options). */
export interface RouteSpec {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  metric?: number;
  table?: number;
  scope?: number;
  /** preferred source address */
  src?: string;
}

export interface IfaceConfig {
  addresses?: AddrSpec[];
  routes?: RouteSpec[];
  /** bring the link up (after the addresses, before the routes) */
  up?: boolean;
  mtu?: number;
  mac?: string;
}

/** `ip route add` argv (without "ip") for one route via `dev`. */
export function routeCommand(dev: string, r: RouteSpec, verb: 'add' | 'replace' | 'del' = 'add'): string[] {
  // no -4/-6: `ip -batch` lines take no options; the family follows from the prefix
  const cmd = ['route', verb, r.dst];
  if (r.gw) cmd.push('via', r.gw);
  cmd.push('dev', dev);
  if (r.metric !== undefined) cmd.push('metric', String(r.metric));
  if (r.table !== undefined) cmd.push('table', String(r.table));
  if (r.scope !== undefined) cmd.push('scope', String(r.scope));
  if (r.src) cmd.push('src', r.src);
  if (r.mtu) cmd.push('mtu', String(r.mtu));
  if (r.advmss) cmd.push('advmss', String(r.advmss));
  return cmd;
}

/** The `ip -batch` lines that configure one interface: link attributes, addresses, up, routes. */
export function ifaceConfigCommands(ifname: string, c: IfaceConfig): string[][] {
  const cmds: string[][] = [];
  if (c.mac) cmds.push(['link', 'set', 'dev', ifname, 'address', c.mac]);
  if (c.mtu) cmds.push(['link', 'set', 'dev', ifname, 'mtu', String(c.mtu)]);
  for (const a of c.addresses ?? []) {
    const cmd = ['addr', 'add', a.cidr, 'dev', ifname];
    if (a.nodad && familyOf(a.cidr) === 6) cmd.push('nodad');
    if (a.noprefixroute) cmd.push('noprefixroute');
    cmds.push(cmd);
  }
  if (c.up) cmds.push(['link', 'set', 'dev', ifname, 'up']);
  for (const r of c.routes ?? []) cmds.push(routeCommand(ifname, r));
  return cmds;
}

/**
 * Configure an interface inside `netns` (or on the host when undefined): when `disableDad`
 * and there are IPv6 addresses, `accept_dad=0` is set first (one sysctl process), then
 * everything else in one `ip -batch`.
 */
export async function configureIface(ifname: string, c: IfaceConfig, netns?: string, disableDad = false): Promise<void> {
  if (disableDad && (c.addresses ?? []).some((a) => familyOf(a.cidr) === 6)) {
    if (netns && netlinkEnabled()) writeSysctlInNetns([[`net/ipv6/conf/${ifname}/accept_dad`, '0']], netns);
    else await run('sysctl', ['-q', '-w', `net/ipv6/conf/${ifname}/accept_dad=0`], { netns });
  }
  await ipBatch(ifaceConfigCommands(ifname, c), netns);
}

/**
 * Move a link into the netns at `netnsPath` (any nsfs path, not only /var/run/netns),
 * optionally renaming it in the same netlink request.
 */
export async function moveLinkToNetns(name: string, netnsPath: string, newName?: string, fromNetns?: string): Promise<void> {
  const cmd = ['link', 'set', 'dev', name, 'netns', netnsPath];
  if (newName && newName !== name) cmd.push('name', newName);
  await ipBatch([cmd], fromNetns);
}

/** Delete a link; true when it was deleted, false when it did not exist. */
/**
 * Names of the links in this process's network namespace, from /proc/self/net/dev (procfs
 * answers for the reader's netns, unlike /sys/class/net, which answers for the one sysfs was
 * mounted in). undefined when it cannot be read.
 */
export function ownNetnsLinkNames(): Set<string> | undefined {
  try {
    const names = new Set<string>();
    for (const line of readFileSync('/proc/self/net/dev', 'utf8').split('\n').slice(2)) {
      const i = line.indexOf(':');
      if (i > 0) names.add(line.slice(0, i).trim());
    }
    return names;
  } catch {
    return undefined;
  }
}

/**
 * Delete a link; false when it does not exist. A host link that /proc/self/net/dev does not
 * list is known to be gone without starting `ip` (a repeated DEL, e.g. containerd's
 * RemovePodSandbox after StopPodSandbox).
 */
export async function deleteLink(name: string, netns?: string): Promise<boolean> {
  if (!netns && ownNetnsLinkNames()?.has(name) === false) return false;
  const nl = await nlDeleteLink(name, netns); // in-process under Bun, undefined: use ip
  if (nl !== undefined) return nl;
  const r = await run('ip', ['link', 'del', 'dev', name], { netns, allowFail: true });
  if (r.exitCode === 0) return true;
  if (/Cannot find device|does not exist|No such device/i.test(r.stderr)) return false;
  throw new CniError(ErrorCode.KernelOperation, `ip link del ${name} failed: ${r.stderr.trim()}`, r.stderr.trim());
}

export async function linkExists(name: string, netns?: string): Promise<boolean> {
  return (await getLink(name, netns)) !== undefined;
}

/** The link's kind (`bridge`, `veth`, ...) from `ip -details`. */
export const linkKind = (l: LinkInfo): string | undefined => l.linkinfo?.info_kind;

/** Addresses of a link as CIDRs ("10.1.2.3/24"), optionally without link-local ones. */
export function linkAddresses(l: LinkInfo, withLinkLocal = false): string[] {
  return (l.addr_info ?? []).filter((a) => withLinkLocal || a.scope !== 'link').map((a) => `${a.local}/${a.prefixlen}`);
}

/**
 * Whether the host link's MAC was set explicitly (addr_assign_type 3, NET_ADDR_SET), so the
 * kernel will not change it when ports come and go. Reads /sys/class/net, which describes the
 * network namespace sysfs was mounted in: when the caller runs in another one (nsenter --net
 * without a new mount namespace), the entry is absent or is another device, the answer is
 * unknown, and `true` is returned so nothing is changed on a guess.
 */
export function macIsPinned(link: Pick<LinkInfo, 'ifname' | 'ifindex' | 'address'>): boolean {
  const dir = `/sys/class/net/${link.ifname}`;
  try {
    const sameDevice =
      Number(readFileSync(`${dir}/ifindex`, 'utf8').trim()) === link.ifindex &&
      readFileSync(`${dir}/address`, 'utf8').trim().toLowerCase() === (link.address ?? '').toLowerCase();
    if (!sameDevice) return true;
    return readFileSync(`${dir}/addr_assign_type`, 'utf8').trim() === '3';
  } catch {
    return true;
  }
}

/** The kernel module behind each virtual link kind the interface plugins create. */
export const KIND_MODULES: Record<string, string> = {
  macvlan: 'macvlan',
  ipvlan: 'ipvlan',
  vlan: '8021q',
  dummy: 'dummy',
  vrf: 'vrf',
  veth: 'veth',
  bridge: 'bridge',
  tun: 'tun',
};

/** Whether `ip link add` stderr says the kernel has no driver for the link kind. */
export const lacksLinkKind = (stderr: string): boolean => /Unknown device type|Operation not supported|not supported/i.test(stderr);

/** The code-101 error for a link kind this kernel cannot create. */
export function missingKind(kind: string, stderr: string): CniError {
  const mod = KIND_MODULES[kind] ?? kind;
  return new CniError(
    ErrorCode.KernelFeatureMissing,
    `this kernel cannot create ${kind} links: module ${mod} is missing (CONFIG_${mod === '8021q' ? 'VLAN_8021Q' : mod.toUpperCase()})`,
    stderr.trim(),
  );
}

/**
 * `ip link add ...` (argv without "ip", ending in `type <kind> ...`) followed by `then` lines,
 * in one `ip -batch` in `netns`. A kernel without the kind's driver: code 101 naming the module;
 * a name taken: code 102.
 */
export async function addLinkOfKind(argv: string[], kind: string, netns?: string, then: string[][] = []): Promise<void> {
  try {
    await ipBatch([argv, ...then], netns);
  } catch (e) {
    const text = e instanceof CniError ? `${e.message}\n${e.details}` : String(e);
    if (lacksLinkKind(text)) throw missingKind(kind, e instanceof CniError ? e.details : text);
    if (/File exists/i.test(text))
      throw new CniError(ErrorCode.Conflict, `cannot create ${kind} link: the name is taken`, e instanceof CniError ? e.details : text);
    throw e;
  }
}

/**
 * Whether the kernel can filter VLANs on a bridge: create a throw-away bridge with
 * vlan_filtering on and read it back. Leaves nothing behind.
 */
export async function vlanFilteringSupported(): Promise<boolean> {
  const probe = `cnivf${randomHex(4)}`;
  const r = await run('ip', ['link', 'add', 'name', probe, 'type', 'bridge', 'vlan_filtering', '1'], { allowFail: true });
  if (r.exitCode !== 0) return false;
  try {
    const l = await getLink(probe);
    return l?.linkinfo?.info_data?.vlan_filtering === 1;
  } finally {
    await run('ip', ['link', 'del', 'dev', probe], { allowFail: true });
  }
}
