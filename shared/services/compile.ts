/**
 * Services: load-balanced virtual IPs (PURE). From the store's Services, EndpointSlices,
 * Endpoints and BackendHealth objects, compile what one node programs (`compileServices`),
 * and render it as one nftables table owned by the services reconciler
 * (`renderServicesNft`, whole; `renderServicesUpdate`, only the services that changed).
 * The anchor is kube-proxy's nftables mode; see docs/services.md.
 *
 *   table inet T
 *     map service_ips   VIP . l4proto . port : goto svc_…      (every service port with backends)
 *     map no_endpoints  VIP . l4proto . port : goto rej_…      (every service port without)
 *     chain prerouting / output (nat, dstnat): ip daddr . meta l4proto . th dport vmap @service_ips
 *     chain filter_forward / filter_output (filter, -110, ct state new): vmap @no_endpoints
 *     chain postrouting (nat, srcnat): ct status dnat ip saddr . ip daddr @hairpin → masquerade
 *     chain svc_…  dnat to the backend its choice map gives (numgen / jhash slot / lc → address . port)
 *     map rr_… / wrr_… / ih_… / lc_…   the choice map of one service port
 *     with ClientIP affinity: chain svc_… checks one timed set per backend, then the choice map
 *       is a verdict map (rrv_…) → chain be_… (affinity update, dnat to backend)
 *
 * A service port's chains, sets and map elements form one separable fragment: a backend change
 * is an update of that service's choice map elements (and its numgen rule when the slot count
 * changes; the element of `service_ips`/`no_endpoints` when it gains or loses its last
 * backend); no other service is touched.
 */
import { sha256Hex } from '../hash.ts';
import { formatIP, parseCIDR, parseIP, size, networkAddr, type IPNet } from '../ipnet.ts';
import type { BackendHealth, Endpoint, EndpointSlice, Service, ServicePort, CniObject } from '../objects/types.ts';

export type { BackendHealth };

export const ALGORITHM_ANNOTATION = 'lb.cni-ts.dev/algorithm';
export const WEIGHT_LABEL = 'lb.cni-ts.dev/weight';
export const HEALTH_ANNOTATION = 'health.cni-ts.dev/check';
export const ALGORITHMS = ['round-robin', 'weighted-round-robin', 'least-connections', 'ip-hash'] as const;
export type Algorithm = (typeof ALGORITHMS)[number];
/** ip-hash slot table size: a client hash picks one of SLOTS slots, each slot names a backend */
export const SLOTS = 256;
export const DEFAULT_AFFINITY_TIMEOUT = 10800;

export interface HealthCheck {
  type: 'tcp' | 'http';
  port?: number;
  path: string;
  intervalSeconds: number;
  timeoutSeconds: number;
  unhealthyThreshold: number;
  healthyThreshold: number;
}

export interface ServiceObjects {
  services: Service[];
  endpointSlices: EndpointSlice[];
  endpoints: Endpoint[];
  health: BackendHealth[];
}

export interface Backend {
  /** "10.1.0.5:8080" */
  key: string;
  address: string;
  port: number;
  weight: number;
  /** the Endpoint's namespace/name, or "slice/<name>" */
  source: string;
  node?: string;
  healthy: boolean;
  /** why unhealthy (health result reason) */
  reason?: string;
}

export interface ServicePortEntry {
  /** "ns/name:port/proto" */
  key: string;
  namespace: string;
  name: string;
  portName: string;
  vip: string;
  family: 4 | 6;
  port: number;
  protocol: 'tcp' | 'udp';
  algorithm: Algorithm;
  affinityTimeout?: number;
  health?: HealthCheck;
  /** every backend found (healthy or not, weight 0 included) */
  backends: Backend[];
  /** the ones new connections may go to, in a stable order */
  active: Backend[];
  /** chain name prefix of this service port */
  id: string;
}

export interface ServiceTable {
  entries: ServicePortEntry[];
  /** services whose VIP must be allocated: ns/name -> address (the caller writes it via CAS) */
  allocations: Array<{ namespace: string; name: string; clusterIP: string }>;
  /** problems that made a service or port be left out (never an exception) */
  problems: string[];
}

