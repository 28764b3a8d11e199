/**
 * Delivery of alerts (issue 16), never in the way of the engine: `dispatch()` only queues and
 * returns; each receiver has its own bounded queue and one request in flight at a time, with a
 * timeout. A receiver that is down costs a queue entry, not a wait.
 *
 * - Alertmanager (API v2, `POST <url>/api/v2/alerts`): as Prometheus' notifier does, every
 *   evaluation sends the firing alerts not sent for `resendDelay` and the alerts resolved since
 *   their last send, in batches of 64, to every Alertmanager; firing alerts carry
 *   `endsAt = now + 4 × max(resendDelay, evaluationInterval)` (so Alertmanager resolves them by
 *   itself if the agent dies), resolved ones `endsAt = resolvedAt`; resolved alerts are re-sent
 *   every `resendDelay` until the engine forgets them. A failed request is not retried: the next
 *   resend carries the alerts again.
 * - Webhooks: one JSON message per evaluation with transitions (to firing, and to resolved
 *   unless `sendResolved` is false), in Alertmanager's webhook format (version "4"), so
 *   receivers written for Alertmanager read it. Retried with exponential backoff
 *   (`webhookRetry.initial` doubling to `.max`, at most `.maxAttempts` tries) on network errors,
 *   timeouts, 408, 429 and 5xx; other 4xx answers drop the message (retrying cannot help).
 */
import type { Logger } from '../../shared/cni/log.ts';
import { sha256Hex } from '../../shared/hash.ts';
import { renderDescription, formatValue, type AlertInstance, type AlertsConfig, type Transition, type WebhookTarget } from './engine.ts';

/** Alertmanager's postableAlert (API v2). */
export interface PostableAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt?: string;
  generatorURL: string;
}

/** One alert of a webhook message (Alertmanager's webhook format). */
export interface WebhookAlert extends PostableAlert {
  status: 'firing' | 'resolved';
  endsAt: string;
  fingerprint: string;
}

/** The webhook body (Alertmanager webhook format version 4, plus `source`). */
export interface WebhookMessage {
  version: '4';
  groupKey: string;
  truncatedAlerts: number;
  status: 'firing' | 'resolved';
  receiver: string;
  groupLabels: Record<string, string>;
  commonLabels: Record<string, string>;
  commonAnnotations: Record<string, string>;
  externalURL: string;
  alerts: WebhookAlert[];
  /** who sent it: "cni-ts agent on <node>" */
  source: string;
}

export interface ReceiverStats {
  kind: 'alertmanager' | 'webhook';
  url: string;
  /** alerts (Alertmanager) or messages (webhook) waiting */
  queued: number;
  sent: number;
  failed: number;
  dropped: number;
  lastError?: string;
  lastSuccessAt?: string;
}

export interface NotifierOptions {
  node: string;
  /** generatorURL / externalURL base: "http://127.0.0.1:9464" */
  externalURL: string;
  now?: () => number;
  fetch?: typeof fetch;
}

const ZERO_TIME = '0001-01-01T00:00:00Z';
const AM_BATCH = 64;

/** Labels as Alertmanager accepts them: no empty values (they mean "absent"). */
function cleanLabels(l: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(l).filter(([, v]) => v !== ''));
}

export function annotationsOf(a: AlertInstance): Record<string, string> {
  const who = [a.labels.namespace, a.labels.pod].filter(Boolean).join('/');
  return {
    summary: `${a.rule.name}${who ? ` on ${who}` : ''}: ${a.rule.metric} ${a.rule.op} ${formatValue(a.rule.metric, a.rule.threshold)}`,
    description: renderDescription(a.rule, a.labels, a.value),
    value: formatValue(a.rule.metric, a.value),
  };
}

export function generatorURL(base: string, a: AlertInstance): string {
  return `${base}/api/v1/alerts?alertname=${encodeURIComponent(a.rule.name)}`;
}

