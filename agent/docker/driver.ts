/**
 * Docker's libnetwork remote NetworkDriver + IpamDriver, answered with our plugins: every
 * attachment is a CNI ADD of the network's list (bridge with static IPAM, then endpoint) run
 * through the runtime library (shared/libcni/libcni.ts), addresses come from host-local's
 * store, `-p` is the portmap plugin. State lives in the cluster store (DockerNetwork,
 * DockerEndpoint, DockerPool objects) so a restarted agent answers for what it made before.
 *
 * CNM moves the container's interface itself (Join returns its name): the bridge plugin runs
 * with CNI_NETNS = the agent's own netns and `disableContainerInterface`, so it creates the veth
 * pair in the host namespace, attaches the host end to the bridge, puts the gateway on the
 * bridge and programs masquerade; the "container" end stays in the host namespace, down and
 * without addresses, until Docker moves it into the sandbox, renames it and configures the
 * address, gateway and routes Join hands back. See docs/docker.md.
 */
import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { AgentConfigError, type AgentConfig } from '../../shared/agentconfig.ts';
import type { Logger } from '../../shared/cni/log.ts';
import { randomHex, sha256Hex } from '../../shared/hash.ts';
import {
  canonicalCIDR,
  contains,
  familyOf,
  formatCIDR,
  formatIP,
  lastAddr,
  mustCIDR,
  network,
  networkAddr,
  overlaps,
  parseCIDR,
  parseIP,
} from '../../shared/ipnet.ts';
import { ipBatch } from '../../shared/kernel/ip.ts';
import { deleteLink, getLink, linkKind } from '../../shared/kernel/link.ts';
import { policySettings, programPolicy, withPolicyLock } from '../../shared/policysync.ts';
import type { DockerEndpoint, DockerNetwork, DockerPool, Endpoint } from '../../shared/objects/types.ts';
import { ConflictError, type ObjectStore, type Stored } from '../../shared/store/types.ts';
import { load } from '../../shared/cni/registry.ts';
import { invoke } from '../../shared/cni/skel.ts';
import { findInPath } from '../../shared/cni/delegate.ts';
import { parseConfList } from '../../shared/libcni/conf.ts';
import { execPlugin, type ExecOptions } from '../../shared/libcni/invoke.ts';
import { addNetworkList, buildPluginConfig, delNetworkList, type RuntimeConf, type ToolOptions } from '../../shared/libcni/libcni.ts';
import {
  overlayConfigOf,
  settingsOf as overlaySettingsOf,
  type OverlayConf,
  type Settings as OverlaySettings,
} from '../../shared/overlay/config.ts';
import { converge, STORE_DEADLINE_MS } from '../../shared/overlay/converge.ts';
import { cachedLease } from '../../shared/overlay/lease.ts';
import { openStore as openLeaseStore, withDeadline } from '../../shared/overlay/store.ts';
import { overlaySettings } from '../reconcilers/overlay.ts';
import {
  OptionError,
  endpointConflist,
  overlayConflist,
  exposedPortsOf,
  firstHostOf,
  networkConflist,
  networkSettings,
  poolsOf,
  allocatePorts,
  parsePortRange,
  portBindingsOf,
  portRequestsOf,
  portmapConf,
  srcNameOf,
  staticRoutesOf,
  type PoolData,
} from './options.ts';

/** The agent config's `docker` section, resolved. */
export interface DockerSettings {
  name: string;
  socket: string;
  /** dockerd's API ("unix:///run/docker.sock"), read for container names, labels and aliases; "" = never */
  dockerHost: string;
  cniPath: string[];
  cacheDir: string;
  ipamDataDir: string;
  ifPrefix: string;
  dstPrefix: string;
  defaultPools: string[];
  poolPrefix: number;
  /** run the plugins built into the agent's executable in its process (default true); false: exec each */
  inProcess: boolean;
  /** where `-p PORT` and `--publish-all` take host ports from (Docker's own default range) */
  hostPorts: [number, number];
  /**
   * Join puts the endpoint's host veth down until the container's labels are registered and this
   * node's policy is programmed for them (at most `holdSeconds`), so no packet of the container
   * passes before its policy applies. Only with `dockerHost` (the labels come from there).
   */
  holdUntilLabelled: boolean;
  holdSeconds: number;
}

const str = (v: unknown, d: string): string => (typeof v === 'string' && v ? v : d);

