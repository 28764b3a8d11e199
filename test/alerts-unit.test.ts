/**
 * agent/alerts: the rule state machine on an injected clock (pending → firing → resolved, `for`,
 * labels, descriptions, retention), the `alerts` config section (defaults, replacement by name,
 * errors naming the field, code 7), and delivery with a fake fetch (Alertmanager resend rules,
 * webhook retries with backoff, bounded queues, timeouts, permanent 4xx).
 */
import { describe, expect, it } from 'vitest';
import { AgentConfigError, parseAgentConfig } from '../shared/agentconfig.ts';
import { Logger } from '../shared/cni/log.ts';
import type { Sample } from '../shared/monitoring.ts';
import {
  AlertEvaluator,
  DEFAULT_RULES,
  formatValue,
  parseAlertsConfig,
  parseDuration,
  renderDescription,
  type AlertsConfig,
} from '../agent/alerts/engine.ts';
import { Notifier, webhookMessage, type PostableAlert, type WebhookMessage } from '../agent/alerts/notify.ts';
import { AlertEngine } from '../agent/alerts/index.ts';

const log = new Logger('test', { CNI_LOG_LEVEL: 'error' });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const S = 1000;
const T0 = Date.parse('2026-12-06T07:00:00Z');

const ep = (pod: string, extra: Record<string, string> = {}): Record<string, string> => ({
  namespace: 'x',
  pod,
  network: 'net1',
  interface: 'eth0',
  node: 'n1',
  ...extra,
});
const bw = (pod: string, value: number): Sample => ({ metric: 'cni_ts_endpoint_bandwidth_utilization_ratio', labels: ep(pod), value });
const err = (pod: string, value: number): Sample => ({ metric: 'cni_ts_endpoint_error_ratio', labels: ep(pod), value });
const lat = (pod: string, value: number): Sample => ({ metric: 'cni_ts_endpoint_latency_seconds', labels: ep(pod), value });

function cfgOf(alerts: Record<string, unknown>): AlertsConfig {
  return parseAlertsConfig(alerts, '/etc/cni-ts/agent.json');
}

function expectConfigError(alerts: unknown, field: string, why: RegExp): void {
  let caught: unknown;
  try {
    parseAgentConfig({ store: { type: 'file', path: '/tmp/al-store' }, alerts }, '/etc/cni-ts/agent.json');
    parseAlertsConfig(alerts as Record<string, unknown>, '/etc/cni-ts/agent.json');
  } catch (e) {
    caught = e;
  }
  expect(caught, `${JSON.stringify(alerts)} should be refused`).toBeInstanceOf(AgentConfigError);
  const e = caught as AgentConfigError;
  expect(e.code).toBe(7);
  expect(e.message).toContain('/etc/cni-ts/agent.json');
  expect(e.message).toContain(`${field}: `);
  expect(e.message).toMatch(why);
}

describe('durations and values', () => {
  it('parses Prometheus durations', () => {
    expect(parseDuration('0s')).toBe(0);
    expect(parseDuration('30s')).toBe(30 * S);
    expect(parseDuration('1m30s')).toBe(90 * S);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('2h')).toBe(7_200_000);
    for (const bad of ['', '30', 's', '1.5m', '-1s', ' 1s', 30]) expect(parseDuration(bad)).toBeUndefined();
  });

  it('formats ratios as percentages and seconds as ms', () => {
    expect(formatValue('cni_ts_endpoint_bandwidth_utilization_ratio', 0.9312)).toBe('93.12%');
    expect(formatValue('cni_ts_endpoint_latency_seconds', 0.15)).toBe('150ms');
    expect(formatValue('cni_ts_endpoint_latency_seconds', 2.5)).toBe('2.5s');
    expect(formatValue('cni_ts_endpoint_connections', 12345.678)).toBe('12350');
  });
});