/** What Alertmanager gets for one instance at `now`. */
export function postableAlert(a: AlertInstance, now: number, validForMs: number, base: string): PostableAlert {
  return {
    labels: cleanLabels(a.labels),
    annotations: annotationsOf(a),
    startsAt: new Date(a.firedAt ?? a.activeAt).toISOString(),
    endsAt: new Date(a.state === 'resolved' ? (a.resolvedAt ?? now) : now + validForMs).toISOString(),
    generatorURL: generatorURL(base, a),
  };
}

/** The webhook message for the alerts that moved to firing or resolved in one evaluation. */
export function webhookMessage(moved: AlertInstance[], o: { node: string; externalURL: string }): WebhookMessage {
  const alerts: WebhookAlert[] = moved.map((a) => ({
    status: a.state === 'resolved' ? 'resolved' : 'firing',
    labels: cleanLabels(a.labels),
    annotations: annotationsOf(a),
    startsAt: new Date(a.firedAt ?? a.activeAt).toISOString(),
    endsAt: a.resolvedAt !== undefined ? new Date(a.resolvedAt).toISOString() : ZERO_TIME,
    generatorURL: generatorURL(o.externalURL, a),
    fingerprint: sha256Hex(a.key).slice(0, 16),
  }));
  const common = <K extends 'labels' | 'annotations'>(k: K): Record<string, string> => {
    const [first, ...rest] = alerts;
    if (!first) return {};
    return Object.fromEntries(Object.entries(first[k]).filter(([n, v]) => rest.every((x) => x[k][n] === v)));
  };
  return {
    version: '4',
    groupKey: `{}:{node="${o.node}"}`,
    truncatedAlerts: 0,
    status: alerts.some((a) => a.status === 'firing') ? 'firing' : 'resolved',
    receiver: 'cni-ts',
    groupLabels: {},
    commonLabels: common('labels'),
    commonAnnotations: common('annotations'),
    externalURL: o.externalURL,
    alerts,
    source: `cni-ts agent on ${o.node}`,
  };
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    body: string,
  ) {
    super(`HTTP ${status}${body ? `: ${body.trim().slice(0, 200)}` : ''}`);
  }
}

/** POST JSON with a timeout; resolves on 2xx, throws HttpError on others, the network error otherwise. */
async function postJson(
  f: typeof fetch,
  url: string,
  body: unknown,
  timeoutMs: number,
  headers: Record<string, string>,
  stop: AbortSignal,
): Promise<void> {
  const signal = AbortSignal.any([AbortSignal.timeout(timeoutMs), stop]);
  // fetch refuses URLs with credentials: user:password@ becomes basic auth
  const u = new URL(url);
  if (u.username || u.password) {
    headers = {
      authorization: `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`,
      ...headers,
    };
    u.username = '';
    u.password = '';
    url = u.toString();
  }
  let res: Response;
  try {
    res = await f(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'cni-ts-agent', ...headers },
      body: JSON.stringify(body),
      signal,
    });
  } catch (e) {
    // Node (undici): TypeError "fetch failed" with cause.code; Bun: the code on the error itself
    const err = e as Error & { code?: unknown; cause?: { code?: string; message?: string } };
    if (err.name === 'TimeoutError') throw new Error(`no answer in ${timeoutMs} ms`, { cause: e });
    throw new Error(err.cause?.code ?? (typeof err.code === 'string' ? err.code : undefined) ?? err.cause?.message ?? err.message, {
      cause: e,
    });
  }
  const text = await res.text().catch(() => '');
  if (res.status < 200 || res.status > 299) throw new HttpError(res.status, text);
}

