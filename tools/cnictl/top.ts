/**
 * `cnictl top [-n NS] [-o json] [--watch]`: every endpoint's live figures on this node, as the
 * agent's metrics sampler last saw them (the socket's `metrics` request): receive/transmit
 * rates in bytes and packets, errors and drops (counters since the interface was made, and the
 * error ratio of the last window), open connections, bandwidth utilization and latency.
 * `--watch` redraws at every sample (one JSON document per line with `-o json`) until Ctrl-C.
 */
import { parseArgs } from 'node:util';
import { askAgent, DEFAULT_AGENT_SOCKET, type AgentResponse } from '../../shared/agentapi.ts';
import type { EndpointFigures, MetricsSnapshot } from '../../shared/monitoring.ts';
import { CliError, table, UsageError, type Ctx } from './common.ts';

export const usage = `usage: cnictl top [-n NAMESPACE] [-o json] [--watch] [--interval SECONDS]
  every endpoint's live traffic on this node, from the agent's last metrics sample:
  RX/TX (bytes/s), RX-PPS/TX-PPS (packets/s), ERRORS and DROPS (counter totals, both directions),
  ERR% (errors + drops over packets in the last window), CONNS (open conntrack entries),
  UTIL (rate over the endpoint's bandwidth limit), LATENCY (round-trip time)
  -n NAMESPACE   only that namespace (default: every namespace)
  -o json        the agent's sample as JSON (with --watch: one line per sample)
  --watch, -w    redraw at every sample until interrupted
  --interval S   how often --watch asks (default: the agent's sampling interval)
`;

/** 1234567 → "1.2M" with `prefixes` (decimal: network rates are given that way); "-" for not a number. */
function scaled(v: number | undefined, prefixes: string[]): string {
  if (v === undefined || !Number.isFinite(v)) return '-';
  let i = 0;
  let x = v;
  while (Math.abs(x) >= 1000 && i < prefixes.length - 1) {
    x /= 1000;
    i++;
  }
  const n = i === 0 ? (Number.isInteger(x) || x >= 10 ? String(Math.round(x)) : x.toFixed(1)) : x >= 100 ? x.toFixed(0) : x.toFixed(1);
  return `${n}${prefixes[i]}`;
}

/** Bytes: 1234567 → "1.2MB". */
export const human = (v: number | undefined): string => scaled(v, ['B', 'KB', 'MB', 'GB', 'TB']);
/** A count: 1234 → "1.2k". */
export const count = (v: number | undefined): string => scaled(v, ['', 'k', 'M', 'G', 'T']);

/** 0.0123 → "1.2%", "-" when absent. */
export function percent(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return '-';
  return `${(v * 100).toFixed(v < 0.1 ? 2 : 1)}%`;
}

/** Seconds → "1.2ms" / "340µs" / "1.5s"; "-" when unknown. */
export function duration(s: number | undefined): string {
  if (s === undefined || !Number.isFinite(s)) return '-';
  if (s < 0.001) return `${Math.round(s * 1e6)}µs`;
  if (s < 1) return `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)}ms`;
  return `${s.toFixed(2)}s`;
}

/** Busiest first (rx + tx bytes/s), then by namespace/pod. */
function order(a: EndpointFigures, b: EndpointFigures): number {
  const ra = a.rates.rxBytes + a.rates.txBytes;
  const rb = b.rates.rxBytes + b.rates.txBytes;
  return rb - ra || a.namespace.localeCompare(b.namespace) || a.pod.localeCompare(b.pod) || a.interface.localeCompare(b.interface);
}

