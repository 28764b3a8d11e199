/**
 * The agent's alerting (issue 16, docs/alerts.md): every `alerts.evaluationInterval` the rules
 * (engine.ts) read the samples the metrics sampler last took (`source`), each transition is
 * logged, and notify.ts queues what Alertmanagers and webhooks must hear. Evaluation never waits
 * on a receiver. The agent starts/stops it and serves `alerts()` on its socket and on
 * `GET /api/v1/alerts` (`routes()`).
 */
import type { AgentConfig } from '../../shared/agentconfig.ts';
import type { Logger } from '../../shared/cni/log.ts';
import type { Alert, Sample } from '../../shared/monitoring.ts';
import { sendJson, type HttpRoute } from '../api.ts';
import { collector, type CollectedValue, type Registry } from '../metrics/registry.ts';
import { AlertEvaluator, formatValue, labelText, parseAlertsConfig, toAlert, type AlertsConfig, type Transition } from './engine.ts';
import { Notifier, type ReceiverStats } from './notify.ts';

export { parseAlertsConfig, DEFAULT_RULES } from './engine.ts';

export interface AlertEngineOptions {
  /** ms since the epoch (tests drive it) */
  now?: () => number;
  /**
   * When the samples were taken (ISO time or ms; undefined: no sample yet). Samples older than
   * `alerts.staleAfter` are not evaluated: a sampler that stopped sampling freezes the alerts
   * and stops the re-sends, so Alertmanager lets them expire (endsAt) instead of being told
   * stale news.
   */
  sampledAt?: () => string | number | undefined;
  fetch?: typeof fetch;
}

/** The `alerts` section of an agent config, parsed (throws AgentConfigError, code 7). */
export function alertsConfigOf(cfg: AgentConfig): AlertsConfig {
  return parseAlertsConfig(cfg.alerts, cfg.source);
}

export class AlertEngine {
  readonly config: AlertsConfig;
  private readonly evaluator: AlertEvaluator;
  private readonly notifier: Notifier;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private sourceFailing = false;
  private readonly sampledAt: (() => string | number | undefined) | undefined;
  evaluations = 0;

  constructor(
    cfg: AgentConfig,
    private readonly log: Logger,
    private readonly source: () => Sample[],
    opts: AlertEngineOptions = {},
  ) {
    this.config = alertsConfigOf(cfg);
    this.now = opts.now ?? Date.now;
    this.sampledAt = opts.sampledAt;
    this.evaluator = new AlertEvaluator(this.config.rules, this.config.resolvedRetentionMs);
    const externalURL =
      this.config.externalURL ??
      `http://${cfg.listen.startsWith('0.0.0.0:') || cfg.listen.startsWith('[::]:') ? `${cfg.node}${cfg.listen.slice(cfg.listen.lastIndexOf(':'))}` : cfg.listen}`;
    this.notifier = new Notifier(this.config, log, { node: cfg.node, externalURL, now: this.now, fetch: opts.fetch });
  }

