/**
 * Collecting the evidence of `cnictl diag`: who the source and the target are (store objects),
 * what the kernel says about them (interfaces, routes, the policy table's counters, conntrack,
 * the CNI CHECK of an attachment), and what the probes see from the source's network namespace.
 * The verdict is findings.ts's; the words on screen are report.ts's.
 */
import { networkInterfaces } from 'node:os';
import { getLink, listLinks, routeGet, routes as ipRoutes, type LinkInfo } from '../../../shared/kernel/ip.ts';
import { nftCounters } from '../../../shared/kernel/nft.ts';
import { conntrackList } from '../../../shared/kernel/conntrack.ts';
import type { BackendHealth, Endpoint, EndpointSlice, Service } from '../../../shared/objects/types.ts';
import { compileServices, serviceVIP, type ServicePortEntry } from '../../../shared/services/compile.ts';
import {
  counterName,
  DEFAULT_DENY_COUNTER,
  evaluate,
  PolicyIndex,
  POLICY_TABLE,
  POLICY_TABLE_FAMILY,
  parseCounterName,
  type EvaluateResult,
  type FlowProtocol,
  type PolicyObjects,
  type RuleRef,
} from '../../../shared/policy/index.ts';
import { readPolicyObjects } from '../../../shared/policysync.ts';
import type { ObjectStore } from '../../../shared/store/types.ts';
import { CliError, type Ctx } from '../common.ts';
import { ruleSummary } from '../trace.ts';
import { startCaptures, type RunningCapture } from './capture.ts';
import { diagnose, type BackendEvidence, type EndEvidence } from './findings.ts';
import { runDig, runPing, runPortProbe, runTracepath } from './probes.ts';
import type {
  ConnectivityReport,
  DnsReport,
  EndpointReport,
  EndReport,
  Finding,
  InterfaceState,
  PingReport,
  PolicyReport,
  PortReport,
  RouteReport,
  ServiceBackendReport,
  ServiceReport,
} from './schema.ts';

export interface ConnectivityArgs {
  target: string;
  namespace?: string;
  from?: string;
  fromHost: boolean;
  port?: { port: number; protocol: 'tcp' | 'udp' };
  count: number;
  capture?: number;
  write?: string;
}

interface World {
  objects: PolicyObjects;
  idx: PolicyIndex;
  services: Service[];
  entries: ServicePortEntry[];
  clusterDomain: string;
  policyTable: string;
}

const isIPv4 = (s: string): boolean => /^\d{1,3}(\.\d{1,3}){3}$/.test(s);
const isIP = (s: string): boolean => isIPv4(s) || (s.includes(':') && /^[0-9a-f:.]+$/i.test(s));
const epRef = (e: Endpoint): string => `${e.metadata.namespace ?? 'default'}/${e.metadata.name}`;
const firstV4 = (e: Endpoint): string | null =>
  e.spec.ips.map((c) => c.split('/')[0]!).find(isIPv4) ?? e.spec.ips[0]?.split('/')[0] ?? null;

async function world(ctx: Ctx): Promise<World> {
  const store: ObjectStore = await ctx.store();
  const cfg = ctx.config();
  const [objects, s, sl, h] = await Promise.all([
    readPolicyObjects(store),
    store.list<Service>('Service'),
    store.list<EndpointSlice>('EndpointSlice'),
    store.list<BackendHealth>('BackendHealth'),
  ]);
  const services = s.items.map((i) => i.object);
  const serviceCIDR = (cfg as { serviceCIDR?: string[] }).serviceCIDR ?? [];
  const t = compileServices(
    { services, endpointSlices: sl.items.map((i) => i.object), endpoints: objects.endpoints, health: h.items.map((i) => i.object) },
    '',
    { serviceCIDR },
  );
  const policy = (cfg.policy ?? {}) as { table?: string };
  return {
    objects,
    idx: new PolicyIndex(objects),
    services,
    entries: t.entries,
    clusterDomain: (cfg as { clusterDomain?: string }).clusterDomain ?? 'cluster.local',
    policyTable: policy.table ?? POLICY_TABLE,
  };
}

function endpointByName(w: World, ref: string, what: string): Endpoint {
  const slash = ref.indexOf('/');
  const [ns, name] = slash >= 0 ? [ref.slice(0, slash), ref.slice(slash + 1)] : ['default', ref];
  const pod = w.idx.podByName(ns, name);
  if (!pod) throw new CliError(`${what} ${ref}: no endpoint ${ns}/${name} (cnictl get endpoints -n ${ns})`);
  return pod.ep;
}

