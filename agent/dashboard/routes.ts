/**
 * The dashboard's HTTP routes (added to the agent's API through `ApiHandlers.routes`):
 *   GET /                       the page (agent/dashboard/assets/index.html)
 *   GET /assets/<file>          its script and style, and uPlot's (embedded in the executable:
 *                               `?raw` imports, esbuild's text loader; nothing read from disk)
 *   GET /api/v1/history         the last 15 minutes of every endpoint's figures (history.ts);
 *                               `?namespace=NS`, `?since=UNIX-SECONDS` (only newer samples)
 *   GET /api/v1/services        service ports and their backends' health (services reconciler)
 *   GET /api/v1/policy-drops    the policy table's drop counters (policy-drops.ts)
 * Assets are answered gzipped when the browser accepts it (compressed once, on first request).
 */
import { gzipSync } from 'node:zlib';
import type http from 'node:http';
import { sendJson, type HttpRoute } from '../api.ts';
import type { ServicePortEntry } from '../../shared/services/compile.ts';
import type { PolicySettings } from '../../shared/policysync.ts';
import type { History } from './history.ts';
import { PolicyDropsReader } from './policy-drops.ts';
import indexHtml from './assets/index.html?raw';
import dashboardJs from './assets/dashboard.js?raw';
import dashboardCss from './assets/dashboard.css?raw';
import uplotJs from 'uplot/dist/uPlot.iife.min.js?raw';
import uplotCss from 'uplot/dist/uPlot.min.css?raw';

/** One service port as the dashboard shows it. */
export interface ServiceReport {
  namespace: string;
  name: string;
  portName: string;
  vip: string;
  port: number;
  protocol: 'tcp' | 'udp';
  algorithm: string;
  /** backends new connections may go to */
  healthy: number;
  backends: Array<{
    address: string;
    port: number;
    weight: number;
    node?: string;
    healthy: boolean;
    active: boolean;
    reason?: string;
    connections?: number;
  }>;
}

/** The services reconciler's last pass as `GET /api/v1/services` answers it. */
export function servicesReport(snap: { entries: ServicePortEntry[]; connections: Record<string, number> }): { services: ServiceReport[] } {
  return {
    services: snap.entries.map((e) => ({
      namespace: e.namespace,
      name: e.name,
      portName: e.portName,
      vip: e.vip,
      port: e.port,
      protocol: e.protocol,
      algorithm: e.algorithm,
      healthy: e.active.length,
      backends: e.backends.map((b) => ({
        address: b.address,
        port: b.port,
        weight: b.weight,
        node: b.node,
        healthy: b.healthy,
        active: e.active.some((a) => a.key === b.key),
        reason: b.reason,
        // counted for least-connections services only (agent/health/connections.ts)
        connections: snap.connections[`${e.key}|${b.key}`],
      })),
    })),
  };
}

/** Endpoints serialized between two yields of the event loop. */
const HISTORY_BATCH = 25;

interface Asset {
  type: string;
  body: Buffer;
  gz?: Buffer;
}

/** The embedded files by URL path. */
export const ASSETS: Record<string, { type: string; text: string }> = {
  '/': { type: 'text/html; charset=utf-8', text: indexHtml },
  '/assets/dashboard.js': { type: 'text/javascript; charset=utf-8', text: dashboardJs },
  '/assets/dashboard.css': { type: 'text/css; charset=utf-8', text: dashboardCss },
  '/assets/uPlot.min.js': { type: 'text/javascript; charset=utf-8', text: uplotJs },
  '/assets/uPlot.min.css': { type: 'text/css; charset=utf-8', text: uplotCss },
};

export interface DashboardSources {
  history: History;
  /** the services reconciler's snapshot (absent: no services) */
  services?: () => { entries: ServicePortEntry[]; connections: Record<string, number> };
  /** the policy table whose drop counters to show (absent: no policy drops) */
  policy?: PolicySettings;
}

function serveAsset(a: Asset): HttpRoute {
  return (req: http.IncomingMessage, res: http.ServerResponse) => {
    const gzip = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
    if (gzip) a.gz ??= gzipSync(a.body);
    const body = gzip ? a.gz! : a.body;
    res.writeHead(200, {
      'content-type': a.type,
      'content-length': body.length,
      'cache-control': 'no-cache',
      'x-content-type-options': 'nosniff',
      ...(gzip ? { 'content-encoding': 'gzip', vary: 'accept-encoding' } : {}),
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
}

/** The routes, keyed as `ApiHandlers.routes` wants them ("GET /path"). */
export function dashboardRoutes(src: DashboardSources): Map<string, HttpRoute> {
  const routes = new Map<string, HttpRoute>();
  for (const [p, a] of Object.entries(ASSETS)) {
    const route = serveAsset({ type: a.type, body: Buffer.from(a.text) });
    routes.set(`GET ${p}`, route);
    routes.set(`HEAD ${p}`, route);
  }
  routes.set('GET /api/v1/history', async (_req, res, url) => {
    const since = url.searchParams.get('since');
    const sinceMs = since === null ? undefined : Number(since) * 1000;
    if (sinceMs !== undefined && !Number.isFinite(sinceMs)) {
      sendJson(res, 400, { error: `since=${since}: expected Unix seconds` });
      return;
    }
    // compact (the history is mostly arrays of numbers, which indented JSON puts one per line),
    // and in batches of endpoints with the event loop yielded between them: the whole history
    // of a big node is megabytes, and DNS answers, probes and samples must not wait for it
    const { head, endpoints } = src.history.stream({ namespace: url.searchParams.get('namespace') || undefined, sinceMs });
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    let out = `${JSON.stringify(head).slice(0, -1)},"endpoints":[`;
    let n = 0;
    for (const e of endpoints) {
      out += `${n ? ',' : ''}${JSON.stringify(e)}`;
      if (++n % HISTORY_BATCH === 0) {
        res.write(out);
        out = '';
        await new Promise((r) => setImmediate(r));
        if (res.destroyed) return;
      }
    }
    res.end(`${out}]}`);
  });
  routes.set('GET /api/v1/services', (_req, res) => {
    sendJson(res, 200, src.services ? servicesReport(src.services()) : { services: [] });
  });
  if (src.policy) {
    const reader = new PolicyDropsReader(src.policy);
    routes.set('GET /api/v1/policy-drops', async (_req, res) => sendJson(res, 200, await reader.read()));
  }
  return routes;
}