describe('alerts config', () => {
  it('an empty section gives the three defaults operators asked for', () => {
    const c = cfgOf({});
    expect(c.rules.map((r) => [r.name, r.metric, r.op, r.threshold, r.severity, r.for])).toEqual([
      ['HighBandwidthUsage', 'cni_ts_endpoint_bandwidth_utilization_ratio', '>', 0.8, 'warning', '1m'],
      ['HighErrorRate', 'cni_ts_endpoint_error_ratio', '>', 0.05, 'critical', '1m'],
      ['HighLatency', 'cni_ts_endpoint_latency_seconds', '>', 0.1, 'warning', '2m'],
    ]);
    expect(c).toMatchObject({
      enabled: true,
      evaluationIntervalMs: 5 * S,
      webhooks: [],
      alertmanagers: [],
      resolvedRetentionMs: 15 * 60 * S,
      resendDelayMs: 60 * S,
    });
    expect(parseAlertsConfig(undefined).rules).toHaveLength(3);
  });

  it('the issue example: a rule named like a default replaces it; receivers are kept', () => {
    const c = cfgOf({
      evaluationInterval: '5s',
      rules: [
        {
          name: 'HighBandwidthUsage',
          metric: 'cni_ts_endpoint_bandwidth_utilization_ratio',
          op: '>',
          threshold: 0.8,
          for: '30s',
          severity: 'warning',
        },
      ],
      webhooks: ['http://127.0.0.1:19450/hook'],
      alertmanagers: ['http://127.0.0.1:19451/'],
    });
    expect(c.rules).toHaveLength(3);
    expect(c.rules[0]).toMatchObject({ name: 'HighBandwidthUsage', for: '30s', forMs: 30 * S });
    expect(c.webhooks).toEqual([{ url: 'http://127.0.0.1:19450/hook', timeoutMs: 5 * S, headers: {}, sendResolved: true }]);
    expect(c.alertmanagers).toEqual(['http://127.0.0.1:19451']);
  });

  it('a partial rule named like a default changes only what it gives; enabled:false drops a default; new rules follow', () => {
    const c = cfgOf({
      rules: [
        { name: 'HighLatency', threshold: 0.25, labels: { team: 'net' } },
        { name: 'HighErrorRate', enabled: false },
        {
          name: 'ManyConnections',
          metric: 'cni_ts_endpoint_connections',
          op: '>=',
          threshold: 1000,
          severity: 'info',
          match: { namespace: 'prod' },
        },
      ],
    });
    expect(c.rules.map((r) => r.name)).toEqual(['HighBandwidthUsage', 'HighLatency', 'ManyConnections']);
    expect(c.rules[1]).toMatchObject({
      metric: 'cni_ts_endpoint_latency_seconds',
      op: '>',
      threshold: 0.25,
      for: '2m',
      severity: 'warning',
      labels: { team: 'net' },
    });
    expect(c.rules[2]).toMatchObject({ for: '0s', forMs: 0, match: { namespace: 'prod' } });
  });

  it('refuses bad values with code 7, naming the file and the field', () => {
    expectConfigError({ evaluationInterval: '5' }, 'alerts.evaluationInterval', /not a duration/);
    expectConfigError({ evaluationInterval: '1ms' }, 'alerts.evaluationInterval', /at least 100 ms/);
    expectConfigError({ rules: {} }, 'alerts.rules', /list/);
    expectConfigError({ rules: [{ metric: 'x', op: '>', threshold: 1, severity: 'info' }] }, 'alerts.rules[0].name', /required/);
    expectConfigError(
      { rules: [{ name: 'New', op: '>', threshold: 1, severity: 'info' }] },
      'alerts.rules[0].metric',
      /required for rule New/,
    );
    expectConfigError(
      { rules: [{ name: 'New', metric: 'm', op: '=>', threshold: 1, severity: 'info' }] },
      'alerts.rules[0].op',
      /not one of > >= < <= == !=/,
    );
    expectConfigError({ rules: [{ name: 'HighLatency', threshold: '100ms' }] }, 'alerts.rules[0].threshold', /not a number/);
    expectConfigError({ rules: [{ name: 'HighLatency', severity: 'page' }] }, 'alerts.rules[0].severity', /info, warning, critical/);
    expectConfigError({ rules: [{ name: 'HighLatency', for: '2 minutes' }] }, 'alerts.rules[0].for', /not a duration/);
    expectConfigError({ rules: [{ name: 'HighLatency', treshold: 1 }] }, 'alerts.rules[0].treshold', /unknown key/);
    expectConfigError({ rules: [{ name: 'HighLatency', enabled: 'no' }] }, 'alerts.rules[0].enabled', /true or false/);
    expectConfigError(
      { rules: [{ name: 'HighLatency', labels: { severity: 'page' } }] },
      'alerts.rules[0].labels.severity',
      /set by the engine/,
    );
    expectConfigError(
      { rules: [{ name: 'A-b', metric: 'm', op: '>', threshold: 1, severity: 'info' }] },
      'alerts.rules[0].name',
      /alert name/,
    );
    expectConfigError({ rules: [{ name: 'HighLatency' }, { name: 'HighLatency', for: '1s' }] }, 'alerts.rules[1].name', /given twice/);
    expectConfigError({ webhooks: 'http://127.0.0.1:1/' }, 'alerts.webhooks', /list/);
    expectConfigError({ webhooks: ['ftp://127.0.0.1/x'] }, 'alerts.webhooks[0]', /only http/);
    expectConfigError({ webhooks: [{ url: 'http://127.0.0.1:1/', timeout: 'soon' }] }, 'alerts.webhooks[0].timeout', /not a duration/);
    expectConfigError({ alertmanagers: ['127.0.0.1:9093'] }, 'alerts.alertmanagers[0]', /only http|not a URL/);
    expectConfigError({ webhookRetry: { maxAttempts: 0 } }, 'alerts.webhookRetry.maxAttempts', /integer >= 1/);
    expectConfigError({ webhookRetry: { initial: '1m', max: '1s' } }, 'alerts.webhookRetry.max', /not be shorter/);
    expectConfigError({ evalInterval: '5s' }, 'alerts.evalInterval', /unknown key/);
  });
});

