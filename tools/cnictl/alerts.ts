/**
 * `cnictl alerts [-n NAMESPACE] [--state pending|firing|resolved] [-o wide|json|yaml]`: the node
 * agent's alerts (pending, firing, and resolved recently), asked over its unix socket (`socket`
 * in the agent config). Firing first, critical first, as the agent orders them.
 */
import { parseArgs } from 'node:util';
import { askAgent, DEFAULT_AGENT_SOCKET, type AgentResponse } from '../../shared/agentapi.ts';
import { formatMetricValue, type Alert } from '../../shared/monitoring.ts';
import { CliError, table, UsageError, type Ctx } from './common.ts';

export const usage = `usage: cnictl alerts [-n NAMESPACE] [--state pending|firing|resolved] [-o wide|json|yaml]
  the node agent's alerts: pending, firing, and those resolved in the last 15 minutes
  (alerts.resolvedRetention); columns ALERT SEVERITY STATE NAMESPACE POD NETWORK VALUE SINCE
  -n NAMESPACE    only alerts of that namespace's endpoints
  --state STATE   only alerts in that state
  -o wide         also the interface, the threshold and the description
  -o json|yaml    the alerts as the agent reports them (shared/monitoring.ts Alert)
`;

/** "45s", "3m20s", "2h5m", "3d4h": how long ago `iso` was. */
export function since(iso: string | undefined, now = Date.now()): string {
  if (!iso) return '';
  let s = Math.max(0, Math.floor((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s`;
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  s %= 60;
  if (d) return `${d}d${h}h`;
  if (h) return `${h}h${m}m`;
  return `${m}m${s ? `${s}s` : ''}`;
}

const value = (a: Alert): string => (a.metric ? formatMetricValue(a.metric, a.value) : String(Number(a.value.toPrecision(4))));

export function alertRows(alerts: Alert[], wide: boolean, now = Date.now()): string {
  const rows = alerts.map((a) => {
    // firing: since it fired; pending: since the condition holds; resolved: since it resolved
    const at = a.state === 'firing' ? a.firedAt : a.state === 'resolved' ? a.resolvedAt : a.activeAt;
    const base = [
      a.name,
      a.severity,
      a.state,
      a.labels.namespace ?? '',
      a.labels.pod ?? '',
      a.labels.network ?? '',
      value(a),
      since(at, now),
    ];
    return wide
      ? [
          ...base,
          a.labels.interface ?? '',
          a.metric && a.threshold !== undefined ? formatMetricValue(a.metric, a.threshold) : '',
          a.description,
        ]
      : base;
  });
  return table(
    [
      'ALERT',
      'SEVERITY',
      'STATE',
      'NAMESPACE',
      'POD',
      'NETWORK',
      'VALUE',
      'SINCE',
      ...(wide ? ['INTERFACE', 'THRESHOLD', 'DESCRIPTION'] : []),
    ],
    rows,
  );
}

export async function run(ctx: Ctx, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { output: { type: 'string', short: 'o' }, namespace: { type: 'string', short: 'n' }, state: { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const o = values.output;
  if (o !== undefined && o !== 'wide' && o !== 'json' && o !== 'yaml') throw new UsageError(`-o ${o}: expected wide, json or yaml`);
  if (values.state !== undefined && !['pending', 'firing', 'resolved'].includes(values.state))
    throw new UsageError(`--state ${values.state}: expected pending, firing or resolved`);
  let socket = DEFAULT_AGENT_SOCKET;
  try {
    socket = ctx.config().socket;
  } catch {
    // no readable agent config: the default socket
  }
  let r: AgentResponse;
  try {
    r = await askAgent(socket, { type: 'alerts' });
  } catch (e) {
    throw new CliError(`cannot reach the agent on ${socket}: ${(e as Error).message}`);
  }
  if (!r.ok) throw new CliError(`agent: ${r.error}`);
  if (r.type !== 'alerts') throw new CliError('agent: unexpected answer');
  const alerts = r.alerts.filter(
    (a) => (!values.namespace || a.labels.namespace === values.namespace) && (!values.state || a.state === values.state),
  );
  if (o === 'json') ctx.out(`${JSON.stringify(alerts, null, 2)}\n`);
  else if (o === 'yaml') ctx.out((await import('yaml')).stringify(alerts));
  else if (!alerts.length)
    ctx.err(`no alerts${values.namespace ? ` in namespace ${values.namespace}` : ''}${values.state ? ` in state ${values.state}` : ''}\n`);
  else ctx.out(alertRows(alerts, o === 'wide'));
  return 0;
}