/** The agent config's `docker` section, checked (a wrong value is an agent config error naming the key). */
export function dockerSettings(cfg: AgentConfig, execDir: string): DockerSettings {
  const d = cfg.docker;
  const bad = (key: string, why: string): never => {
    throw new AgentConfigError(cfg.source, `docker.${key}`, why);
  };
  for (const k of ['name', 'socket', 'cacheDir', 'ipamDataDir', 'ifPrefix', 'dstPrefix'] as const)
    if (d[k] !== undefined && (typeof d[k] !== 'string' || d[k] === '')) bad(k, 'must be a non-empty string');
  if (d.name !== undefined && !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(String(d.name)))
    bad('name', 'must be a plugin name (letters, digits, _ . -)');
  for (const k of ['socket', 'cacheDir', 'ipamDataDir'] as const)
    if (typeof d[k] === 'string' && !path.isAbsolute(d[k])) bad(k, 'must be an absolute path');
  if (typeof d.ifPrefix === 'string' && !/^[A-Za-z][A-Za-z0-9_-]{0,9}$/.test(d.ifPrefix))
    bad('ifPrefix', 'must be 1-10 interface name characters starting with a letter');
  if (d.poolPrefix !== undefined && !(Number.isInteger(d.poolPrefix) && (d.poolPrefix as number) >= 8 && (d.poolPrefix as number) <= 30))
    bad('poolPrefix', 'must be a prefix length from 8 to 30');
  if (
    d.defaultPools !== undefined &&
    !(Array.isArray(d.defaultPools) && d.defaultPools.every((p) => typeof p === 'string' && parseCIDR(p)))
  )
    bad('defaultPools', 'must be a list of CIDRs');
  if (d.holdUntilLabelled !== undefined && typeof d.holdUntilLabelled !== 'boolean') bad('holdUntilLabelled', 'must be true or false');
  if (d.holdSeconds !== undefined && !(typeof d.holdSeconds === 'number' && d.holdSeconds > 0 && d.holdSeconds <= 600))
    bad('holdSeconds', 'must be a number of seconds from 0 to 600');
  if (d.hostPorts !== undefined && !(typeof d.hostPorts === 'string' && parsePortRange(d.hostPorts)))
    bad('hostPorts', 'must be a port range "LOW-HIGH" (1-65535)');
  const name = str(d.name, 'cni-ts');
  const list = (v: unknown, dflt: string[]): string[] =>
    Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : dflt;
  return {
    name,
    socket: str(d.socket, `/run/docker/plugins/${name}.sock`),
    dockerHost: d.dockerHost === false || d.dockerHost === '' ? '' : str(d.dockerHost, 'unix:///run/docker.sock'),
    cniPath: list(d.cniPath, [execDir, '/opt/cni/bin']),
    cacheDir: str(d.cacheDir, '/var/lib/cni-ts/docker/cache'),
    ipamDataDir: str(d.ipamDataDir, '/var/lib/cni-ts/docker/ipam'),
    ifPrefix: str(d.ifPrefix, 'cnm'),
    dstPrefix: str(d.dstPrefix, 'eth'),
    defaultPools: list(d.defaultPools, ['10.213.0.0/16']),
    poolPrefix: typeof d.poolPrefix === 'number' ? d.poolPrefix : 24,
    inProcess: d.inProcess !== false,
    hostPorts: parsePortRange(typeof d.hostPorts === 'string' ? d.hostPorts : '') ?? [49153, 60999],
    holdUntilLabelled: d.holdUntilLabelled !== false,
    holdSeconds: typeof d.holdSeconds === 'number' ? d.holdSeconds : 30,
  };
}

/** The host end of an endpoint's veth: the CNI result's interface in no sandbox that is neither the bridge nor the end Docker moves. */
export function hostVethOf(ep: DockerEndpoint): string | undefined {
  const r = ep.spec.result as { interfaces?: Array<{ name: string; sandbox?: string }> };
  const bridge = (ep.spec.conflist.plugins as Json[])[0]?.bridge ?? r.interfaces?.[0]?.name;
  return r.interfaces?.find((i) => !i.sandbox && i.name !== bridge && i.name !== ep.spec.srcName)?.name;
}

/** A CNM failure: answered as `{"Err": message}` (Docker prints it). */
export class DriverError extends Error {}

const HOST_NETNS = '/proc/self/ns/net';

/** The DockerPool object name of a pool (one per node, address space and subnet). */
export const poolIdOf = (node: string, space: string, pool: string): string => `p-${sha256Hex(`${node}\0${space}\0${pool}`).slice(0, 16)}`;

/** A file's device:inode (hard links compare equal), '' when it cannot be read. */
function identity(file: string): string {
  try {
    const st = statSync(file);
    return `${st.dev}:${st.ino}`;
  } catch {
    return '';
  }
}
/** This executable: the multi-call cni-ts the agent runs from. */
const SELF = identity(process.execPath);
export const GATEWAY_REQUEST = 'com.docker.network.gateway';
const API = 'cni-ts.dev/v1';

type Json = Record<string, unknown>;

const errText = (e: unknown): string => {
  const x = e as { message?: string; details?: string; also?: Array<{ message?: string }> };
  return `${x.message ?? String(e)}${x.details ? ` (${x.details})` : ''}`;
};

/** One async lock: CNM calls change shared state (pools, bridges) and are answered one at a time. */
class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(f: () => Promise<T>): Promise<T> {
    const next = this.tail.then(f, f);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

export class DockerDriver {
  private lock = new Mutex();
  /** endpoint IDs whose container names/labels are being looked up */
  private resolving = new Set<string>();
  onJoined?: (ep: DockerEndpoint) => void;

  constructor(
    readonly cfg: AgentConfig,
    readonly s: DockerSettings,
    readonly store: ObjectStore,
    private readonly log: Logger,
  ) {}

  private get tool(): ToolOptions {
    const t: ToolOptions = { path: this.s.cniPath, cacheDir: this.s.cacheDir, timeoutMs: 60_000 };
    if (this.s.inProcess) t.inProcess = this.inProcess;
    return t;
  }

  /**
   * A plugin of this executable, run in the agent's process through the engine's `invoke` (what
   * in-process delegation does; same bytes out as an exec). Only when CNI_PATH finds this very
   * executable, so a plugin installed elsewhere still runs as installed.
   */
  private readonly inProcess: NonNullable<ExecOptions['inProcess']> = async (type, _verb, stdin, env) => {
    const file = findInPath(type, this.s.cniPath);
    if (!file || !SELF || identity(file) !== SELF) return undefined;
    const plugin = await load(type);
    if (!plugin) return undefined;
    return invoke(plugin, env, stdin, this.log.withPrefix(`docker: ${type}`));
  };

  /** Dispatch one plugin API call; returns the response body. */
  async handle(method: string, body: Json): Promise<Json> {
    const h = this.handlers[method];
    if (!h) throw new DriverError(`cni-ts does not implement ${method}`);
    return this.lock.run(() => h(body));
  }

