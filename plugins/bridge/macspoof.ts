/**
 * macspoofchk: drop frames entering the bridge from the container's port with a source MAC
 * other than the container interface's. `table bridge <nftTable>`, chain `macspoof`, one rule
 * per port tagged like the masquerade rules.
 */
import type { Attachment } from '../../shared/cni/types.ts';
import { deleteTaggedRules, listRules, taggedRules } from '../../shared/firewall/masquerade-nft.ts';
import { nft, nftScript, nftString } from '../../shared/kernel/batch.ts';
import { networkTag, ownerComment, ownerTag, type MasqueradeOwner } from '../../shared/firewall/masquerade.ts';

export const MACSPOOF_CHAIN = 'macspoof';

export function macspoofScript(table: string, owner: MasqueradeOwner, port: string, mac: string): string {
  return nftScript([
    nft`add table bridge ${table}`,
    nft`add chain bridge ${table} ${MACSPOOF_CHAIN} { type filter hook prerouting priority -300; policy accept; }`,
    nft`add rule bridge ${table} ${MACSPOOF_CHAIN} iifname ${nftString(port)} ether saddr != ${mac} counter drop comment ${nftString(ownerComment(owner))}`,
  ]);
}

export async function macspoofDel(table: string, owner: MasqueradeOwner): Promise<void> {
  const tag = ownerTag(owner);
  await deleteTaggedRules('bridge', table, MACSPOOF_CHAIN, (t) => t === tag);
}

export async function macspoofPresent(table: string, owner: MasqueradeOwner): Promise<boolean> {
  const tag = ownerTag(owner);
  return taggedRules(await listRules('bridge', table, MACSPOOF_CHAIN), (t) => t === tag).length > 0;
}

export async function macspoofGc(table: string, networkName: string, keep: Attachment[]): Promise<void> {
  const net = networkTag(networkName);
  const keepTags = new Set(keep.map((a) => ownerTag({ network: networkName, containerId: a.containerID, ifname: a.ifname })));
  await deleteTaggedRules('bridge', table, MACSPOOF_CHAIN, (t) => t.startsWith(`${net}:`) && !keepTags.has(t));
}
