/**
 * What a Docker network means in CNI terms (pure, no I/O): the `--opt` keys of
 * `docker network create -d cni-ts` mapped onto our bridge / portmap / endpoint plugin keys,
 * the network list (conflist) every endpoint of the network is attached with, and the
 * conversions between CNM's messages and CNI's results. See docs/docker.md.
 */
import { canonicalCIDR, contains, familyOf, formatIP, firstHost, mustCIDR, network, parseCIDR, parseIP } from '../../shared/ipnet.ts';
import { validLabelKey } from '../../shared/objects/labelkey.ts';

/** A bad `--opt`: CreateNetwork answers `{"Err": message}` and `docker network create` prints it. */
export class OptionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OptionError';
  }
}

export interface NetworkSettings {
  /** `bridge` (one host) or `overlay` (this node's overlay, the agent config's `overlay.config`) */
  type: 'bridge' | 'overlay';
  /** the `--opt` keys given (an overlay network refuses the bridge-only ones) */
  given: string[];
  /** CNI network name (Endpoint spec.network, masquerade owner, DNS network domain key) */
  network: string;
  bridge: string;
  mtu?: number;
  ipMasq: boolean;
  ipMasqBackend?: 'nftables' | 'iptables';
  hairpinMode: boolean;
  promiscMode: boolean;
  macspoofchk: boolean;
  portIsolation: boolean;
  vlan?: number;
  /** bridge plugin's nft table (masquerade, macspoofchk) */
  nftTable?: string;
  /** portmap plugin's nft table / backend / snat */
  portmapTable?: string;
  portmapBackend?: 'nftables' | 'iptables';
  portmapSnat?: boolean;
  /** Endpoint namespace (policy, DNS search) */
  namespace: string;
  /** labels every endpoint of the network gets (`--opt label.<key>=<value>`) */
  labels: Record<string, string>;
}

type Setter = (s: NetworkSettings, v: string, key: string) => void;

const bool = (v: string, key: string): boolean => {
  if (/^(true|1|yes|on)$/i.test(v)) return true;
  if (/^(false|0|no|off)$/i.test(v)) return false;
  throw new OptionError(`option ${key}: ${JSON.stringify(v)} is not a boolean (true/false)`);
};
const int = (v: string, key: string, min: number, max: number): number => {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max)
    throw new OptionError(`option ${key}: ${JSON.stringify(v)} is not a number from ${min} to ${max}`);
  return n;
};
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
const NFT_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const NS_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const CNI_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const ident =
  (re: RegExp, what: string) =>
  (v: string, key: string): string => {
    if (!re.test(v)) throw new OptionError(`option ${key}: ${JSON.stringify(v)} is not ${what}`);
    return v;
  };
const ifname = ident(IFNAME, 'an interface name (1-15 characters: letters, digits, _ . -)');
const nftName = ident(NFT_NAME, 'an nft table name (letters, digits, _)');
const backend = (v: string, key: string): 'nftables' | 'iptables' => {
  if (v !== 'nftables' && v !== 'iptables') throw new OptionError(`option ${key}: must be "nftables" or "iptables"`);
  return v;
};

/** Each `--opt` key we understand (and Docker's own spellings of the same things). */
export const OPTION_KEYS: Record<string, Setter> = {
  bridge: (s, v, k) => (s.bridge = ifname(v, k)),
  'com.docker.network.bridge.name': (s, v, k) => (s.bridge = ifname(v, k)),
  mtu: (s, v, k) => (s.mtu = int(v, k, 68, 65535)),
  'com.docker.network.driver.mtu': (s, v, k) => (s.mtu = int(v, k, 68, 65535)),
  ipMasq: (s, v, k) => (s.ipMasq = bool(v, k)),
  'com.docker.network.bridge.enable_ip_masquerade': (s, v, k) => (s.ipMasq = bool(v, k)),
  ipMasqBackend: (s, v, k) => (s.ipMasqBackend = backend(v, k)),
  hairpinMode: (s, v, k) => (s.hairpinMode = bool(v, k)),
  promiscMode: (s, v, k) => (s.promiscMode = bool(v, k)),
  macspoofchk: (s, v, k) => (s.macspoofchk = bool(v, k)),
  portIsolation: (s, v, k) => (s.portIsolation = bool(v, k)),
  'com.docker.network.bridge.enable_icc': (s, v, k) => (s.portIsolation = !bool(v, k)),
  vlan: (s, v, k) => (s.vlan = int(v, k, 0, 4094)),
  nftTable: (s, v, k) => (s.nftTable = nftName(v, k)),
  portmapTable: (s, v, k) => (s.portmapTable = nftName(v, k)),
  portmapBackend: (s, v, k) => (s.portmapBackend = backend(v, k)),
  portmapSnat: (s, v, k) => (s.portmapSnat = bool(v, k)),
  namespace: (s, v, k) => (s.namespace = ident(NS_NAME, 'a namespace name (lower case, digits, -)')(v, k)),
  network: (s, v, k) => (s.network = ident(CNI_NAME, 'a CNI network name')(v, k)),
  type: (s, v, k) => {
    if (v !== 'bridge' && v !== 'overlay') throw new OptionError(`option ${k}: must be "bridge" or "overlay" (got ${JSON.stringify(v)})`);
    s.type = v;
  },
};