  readonly handlers: Record<string, (b: Json) => Promise<Json>> = {
    'Plugin.Activate': async () => ({ Implements: ['NetworkDriver', 'IpamDriver'] }),
    'NetworkDriver.GetCapabilities': async () => ({ Scope: 'local', ConnectivityScope: 'local' }),
    'NetworkDriver.CreateNetwork': (b) => this.createNetwork(b),
    'NetworkDriver.DeleteNetwork': (b) => this.deleteNetwork(b),
    'NetworkDriver.CreateEndpoint': (b) => this.createEndpoint(b),
    'NetworkDriver.DeleteEndpoint': (b) => this.deleteEndpoint(b),
    'NetworkDriver.EndpointOperInfo': (b) => this.endpointOperInfo(b),
    'NetworkDriver.Join': (b) => this.join(b),
    'NetworkDriver.Leave': (b) => this.leave(b),
    'NetworkDriver.DiscoverNew': async () => ({}),
    'NetworkDriver.DiscoverDelete': async () => ({}),
    'NetworkDriver.ProgramExternalConnectivity': (b) => this.programExternal(b),
    'NetworkDriver.RevokeExternalConnectivity': (b) => this.revokeExternal(b),
    'IpamDriver.GetCapabilities': async () => ({ RequiresMACAddress: false, RequiresRequestReplay: false }),
    'IpamDriver.GetDefaultAddressSpaces': async () => ({
      LocalDefaultAddressSpace: 'CniTsLocal',
      GlobalDefaultAddressSpace: 'CniTsGlobal',
    }),
    'IpamDriver.RequestPool': (b) => this.requestPool(b),
    'IpamDriver.ReleasePool': (b) => this.releasePool(b),
    'IpamDriver.RequestAddress': (b) => this.requestAddress(b),
    'IpamDriver.ReleaseAddress': (b) => this.releaseAddress(b),
  };

  // ---------------------------------------------------------------- store helpers
  private async getNetwork(id: unknown): Promise<Stored<DockerNetwork>> {
    if (typeof id !== 'string' || !id) throw new DriverError('NetworkID is missing');
    const got = await this.store.get<DockerNetwork>({ kind: 'DockerNetwork', namespace: '', name: id });
    if (!got) throw new DriverError(`network ${id.slice(0, 12)} is not known to cni-ts on node ${this.cfg.node}`);
    return got;
  }

  private async getEndpoint(id: unknown): Promise<Stored<DockerEndpoint> | undefined> {
    if (typeof id !== 'string' || !id) throw new DriverError('EndpointID is missing');
    return this.store.get<DockerEndpoint>({ kind: 'DockerEndpoint', namespace: '', name: id });
  }

  private async mustEndpoint(id: unknown): Promise<Stored<DockerEndpoint>> {
    const ep = await this.getEndpoint(id);
    if (!ep) throw new DriverError(`endpoint ${String(id).slice(0, 12)} is not known to cni-ts on node ${this.cfg.node}`);
    return ep;
  }

  private async getPool(id: unknown): Promise<Stored<DockerPool>> {
    if (typeof id !== 'string' || !id) throw new DriverError('PoolID is missing');
    const got = await this.store.get<DockerPool>({ kind: 'DockerPool', namespace: '', name: id });
    if (!got) throw new DriverError(`address pool ${id} is not known to cni-ts on node ${this.cfg.node}`);
    return got;
  }

  private runtimeOf(ep: DockerEndpoint): RuntimeConf {
    return { containerId: ep.metadata.name, netns: HOST_NETNS, ifname: ep.spec.srcName, args: ep.spec.cniArgs, capabilityArgs: {} };
  }

  // ---------------------------------------------------------------- overlay
  /** This node's overlay (the agent config's `overlay.config`): the plugin entry and its settings. */
  private async overlay(): Promise<{ conf: OverlayConf; s: OverlaySettings }> {
    let s: OverlaySettings | undefined;
    try {
      s = await overlaySettings(this.cfg);
    } catch (e) {
      throw new OptionError(`type=overlay: ${errText(e)}`);
    }
    const file = this.cfg.overlay.config;
    if (!s || typeof file !== 'string')
      throw new OptionError(
        `type=overlay: the agent on node ${this.cfg.node} has no overlay (set overlay.config in its config to the overlay plugin's .conflist)`,
      );
    const p = this.cfg.source && !path.isAbsolute(file) ? path.resolve(path.dirname(this.cfg.source), file) : file;
    const conf = overlayConfigOf(JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>);
    return { conf, s: overlaySettingsOf(conf) };
  }

  /** Lease this host's overlay subnet and set up its VTEP, bridge and peers (the overlay's own converge). */
  private async convergeOverlay(s: OverlaySettings): Promise<string> {
    const store = await withDeadline('connect', STORE_DEADLINE_MS, () => openLeaseStore(s.store, s.name));
    try {
      return (await converge(s, store, this.log.withPrefix('docker: overlay'))).lease.subnet;
    } finally {
      await store.close().catch(() => undefined);
    }
  }

  /** The overlay network (and its settings) whose pool this is, when it belongs to one. */
  private async overlayOfPool(p: DockerPool): Promise<OverlaySettings | undefined> {
    const nets = (await this.store.list<DockerNetwork>('DockerNetwork')).items.map((n) => n.object);
    const net = nets.find(
      (n) => n.spec.node === this.cfg.node && n.spec.options.type === 'overlay' && n.spec.ipv4.some((x) => x.pool === p.spec.pool),
    );
    return net ? (await this.overlay()).s : undefined;
  }

  /** host-local's config over this host's overlay subnet: the overlay plugin's own store (stateDir/ipam, network name). */
  private overlayHostLocalConf(s: OverlaySettings, subnet: string): Json {
    return {
      cniVersion: '1.0.0',
      name: s.name,
      ipam: { type: 'host-local', ranges: [[{ subnet }]], dataDir: path.join(s.stateDir, 'ipam') },
    };
  }

