/**
 * endpoint: what the plugin reads from its request (pure): the Endpoint object for this
 * attachment, out of CNI_ARGS, `args.cni`, `runtimeConfig` and `prevResult`.
 */
import { invalidConfig } from '../../shared/cni/errors.ts';
import type { Request } from '../../shared/cni/plugin.ts';
import type { DNS, NetConfBase, Result } from '../../shared/cni/types.ts';
import { resultDns } from '../../shared/dns/result.ts';
import { validLabelKey } from '../../shared/objects/labelkey.ts';

export { validLabelKey };
import { DEFAULT_AGENT_CONFIG } from '../../shared/agentconfig.ts';
import type { ContainerPort, Endpoint, Protocol } from '../../shared/objects/types.ts';

export interface EndpointConf extends NetConfBase {
  /** the host's agent config (names the store), default /etc/cni-ts/agent.json */
  agentConfig?: string;
  /** false: leave the result's `dns` as prevResult has it (default: point it at the agent's DNS server) */
  setDns?: boolean;
}

export const agentConfigPath = (c: EndpointConf): string => c.agentConfig ?? DEFAULT_AGENT_CONFIG;

/** Kubernetes label keys: optional DNS-subdomain prefix + "/" + name of up to 63 characters. */
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
/** Object names: DNS subdomain (what Kubernetes allows for pod names). */
const OBJECT_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const NAMESPACE_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** `args.cni.labels`: the conventions' list of {key, value}, or a plain map. */
export function labelsOf(c: EndpointConf): Record<string, string> {
  const raw = c.args?.cni?.labels;
  if (raw === undefined) return {};
  const pairs: Array<[string, string]> = Array.isArray(raw)
    ? (raw as Array<{ key: string; value: string }>).map((l) => [l.key, l.value])
    : Object.entries(raw as Record<string, string>);
  const out: Record<string, string> = {};
  for (const [k, v] of pairs) {
    if (!validLabelKey(k))
      throw invalidConfig('args.cni.labels', `${JSON.stringify(k)} is not a label key ([prefix/]name, name up to 63 characters)`);
    if (!LABEL_VALUE.test(v) || v.length > 63)
      throw invalidConfig('args.cni.labels', `${JSON.stringify(v)} (label ${k}) is not a label value`);
    out[k] = v;
  }
  return out;
}

/** `args.cni.containerPorts` ([{name, containerPort, protocol}]), protocol upper-cased. */
export function portsOf(c: EndpointConf): ContainerPort[] {
  const raw = c.args?.cni?.containerPorts as Array<{ name?: string; containerPort: number; protocol?: string }> | undefined;
  if (!raw) return [];
  const names = new Set<string>();
  return raw.map((p, i) => {
    const out: ContainerPort = { containerPort: p.containerPort, protocol: (p.protocol || 'TCP').toUpperCase() as Protocol };
    if (p.name) {
      if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(p.name) || !/[a-z]/.test(p.name)) {
        throw invalidConfig(
          `args.cni.containerPorts[${i}].name`,
          `${JSON.stringify(p.name)} is not a port name (IANA_SVC_NAME: lower case, digits, "-", at least one letter)`,
        );
      }
      if (names.has(p.name)) throw invalidConfig(`args.cni.containerPorts[${i}].name`, `${JSON.stringify(p.name)} is named twice`);
      names.add(p.name);
      out.name = p.name;
    }
    return out;
  });
}

/** The `aliases` capability: a list, or podman's map of network name to list. */
export function aliasesOf(c: EndpointConf): string[] {
  const raw = c.runtimeConfig?.aliases;
  if (raw === undefined) return [];
  const list = Array.isArray(raw) ? (raw as string[]) : ((raw as Record<string, string[]>)[c.name] ?? []);
  return [...new Set(list)];
}

/**
 * The pod's namespace and name: K8S_POD_NAMESPACE / K8S_POD_NAME, else "default" / the
 * container ID. A container name as podman sends it (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`) that is not
 * an object name is lower-cased with "_" as "-" (its exact spelling still reaches DNS through
 * the `aliases` capability).
 */
export function identityOf(args: Map<string, string>, containerId: string): { namespace: string; name: string } {
  const ns = args.get('K8S_POD_NAMESPACE');
  const pod = args.get('K8S_POD_NAME');
  const namespace = ns || 'default';
  if (!NAMESPACE_NAME.test(namespace) || namespace.length > 63)
    throw invalidConfig('CNI_ARGS K8S_POD_NAMESPACE', `${JSON.stringify(namespace)} is not a namespace name`);
  let name = pod || containerId.toLowerCase();
  // podman passes its container name (`reverent_cannon`, `MyApp`): lower case, other characters as "-"
  if (pod && !OBJECT_NAME.test(pod) && /^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(pod))
    name = pod
      .toLowerCase()
      .replace(/[^a-z0-9.-]/g, '-')
      .replace(/[^a-z0-9]+$/, '');
  if (!OBJECT_NAME.test(name) || name.length > 253)
    throw invalidConfig(pod ? 'CNI_ARGS K8S_POD_NAME' : 'CNI_CONTAINERID', `${JSON.stringify(name)} is not an object name (DNS subdomain)`);
  return { namespace, name };
}