export interface CompileOptions {
  serviceCIDR: string[];
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The problems of an algorithm annotation value ([] when fine or absent). */
export function algorithmProblem(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  return (ALGORITHMS as readonly string[]).includes(v)
    ? undefined
    : `unknown algorithm ${JSON.stringify(v)} (one of ${ALGORITHMS.join(', ')})`;
}

export function weightProblem(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  return /^\d{1,4}$/.test(v) && Number(v) <= 1000 ? undefined : `weight ${JSON.stringify(v)} must be an integer 0 to 1000`;
}

/** Parse the health annotation; a string is the problem. */
export function parseHealthCheck(text: string): HealthCheck | string {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return `not valid JSON: ${(e as Error).message}`;
  }
  if (!isObj(raw)) return 'must be a JSON object';
  const known = ['type', 'port', 'path', 'intervalSeconds', 'timeoutSeconds', 'unhealthyThreshold', 'healthyThreshold'];
  for (const k of Object.keys(raw)) if (!known.includes(k)) return `unknown key ${JSON.stringify(k)} (known: ${known.join(', ')})`;
  if (raw.type !== 'tcp' && raw.type !== 'http') return `type must be "tcp" or "http" (got ${JSON.stringify(raw.type)})`;
  if (raw.port !== undefined && !(Number.isInteger(raw.port) && (raw.port as number) >= 1 && (raw.port as number) <= 65535))
    return `port ${JSON.stringify(raw.port)} must be 1 to 65535`;
  if (raw.path !== undefined && (typeof raw.path !== 'string' || !raw.path.startsWith('/'))) return `path must start with "/"`;
  const num = (k: string, def: number, max: number): number | string => {
    const v = raw[k];
    if (v === undefined) return def;
    if (typeof v !== 'number' || !(v > 0) || v > max || (k.endsWith('Threshold') && !Number.isInteger(v)))
      return `${k} ${JSON.stringify(v)} must be a positive ${k.endsWith('Threshold') ? 'integer' : 'number'} up to ${max}`;
    return v;
  };
  const f = {
    interval: num('intervalSeconds', 2, 3600),
    timeout: num('timeoutSeconds', 1, 3600),
    un: num('unhealthyThreshold', 3, 100),
    ok: num('healthyThreshold', 2, 100),
  };
  for (const v of Object.values(f)) if (typeof v === 'string') return v;
  return {
    type: raw.type,
    ...(raw.port !== undefined ? { port: raw.port as number } : {}),
    path: (raw.path as string | undefined) ?? '/',
    intervalSeconds: f.interval as number,
    timeoutSeconds: f.timeout as number,
    unhealthyThreshold: f.un as number,
    healthyThreshold: f.ok as number,
  };
}

/** backend order: numeric-aware (10.1.0.9 before 10.1.0.10), one collator for every call */
const NUMERIC = new Intl.Collator('en', { numeric: true }).compare;
const hostOf = (cidr: string): string => cidr.split('/')[0]!;
const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
const protoOf = (p: ServicePort): 'tcp' | 'udp' | undefined => {
  const x = (p.protocol ?? 'TCP').toLowerCase();
  return x === 'tcp' || x === 'udp' ? x : undefined;
};
const ident = (s: string): string => s.replace(/[^A-Za-z0-9_]/g, '_');

/** The health object's name for a backend of a service port ("web-10-1-0-5-8080"). */
export function healthName(service: string, address: string, port: number): string {
  return `${service}-${address.replace(/[.:]/g, '-')}-${port}`;
}

/** Deterministic, stable VIP for ns/name in `cidrs` (the first range, IPv4 or IPv6), avoiding `taken`. */
export function allocateClusterIP(namespace: string, name: string, cidrs: string[], taken: ReadonlySet<string>): string | undefined {
  const net = cidrs.map(parseCIDR).find((n): n is IPNet => !!n);
  if (!net) return undefined;
  const n = size(net);
  if (n < 4n) return undefined;
  const usable = n - 2n; // not the network or broadcast address
  const start = BigInt(`0x${sha256Hex(`${namespace}/${name}`).slice(0, 12)}`) % usable;
  const limit = usable < 65536n ? usable : 65536n;
  for (let i = 0n; i < limit; i++) {
    const ip = formatIP({ family: net.family, value: networkAddr(net) + 1n + ((start + i) % usable) });
    if (!taken.has(ip)) return ip;
  }
  return undefined;
}

export function serviceVIP(svc: Service): string | undefined {
  const ip = svc.spec.clusterIP ?? svc.spec.clusterIPs?.[0];
  return ip && ip !== 'None' ? ip : undefined;
}

export const isHeadless = (svc: Service): boolean => svc.spec.clusterIP === 'None';

/**
 * Rendezvous (highest random weight) assignment of SLOTS slots to backends: each slot goes to
 * the backend with the highest hash(slot, backend). When one backend leaves, only its slots
 * move; when one joins, it takes slots only from others in proportion (≈ SLOTS/k).
 */
export function slotTable(backends: readonly string[], slots = SLOTS): number[] {
  const out: number[] = [];
  const h = backends.map((b) => b);
  for (let s = 0; s < slots; s++) {
    let best = -1;
    let bestScore = -1;
    h.forEach((b, i) => {
      const score = fnv1a(`${s}|${b}`);
      if (score > bestScore || (score === bestScore && b < h[best]!)) {
        best = i;
        bestScore = score;
      }
    });
    out.push(best);
  }
  return out;
}

function fnv1a(s: string): number {
  let x = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    x ^= s.charCodeAt(i);
    x = Math.imul(x, 0x01000193) >>> 0;
  }
  // a final avalanche (murmur3 fmix32) so near-identical strings spread
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b) >>> 0;
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35) >>> 0;
  x ^= x >>> 16;
  return x >>> 0;
}

