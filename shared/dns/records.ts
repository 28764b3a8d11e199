/**
 * DNS records of the cluster, as a pure function of the store's objects (Kubernetes DNS-Based
 * Service Discovery, schema 1.0.1: https://github.com/kubernetes/dns/blob/master/docs/specification.md),
 * plus container names per network as podman's aardvark-dns serves them.
 *
 *   buildZone(objects, opts) -> Zone      (rebuilt on every change; the server swaps it atomically)
 *   lookup(zone, qname, qtype, view) -> Answer | null   (null: not ours, forward it)
 *
 * No I/O, no wire format: the records are plain objects in the shape `dns-packet` encodes.
 */
import type { Endpoint, EndpointSlice, Namespace, Service } from '../objects/types.ts';
import { type IP, type IPNet, contains, formatIP, network, parseCIDR, parseIP } from '../ipnet.ts';

export type RRType = 'A' | 'AAAA' | 'CNAME' | 'PTR' | 'SRV' | 'TXT' | 'SOA';

export interface SoaData {
  mname: string;
  rname: string;
  serial: number;
  refresh: number;
  retry: number;
  expire: number;
  minimum: number;
}
export interface SrvData {
  priority: number;
  weight: number;
  port: number;
  target: string;
}
export type RR =
  | { name: string; type: 'A' | 'AAAA' | 'CNAME' | 'PTR'; class: 'IN'; ttl: number; data: string }
  | { name: string; type: 'SRV'; class: 'IN'; ttl: number; data: SrvData }
  | { name: string; type: 'TXT'; class: 'IN'; ttl: number; data: string }
  | { name: string; type: 'SOA'; class: 'IN'; ttl: number; data: SoaData };

/** Records of one owner name by type; an empty map is a name that exists with no data (an empty non-terminal). */
export type Node = Map<RRType, RR[]>;

export interface DnsTtls {
  /** ClusterIP services (A/AAAA/SRV/PTR of the VIP): 300 */
  service: number;
  /** headless services (A/AAAA/SRV of endpoints, their PTR): 30 */
  headless: number;
  /** container names and aliases on their network, and their PTR: 5 */
  container: number;
  /** `<a-b-c-d>.<ns>.pod.<domain>`: 5 */
  pod: number;
  /** negative answers (SOA minimum and SOA TTL, RFC 2308): 5 */
  negative: number;
}

export const DEFAULT_TTLS: DnsTtls = { service: 300, headless: 30, container: 5, pod: 5, negative: 5 };
export const DEFAULT_CLUSTER_DOMAIN = 'cluster.local';
/** podman's default network DNS domain (aardvark-dns, dnsname) */
export const DEFAULT_NETWORK_DOMAIN = 'dns.podman';
export const SCHEMA_VERSION = '1.0.1';

export interface ZoneObjects {
  services?: Service[];
  endpointSlices?: EndpointSlice[];
  endpoints?: Endpoint[];
  namespaces?: Namespace[];
}

/** A backend the services issue's health checks marked down: not served for headless services. */
export type UnhealthyInput = ReadonlySet<string> | ((address: string, service: { namespace: string; name: string }) => boolean);

export interface ZoneOptions {
  clusterDomain?: string;
  ttl?: Partial<DnsTtls>;
  /** network name -> its DNS domain for container names (default `defaultNetworkDomain`) */
  networkDomains?: Record<string, string>;
  /** domain for networks not in `networkDomains`: "dns.podman"; "" = bare names only */
  defaultNetworkDomain?: string;
  /** extra reverse ranges we answer PTR for (the service CIDRs) */
  serviceCIDRs?: string[];
  unhealthy?: UnhealthyInput;
  /** SOA serial (the store revision the objects were read at); default: seconds since epoch */
  serial?: number;
}

export interface Zone {
  domain: string;
  ttl: DnsTtls;
  serial: number;
  /** cluster-domain names and reverse names (lower case, no trailing dot) */
  names: Map<string, Node>;
  /** per network: bare container names and `<name>.<network domain>` */
  views: Map<string, Map<string, Node>>;
  /** every network domain (apexes of the container-name zones) */
  networkDomains: Set<string>;
  /** address ranges whose reverse names are ours (endpoint subnets, VIPs, service CIDRs) */
  reverseNets: IPNet[];
  /** counts, for logs and `cnictl get dns` */
  stats: { services: number; headless: number; endpoints: number; names: number };
}