describe('the state machine', () => {
  const rules = cfgOf({
    rules: [
      { name: 'HighBandwidthUsage', for: '30s' },
      { name: 'HighErrorRate', for: '0s' },
      { name: 'HighLatency', for: '10s', labels: { team: 'net' } },
    ],
  }).rules;

  it('pending, firing after `for`, resolved when the condition stops, forgotten after the retention', () => {
    const e = new AlertEvaluator(rules, 15 * 60 * S);
    let ts = e.evaluate([bw('a', 0.5), bw('b', 0.9)], T0);
    expect(ts.map((t) => [t.alert.labels.pod, t.from, t.to])).toEqual([['b', 'inactive', 'pending']]);
    expect(e.alerts()).toMatchObject([
      { name: 'HighBandwidthUsage', state: 'pending', severity: 'warning', value: 0.9, activeAt: new Date(T0).toISOString() },
    ]);
    expect(e.evaluate([bw('b', 0.95)], T0 + 29 * S)).toEqual([]);
    ts = e.evaluate([bw('b', 0.97)], T0 + 30 * S);
    expect(ts.map((t) => [t.from, t.to])).toEqual([['pending', 'firing']]);
    const firing = e.alerts()[0]!;
    expect(firing).toMatchObject({
      state: 'firing',
      value: 0.97,
      activeAt: new Date(T0).toISOString(),
      firedAt: new Date(T0 + 30 * S).toISOString(),
    });
    expect(firing.labels).toEqual({
      alertname: 'HighBandwidthUsage',
      severity: 'warning',
      namespace: 'x',
      pod: 'b',
      network: 'net1',
      interface: 'eth0',
      node: 'n1',
    });
    expect(firing.description).toBe('Endpoint x/b on network net1 uses 97% of its bandwidth limit (threshold 80%).');
    ts = e.evaluate([bw('b', 0.1)], T0 + 40 * S);
    expect(ts.map((t) => [t.from, t.to])).toEqual([['firing', 'resolved']]);
    expect(e.alerts()).toMatchObject([{ state: 'resolved', resolvedAt: new Date(T0 + 40 * S).toISOString(), value: 0.97 }]);
    e.evaluate([bw('b', 0.1)], T0 + 40 * S + 15 * 60 * S - 1);
    expect(e.alerts()).toHaveLength(1);
    expect(e.evaluate([bw('b', 0.1)], T0 + 40 * S + 15 * 60 * S)).toEqual([]);
    expect(e.alerts()).toEqual([]);
  });

  it('a pending alert whose condition stops before `for` is dropped, never fired; coming back restarts the clock', () => {
    const e = new AlertEvaluator(rules);
    e.evaluate([bw('a', 0.9)], T0);
    const ts = e.evaluate([bw('a', 0.8)], T0 + 20 * S); // not > 0.8
    expect(ts.map((t) => [t.from, t.to])).toEqual([['pending', 'inactive']]);
    expect(e.alerts()).toEqual([]);
    e.evaluate([bw('a', 0.81)], T0 + 25 * S);
    expect(e.evaluate([bw('a', 0.81)], T0 + 50 * S)).toEqual([]); // 25 s since it came back
    expect(e.evaluate([bw('a', 0.81)], T0 + 55 * S).map((t) => t.to)).toEqual(['firing']);
  });

  it('for "0s" fires at once; a series that disappears (endpoint gone) resolves its alert', () => {
    const e = new AlertEvaluator(rules);
    const ts = e.evaluate([err('a', 0.2), err('b', 0.01)], T0);
    expect(ts.map((t) => [t.alert.labels.pod, t.from, t.to])).toEqual([
      ['a', 'inactive', 'pending'],
      ['a', 'pending', 'firing'],
    ]);
    expect(e.alerts()[0]).toMatchObject({
      name: 'HighErrorRate',
      severity: 'critical',
      state: 'firing',
      description: 'Endpoint x/a on network net1: 20% of its packets are errors or drops (threshold 5%).',
    });
    expect(e.evaluate([err('b', 0.01)], T0 + 5 * S).map((t) => [t.alert.labels.pod, t.to])).toEqual([['a', 'resolved']]);
  });

  it('a resolved alert whose condition returns starts a new episode (pending again, new activeAt)', () => {
    const e = new AlertEvaluator(rules);
    e.evaluate([err('a', 0.2)], T0);
    e.evaluate([err('a', 0)], T0 + 5 * S);
    expect(e.alerts()[0]!.state).toBe('resolved');
    const ts = e.evaluate([err('a', 0.3)], T0 + 10 * S);
    expect(ts.map((t) => t.to)).toEqual(['pending', 'firing']);
    expect(e.alerts()).toMatchObject([{ state: 'firing', activeAt: new Date(T0 + 10 * S).toISOString(), value: 0.3 }]);
    expect(e.alerts()[0]!.resolvedAt).toBeUndefined();
  });

  it('one instance per series; rule labels added; sorted firing, pending, resolved, critical first', () => {
    const e = new AlertEvaluator(rules);
    e.evaluate([lat('a', 0.2), lat('b', 0.3), err('c', 0.5)], T0);
    e.evaluate([lat('a', 0.2), lat('b', 0.3), err('c', 0.5)], T0 + 10 * S);
    e.evaluate([lat('a', 0.2), lat('b', 0.05), bw('d', 1), err('c', 0.5)], T0 + 11 * S);
    expect(e.alerts().map((a) => [a.name, a.labels.pod, a.state])).toEqual([
      ['HighErrorRate', 'c', 'firing'],
      ['HighLatency', 'a', 'firing'],
      ['HighBandwidthUsage', 'd', 'pending'],
      ['HighLatency', 'b', 'resolved'],
    ]);
    expect(e.alerts()[1]!.labels.team).toBe('net');
    expect(e.alerts()[1]!.description).toBe('Endpoint x/a on network net1: round-trip time 200ms (threshold 100ms).');
  });

  it('match selects series by label; NaN and other metrics are ignored', () => {
    const r = cfgOf({
      rules: [
        {
          name: 'ProdConns',
          metric: 'cni_ts_endpoint_connections',
          op: '>',
          threshold: 10,
          severity: 'info',
          match: { namespace: 'prod' },
          description: '{{ $labels.pod }} has {{ $value }} connections',
        },
      ],
    }).rules;
    const e = new AlertEvaluator(r);
    e.evaluate(
      [
        { metric: 'cni_ts_endpoint_connections', labels: ep('a', { namespace: 'prod' }), value: 11 },
        { metric: 'cni_ts_endpoint_connections', labels: ep('b'), value: 99 },
        { metric: 'cni_ts_endpoint_connections', labels: ep('c', { namespace: 'prod' }), value: NaN },
        { metric: 'cni_ts_endpoint_connections_total', labels: ep('d', { namespace: 'prod' }), value: 99 },
      ],
      T0,
    );
    expect(e.alerts().map((a) => [a.labels.pod, a.state, a.description])).toEqual([['a', 'firing', 'a has 11 connections']]);
  });

  it('renders description templates', () => {
    const rule = { ...DEFAULT_RULES[2]!, description: '{{pod}}: {{value}} / {{threshold}} ({{rawValue}}) {{metric}} {{op}} {{nope}}' };
    expect(renderDescription(rule, { pod: 'p' }, 0.1234)).toBe('p: 123.4ms / 100ms (0.1234) cni_ts_endpoint_latency_seconds > ');
  });
});

