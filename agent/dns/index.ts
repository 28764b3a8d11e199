/**
 * The integration point for the agent:
 *
 *   const dns = await startDns(config, () => ({ services, endpointSlices, endpoints, namespaces }));
 *   store.watch(() => dns.scheduleRefresh(), ...);   // any change of those kinds
 *   ...
 *   await dns.close();
 *
 * `getObjects` returns the current objects (from the agent's watch cache); every refresh
 * rebuilds the zone (pure, shared/dns/records.ts), swaps it into the server, and reconciles
 * the listen addresses (the gateway of every network with an endpoint on this node, plus
 * `dns.listen`). `unhealthy` (the services issue's health checks) hides headless backends.
 */
import { buildZone, lookup, type UnhealthyInput, type ZoneObjects } from '../../shared/dns/records.ts';
import type { Endpoint, EndpointSlice, Namespace, Service } from '../../shared/objects/types.ts';
import { DnsServer, type ListenSpec } from './server.ts';
import { resolveUpstreams, validateDnsConfig, type DnsAgentConfig } from './config.ts';
import { parseHostPort } from './upstream.ts';

export interface DnsHooks {
  unhealthy?: () => UnhealthyInput | undefined;
  log?: (msg: string) => void;
  /** store revision the objects were read at (SOA serial) */
  serial?: () => number | undefined;
}

export interface DnsHandle {
  server: DnsServer;
  /** rebuild now; resolves when the new zone is served and listeners are reconciled */
  refresh(): Promise<void>;
  /** coalesce a burst of store events into one refresh (within 50 ms) */
  scheduleRefresh(): void;
  /** what the server would answer (for `cnictl dns lookup`) */
  lookup(name: string, type?: string, network?: string): ReturnType<typeof lookup>;
  close(): Promise<void>;
}

/** The addresses to serve on for these objects: gateways of this node's endpoints + dns.listen. */
export function listenSpecs(cfg: DnsAgentConfig, objects: ZoneObjects): ListenSpec[] {
  const d = cfg.dns ?? {};
  const port = d.port ?? 53;
  const byAddr = new Map<string, ListenSpec>();
  if (d.listenOnGateways !== false) {
    for (const ep of objects.endpoints ?? []) {
      if (cfg.node && ep.spec.node && ep.spec.node !== cfg.node) continue;
      for (const g of ep.spec.gateways ?? []) {
        const address = g.replace(/\/\d+$/, '');
        if (!parseHostPort(address)) continue;
        const key = `${address}#${port}`;
        const s = byAddr.get(key) ?? { address, port, networks: [] };
        if (s.networks && !s.networks.includes(ep.spec.network)) s.networks.push(ep.spec.network);
        byAddr.set(key, s);
      }
    }
  }
  for (const l of d.listen ?? []) {
    const u = parseHostPort(l, port);
    if (!u) continue;
    // a configured address sees every network's names
    byAddr.set(`${u.host}#${u.port}`, { address: u.host, port: u.port });
  }
  return [...byAddr.values()].map((s) => (s.networks ? { ...s, networks: [...s.networks].sort() } : s));
}

export async function startDns(
  config: DnsAgentConfig,
  getObjects: () => ZoneObjects | Promise<ZoneObjects>,
  hooks: DnsHooks = {},
): Promise<DnsHandle> {
  validateDnsConfig(config);
  const d = config.dns ?? {};
  const log = hooks.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  const server = new DnsServer({
    cacheSize: d.cacheSize,
    maxCacheTtl: d.maxCacheTtl,
    upstreamTimeoutMs: d.upstreamTimeoutMs,
    rateLimit: d.rateLimit,
    log,
  });
  let running: Promise<void> | undefined;
  let again = false;
  const build = async (): Promise<void> => {
    const objects = await getObjects();
    const zone = buildZone(objects, {
      clusterDomain: config.clusterDomain,
      ttl: d.ttl,
      networkDomains: d.networkDomains,
      defaultNetworkDomain: d.networkDomain,
      serviceCIDRs: config.serviceCIDR,
      unhealthy: hooks.unhealthy?.(),
      serial: hooks.serial?.(),
    });
    server.setZone(zone);
    const specs = listenSpecs(config, objects);
    server.setUpstreams(
      resolveUpstreams(
        config,
        specs.map((s) => s.address),
      ),
    );
    await server.setListeners(specs);
  };
  const refresh = async (): Promise<void> => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        try {
          await build();
        } catch (e) {
          log(`dns: refresh failed: ${(e as Error).message}`);
        }
      } while (again);
    })().finally(() => {
      running = undefined;
    });
    return running;
  };
  let timer: NodeJS.Timeout | undefined;
  await refresh();
  return {
    server,
    refresh,
    scheduleRefresh() {
      if (timer) return;
      timer = setTimeout(() => {
        timer = undefined;
        void refresh();
      }, 50);
    },
    lookup(name, type = 'A', network) {
      const z = server.getZone();
      return z ? lookup(z, name, type, network ? { networks: [network] } : {}) : null;
    },
    async close() {
      if (timer) clearTimeout(timer);
      await running;
      await server.close();
    },
  };
}

/** Objects for the zone from a JSON array (or {items: [...]}) of store objects, by kind. */
export function objectsFromJson(text: string): ZoneObjects {
  const raw = JSON.parse(text) as unknown;
  const items = (Array.isArray(raw) ? raw : ((raw as { items?: unknown[] }).items ?? [])) as { kind?: string }[];
  const out: Required<ZoneObjects> = { services: [], endpointSlices: [], endpoints: [], namespaces: [] };
  for (const o of items) {
    if (o.kind === 'Service') out.services.push(o as Service);
    else if (o.kind === 'EndpointSlice') out.endpointSlices.push(o as EndpointSlice);
    else if (o.kind === 'Endpoint') out.endpoints.push(o as Endpoint);
    else if (o.kind === 'Namespace') out.namespaces.push(o as Namespace);
  }
  return out;
}
