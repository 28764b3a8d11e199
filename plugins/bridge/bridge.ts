/**
 * The bridge device: create it (or adopt an existing one) with a pinned MAC, and put the
 * gateway addresses on it, under a lock so concurrent first ADDs never race ("File exists"
 * never surfaces: the lock serialises creation, and addresses go on with `addr replace`).
 */
import { CniError, ErrorCode } from '../../shared/cni/errors.ts';
import { familyOf, mustCIDR, overlaps, canonicalCIDR } from '../../shared/ipnet.ts';
import { ipBatch, type LinkInfo } from '../../shared/kernel/ip.ts';
import { getLink, linkAddresses, linkKind, macIsPinned, randomMac } from '../../shared/kernel/link.ts';
import { withLock } from '../../shared/flock.ts';

export const LOCK_DIR = '/run/cni-ts/locks';

export interface BridgeSpec {
  name: string;
  mtu?: number;
  promisc: boolean;
  /** gateway CIDRs to put on the bridge ("10.1.2.1/24") */
  gateways: string[];
  forceAddress: boolean;
  vlanFiltering: boolean;
}

export interface BridgeState {
  name: string;
  mac: string;
  mtu: number;
  created: boolean;
}

/**
 * The `ip -batch` lines that bring `link` (undefined: absent) to `spec`. Pure.
 * `mac` is used when the bridge is created; an adopted bridge whose MAC is not pinned gets
 * its current MAC set explicitly, so the kernel stops following the lowest port MAC.
 */
export function bridgeCommands(spec: BridgeSpec, link: LinkInfo | undefined, mac: string, pinned: boolean): string[][] {
  const cmds: string[][] = [];
  const br = spec.name;
  if (!link) {
    const add = ['link', 'add', 'name', br, 'address', mac];
    if (spec.mtu) add.push('mtu', String(spec.mtu));
    add.push('type', 'bridge');
    if (spec.vlanFiltering) add.push('vlan_filtering', '1');
    cmds.push(add);
  } else {
    if (!pinned && link.address) cmds.push(['link', 'set', 'dev', br, 'address', link.address]);
    if (spec.vlanFiltering && link.linkinfo?.info_data?.vlan_filtering !== 1)
      cmds.push(['link', 'set', 'dev', br, 'type', 'bridge', 'vlan_filtering', '1']);
  }
  const flags = link?.flags ?? [];
  if (spec.promisc && !flags.includes('PROMISC')) cmds.push(['link', 'set', 'dev', br, 'promisc', 'on']);
  if (!flags.includes('UP')) cmds.push(['link', 'set', 'dev', br, 'up']);
  const have = link ? linkAddresses(link) : [];
  const haveCanon = new Set(have.map((a) => canonicalCIDR(a)));
  for (const gw of spec.gateways) {
    if (haveCanon.has(canonicalCIDR(gw))) continue;
    const want = mustCIDR(gw, 'gateway');
    for (const a of have) {
      const n = mustCIDR(a, 'address');
      if (!overlaps(n, want)) continue;
      if (!spec.forceAddress) {
        throw new CniError(
          ErrorCode.Conflict,
          `bridge ${br} already has address ${a}, different from gateway ${gw}`,
          'set forceAddress to replace it',
        );
      }
      cmds.push(['addr', 'del', a, 'dev', br]);
    }
    const cmd = ['addr', 'replace', gw, 'dev', br];
    if (familyOf(gw) === 6) cmd.push('nodad');
    cmds.push(cmd);
  }
  return cmds;
}

/**
 * Make the bridge as `spec` says. `observed` is the bridge as read by the caller (started
 * early, to overlap with IPAM); it is read here when not given.
 */
export async function ensureBridge(spec: BridgeSpec, observed?: Promise<LinkInfo | undefined>): Promise<BridgeState> {
  // Fast path, no lock: the bridge is already as wanted (every ADD after the first).
  const current = await (observed ?? getLink(spec.name));
  if (current && linkKind(current) === 'bridge' && current.address) {
    const mac = current.address;
    if (bridgeCommands(spec, current, mac, macIsPinned(current)).length === 0) {
      return { name: spec.name, mac, mtu: current.mtu, created: false };
    }
  }
  return withLock(
    LOCK_DIR,
    async () => {
      const link = await getLink(spec.name);
      if (link && linkKind(link) !== 'bridge') {
        throw new CniError(
          ErrorCode.Conflict,
          `${spec.name} already exists but is not a bridge`,
          `it is a ${linkKind(link) ?? 'device without a kind'}`,
        );
      }
      const mac = link?.address ?? randomMac();
      await ipBatch(bridgeCommands(spec, link, mac, link ? macIsPinned(link) : true));
      return { name: spec.name, mac, mtu: link?.mtu ?? spec.mtu ?? 1500, created: !link };
    },
    // One lock for every bridge: creation is rare, and one file is all that is left behind.
    'bridge.lock',
  );
}

/** `bridge vlan` argv lists (without "bridge") for one port. */
export function portVlanCommands(port: string, vlan: number, trunk: Array<[number, number]>, preserveDefault: boolean): string[][] {
  const cmds: string[][] = [];
  if (!preserveDefault) cmds.push(['vlan', 'del', 'dev', port, 'vid', '1']);
  if (vlan) cmds.push(['vlan', 'add', 'dev', port, 'vid', String(vlan), 'pvid', 'untagged']);
  for (const [a, b] of trunk) cmds.push(['vlan', 'add', 'dev', port, 'vid', a === b ? String(a) : `${a}-${b}`]);
  return cmds;
}