/** A fetch that records requests and answers by a function (which may hang until aborted). */
function fakeFetch(answer: (url: string, body: unknown, n: number) => number | 'hang' | 'refuse') {
  const calls: { url: string; body: unknown; at: number }[] = [];
  const f = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = String(input);
    const body = JSON.parse(String(init?.body)) as unknown;
    calls.push({ url, body, at: Date.now() });
    const a = answer(url, body, calls.length);
    if (a === 'refuse') throw Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
    if (a === 'hang') {
      return new Promise<Response>((_r, reject) => {
        init?.signal?.addEventListener('abort', () => reject((init.signal as AbortSignal).reason as Error));
      });
    }
    return new Response(a === 200 ? '' : 'nope', { status: a });
  }) as typeof fetch;
  return { f, calls };
}

const notifierCfg = (over: Record<string, unknown>): AlertsConfig =>
  cfgOf({ evaluationInterval: '1s', resendDelay: '1m', rules: [{ name: 'HighErrorRate', for: '0s' }], ...over });

describe('Alertmanager delivery (Prometheus resend rules)', () => {
  it('sends firing at once with endsAt = now + 4 × resendDelay, re-sends after resendDelay, sends resolved with endsAt = resolvedAt', async () => {
    let now = T0;
    const { f, calls } = fakeFetch(() => 200);
    const cfg = notifierCfg({ alertmanagers: ['http://127.0.0.1:19452'] });
    const e = new AlertEvaluator(cfg.rules);
    const n = new Notifier(cfg, log, { node: 'n1', externalURL: 'http://127.0.0.1:9464', now: () => now, fetch: f });
    const step = async (samples: Sample[], at: number): Promise<void> => {
      now = at;
      n.dispatch(e.evaluate(samples, at), e.instancesNow());
      await sleep(5);
    };
    await step([err('a', 0.2)], T0);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.url).toBe('http://127.0.0.1:19452/api/v2/alerts');
    const [sent] = calls[0]!.body as PostableAlert[];
    expect(sent).toEqual({
      labels: {
        alertname: 'HighErrorRate',
        severity: 'critical',
        namespace: 'x',
        pod: 'a',
        network: 'net1',
        interface: 'eth0',
        node: 'n1',
      },
      annotations: {
        summary: 'HighErrorRate on x/a: cni_ts_endpoint_error_ratio > 5%',
        description: 'Endpoint x/a on network net1: 20% of its packets are errors or drops (threshold 5%).',
        value: '20%',
      },
      startsAt: new Date(T0).toISOString(),
      endsAt: new Date(T0 + 4 * 60 * S).toISOString(),
      generatorURL: 'http://127.0.0.1:9464/api/v1/alerts?alertname=HighErrorRate',
    });
    await step([err('a', 0.2)], T0 + 30 * S);
    expect(calls).toHaveLength(1);
    await step([err('a', 0.2)], T0 + 60 * S);
    expect(calls).toHaveLength(2);
    await step([], T0 + 65 * S);
    expect(calls).toHaveLength(3);
    expect((calls[2]!.body as PostableAlert[])[0]!.endsAt).toBe(new Date(T0 + 65 * S).toISOString());
    await step([], T0 + 70 * S);
    expect(calls).toHaveLength(3);
    await step([], T0 + 125 * S); // resolved alerts are re-sent too, until forgotten
    expect(calls).toHaveLength(4);
    n.stop();
  });

  it('pending alerts are not sent; a down Alertmanager gets the alert with the next resend', async () => {
    let now = T0;
    let down = true;
    const { f, calls } = fakeFetch(() => (down ? 'refuse' : 200));
    const cfg = notifierCfg({ alertmanagers: ['http://127.0.0.1:19452'], rules: [{ name: 'HighErrorRate', for: '10s' }] });
    const e = new AlertEvaluator(cfg.rules);
    const n = new Notifier(cfg, log, { node: 'n1', externalURL: 'http://x', now: () => now, fetch: f });
    const step = async (at: number): Promise<void> => {
      now = at;
      n.dispatch(e.evaluate([err('a', 0.2)], at), e.instancesNow());
      await sleep(5);
    };
    await step(T0);
    expect(calls).toHaveLength(0);
    await step(T0 + 10 * S);
    expect(calls).toHaveLength(1);
    expect(n.stats()[0]).toMatchObject({ kind: 'alertmanager', failed: 1, lastError: 'ECONNREFUSED' });
    down = false;
    await step(T0 + 40 * S);
    expect(calls).toHaveLength(1);
    await step(T0 + 70 * S);
    expect(calls).toHaveLength(2);
    expect(n.stats()[0]).toMatchObject({ sent: 1, failed: 1, queued: 0 });
    n.stop();
  });
});

