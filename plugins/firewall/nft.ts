/**
 * The firewall plugin's nftables backend: one table of its own, `table inet <nftTable>`
 * (default `cni_firewall`), never touching anyone else's:
 *
 *   set allowed4 { type ipv4_addr }   elements = container addresses, comment = owner tag
 *   set allowed6 { type ipv6_addr }
 *   set bridges  { type ifname }                  bridges with an ingressPolicy
 *   set same     { type ifname . ifname }         br . br for each of them
 *   set isolated { type ifname . ifname }         br . br for ingressPolicy isolated
 *   chain admin  { }                              the user's, created empty, never flushed
 *   chain forward { type filter hook forward priority filter; policy accept;
 *     jump admin
 *     iifname @bridges oifname @bridges iifname . oifname != @same drop   (CNI-ISOLATION-STAGE-1/2)
 *     iifname . oifname @isolated drop                                   (isolated: within the bridge)
 *     ip daddr @allowed4 ct state established,related accept
 *     ip saddr @allowed4 accept   (and ip6 with allowed6)
 *   }
 *
 * ADD/DEL/GC are element updates; each verb is one `nft -f` transaction. DEL finds the
 * attachment's elements by the owner tag in their comment (`cni:<net8>:<att16>`, the one tag
 * scheme of shared/firewall/owner.ts), so it needs neither the netns nor prevResult. Pure script
 * builders here; the table read, the diff and the transactions are shared/firewall/nft.ts's
 * (`readTable`, `setElements`/`taggedElements`, `deleteTaggedElements`, `transaction`).
 */
import type { Attachment } from '../../shared/cni/types.ts';
import { familyOf } from '../../shared/ipnet.ts';
import { nft, nftScript, nftString, type NftText } from '../../shared/kernel/batch.ts';
import type { NftObject } from '../../shared/kernel/nft.ts';
import { inNetwork, ownerComment, ownerTag, tagOfComment, type FirewallOwner } from '../../shared/firewall/owner.ts';
import { deleteTaggedElements, readTable, setElements, tableOf, taggedElements, transaction } from '../../shared/firewall/nft.ts';

export const DEFAULT_FW_NFT_TABLE = 'cni_firewall';
export const NFT_ADMIN_CHAIN = 'admin';
export const NFT_FORWARD_CHAIN = 'forward';
const ADDR_SETS = ['allowed4', 'allowed6'] as const;
const setOf = (ip: string): 'allowed4' | 'allowed6' => (familyOf(ip) === 6 ? 'allowed6' : 'allowed4');

/** Table, sets, chains and the forward chain's rules, created when absent (idempotent: the forward chain is rebuilt, admin never flushed). */
export function baseScript(t: string): NftText[] {
  return [
    nft`add table inet ${t}`,
    nft`add set inet ${t} allowed4 { type ipv4_addr; }`,
    nft`add set inet ${t} allowed6 { type ipv6_addr; }`,
    nft`add set inet ${t} bridges { type ifname; }`,
    nft`add set inet ${t} same { type ifname . ifname; }`,
    nft`add set inet ${t} isolated { type ifname . ifname; }`,
    nft`add chain inet ${t} ${NFT_ADMIN_CHAIN}`,
    nft`add chain inet ${t} ${NFT_FORWARD_CHAIN} { type filter hook forward priority filter; policy accept; }`,
    nft`flush chain inet ${t} ${NFT_FORWARD_CHAIN}`,
    nft`add rule inet ${t} ${NFT_FORWARD_CHAIN} jump ${NFT_ADMIN_CHAIN}`,
    nft`add rule inet ${t} ${NFT_FORWARD_CHAIN} iifname @bridges oifname @bridges iifname . oifname != @same counter drop`,
    nft`add rule inet ${t} ${NFT_FORWARD_CHAIN} iifname . oifname @isolated counter drop`,
    nft`add rule inet ${t} ${NFT_FORWARD_CHAIN} ip daddr @allowed4 ct state established,related counter accept`,
    nft`add rule inet ${t} ${NFT_FORWARD_CHAIN} ip saddr @allowed4 counter accept`,
    nft`add rule inet ${t} ${NFT_FORWARD_CHAIN} ip6 daddr @allowed6 ct state established,related counter accept`,
    nft`add rule inet ${t} ${NFT_FORWARD_CHAIN} ip6 saddr @allowed6 counter accept`,
  ];
}

/** The ADD transaction: base, the attachment's address elements, the bridge's policy elements. Pure. */
export function addScript(t: string, owner: FirewallOwner, ips: string[], bridge?: string, isolated = false): string {
  const c = nftString(ownerComment(owner));
  const lines = baseScript(t);
  for (const ip of ips) lines.push(nft`add element inet ${t} ${setOf(ip)} { ${ip} comment ${c} }`);
  if (bridge) {
    lines.push(nft`add element inet ${t} bridges { ${bridge} }`, nft`add element inet ${t} same { ${bridge} . ${bridge} }`);
    if (isolated) lines.push(nft`add element inet ${t} isolated { ${bridge} . ${bridge} }`);
  }
  return nftScript(lines);
}

/** One address element of ours as listed: its set, value and owner tag. */
export interface AddrElement {
  set: 'allowed4' | 'allowed6';
  ip: string;
  tag?: string;
}

/** The address elements of `nft -j list table` output (the door's element reader). Pure. */
export function addrElements(objs: NftObject[]): AddrElement[] {
  return setElements(tableOf('inet', '', objs), ADDR_SETS).map((e) => {
    const tag = tagOfComment(e.comment);
    return { set: e.set as AddrElement['set'], ip: e.val, ...(tag ? { tag } : {}) };
  });
}

export async function nftAdd(t: string, owner: FirewallOwner, ips: string[], bridge?: string, isolated = false): Promise<void> {
  await transaction(addScript(t, owner, ips, bridge, isolated));
}

/** DEL: the owner's elements (found by tag); nothing there is success. */
export async function nftDel(t: string, owner: FirewallOwner): Promise<void> {
  const tag = ownerTag(owner);
  await deleteTaggedElements('inet', t, ADDR_SETS, (x) => x === tag);
}

/** CHECK: why the attachment's state is incomplete, or undefined. */
export async function nftMissing(t: string, owner: FirewallOwner, ips: string[]): Promise<string | undefined> {
  const table = await readTable('inet', t);
  if (!table) return `table inet ${t} not found`;
  for (const ch of [NFT_ADMIN_CHAIN, NFT_FORWARD_CHAIN]) if (!table.chains.has(ch)) return `chain ${ch} of table inet ${t} not found`;
  const tag = ownerTag(owner);
  const have = taggedElements(setElements(table, ADDR_SETS), (x) => x === tag);
  for (const ip of ips)
    if (!have.some((e) => e.val === ip)) return `expected element ${ip} in set ${setOf(ip)} of table inet ${t} not found`;
  return undefined;
}

/** GC: the network's elements whose attachment is not in `keep`. */
export async function nftGc(t: string, network: string, keep: Attachment[]): Promise<void> {
  const keepTags = new Set(keep.map((a) => ownerTag({ network, containerId: a.containerID, ifname: a.ifname })));
  await deleteTaggedElements('inet', t, ADDR_SETS, (x) => inNetwork(x, network) && !keepTags.has(x));
}