/** A URL for logs and the API: without the password of `user:password@` (query tokens are the operator's choice). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (!u.password) return url;
    u.password = 'xxxxx';
    return u.toString().replace(/\/$/, url.endsWith('/') ? '/' : '');
  } catch {
    return url;
  }
}

abstract class Receiver {
  readonly st: ReceiverStats;
  /** `url` as logged and reported */
  protected readonly shown: string;
  protected inFlight = false;
  protected failing = false;
  constructor(
    kind: ReceiverStats['kind'],
    readonly url: string,
    protected readonly log: Logger,
    protected readonly f: typeof fetch,
    protected readonly stopSignal: AbortSignal,
  ) {
    this.shown = redactUrl(url);
    this.st = { kind, url: this.shown, queued: 0, sent: 0, failed: 0, dropped: 0 };
  }

  protected noteSuccess(what: string): void {
    this.st.sent++;
    this.st.lastSuccessAt = new Date().toISOString();
    if (this.failing) this.log.info(`${this.st.kind} ${this.shown}: delivering again (${what})`);
    else this.log.debug(`${this.st.kind} ${this.shown}: ${what}`);
    this.failing = false;
  }

  protected noteFailure(err: Error, what: string): void {
    this.st.failed++;
    this.st.lastError = err.message;
    // the first failure of a streak is a warning; the rest of the streak is debug (no log storm)
    this.log.log(this.failing ? 'debug' : 'warn', `${this.st.kind} ${this.shown}: ${what}: ${err.message}`);
    this.failing = true;
  }
}

class AlertmanagerReceiver extends Receiver {
  private queue: PostableAlert[] = [];
  constructor(
    url: string,
    log: Logger,
    f: typeof fetch,
    stop: AbortSignal,
    private readonly timeoutMs: number,
    private readonly capacity: number,
  ) {
    super('alertmanager', url, log, f, stop);
  }

  push(alerts: PostableAlert[]): void {
    this.queue.push(...alerts);
    const over = this.queue.length - this.capacity;
    if (over > 0) {
      this.queue.splice(0, over);
      this.st.dropped += over;
      this.log.warn(`alertmanager ${this.shown}: queue full (${this.capacity}), dropped the ${over} oldest alerts`);
    }
    this.st.queued = this.queue.length;
    void this.drain();
  }

  private async drain(): Promise<void> {
    if (this.inFlight) return;
    this.inFlight = true;
    try {
      while (this.queue.length && !this.stopSignal.aborted) {
        const batch = this.queue.splice(0, AM_BATCH);
        this.st.queued = this.queue.length;
        try {
          await postJson(this.f, `${this.url}/api/v2/alerts`, batch, this.timeoutMs, {}, this.stopSignal);
          this.noteSuccess(`sent ${batch.length} alert(s)`);
        } catch (e) {
          if (this.stopSignal.aborted) return;
          this.noteFailure(e as Error, `${batch.length} alert(s) not delivered (re-sent with the next resend)`);
        }
      }
    } finally {
      this.inFlight = false;
    }
  }
}

interface QueuedMessage {
  msg: WebhookMessage;
  attempts: number;
}

class WebhookReceiver extends Receiver {
  /** waiting messages, oldest first */
  private queue: QueuedMessage[] = [];
  /** the message being sent or waiting for its retry (not in `queue`) */
  private current: QueuedMessage | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  constructor(
    readonly target: WebhookTarget,
    log: Logger,
    f: typeof fetch,
    stop: AbortSignal,
    private readonly retry: AlertsConfig['webhookRetry'],
    private readonly capacity: number,
  ) {
    super('webhook', target.url, log, f, stop);
  }

  private count(): void {
    this.st.queued = this.queue.length + (this.current ? 1 : 0);
  }

  push(msg: WebhookMessage): void {
    this.queue.push({ msg, attempts: 0 });
    if (this.queue.length + (this.current ? 1 : 0) > this.capacity) {
      const lost = this.queue.shift()!;
      this.st.dropped++;
      this.log.warn(
        `webhook ${this.shown}: queue full (${this.capacity}), dropped the oldest waiting message (${lost.msg.status}, ${lost.msg.alerts.length} alert(s))`,
      );
    }
    this.count();
    if (!this.retryTimer) void this.drain();
  }