describe('webhook delivery', () => {
  const hookCfg = (over: Record<string, unknown> = {}): AlertsConfig =>
    notifierCfg({
      webhooks: [{ url: 'http://127.0.0.1:19453/hook', timeout: '200ms' }],
      webhookRetry: { initial: '20ms', max: '80ms', maxAttempts: 6 },
      ...over,
    });

  it('posts firing and resolved in Alertmanager webhook format', () => {
    const cfg = hookCfg();
    const e = new AlertEvaluator(cfg.rules);
    const ts = e.evaluate([err('a', 0.2), err('b', 0.3)], T0);
    const m = webhookMessage(
      ts.filter((t) => t.to === 'firing').map((t) => t.alert),
      { node: 'n1', externalURL: 'http://127.0.0.1:9464' },
    );
    expect(m).toMatchObject({
      version: '4',
      status: 'firing',
      receiver: 'cni-ts',
      externalURL: 'http://127.0.0.1:9464',
      commonLabels: { alertname: 'HighErrorRate', severity: 'critical', namespace: 'x', network: 'net1' },
    });
    expect(m.alerts.map((a) => [a.status, a.labels.pod, a.endsAt])).toEqual([
      ['firing', 'a', '0001-01-01T00:00:00Z'],
      ['firing', 'b', '0001-01-01T00:00:00Z'],
    ]);
    expect(m.alerts[0]!.fingerprint).toMatch(/^[0-9a-f]{16}$/);
  });

  it('retries with doubling delays until the receiver answers, then sends the next message in order', async () => {
    const { f, calls } = fakeFetch((_u, _b, n) => (n <= 3 ? 'refuse' : n === 4 ? 503 : 200));
    const cfg = hookCfg();
    const e = new AlertEvaluator(cfg.rules);
    const n = new Notifier(cfg, log, { node: 'n1', externalURL: 'http://x', fetch: f });
    n.dispatch(e.evaluate([err('a', 0.2)], T0), e.instancesNow());
    n.dispatch(e.evaluate([], T0 + 5 * S), e.instancesNow());
    for (let i = 0; i < 100 && calls.length < 6; i++) await sleep(20);
    expect(calls.map((c) => (c.body as WebhookMessage).status)).toEqual(['firing', 'firing', 'firing', 'firing', 'firing', 'resolved']);
    const gaps = calls.slice(1, 5).map((c, i) => c.at - calls[i]!.at);
    // 20, 40, 80, 80 ms (capped): each wait at least its backoff
    expect(gaps[0]).toBeGreaterThanOrEqual(18);
    expect(gaps[1]).toBeGreaterThanOrEqual(38);
    expect(gaps[2]).toBeGreaterThanOrEqual(78);
    expect(gaps[3]).toBeGreaterThanOrEqual(78);
    expect(n.stats()[0]).toMatchObject({ kind: 'webhook', sent: 2, failed: 4, dropped: 0, queued: 0 });
    n.stop();
  });

  it('a hanging receiver times out; the queue is bounded (oldest dropped); dispatch never waits', async () => {
    const { f, calls } = fakeFetch(() => 'hang');
    const cfg = hookCfg({ queueSize: 3, webhookRetry: { initial: '10s', max: '10s', maxAttempts: 2 } });
    const e = new AlertEvaluator(cfg.rules);
    const n = new Notifier(cfg, log, { node: 'n1', externalURL: 'http://x', fetch: f });
    // dispatch is synchronous: it queues and returns while the first request hangs
    for (let i = 0; i < 10; i++) n.dispatch(e.evaluate(i % 2 ? [] : [err('a', 0.2)], T0 + i * S), e.instancesNow());
    expect(n.stats()[0]).toMatchObject({ queued: 3, dropped: 7 });
    for (let i = 0; i < 50 && !n.stats()[0]!.lastError; i++) await sleep(20);
    expect(n.stats()[0]!.lastError).toBe('no answer in 200 ms');
    expect(calls).toHaveLength(1);
    n.stop();
  });

  it('a 4xx other than 408/429 drops the message (retrying cannot help); sendResolved:false sends firing only', async () => {
    const { f, calls } = fakeFetch((_u, _b, n) => (n === 1 ? 400 : 200));
    const cfg = hookCfg({ webhooks: [{ url: 'http://127.0.0.1:19453/hook', sendResolved: false }] });
    const e = new AlertEvaluator(cfg.rules);
    const n = new Notifier(cfg, log, { node: 'n1', externalURL: 'http://x', fetch: f });
    n.dispatch(e.evaluate([err('a', 0.2)], T0), e.instancesNow());
    n.dispatch(e.evaluate([], T0 + S), e.instancesNow());
    n.dispatch(e.evaluate([err('b', 0.2)], T0 + 2 * S), e.instancesNow());
    for (let i = 0; i < 50 && calls.length < 2; i++) await sleep(10);
    await sleep(50);
    expect(calls.map((c) => (c.body as WebhookMessage).alerts.map((a) => `${a.status} ${a.labels.pod}`))).toEqual([
      ['firing a'],
      ['firing b'],
    ]);
    expect(n.stats()[0]).toMatchObject({ sent: 1, failed: 1, dropped: 1, lastError: 'HTTP 400: nope' });
    n.stop();
  });
});