function resolveTargetPort(sp: ServicePort, ep: Endpoint): number | undefined {
  const t = sp.targetPort ?? sp.port;
  if (typeof t === 'number') return t;
  const proto = sp.protocol ?? 'TCP';
  const m = (ep.spec.ports ?? []).find((p) => p.name === t && (p.protocol ?? 'TCP') === proto);
  return m?.containerPort;
}

function matches(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

/** sha256 prefix of a service port key, remembered (every pass hashes every key; they rarely change) */
const shortHashes = new Map<string, string>();
function shortHash(key: string): string {
  let h = shortHashes.get(key);
  if (h === undefined) {
    if (shortHashes.size > 200_000) shortHashes.clear();
    shortHashes.set(key, (h = sha256Hex(key).slice(0, 6)));
  }
  return h;
}

/** Compile what every node programs for the store's services. */
export function compileServices(objs: ServiceObjects, _node: string, opts: CompileOptions): ServiceTable {
  const problems: string[] = [];
  const allocations: ServiceTable['allocations'] = [];
  const entries: ServicePortEntry[] = [];
  const taken = new Set<string>();
  for (const s of objs.services) {
    const v = serviceVIP(s);
    if (v) taken.add(v);
  }
  const health = new Map<string, BackendHealth>();
  for (const h of objs.health) health.set(`${h.metadata.namespace ?? 'default'}/${h.metadata.name}`, h);
  // endpoints indexed by namespace and by each label pair: a selector scans only the endpoints
  // carrying its first pair (1000 services × 10000 endpoints: linear, not a product)
  const byLabel = new Map<string, Endpoint[]>();
  for (const ep of objs.endpoints) {
    for (const [k, v] of Object.entries(ep.metadata.labels ?? {})) {
      const key = `${ep.metadata.namespace ?? 'default'}\u0000${k}\u0000${v}`;
      let l = byLabel.get(key);
      if (!l) byLabel.set(key, (l = []));
      l.push(ep);
    }
  }
  const slicesBySvc = new Map<string, EndpointSlice[]>();
  for (const sl of objs.endpointSlices) {
    const key = `${sl.metadata.namespace ?? 'default'}/${sl.metadata.labels['kubernetes.io/service-name']}`;
    let l = slicesBySvc.get(key);
    if (!l) slicesBySvc.set(key, (l = []));
    l.push(sl);
  }
  const services = [...objs.services].sort((a, b) =>
    `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace}/${b.metadata.name}`),
  );
  for (const svc of services) {
    const ns = svc.metadata.namespace ?? 'default';
    const name = svc.metadata.name;
    const ref = `${ns}/${name}`;
    if (isHeadless(svc)) continue;
    // one VIP per family (clusterIPs, dual stack), or the one allocated from serviceCIDR
    let given = (svc.spec.clusterIPs?.length ? svc.spec.clusterIPs : svc.spec.clusterIP ? [svc.spec.clusterIP] : []).filter(
      (x) => x && x !== 'None',
    );
    if (!given.length) {
      const vip = allocateClusterIP(ns, name, opts.serviceCIDR, taken);
      if (!vip) {
        problems.push(`Service ${ref}: no free address in serviceCIDR ${opts.serviceCIDR.join(',')}`);
        continue;
      }
      taken.add(vip);
      allocations.push({ namespace: ns, name, clusterIP: vip });
      given = [vip];
    }
    const vips: Array<{ vip: string; family: 4 | 6 }> = [];
    for (const v of given) {
      const ip = IPV4.test(v) ? { family: 4 as const } : parseIP(v); // parseIP is ~10 µs a call: 1000 VIPs every pass
      if (!ip) problems.push(`Service ${ref}: clusterIP ${v} is not an address`);
      else if (!vips.some((x) => x.family === ip.family)) vips.push({ vip: v, family: ip.family });
    }
    const ann = svc.metadata.annotations ?? {};
    const algoProblem = algorithmProblem(ann[ALGORITHM_ANNOTATION]);
    if (algoProblem) {
      problems.push(`Service ${ref}: ${algoProblem}`);
      continue;
    }
    const algorithm = (ann[ALGORITHM_ANNOTATION] as Algorithm | undefined) ?? 'round-robin';
    let check: HealthCheck | undefined;
    if (ann[HEALTH_ANNOTATION] !== undefined) {
      const h = parseHealthCheck(ann[HEALTH_ANNOTATION]);
      if (typeof h === 'string') problems.push(`Service ${ref}: ${HEALTH_ANNOTATION}: ${h} (checks off)`);
      else check = h;
    }
    const affinityTimeout =
      svc.spec.sessionAffinity === 'ClientIP'
        ? (svc.spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT)
        : undefined;
    const ports = svc.spec.ports ?? [];
    for (const { vip, family, sp } of vips.flatMap((v) => ports.map((sp) => ({ ...v, sp })))) {
      const protocol = protoOf(sp);
      if (!protocol) {
        problems.push(`Service ${ref}: port ${sp.port}/${sp.protocol}: only TCP and UDP are balanced`);
        continue;
      }
      const backends = new Map<string, Backend>();
      const add = (address: string, port: number | undefined, weight: number, source: string, node?: string): void => {
        if (port === undefined) return;
        // backends of the VIP's family (a regex for IPv4: parseIP is ~10 µs a call)
        if (family === 4 ? !IPV4.test(address) : !address.includes(':') || parseIP(address)?.family !== 6) return;
        const key = `${address}:${port}`;
        if (backends.has(key)) return;
        const hn = healthName(name, address, port);
        const h = check ? health.get(`${ns}/${hn}`) : undefined;
        const healthy = h ? h.spec.healthy : true;
        backends.set(key, {
          key,
          address,
          port,
          weight,
          source,
          ...(node ? { node } : {}),
          healthy,
          ...(h && !h.spec.healthy && h.spec.reason ? { reason: h.spec.reason } : {}),
        });
      };
      if (svc.spec.selector && Object.keys(svc.spec.selector).length) {
        const [k0, v0] = Object.entries(svc.spec.selector)[0]!;
        for (const ep of byLabel.get(`${ns}\u0000${k0}\u0000${v0}`) ?? []) {
          if (!matches(svc.spec.selector, ep.metadata.labels)) continue;
          const w = ep.metadata.labels?.[WEIGHT_LABEL];
          const weight = w === undefined || weightProblem(w) ? 1 : Number(w);
          const port = resolveTargetPort(sp, ep);
          for (const cidr of ep.spec.ips) add(hostOf(cidr), port, weight, `${ns}/${ep.metadata.name}`, ep.spec.node);
        }
      } else if (!svc.spec.selector || !Object.keys(svc.spec.selector).length) {
        for (const sl of slicesBySvc.get(ref) ?? []) {
          const slp = (sl.ports ?? []).find((p) => (p.name ?? '') === (sp.name ?? '') && (p.protocol ?? 'TCP') === (sp.protocol ?? 'TCP'));
          const port =
            slp?.port ?? (typeof sp.targetPort === 'number' ? sp.targetPort : typeof sp.targetPort === 'string' ? undefined : sp.port);
          for (const e of sl.endpoints) {
            if (e.conditions?.ready === false) continue;
            for (const a of e.addresses) add(a, port, 1, `slice/${sl.metadata.name}`, e.nodeName);
          }
        }
      }
      const all = [...backends.values()].sort((a, b) => NUMERIC(a.key, b.key));
      const active = all.filter((b) => b.healthy && (algorithm !== 'weighted-round-robin' || b.weight > 0));
      const key = `${ref}:${sp.port}/${protocol}${family === 6 ? '/v6' : ''}`;
      entries.push({
        key,
        namespace: ns,
        name,
        portName: sp.name ?? '',
        vip,
        family,
        port: sp.port,
        protocol,
        algorithm,
        ...(affinityTimeout !== undefined ? { affinityTimeout } : {}),
        ...(check ? { health: check } : {}),
        backends: all,
        active,
        id: `${ident(`${ns}_${name}`).slice(0, 80)}_${protocol}${sp.port}_${shortHash(key)}`,
      });
    }
  }
  return { entries, allocations, problems };
}