/** Keys that only mean something for a bridge network: an overlay network takes them from the overlay config. */
export const BRIDGE_ONLY = [
  'bridge',
  'com.docker.network.bridge.name',
  'mtu',
  'com.docker.network.driver.mtu',
  'ipMasq',
  'com.docker.network.bridge.enable_ip_masquerade',
  'ipMasqBackend',
  'hairpinMode',
  'promiscMode',
  'macspoofchk',
  'portIsolation',
  'com.docker.network.bridge.enable_icc',
  'vlan',
  'nftTable',
  'network',
];

const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/**
 * Settings of a network from Docker's `com.docker.network.generic` options. Unknown keys are
 * an error naming the known ones, except Docker's own `com.docker.network.*` keys that have no
 * meaning here (ignored).
 */
export function networkSettings(networkId: string, generic: Record<string, unknown>): NetworkSettings {
  const s: NetworkSettings = {
    type: 'bridge',
    given: [],
    network: `docker-${networkId.slice(0, 12)}`,
    bridge: `cnd-${networkId.slice(0, 11)}`,
    ipMasq: true,
    hairpinMode: false,
    promiscMode: false,
    macspoofchk: false,
    portIsolation: false,
    namespace: 'default',
    labels: {},
  };
  for (const [key, raw] of Object.entries(generic ?? {})) {
    const v = typeof raw === 'string' ? raw : typeof raw === 'number' || typeof raw === 'boolean' ? String(raw) : undefined;
    if (v === undefined) throw new OptionError(`option ${key}: must be a string`);
    if (key.startsWith('label.')) {
      const lk = key.slice('label.'.length);
      if (!validLabelKey(lk)) throw new OptionError(`option ${key}: ${JSON.stringify(lk)} is not a label key ([prefix/]name)`);
      if (!LABEL_VALUE.test(v) || v.length > 63) throw new OptionError(`option ${key}: ${JSON.stringify(v)} is not a label value`);
      s.labels[lk] = v;
      continue;
    }
    const set = OPTION_KEYS[key];
    if (set) {
      set(s, v, key);
      s.given.push(key);
    } else if (!key.startsWith('com.docker.network.')) {
      const known = [...Object.keys(OPTION_KEYS).filter((k) => !k.startsWith('com.docker.')), 'label.<key>'];
      throw new OptionError(`unknown option ${JSON.stringify(key)} (cni-ts knows: ${known.join(', ')}; see docs/docker.md)`);
    }
  }
  const misplaced = s.type === 'overlay' ? s.given.filter((k) => BRIDGE_ONLY.includes(k)) : [];
  if (misplaced.length)
    throw new OptionError(
      `option ${misplaced.join(', ')}: not for a type=overlay network (the bridge, MTU, masquerade and CNI network name are the overlay config's, agent config overlay.config)`,
    );
  return s;
}

export interface PoolData {
  pool: string;
  gateway?: string;
}