  // ---------------------------------------------------------------- networks
  private async createNetwork(b: Json): Promise<Json> {
    const id = String(b.NetworkID ?? '');
    if (!/^[0-9a-f]{12,64}$/.test(id)) throw new DriverError(`NetworkID ${JSON.stringify(b.NetworkID)} is not a Docker ID`);
    const opts = (b.Options ?? {}) as Json;
    const generic = (opts['com.docker.network.generic'] ?? {}) as Json;
    const s = networkSettings(id, generic);
    const ipv4 = poolsOf(b.IPv4Data, 4);
    const ipv6 = poolsOf(b.IPv6Data, 6);
    if (!ipv4.length && !ipv6.length) throw new OptionError('the network has no address pool (give --subnet)');
    for (const p of [...ipv4, ...ipv6])
      if (!p.gateway) throw new OptionError(`pool ${p.pool} has no gateway: cni-ts puts the gateway on the bridge (give --gateway)`);
    let overlay: { conf: OverlayConf; s: OverlaySettings } | undefined;
    if (s.type === 'overlay') {
      overlay = await this.overlay();
      const cluster = formatCIDR(overlay.s.network);
      if (ipv6.length) throw new OptionError(`type=overlay: the overlay ${overlay.s.name} is IPv4 only (no --ipv6 subnet)`);
      if (ipv4.length !== 1 || ipv4[0]!.pool !== cluster)
        throw new OptionError(
          `type=overlay: --subnet must be the overlay's cluster network ${cluster} (got ${ipv4.map((p) => p.pool).join(', ') || 'none'})`,
        );
      const space = String((b.IPv4Data as Array<{ AddressSpace?: string }>)[0]?.AddressSpace || 'CniTsLocal');
      if (!(await this.store.get<DockerPool>({ kind: 'DockerPool', namespace: '', name: poolIdOf(this.cfg.node, space, cluster) })))
        throw new OptionError(
          `type=overlay needs --ipam-driver ${this.s.name}: the addresses come from this host's subnet lease of ${cluster}, not from Docker's IPAM`,
        );
      s.network = overlay.s.name;
    }
    const mine = (await this.store.list<DockerNetwork>('DockerNetwork')).items.filter(
      (n) => n.object.spec.node === this.cfg.node && n.object.metadata.name !== id,
    );
    const clash = mine.find((n) => (n.object.spec.conflist.plugins as Json[])[0]?.bridge === s.bridge);
    if (clash) throw new OptionError(`bridge ${s.bridge} is already used by Docker network ${clash.object.metadata.name.slice(0, 12)}`);
    const nameClash = mine.find((n) => n.object.spec.network === s.network);
    if (nameClash)
      throw new OptionError(
        `CNI network name ${s.network} is already used by Docker network ${nameClash.object.metadata.name.slice(0, 12)}`,
      );
    const existing = overlay ? undefined : await getLink(s.bridge).catch(() => undefined);
    if (existing && linkKind(existing) !== 'bridge')
      throw new OptionError(
        `bridge ${s.bridge}: an interface of that name exists and is not a bridge (${linkKind(existing) ?? 'unknown kind'})`,
      );
    const obj: DockerNetwork = {
      apiVersion: API,
      kind: 'DockerNetwork',
      metadata: { name: id },
      spec: {
        node: this.cfg.node,
        network: s.network,
        options: Object.fromEntries(Object.entries(generic).map(([k, v]) => [k, String(v)])),
        ipv4,
        ipv6,
        conflist: overlay ? overlayConflist(overlay.conf as unknown as Json, this.cfg.source) : networkConflist(s, this.cfg.source),
        portmap: portmapConf(s),
        // the overlay's bridge and VTEP belong to the overlay (its reconciler), never to one Docker network
        ownsBridge: !overlay && !existing,
      },
    };
    if (overlay) {
      try {
        const subnet = await this.convergeOverlay(overlay.s);
        this.log.info(`docker: overlay ${overlay.s.name}: this host holds ${subnet}`);
      } catch (e) {
        throw new DriverError(`type=overlay: setting up overlay ${overlay.s.name} on this host: ${errText(e)}`);
      }
    }
    await this.store.put(obj);
    this.log.info(
      `docker: network ${id.slice(0, 12)} created as CNI network ${s.network} on bridge ${s.bridge} (${[...ipv4, ...ipv6].map((p) => p.pool).join(', ')})`,
    );
    return {};
  }

  private async deleteNetwork(b: Json): Promise<Json> {
    const id = String(b.NetworkID ?? '');
    const got = await this.store.get<DockerNetwork>({ kind: 'DockerNetwork', namespace: '', name: id });
    if (!got) return {};
    const eps = (await this.store.list<DockerEndpoint>('DockerEndpoint')).items.filter(
      (e) => e.object.spec.networkId === id && e.object.spec.node === this.cfg.node,
    );
    for (const e of eps) await this.deleteEndpoint({ NetworkID: id, EndpointID: e.object.metadata.name });
    const bridge = (got.object.spec.conflist.plugins as Json[])[0]?.bridge;
    if (got.object.spec.ownsBridge && (got.object.spec.conflist.plugins as Json[])[0]?.type === 'bridge' && typeof bridge === 'string')
      await deleteLink(bridge);
    await this.store.delete({ kind: 'DockerNetwork', namespace: '', name: id });
    this.log.info(`docker: network ${id.slice(0, 12)} deleted${got.object.spec.ownsBridge ? ` with bridge ${String(bridge)}` : ''}`);
    return {};
  }