export interface Answer {
  rcode: 'NOERROR' | 'NXDOMAIN';
  answers: RR[];
  authority: RR[];
  additionals: RR[];
}

/** The client's position: the networks whose container names it sees (undefined = all). */
export interface View {
  networks?: readonly string[];
}

// ---------------------------------------------------------------- names and addresses

const LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;

export function normalizeName(name: string): string {
  let n = name.toLowerCase();
  if (n.endsWith('.')) n = n.slice(0, -1);
  return n;
}

/** A name we may publish: labels of 1..63 letters/digits/hyphens (underscore for SRV), ≤ 253 chars. */
export function validName(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  return name.split('.').every((l) => LABEL.test(l));
}

/** 10.1.2.3 -> 3.2.1.10.in-addr.arpa; v6 -> nibbles under ip6.arpa. */
export function reverseName(ip: IP): string {
  if (ip.family === 4) {
    const v = Number(ip.value);
    return `${v & 255}.${(v >>> 8) & 255}.${(v >>> 16) & 255}.${v >>> 24}.in-addr.arpa`;
  }
  const hex = ip.value.toString(16).padStart(32, '0');
  return `${[...hex].reverse().join('.')}.ip6.arpa`;
}

/**
 * A reverse name back to its address, or its prefix when the name is shorter than a full
 * address (an intermediate name such as 2.1.10.in-addr.arpa); null when not a reverse name.
 */
export function parseReverse(qname: string): IPNet | null {
  if (qname.endsWith('.in-addr.arpa') || qname === 'in-addr.arpa') {
    const labels = qname === 'in-addr.arpa' ? [] : qname.slice(0, -'.in-addr.arpa'.length).split('.');
    if (labels.length > 4) return null;
    let v = 0n;
    for (const l of [...labels].reverse()) {
      if (!/^(0|[1-9]\d{0,2})$/.test(l) || Number(l) > 255) return null;
      v = (v << 8n) | BigInt(l);
    }
    const prefix = labels.length * 8;
    return { family: 4, value: v << BigInt(32 - prefix), prefix };
  }
  if (qname.endsWith('.ip6.arpa') || qname === 'ip6.arpa') {
    const labels = qname === 'ip6.arpa' ? [] : qname.slice(0, -'.ip6.arpa'.length).split('.');
    if (labels.length > 32) return null;
    let v = 0n;
    for (const l of [...labels].reverse()) {
      if (!/^[0-9a-f]$/.test(l)) return null;
      v = (v << 4n) | BigInt(parseInt(l, 16));
    }
    const prefix = labels.length * 4;
    return { family: 6, value: v << BigInt(128 - prefix), prefix };
  }
  return null;
}

/** 10.1.2.3 -> "10-1-2-3", fd00::5 -> "fd00--5" (the system-assigned hostname of an endpoint). */
export function dashed(a: Addr): string {
  return a.text.replace(/[.:]/g, '-');
}

/**
 * An address as text in canonical form. IPv4 is checked with one regular expression and kept as
 * written (the zone is rebuilt on every change: tens of thousands of addresses, so no bigint
 * or library objects on that path); IPv6 goes through ipnet for its canonical spelling.
 */
export interface Addr {
  family: 4 | 6;
  text: string;
}
const V4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

export function toAddr(s: string): Addr | null {
  if (typeof s !== 'string') return null;
  if (V4.test(s)) return { family: 4, text: s };
  if (!s.includes(':')) return null;
  const ip = parseIP(s);
  return ip ? { family: 6, text: formatIP(ip) } : null;
}

/** "10.1.0.5/24" or "10.1.0.5" -> the address and its prefix length (32/128 without one). */
function toAddrPrefix(s: string): { addr: Addr; prefix: number } | null {
  if (typeof s !== 'string') return null;
  const i = s.indexOf('/');
  const addr = toAddr(i < 0 ? s : s.slice(0, i));
  if (!addr) return null;
  const max = addr.family === 4 ? 32 : 128;
  const prefix = i < 0 ? max : Number(s.slice(i + 1));
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) return null;
  return { addr, prefix };
}

function reverseOf(a: Addr): string {
  if (a.family === 4) {
    const [w, x, y, z] = a.text.split('.');
    return `${z}.${y}.${x}.${w}.in-addr.arpa`;
  }
  return reverseName(parseIP(a.text)!);
}

