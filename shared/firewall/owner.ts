/**
 * The firewall's ownership vocabulary: who owns a rule (network, container ID, ifname), the tag
 * written into its comment (`cni:<net>:<owner>`), reading a tag back, and the masquerade
 * entries. Every backend and every owner (masquerade, MAC-spoof) uses these, so DEL and GC find
 * an attachment's rules without reading the container's netns or knowing its addresses.
 */
import { sha256Hex } from '../hash.ts';
import type { Attachment } from '../cni/types.ts';
import { familyOf, formatCIDR, mustCIDR, network } from '../ipnet.ts';

export interface MasqueradeOwner {
  network: string;
  containerId: string;
  ifname: string;
}

/** One container address ("10.1.2.5") and the subnet it must not masquerade to ("10.1.2.0/24"). */
export interface MasqueradeEntry {
  ip: string;
  subnet: string;
}

export interface MasqueradeBackend {
  readonly kind: 'nftables' | 'iptables';
  /**
   * nftables only: the script `add` would apply, so a caller can join its own nft lines
   * (e.g. bridge-family rules) into the same atomic transaction.
   */
  addScript?(owner: MasqueradeOwner, entries: MasqueradeEntry[]): string;
  /** Install the owner's rules (one transaction). */
  add(owner: MasqueradeOwner, entries: MasqueradeEntry[]): Promise<void>;
  /** Remove every rule of the owner; succeeds when there are none. */
  del(owner: MasqueradeOwner): Promise<void>;
  /**
   * Remove the owner's duplicate rules, keeping the first of each: the undo of an ADD that
   * added rules for an attachment that turned out to be live (same owner tag).
   */
  dedupe(owner: MasqueradeOwner): Promise<void>;
  /** The entries (by ip) that have no rule. */
  missing(owner: MasqueradeOwner, entries: MasqueradeEntry[]): Promise<MasqueradeEntry[]>;
  /** Remove the rules of `networkName` whose attachment is not in `keep`. */
  gc(networkName: string, keep: Attachment[]): Promise<void>;
}

const hex = (s: string, n: number): string => sha256Hex(s).slice(0, n);

/** Tag of a network: rules of one network share it, so GC never touches other networks. */
export const networkTag = (name: string): string => `cni:${hex(name, 8)}`;

/** Tag of one attachment: `cni:<net8>:<att16>`; rule comments start with it. */
export const ownerTag = (o: MasqueradeOwner): string =>
  `${networkTag(o.network)}:${hex(`${o.network}\0${o.containerId}\0${o.ifname}`, 16)}`;

/** A rule comment: the tag, then container ID and ifname for people (at most 120 characters). */
export function ownerComment(o: MasqueradeOwner): string {
  const human = `${o.containerId.slice(0, 64)}/${o.ifname}`.replace(/[^A-Za-z0-9_.:/-]/g, '_');
  return `${ownerTag(o)} ${human}`.slice(0, 120);
}

/** The tag a comment carries, or undefined for comments that are not ours. */
export function tagOfComment(comment: string | undefined): string | undefined {
  const m = /^(cni:[0-9a-f]{8}:[0-9a-f]{16})(\s|$)/.exec(comment ?? '');
  return m ? m[1] : undefined;
}

/** Masquerade entries for container addresses given as CIDRs ("10.1.2.5/24"). */
export function entriesFor(cidrs: string[]): MasqueradeEntry[] {
  return cidrs.map((c) => {
    const n = mustCIDR(c, 'address');
    return { ip: c.slice(0, c.indexOf('/')), subnet: formatCIDR(network(n)) };
  });
}

export const multicastOf = (ip: string): string => (familyOf(ip) === 6 ? 'ff00::/8' : '224.0.0.0/4');
