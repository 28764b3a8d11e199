/**
 * The agent's API: HTTP on `listen` (`/healthz`, `/api/v1/status`, `/api/v1/reconcilers`,
 * `POST /api/v1/resync`) and JSON lines on the unix socket `socket` (shared/agentapi.ts).
 */
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import type { AgentRequest, AgentResponse, AgentStatus, DnsLookupReport, DnsRecordsReport, ReconcilerStatus } from '../shared/agentapi.ts';
import type { Logger } from '../shared/cni/log.ts';
import type { Alert, MetricsSnapshot } from '../shared/monitoring.ts';

/**
 * An extra HTTP route (`"GET /metrics"`, `"GET /"`): features add theirs through
 * `ApiHandlers.routes` instead of editing the switch below.
 */
export type HttpRoute = (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => void | Promise<void>;

export interface ApiHandlers {
  status(): AgentStatus;
  /** run reconcilers now (all when name is undefined) and wait for their pass */
  resync(name?: string): Promise<ReconcilerStatus[]>;
  /** the DNS reconciler's records and lookups (absent: DNS is off) */
  dnsRecords?(): DnsRecordsReport;
  dnsLookup?(name: string, type?: string, network?: string): DnsLookupReport;
  /** the metrics sampler's last sample (absent: metrics are off) */
  metrics?(namespace?: string): MetricsSnapshot;
  /** the alert engine's alerts (absent: alerts are off) */
  alerts?(): Alert[];
  /** extra HTTP routes by "METHOD /path" */
  routes?: Map<string, HttpRoute>;
}

const DNS_OFF = 'DNS is not served by this agent (dns.enabled is false in its config)';

export async function answer(h: ApiHandlers, req: AgentRequest): Promise<AgentResponse> {
  try {
    switch (req.type) {
      case 'status':
        return { ok: true, type: 'status', status: h.status() };
      case 'resync':
        return { ok: true, type: 'resync', reconcilers: await h.resync(req.name) };
      case 'dns-records':
        if (!h.dnsRecords) return { ok: false, error: DNS_OFF };
        return { ok: true, type: 'dns-records', dns: h.dnsRecords() };
      case 'dns-lookup':
        if (!h.dnsLookup) return { ok: false, error: DNS_OFF };
        if (typeof req.name !== 'string' || !req.name) return { ok: false, error: 'dns-lookup needs a name' };
        return { ok: true, type: 'dns-lookup', lookup: h.dnsLookup(req.name, req.qtype, req.network) };
      case 'metrics':
        if (!h.metrics) return { ok: false, error: 'metrics are not sampled by this agent' };
        return { ok: true, type: 'metrics', metrics: h.metrics(req.namespace) };
      case 'alerts':
        if (!h.alerts) return { ok: false, error: 'alerts are not evaluated by this agent' };
        return { ok: true, type: 'alerts', alerts: h.alerts() };
      default:
        return { ok: false, error: `unknown request type ${JSON.stringify((req as { type?: unknown }).type)}` };
    }
  } catch (e) {
    return { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
}

/** host:port → listen arguments ("[::1]:9464" → host "::1"). */
export function parseListen(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  return { host: listen.slice(0, i).replace(/^\[(.*)\]$/, '$1'), port: Number(listen.slice(i + 1)) };
}

export function sendJson(res: http.ServerResponse, code: number, body: unknown): void {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export async function startHttp(listen: string, h: ApiHandlers, log: Logger): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://agent');
    const route = `${req.method ?? 'GET'} ${url.pathname.replace(/\/+$/, '') || '/'}`;
    void (async () => {
      const extra = h.routes?.get(route);
      if (extra) {
        await extra(req, res, url);
        return;
      }
      switch (route) {
        case 'GET /healthz': {
          // Alive and serving: 200 with each reconciler's state (a failing reconciler is
          // reported, not fatal: restarting the agent would not bring a store back).
          const s = h.status();
          sendJson(res, 200, { ok: s.reconcilers.every((r) => r.state !== 'failing'), reconcilers: s.reconcilers });
          return;
        }
        case 'GET /api/v1/status':
          sendJson(res, 200, h.status());
          return;
        case 'GET /api/v1/reconcilers':
          sendJson(res, 200, h.status().reconcilers);
          return;
        case 'POST /api/v1/resync': {
          const r = await answer(h, { type: 'resync', name: url.searchParams.get('name') ?? undefined });
          sendJson(res, r.ok ? 200 : 404, r);
          return;
        }
        default:
          sendJson(res, 404, {
            error: `no route ${route}`,
            routes: [
              'GET /healthz',
              'GET /api/v1/status',
              'GET /api/v1/reconcilers',
              'POST /api/v1/resync[?name=]',
              ...(h.routes?.keys() ?? []),
            ],
          });
      }
    })().catch((e: unknown) => sendJson(res, 500, { error: String(e) }));
  });
  const { host, port } = parseListen(listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  log.info(`HTTP on ${listen}`);
  return server;
}

/** JSON lines on a unix socket (mode 0600: root's cnictl); a stale socket file is replaced. */
export async function startSocket(file: string, h: ApiHandlers, log: Logger): Promise<net.Server> {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  rmSync(file, { force: true });
  const server = net.createServer((conn) => {
    let buf = '';
    conn.setEncoding('utf8');
    conn.on('data', (d: string) => {
      buf += d;
      if (buf.length > 1 << 20) {
        conn.end(`${JSON.stringify({ ok: false, error: 'request too large' })}\n`);
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        let req: AgentRequest;
        try {
          req = JSON.parse(line) as AgentRequest;
        } catch (e) {
          conn.write(`${JSON.stringify({ ok: false, error: `not JSON: ${(e as Error).message}` })}\n`);
          continue;
        }
        void answer(h, req).then((r) => conn.write(`${JSON.stringify(r)}\n`));
      }
    });
    conn.on('error', () => undefined);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(file, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(file, 0o600);
  log.info(`API socket ${file}`);
  return server;
}