describe('AlertEngine', () => {
  it('reads its sample source each evaluation; a throwing source keeps alerts as they are', () => {
    let now = T0;
    let samples: Sample[] | Error = [err('a', 0.5)];
    const cfg = parseAgentConfig({
      store: { type: 'file', path: '/tmp/al-store' },
      node: 'n1',
      alerts: { rules: [{ name: 'HighErrorRate', for: '0s' }] },
    });
    const eng = new AlertEngine(
      cfg,
      log,
      () => {
        if (samples instanceof Error) throw samples;
        return samples;
      },
      { now: () => now },
    );
    expect(eng.evaluate().map((t) => t.to)).toEqual(['pending', 'firing']);
    samples = new Error('sampler not ready');
    now += 5 * S;
    expect(eng.evaluate()).toEqual([]);
    expect(eng.alerts().map((a) => a.state)).toEqual(['firing']);
    samples = [];
    expect(eng.evaluate().map((t) => t.to)).toEqual(['resolved']);
    expect(eng.describe()).toContain('HighErrorRate for 0s');
  });

  it('samples older than staleAfter are not evaluated: alerts frozen, nothing re-sent', () => {
    let now = T0;
    let at: number | undefined = T0;
    const cfg = parseAgentConfig({
      store: { type: 'file', path: '/tmp/al-store' },
      node: 'n1',
      alerts: { staleAfter: '30s', rules: [{ name: 'HighErrorRate', for: '0s' }] },
    });
    let value = 0.5;
    const eng = new AlertEngine(cfg, log, () => [err('a', value)], { now: () => now, sampledAt: () => at });
    expect(eng.evaluate().map((t) => t.to)).toEqual(['pending', 'firing']);
    value = 0;
    now = T0 + 31 * S; // the sampler stopped at T0
    expect(eng.evaluate()).toEqual([]);
    expect(eng.alerts().map((a) => a.state)).toEqual(['firing']);
    at = now; // sampling again
    expect(eng.evaluate().map((t) => t.to)).toEqual(['resolved']);
    at = undefined; // no sample yet: evaluated (nothing to see)
    expect(eng.evaluate()).toEqual([]);
  });

  it("exports its alerts (as Prometheus' ALERTS), evaluations and receiver counters on the agent registry", async () => {
    const { createRegistry } = await import('../agent/metrics/registry.ts');
    const registry = createRegistry();
    const cfg = parseAgentConfig({
      store: { type: 'file', path: '/tmp/al-store' },
      node: 'n1',
      alerts: {
        rules: [
          { name: 'HighErrorRate', for: '0s' },
          { name: 'HighLatency', for: '1m' },
        ],
        webhooks: ['http://127.0.0.1:19454/'],
      },
    });
    const eng = new AlertEngine(cfg, log, () => [err('a', 0.5), lat('b', 0.5)], { now: () => T0, fetch: fakeFetch(() => 200).f });
    eng.registerMetrics(registry);
    eng.evaluate();
    await sleep(5);
    const text = await registry.metrics();
    expect(text).toContain('# TYPE cni_ts_alerts gauge');
    expect(text).toContain(
      'cni_ts_alerts{namespace="x",pod="a",network="net1",interface="eth0",node="n1",alertname="HighErrorRate",severity="critical",alertstate="firing"} 1',
    );
    expect(text).toContain(
      'cni_ts_alerts{namespace="x",pod="b",network="net1",interface="eth0",node="n1",alertname="HighLatency",severity="warning",alertstate="pending"} 1',
    );
    expect(text).toContain('cni_ts_alert_evaluations_total 1');
    expect(text).toContain('cni_ts_alert_notifications_total{kind="webhook",receiver="http://127.0.0.1:19454/"} 1');
    expect(text).toContain('cni_ts_alert_queue_length{kind="webhook",receiver="http://127.0.0.1:19454/"} 0');
    await eng.stop();
  });

  it('a bad alerts section fails construction with the config error', () => {
    const cfg = parseAgentConfig(
      { store: { type: 'file', path: '/tmp/al-store' }, alerts: { rules: [{ name: 'HighLatency', op: '~' }] } },
      '/tmp/al-agent.json',
    );
    expect(() => new AlertEngine(cfg, log, () => [])).toThrow(/agent config \/tmp\/al-agent.json: alerts.rules\[0\].op: "~" is not one of/);
  });
});