  // ---------------------------------------------------------------- endpoints
  private async createEndpoint(b: Json): Promise<Json> {
    const net = (await this.getNetwork(b.NetworkID)).object;
    const id = String(b.EndpointID ?? '');
    if (!/^[0-9a-f]{12,64}$/.test(id)) throw new DriverError(`EndpointID ${JSON.stringify(b.EndpointID)} is not a Docker ID`);
    if (await this.getEndpoint(id)) throw new DriverError(`endpoint ${id.slice(0, 12)} exists already`);
    const iface = (b.Interface ?? {}) as { Address?: string; AddressIPv6?: string; MacAddress?: string };
    const addresses = [iface.Address, iface.AddressIPv6].filter((a): a is string => typeof a === 'string' && a !== '');
    if (!addresses.length)
      throw new DriverError('CreateEndpoint without an address: give the network a subnet (--subnet) so Docker assigns one');
    const opts = (b.Options ?? {}) as Json;
    const srcName = srcNameOf(id, this.s.ifPrefix);
    const pools: PoolData[] = [...net.spec.ipv4, ...net.spec.ipv6];
    const settings = networkSettings(net.metadata.name, net.spec.options);
    const conflist = endpointConflist(net.spec.conflist, pools, {
      addresses,
      labels: settings.labels,
      ports: exposedPortsOf(opts['com.docker.network.endpoint.exposedports']),
    });
    const capabilityArgs: Json = {};
    if (iface.MacAddress) {
      (conflist.plugins as Json[])[0]!.capabilities = { mac: true };
      capabilityArgs.mac = iface.MacAddress;
    }
    const list = parseConfList(JSON.stringify(conflist), `Docker network ${net.metadata.name.slice(0, 12)}`);
    const cniArgs: Array<[string, string]> = [
      ['IgnoreUnknown', '1'],
      ['K8S_POD_NAMESPACE', settings.namespace],
      ['K8S_POD_NAME', `docker-${id.slice(0, 12)}`],
    ];
    const rt: RuntimeConf = { containerId: id, netns: HOST_NETNS, ifname: srcName, args: cniArgs, capabilityArgs };
    const t0 = performance.now();
    mkdirSync(this.s.cacheDir, { recursive: true });
    if (settings.type === 'overlay') await this.handOver(net, addresses);
    let result: Json;
    try {
      result = await addNetworkList(list, rt, this.tool);
    } catch (e) {
      throw new DriverError(`attaching endpoint ${id.slice(0, 12)}: ${errText(e)}`);
    }
    const ep: DockerEndpoint = {
      apiVersion: API,
      kind: 'DockerEndpoint',
      metadata: { name: id },
      spec: { node: this.cfg.node, networkId: net.metadata.name, srcName, conflist, result, cniArgs },
    };
    try {
      await this.store.put(ep, { expectRevision: 0 });
    } catch (e) {
      await delNetworkList(list, rt, this.tool).catch((d: unknown) =>
        this.log.warn(`docker: undo of endpoint ${id.slice(0, 12)}: ${errText(d)}`),
      );
      throw new DriverError(`recording endpoint ${id.slice(0, 12)}: ${errText(e)}`);
    }
    const mac = ((result.interfaces ?? []) as Array<{ name?: string; mac?: string }>).find((i) => i.name === srcName)?.mac;
    this.log.info(
      `docker: endpoint ${id.slice(0, 12)} on ${net.spec.network}: ${addresses.join(', ')} via ${srcName} in ${Math.round(performance.now() - t0)} ms`,
    );
    return { Interface: iface.MacAddress || !mac ? {} : { MacAddress: mac } };
  }

  /**
   * An overlay endpoint's addresses were reserved by RequestAddress in the overlay's host-local
   * store under a reservation ID; the overlay plugin's ADD takes them under the endpoint's ID
   * (args.cni.ips), so the reservation is dropped just before (under the driver's lock; host-local
   * hands out addresses after its last one, so nothing else picks it in between).
   */
  private async handOver(net: DockerNetwork, addresses: string[]): Promise<void> {
    const { s } = await this.overlay();
    const subnet = cachedLease(s)?.subnet ?? formatCIDR(s.network);
    for (const a of addresses) {
      const ip = a.split('/')[0]!;
      for (const pd of net.spec.ipv4) {
        const pool = (await this.myPools()).find((p) => p.object.spec.pool === pd.pool)?.object;
        const res = pool?.spec.reservations[ip];
        if (res) await this.hostLocal(this.overlayHostLocalConf(s, subnet), 'DEL', res);
      }
    }
  }

  private async deleteEndpoint(b: Json): Promise<Json> {
    const got = await this.getEndpoint(b.EndpointID);
    if (!got) return {};
    const ep = got.object;
    const t0 = performance.now();
    if (ep.spec.portMappings?.length) await this.portmap(ep, 'DEL');
    const list = parseConfList(JSON.stringify(ep.spec.conflist), `Docker endpoint ${ep.metadata.name.slice(0, 12)}`);
    try {
      await delNetworkList(list, this.runtimeOf(ep), this.tool);
    } catch (e) {
      throw new DriverError(`detaching endpoint ${ep.metadata.name.slice(0, 12)}: ${errText(e)}`);
    }
    // bridge DEL removes the interface only while it is in the host netns; Docker moved it back on Leave
    await deleteLink(ep.spec.srcName).catch(() => false);
    await this.store.delete({ kind: 'DockerEndpoint', namespace: '', name: ep.metadata.name });
    this.log.info(`docker: endpoint ${ep.metadata.name.slice(0, 12)} deleted in ${Math.round(performance.now() - t0)} ms`);
    return {};
  }

  private async endpointOperInfo(b: Json): Promise<Json> {
    const ep = (await this.mustEndpoint(b.EndpointID)).object;
    const r = ep.spec.result as { interfaces?: Array<{ name: string; sandbox?: string }>; ips?: Array<{ address: string }> };
    const host = hostVethOf(ep);
    return {
      Value: {
        network: (await this.getNetwork(ep.spec.networkId)).object.spec.network,
        hostInterface: host ?? '',
        interface: ep.spec.srcName,
        addresses: (r.ips ?? []).map((i) => i.address).join(','),
        // libnetwork's key and shape for the published ports (the host ports `-p PORT`/`-P` were given)
        'com.docker.network.portmap': portBindingsOf(ep.spec.portMappings ?? [], r.ips?.[0]?.address.split('/')[0]),
      },
    };
  }