const ifState = (l: LinkInfo | undefined, name: string): InterfaceState =>
  l ? { name: l.ifname, up: l.flags.includes('UP'), mtu: l.mtu ?? null } : { name, up: false, mtu: null };

/**
 * The interfaces of a pod end: its container interface (in its netns) and its host-side veth,
 * when it is attached on this node (`node` of the agent config); a pod of another node is
 * probed, not looked into (run `cnictl diag endpoint` on its node).
 */
async function podEnd(ep: Endpoint, node: string): Promise<EndReport> {
  if (ep.spec.node !== node)
    return { label: epRef(ep), pod: epRef(ep), ip: firstV4(ep), netns: null, interface: null, hostInterface: null };
  const sandbox = ep.spec.sandbox ?? null;
  const [inner, host] = await Promise.all([
    sandbox ? getLink(ep.spec.ifname, sandbox).catch(() => undefined) : Promise.resolve(undefined),
    ep.spec.hostInterface ? getLink(ep.spec.hostInterface).catch(() => undefined) : Promise.resolve(undefined),
  ]);
  return {
    label: epRef(ep),
    pod: epRef(ep),
    ip: firstV4(ep),
    netns: sandbox,
    interface: sandbox ? ifState(inner, ep.spec.ifname) : null,
    hostInterface: ep.spec.hostInterface ? ifState(host, ep.spec.hostInterface) : null,
  };
}

const endEvidence = (e: EndReport): EndEvidence => ({
  label: e.label,
  pod: e.pod !== null,
  interface: e.interface,
  hostInterface: e.hostInterface,
});

/** The DNS server a source asks: its network's gateway (the agent listens there), else the host's resolver. */
function dnsServerFor(w: World, ep: Endpoint | undefined, node: string): string {
  const gw =
    ep?.spec.gateways?.[0] ??
    w.objects.endpoints.find((e) => e.spec.node === node && e.spec.gateways?.length)?.spec.gateways?.[0] ??
    w.objects.endpoints.find((e) => e.spec.gateways?.length)?.spec.gateways?.[0];
  if (!gw) throw new CliError('no DNS server known: no endpoint with a gateway (the agent serves DNS on gateways)');
  return gw.split('/')[0]!;
}

/** Name an address: an endpoint, a gateway, a service VIP, this node. */
function nameOf(w: World, addr: string): string | null {
  const pod = w.idx.podByIP(addr);
  if (pod) return `${pod.namespace}/${pod.name}`;
  const svc = w.entries.find((e) => e.vip === addr);
  if (svc) return `svc ${svc.namespace}/${svc.name}`;
  if (w.objects.endpoints.some((e) => e.spec.gateways?.some((g) => g.split('/')[0] === addr))) return 'gateway';
  const local = Object.values(networkInterfaces())
    .flat()
    .some((i) => i?.address === addr);
  return local ? 'this node' : null;
}

function ruleRefText(r: RuleRef): string {
  return r.kind === 'NetworkPolicy' ? `NetworkPolicy ${r.namespace}/${r.name}` : `${r.kind} ${r.name}`;
}

/** The policy verdict of one flow and the counter of what decided it. */
export function policyOf(w: World, r: EvaluateResult, flow: string, srcLabel: string): Omit<PolicyReport, 'counterDelta'> {
  const d = r.decidedBy;
  const side = d.side ?? null;
  const s = side === 'egress' ? r.egress : r.ingress;
  if ('kind' in d) {
    const summary = ruleSummary(w.objects, d);
    return {
      verdict: r.verdict,
      flow,
      policy: ruleRefText(d),
      rule: `${d.direction} rule ${d.rule}${d.ruleName ? ` (${d.ruleName})` : ''}${summary ? `: ${summary}` : ''}`,
      side,
      counter: counterName(d),
    };
  }
  if (d.default === 'isolated') {
    const nps = s.selectedBy.networkPolicies.map((n) => `NetworkPolicy ${n.namespace}/${n.name}`);
    return {
      verdict: r.verdict,
      flow,
      policy: nps.join(', ') || 'NetworkPolicy',
      rule: `isolated by ${nps.length > 1 ? 'them' : 'it'}; no rule allows ${srcLabel}${side === 'egress' ? ` to ${r.dst.pod ?? r.dst.ip}` : ''} on ${flow}`,
      side,
      counter: side ? DEFAULT_DENY_COUNTER[side] : null,
    };
  }
  return {
    verdict: r.verdict,
    flow,
    policy: null,
    rule:
      d.default === 'not-a-pod'
        ? 'no policy of ours applies (not a pod on either side)'
        : d.default === 'self'
          ? 'a pod reaching itself'
          : 'no policy isolates either side',
    side,
    counter: null,
  };
}

