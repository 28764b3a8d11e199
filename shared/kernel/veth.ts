/**
 * veth pairs: the host end stays in the caller's namespace, the peer is created directly
 * inside the target netns (by path) in the same netlink request, so a half-made pair with the
 * container end on the host never exists.
 */
import { sha256Hex } from '../hash.ts';
import { CniError, ErrorCode } from '../cni/errors.ts';
import { getLink, ipBatch } from './ip.ts';

export interface VethSpec {
  /** host-side name (at most 15 characters) */
  hostName: string;
  /** container-side name, created inside `peerNetns` */
  peerName: string;
  /** path of the peer's network namespace (any nsfs path) */
  peerNetns: string;
  mtu?: number;
  hostMac?: string;
  peerMac?: string;
}

/**
 * A deterministic host-side name: `prefix` + 8 hex of sha256(containerID, ifname), so DEL
 * finds the pair without reading the container's netns.
 */
export function hostVethName(containerId: string, ifname: string, prefix = 'veth'): string {
  const h = sha256Hex(`${containerId}\0${ifname}`);
  return `${prefix}${h.slice(0, 8)}`.slice(0, 15);
}

/**
 * Host-side names an attachment may use, in order: the `hostVethName` first (what DEL and
 * CHECK derive without a record), then rehashes with a counter, for when that name is already
 * held by another attachment (8 hex digits of a hash collide at tens of thousands of IDs).
 */
export function hostVethCandidates(containerId: string, ifname: string, prefix = 'veth', count = 8): string[] {
  const out = [hostVethName(containerId, ifname, prefix)];
  for (let k = 1; k < count; k++) out.push(`${prefix}${sha256Hex(`${containerId}\0${ifname}\0${k}`).slice(0, 8)}`.slice(0, 15));
  return out;
}

/**
 * Which of the host links `hostNames` is the peer of `peerName` inside `peerNetns` (a live
 * pair), if any: the container end's `link_index` is the host end's ifindex and the other way
 * round. Two reads; used only when a candidate name is already taken.
 */
export async function livePairOf(hostNames: string[], peerName: string, peerNetns: string): Promise<string | undefined> {
  if (!hostNames.length) return undefined;
  const [peer, ...hosts] = await Promise.all([
    getLink(peerName, peerNetns).catch(() => undefined),
    ...hostNames.map((n) => getLink(n).catch(() => undefined)),
  ]);
  if (!peer || peer.linkinfo?.info_kind !== 'veth') return undefined;
  const host = hosts.find((h) => h && h.ifindex === peer.link_index && h.link_index === peer.ifindex && h.linkinfo?.info_kind === 'veth');
  return host?.ifname;
}

/** `ip link add` argv (without "ip") creating the pair with the peer inside its netns. */
export function vethAddCommand(s: VethSpec): string[] {
  const cmd = ['link', 'add', 'name', s.hostName];
  if (s.mtu) cmd.push('mtu', String(s.mtu));
  if (s.hostMac) cmd.push('address', s.hostMac);
  cmd.push('type', 'veth', 'peer', 'name', s.peerName);
  if (s.mtu) cmd.push('mtu', String(s.mtu));
  if (s.peerMac) cmd.push('address', s.peerMac);
  cmd.push('netns', s.peerNetns);
  return cmd;
}

/**
 * Create the pair, then run `hostCmds` (e.g. `link set <host> master br`, `up`) in the same
 * `ip -batch` process. "File exists" becomes a Conflict naming both ends.
 */
export async function createVethPair(s: VethSpec, hostCmds: string[][] = []): Promise<void> {
  try {
    await ipBatch([vethAddCommand(s), ...hostCmds]);
  } catch (e) {
    if (e instanceof CniError && /File exists/i.test(e.message)) {
      throw new CniError(
        ErrorCode.Conflict,
        `interface ${s.peerName} in ${s.peerNetns} or host interface ${s.hostName} already exists`,
        e.details || e.message,
      );
    }
    throw e;
  }
}