  /** The Endpoint object the chain's `endpoint` plugin registered for this Docker endpoint. */
  async registration(ep: DockerEndpoint): Promise<Stored<Endpoint> | undefined> {
    const ns = ep.spec.cniArgs.find(([k]) => k === 'K8S_POD_NAMESPACE')?.[1] ?? 'default';
    const name = ep.spec.cniArgs.find(([k]) => k === 'K8S_POD_NAME')?.[1] ?? '';
    const got = await this.store.get<Endpoint>({ kind: 'Endpoint', namespace: ns, name });
    if (got && got.object.spec.containerId === ep.metadata.name) return got;
    const all = (await this.store.list<Endpoint>('Endpoint')).items;
    return all.find((e) => e.object.spec.containerId === ep.metadata.name && e.object.spec.ifname === ep.spec.srcName);
  }

  /** Change the registration (compare-and-swap, a few tries). */
  async updateRegistration(ep: DockerEndpoint, change: (e: Endpoint) => Endpoint): Promise<void> {
    for (let i = 0; i < 5; i++) {
      const cur = await this.registration(ep);
      if (!cur) return;
      try {
        await this.store.put(change(structuredClone(cur.object) as Endpoint), { expectRevision: cur.revision });
        return;
      } catch (e) {
        if (!(e instanceof ConflictError)) throw e;
      }
    }
  }

  private async join(b: Json): Promise<Json> {
    const got = await this.mustEndpoint(b.EndpointID);
    const ep = structuredClone(got.object) as DockerEndpoint;
    const net = (await this.getNetwork(ep.spec.networkId)).object;
    const sandbox = typeof b.SandboxKey === 'string' ? b.SandboxKey : '';
    if (!(await getLink(ep.spec.srcName).catch(() => undefined))) {
      throw new DriverError(
        `interface ${ep.spec.srcName} of endpoint ${ep.metadata.name.slice(0, 12)} is not in the host namespace (joined already?)`,
      );
    }
    ep.spec.sandboxKey = sandbox;
    await this.store.put(ep, { expectRevision: got.revision });
    if (sandbox) {
      await this.updateRegistration(ep, (e) => ({ ...e, spec: { ...e.spec, sandbox } })).catch((e: unknown) =>
        this.log.warn(`docker: endpoint ${ep.metadata.name.slice(0, 12)}: recording the sandbox: ${errText(e)}`),
      );
    }
    // the chain's gateway (an overlay's is this host's subnet's), else the pool's
    const result = ep.spec.result as { ips?: Array<{ address: string; gateway?: string }>; routes?: Array<{ dst: string; gw?: string }> };
    const gw = (fam: 4 | 6, pools: PoolData[]): string =>
      result.ips?.find((i) => i.gateway && familyOf(i.address) === fam)?.gateway ??
      pools.find((p) => p.gateway)?.gateway?.split('/')[0] ??
      '';
    const gateways = { 4: gw(4, net.spec.ipv4) || undefined, 6: gw(6, net.spec.ipv6) || undefined };
    const res: Json = {
      InterfaceName: { SrcName: ep.spec.srcName, DstPrefix: this.s.dstPrefix },
      Gateway: gateways[4] ?? '',
      GatewayIPv6: gateways[6] ?? '',
      StaticRoutes: staticRoutesOf(result.routes, gateways),
      DisableGatewayService: false,
    };
    if (this.s.dockerHost && this.s.holdUntilLabelled) await this.setHeld(ep, true);
    this.onJoined?.(ep);
    return res;
  }

  private async leave(b: Json): Promise<Json> {
    const got = await this.getEndpoint(b.EndpointID);
    if (!got) return {};
    const ep = structuredClone(got.object) as DockerEndpoint;
    if (ep.spec.portMappings?.length) await this.portmap(ep, 'DEL');
    delete ep.spec.portMappings;
    delete ep.spec.sandboxKey;
    await this.store.put(ep);
    return {};
  }

  // ---------------------------------------------------------------- -p (portmap)
  private async portmap(ep: DockerEndpoint, verb: 'ADD' | 'DEL', mappings = ep.spec.portMappings ?? []): Promise<void> {
    const net = (await this.store.get<DockerNetwork>({ kind: 'DockerNetwork', namespace: '', name: ep.spec.networkId }))?.object;
    const pm = (net?.spec.portmap ?? { type: 'portmap', capabilities: { portMappings: true } }) as Json & { type: string };
    const list = parseConfList(
      JSON.stringify({ cniVersion: ep.spec.conflist.cniVersion, name: ep.spec.conflist.name, plugins: [pm] }),
      'portmap',
    );
    const conf = buildPluginConfig(list, list.plugins[0]!, ep.spec.result, { portMappings: mappings });
    await execPlugin(
      'portmap',
      verb,
      conf,
      { containerId: ep.metadata.name, netns: HOST_NETNS, ifname: ep.spec.srcName, args: ep.spec.cniArgs },
      this.tool,
    );
  }

