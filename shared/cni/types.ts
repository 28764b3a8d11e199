/** The canonical (spec 1.1.0) result shape every plugin works in; see result.ts for other versions. */
export interface Interface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
  socketPath?: string;
  pciID?: string;
}

export interface IPConfig {
  /** CIDR: "10.1.2.3/24" */
  address: string;
  gateway?: string;
  /** index into `interfaces` */
  interface?: number;
}

export interface Route {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

export interface DNS {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface Result {
  cniVersion?: string;
  interfaces?: Interface[];
  ips?: IPConfig[];
  routes?: Route[];
  dns?: DNS;
}

export interface Attachment {
  containerID: string;
  ifname: string;
}

/** Fields every network config may carry (spec section 1 and 3). */
export interface NetConfBase {
  cniVersion?: string;
  cniVersions?: string[];
  name: string;
  type?: string;
  disableCheck?: boolean;
  disableGC?: boolean;
  capabilities?: Record<string, boolean>;
  runtimeConfig?: Record<string, unknown>;
  args?: { cni?: Record<string, unknown>; [k: string]: unknown };
  prevResult?: Record<string, unknown>;
  ipam?: { type: string; [k: string]: unknown };
  dns?: DNS;
  'cni.dev/valid-attachments'?: Attachment[];
  'cni.dev/attachments'?: Attachment[];
  [k: string]: unknown;
}
