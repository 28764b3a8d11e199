/**
 * veth pairs: the host end stays in the caller's namespace, the peer is created directly
 * inside the target netns (by path) in the same netlink request, so a half-made pair with the
 * container end on the host never exists.
 */
import { sha256Hex } from '../hash.ts';
import { CniError, ErrorCode } from '../cni/errors.ts';
import { ipBatch } from './ip.ts';

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