  private async programExternal(b: Json): Promise<Json> {
    const got = await this.mustEndpoint(b.EndpointID);
    const ep = structuredClone(got.object) as DockerEndpoint;
    const reqs = portRequestsOf(((b.Options ?? {}) as Json)['com.docker.network.portmap']);
    if (!reqs.length) return {};
    // host ports other Docker endpoints of this node publish: `-p PORT`/`-P` pick around them
    const others = (await this.store.list<DockerEndpoint>('DockerEndpoint')).items
      .map((e) => e.object)
      .filter((e) => e.spec.node === this.cfg.node && e.metadata.name !== ep.metadata.name);
    const taken = new Set(others.flatMap((e) => (e.spec.portMappings ?? []).map((m) => `${m.protocol}/${m.hostPort}`)));
    const mappings = allocatePorts(reqs, taken, this.s.hostPorts);
    if (ep.spec.portMappings?.length) await this.portmap(ep, 'DEL');
    try {
      await this.portmap(ep, 'ADD', mappings);
    } catch (e) {
      await this.portmap(ep, 'DEL', mappings).catch(() => undefined);
      throw new DriverError(`publishing ports of endpoint ${ep.metadata.name.slice(0, 12)}: ${errText(e)}`);
    }
    ep.spec.portMappings = mappings;
    try {
      await this.store.put(ep, { expectRevision: got.revision });
    } catch (e) {
      await this.portmap(ep, 'DEL', mappings).catch(() => undefined);
      throw e;
    }
    this.log.info(
      `docker: endpoint ${ep.metadata.name.slice(0, 12)} publishes ${mappings.map((m) => `${m.hostPort}->${m.containerPort}/${m.protocol}`).join(', ')}`,
    );
    return {};
  }

  private async revokeExternal(b: Json): Promise<Json> {
    const got = await this.getEndpoint(b.EndpointID);
    if (!got?.object.spec.portMappings?.length) return {};
    const ep = structuredClone(got.object) as DockerEndpoint;
    await this.portmap(ep, 'DEL');
    delete ep.spec.portMappings;
    await this.store.put(ep);
    return {};
  }

  // ---------------------------------------------------------------- IPAM
  private poolDir(poolId: string): string {
    return path.join(this.s.ipamDataDir, poolId);
  }

  private async myPools(): Promise<Array<Stored<DockerPool>>> {
    return (await this.store.list<DockerPool>('DockerPool')).items.filter((p) => p.object.spec.node === this.cfg.node);
  }

  private pickPool(taken: string[]): string {
    for (const base of this.s.defaultPools) {
      const b = parseCIDR(base);
      if (!b || b.prefix > this.s.poolPrefix) continue;
      const step = 1n << BigInt((b.family === 4 ? 32 : 128) - this.s.poolPrefix);
      for (let v = networkAddr(b); v <= lastAddr(b); v += step) {
        const cand = { family: b.family, value: v, prefix: this.s.poolPrefix };
        if (!taken.some((t) => overlaps(mustCIDR(t, 'pool'), cand))) return formatCIDR(cand);
      }
    }
    throw new DriverError(`no free /${this.s.poolPrefix} left in docker.defaultPools (${this.s.defaultPools.join(', ')}): give --subnet`);
  }

  private async requestPool(b: Json): Promise<Json> {
    const space = String(b.AddressSpace || 'CniTsLocal');
    const mine = await this.myPools();
    const taken = mine.map((p) => p.object.spec.pool);
    let pool: string;
    if (b.Pool) {
      const c = parseCIDR(String(b.Pool));
      if (!c) throw new DriverError(`pool ${JSON.stringify(b.Pool)} is not a subnet`);
      pool = formatCIDR(network(c));
      if ((familyOf(pool) === 6) !== (b.V6 === true)) throw new DriverError(`pool ${pool} is not of the family asked for`);
    } else {
      if (b.V6 === true) throw new DriverError('cni-ts picks no IPv6 pool: give an IPv6 --subnet');
      pool = this.pickPool(taken);
    }
    const clash = mine.find((p) => overlaps(mustCIDR(p.object.spec.pool, 'pool'), mustCIDR(pool, 'pool')));
    if (clash) throw new DriverError(`pool ${pool} overlaps pool ${clash.object.spec.pool} of another network on this node`);
    let subPool: string | undefined;
    if (b.SubPool) {
      const sp = parseCIDR(String(b.SubPool));
      if (!sp || !contains(mustCIDR(pool, 'pool'), sp) || sp.prefix < mustCIDR(pool, 'pool').prefix)
        throw new DriverError(`--ip-range ${JSON.stringify(b.SubPool)} is not inside ${pool}`);
      subPool = formatCIDR(network(sp));
    }
    const id = poolIdOf(this.cfg.node, space, pool);
    const obj: DockerPool = {
      apiVersion: API,
      kind: 'DockerPool',
      metadata: { name: id },
      spec: { node: this.cfg.node, addressSpace: space, pool, reservations: {} },
    };
    if (subPool) obj.spec.subPool = subPool;
    try {
      await this.store.put(obj, { expectRevision: 0 });
    } catch (e) {
      if (e instanceof ConflictError) throw new DriverError(`pool ${pool} is already in use`);
      throw e;
    }
    return { PoolID: id, Pool: pool, Data: {} };
  }

  private async releasePool(b: Json): Promise<Json> {
    const got = await this.store.get<DockerPool>({ kind: 'DockerPool', namespace: '', name: String(b.PoolID ?? '') });
    if (!got) return {};
    for (const [addr, res] of Object.entries(got.object.spec.reservations)) {
      const conf = (await this.poolConf(got.object, false, false)).conf;
      await this.hostLocal(conf, 'DEL', res).catch((e: unknown) => this.log.warn(`docker: releasing ${addr}: ${errText(e)}`));
    }
    rmSync(this.poolDir(got.object.metadata.name), { recursive: true, force: true });
    await this.store.delete({ kind: 'DockerPool', namespace: '', name: got.object.metadata.name });
    return {};
  }

  /** host-local's config for a pool: the whole subnet when an address is asked for, else the --ip-range. */
  private hostLocalConf(p: DockerPool, specific: boolean): Json {
    const range: Json = { subnet: p.spec.pool };
    if (p.spec.gateway) range.gateway = p.spec.gateway;
    if (!specific && p.spec.subPool) {
      const sp = mustCIDR(p.spec.subPool, 'subPool');
      const first = networkAddr(sp) + (sp.prefix >= (sp.family === 4 ? 31 : 127) ? 0n : 1n);
      const last = lastAddr(sp) - (sp.family === 4 && sp.prefix < 31 ? 1n : 0n);
      range.rangeStart = formatIP({ family: sp.family, value: first });
      range.rangeEnd = formatIP({ family: sp.family, value: last });
    }
    return { cniVersion: '1.0.0', name: p.metadata.name, ipam: { type: 'host-local', dataDir: this.s.ipamDataDir, ranges: [[range]] } };
  }

