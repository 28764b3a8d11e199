/**
 * The node agent's API messages: its unix socket (`socket` in the agent config, default
 * /run/cni-ts/agent.sock) carries one JSON request per line and answers one JSON line each;
 * HTTP `/api/v1/...` serves the same answers. Kept small; each issue adds its message types.
 */
import net from 'node:net';
import type { Alert, MetricsSnapshot } from './monitoring.ts';

export interface ReconcilerStatus {
  name: string;
  /** starting: no pass finished yet; ok: the last pass succeeded; failing: it failed (retrying) */
  state: 'starting' | 'ok' | 'failing' | 'stopped';
  passes: number;
  failures: number;
  consecutiveFailures: number;
  lastPassAt?: string;
  lastSuccessAt?: string;
  lastDurationMs?: number;
  lastSummary?: string;
  lastError?: string;
  lastErrorAt?: string;
}

export interface AgentStatus {
  node: string;
  pid: number;
  startedAt: string;
  store: string;
  /** process memory in MiB (resident; V8 heap in use) */
  memory: { rss: number; heapUsed: number };
  reconcilers: ReconcilerStatus[];
}

export type AgentRequest =
  /** the agent and its reconcilers */
  | { type: 'status' }
  /** run a reconciler now (all when `name` is omitted); answers when the pass has finished */
  | { type: 'resync'; name?: string }
  /** every record the agent's DNS server serves (cnictl get dns) */
  | { type: 'dns-records' }
  /** what the DNS server answers for `name` / `qtype` (default A), as a client on `network`'s gateway sees it (default: every network) */
  | { type: 'dns-lookup'; name: string; qtype?: string; network?: string }
  /** the last metrics sample of every endpoint on this node (cnictl top) */
  | { type: 'metrics'; namespace?: string }
  /** pending and firing alerts, and those resolved recently (cnictl alerts) */
  | { type: 'alerts' };

/** One DNS record; `network`: a container name only clients of that network see. */
export interface DnsRecord {
  name: string;
  type: string;
  ttl: number;
  /** presentation form: an address, a name with its final dot, SRV "priority weight port target", ... */
  data: string;
  network?: string;
}

export interface DnsRecordsReport {
  domain: string;
  /** the SOA serial: the store revision the zone was built at */
  serial: number;
  listeners: { address: string; port: number; networks?: string[] }[];
  records: DnsRecord[];
}

export interface DnsLookupReport {
  name: string;
  type: string;
  /** true: not one of our names; the agent forwards it upstream */
  forwarded: boolean;
  rcode?: 'NOERROR' | 'NXDOMAIN';
  answers?: DnsRecord[];
  authority?: DnsRecord[];
  additionals?: DnsRecord[];
}

export type AgentResponse =
  | { ok: true; type: 'status'; status: AgentStatus }
  | { ok: true; type: 'resync'; reconcilers: ReconcilerStatus[] }
  | { ok: true; type: 'dns-records'; dns: DnsRecordsReport }
  | { ok: true; type: 'dns-lookup'; lookup: DnsLookupReport }
  | { ok: true; type: 'metrics'; metrics: MetricsSnapshot }
  | { ok: true; type: 'alerts'; alerts: Alert[] }
  | { ok: false; error: string };

/** Where the agent listens for cnictl when the config does not say. */
export const DEFAULT_AGENT_SOCKET = '/run/cni-ts/agent.sock';

/** One request to an agent's socket (cnictl, tests). */
export function askAgent(file: string, req: AgentRequest, timeoutMs = 10_000): Promise<AgentResponse> {
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(file);
    let buf = '';
    const t = setTimeout(() => {
      conn.destroy();
      reject(new Error(`agent socket ${file}: no answer in ${timeoutMs} ms`));
    }, timeoutMs);
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(`${JSON.stringify(req)}\n`));
    conn.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(t);
      conn.end();
      try {
        resolve(JSON.parse(buf.slice(0, nl)) as AgentResponse);
      } catch (e) {
        reject(e as Error);
      }
    });
    conn.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}