// ---------------------------------------------------------------- nft rendering

/** A set or map this table declares: name, body without elements. */
export interface SetDecl {
  name: string;
  body: string;
  map?: boolean;
}

/** One service port's part of the table: chains (name → rules), sets and maps with their elements, and map elements. */
export interface ServiceFragment {
  key: string;
  /** element of service_ips(6) or no_endpoints(6) */
  map: 'service_ips' | 'no_endpoints' | 'service_ips6' | 'no_endpoints6';
  element: string;
  /** chains in creation order; the first is the service chain */
  chains: Array<{ name: string; rules: string[] }>;
  /** set and map declarations (name → body without elements) */
  sets: SetDecl[];
  /** the elements of this fragment's choice map (`key : value`, in order); the lc map is kept apart */
  elements: Array<{ map: string; items: Array<[string, string]> }>;
  /** round robin: the backend (key) in each numgen slot, kept from the previous rendering so a change moves the fewest elements */
  slots?: string[];
  /** backend addresses for the hairpin set of the entry's family */
  hairpin: string[];
  /** least-connections: the map and its one element (the agent keeps it current) */
  lc?: { map: string; element: string };
  /** a content hash, to tell whether anything changed (the lc element excluded) */
  hash: string;
  /** what of the compiled entry it was rendered from, to reuse the fragment while that is unchanged */
  sig?: string;
}

