/**
 * Container names, labels and network aliases of Docker endpoints. libnetwork's remote API
 * tells a driver none of them (CreateEndpoint and Join carry the endpoint ID, addresses,
 * ports and the sandbox path only), so after Join the agent asks dockerd's API which container
 * holds the endpoint and writes what it learns onto the Endpoint object the `endpoint` plugin
 * registered: `docker run --label` become its labels, the container name, short ID and
 * `--network-alias`es its `spec.aliases` (the agent's DNS serves them). Docker records the
 * endpoint on the container only after the start that called Join has progressed, so this
 * polls (bounded) in the background.
 */
import http from 'node:http';
import { validLabelKey } from '../../shared/objects/labelkey.ts';
import type { Endpoint } from '../../shared/objects/types.ts';

const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

export interface ContainerInfo {
  id: string;
  name: string;
  labels: Record<string, string>;
  aliases: string[];
  /** Docker's name of the network */
  network: string;
}

export interface ContainerSummary {
  Id: string;
  Names?: string[];
  Labels?: Record<string, string>;
  NetworkSettings?: { Networks?: Record<string, { EndpointID?: string; NetworkID?: string; Aliases?: string[] | null }> };
}

/** GET a JSON document from dockerd ("unix:///run/docker.sock" or "http://host:port"). */
export function dockerGet(host: string, p: string, timeoutMs = 5000): Promise<unknown> {
  const opts: http.RequestOptions = host.startsWith('unix://')
    ? { socketPath: host.slice('unix://'.length), path: p }
    : { host: new URL(host).hostname, port: new URL(host).port, path: p };
  return new Promise((resolve, reject) => {
    const req = http.get({ ...opts, timeout: timeoutMs, headers: { Host: 'docker' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        if ((res.statusCode ?? 500) >= 300) return reject(new Error(`dockerd ${p}: HTTP ${res.statusCode}: ${body.trim().slice(0, 200)}`));
        try {
          resolve(JSON.parse(body));
        } catch (e) {
          reject(e as Error);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`dockerd ${p}: timed out`)));
    req.on('error', reject);
  });
}

/** The container holding `endpointId` on `networkId`, from a container list (pure). */
export function findContainer(list: ContainerSummary[], networkId: string, endpointId: string): ContainerInfo | undefined {
  for (const c of list) {
    for (const [netName, n] of Object.entries(c.NetworkSettings?.Networks ?? {})) {
      if (n.EndpointID !== endpointId || (n.NetworkID && n.NetworkID !== networkId)) continue;
      return {
        id: c.Id,
        name: (c.Names?.[0] ?? '').replace(/^\//, ''),
        labels: c.Labels ?? {},
        aliases: n.Aliases ?? [],
        network: netName,
      };
    }
  }
  return undefined;
}

/**
 * The Endpoint with what Docker says of its container (pure): valid labels added (the
 * network's `label.*` options stay), aliases = container name, network aliases, short ID,
 * an annotation naming the container. Labels that are not Kubernetes label syntax are skipped.
 */
export function withContainer(e: Endpoint, c: ContainerInfo): { endpoint: Endpoint; skipped: string[] } {
  const labels = { ...(e.metadata.labels ?? {}) };
  const skipped: string[] = [];
  for (const [k, v] of Object.entries(c.labels)) {
    if (validLabelKey(k) && LABEL_VALUE.test(v) && v.length <= 63) labels[k] = v;
    else skipped.push(k);
  }
  const aliases = [
    ...new Set([...(e.spec.aliases ?? []), c.name, ...c.aliases, c.id.slice(0, 12)].filter((a) => a && /^[A-Za-z0-9_.-]+$/.test(a))),
  ];
  const annotations = { ...(e.metadata.annotations ?? {}), 'cni-ts.dev/docker-container': c.name, 'cni-ts.dev/docker-network': c.network };
  const metadata = { ...e.metadata, annotations, ...(Object.keys(labels).length ? { labels } : {}) };
  return { endpoint: { ...e, metadata, spec: { ...e.spec, aliases } }, skipped };
}

/** Poll dockerd until it names the container of the endpoint (or give up after `withinMs`). */
export async function lookupContainer(
  host: string,
  networkId: string,
  endpointId: string,
  withinMs = 60_000,
  everyMs = 200,
): Promise<ContainerInfo | undefined> {
  const deadline = Date.now() + withinMs;
  const filters = encodeURIComponent(JSON.stringify({ network: [networkId] }));
  let lastErr: unknown;
  for (;;) {
    try {
      const list = (await dockerGet(host, `/containers/json?all=1&filters=${filters}`)) as ContainerSummary[];
      const c = findContainer(Array.isArray(list) ? list : [], networkId, endpointId);
      if (c) {
        // the list leaves network aliases out: inspect has them (--network-alias, the short ID)
        const full = (await dockerGet(host, `/containers/${encodeURIComponent(c.id)}/json`)) as {
          NetworkSettings?: { Networks?: Record<string, { Aliases?: string[] | null }> };
        };
        const aliases = full.NetworkSettings?.Networks?.[c.network]?.Aliases;
        return aliases ? { ...c, aliases } : c;
      }
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > deadline) {
      if (lastErr) throw lastErr;
      return undefined;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
