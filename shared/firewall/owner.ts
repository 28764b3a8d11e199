/**
 * The firewall's ownership vocabulary: who owns a rule (network, container ID, ifname), the tag
 * written into its comment (`cni:<net8>:<att16>`), the same tag where it must be a name (a chain
 * `<net8>-<att16>`), reading a tag back, and the masquerade entries. Every owner (masquerade,
 * MAC-spoof, portmap, the overlay's masquerade, the firewall plugin) uses these, so DEL and GC
 * find an attachment's rules without reading the container's netns or knowing its addresses.
 * The owners and where their rules live are declared in ./owners.ts; nft goes through ./nft.ts,
 * iptables through ./iptables.ts.
 */
import { sha256Hex } from '../hash.ts';
import type { Attachment } from '../cni/types.ts';
import { familyOf, formatCIDR, mustCIDR, network } from '../ipnet.ts';
import type { NftMsg } from '../kernel/netlink/nftnl.ts';

/** Who owns a rule: one attachment (network, container ID, ifname). */
export interface MasqueradeOwner {
  network: string;
  containerId: string;
  ifname: string;
}
/** The owner of a firewall rule (every owner's, not only masquerade's). */
export type FirewallOwner = MasqueradeOwner;

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
  /**
   * nftables only: `addScript` as nf_tables messages when the owner talks netlink (undefined:
   * use the script), for the same joined transaction.
   */
  addMsgs?(owner: MasqueradeOwner, entries: MasqueradeEntry[]): NftMsg[] | undefined;
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

/** The network's hash (8 hex digits), the first half of every tag. */
export const networkHash = (name: string): string => hex(name, 8);
/** The attachment's hash (16 hex digits), the second half of its tag. */
export const attachmentHash = (o: FirewallOwner): string => hex(`${o.network}\0${o.containerId}\0${o.ifname}`, 16);

/** Tag of a network: rules of one network share it, so GC never touches other networks. */
export const networkTag = (name: string): string => `cni:${networkHash(name)}`;

/** Tag of one attachment: `cni:<net8>:<att16>`; rule comments start with it. */
export const ownerTag = (o: FirewallOwner): string => `${networkTag(o.network)}:${attachmentHash(o)}`;

/**
 * The owner's tag where it has to be a name (an nft chain `pm-<name>`, a file): `<net8>-<att16>`.
 * The same two hashes as `ownerTag`; `tagOfName` reads it back.
 */
export const ownerName = (o: FirewallOwner): string => `${networkHash(o.network)}-${attachmentHash(o)}`;

/** The tag a name made by `ownerName` carries (it may have a prefix, e.g. `pm-`), or undefined. */
export function tagOfName(name: string | undefined): string | undefined {
  const m = /(?:^|[^0-9a-f])([0-9a-f]{8})-([0-9a-f]{16})$/.exec(name ?? '');
  return m ? `cni:${m[1]}:${m[2]}` : undefined;
}

/** Whether `tag` belongs to network `name` (GC: never another network's rules). */
export const inNetwork = (tag: string, name: string): boolean => tag.startsWith(`${networkTag(name)}:`);

/**
 * A rule comment: the tag, then words for people. By default container ID and ifname, made safe
 * and cut to 120 characters (nft allows 128, iptables 256); words of the owner's own (`human`)
 * are kept as they are: the script builders (shared/kernel/batch.ts) refuse what is unsafe.
 */
export function ownerComment(o: FirewallOwner, human?: string): string {
  if (human !== undefined) return `${ownerTag(o)} ${human}`;
  return `${ownerTag(o)} ${`${o.containerId.slice(0, 64)}/${o.ifname}`.replace(/[^A-Za-z0-9_.:/-]/g, '_')}`.slice(0, 120);
}

/** The tag a comment carries, or undefined for comments that are not ours. */
export function tagOfComment(comment: string | undefined): string | undefined {
  const m = /^(cni:[0-9a-f]{8}:[0-9a-f]{16})(\s|$)/.exec(comment ?? '');
  return m ? m[1] : undefined;
}

/**
 * `comment` when it carries a tag, else `tag` (`cni:…`, or a name `ownerName` made) put first, at
 * most 120 characters: every rule an owner writes is tagged. A `tag` that is neither leaves
 * `comment` as it is.
 */
export function commentWithTag(tag: string, comment: string): string {
  const t = tagOfComment(tag) ?? tagOfName(tag);
  return tagOfComment(comment) || !t ? comment : `${t} ${comment}`.slice(0, 120);
}

/** The words for people in a comment (the tag removed); a comment without a tag unchanged. */
export function humanOfComment(comment: string): string {
  return tagOfComment(comment) ? comment.replace(/^\S+\s?/, '') : comment;
}

/** Masquerade entries for container addresses given as CIDRs ("10.1.2.5/24"). */
export function entriesFor(cidrs: string[]): MasqueradeEntry[] {
  return cidrs.map((c) => {
    const n = mustCIDR(c, 'address');
    return { ip: c.slice(0, c.indexOf('/')), subnet: formatCIDR(network(n)) };
  });
}

export const multicastOf = (ip: string): string => (familyOf(ip) === 6 ? 'ff00::/8' : '224.0.0.0/4');
