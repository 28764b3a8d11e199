/** The shapes of `ip -json` output the plugins read (links, addresses, routes): what ip.ts returns and the netlink decoder produces. */
export interface LinkInfo {
  ifindex: number;
  ifname: string;
  flags: string[];
  mtu: number;
  operstate?: string;
  address?: string;
  link?: string;
  link_index?: number;
  master?: string;
  link_netnsid?: number;
  linkinfo?: {
    info_kind?: string;
    info_slave_kind?: string;
    info_data?: Record<string, unknown>;
    info_slave_data?: Record<string, unknown>;
  };
  addr_info?: AddrInfo[];
  [k: string]: unknown;
}

export interface AddrInfo {
  family: 'inet' | 'inet6';
  local: string;
  prefixlen: number;
  scope?: string;
  dynamic?: boolean;
  tentative?: boolean;
  dadfailed?: boolean;
  [k: string]: unknown;
}

export interface RouteInfo {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  scope?: string;
  metric?: number;
  table?: string;
  mtu?: number;
  flags?: string[];
  [k: string]: unknown;
}