async function counters(w: World): Promise<Map<string, { packets: number; bytes: number }> | undefined> {
  try {
    return await nftCounters(POLICY_TABLE_FAMILY, w.policyTable);
  } catch {
    return undefined;
  }
}

/** Resolve TARGET: NS/POD, svc/NAME (-n NS), an IP, or a name (asked to the cluster DNS from the source). */
interface Target {
  end: EndReport & { input: string; service: string | null };
  ep?: Endpoint;
  service?: { svc: Service; entries: ServicePortEntry[] };
  dns: DnsReport | null;
}

function serviceTarget(w: World, ns: string, name: string): { svc: Service; entries: ServicePortEntry[] } {
  const svc = w.services.find((s) => (s.metadata.namespace ?? 'default') === ns && s.metadata.name === name);
  if (!svc) throw new CliError(`no service ${ns}/${name} (cnictl get services -n ${ns})`);
  return { svc, entries: w.entries.filter((e) => e.namespace === ns && e.name === name) };
}

const emptyEnd = (label: string, ip: string | null): EndReport => ({
  label,
  pod: null,
  ip,
  netns: null,
  interface: null,
  hostInterface: null,
});

async function resolveTarget(
  w: World,
  a: ConnectivityArgs,
  node: string,
  srcNetns: string | undefined,
  dnsServer: () => string,
): Promise<Target> {
  const t = a.target;
  const svcM = /^(?:svc|service)\/(?:([^/]+)\/)?([^/]+)$/.exec(t);
  if (svcM) {
    const ns = svcM[1] ?? a.namespace ?? 'default';
    const s = serviceTarget(w, ns, svcM[2]!);
    const vip = serviceVIP(s.svc) ?? s.entries[0]?.vip ?? null;
    return { end: { ...emptyEnd(`svc ${ns}/${svcM[2]}`, vip), input: t, service: `${ns}/${svcM[2]}` }, service: s, dns: null };
  }
  if (t.includes('/') && !isIP(t)) {
    const ep = endpointByName(w, t, 'TARGET');
    return { end: { ...(await podEnd(ep, node)), input: t, service: null }, ep, dns: null };
  }
  let ip: string | null = t;
  let dns: DnsReport | null = null;
  if (!isIP(t)) {
    dns = await runDig(t, dnsServer(), srcNetns);
    ip = dns.rcode === 'NOERROR' ? (dns.answers.find((x) => x.startsWith('A '))?.slice(2) ?? null) : null;
  }
  if (ip) {
    const pod = w.idx.podByIP(ip);
    if (pod) return { end: { ...(await podEnd(pod.ep, node)), input: t, service: null }, ep: pod.ep, dns };
    const e = w.entries.find((x) => x.vip === ip);
    if (e)
      return {
        end: { ...emptyEnd(`svc ${e.namespace}/${e.name}`, ip), input: t, service: `${e.namespace}/${e.name}` },
        service: serviceTarget(w, e.namespace, e.name),
        dns,
      };
  }
  return { end: { ...emptyEnd(t, ip), input: t, service: null }, dns };
}

function backendsOf(w: World, entries: ServicePortEntry[], port?: number): BackendEvidence[] {
  const e = entries.find((x) => port === undefined || x.port === port) ?? entries[0];
  return (e?.backends ?? []).map((b) => ({
    address: b.address,
    port: b.port,
    pod: w.idx.podByIP(b.address) ? `${w.idx.podByIP(b.address)!.namespace}/${w.idx.podByIP(b.address)!.name}` : null,
    healthy: b.healthy,
    reason: b.reason ?? null,
  }));
}

async function routeReport(w: World, targetIp: string, netns: string | undefined): Promise<RouteReport> {
  const [rg, tp] = await Promise.all([routeGet(targetIp, netns), runTracepath(targetIp, netns)]);
  const route = rg.route;
  return {
    via: route ? { dev: route.dev ?? null, gateway: route.gateway ?? null, src: route.prefsrc ?? null } : null,
    error: rg.error ?? null,
    hops: tp.hops.map((h) => ({ ...h, name: h.name ?? (h.address ? nameOf(w, h.address) : null) })),
    reached: tp.reached,
    pathMtu: rg.error ? null : tp.pathMtu,
  };
}