/** The table `cnictl top` prints for one sample (a NAMESPACE column unless `namespace` is given). */
export function topTable(m: MetricsSnapshot, namespace?: string): string {
  const eps = m.endpoints.filter((e) => namespace === undefined || e.namespace === namespace).sort(order);
  const header = [
    ...(namespace === undefined ? ['NAMESPACE'] : []),
    'POD',
    'NETWORK',
    'IF',
    'RX/S',
    'TX/S',
    'RX-PPS',
    'TX-PPS',
    'ERRORS',
    'DROPS',
    'ERR%',
    'CONNS',
    'UTIL',
    'LATENCY',
  ];
  const rows = eps.map((e) => [
    ...(namespace === undefined ? [e.namespace] : []),
    e.pod,
    e.network,
    e.interface,
    human(e.rates.rxBytes),
    human(e.rates.txBytes),
    count(e.rates.rxPackets),
    count(e.rates.txPackets),
    count(e.counters.rxErrors + e.counters.txErrors),
    count(e.counters.rxDropped + e.counters.txDropped),
    percent(e.errorRatio),
    String(e.connections),
    e.utilization === undefined ? '-' : percent(e.utilization),
    duration(e.latencySeconds),
  ]);
  const total = eps.reduce((t, e) => ({ rx: t.rx + e.rates.rxBytes, tx: t.tx + e.rates.txBytes }), { rx: 0, tx: 0 });
  const head = `node ${m.node}, sample at ${m.at} (every ${m.intervalSeconds}s): ${eps.length} endpoint${eps.length === 1 ? '' : 's'}, rx ${human(total.rx)}/s, tx ${human(total.tx)}/s\n`;
  return eps.length ? head + table(header, rows) : `${head}no endpoints${namespace === undefined ? '' : ` in namespace ${namespace}`}\n`;
}

async function sample(ctx: Ctx, namespace: string | undefined): Promise<MetricsSnapshot> {
  let socket = DEFAULT_AGENT_SOCKET;
  try {
    socket = ctx.config().socket;
  } catch {
    // no readable agent config: the default socket
  }
  let r: AgentResponse;
  try {
    r = await askAgent(socket, { type: 'metrics', namespace });
  } catch (e) {
    throw new CliError(`cannot reach the agent on ${socket}: ${(e as Error).message}`);
  }
  if (!r.ok) throw new CliError(`agent: ${r.error}`);
  if (r.type !== 'metrics') throw new CliError('agent: unexpected answer');
  return r.metrics;
}

export async function run(ctx: Ctx, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      namespace: { type: 'string', short: 'n' },
      output: { type: 'string', short: 'o' },
      watch: { type: 'boolean', short: 'w' },
      interval: { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length) throw new UsageError(`unexpected ${JSON.stringify(positionals[0])}`);
  if (values.output !== undefined && values.output !== 'json') throw new UsageError(`-o ${values.output}: only json`);
  const interval = values.interval === undefined ? undefined : Number(values.interval);
  if (interval !== undefined && !(interval > 0)) throw new UsageError(`--interval ${values.interval}: expected seconds > 0`);
  const ns = values.namespace;
  const print = (m: MetricsSnapshot, clear: boolean): void => {
    if (values.output === 'json') {
      const filtered = { ...m, endpoints: m.endpoints.filter((e) => ns === undefined || e.namespace === ns) };
      ctx.out(values.watch ? `${JSON.stringify(filtered)}\n` : `${JSON.stringify(filtered, null, 2)}\n`);
    } else ctx.out(`${clear ? '\x1b[H\x1b[2J' : ''}${topTable(m, ns)}`);
  };
  let m = await sample(ctx, ns);
  print(m, Boolean(values.watch && process.stdout.isTTY));
  if (!values.watch) return 0;
  let stop = false;
  const onSignal = (): void => void (stop = true);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    let last = m.at;
    while (!stop) {
      const waitMs = (interval ?? Math.max(1, m.intervalSeconds)) * 1000;
      for (let t = 0; t < waitMs && !stop; t += 100) await new Promise((r) => setTimeout(r, Math.min(100, waitMs - t)));
      if (stop) break;
      m = await sample(ctx, ns);
      // only a new sample is printed (asking faster than the agent samples repeats nothing)
      if (m.at === last) continue;
      last = m.at;
      print(m, process.stdout.isTTY);
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return 0;
}