  stop(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private async drain(): Promise<void> {
    if (this.inFlight) return;
    this.inFlight = true;
    try {
      while (!this.stopSignal.aborted) {
        const head = (this.current ??= this.queue.shift());
        this.count();
        if (!head) return;
        head.attempts++;
        try {
          await postJson(this.f, this.url, head.msg, this.target.timeoutMs, this.target.headers, this.stopSignal);
          this.current = undefined;
          this.count();
          this.noteSuccess(`sent ${head.msg.status} (${head.msg.alerts.length} alert(s), attempt ${head.attempts})`);
          continue;
        } catch (e) {
          if (this.stopSignal.aborted) return;
          const err = e as Error;
          const permanent = err instanceof HttpError && err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429;
          if (permanent || head.attempts >= this.retry.maxAttempts) {
            this.current = undefined;
            this.count();
            this.st.dropped++;
            this.st.failed++;
            this.st.lastError = err.message;
            this.log.error(
              `webhook ${this.shown}: dropped a ${head.msg.status} message (${head.msg.alerts.length} alert(s)) after ${head.attempts} attempt(s): ${err.message}`,
            );
            this.failing = true;
            continue;
          }
          const delay = Math.min(this.retry.initialMs * 2 ** (head.attempts - 1), this.retry.maxMs);
          this.noteFailure(err, `attempt ${head.attempts} failed, retrying in ${delay} ms`);
          this.retryTimer = setTimeout(() => {
            this.retryTimer = undefined;
            void this.drain();
          }, delay);
          return;
        }
      }
    } finally {
      this.inFlight = false;
    }
  }
}

/** Every receiver of one agent. */
export class Notifier {
  private readonly ams: AlertmanagerReceiver[];
  private readonly hooks: WebhookReceiver[];
  private readonly lastSent = new Map<string, number>();
  private readonly abort = new AbortController();
  private readonly now: () => number;
  private readonly validForMs: number;

  constructor(
    private readonly cfg: AlertsConfig,
    private readonly log: Logger,
    private readonly o: NotifierOptions,
  ) {
    const f = o.fetch ?? fetch;
    this.now = o.now ?? Date.now;
    this.validForMs = 4 * Math.max(cfg.resendDelayMs, cfg.evaluationIntervalMs);
    this.ams = cfg.alertmanagers.map(
      (u) => new AlertmanagerReceiver(u, log, f, this.abort.signal, cfg.alertmanagerTimeoutMs, cfg.queueSize),
    );
    this.hooks = cfg.webhooks.map((w) => new WebhookReceiver(w, log, f, this.abort.signal, cfg.webhookRetry, cfg.queueSize));
  }

  /** After an evaluation: queue what each receiver needs. Returns at once. */
  dispatch(transitions: Transition[], instances: AlertInstance[]): void {
    if (this.abort.signal.aborted) return;
    const now = this.now();
    if (this.ams.length) {
      const due: PostableAlert[] = [];
      const live = new Set<string>();
      for (const a of instances) {
        live.add(a.key);
        if (a.state === 'pending') continue;
        const last = this.lastSent.get(a.key);
        const resolvedSince = a.state === 'resolved' && (last === undefined || (a.resolvedAt ?? 0) > last);
        if (last === undefined || resolvedSince || last + this.cfg.resendDelayMs <= now) {
          due.push(postableAlert(a, now, this.validForMs, this.o.externalURL));
          this.lastSent.set(a.key, now);
        }
      }
      for (const k of this.lastSent.keys()) if (!live.has(k)) this.lastSent.delete(k);
      if (due.length) for (const am of this.ams) am.push(due);
    }
    if (this.hooks.length) {
      for (const h of this.hooks) {
        const moved = transitions.filter((t) => t.to === 'firing' || (t.to === 'resolved' && h.target.sendResolved)).map((t) => t.alert);
        if (moved.length) h.push(webhookMessage(moved, this.o));
      }
    }
  }

  stats(): ReceiverStats[] {
    return [...this.ams, ...this.hooks].map((r) => ({ ...r.st }));
  }

  /** Abort requests in flight and retries; queued notifications are dropped (logged). */
  stop(): void {
    const left = this.stats().reduce((n, s) => n + s.queued, 0);
    this.abort.abort();
    for (const h of this.hooks) h.stop();
    if (left) this.log.info(`alerts: stopping with ${left} undelivered notification(s) queued`);
  }
}