/** `cnictl diag connectivity`. */
export async function connectivity(ctx: Ctx, a: ConnectivityArgs): Promise<ConnectivityReport> {
  const w = await world(ctx);
  const node = ctx.config().node;
  const srcEp = a.from ? endpointByName(w, a.from, '--from') : undefined;
  if (srcEp && srcEp.spec.node !== node)
    throw new CliError(`--from ${a.from}: attached on node ${srcEp.spec.node}, this is ${node}: run cnictl diag there`);
  if (srcEp && !srcEp.spec.sandbox)
    throw new CliError(`--from ${a.from}: its Endpoint has no spec.sandbox (attached before diagnostics were supported: re-attach it)`);
  const source: EndReport = srcEp ? await podEnd(srcEp, node) : emptyEnd('host', null);
  const netns = srcEp?.spec.sandbox;
  const target = await resolveTarget(w, a, node, netns, () => dnsServerFor(w, srcEp, node));
  const tip = target.end.ip;
  const svc = target.service;
  // the port: given, else a service's first port
  const sp = svc?.entries[0];
  const port = a.port ?? (svc && sp ? { port: sp.port, protocol: sp.protocol } : undefined);
  const backends = svc ? backendsOf(w, svc.entries, port?.port) : [];

  // policy: the flow as the evaluator sees it (a service: its first backend, where DNAT sends it)
  let policy: Omit<PolicyReport, 'counterDelta'> | null = null;
  if (tip) {
    const protocol: FlowProtocol = port ? (port.protocol.toUpperCase() as FlowProtocol) : 'ICMP';
    const flowText = port ? `${protocol}/${port.port}` : 'ICMP';
    const srcEnd = srcEp ?? (await routeGet(tip)).route?.prefsrc ?? '0.0.0.0';
    const dst: Endpoint | string | undefined = svc
      ? backends[0]
        ? (w.idx.podByIP(backends[0].address)?.ep ?? backends[0].address)
        : undefined
      : (target.ep ?? tip);
    const dstPort = svc ? backends[0]?.port : port?.port;
    if (dst) {
      try {
        const r = evaluate(w.idx, { src: srcEnd, dst, protocol, port: port ? dstPort : undefined });
        policy = policyOf(w, r, flowText, source.label);
      } catch {
        policy = null;
      }
    }
  }
  const before = policy?.counter ? await counters(w) : undefined;

  // probes, from the source's netns, while the capture (if any) runs
  let cap: RunningCapture | undefined;
  if (a.capture) {
    const ifaces = [source, target.end].filter((e) => e.hostInterface).map((e) => ({ iface: e.hostInterface!.name, of: e.label }));
    if (svc)
      for (const b of backends) {
        const ep = b.pod ? w.idx.podByName(b.pod.split('/')[0]!, b.pod.split('/')[1]!)?.ep : undefined;
        if (ep?.spec.hostInterface && !ifaces.some((i) => i.iface === ep.spec.hostInterface))
          ifaces.push({ iface: ep.spec.hostInterface, of: b.pod! });
      }
    cap = await startCaptures(ifaces, a.capture, a.write);
  }
  let ping: PingReport | null = null;
  let route: RouteReport | null = null;
  let portR: PortReport | null = null;
  if (tip) {
    [ping, route, portR] = await Promise.all([
      svc ? Promise.resolve(null) : runPing(tip, a.count, netns),
      routeReport(w, tip, netns),
      port ? runPortProbe(port.protocol, tip, port.port, netns) : Promise.resolve(null),
    ]);
  }
  const capture = cap ? await cap.finish() : null;
  // Bun reports "network/host unreachable" as ECONNREFUSED: a refusal from a target the route
  // lookup or ping found unreachable is no refusal
  const unreachable = route?.error ?? ping?.errors.find((x) => /Unreachable/i.test(x) && !/Port Unreachable/i.test(x));
  if (portR?.state === 'refused' && unreachable)
    portR = { ...portR, state: 'filtered', connectMs: null, detail: `unreachable: ${unreachable}` };
  let counterDelta: number | null = null;
  if (policy?.counter && before) {
    const after = await counters(w);
    const b = before.get(policy.counter);
    const x = after?.get(policy.counter);
    counterDelta = b && x ? x.packets - b.packets : null;
  }
  const policyR: PolicyReport | null = policy ? { ...policy, counterDelta } : null;
  const diagnosis = diagnose({
    source: endEvidence(source),
    target: { ...endEvidence(target.end), ip: tip, service: svc ? { ref: target.end.service!, backends } : null },
    input: a.target,
    ping,
    route,
    port: portR,
    dns: target.dns,
    policy: policyR,
  });
  return {
    kind: 'connectivity',
    source,
    target: target.end,
    ping,
    route,
    port: portR,
    dns: target.dns,
    policy: policyR,
    capture,
    diagnosis,
  };
}