describe('cnictl alerts', () => {
  it('prints a table: value formatted by metric, SINCE by state; wide adds interface, threshold, description', async () => {
    const { alertRows, since } = await import('../tools/cnictl/alerts.ts');
    const now = Date.parse('2026-12-06T07:00:00Z');
    const a = [
      {
        name: 'HighErrorRate',
        severity: 'critical',
        state: 'firing',
        labels: ep('c'),
        value: 0.784,
        metric: 'cni_ts_endpoint_error_ratio',
        threshold: 0.05,
        description: 'd1',
        activeAt: '2026-12-06T06:59:46Z',
        firedAt: '2026-12-06T06:59:48Z',
      },
      {
        name: 'HighBandwidthUsage',
        severity: 'warning',
        state: 'firing',
        labels: ep('c'),
        value: 0.9712,
        metric: 'cni_ts_endpoint_bandwidth_utilization_ratio',
        threshold: 0.8,
        description: 'd2',
        activeAt: '2026-12-06T06:57:56Z',
        firedAt: '2026-12-06T06:58:56Z',
      },
      {
        name: 'HighLatency',
        severity: 'warning',
        state: 'pending',
        labels: ep('d'),
        value: 0.2611,
        metric: 'cni_ts_endpoint_latency_seconds',
        threshold: 0.1,
        description: 'd3',
        activeAt: '2026-12-06T06:59:20Z',
      },
      {
        name: 'HighLatency',
        severity: 'warning',
        state: 'resolved',
        labels: ep('c'),
        value: 0.2611,
        metric: 'cni_ts_endpoint_latency_seconds',
        threshold: 0.1,
        description: 'd4',
        activeAt: '2026-12-06T06:50:00Z',
        firedAt: '2026-12-06T06:52:00Z',
        resolvedAt: '2026-12-06T06:40:00Z',
      },
    ] as const;
    expect(alertRows(a as never, false, now)).toBe(
      [
        'ALERT                SEVERITY   STATE      NAMESPACE   POD   NETWORK   VALUE     SINCE',
        'HighErrorRate        critical   firing     x           c     net1      78.4%     12s',
        'HighBandwidthUsage   warning    firing     x           c     net1      97.12%    1m4s',
        'HighLatency          warning    pending    x           d     net1      261.1ms   40s',
        'HighLatency          warning    resolved   x           c     net1      261.1ms   20m',
        '',
      ].join('\n'),
    );
    expect(alertRows([a[0]] as never, true, now).split('\n')[1]).toBe(
      'HighErrorRate   critical   firing   x           c     net1      78.4%   12s     eth0        5%          d1',
    );
    expect(since('2026-12-06T04:55:00Z', now)).toBe('2h5m');
    expect(since('2026-12-03T04:55:00Z', now)).toBe('3d2h');
  });
});