/** CNM's IPv4Data/IPv6Data entries (Pool, Gateway as CIDR), checked. */
export function poolsOf(data: unknown, family: 4 | 6): PoolData[] {
  if (data === undefined || data === null) return [];
  if (!Array.isArray(data)) throw new OptionError(`IPv${family}Data must be a list`);
  return data.map((d: { Pool?: string; Gateway?: string }, i) => {
    const pool = d?.Pool ? canonicalCIDR(d.Pool) : undefined;
    if (!pool || familyOf(pool) !== family)
      throw new OptionError(`IPv${family}Data[${i}].Pool ${JSON.stringify(d?.Pool)} is not an IPv${family} subnet`);
    const out: PoolData = { pool };
    if (d.Gateway) {
      const gw = parseCIDR(d.Gateway.includes('/') ? d.Gateway : `${d.Gateway}/${pool.split('/')[1]}`);
      if (!gw) throw new OptionError(`IPv${family}Data[${i}].Gateway ${JSON.stringify(d.Gateway)} is not an address`);
      out.gateway = `${formatIP(gw)}/${pool.split('/')[1]}`;
    }
    return out;
  });
}

/** The network list every endpoint of the network is attached with; `ipam` is filled per endpoint. */
export function networkConflist(s: NetworkSettings, agentConfig: string): Record<string, unknown> {
  const bridge: Record<string, unknown> = {
    type: 'bridge',
    bridge: s.bridge,
    isGateway: true,
    ipMasq: s.ipMasq,
    hairpinMode: s.hairpinMode,
    promiscMode: s.promiscMode,
    macspoofchk: s.macspoofchk,
    portIsolation: s.portIsolation,
    // Docker configures the container side itself after moving it into the sandbox (CNM)
    disableContainerInterface: true,
  };
  if (s.mtu) bridge.mtu = s.mtu;
  if (s.vlan) bridge.vlan = s.vlan;
  if (s.nftTable) bridge.nftTable = s.nftTable;
  if (s.ipMasqBackend) bridge.ipMasqBackend = s.ipMasqBackend;
  const endpoint: Record<string, unknown> = { type: 'endpoint', agentConfig, setDns: false, capabilities: { aliases: true } };
  return { cniVersion: '1.0.0', name: s.network, plugins: [bridge, endpoint] };
}

/**
 * The network list of a `type=overlay` network: this node's overlay plugin (the agent config's
 * `overlay.config`, so the lease, VTEP, bridge, host-local store and CNI network name are the
 * ones CNI attachments of that overlay on this host use) with `disableContainerInterface` (its
 * bridge delegate leaves the container end for Docker), then endpoint. The address Docker was
 * given is asked of the overlay's host-local through `args.cni.ips` per endpoint.
 */
export function overlayConflist(overlay: Record<string, unknown>, agentConfig: string): Record<string, unknown> {
  const { name, cniVersion, ...plugin } = overlay;
  const endpoint: Record<string, unknown> = { type: 'endpoint', agentConfig, setDns: false, capabilities: { aliases: true } };
  return {
    cniVersion: typeof cniVersion === 'string' && cniVersion ? cniVersion : '1.0.0',
    name,
    plugins: [{ ...plugin, type: 'overlay', disableContainerInterface: true }, endpoint],
  };
}

/** The portmap plugin config of the network (ProgramExternalConnectivity runs it on its own). */
export function portmapConf(s: Pick<NetworkSettings, 'portmapTable' | 'portmapBackend' | 'portmapSnat'>): Record<string, unknown> {
  const p: Record<string, unknown> = { type: 'portmap', capabilities: { portMappings: true } };
  if (s.portmapTable) p.nftTable = s.portmapTable;
  if (s.portmapBackend) p.backend = s.portmapBackend;
  if (s.portmapSnat !== undefined) p.snat = s.portmapSnat;
  return p;
}

export interface EndpointInput {
  /** "10.1.0.5/24" (Docker's Interface.Address / AddressIPv6) */
  addresses: string[];
  labels: Record<string, string>;
  ports: Array<{ containerPort: number; protocol: 'TCP' | 'UDP' | 'SCTP' }>;
}

/**
 * The conflist of one endpoint: the network's, with `static` IPAM holding the addresses Docker
 * gave (from our IPAM driver, whose host-local store already reserved them, or Docker's own
 * IPAM) and each family's gateway, and the endpoint plugin's labels and container ports.
 */