const svcChain = (e: ServicePortEntry): string => `svc_${e.id}`;
const rejectChain = (e: ServicePortEntry): string => `rej_${e.id}`;
/** backend chains exist only for ClientIP affinity (they update the backend's affinity set); others dnat from a map */
export const beChain = (e: ServicePortEntry, b: Backend): string => `be_${e.id}_${ident(b.address)}_${b.port}`;
/** the timeout is part of the name: a new timeout is a new set (a set's type cannot change in place) */
const affSet = (e: ServicePortEntry, b: Backend): string => `aff_${e.id}_t${e.affinityTimeout}_${ident(b.address)}_${b.port}`;
const affinity = (e: ServicePortEntry): boolean => e.affinityTimeout !== undefined;
const ALGO_SHORT: Record<Algorithm, string> = {
  'round-robin': 'rr',
  'weighted-round-robin': 'wrr',
  'ip-hash': 'ih',
  'least-connections': 'lc',
};
/**
 * The service port's choice map: slot (numgen / jhash) or l4proto → backend. Its name carries
 * its type (algorithm, and `v` for a verdict map: affinity services jump to backend chains; the
 * others map to `address . port` and dnat), so a changed type is a new map.
 */
export const choiceMap = (e: ServicePortEntry): string => `${ALGO_SHORT[e.algorithm]}${affinity(e) ? 'v' : ''}_${e.id}`;
/** the least-connections choice: a one-element map (l4proto : backend) the agent updates */
export const lcMap = (e: ServicePortEntry): string => choiceMap(e);

/** Open connections per service port and backend: key `${entry.key}|${backend.key}`. */
export type ConnCounts = ReadonlyMap<string, number>;

/**
 * The backend least-connections sends the next new connection to: the active backend with the
 * fewest open connections in `conns`, ties to the first in order.
 */
export function leastConnectionsChoice(e: ServicePortEntry, conns: ConnCounts): Backend | undefined {
  let best: Backend | undefined;
  let n = Infinity;
  for (const b of e.active) {
    const c = conns.get(`${e.key}|${b.key}`) ?? 0;
    if (c < n) {
      n = c;
      best = b;
    }
  }
  return best;
}

const addrOf = (e: ServicePortEntry, a: string): string => (e.family === 6 ? `[${a}]` : a);
/** what a choice map maps to: the backend chain (affinity) or the backend's `address . port` (dnat from the map) */
const target = (e: ServicePortEntry, b: Backend): string => (affinity(e) ? `goto ${beChain(e, b)}` : `${addrOf(e, b.address)} . ${b.port}`);

export function lcElement(e: ServicePortEntry, b: Backend): string {
  return `${e.protocol} : ${target(e, b)}`;
}

/** The nft statements that point the least-connections map of `e` at backend `b` (one transaction). */
export function renderLcUpdate(table: string, e: ServicePortEntry, b: Backend): string {
  return `flush map inet ${table} ${lcMap(e)}\nadd element inet ${table} ${lcMap(e)} { ${lcElement(e, b)} }\n`;
}

/**
 * Round-robin slots: the previous slot order with the backends that left removed (the last slot
 * moves into the hole) and new ones appended, so one backend leaving or joining changes one or
 * two elements. Any order is a strict rotation; the counter restarts with the rule anyway.
 */
export function stableSlots(prev: readonly string[] | undefined, active: readonly string[]): string[] {
  const keep = new Set(active);
  const out = (prev ?? []).filter((k, i, a) => a.indexOf(k) === i);
  for (let i = 0; i < out.length; i++) {
    while (i < out.length && !keep.has(out[i]!)) {
      const last = out.pop()!;
      if (i < out.length) out[i] = last;
    }
  }
  const have = new Set(out);
  for (const k of active) if (!have.has(k)) out.push(k);
  return out;
}