describe('receiver URLs in logs and stats', () => {
  it('hide the password of user:password@', async () => {
    const { redactUrl } = await import('../agent/alerts/notify.ts');
    expect(redactUrl('http://ops:s3cret@127.0.0.1:9093')).toBe('http://ops:xxxxx@127.0.0.1:9093');
    expect(redactUrl('https://ops:s3cret@hooks.example.org/a/b?x=1')).toBe('https://ops:xxxxx@hooks.example.org/a/b?x=1');
    expect(redactUrl('http://127.0.0.1:9093/')).toBe('http://127.0.0.1:9093/');
    const cfg = cfgOf({ alertmanagers: ['http://ops:s3cret@127.0.0.1:19452'], rules: [{ name: 'HighErrorRate', for: '0s' }] });
    let seen: { url: string; auth: string | null } | undefined;
    const f = (async (input: string | URL | Request, init?: RequestInit) => {
      seen = { url: String(input), auth: new Headers(init?.headers).get('authorization') };
      return new Response('', { status: 200 });
    }) as typeof fetch;
    const n = new Notifier(cfg, log, { node: 'n1', externalURL: 'http://x', fetch: f });
    expect(n.stats()[0]!.url).toBe('http://ops:xxxxx@127.0.0.1:19452');
    // sent without credentials in the URL (fetch refuses them), as basic auth
    const e = new AlertEvaluator(cfg.rules);
    n.dispatch(e.evaluate([err('a', 0.5)], T0), e.instancesNow());
    await sleep(5);
    expect(seen).toEqual({ url: 'http://127.0.0.1:19452/api/v2/alerts', auth: `Basic ${Buffer.from('ops:s3cret').toString('base64')}` });
    n.stop();
  });
});
