/**
 * cnictl and services: `get services [-o wide]` (VIP, ports, algorithm, backends with health and
 * open connections), `describe service NS/NAME`, and the cross-object checks `apply` makes
 * before writing Services (VIP outside serviceCIDR or taken by another Service).
 * What the data plane does comes from the same pure compiler the agent runs
 * (shared/services/compile.ts) over what the store holds; open connections from this host's
 * conntrack table (the truth the least-connections balancer uses too).
 */
import { conntrackList } from '../../shared/kernel/conntrack.ts';
import { contains, parseCIDR, parseIP } from '../../shared/ipnet.ts';
import type { BackendHealth, CniObject, Endpoint, EndpointSlice, Service } from '../../shared/objects/types.ts';
import { compileServices, serviceVIP, type ServicePortEntry } from '../../shared/services/compile.ts';
import type { ObjectStore } from '../../shared/store/types.ts';

async function compiled(store: ObjectStore, serviceCIDR: string[]): Promise<{ entries: ServicePortEntry[]; services: Service[] }> {
  const [s, sl, ep, h] = await Promise.all([
    store.list<Service>('Service'),
    store.list<EndpointSlice>('EndpointSlice'),
    store.list<Endpoint>('Endpoint'),
    store.list<BackendHealth>('BackendHealth'),
  ]);
  const services = s.items.map((i) => i.object);
  const t = compileServices(
    {
      services,
      endpointSlices: sl.items.map((i) => i.object),
      endpoints: ep.items.map((i) => i.object),
      health: h.items.map((i) => i.object),
    },
    '',
    { serviceCIDR },
  );
  return { entries: t.entries, services };
}

/** Open connections per `${entry.key}|${backend}` from this host's conntrack table ('' when unreadable). */
async function openConnections(entries: ServicePortEntry[]): Promise<Map<string, number> | undefined> {
  const byVip = new Map(entries.map((e) => [`${e.protocol} ${e.vip}:${e.port}`, e]));
  try {
    const out = new Map<string, number>();
    for (const c of await conntrackList()) {
      if (c.proto === 'tcp' && c.state !== 'ESTABLISHED' && c.state !== 'SYN_SENT' && c.state !== 'SYN_RECV') continue;
      const e = byVip.get(`${c.proto} ${c.orig.dst}:${c.orig.dport}`);
      if (!e) continue;
      const k = `${e.key}|${c.reply.src}:${c.reply.sport}`;
      out.set(k, (out.get(k) ?? 0) + 1);
    }
    return out;
  } catch {
    return undefined;
  }
}

const backendCell = (e: ServicePortEntry, conns: Map<string, number> | undefined): string =>
  e.backends
    .map((b) => {
      const state = !b.healthy ? 'unhealthy' : e.active.includes(b) ? 'healthy' : 'drained';
      return `${b.key}(${state}${conns ? `,${conns.get(`${e.key}|${b.key}`) ?? 0} conns` : ''})`;
    })
    .join(' ') || '<none>';

/** The rows of `cnictl get services` for services in `namespace` (all when undefined). */
export async function servicesTable(
  store: ObjectStore,
  serviceCIDR: string[],
  namespace: string | undefined,
  wide: boolean,
  keep: (s: Service) => boolean = () => true,
): Promise<{ header: string[]; rows: string[][] }> {
  const { entries, services } = await compiled(store, serviceCIDR);
  const conns = wide ? await openConnections(entries) : undefined;
  const header = [
    ...(namespace === undefined ? ['NAMESPACE'] : []),
    'NAME',
    'VIP',
    'PORT(S)',
    'ALGORITHM',
    'BACKENDS',
    ...(wide ? ['AFFINITY', 'HEALTH-CHECK', 'BACKEND-STATE'] : []),
  ];
  const rows: string[][] = [];
  for (const s of services) {
    const ns = s.metadata.namespace ?? 'default';
    if ((namespace !== undefined && ns !== namespace) || !keep(s)) continue;
    const es = entries.filter((e) => e.namespace === ns && e.name === s.metadata.name);
    const vip = s.spec.clusterIP === 'None' ? 'None' : (serviceVIP(s) ?? es[0]?.vip ?? '<pending>');
    const ports = (s.spec.ports ?? []).map((p) => `${p.port}/${p.protocol ?? 'TCP'}`).join(',') || '<none>';
    const algo = es[0]?.algorithm ?? s.metadata.annotations?.['lb.cni-ts.dev/algorithm'] ?? 'round-robin';
    const healthy = es[0] ? `${es[0].active.length}/${es[0].backends.length}` : '0/0';
    const row = [...(namespace === undefined ? [ns] : []), s.metadata.name, vip, ports, algo, healthy];
    if (wide) {
      const aff = es[0]?.affinityTimeout !== undefined ? `ClientIP ${es[0].affinityTimeout}s` : 'None';
      const hc = es[0]?.health ? `${es[0].health.type} every ${es[0].health.intervalSeconds}s` : '-';
      row.push(aff, hc, es.map((e) => `${e.port}/${e.protocol}: ${backendCell(e, conns)}`).join('; ') || '<none>');
    }
    rows.push(row);
  }
  return { header, rows };
}

