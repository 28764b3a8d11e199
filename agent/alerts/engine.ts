/**
 * The alert rules' state machine (issue 16), pure but for the clock the caller passes in:
 * rules × samples → one alert instance per (rule, series labels), in states
 *
 *   (none) ──condition true──► pending ──held for `for`──► firing ──condition false──► resolved
 *               ▲                 │ condition false: dropped (never notified)     │
 *               └─────────────────┴──────────── condition true again: a new instance ◄┘
 *
 * as Prometheus does: a pending alert whose condition stops holding is forgotten (it never
 * fired); a firing alert whose condition stops holding, or whose series disappears (the
 * endpoint is gone), is resolved. Resolved instances are listed for `resolvedRetention`
 * (default 15 min, Prometheus' resolved-alert retention) and then forgotten. A `for` of "0s"
 * fires on the first evaluation that sees the condition.
 *
 * Also here: the `alerts` section of the agent config (`parseAlertsConfig`), validated with
 * AgentConfigError (code 7) naming the field, and the default rules operators asked for.
 * Delivery lives in notify.ts; the timer and the agent wiring in index.ts.
 */
import { AgentConfigError } from '../../shared/agentconfig.ts';
import { formatMetricValue, type Alert, type AlertOp, type AlertRule, type AlertSeverity, type Sample } from '../../shared/monitoring.ts';

/**
 * The defaults. `for` choices (docs/alerts.md):
 * - HighBandwidthUsage 1m: a transfer that fills a link for a few seconds is normal (that is what
 *   the limit is for); a minute of > 80 % (12 samples at the default 5 s) means the endpoint lives
 *   at its limit and its traffic is queued or dropped.
 * - HighErrorRate 1m: drops are already user-visible, so it is critical, but one window with a
 *   burst of drops (a TBF queue overflowing once) is not; a minute of > 5 % is.
 * - HighLatency 2m: round-trip probes are noisier than counters (one slow answer, a busy host),
 *   so latency must stay high longer before anyone is told.
 */
export const DEFAULT_RULES: readonly AlertRule[] = Object.freeze([
  {
    name: 'HighBandwidthUsage',
    metric: 'cni_ts_endpoint_bandwidth_utilization_ratio',
    op: '>',
    threshold: 0.8,
    for: '1m',
    severity: 'warning',
    description: 'Endpoint {{namespace}}/{{pod}} on network {{network}} uses {{value}} of its bandwidth limit (threshold {{threshold}}).',
  },
  {
    name: 'HighErrorRate',
    metric: 'cni_ts_endpoint_error_ratio',
    op: '>',
    threshold: 0.05,
    for: '1m',
    severity: 'critical',
    description:
      'Endpoint {{namespace}}/{{pod}} on network {{network}}: {{value}} of its packets are errors or drops (threshold {{threshold}}).',
  },
  {
    name: 'HighLatency',
    metric: 'cni_ts_endpoint_latency_seconds',
    op: '>',
    threshold: 0.1,
    for: '2m',
    severity: 'warning',
    description: 'Endpoint {{namespace}}/{{pod}} on network {{network}}: round-trip time {{value}} (threshold {{threshold}}).',
  },
] satisfies AlertRule[]);

/** A rule as the engine runs it. */
export interface CompiledRule extends AlertRule {
  forMs: number;
  /** extra labels on every alert of the rule (Prometheus' rule `labels`) */
  labels: Record<string, string>;
  /** only series whose labels equal these */
  match: Record<string, string>;
  description: string;
}

export interface WebhookTarget {
  url: string;
  /** per request (default 5 s) */
  timeoutMs: number;
  /** extra request headers (Authorization, ...) */
  headers: Record<string, string>;
  /** also notify resolved alerts (default true) */
  sendResolved: boolean;
}

