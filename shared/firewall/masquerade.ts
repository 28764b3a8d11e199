/**
 * Masquerade for container subnets, behind one interface with two backends (the netavark
 * split: drivers call a firewall backend, never iptables/nft directly).
 *
 * Every rule is tagged with its owner (network, container ID, ifname), so DEL and GC find the
 * rules of an attachment without reading the container's netns or knowing its addresses.
 * Masquerade applies to traffic from the container address to anything outside its subnet
 * (and not to multicast): container-to-container traffic on the bridge is never rewritten.
 */
import type { MasqueradeBackend } from './owner.ts';

export * from './owner.ts';

export interface BackendOptions {
  /** nftables table (family inet) holding the masquerade chain; default "cni_bridge" */
  nftTable?: string;
  /** iptables chain in the nat table; default "CNI-BRIDGE-MASQ" */
  iptablesChain?: string;
}

export async function masqueradeBackend(kind: 'nftables' | 'iptables', opts: BackendOptions = {}): Promise<MasqueradeBackend> {
  if (kind === 'iptables') {
    const { IptablesMasquerade } = await import('./masquerade-iptables.ts');
    return new IptablesMasquerade(opts.iptablesChain ?? 'CNI-BRIDGE-MASQ');
  }
  const { NftMasquerade } = await import('./masquerade-nft.ts');
  return new NftMasquerade(opts.nftTable ?? 'cni_bridge');
}