export function endpointConflist(net: Record<string, unknown>, pools: PoolData[], ep: EndpointInput): Record<string, unknown> {
  const plugins = (net.plugins as Array<Record<string, unknown>>).map((p) => ({ ...p }));
  const addresses = ep.addresses.map((a) => {
    const c = mustCIDR(a, 'Interface.Address');
    const pool = pools.find((p) => {
      const pc = parseCIDR(p.pool);
      return pc !== null && contains(network(pc), c);
    });
    const out: Record<string, unknown> = { address: a };
    const gw = pool?.gateway ? pool.gateway.split('/')[0] : undefined;
    if (gw) out.gateway = gw;
    return out;
  });
  if (plugins[0]?.type === 'overlay') {
    // the overlay's own host-local (its store on this host) takes exactly these addresses
    const { args, ...rest } = plugins[0];
    const cni = { ...(((args as Record<string, unknown> | undefined)?.cni as Record<string, unknown> | undefined) ?? {}) };
    cni.ips = ep.addresses.map((a) => a.split('/')[0]!);
    plugins[0] = { ...rest, args: { ...((args as Record<string, unknown> | undefined) ?? {}), cni } };
  } else plugins[0] = { ...plugins[0], ipam: { type: 'static', addresses } };
  const endpoint = plugins.find((p) => p.type === 'endpoint');
  if (endpoint) {
    const cni: Record<string, unknown> = {};
    if (Object.keys(ep.labels).length) cni.labels = ep.labels;
    if (ep.ports.length) cni.containerPorts = ep.ports;
    if (Object.keys(cni).length) endpoint.args = { cni };
  }
  return { ...net, plugins };
}

/** libnetwork's protocol numbers in port bindings (types.Protocol). */
export const PROTOCOLS: Record<number, 'tcp' | 'udp' | 'sctp'> = { 6: 'tcp', 17: 'udp', 132: 'sctp' };

export interface PortBinding {
  Proto?: number;
  IP?: string;
  Port?: number;
  HostIP?: string;
  HostPort?: number;
  HostPortEnd?: number;
}

export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: string;
  hostIP?: string;
}

/** One `-p` binding as Docker sends it: `hostPort` 0 = any free port; `hostPortEnd` > `hostPort` = any one of that range. */
export interface PortRequest extends PortMapping {
  hostPortEnd: number;
}

/**
 * `com.docker.network.portmap` (libnetwork's PortBinding list) as requests. Docker sends one
 * binding per container port: `-p 8080:80` → HostPort 8080; `-p 80` and `--publish-all` →
 * HostPort 0; `-p 8000-8010:80` → HostPort 8000, HostPortEnd 8010 (any one of them, as
 * Docker's own port allocator reads it).
 */
export function portRequestsOf(bindings: unknown): PortRequest[] {
  if (bindings === undefined || bindings === null) return [];
  if (!Array.isArray(bindings)) throw new OptionError('com.docker.network.portmap must be a list');
  const out: PortRequest[] = [];
  for (const b of bindings as PortBinding[]) {
    const protocol = PROTOCOLS[b.Proto ?? 6];
    if (!protocol) throw new OptionError(`port binding ${JSON.stringify(b)}: protocol ${b.Proto} is not tcp, udp or sctp`);
    if (!b.Port) throw new OptionError(`port binding ${JSON.stringify(b)}: no container port`);
    const hostPort = b.HostPort ?? 0;
    const r: PortRequest = {
      hostPort,
      hostPortEnd: b.HostPortEnd && b.HostPortEnd > hostPort ? b.HostPortEnd : hostPort,
      containerPort: b.Port,
      protocol,
    };
    if (b.HostIP && b.HostIP !== '0.0.0.0' && b.HostIP !== '::' && parseIP(b.HostIP)) r.hostIP = b.HostIP;
    out.push(r);
  }
  return out;
}

/** `docker.hostPorts` ("49153-60999"): the range `-p PORT` and `--publish-all` take host ports from. */
export function parsePortRange(v: string): [number, number] | undefined {
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(v);
  if (!m) return undefined;
  const [lo, hi] = [Number(m[1]), Number(m[2])];
  return lo >= 1 && hi <= 65535 && lo <= hi ? [lo, hi] : undefined;
}