export interface AlertsConfig {
  enabled: boolean;
  evaluationIntervalMs: number;
  rules: CompiledRule[];
  webhooks: WebhookTarget[];
  /** Alertmanager base URLs ("http://127.0.0.1:9093"); alerts go to `${url}/api/v2/alerts` */
  alertmanagers: string[];
  /** how long resolved alerts stay listed (and re-sent to Alertmanager) before they are forgotten */
  resolvedRetentionMs: number;
  /** samples older than this are not evaluated (alerts stay as they are, nothing is re-sent) */
  staleAfterMs: number;
  /** firing alerts are re-sent to Alertmanager this often (Prometheus' --rules.alert.resend-delay) */
  resendDelayMs: number;
  /** Alertmanager request timeout */
  alertmanagerTimeoutMs: number;
  /** webhook retries: first delay, doubling up to max; a notification is dropped after maxAttempts */
  webhookRetry: { initialMs: number; maxMs: number; maxAttempts: number };
  /** notifications waiting per receiver; the oldest is dropped past this */
  queueSize: number;
  /** the generatorURL base (default: http://<listen>) */
  externalURL?: string;
}

export const ALERTS_DEFAULTS = {
  evaluationInterval: '5s',
  resolvedRetention: '15m',
  staleAfter: '5m',
  resendDelay: '1m',
  alertmanagerTimeout: '10s',
  webhookTimeout: '5s',
  webhookRetry: { initial: '1s', max: '1m', maxAttempts: 10 },
  queueSize: 1000,
} as const;

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** A Prometheus duration ("30s", "1m30s", "500ms", "0s", "2h") in ms; undefined when it is not one. */
export function parseDuration(s: unknown): number | undefined {
  if (typeof s !== 'string' || !/^((\d+)(ms|s|m|h|d|w))+$/.test(s)) return undefined;
  let ms = 0;
  for (const m of s.matchAll(/(\d+)(ms|s|m|h|d|w)/g)) ms += Number(m[1]) * UNITS[m[2]!]!;
  return ms;
}

const OPS: readonly AlertOp[] = ['>', '>=', '<', '<=', '==', '!='];
const SEVERITIES: readonly AlertSeverity[] = ['info', 'warning', 'critical'];
const NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const METRIC = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const RULE_KEYS = new Set(['name', 'metric', 'op', 'threshold', 'for', 'severity', 'description', 'labels', 'match', 'enabled']);
const SECTION_KEYS = new Set([
  'enabled',
  'evaluationInterval',
  'rules',
  'webhooks',
  'alertmanagers',
  'resolvedRetention',
  'staleAfter',
  'resendDelay',
  'alertmanagerTimeout',
  'webhookRetry',
  'queueSize',
  'externalURL',
]);

