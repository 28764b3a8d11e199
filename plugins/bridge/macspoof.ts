/**
 * macspoofchk: drop frames entering the bridge from the container's port with a source MAC
 * other than the container interface's. `table bridge <nftTable>`, chain `macspoof`, one rule
 * per port, tagged with its owner (shared/firewall/owner.ts) like every firewall owner's rules;
 * read, diff and written through shared/firewall/nft.ts. The rule builder is declared in
 * shared/firewall/owners.ts.
 */
import type { Attachment } from '../../shared/cni/types.ts';
import { deleteTaggedRules, listRules, taggedRules, transaction } from '../../shared/firewall/nft.ts';
import { nft, nftScript, nftString } from '../../shared/kernel/batch.ts';
import { inNetwork, ownerComment, ownerTag, type FirewallOwner } from '../../shared/firewall/owner.ts';

export const MACSPOOF_CHAIN = 'macspoof';

export function macspoofScript(table: string, owner: FirewallOwner, port: string, mac: string): string {
  return nftScript([
    nft`add table bridge ${table}`,
    nft`add chain bridge ${table} ${MACSPOOF_CHAIN} { type filter hook prerouting priority -300; policy accept; }`,
    nft`add rule bridge ${table} ${MACSPOOF_CHAIN} iifname ${nftString(port)} ether saddr != ${mac} counter drop comment ${nftString(ownerComment(owner))}`,
  ]);
}

/** ADD on its own (one transaction); the bridge plugin usually joins the script into its masquerade's. */
export async function macspoofAdd(table: string, owner: FirewallOwner, port: string, mac: string): Promise<void> {
  await transaction(macspoofScript(table, owner, port, mac));
}

export async function macspoofDel(table: string, owner: FirewallOwner): Promise<void> {
  const tag = ownerTag(owner);
  await deleteTaggedRules('bridge', table, MACSPOOF_CHAIN, (t) => t === tag);
}

export async function macspoofPresent(table: string, owner: FirewallOwner): Promise<boolean> {
  const tag = ownerTag(owner);
  return taggedRules(await listRules('bridge', table, MACSPOOF_CHAIN), (t) => t === tag).length > 0;
}

export async function macspoofGc(table: string, networkName: string, keep: Attachment[]): Promise<void> {
  const keepTags = new Set(keep.map((a) => ownerTag({ network: networkName, containerId: a.containerID, ifname: a.ifname })));
  await deleteTaggedRules('bridge', table, MACSPOOF_CHAIN, (t) => inNetwork(t, networkName) && !keepTags.has(t));
}