/** `cnictl diag service NAME -n NS [--from NS/POD]`. */
export async function service(ctx: Ctx, name: string, ns: string, from: string | undefined): Promise<ServiceReport> {
  const w = await world(ctx);
  const node = ctx.config().node;
  const srcEp = from ? endpointByName(w, from, '--from') : undefined;
  if (srcEp && srcEp.spec.node !== node)
    throw new CliError(`--from ${from}: attached on node ${srcEp.spec.node}, this is ${node}: run cnictl diag there`);
  const source: EndReport = srcEp ? await podEnd(srcEp, node) : emptyEnd('host', null);
  const netns = srcEp?.spec.sandbox;
  const s = serviceTarget(w, ns, name);
  const vip = serviceVIP(s.svc) ?? s.entries[0]?.vip ?? null;
  const fqdn = `${name}.${ns}.svc.${w.clusterDomain}`;
  let dns: DnsReport | null;
  try {
    dns = await runDig(fqdn, dnsServerFor(w, srcEp, node), netns);
  } catch {
    dns = null; // no DNS server known (no gateway): the section is left out
  }
  const vipTests = vip ? await Promise.all(s.entries.map((e) => runPortProbe(e.protocol, vip, e.port, netns))) : [];
  const first = s.entries[0];
  const backendList = first?.backends ?? [];
  const backends: ServiceBackendReport[] = await Promise.all(
    backendList.map(async (b) => {
      const pod = w.idx.podByIP(b.address);
      const [ping, portTest] = await Promise.all([runPing(b.address, 3, netns), runPortProbe(first!.protocol, b.address, b.port, netns)]);
      return {
        address: b.address,
        targetPort: b.port,
        pod: pod ? `${pod.namespace}/${pod.name}` : null,
        healthy: b.healthy,
        reason: b.reason ?? null,
        ping,
        portTest,
      };
    }),
  );
  const evidence: BackendEvidence[] = backends.map((b) => ({
    address: b.address,
    port: b.targetPort,
    pod: b.pod,
    healthy: b.healthy,
    reason: b.reason,
  }));
  const diagnosis: Finding[] = diagnose({
    source: endEvidence(source),
    target: { ...endEvidence(emptyEnd(`svc ${ns}/${name}`, vip)), ip: vip, service: { ref: `${ns}/${name}`, backends: evidence } },
    input: fqdn,
    ping: null,
    route: null,
    port: vipTests[0] ?? null,
    dns: dns && dns.rcode !== 'NOERROR' ? dns : null,
    policy: null,
  });
  // a healthy backend the source cannot reach on its port
  for (const b of backends) {
    if (b.healthy && b.portTest && b.portTest.state !== 'open')
      diagnosis.push({
        severity: 'warning',
        cause: `backend ${b.address}:${b.targetPort}${b.pod ? ` (${b.pod})` : ''} is healthy but ${b.portTest.state} from ${source.label}`,
        evidence: [b.portTest.detail ?? b.portTest.state],
      });
  }
  return {
    kind: 'service',
    service: { namespace: ns, name, vip, ports: s.entries.map((e) => `${e.port}/${e.protocol}`) },
    source,
    dns,
    vip: vipTests,
    backends,
    diagnosis,
  };
}

export interface CheckRunner {
  (ep: Endpoint): Promise<EndpointReport['check']>;
}