export function compare(value: number, op: AlertOp, threshold: number): boolean {
  switch (op) {
    case '>':
      return value > threshold;
    case '>=':
      return value >= threshold;
    case '<':
      return value < threshold;
    case '<=':
      return value <= threshold;
    case '==':
      return value === threshold;
    case '!=':
      return value !== threshold;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function stringMap(v: unknown, source: string, field: string, keyRe: RegExp): Record<string, string> {
  if (v === undefined) return {};
  if (!isObject(v)) throw new AgentConfigError(source, field, 'must be an object of strings ({"team": "net"})');
  for (const [k, x] of Object.entries(v)) {
    if (!keyRe.test(k)) throw new AgentConfigError(source, `${field}.${k}`, 'is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)');
    if (typeof x !== 'string') throw new AgentConfigError(source, `${field}.${k}`, 'must be a string');
  }
  return v as Record<string, string>;
}

function duration(v: unknown, def: string, source: string, field: string, min = 0): number {
  const ms = parseDuration(v ?? def);
  if (ms === undefined) throw new AgentConfigError(source, field, `${JSON.stringify(v)} is not a duration ("30s", "1m", "1m30s", "500ms")`);
  if (ms < min) throw new AgentConfigError(source, field, `must be at least ${min} ms`);
  return ms;
}

function httpUrl(v: unknown, source: string, field: string): string {
  if (typeof v !== 'string') throw new AgentConfigError(source, field, 'must be an http(s) URL string');
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new AgentConfigError(source, field, `${JSON.stringify(v)} is not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new AgentConfigError(source, field, `${JSON.stringify(v)}: only http:// and https:// URLs`);
  return v;
}

/**
 * One entry of `alerts.rules`. A rule named like a default replaces it; keys it leaves out keep
 * the default's values (so `{"name": "HighLatency", "for": "5m"}` changes only `for`), and
 * `"enabled": false` drops the default. A new rule needs metric, op, threshold and severity.
 */
function compileRule(raw: unknown, i: number, source: string): CompiledRule | { name: string; disabled: true } {
  const f = `alerts.rules[${i}]`;
  if (!isObject(raw)) throw new AgentConfigError(source, f, 'must be an object ({"name", "metric", "op", "threshold", "for", "severity"})');
  for (const k of Object.keys(raw))
    if (!RULE_KEYS.has(k)) throw new AgentConfigError(source, `${f}.${k}`, `unknown key (known: ${[...RULE_KEYS].join(', ')})`);
  if (typeof raw.name !== 'string' || !NAME.test(raw.name))
    throw new AgentConfigError(source, `${f}.name`, 'is required: an alert name ([a-zA-Z_][a-zA-Z0-9_]*, e.g. "HighBandwidthUsage")');
  const name = raw.name;
  if (raw.enabled !== undefined && typeof raw.enabled !== 'boolean')
    throw new AgentConfigError(source, `${f}.enabled`, 'must be true or false');
  if (raw.enabled === false) return { name, disabled: true };
  const base: Partial<AlertRule> = DEFAULT_RULES.find((d) => d.name === name) ?? {};
  const r = { ...base, ...raw } as Record<string, unknown>;
  const need = (k: string, what: string): never => {
    throw new AgentConfigError(source, `${f}.${k}`, `is required for rule ${name} (${what})`);
  };
  if (r.metric === undefined) need('metric', 'the series it watches, e.g. "cni_ts_endpoint_error_ratio"');
  if (typeof r.metric !== 'string' || !METRIC.test(r.metric))
    throw new AgentConfigError(source, `${f}.metric`, `${JSON.stringify(r.metric)} is not a metric name`);
  if (r.op === undefined) need('op', `one of ${OPS.join(' ')}`);
  if (!OPS.includes(r.op as AlertOp))
    throw new AgentConfigError(source, `${f}.op`, `${JSON.stringify(r.op)} is not one of ${OPS.join(' ')}`);
  if (r.threshold === undefined) need('threshold', 'a number');
  if (typeof r.threshold !== 'number' || !Number.isFinite(r.threshold))
    throw new AgentConfigError(source, `${f}.threshold`, `${JSON.stringify(r.threshold)} is not a number`);
  if (r.severity === undefined) need('severity', SEVERITIES.join(', '));
  if (!SEVERITIES.includes(r.severity as AlertSeverity))
    throw new AgentConfigError(source, `${f}.severity`, `${JSON.stringify(r.severity)} is not one of ${SEVERITIES.join(', ')}`);
  const forStr = r.for === undefined ? '0s' : r.for;
  const forMs = parseDuration(forStr);
  if (forMs === undefined) throw new AgentConfigError(source, `${f}.for`, `${JSON.stringify(r.for)} is not a duration ("30s", "1m", "0s")`);
  if (r.description !== undefined && typeof r.description !== 'string')
    throw new AgentConfigError(source, `${f}.description`, 'must be a string');
  const labels = stringMap(r.labels, source, `${f}.labels`, NAME);
  for (const k of ['alertname', 'severity'])
    if (k in labels) throw new AgentConfigError(source, `${f}.labels.${k}`, 'is set by the engine');
  return {
    name,
    metric: r.metric,
    op: r.op as AlertOp,
    threshold: r.threshold,
    for: forStr as string,
    forMs,
    severity: r.severity as AlertSeverity,
    description: (r.description as string | undefined) ?? `{{metric}} is {{value}} ({{op}} {{threshold}}) for {{namespace}}/{{pod}}`,
    labels,
    match: stringMap(r.match, source, `${f}.match`, NAME),
  };
}

/** The rules in force: the defaults, replaced or dropped by name, then the new ones in config order. */
export function effectiveRules(rawRules: unknown, source = ''): CompiledRule[] {
  if (rawRules !== undefined && !Array.isArray(rawRules)) throw new AgentConfigError(source, 'alerts.rules', 'must be a list of rules');
  const given = ((rawRules as unknown[] | undefined) ?? []).map((r, i) => compileRule(r, i, source));
  const seen = new Set<string>();
  given.forEach((r, i) => {
    if (seen.has(r.name)) throw new AgentConfigError(source, `alerts.rules[${i}].name`, `${r.name} is given twice`);
    seen.add(r.name);
  });
  const byName = new Map(given.map((r) => [r.name, r]));
  const out: CompiledRule[] = [];
  for (const d of DEFAULT_RULES) {
    const g = byName.get(d.name);
    if (g) {
      if (!('disabled' in g)) out.push(g);
    } else out.push(compileRule(d, -1, source) as CompiledRule);
  }
  for (const g of given) if (!('disabled' in g) && !DEFAULT_RULES.some((d) => d.name === g.name)) out.push(g);
  return out;
}

/** The `alerts` section of the agent config (all keys optional; `{}` = the defaults, no receivers). */
export function parseAlertsConfig(section: Record<string, unknown> | undefined, source = ''): AlertsConfig {
  const s = section ?? {};
  if (!isObject(s)) throw new AgentConfigError(source, 'alerts', 'must be an object');
  for (const k of Object.keys(s))
    if (!SECTION_KEYS.has(k)) throw new AgentConfigError(source, `alerts.${k}`, `unknown key (known: ${[...SECTION_KEYS].join(', ')})`);
  if (s.enabled !== undefined && typeof s.enabled !== 'boolean')
    throw new AgentConfigError(source, 'alerts.enabled', 'must be true or false');
  const webhookTimeout = parseDuration(ALERTS_DEFAULTS.webhookTimeout)!;
  const list = (k: string): unknown[] => {
    const v = s[k];
    if (v === undefined) return [];
    if (!Array.isArray(v)) throw new AgentConfigError(source, `alerts.${k}`, 'must be a list of URLs');
    return v;
  };
  const webhooks = list('webhooks').map((w, i): WebhookTarget => {
    const f = `alerts.webhooks[${i}]`;
    if (typeof w === 'string') return { url: httpUrl(w, source, f), timeoutMs: webhookTimeout, headers: {}, sendResolved: true };
    if (!isObject(w)) throw new AgentConfigError(source, f, 'must be a URL or {"url", "timeout", "headers", "sendResolved"}');
    for (const k of Object.keys(w))
      if (!['url', 'timeout', 'headers', 'sendResolved'].includes(k))
        throw new AgentConfigError(source, `${f}.${k}`, 'unknown key (known: url, timeout, headers, sendResolved)');
    if (w.sendResolved !== undefined && typeof w.sendResolved !== 'boolean')
      throw new AgentConfigError(source, `${f}.sendResolved`, 'must be true or false');
    return {
      url: httpUrl(w.url, source, `${f}.url`),
      timeoutMs: duration(w.timeout, ALERTS_DEFAULTS.webhookTimeout, source, `${f}.timeout`, 1),
      headers: stringMap(w.headers, source, `${f}.headers`, /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/),
      sendResolved: w.sendResolved !== false,
    };
  });
  const alertmanagers = list('alertmanagers').map((u, i) => httpUrl(u, source, `alerts.alertmanagers[${i}]`).replace(/\/+$/, ''));
  const retry = s.webhookRetry ?? {};
  if (!isObject(retry))
    throw new AgentConfigError(source, 'alerts.webhookRetry', 'must be {"initial": "1s", "max": "1m", "maxAttempts": 10}');
  for (const k of Object.keys(retry))
    if (!['initial', 'max', 'maxAttempts'].includes(k))
      throw new AgentConfigError(source, `alerts.webhookRetry.${k}`, 'unknown key (known: initial, max, maxAttempts)');
  const maxAttempts = retry.maxAttempts ?? ALERTS_DEFAULTS.webhookRetry.maxAttempts;
  if (!(Number.isInteger(maxAttempts) && (maxAttempts as number) >= 1))
    throw new AgentConfigError(source, 'alerts.webhookRetry.maxAttempts', 'must be an integer >= 1');
  const queueSize = s.queueSize ?? ALERTS_DEFAULTS.queueSize;
  if (!(Number.isInteger(queueSize) && (queueSize as number) >= 1))
    throw new AgentConfigError(source, 'alerts.queueSize', 'must be an integer >= 1');
  const initialMs = duration(retry.initial, ALERTS_DEFAULTS.webhookRetry.initial, source, 'alerts.webhookRetry.initial', 1);
  const maxMs = duration(retry.max, ALERTS_DEFAULTS.webhookRetry.max, source, 'alerts.webhookRetry.max', 1);
  if (maxMs < initialMs) throw new AgentConfigError(source, 'alerts.webhookRetry.max', 'must not be shorter than webhookRetry.initial');
  return {
    enabled: s.enabled !== false,
    evaluationIntervalMs: duration(s.evaluationInterval, ALERTS_DEFAULTS.evaluationInterval, source, 'alerts.evaluationInterval', 100),
    rules: effectiveRules(s.rules, source),
    webhooks,
    alertmanagers,
    resolvedRetentionMs: duration(s.resolvedRetention, ALERTS_DEFAULTS.resolvedRetention, source, 'alerts.resolvedRetention'),
    staleAfterMs: duration(s.staleAfter, ALERTS_DEFAULTS.staleAfter, source, 'alerts.staleAfter', 1000),
    resendDelayMs: duration(s.resendDelay, ALERTS_DEFAULTS.resendDelay, source, 'alerts.resendDelay', 100),
    alertmanagerTimeoutMs: duration(s.alertmanagerTimeout, ALERTS_DEFAULTS.alertmanagerTimeout, source, 'alerts.alertmanagerTimeout', 1),
    webhookRetry: { initialMs, maxMs, maxAttempts: maxAttempts as number },
    queueSize: queueSize as number,
    externalURL: s.externalURL === undefined ? undefined : httpUrl(s.externalURL, source, 'alerts.externalURL').replace(/\/+$/, ''),
  };
}

/** A value for people: ratios as percentages, seconds as ms below 1 s, else 4 significant digits. */
export const formatValue = formatMetricValue;

/** Fill `{{key}}` (also `{{ $value }}`, `{{ $labels.key }}`): value, rawValue, threshold, metric, op, and any label. */
export function renderDescription(rule: AlertRule, labels: Record<string, string>, value: number): string {
  const vars: Record<string, string> = {
    ...labels,
    value: formatValue(rule.metric, value),
    rawValue: String(value),
    threshold: formatValue(rule.metric, rule.threshold),
    metric: rule.metric,
    op: rule.op,
  };
  return (rule.description ?? '').replace(/\{\{\s*\$?(?:labels\.)?([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g, (m, k: string) => vars[k] ?? '');
}

/** An alert instance with the engine's bookkeeping (ms times; `lastSentAt` for notify.ts). */
export interface AlertInstance {
  key: string;
  rule: CompiledRule;
  state: Alert['state'];
  labels: Record<string, string>;
  value: number;
  activeAt: number;
  firedAt?: number;
  resolvedAt?: number;
}

export interface Transition {
  alert: AlertInstance;
  from: Alert['state'] | 'inactive';
  to: Alert['state'] | 'inactive';
}

const STATE_ORDER: Record<Alert['state'], number> = { firing: 0, pending: 1, resolved: 2 };
const SEVERITY_ORDER: Record<AlertSeverity, number> = { critical: 0, warning: 1, info: 2 };

/** The identity of an alert instance: its rule and its series' labels, in key order. */
export function instanceKey(rule: string, labels: Record<string, string>): string {
  return JSON.stringify([
    rule,
    ...Object.keys(labels)
      .sort()
      .map((k) => [k, labels[k]]),
  ]);
}

function matches(rule: CompiledRule, s: Sample): boolean {
  if (s.metric !== rule.metric || typeof s.value !== 'number' || Number.isNaN(s.value)) return false;
  for (const [k, v] of Object.entries(rule.match)) if (s.labels[k] !== v) return false;
  return true;
}

/** `{name="v", ...}` for logs. */
export function labelText(labels: Record<string, string>, skip: string[] = ['alertname', 'severity']): string {
  return `{${Object.entries(labels)
    .filter(([k]) => !skip.includes(k))
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join(', ')}}`;
}

/**
 * The state machine. `evaluate(samples, now)` moves every instance and returns the transitions
 * (for the log and the webhooks); `alerts(now)` lists what is pending, firing and recently
 * resolved. `now` is ms since the epoch (injected: tests drive the clock).
 */
export class AlertEvaluator {
  private readonly instances = new Map<string, AlertInstance>();

  constructor(
    readonly rules: CompiledRule[],
    private readonly resolvedRetentionMs: number = parseDuration(ALERTS_DEFAULTS.resolvedRetention)!,
  ) {}

  evaluate(samples: readonly Sample[], now: number): Transition[] {
    const out: Transition[] = [];
    const seen = new Set<string>();
    for (const rule of this.rules) {
      for (const s of samples) {
        if (!matches(rule, s) || !compare(s.value, rule.op, rule.threshold)) continue;
        const labels: Record<string, string> = { ...s.labels, ...rule.labels, alertname: rule.name, severity: rule.severity };
        const key = instanceKey(rule.name, labels);
        if (seen.has(key)) continue; // the same series twice in one sample: the first counts
        seen.add(key);
        let a = this.instances.get(key);
        if (!a || a.state === 'resolved') {
          // a new episode (a resolved one is replaced: it is notified no more)
          a = { key, rule, state: 'pending', labels, value: s.value, activeAt: now };
          this.instances.set(key, a);
          out.push({ alert: a, from: 'inactive', to: 'pending' });
        }
        a.value = s.value;
        if (a.state === 'pending' && now - a.activeAt >= rule.forMs) {
          a.state = 'firing';
          a.firedAt = now;
          out.push({ alert: a, from: 'pending', to: 'firing' });
        }
      }
    }
    for (const [key, a] of this.instances) {
      if (seen.has(key)) continue;
      if (a.state === 'pending') {
        this.instances.delete(key);
        out.push({ alert: a, from: 'pending', to: 'inactive' });
      } else if (a.state === 'firing') {
        a.state = 'resolved';
        a.resolvedAt = now;
        out.push({ alert: a, from: 'firing', to: 'resolved' });
      } else if (now - (a.resolvedAt ?? now) >= this.resolvedRetentionMs) {
        this.instances.delete(key);
      }
    }
    return out;
  }

  /** Every instance (for notify.ts), unsorted. */
  instancesNow(): AlertInstance[] {
    return [...this.instances.values()];
  }

  /** Firing first, then pending, then resolved; critical before warning; then by name and labels. */
  alerts(): Alert[] {
    return this.instancesNow()
      .sort(
        (a, b) =>
          STATE_ORDER[a.state] - STATE_ORDER[b.state] ||
          SEVERITY_ORDER[a.rule.severity] - SEVERITY_ORDER[b.rule.severity] ||
          a.rule.name.localeCompare(b.rule.name) ||
          a.key.localeCompare(b.key),
      )
      .map(toAlert);
  }
}

export function toAlert(a: AlertInstance): Alert {
  return {
    name: a.rule.name,
    severity: a.rule.severity,
    state: a.state,
    labels: { ...a.labels },
    value: a.value,
    metric: a.rule.metric,
    threshold: a.rule.threshold,
    description: renderDescription(a.rule, a.labels, a.value),
    activeAt: new Date(a.activeAt).toISOString(),
    ...(a.firedAt !== undefined ? { firedAt: new Date(a.firedAt).toISOString() } : {}),
    ...(a.resolvedAt !== undefined ? { resolvedAt: new Date(a.resolvedAt).toISOString() } : {}),
  };
}
