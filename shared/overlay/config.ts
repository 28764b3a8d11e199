/**
 * The overlay network config: defaults, checks the schema cannot express, and the values every
 * other module derives from it (per-host subnet size, VXLAN device name, state paths). Pure.
 */
import path from 'node:path';
import { invalidConfig } from '../cni/errors.ts';
import type { NetConfBase } from '../cni/types.ts';
import { bitsOf, formatCIDR, network, parseCIDR, type IPNet } from '../ipnet.ts';

export interface EtcdStoreConf {
  type: 'etcd';
  endpoints: string[];
  prefix?: string;
}
export interface FileStoreConf {
  type: 'file';
  path: string;
}
export type StoreConf = EtcdStoreConf | FileStoreConf;

export interface OverlayConf extends NetConfBase {
  network: string;
  subnetLen?: number;
  vni?: number;
  port?: number;
  underlayInterface?: string;
  mtu?: number;
  bridge?: string;
  vxlanInterface?: string;
  ipMasq?: boolean;
  nftTable?: string;
  stateDir?: string;
  store: StoreConf;
  encryption?: string;
  leaseTTL?: number;
  resyncInterval?: number;
  /** passed to the bridge delegate: the container end stays in CNI_NETNS, unconfigured (Docker's CNM driver) */
  disableContainerInterface?: boolean;
}

/** Everything resolved: no optional left except what is discovered on the host (underlay). */
export interface Settings {
  name: string;
  network: IPNet;
  subnetLen: number;
  vni: number;
  port: number;
  underlayInterface?: string;
  mtu?: number;
  bridge: string;
  vxlan: string;
  ipMasq: boolean;
  nftTable: string;
  stateDir: string;
  store: StoreConf;
  encryption: string;
  /** seconds a lease lives without renewal */
  leaseTTL: number;
  /** seconds between the agent's full reconciles */
  resyncInterval: number;
}

/** The schema's largest `leaseTTL` (one year): the file store treats a later expiry as invalid. */
export const MAX_LEASE_TTL_SECONDS = 31_536_000;

export const DEFAULTS = {
  subnetLen: 24,
  vni: 1,
  port: 4789,
  bridge: 'ovl0',
  ipMasq: true,
  nftTable: 'cni_ts_overlay',
  encryption: 'none',
  leaseTTL: 86_400,
  resyncInterval: 5,
  etcdPrefix: '/cni-ts/overlay',
} as const;

export function settingsOf(c: OverlayConf): Settings {
  const net = parseCIDR(c.network);
  if (!net) throw invalidConfig('network', `"${c.network}" is not a CIDR`);
  const cluster = network(net);
  if (cluster.family !== 4) throw invalidConfig('network', 'only an IPv4 cluster network is supported (the underlay may be IPv6)');
  const subnetLen = c.subnetLen ?? DEFAULTS.subnetLen;
  if (subnetLen <= cluster.prefix) throw invalidConfig('subnetLen', `must be longer than the network prefix /${cluster.prefix}`);
  if (subnetLen > bitsOf(cluster.family) - 2) throw invalidConfig('subnetLen', 'leaves no room for a gateway and a pod');
  if (subnetLen - cluster.prefix > 20) throw invalidConfig('subnetLen', `splits ${formatCIDR(cluster)} into more than 2^20 host subnets`);
  const vni = c.vni ?? DEFAULTS.vni;
  const bridge = c.bridge ?? DEFAULTS.bridge;
  const vxlan = c.vxlanInterface ?? `ovl.${vni}`;
  if (vxlan === bridge) throw invalidConfig('vxlanInterface', 'must differ from bridge');
  if (c.store.type === 'etcd' && !c.store.endpoints.length) throw invalidConfig('store.endpoints', 'needs at least one endpoint');
  return {
    name: c.name,
    network: cluster,
    subnetLen,
    vni,
    port: c.port ?? DEFAULTS.port,
    underlayInterface: c.underlayInterface,
    mtu: c.mtu,
    bridge,
    vxlan,
    ipMasq: c.ipMasq ?? DEFAULTS.ipMasq,
    nftTable: c.nftTable ?? DEFAULTS.nftTable,
    stateDir: c.stateDir ?? path.join('/var/lib/cni/overlay', c.name),
    store: c.store,
    encryption: c.encryption ?? DEFAULTS.encryption,
    leaseTTL: c.leaseTTL ?? DEFAULTS.leaseTTL,
    resyncInterval: c.resyncInterval ?? DEFAULTS.resyncInterval,
  };
}

/** VXLAN header overhead: outer IP (20 / 40) + UDP 8 + VXLAN 8 + inner Ethernet 14. */
export const vxlanOverhead = (underlayFamily: 4 | 6): number => (underlayFamily === 6 ? 70 : 50);

/** The overlay config out of a .conf or .conflist (the list's name and version apply). */
export function overlayConfigOf(doc: Record<string, unknown>): OverlayConf {
  if (Array.isArray(doc.plugins)) {
    const p = (doc.plugins as Array<Record<string, unknown>>).find((x) => x && x.type === 'overlay');
    if (!p) throw new Error('the .conflist has no plugin of type "overlay"');
    return { ...p, name: String(doc.name ?? ''), cniVersion: String(doc.cniVersion ?? p.cniVersion ?? '') } as OverlayConf;
  }
  return doc as OverlayConf;
}