/** `cnictl diag endpoint NS/POD`. */
export async function endpoint(ctx: Ctx, ref: string, check: CheckRunner): Promise<EndpointReport> {
  const w = await world(ctx);
  const ep = endpointByName(w, ref, 'endpoint');
  const node = ctx.config().node;
  if (ep.spec.node !== node)
    throw new CliError(`${ref} is attached on node ${ep.spec.node}, this is ${node}: run cnictl diag endpoint there`);
  const sandbox = ep.spec.sandbox ?? null;
  const label = epRef(ep);
  const [links, r4, r6, host, chk, ctr, conns] = await Promise.all([
    sandbox ? listLinks(sandbox).catch(() => [] as LinkInfo[]) : Promise.resolve([] as LinkInfo[]),
    sandbox ? ipRoutes(4, sandbox).catch(() => []) : Promise.resolve([]),
    sandbox ? ipRoutes(6, sandbox).catch(() => []) : Promise.resolve([]),
    ep.spec.hostInterface ? getLink(ep.spec.hostInterface).catch(() => undefined) : Promise.resolve(undefined),
    check(ep),
    counters(w),
    conntrackList().catch(() => []),
  ]);
  const pod = w.idx.podByName(ep.metadata.namespace ?? 'default', ep.metadata.name)!;
  const policy: EndpointReport['policy'] = [];
  const counterRows: EndpointReport['counters'] = [];
  for (const dir of ['ingress', 'egress'] as const) {
    const { anps, nps, banp } = w.idx.policiesFor(pod, dir);
    for (const p of [...anps, ...nps, ...(banp ? [banp] : [])]) {
      const rules = (p[dir] ?? []).map(
        (r) => `rule ${r.ref.rule}${r.ref.ruleName ? ` (${r.ref.ruleName})` : ''}: ${ruleSummary(w.objects, r.ref) ?? r.action}`,
      );
      policy.push({
        direction: dir,
        policy: p.kind === 'NetworkPolicy' ? `NetworkPolicy ${p.namespace}/${p.name}` : `${p.kind} ${p.name}`,
        rules,
      });
      for (const r of p[dir] ?? []) {
        const c = ctr?.get(r.counter);
        if (c)
          counterRows.push({
            name: r.counter,
            rule: `${ruleRefText(r.ref)} ${dir} rule ${r.ref.rule}`,
            packets: c.packets,
            bytes: c.bytes,
          });
      }
    }
    if (nps.length) {
      const c = ctr?.get(DEFAULT_DENY_COUNTER[dir]);
      const m = parseCounterName(DEFAULT_DENY_COUNTER[dir]);
      if (c && m)
        counterRows.push({
          name: DEFAULT_DENY_COUNTER[dir],
          rule: `default deny of isolated pods, ${dir} (shared by every isolated pod of this node)`,
          packets: c.packets,
          bytes: c.bytes,
        });
    }
  }
  const ips = new Set(ep.spec.ips.map((c) => c.split('/')[0]!));
  const connections = conns
    .filter((c) => ips.has(c.orig.src) || ips.has(c.orig.dst) || ips.has(c.reply.src))
    .map((c) => ({
      protocol: c.proto,
      state: c.state ?? null,
      src: c.orig.src,
      dst: c.orig.dst,
      sport: c.orig.sport,
      dport: c.orig.dport,
    }));
  const interfaces = links.map((l) => ({
    name: l.ifname,
    up: l.flags.includes('UP'),
    mtu: l.mtu ?? null,
    addresses: (l.addr_info ?? []).map((x) => `${x.local}/${x.prefixlen}`),
    mac: l.address ?? null,
  }));
  const inner = links.find((l) => l.ifname === ep.spec.ifname);
  const hostState = ep.spec.hostInterface ? ifState(host, ep.spec.hostInterface) : null;
  const diagnosis = diagnose({
    source: { label, pod: true, interface: sandbox ? ifState(inner, ep.spec.ifname) : null, hostInterface: hostState },
    target: { label, pod: true, interface: null, hostInterface: null, ip: null, service: null },
    input: label,
    ping: null,
    route: null,
    port: null,
    dns: null,
    policy: null,
  });
  const routes = [...r4, ...r6].map((r) => ({ dst: r.dst, gateway: r.gateway ?? null, dev: r.dev ?? null, mtu: r.mtu ?? null }));
  if (!sandbox)
    diagnosis.push({
      severity: 'warning',
      cause: `the Endpoint of ${label} names no network namespace (spec.sandbox)`,
      evidence: ['attached before diagnostics were supported: interfaces and routes cannot be read'],
    });
  if (chk.result === 'failed')
    diagnosis.push({ severity: 'error', cause: `CNI CHECK of ${label}'s attachment failed`, evidence: [chk.detail ?? 'failed'] });
  return {
    kind: 'endpoint',
    endpoint: {
      namespace: ep.metadata.namespace ?? 'default',
      name: ep.metadata.name,
      node: ep.spec.node,
      network: ep.spec.network,
      containerId: ep.spec.containerId,
      ips: ep.spec.ips,
      sandbox,
      hostInterface: ep.spec.hostInterface ?? null,
    },
    interfaces,
    routes,
    hostInterface: hostState,
    check: chk,
    policy,
    counters: counterRows,
    connections,
    diagnosis,
  };
}