  /** One line for the agent's start-up log. */
  describe(): string {
    const c = this.config;
    return `${c.rules.length} rule(s) (${c.rules.map((r) => `${r.name} for ${r.for}`).join(', ')}), every ${c.evaluationIntervalMs} ms, ${c.alertmanagers.length} alertmanager(s), ${c.webhooks.length} webhook(s)`;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      try {
        this.evaluate();
      } catch (e) {
        // a bug here must not take the agent down: log it, try again next time
        this.log.error(`alerts: evaluation failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      }
    }, this.config.evaluationIntervalMs);
    this.log.info(`alerts: ${this.describe()}`);
  }

  stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    this.notifier.stop();
    return Promise.resolve();
  }

  /** One evaluation now: read the samples, move the alerts, log, queue notifications. */
  evaluate(): Transition[] {
    let samples: Sample[];
    try {
      const at = this.sampledAt?.();
      const age = at === undefined ? 0 : this.now() - (typeof at === 'number' ? at : Date.parse(at));
      if (age > this.config.staleAfterMs)
        throw new Error(
          `the last sample is ${Math.round(age / 1000)} s old (alerts.staleAfter ${this.config.staleAfterMs / 1000} s): alerts kept as they are`,
        );
      samples = this.source();
      if (this.sourceFailing) this.log.info('alerts: samples readable again');
      this.sourceFailing = false;
    } catch (e) {
      // no samples this time: keep every alert as it is rather than resolving them all
      if (!this.sourceFailing) this.log.warn(`alerts: cannot read samples: ${(e as Error).message}`);
      this.sourceFailing = true;
      return [];
    }
    const now = this.now();
    const ts = this.evaluator.evaluate(samples, now);
    this.evaluations++;
    for (const t of ts) this.logTransition(t);
    this.notifier.dispatch(ts, this.evaluator.instancesNow());
    return ts;
  }

  private logTransition(t: Transition): void {
    const a = t.alert;
    const what = `alert ${a.rule.name} ${labelText(a.labels)} (${a.rule.severity})`;
    const v = formatValue(a.rule.metric, a.value);
    if (t.to === 'pending') {
      if (a.rule.forMs > 0)
        this.log.info(
          `${what}: pending, ${a.rule.metric} = ${v} ${a.rule.op} ${formatValue(a.rule.metric, a.rule.threshold)}; fires if it holds for ${a.rule.for}`,
        );
    } else if (t.to === 'firing') this.log.warn(`${what}: FIRING, ${a.rule.metric} = ${v}: ${toAlert(a).description}`);
    else if (t.to === 'resolved')
      this.log.info(`${what}: resolved (last value ${v}, fired ${new Date(a.firedAt ?? a.activeAt).toISOString()})`);
    else this.log.info(`${what}: no longer pending (${a.rule.metric} back to normal before ${a.rule.for})`);
  }

  alerts(): Alert[] {
    return this.evaluator.alerts();
  }

  /**
   * The engine's own series on the agent's /metrics: `cni_ts_alerts` (1 per pending or firing
   * alert, with `alertstate` and the alert's labels, as Prometheus' `ALERTS`), evaluations, and
   * per receiver: notifications sent / failed / dropped and the queue length.
   */
  registerMetrics(registry: Registry): void {
    collector(
      registry,
      'cni_ts_alerts',
      'gauge',
      "Pending and firing alerts of the agent's rules (1 per alert; labels: alertstate and the alert's labels)",
      () =>
        this.evaluator
          .instancesNow()
          .filter((a) => a.state !== 'resolved')
          .map((a) => ({ labels: { ...a.labels, alertstate: a.state }, value: 1 })),
    );
    collector(registry, 'cni_ts_alert_evaluations_total', 'counter', 'Rule evaluations by the agent', () => [{ value: this.evaluations }]);
    const per = (f: (r: ReceiverStats) => number) => (): CollectedValue[] =>
      this.receivers().map((r) => ({ labels: { kind: r.kind, receiver: r.url }, value: f(r) }));
    collector(
      registry,
      'cni_ts_alert_notifications_total',
      'counter',
      'Notifications delivered (Alertmanager: requests; webhook: messages)',
      per((r) => r.sent),
    );
    collector(
      registry,
      'cni_ts_alert_notifications_failed_total',
      'counter',
      'Failed delivery attempts',
      per((r) => r.failed),
    );
    collector(
      registry,
      'cni_ts_alert_notifications_dropped_total',
      'counter',
      'Notifications given up (queue full, retries exhausted, 4xx)',
      per((r) => r.dropped),
    );
    collector(
      registry,
      'cni_ts_alert_queue_length',
      'gauge',
      'Notifications waiting per receiver',
      per((r) => r.queued),
    );
  }

  receivers(): ReceiverStats[] {
    return this.notifier.stats();
  }

  /** `GET /api/v1/alerts[?state=firing&alertname=X&namespace=NS]`: the socket's answer plus receiver stats. */
  routes(): Map<string, HttpRoute> {
    const list: HttpRoute = (_req, res, url) => {
      const want = (k: string): string | null => url.searchParams.get(k);
      const alerts = this.alerts().filter(
        (a) =>
          (!want('state') || a.state === want('state')) &&
          (!want('alertname') || a.name === want('alertname')) &&
          (!want('namespace') || a.labels.namespace === want('namespace')) &&
          (!want('severity') || a.severity === want('severity')),
      );
      sendJson(res, 200, { ok: true, type: 'alerts', alerts, receivers: this.receivers() });
    };
    return new Map([['GET /api/v1/alerts', list]]);
  }
}