/** One service port's fragment; `prev`: the same port's fragment as last applied (round-robin slot order). */
export function fragmentOf(e: ServicePortEntry, conns: ConnCounts = new Map(), prev?: ServiceFragment): ServiceFragment {
  const chains: ServiceFragment['chains'] = [];
  const sets: ServiceFragment['sets'] = [];
  const mapKey = `${e.vip} . ${e.protocol} . ${e.port}`;
  const v6 = e.family === 6;
  const ipx = v6 ? 'ip6' : 'ip';
  const hairpin = [...new Set(e.backends.map((b) => b.address))];
  if (e.active.length === 0) {
    const rules = e.protocol === 'tcp' ? ['reject with tcp reset'] : ['reject with icmpx type port-unreachable'];
    chains.push({ name: rejectChain(e), rules });
    return finish({
      key: e.key,
      map: v6 ? 'no_endpoints6' : 'no_endpoints',
      element: `${mapKey} : goto ${rejectChain(e)}`,
      chains,
      sets,
      elements: [],
      hairpin,
    });
  }
  const svc: string[] = [];
  const bes = e.active;
  const aff = affinity(e);
  let lc: ServiceFragment['lc'];
  let slots: string[] | undefined;
  const elements: ServiceFragment['elements'] = [];
  if (aff) {
    for (const b of bes) {
      sets.push({
        name: affSet(e, b),
        body: `type ${v6 ? 'ipv6_addr' : 'ipv4_addr'}; flags dynamic,timeout; timeout ${e.affinityTimeout}s;`,
      });
      svc.push(`${ipx} saddr @${affSet(e, b)} goto ${beChain(e, b)}`);
    }
  }
  const m = choiceMap(e);
  const value = aff ? 'verdict' : `${ipx} daddr . ${e.protocol} dport`;
  /** the rule that looks `expr` up in the choice map: a jump (affinity) or a dnat to the mapped address and port */
  const use = (expr: string): string => (aff ? `${expr} vmap @${m}` : `meta l4proto ${e.protocol} dnat ${ipx} to ${expr} map @${m}`);
  const byKey = new Map(bes.map((b) => [b.key, b]));
  if (e.algorithm === 'round-robin') {
    slots = stableSlots(
      prev?.slots,
      bes.map((b) => b.key),
    );
    sets.push({ name: m, body: `typeof numgen inc mod 2 : ${value};`, map: true });
    elements.push({ map: m, items: slots.map((k, i) => [String(i), target(e, byKey.get(k)!)]) });
    svc.push(use(`numgen inc mod ${slots.length}`));
  } else if (e.algorithm === 'weighted-round-robin') {
    const total = bes.reduce((s, b) => s + b.weight, 0);
    let at = 0;
    const items = bes.map((b): [string, string] => {
      const k = b.weight === 1 ? `${at}` : `${at}-${at + b.weight - 1}`;
      at += b.weight;
      return [k, target(e, b)];
    });
    sets.push({ name: m, body: `typeof numgen inc mod 2 : ${value}; flags interval;`, map: true });
    elements.push({ map: m, items });
    svc.push(use(`numgen inc mod ${total}`));
  } else if (e.algorithm === 'ip-hash') {
    const table = slotTable(bes.map((b) => b.key));
    // runs of equal slots become intervals: at most SLOTS elements, usually far fewer
    const items: Array<[string, string]> = [];
    for (let s = 0; s < table.length;) {
      let t = s;
      while (t + 1 < table.length && table[t + 1] === table[s]) t++;
      items.push([t > s ? `${s}-${t}` : `${s}`, target(e, bes[table[s]!]!)]);
      s = t + 1;
    }
    const hash = `jhash ${ipx} saddr mod ${SLOTS} seed 0x5eed`;
    sets.push({ name: m, body: `typeof jhash ${ipx} saddr mod ${SLOTS} seed 0x5eed : ${value}; flags interval;`, map: true });
    elements.push({ map: m, items });
    svc.push(use(hash));
  } else {
    const pick = leastConnectionsChoice(e, conns) ?? bes[0]!;
    sets.push({ name: m, body: aff ? 'type inet_proto : verdict;' : `typeof meta l4proto : ${value};`, map: true });
    lc = { map: m, element: lcElement(e, pick) };
    svc.push(use('meta l4proto'));
  }
  chains.push({ name: svcChain(e), rules: svc });
  if (aff)
    for (const b of bes)
      chains.push({
        name: beChain(e, b),
        rules: [
          `update @${affSet(e, b)} { ${ipx} saddr }`,
          `meta l4proto ${e.protocol} dnat ${ipx} to ${v6 ? `[${b.address}]` : b.address}:${b.port}`,
        ],
      });
  return finish({
    key: e.key,
    map: v6 ? 'service_ips6' : 'service_ips',
    element: `${mapKey} : goto ${svcChain(e)}`,
    chains,
    sets,
    elements,
    ...(slots ? { slots } : {}),
    hairpin,
    ...(lc ? { lc } : {}),
  });
}

function finish(f: Omit<ServiceFragment, 'hash'>): ServiceFragment {
  const { lc, ...rest } = f;
  return { ...f, hash: sha256Hex(JSON.stringify({ ...rest, lc: lc?.map })).slice(0, 16) };
}

const setDecl = (table: string, s: SetDecl): string => `add ${s.map ? 'map' : 'set'} inet ${table} ${s.name} { ${s.body} }`;

