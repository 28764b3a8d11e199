/**
 * macspoofchk: drop frames entering the bridge from the container's port with a source MAC
 * other than the container interface's. `table bridge <nftTable>`, chain `macspoof`, one rule
 * per port, tagged with its owner (shared/firewall/owner.ts) like every firewall owner's rules;
 * read, diff and written through shared/firewall/nft.ts. The rule builder is declared in
 * shared/firewall/owners.ts.
 */
import type { Attachment } from '../../shared/cni/types.ts';
import {
  deleteTaggedRules,
  listRules,
  netlinkPath,
  netlinkReads,
  netlinkTransaction,
  taggedRules,
  transaction,
} from '../../shared/firewall/nft.ts';
import { macBytes } from '../../shared/kernel/netlink/codec.ts';
import { addBaseChain, addRule, addTable, CMP_EQ, CMP_NEQ, ex, ex2, type NftMsg } from '../../shared/kernel/netlink/nftnl.ts';
import { nft, nftScript, nftString } from '../../shared/kernel/batch.ts';
import { inNetwork, ownerComment, ownerTag, tagOfComment, type FirewallOwner } from '../../shared/firewall/owner.ts';

export const MACSPOOF_CHAIN = 'macspoof';

export function macspoofScript(table: string, owner: FirewallOwner, port: string, mac: string): string {
  return nftScript([
    nft`add table bridge ${table}`,
    nft`add chain bridge ${table} ${MACSPOOF_CHAIN} { type filter hook prerouting priority -300; policy accept; }`,
    nft`add rule bridge ${table} ${MACSPOOF_CHAIN} iifname ${nftString(port)} ether saddr != ${mac} counter drop comment ${nftString(ownerComment(owner))}`,
  ]);
}

const META_IIFNAME = 6;
const NF_DROP = 0;

/**
 * `macspoofScript` as nf_tables messages (the bytes nft 1.0.6 sends for that text,
 * test/nft-netlink-codec.test.ts); undefined when the port name or MAC is one it would not
 * write (the text path then runs). Pure.
 */
export function macspoofMsgs(table: string, owner: FirewallOwner, port: string, mac: string): NftMsg[] | undefined {
  const m = macBytes(mac);
  const name = new TextEncoder().encode(port);
  if (!m || m.length !== 6 || name.length >= 16 || !name.length) return undefined;
  const padded = new Uint8Array(16);
  padded.set(name);
  return [
    addTable('bridge', table),
    addBaseChain('bridge', table, MACSPOOF_CHAIN, 'filter', 'prerouting', -300),
    addRule(
      'bridge',
      table,
      MACSPOOF_CHAIN,
      [
        ex2.metaLoad(META_IIFNAME, 1),
        ex2.cmp(CMP_EQ, padded),
        ex2.payload(0 /* link layer */, 6, 6, 1),
        ex2.cmp(CMP_NEQ, m),
        ex.counter(),
        ex2.verdictCode(NF_DROP),
      ],
      ownerComment(owner),
      `add rule bridge ${table} ${MACSPOOF_CHAIN} (${port})`,
    ),
  ];
}

/**
 * The bridge ADD's firewall transaction: masquerade (`masq`, the backend's messages and text)
 * and the MAC spoof check, one transaction — one nf_tables netlink batch when both can be
 * messages, else one nft script.
 */
export async function firewallTransaction(
  masq: { msgs?: NftMsg[]; script: string } | undefined,
  macspoof: { table: string; owner: FirewallOwner; port: string; mac: string } | undefined,
): Promise<void> {
  const ms = macspoof && macspoofMsgs(macspoof.table, macspoof.owner, macspoof.port, macspoof.mac);
  if (netlinkPath() && (!masq || masq.msgs) && (!macspoof || ms)) return netlinkTransaction([...(masq?.msgs ?? []), ...(ms ?? [])]);
  const script = (masq?.script ?? '') + (macspoof ? macspoofScript(macspoof.table, macspoof.owner, macspoof.port, macspoof.mac) : '');
  if (script) await transaction(script);
}

/** ADD on its own (one transaction); the bridge plugin usually joins the script into its masquerade's. */
export async function macspoofAdd(table: string, owner: FirewallOwner, port: string, mac: string): Promise<void> {
  await firewallTransaction(undefined, { table, owner, port, mac });
}

export async function macspoofDel(table: string, owner: FirewallOwner): Promise<void> {
  const tag = ownerTag(owner);
  await deleteTaggedRules('bridge', table, MACSPOOF_CHAIN, (t) => t === tag);
}

/** Whether the port's rule is there (CHECK): one GETRULE dump of the chain by netlink, else `nft -j list chain`. */
export async function macspoofPresent(table: string, owner: FirewallOwner): Promise<boolean> {
  const tag = ownerTag(owner);
  if (netlinkPath())
    return ((await netlinkReads('bridge').rules(table, MACSPOOF_CHAIN)) ?? []).some((r) => tagOfComment(r.comment) === tag);
  return taggedRules(await listRules('bridge', table, MACSPOOF_CHAIN), (t) => t === tag).length > 0;
}

export async function macspoofGc(table: string, networkName: string, keep: Attachment[]): Promise<void> {
  const keepTags = new Set(keep.map((a) => ownerTag({ network: networkName, containerId: a.containerID, ifname: a.ifname })));
  await deleteTaggedRules('bridge', table, MACSPOOF_CHAIN, (t) => inNetwork(t, networkName) && !keepTags.has(t));
}