/** `cnictl describe service NS/NAME`: the Service, its VIP, ports and every backend's state. */
export async function describeService(store: ObjectStore, serviceCIDR: string[], s: Service): Promise<string> {
  const { entries } = await compiled(store, serviceCIDR);
  const ns = s.metadata.namespace ?? 'default';
  const es = entries.filter((e) => e.namespace === ns && e.name === s.metadata.name);
  const conns = await openConnections(es);
  const lines = [
    `Name:              ${s.metadata.name}`,
    `Namespace:         ${ns}`,
    `Selector:          ${
      s.spec.selector
        ? Object.entries(s.spec.selector)
            .map(([k, v]) => `${k}=${v}`)
            .join(',')
        : '<none> (EndpointSlices)'
    }`,
    `VIP:               ${s.spec.clusterIP === 'None' ? 'None (headless)' : (serviceVIP(s) ?? es[0]?.vip ?? '<pending>')}`,
    `Algorithm:         ${es[0]?.algorithm ?? s.metadata.annotations?.['lb.cni-ts.dev/algorithm'] ?? 'round-robin'}`,
    `Session Affinity:  ${es[0]?.affinityTimeout !== undefined ? `ClientIP (timeout ${es[0].affinityTimeout}s)` : 'None'}`,
    `Health Check:      ${es[0]?.health ? JSON.stringify(es[0].health) : '<none>'}`,
    'Ports:',
  ];
  for (const p of s.spec.ports ?? []) {
    const e = es.find((x) => x.port === p.port && x.protocol === (p.protocol ?? 'TCP').toLowerCase());
    lines.push(
      `  ${p.name ? `${p.name} ` : ''}${p.port}/${p.protocol ?? 'TCP'} -> ${p.targetPort ?? p.port}${e ? `: ${e.active.length} of ${e.backends.length} backends take new connections` : ''}`,
    );
    for (const b of e?.backends ?? []) {
      const state = !b.healthy ? `unhealthy${b.reason ? ` (${b.reason})` : ''}` : e!.active.includes(b) ? 'healthy' : 'drained (weight 0)';
      lines.push(
        `    ${b.key.padEnd(22)} ${state.padEnd(12)} weight ${b.weight}  ${conns ? `${conns.get(`${e!.key}|${b.key}`) ?? 0} open connections  ` : ''}${b.source}${b.node ? ` on ${b.node}` : ''}`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Problems of the Services about to be applied that need the store or the config: a clusterIP
 * outside serviceCIDR, or taken by another Service (in the store or in the same manifest).
 */
export async function serviceApplyProblems(
  objects: CniObject[],
  store: () => Promise<ObjectStore>,
  serviceCIDR: string[],
): Promise<string[]> {
  const mine = objects.filter((o): o is Service => o.kind === 'Service');
  if (!mine.length) return [];
  const problems: string[] = [];
  const ref = (s: Service): string => `${s.metadata.namespace ?? 'default'}/${s.metadata.name}`;
  const owners = new Map<string, string>();
  const vipsOf = (s: Service): string[] =>
    (s.spec.clusterIPs?.length ? s.spec.clusterIPs : s.spec.clusterIP ? [s.spec.clusterIP] : []).filter((v) => v && v !== 'None');
  for (const { object: s } of (await (await store()).list<Service>('Service')).items) for (const v of vipsOf(s)) owners.set(v, ref(s));
  const fromManifest = new Set(mine.map(ref));
  for (const [v, r] of owners) if (fromManifest.has(r)) owners.delete(v); // re-applied: their old VIPs are theirs to change
  const cidrs = serviceCIDR.map(parseCIDR).filter((c) => c !== null);
  for (const s of mine) {
    for (const v of vipsOf(s)) {
      const ip = parseIP(v);
      if (ip && cidrs.length && !cidrs.some((c) => contains(c, ip)))
        problems.push(`Service ${ref(s)}: spec.clusterIP: ${v} is outside serviceCIDR ${serviceCIDR.join(',')}`);
      const owner = owners.get(v);
      if (owner && owner !== ref(s)) problems.push(`Service ${ref(s)}: spec.clusterIP: ${v} is taken by Service ${owner}`);
      else owners.set(v, ref(s));
    }
  }
  return problems;
}