/** The fixed part of the table (hooks, maps). */
function skeleton(table: string): string[] {
  return [
    `add table inet ${table}`,
    `add map inet ${table} service_ips { type ipv4_addr . inet_proto . inet_service : verdict; }`,
    `add map inet ${table} no_endpoints { type ipv4_addr . inet_proto . inet_service : verdict; }`,
    `add map inet ${table} service_ips6 { type ipv6_addr . inet_proto . inet_service : verdict; }`,
    `add map inet ${table} no_endpoints6 { type ipv6_addr . inet_proto . inet_service : verdict; }`,
    `add set inet ${table} hairpin { typeof ip saddr . ip daddr; }`,
    `add set inet ${table} hairpin6 { typeof ip6 saddr . ip6 daddr; }`,
    `add chain inet ${table} services`,
    `add rule inet ${table} services ip daddr . meta l4proto . th dport vmap @service_ips`,
    `add rule inet ${table} services ip6 daddr . meta l4proto . th dport vmap @service_ips6`,
    `add chain inet ${table} prerouting { type nat hook prerouting priority dstnat; policy accept; }`,
    `add rule inet ${table} prerouting jump services`,
    `add chain inet ${table} output { type nat hook output priority -100; policy accept; }`,
    `add rule inet ${table} output jump services`,
    `add chain inet ${table} postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
    // hairpin: a connection translated to its own source (a pod reaching itself through a service)
    `add rule inet ${table} postrouting ct status dnat ip saddr . ip daddr @hairpin masquerade`,
    `add rule inet ${table} postrouting ct status dnat ip6 saddr . ip6 daddr @hairpin6 masquerade`,
    `add chain inet ${table} endpoints_check`,
    `add rule inet ${table} endpoints_check ip daddr . meta l4proto . th dport vmap @no_endpoints`,
    `add rule inet ${table} endpoints_check ip6 daddr . meta l4proto . th dport vmap @no_endpoints6`,
    `add chain inet ${table} filter_forward { type filter hook forward priority -110; policy accept; }`,
    `add rule inet ${table} filter_forward ct state new jump endpoints_check`,
    `add chain inet ${table} filter_output { type filter hook output priority -110; policy accept; }`,
    `add rule inet ${table} filter_output ct state new jump endpoints_check`,
  ];
}

/** The fixed chains of the table and their rule counts (drift detection). */
export const SKELETON_CHAINS: Readonly<Record<string, number>> = {
  services: 2,
  prerouting: 1,
  output: 1,
  postrouting: 2,
  endpoints_check: 2,
  filter_forward: 1,
  filter_output: 1,
};
/** The fixed sets and maps of the table. */
export const SKELETON_SETS: readonly string[] = ['service_ips', 'no_endpoints', 'service_ips6', 'no_endpoints6', 'hairpin', 'hairpin6'];

export interface RenderedTable {
  table: string;
  fragments: Map<string, ServiceFragment>;
}

/** What a fragment is rendered from (fragmentOf reads nothing else of the entry): cheaper than JSON of the whole entry. */
const entrySig = (e: ServicePortEntry): string =>
  [
    e.key,
    e.vip,
    e.port,
    e.protocol,
    e.algorithm,
    e.affinityTimeout ?? '',
    e.id,
    e.backends.map((b) => b.address).join(','),
    e.active.map((b) => `${b.key}*${b.weight}`).join(','),
  ].join('|');

/**
 * Every fragment of the table. `prev` (the table as last applied): a service port whose compiled
 * entry is unchanged keeps its fragment (the same object, so the difference skips it at once:
 * a pass at 1000 services renders and compares only what changed), and round-robin slots stay
 * where they were.
 */
export function renderFragments(t: ServiceTable, tableName: string, conns?: ConnCounts, prev?: RenderedTable): RenderedTable {
  const fragments = new Map<string, ServiceFragment>();
  for (const e of t.entries) {
    const p = prev?.fragments.get(e.key);
    const sig = entrySig(e);
    fragments.set(e.key, p && p.sig === sig ? p : { ...fragmentOf(e, conns, p), sig });
  }
  return { table: tableName, fragments };
}

/** The whole table, replacing whatever is there (one transaction). */
export function renderServicesNft(t: ServiceTable | RenderedTable, tableName: string): string {
  const r = 'entries' in t ? renderFragments(t, tableName) : t;
  return renderServicesUpdate({ table: tableName, fragments: new Map() }, { table: tableName, fragments: r.fragments }, true);
}

const hairpinElement = (a: string): string => (a.includes(':') ? `[${a}] . [${a}]` : `${a} . ${a}`);

/**
 * Only what changed between two renderings of the same table, in one transaction: new chains,
 * sets and maps added, map elements deleted and added one by one (a backend change is an
 * element update of its service's choice map, plus the one rule when the slot count changes),
 * changed chains flushed and refilled, unused chains, sets and maps deleted. Fragments that are
 * the same object in both (unchanged) are skipped without a look. A backend leaving touches that
 * service only; affinity sets of backends that stay keep their entries. '' when equal. With
 * `full`, the table is deleted and written whole first.
 */
export function renderServicesUpdate(prev: RenderedTable, next: RenderedTable, full = false): string {
  const t = next.table;
  const ph = {
    addChain: [] as string[],
    addSet: [] as string[],
    elems: [] as string[],
    refill: [] as string[],
    lc: [] as string[],
    mapDel: [] as string[],
    mapAdd: [] as string[],
    hairpin: [] as string[],
    flushGone: [] as string[],
    delSet: [] as string[],
    delChain: [] as string[],
  };
  const changed: Array<[ServiceFragment | undefined, ServiceFragment | undefined]> = [];
  for (const [k, p] of prev.fragments) if (next.fragments.get(k) !== p) changed.push([p, next.fragments.get(k)]);
  for (const [k, n] of next.fragments) if (!prev.fragments.has(k)) changed.push([undefined, n]);
  for (const [p, n] of changed) {
    const pc = new Map((p?.chains ?? []).map((c) => [c.name, c.rules]));
    const nc = new Map((n?.chains ?? []).map((c) => [c.name, c.rules]));
    const ps = new Map((p?.sets ?? []).map((x) => [x.name, x]));
    const ns = new Map((n?.sets ?? []).map((x) => [x.name, x]));
    for (const [c] of nc) if (!pc.has(c)) ph.addChain.push(`add chain inet ${t} ${c}`);
    for (const [name, x] of ns) {
      const old = ps.get(name);
      if (old && old.body !== x.body) throw new Error(`set ${name} changed its type`); // names carry the type: cannot happen
      if (!old) ph.addSet.push(setDecl(t, x));
    }
    // choice map elements: only the slots whose backend changed (after the chains they jump to exist)
    const pi = new Map((p?.elements ?? []).map((m) => [m.map, new Map(m.items)]));
    for (const m of n?.elements ?? []) {
      const before = ps.has(m.map) ? (pi.get(m.map) ?? new Map<string, string>()) : new Map<string, string>();
      const items = new Map(m.items);
      const del = [...before].filter(([k, v]) => items.get(k) !== v).map(([k]) => k);
      const add = m.items.filter(([k, v]) => before.get(k) !== v).map(([k, v]) => `${k} : ${v}`);
      if (del.length) ph.elems.push(`delete element inet ${t} ${m.map} { ${del.join(', ')} }`);
      if (add.length) ph.elems.push(`add element inet ${t} ${m.map} { ${add.join(', ')} }`);
    }
    for (const [c, rules] of nc) {
      const old = pc.get(c);
      if (old && old.length === rules.length && old.every((r, i) => r === rules[i])) continue;
      if (old) ph.refill.push(`flush chain inet ${t} ${c}`);
      for (const r of rules) ph.refill.push(`add rule inet ${t} ${c} ${r}`);
    }
    if (n?.lc && !(p?.hash === n.hash && p.lc?.element === n.lc.element)) {
      if (p?.lc?.map === n.lc.map) ph.lc.push(`flush map inet ${t} ${n.lc.map}`);
      ph.lc.push(`add element inet ${t} ${n.lc.map} { ${n.lc.element} }`);
    }
    if (p && (!n || n.map !== p.map || n.element !== p.element))
      ph.mapDel.push(`delete element inet ${t} ${p.map} { ${p.element.split(' : ')[0]} }`);
    if (n && (!p || n.map !== p.map || n.element !== p.element)) ph.mapAdd.push(`add element inet ${t} ${n.map} { ${n.element} }`);
    for (const [c] of pc)
      if (!nc.has(c)) {
        ph.flushGone.push(`flush chain inet ${t} ${c}`);
        ph.delChain.push(`delete chain inet ${t} ${c}`);
      }
    for (const [name, x] of ps) if (!ns.has(name)) ph.delSet.push(`delete ${x.map ? 'map' : 'set'} inet ${t} ${name}`);
  }
  // hairpin: `a . a` for every backend address of any service (an address may back several)
  if (changed.length) {
    const touched = new Set(changed.flatMap(([p, n]) => [...(p?.hairpin ?? []), ...(n?.hairpin ?? [])]));
    const has = (r: RenderedTable): Set<string> => {
      const out = new Set<string>();
      for (const f of r.fragments.values()) for (const a of f.hairpin) if (touched.has(a)) out.add(a);
      return out;
    };
    const [before, after] = [has(prev), has(next)];
    for (const [v6, set] of [
      [false, 'hairpin'],
      [true, 'hairpin6'],
    ] as const) {
      const fam = (a: string): boolean => a.includes(':') === v6;
      const del = [...before].filter((a) => fam(a) && !after.has(a)).map(hairpinElement);
      const add = [...after].filter((a) => fam(a) && !before.has(a)).map(hairpinElement);
      if (del.length) ph.hairpin.push(`delete element inet ${t} ${set} { ${del.join(', ')} }`);
      if (add.length) ph.hairpin.push(`add element inet ${t} ${set} { ${add.join(', ')} }`);
    }
  }
  const out = Object.values(ph).flat();
  if (!full && !out.length) return '';
  const head: string[] = full ? [`add table inet ${t}`, `delete table inet ${t}`, ...skeleton(t)] : [];
  return `${[...head, ...out].join('\n')}\n`;
}

/** Every object kind the services reconciler reads (for a watch). */
export function isServiceObject(o: CniObject): boolean {
  return o.kind === 'Service' || o.kind === 'EndpointSlice' || o.kind === 'Endpoint';
}