/** Distinct networks (by network address and prefix) for the reverse zones. */
class NetSet {
  private readonly map = new Map<string, IPNet>();
  add(a: Addr, prefix: number): void {
    if (a.family === 4) {
      const n = a.text.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
      const base = prefix === 0 ? 0 : Math.floor(n / 2 ** (32 - prefix)) * 2 ** (32 - prefix);
      const key = `${base}/${prefix}`;
      if (!this.map.has(key)) this.map.set(key, { family: 4, value: BigInt(base), prefix });
      return;
    }
    const net = parseCIDR(`${a.text}/${prefix}`);
    if (!net) return;
    const nw = network(net);
    const key = `6:${nw.value}/${prefix}`;
    if (!this.map.has(key)) this.map.set(key, nw);
  }
  list(): IPNet[] {
    return [...this.map.values()];
  }
}

// ---------------------------------------------------------------- building

class Builder {
  readonly names = new Map<string, Node>();
  readonly apexes: string[];
  constructor(apexes: string[]) {
    this.apexes = apexes;
  }

  /** make `name` and every ancestor up to its apex exist */
  private node(name: string): Node {
    let n = this.names.get(name);
    if (!n) {
      n = new Map();
      this.names.set(name, n);
      const apex = this.apexes.find((a) => name.endsWith(`.${a}`));
      if (apex) {
        const parent = name.slice(name.indexOf('.') + 1);
        if (parent !== apex) this.node(parent);
      }
    }
    return n;
  }
  touch(name: string): void {
    this.node(name);
  }
  /** owner|type|data of every record added: duplicates are dropped in O(1) */
  private readonly seen = new Set<string>();
  add(rr: RR): void {
    const key = `${rr.name}|${rr.type}|${typeof rr.data === 'string' ? rr.data : JSON.stringify(rr.data)}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    const n = this.node(rr.name);
    const list = n.get(rr.type);
    if (!list) n.set(rr.type, [rr]);
    else list.push(rr);
  }
}

const addrRR = (name: string, a: Addr, ttl: number): RR => ({ name, type: a.family === 4 ? 'A' : 'AAAA', class: 'IN', ttl, data: a.text });

function isReady(cond: { ready?: boolean } | undefined): boolean {
  return cond?.ready !== false;
}

function unhealthyFn(u: UnhealthyInput | undefined): (addr: string, svc: { namespace: string; name: string }) => boolean {
  if (!u) return () => false;
  if (typeof u === 'function') return u;
  return (addr) => u.has(addr);
}

function selectorMatches(sel: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  if (!sel || Object.keys(sel).length === 0) return false;
  return Object.entries(sel).every(([k, v]) => labels?.[k] === v);
}

interface Backend {
  ip: Addr;
  hostname: string;
  /** port name -> {port, proto} */
  ports: { name: string; port: number; proto: string }[];
}

const protoLabel = (p: string | undefined): string => `_${(p ?? 'TCP').toLowerCase()}`;

export function buildZone(objects: ZoneObjects, opts: ZoneOptions = {}): Zone {
  const domain = normalizeName(opts.clusterDomain || DEFAULT_CLUSTER_DOMAIN);
  const ttl: DnsTtls = { ...DEFAULT_TTLS, ...(opts.ttl ?? {}) };
  const serial = (opts.serial ?? Math.floor(Date.now() / 1000)) >>> 0;
  const unhealthy = unhealthyFn(opts.unhealthy);
  const b = new Builder([domain]);
  const reverseNets = new NetSet();
  const stats = { services: 0, headless: 0, endpoints: 0, names: 0 };
  const ptr = (a: Addr, target: string, t: number): void => {
    b.add({ name: reverseOf(a), type: 'PTR', class: 'IN', ttl: t, data: target });
  };

  b.add({ name: domain, type: 'SOA', class: 'IN', ttl: ttl.negative, data: soaData(domain, serial, ttl.negative) });
  b.add({ name: `dns-version.${domain}`, type: 'TXT', class: 'IN', ttl: ttl.service, data: SCHEMA_VERSION });
  b.touch(`svc.${domain}`);
  b.touch(`pod.${domain}`);
  for (const ns of objects.namespaces ?? []) {
    const n = normalizeName(ns.metadata.name);
    if (LABEL.test(n)) b.touch(`${n}.svc.${domain}`);
  }
  for (const c of opts.serviceCIDRs ?? []) {
    const ap = toAddrPrefix(c);
    if (ap) reverseNets.add(ap.addr, ap.prefix);
  }

  const endpoints = objects.endpoints ?? [];
  const slicesBySvc = new Map<string, EndpointSlice[]>();
  for (const s of objects.endpointSlices ?? []) {
    const svc = s.metadata.labels?.['kubernetes.io/service-name'];
    if (!svc) continue;
    const key = `${s.metadata.namespace ?? 'default'}/${svc}`;
    const l = slicesBySvc.get(key);
    if (l) l.push(s);
    else slicesBySvc.set(key, [s]);
  }

  for (const svc of objects.services ?? []) {
    const ns = normalizeName(svc.metadata.namespace ?? 'default');
    const name = normalizeName(svc.metadata.name);
    if (!LABEL.test(ns) || !LABEL.test(name)) continue;
    const fqdn = `${name}.${ns}.svc.${domain}`;
    const spec = svc.spec as Service['spec'] & { type?: string; externalName?: string; publishNotReadyAddresses?: boolean };
    stats.services++;
    b.touch(`${ns}.svc.${domain}`);

    if (spec.type === 'ExternalName' && spec.externalName) {
      const target = normalizeName(spec.externalName);
      if (validName(target)) b.add({ name: fqdn, type: 'CNAME', class: 'IN', ttl: ttl.service, data: target });
      continue;
    }

    if (spec.clusterIP !== 'None') {
      // ClusterIP: the name exists even before a VIP is allocated (NODATA until then)
      b.touch(fqdn);
      const vips = (spec.clusterIPs?.length ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : [])
        .map(toAddr)
        .filter((x): x is Addr => !!x);
      for (const ip of vips) {
        b.add(addrRR(fqdn, ip, ttl.service));
        ptr(ip, fqdn, ttl.service);
      }
      for (const p of spec.ports ?? []) {
        if (!p.name || !LABEL.test(p.name.toLowerCase())) continue;
        b.add({
          name: `_${p.name.toLowerCase()}.${protoLabel(p.protocol)}.${fqdn}`,
          type: 'SRV',
          class: 'IN',
          ttl: ttl.service,
          data: { priority: 0, weight: 100, port: p.port, target: fqdn },
        });
      }
      continue;
    }

    // headless: ready (and healthy) endpoints only; none -> the name does not exist (NXDOMAIN)
    stats.headless++;
    const tolerate =
      spec.publishNotReadyAddresses === true ||
      svc.metadata.annotations?.['service.alpha.kubernetes.io/tolerate-unready-endpoints'] === 'true';
    const ref = { namespace: ns, name };
    const backends: Backend[] = [];
    const slices = slicesBySvc.get(`${ns}/${name}`);
    if (slices) {
      for (const s of slices) {
        const ports = (s.ports ?? [])
          .filter((p) => p.name)
          .map((p) => ({ name: p.name!.toLowerCase(), port: p.port, proto: protoLabel(p.protocol) }));
        for (const e of s.endpoints ?? []) {
          if (!tolerate && !isReady(e.conditions)) continue;
          for (const a of e.addresses ?? []) {
            const ip = toAddr(a);
            if (!ip || unhealthy(ip.text, ref)) continue;
            const h = e.hostname && LABEL.test(e.hostname.toLowerCase()) ? e.hostname.toLowerCase() : dashed(ip);
            backends.push({ ip, hostname: h, ports });
          }
        }
      }
    } else {
      // no EndpointSlice: the Endpoint objects its selector picks, in its namespace
      for (const ep of endpoints) {
        if (normalizeName(ep.metadata.namespace ?? 'default') !== ns || !selectorMatches(spec.selector, ep.metadata.labels)) continue;
        for (const c of ep.spec.ips ?? []) {
          const ip = toAddrPrefix(c)?.addr;
          if (!ip || unhealthy(ip.text, ref)) continue;
          const ports: Backend['ports'] = [];
          for (const p of spec.ports ?? []) {
            if (!p.name || !LABEL.test(p.name.toLowerCase())) continue;
            let port = typeof p.targetPort === 'number' ? p.targetPort : p.port;
            if (typeof p.targetPort === 'string') {
              const cp = ep.spec.ports?.find((x) => x.name === p.targetPort);
              if (!cp) continue;
              port = cp.containerPort;
            }
            ports.push({ name: p.name.toLowerCase(), port, proto: protoLabel(p.protocol) });
          }
          backends.push({ ip, hostname: dashed(ip), ports });
        }
      }
    }
    if (backends.length === 0) continue;
    const weight = Math.max(1, Math.floor(100 / backends.length));
    for (const be of backends) {
      const host = `${be.hostname}.${fqdn}`;
      b.add(addrRR(fqdn, be.ip, ttl.headless));
      b.add(addrRR(host, be.ip, ttl.headless));
      ptr(be.ip, host, ttl.headless);
      for (const p of be.ports) {
        b.add({
          name: `_${p.name}.${p.proto}.${fqdn}`,
          type: 'SRV',
          class: 'IN',
          ttl: ttl.headless,
          data: { priority: 0, weight, port: p.port, target: host },
        });
      }
    }
  }

  // container names and aliases, per network
  const views = new Map<string, Map<string, Node>>();
  const networkDomains = new Set<string>();
  const defaultNetDomain = normalizeName(opts.defaultNetworkDomain ?? DEFAULT_NETWORK_DOMAIN);
  for (const ep of endpoints) {
    const network = ep.spec.network;
    if (!network) continue;
    stats.endpoints++;
    const netDomain = normalizeName(opts.networkDomains?.[network] ?? defaultNetDomain);
    let view = views.get(network);
    if (!view) views.set(network, (view = new Map()));
    if (netDomain) {
      networkDomains.add(netDomain);
      if (!view.has(netDomain)) view.set(netDomain, new Map());
    }
    const names = [ep.metadata.name, ...(ep.spec.aliases ?? [])].map(normalizeName).filter((n) => LABEL.test(n));
    const ips: Addr[] = [];
    for (const c of ep.spec.ips ?? []) {
      const ap = toAddrPrefix(c);
      if (!ap) continue;
      ips.push(ap.addr);
      reverseNets.add(ap.addr, ap.prefix);
    }
    const primary = names[0] ? (netDomain ? `${names[0]}.${netDomain}` : names[0]) : undefined;
    for (const ip of ips) {
      for (const n of new Set(names)) {
        for (const owner of netDomain ? [n, `${n}.${netDomain}`] : [n]) {
          const node = view.get(owner) ?? new Map<RRType, RR[]>();
          view.set(owner, node);
          const rr = addrRR(owner, ip, ttl.container);
          const list = node.get(rr.type);
          if (!list) node.set(rr.type, [rr]);
          else if (!list.some((r) => r.data === rr.data)) list.push(rr);
        }
      }
      if (primary) ptr(ip, primary, ttl.container);
    }
  }
  stats.names = b.names.size + [...views.values()].reduce((s, v) => s + v.size, 0);
  return { domain, ttl, serial, names: b.names, views, networkDomains, reverseNets: reverseNets.list(), stats };
}

function soaData(apex: string, serial: number, negative: number): SoaData {
  return { mname: `ns.dns.${apex}`, rname: `hostmaster.${apex}`, serial, refresh: 7200, retry: 1800, expire: 86400, minimum: negative };
}

// ---------------------------------------------------------------- answering

function soaRR(zone: Zone, apex: string): RR {
  return { name: apex, type: 'SOA', class: 'IN', ttl: zone.ttl.negative, data: soaData(apex, zone.serial, zone.ttl.negative) };
}

/** The zone apex of a reverse name inside `net`: the name cut at the network's octet (nibble) boundary. */
function reverseApex(qname: string, net: IPNet): string {
  const step = net.family === 4 ? 8 : 4;
  const suffix = net.family === 4 ? 'in-addr.arpa' : 'ip6.arpa';
  const keep = Math.floor(net.prefix / step);
  const labels = qname.slice(0, -(suffix.length + 1)).split('.');
  const tail = labels.slice(labels.length - keep);
  return tail.length ? `${tail.join('.')}.${suffix}` : suffix;
}

function answerFromNode(qname: string, node: Node, qtype: string, apexSoa: () => RR, extra: (rrs: RR[]) => RR[]): Answer {
  const withOwner = (rrs: RR[]): RR[] => rrs.map((r) => ({ ...r, name: qname }) as RR);
  if (qtype === 'ANY') {
    const all = [...node.values()].flat();
    if (all.length) return { rcode: 'NOERROR', answers: withOwner(all), authority: [], additionals: [] };
  } else {
    const direct = node.get(qtype as RRType);
    if (direct?.length) return { rcode: 'NOERROR', answers: withOwner(direct), authority: [], additionals: extra(direct) };
    const cname = node.get('CNAME');
    if (cname?.length) return { rcode: 'NOERROR', answers: withOwner(cname), authority: [], additionals: [] };
  }
  return { rcode: 'NOERROR', answers: [], authority: [apexSoa()], additionals: [] };
}

const nx = (soa: RR): Answer => ({ rcode: 'NXDOMAIN', answers: [], authority: [soa], additionals: [] });

/**
 * Answer `qname`/`qtype` from the zone, or null when the name is not ours (forward it).
 * `qname` in any case, with or without the final dot.
 */
export function lookup(zone: Zone, qnameIn: string, qtype: string, view: View = {}): Answer | null {
  const qname = normalizeName(qnameIn);
  const domain = zone.domain;

  if (qname === domain || qname.endsWith(`.${domain}`)) {
    const soa = (): RR => soaRR(zone, domain);
    const node = zone.names.get(qname) ?? podNode(zone, qname);
    if (!node) return nx(soa());
    return answerFromNode(qname, node, qtype, soa, (rrs) => additionalsFor(zone, rrs));
  }

  const rev = parseReverse(qname);
  if (rev) {
    const node = zone.names.get(qname);
    const net =
      zone.reverseNets.find((n) => n.prefix <= rev.prefix && contains(n, rev)) ??
      (node ? { ...rev, prefix: rev.family === 4 ? 24 : 64 } : undefined);
    if (!net) return null;
    const soa = (): RR => soaRR(zone, reverseApex(qname, net));
    const full = rev.prefix === (rev.family === 4 ? 32 : 128);
    if (!node) return full ? nx(soa()) : answerFromNode(qname, new Map(), qtype, soa, () => []);
    return answerFromNode(qname, node, qtype, soa, () => []);
  }

  // container names: `<name>` and `<name>.<network domain>` in the client's networks
  const nets = view.networks ?? [...zone.views.keys()];
  const inNetDomain = [...zone.networkDomains].find((d) => qname === d || qname.endsWith(`.${d}`));
  const merged: Node = new Map();
  let found = false;
  for (const n of nets) {
    const node = zone.views.get(n)?.get(qname);
    if (!node) continue;
    found = true;
    for (const [t, rrs] of node)
      merged.set(t, [...(merged.get(t) ?? []), ...rrs.filter((r) => !(merged.get(t) ?? []).some((m) => m.data === r.data))]);
  }
  if (inNetDomain) {
    const soa = (): RR => soaRR(zone, inNetDomain);
    if (qname === inNetDomain && qtype === 'SOA') return { rcode: 'NOERROR', answers: [soa()], authority: [], additionals: [] };
    if (!found) return nx(soa());
    return answerFromNode(qname, merged, qtype, soa, () => []);
  }
  if (found && !qname.includes('.')) {
    return answerFromNode(
      qname,
      merged,
      qtype,
      () => soaRR(zone, domain),
      () => [],
    );
  }
  return null;
}

/** `<a>-<b>-<c>-<d>.<ns>.pod.<domain>` (spec 2.6, deprecated but required): synthesized. */
function podNode(zone: Zone, qname: string): Node | undefined {
  const rest = qname.slice(0, -(zone.domain.length + 1));
  const labels = rest.split('.');
  // `<ns>.pod.<domain>` exists as an empty non-terminal
  if (labels.length === 2 && labels[1] === 'pod' && LABEL.test(labels[0])) return new Map();
  if (labels.length !== 3 || labels[2] !== 'pod') return undefined;
  if (labels[1] && !LABEL.test(labels[1])) return undefined;
  const [host] = labels;
  let ip: Addr | null = null;
  if (/^\d{1,3}(-\d{1,3}){3}$/.test(host)) ip = toAddr(host.replace(/-/g, '.'));
  else if (host.includes('-') && /^[0-9a-f-]+$/.test(host)) ip = toAddr(host.replace(/-/g, ':'));
  if (!ip) return undefined;
  return new Map([[ip.family === 4 ? 'A' : 'AAAA', [addrRR(qname, ip, zone.ttl.pod)]]]);
}

/** A/AAAA of SRV targets in our zone, for the additional section. */
function additionalsFor(zone: Zone, rrs: RR[]): RR[] {
  const out: RR[] = [];
  for (const r of rrs) {
    if (r.type !== 'SRV') continue;
    const n = zone.names.get(r.data.target);
    if (!n) continue;
    out.push(...(n.get('A') ?? []), ...(n.get('AAAA') ?? []));
  }
  return out;
}