/**
 * Host ports for the requests (pure): a fixed port is kept (refused when another endpoint of
 * this node publishes it), a range or 0 takes the lowest port free for that protocol in the
 * range or in `defaults` (docker.hostPorts). `taken`: "tcp/8080" of every other endpoint.
 */
export function allocatePorts(reqs: PortRequest[], taken: ReadonlySet<string>, defaults: [number, number]): PortMapping[] {
  const used = new Set(taken);
  const out: PortMapping[] = [];
  // fixed ports first, so a free pick never takes a port asked for by number
  for (const r of reqs) if (r.hostPort && r.hostPortEnd === r.hostPort) used.add(`${r.protocol}/${r.hostPort}`);
  for (const r of reqs) {
    const { hostPortEnd: _end, ...m } = r;
    if (r.hostPort && r.hostPortEnd === r.hostPort) {
      if (taken.has(`${r.protocol}/${r.hostPort}`))
        throw new OptionError(`host port ${r.hostPort}/${r.protocol} is already published by another container on this node`);
      out.push(m);
      continue;
    }
    const [lo, hi] = r.hostPort ? [r.hostPort, r.hostPortEnd] : defaults;
    let port = 0;
    for (let p = lo; p <= hi && !port; p++) if (!used.has(`${r.protocol}/${p}`)) port = p;
    if (!port) throw new OptionError(`no free ${r.protocol} host port in ${lo}-${hi} for container port ${r.containerPort}`);
    used.add(`${r.protocol}/${port}`);
    out.push({ ...m, hostPort: port });
  }
  return out;
}

/** The bindings as libnetwork's PortBinding list (EndpointOperInfo's `com.docker.network.portmap`). */
export function portBindingsOf(mappings: PortMapping[], containerIP?: string): PortBinding[] {
  const num = (p: string): number => Number(Object.entries(PROTOCOLS).find(([, v]) => v === p)?.[0] ?? 6);
  return mappings.map((m) => ({
    Proto: num(m.protocol),
    ...(containerIP ? { IP: containerIP } : {}),
    Port: m.containerPort,
    HostIP: m.hostIP ?? '0.0.0.0',
    HostPort: m.hostPort,
    HostPortEnd: m.hostPort,
  }));
}

/** `com.docker.network.endpoint.exposedports` as the endpoint plugin's container ports. */
export function exposedPortsOf(v: unknown): Array<{ containerPort: number; protocol: 'TCP' | 'UDP' | 'SCTP' }> {
  if (!Array.isArray(v)) return [];
  const seen = new Set<string>();
  const out: Array<{ containerPort: number; protocol: 'TCP' | 'UDP' | 'SCTP' }> = [];
  for (const p of v as Array<{ Proto?: number; Port?: number }>) {
    const proto = PROTOCOLS[p.Proto ?? 6];
    if (!proto || !p.Port) continue;
    const k = `${p.Port}/${proto}`;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push({ containerPort: p.Port, protocol: proto.toUpperCase() as 'TCP' | 'UDP' | 'SCTP' });
  }
  return out;
}

/** The interface name Docker moves (CNI_IFNAME of the attachment): `<prefix><endpoint ID>`, 15 characters. */
export function srcNameOf(endpointId: string, prefix: string): string {
  return `${prefix}${endpointId}`.slice(0, 15);
}

/** Join's StaticRoutes from the CNI result's routes (the default route is Join's Gateway). */
export function staticRoutesOf(
  routes: Array<{ dst: string; gw?: string }> | undefined,
  gateways: { 4?: string; 6?: string } = {},
): Array<{ Destination: string; RouteType: number; NextHop?: string }> {
  // a CNI route without gw goes through the default gateway (the spec's reading), not on-link
  return (routes ?? [])
    .filter((r) => !/^(0\.0\.0\.0|::)\/0$/.test(canonicalCIDR(r.dst) ?? r.dst))
    .map((r) => {
      const gw = r.gw ?? gateways[familyOf(r.dst) === 6 ? 6 : 4];
      return gw ? { Destination: r.dst, RouteType: 0, NextHop: gw } : { Destination: r.dst, RouteType: 1 };
    });
}

/** The first host of a pool (the gateway Docker's own IPAM would pick). */
export const firstHostOf = (pool: string): string => formatIP(firstHost(mustCIDR(pool, 'pool')));
