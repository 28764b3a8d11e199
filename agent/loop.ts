/**
 * The agent's generic reconcile loop: one per reconciler. A pass is `reconcile(why)`; callers
 * `kick(why)` it (a watch event, a signal, an API call), a timer kicks it every `resyncMs`
 * (the periodic resync that repairs drift), and:
 * - bursts collapse: kicks that arrive while a pass runs (or within `settleMs` before it
 *   starts) make exactly one more pass, with every reason kept for the log;
 * - a failed pass is retried after a backoff that doubles from `backoffMinMs` to
 *   `backoffMaxMs`; kicks during the backoff wait for it (a broken store or kernel is not
 *   hammered), and the first pass that succeeds resets it;
 * - one reconciler failing never stops the others (each has its own loop and state).
 */
import type { Logger } from '../shared/cni/log.ts';
import type { ReconcilerStatus } from '../shared/agentapi.ts';

export interface LoopOptions {
  name: string;
  /** one pass; returns a one-line summary of what it did ('' or undefined: nothing to say) */
  reconcile(why: string): Promise<string | undefined | void>;
  log: Logger;
  /** periodic resync (default 10 s; 0 = none) */
  resyncMs?: number;
  /** wait this long after the first kick of a burst before starting (default 0) */
  settleMs?: number;
  backoffMinMs?: number;
  backoffMaxMs?: number;
}

export class Loop {
  readonly name: string;
  private readonly o: Required<Omit<LoopOptions, 'reconcile' | 'log' | 'name'>>;
  private timer: NodeJS.Timeout | undefined;
  private pending: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private reasons = new Set<string>();
  private stopped = true;
  private backoffUntil = 0;
  private backoffMs = 0;
  private idleWaiters: Array<() => void> = [];
  private st: ReconcilerStatus;

  constructor(private readonly opts: LoopOptions) {
    this.name = opts.name;
    this.o = {
      resyncMs: opts.resyncMs ?? 10_000,
      settleMs: opts.settleMs ?? 0,
      backoffMinMs: opts.backoffMinMs ?? 200,
      backoffMaxMs: opts.backoffMaxMs ?? Math.max(1000, Math.min(opts.resyncMs ?? 10_000, 30_000)),
    };
    this.st = { name: opts.name, state: 'starting', passes: 0, failures: 0, consecutiveFailures: 0 };
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    if (this.o.resyncMs > 0) this.timer = setInterval(() => this.kick('resync'), this.o.resyncMs);
    this.kick('start');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.pending) clearTimeout(this.pending);
    this.timer = this.pending = undefined;
    await this.running;
    this.st.state = 'stopped';
  }

  /** Ask for a pass. Cheap; safe to call from any event handler. */
  kick(why: string): void {
    if (this.stopped) return;
    this.reasons.add(why);
    this.schedule();
  }

  status(): ReconcilerStatus {
    return { ...this.st };
  }

  /** Resolves when no pass is running or scheduled (tests, shutdown). */
  idle(): Promise<void> {
    if (!this.running && !this.pending && this.reasons.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private schedule(): void {
    if (this.running || this.pending || this.stopped) return; // the running pass re-schedules when it ends
    const wait = Math.max(this.o.settleMs, this.backoffUntil - Date.now());
    if (wait > 0) this.pending = setTimeout(() => this.startPass(), wait);
    else this.startPass();
  }

  private startPass(): void {
    this.pending = undefined;
    if (this.stopped || this.running) return;
    const all = [...this.reasons];
    const why = (all.length > 4 ? `${all.slice(0, 4).join(', ')} and ${all.length - 4} more` : all.join(', ')) || 'kick';
    this.reasons.clear();
    this.running = this.pass(why).finally(() => {
      this.running = undefined;
      if (this.reasons.size && !this.stopped) this.schedule();
      else if (!this.pending) for (const w of this.idleWaiters.splice(0)) w();
    });
  }

  private async pass(why: string): Promise<void> {
    const t0 = performance.now();
    this.st.passes++;
    this.st.lastPassAt = new Date().toISOString();
    try {
      const summary = await this.opts.reconcile(why);
      const ms = performance.now() - t0;
      if (this.st.consecutiveFailures) this.opts.log.info(`${this.name}: recovered after ${this.st.consecutiveFailures} failed pass(es)`);
      this.st.state = 'ok';
      this.st.consecutiveFailures = 0;
      this.st.lastSuccessAt = this.st.lastPassAt;
      this.st.lastDurationMs = Math.round(ms * 10) / 10;
      if (summary) {
        this.st.lastSummary = summary;
        this.opts.log.info(`${this.name} (${why}): ${summary} [${ms.toFixed(1)} ms]`);
      }
      this.backoffMs = 0;
      this.backoffUntil = 0;
    } catch (e) {
      this.st.state = 'failing';
      this.st.failures++;
      this.st.consecutiveFailures++;
      const err = e as { message?: string; details?: string };
      this.st.lastError = `${err.message ?? String(e)}${err.details ? ` (${err.details})` : ''}`;
      this.st.lastErrorAt = this.st.lastPassAt;
      this.backoffMs = this.backoffMs ? Math.min(this.backoffMs * 2, this.o.backoffMaxMs) : this.o.backoffMinMs;
      this.backoffUntil = Date.now() + this.backoffMs;
      this.opts.log.warn(
        `${this.name} (${why}) failed [${this.st.consecutiveFailures}], retry in ${this.backoffMs} ms: ${this.st.lastError}`,
      );
      this.reasons.add('retry');
    }
  }
}