  /**
   * host-local's config for a pool and the prefix length of the addresses it gives: an overlay
   * network's pool (the cluster network) hands out addresses of this host's leased subnet, from
   * the overlay plugin's own store, with that subnet's prefix (the container's on-link subnet).
   */
  private async poolConf(p: DockerPool, specific: boolean, lease = true): Promise<{ conf: Json; prefix: number }> {
    const ov = await this.overlayOfPool(p);
    if (!ov) return { conf: this.hostLocalConf(p, specific), prefix: mustCIDR(p.spec.pool, 'pool').prefix };
    const subnet = cachedLease(ov)?.subnet ?? (lease ? await this.convergeOverlay(ov) : formatCIDR(ov.network));
    return { conf: this.overlayHostLocalConf(ov, subnet), prefix: ov.subnetLen };
  }

  private async hostLocal(conf: Json, verb: 'ADD' | 'DEL', reservation: string, ip?: string): Promise<string | undefined> {
    const args: Array<[string, string]> = ip ? [['IP', ip]] : [];
    const r = await execPlugin(
      'host-local',
      verb,
      conf,
      { containerId: reservation, netns: HOST_NETNS, ifname: 'docker', args },
      this.tool,
    );
    return (r?.ips as Array<{ address: string }> | undefined)?.[0]?.address;
  }

  private async requestAddress(b: Json): Promise<Json> {
    const got = await this.getPool(b.PoolID);
    const p = structuredClone(got.object) as DockerPool;
    const isGateway = ((b.Options ?? {}) as Json).RequestAddressType === GATEWAY_REQUEST;
    const prefix = p.spec.pool.split('/')[1];
    const asked = typeof b.Address === 'string' && b.Address ? b.Address : undefined;
    if (asked && !parseIP(asked)) throw new DriverError(`${JSON.stringify(asked)} is not an IP address`);
    if (asked && !contains(mustCIDR(p.spec.pool, 'pool'), parseIP(asked)!))
      throw new DriverError(`address ${asked} is not in pool ${p.spec.pool}`);
    if (isGateway) {
      // the network's gateway: kept out of host-local's hands as its range gateway
      const gw = asked ?? firstHostOf(p.spec.pool);
      if (Object.keys(p.spec.reservations).includes(gw)) throw new DriverError(`gateway ${gw} is already given to an endpoint`);
      p.spec.gateway = gw;
      await this.store.put(p, { expectRevision: got.revision });
      return { Address: `${gw}/${prefix}`, Data: {} };
    }
    const reservation = `docker-ipam-${randomHex(12)}`;
    mkdirSync(this.s.ipamDataDir, { recursive: true });
    let cidr: string | undefined;
    let pc: { conf: Json; prefix: number };
    try {
      pc = await this.poolConf(p, asked !== undefined);
      cidr = await this.hostLocal(pc.conf, 'ADD', reservation, asked);
    } catch (e) {
      throw new DriverError(`no address from pool ${p.spec.pool}: ${errText(e)}`);
    }
    if (!cidr) {
      await this.hostLocal(pc.conf, 'DEL', reservation).catch(() => undefined);
      throw new DriverError(`host-local returned no address for pool ${p.spec.pool}`);
    }
    const addr = cidr.split('/')[0]!;
    p.spec.reservations[canonicalCIDR(`${addr}/${familyOf(addr) === 4 ? 32 : 128}`)!.split('/')[0]!] = reservation;
    try {
      await this.store.put(p, { expectRevision: got.revision });
    } catch (e) {
      await this.hostLocal(pc.conf, 'DEL', reservation).catch(() => undefined);
      throw e;
    }
    return { Address: `${addr}/${pc.prefix}`, Data: {} };
  }

  private async releaseAddress(b: Json): Promise<Json> {
    const got = await this.store.get<DockerPool>({ kind: 'DockerPool', namespace: '', name: String(b.PoolID ?? '') });
    if (!got) return {};
    const p = structuredClone(got.object) as DockerPool;
    const addr = typeof b.Address === 'string' ? b.Address.split('/')[0]! : '';
    if (p.spec.gateway === addr) {
      delete p.spec.gateway;
      await this.store.put(p, { expectRevision: got.revision });
      return {};
    }
    const res = p.spec.reservations[addr];
    if (!res) return {};
    await this.hostLocal((await this.poolConf(p, false, false)).conf, 'DEL', res);
    delete p.spec.reservations[addr];
    await this.store.put(p, { expectRevision: got.revision });
    return {};
  }

  /** Put the endpoint's host veth down (held: nothing passes) or up again. */
  async setHeld(ep: DockerEndpoint, held: boolean): Promise<void> {
    const veth = hostVethOf(ep);
    if (!veth) return;
    await ipBatch([['link', 'set', 'dev', veth, held ? 'down' : 'up']]);
    this.log.debug(
      `docker: endpoint ${ep.metadata.name.slice(0, 12)}: ${veth} ${held ? 'held down until its labels are registered' : 'up'}`,
    );
  }

  /** Program this node's policy table now (the endpoint plugin's way: under the table's lock, from the store). */
  async programPolicy(): Promise<void> {
    const ps = policySettings(this.cfg);
    await withPolicyLock(ps, () => programPolicy(this.store, this.cfg.node, ps));
  }

  /** Endpoint IDs whose lookup runs (for the resolver). */
  markResolving(id: string, on: boolean): boolean {
    if (on && this.resolving.has(id)) return false;
    if (on) this.resolving.add(id);
    else this.resolving.delete(id);
    return true;
  }
}
