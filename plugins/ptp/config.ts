/** ptp config: the Go reference's keys (`ipMasq`, `mtu`, `ipam`, `dns`) plus the masquerade location keys bridge has. */
import type { NetConfBase } from '../../shared/cni/types.ts';

export interface PtpConf extends NetConfBase {
  ipMasq?: boolean;
  ipMasqBackend?: 'nftables' | 'iptables';
  mtu?: number;
  nftTable?: string;
  iptablesChain?: string;
}

export interface PtpSettings {
  ipMasq: boolean;
  masqBackend: 'nftables' | 'iptables';
  mtu?: number;
  nftTable: string;
  iptablesChain: string;
}

export const DEFAULT_NFT_TABLE = 'cni_ptp';
export const DEFAULT_IPTABLES_CHAIN = 'CNI-PTP-MASQ';

export function resolvePtp(c: PtpConf): PtpSettings {
  return {
    ipMasq: c.ipMasq === true,
    masqBackend: c.ipMasqBackend ?? 'nftables',
    mtu: c.mtu || undefined,
    nftTable: c.nftTable || DEFAULT_NFT_TABLE,
    iptablesChain: c.iptablesChain || DEFAULT_IPTABLES_CHAIN,
  };
}