/** The container interface of `ifname` in prevResult, and the host-side peer listed before it. */
export function interfacesOf(prev: Result | undefined, ifname: string): { index: number; mac?: string; hostInterface?: string } {
  const ifs = prev?.interfaces ?? [];
  let index = ifs.findIndex((i) => i.name === ifname && i.sandbox);
  if (index < 0) index = ifs.findIndex((i) => i.name === ifname);
  if (index < 0) return { index: -1 };
  let hostInterface: string | undefined;
  // bridge lists [bridge, host veth, container]; the host side is the last one without a sandbox before it.
  for (let j = index - 1; j >= 0; j--) {
    if (!ifs[j]?.sandbox) {
      hostInterface = ifs[j]?.name;
      break;
    }
  }
  return { index, mac: ifs[index]?.mac, hostInterface };
}

/** This attachment's addresses (CIDR) from prevResult: those on `ifname`, or all when none says. */
export function ipsOf(prev: Result | undefined, ifIndex: number): { ips: string[]; gateways: string[] } {
  const all = prev?.ips ?? [];
  const mine = all.filter((ip) => ip.interface === undefined || ip.interface === ifIndex);
  return { ips: mine.map((ip) => ip.address), gateways: [...new Set(mine.flatMap((ip) => (ip.gateway ? [ip.gateway] : [])))] };
}

/** The Endpoint object of this ADD (pure). */
export function endpointOf(req: Pick<Request<EndpointConf>, 'env' | 'config' | 'prevResult'>, node: string): Endpoint {
  const { namespace, name } = identityOf(req.env.args, req.env.containerId);
  const labels = labelsOf(req.config);
  const ports = portsOf(req.config);
  const aliases = aliasesOf(req.config);
  const ifc = interfacesOf(req.prevResult, req.env.ifname);
  const { ips, gateways } = ipsOf(req.prevResult, ifc.index);
  const spec: Endpoint['spec'] = { node, network: req.config.name, containerId: req.env.containerId, ifname: req.env.ifname, ips };
  if (ifc.hostInterface) spec.hostInterface = ifc.hostInterface;
  if (ifc.mac) spec.mac = ifc.mac;
  if (req.env.netns) spec.sandbox = req.env.netns;
  if (gateways.length) spec.gateways = gateways;
  if (aliases.length) spec.aliases = aliases;
  if (ports.length) spec.ports = ports;
  const metadata: Endpoint['metadata'] = { name, namespace };
  if (Object.keys(labels).length) metadata.labels = labels;
  return { apiVersion: 'cni-ts.dev/v1', kind: 'Endpoint', metadata, spec };
}

/** Is `e` the registration of this attachment (node, network, container, interface)? */
export function isAttachment(e: Endpoint, node: string, network: string, containerId: string, ifname: string): boolean {
  return e.spec.node === node && e.spec.network === network && e.spec.containerId === containerId && e.spec.ifname === ifname;
}

/**
 * The result's `dns` for this attachment: the agent's DNS server (the network's gateway, or the
 * port-53 `dns.listen` addresses when `dns.listenOnGateways` is false) with the Kubernetes
 * search list (then the network's domain for container names, `dns.podman` by default) and
 * `ndots:5`, merged with prevResult's: our nameservers first then prevResult's
 * (at most 3, what the libc resolver reads), our search names first then prevResult's,
 * prevResult's `domain` kept, options merged by name with ours winning (`ndots`).
 * undefined: leave prevResult's dns alone (`setDns: false`, `dns.enabled: false`, no address to name).
 */
export function dnsOf(
  conf: EndpointConf,
  agentDns: Record<string, unknown>,
  clusterDomain: string,
  namespace: string,
  gateways: string[],
  prev: DNS | undefined,
): DNS | undefined {
  if (conf.setDns === false || agentDns.enabled === false) return undefined;
  let servers: string[];
  if (agentDns.listenOnGateways === false) {
    const port = typeof agentDns.port === 'number' ? agentDns.port : 53;
    servers = (Array.isArray(agentDns.listen) ? (agentDns.listen as unknown[]) : []).flatMap((l) => {
      if (typeof l !== 'string') return [];
      const m = /^\[([^\]]+)\]:(\d+)$/.exec(l) ?? /^([^:]+):(\d+)$/.exec(l);
      const host = m ? m[1]! : l;
      return (m ? Number(m[2]) : port) === 53 ? [host] : [];
    });
  } else servers = (typeof agentDns.port === 'number' && agentDns.port !== 53 ? [] : gateways).map((g) => g.replace(/\/\d+$/, ''));
  if (!servers.length) return undefined;
  const ours = resultDns(namespace, clusterDomain, servers);
  // the network's domain last, so resolvers that only try search names (busybox) find container names
  const domains = (agentDns.networkDomains ?? {}) as Record<string, unknown>;
  const netDomain = domains[conf.name] ?? agentDns.networkDomain ?? 'dns.podman';
  if (typeof netDomain === 'string' && netDomain) ours.search.push(netDomain.toLowerCase().replace(/\.$/, ''));
  const uniq = (xs: string[]): string[] => [...new Set(xs)];
  const optName = (o: string): string => o.split(':')[0]!;
  const ourOpts = new Set(ours.options.map(optName));
  const out: DNS = {
    nameservers: uniq([...ours.nameservers, ...(prev?.nameservers ?? [])]).slice(0, 3),
    search: uniq([...ours.search, ...(prev?.search ?? [])]),
    options: [...ours.options, ...(prev?.options ?? []).filter((o) => !ourOpts.has(optName(o)))],
  };
  if (prev?.domain) out.domain = prev.domain;
  return out;
}
