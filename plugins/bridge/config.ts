/**
 * bridge config: the keys of the Go reference plugin (same names and meaning) plus `nftTable`
 * and `iptablesChain` (where the masquerade and macspoofchk rules live). Pure functions only.
 */
import { invalidConfig } from '../../shared/cni/errors.ts';
import type { CniEnv } from '../../shared/cni/env.ts';
import type { NetConfBase } from '../../shared/cni/types.ts';

export interface VlanTrunk {
  id?: number;
  minID?: number;
  maxID?: number;
}

export interface BridgeConf extends NetConfBase {
  bridge?: string;
  isGateway?: boolean;
  isDefaultGateway?: boolean;
  forceAddress?: boolean;
  ipMasq?: boolean;
  ipMasqBackend?: 'nftables' | 'iptables';
  mtu?: number;
  hairpinMode?: boolean;
  promiscMode?: boolean;
  macspoofchk?: boolean;
  enabledad?: boolean;
  disableContainerInterface?: boolean;
  portIsolation?: boolean;
  vlan?: number;
  vlanTrunk?: VlanTrunk[];
  preserveDefaultVlan?: boolean;
  nftTable?: string;
  iptablesChain?: string;
}

/** The config resolved for one request: defaults applied, MAC picked from its three sources. */
export interface BridgeSettings {
  bridge: string;
  isGateway: boolean;
  isDefaultGateway: boolean;
  forceAddress: boolean;
  ipMasq: boolean;
  masqBackend: 'nftables' | 'iptables';
  mtu?: number;
  hairpinMode: boolean;
  promiscMode: boolean;
  macspoofchk: boolean;
  enableDad: boolean;
  disableContainerInterface: boolean;
  portIsolation: boolean;
  /** VLAN ids to put on the port (empty: no VLAN filtering needed) */
  vlan: number;
  vlanTrunk: Array<[number, number]>;
  preserveDefaultVlan: boolean;
  nftTable: string;
  iptablesChain: string;
  /** container interface MAC, lower case, when the runtime asked for one */
  mac?: string;
  /** whether IPAM is configured (L2-only bridge otherwise) */
  layer3: boolean;
}

export const DEFAULT_BRIDGE = 'cni0';
export const DEFAULT_NFT_TABLE = 'cni_bridge';
export const DEFAULT_IPTABLES_CHAIN = 'CNI-BRIDGE-MASQ';
const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

function checkMac(mac: unknown, field: string): string | undefined {
  if (mac === undefined || mac === '') return undefined;
  if (typeof mac !== 'string' || !MAC_RE.test(mac)) throw invalidConfig(field, `${JSON.stringify(mac)} is not a MAC address`);
  const first = parseInt(mac.slice(0, 2), 16);
  if (first & 1) throw invalidConfig(field, `${mac} is a multicast MAC address`);
  return mac.toLowerCase();
}

/** Trunk entries as inclusive [min, max] ranges. */
export function trunkRanges(trunks: VlanTrunk[]): Array<[number, number]> {
  return trunks.map((t, i) => {
    if (t.id !== undefined) {
      if (t.minID !== undefined || t.maxID !== undefined) throw invalidConfig(`vlanTrunk[${i}]`, 'give either id or minID/maxID');
      return [t.id, t.id];
    }
    if (t.minID === undefined || t.maxID === undefined) throw invalidConfig(`vlanTrunk[${i}]`, 'needs id, or both minID and maxID');
    if (t.minID > t.maxID) throw invalidConfig(`vlanTrunk[${i}]`, 'minID is greater than maxID');
    return [t.minID, t.maxID];
  });
}

/**
 * Resolve the config for a request. MAC precedence as the reference: runtimeConfig.mac, then
 * args.cni.mac, then CNI_ARGS MAC=.
 */
export function resolveSettings(c: BridgeConf, env: Pick<CniEnv, 'args'>): BridgeSettings {
  const macFromArgs = checkMac(env.args.get('MAC'), 'CNI_ARGS MAC');
  const macFromConfArgs = checkMac(c.args?.cni?.mac, 'args.cni.mac');
  const macFromRuntime = checkMac(c.runtimeConfig?.mac, 'runtimeConfig.mac');
  const isDefaultGateway = c.isDefaultGateway === true;
  return {
    bridge: c.bridge || DEFAULT_BRIDGE,
    isGateway: c.isGateway === true || isDefaultGateway,
    isDefaultGateway,
    forceAddress: c.forceAddress === true,
    ipMasq: c.ipMasq === true,
    masqBackend: c.ipMasqBackend ?? 'nftables',
    mtu: c.mtu || undefined,
    hairpinMode: c.hairpinMode === true,
    promiscMode: c.promiscMode === true,
    macspoofchk: c.macspoofchk === true,
    enableDad: c.enabledad === true,
    disableContainerInterface: c.disableContainerInterface === true,
    portIsolation: c.portIsolation === true,
    vlan: c.vlan ?? 0,
    vlanTrunk: trunkRanges(c.vlanTrunk ?? []),
    preserveDefaultVlan: c.preserveDefaultVlan !== false,
    nftTable: c.nftTable || DEFAULT_NFT_TABLE,
    iptablesChain: c.iptablesChain || DEFAULT_IPTABLES_CHAIN,
    mac: macFromRuntime ?? macFromConfArgs ?? macFromArgs,
    layer3: Boolean(c.ipam?.type),
  };
}

/** Whether the settings need bridge VLAN filtering. */
export const needsVlanFiltering = (s: BridgeSettings): boolean => s.vlan !== 0 || s.vlanTrunk.length > 0;
