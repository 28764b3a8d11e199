/**
 * Open connections per service backend, from conntrack (the truth: this kernel has no IPVS).
 * A snapshot (`conntrack -L`) on start, then conntrack events (`conntrack -E`): a TCP entry is
 * open from NEW until it leaves SYN_SENT/SYN_RECV/ESTABLISHED (or is destroyed), a UDP entry
 * until it is destroyed. Only entries whose original destination is a service VIP:port count;
 * the backend is the reply source. `onChange` is called (coalesced per macrotask) when a count
 * of a least-connections service changes; the services reconciler then repoints that
 * service's map element. Freshness: an event reaches us within milliseconds of the packet, and
 * the element update follows in one nft call, so a choice reflects every connection opened or
 * closed more than ~100 ms earlier (docs/services.md).
 */
import type { Logger } from '../../shared/cni/log.ts';
import { conntrackEvents, conntrackList, type CtEntry, type CtFamily } from '../../shared/kernel/conntrack.ts';
import type { ServicePortEntry } from '../../shared/services/compile.ts';

const OPEN_TCP = new Set(['SYN_SENT', 'SYN_RECV', 'ESTABLISHED']);

export class ConnectionTracker {
  /** `${entry.key}|${backend key}` → open connections */
  readonly counts = new Map<string, number>();
  /** conntrack orig tuple → the count key it adds to */
  private open = new Map<string, string>();
  private byVip = new Map<string, ServicePortEntry>();
  /** one conntrack event follower per address family, while least-connections services exist */
  private stopEvents = new Map<CtFamily, () => void>();
  private stopped = false;
  private pending = new Set<string>();
  private flushScheduled = false;

  constructor(
    private readonly log: Logger,
    private readonly onChange: (entryKeys: Set<string>) => void,
  ) {}

  /** The service ports to count for (least-connections ones); starts following events on first use. */
  async setEntries(entries: readonly ServicePortEntry[]): Promise<void> {
    this.byVip = new Map(entries.filter((e) => e.algorithm === 'least-connections').map((e) => [`${e.protocol} ${e.vip}:${e.port}`, e]));
    if (this.stopped) return;
    for (const family of ['ipv4', 'ipv6'] as const) {
      const want = entries.some((e) => e.algorithm === 'least-connections' && (e.family === 6) === (family === 'ipv6'));
      if (want && !this.stopEvents.has(family)) await this.start(family);
    }
  }

  stop(): void {
    this.stopped = true;
    for (const stop of this.stopEvents.values()) stop();
    this.stopEvents.clear();
  }

  private async start(family: CtFamily): Promise<void> {
    const stop = conntrackEvents(
      (e) => this.onEntry(e),
      (why) => {
        this.stopEvents.delete(family);
        if (this.stopped) return;
        this.log.warn(`services: ${why}; restarting the ${family} conntrack event follower in 1 s`);
        setTimeout(() => void this.start(family), 1000).unref();
      },
      undefined,
      { family },
    );
    this.stopEvents.set(family, stop);
    // the snapshot after the follower started: nothing between is missed (duplicates are keyed)
    for (const e of await conntrackList(undefined, family)) this.onEntry(e);
  }

  private onEntry(e: CtEntry): void {
    const tuple = `${e.proto} ${e.orig.src}:${e.orig.sport}>${e.orig.dst}:${e.orig.dport}`;
    const entry = this.byVip.get(`${e.proto} ${e.orig.dst}:${e.orig.dport}`);
    const isOpen = e.event !== 'DESTROY' && (e.proto !== 'tcp' || (e.state !== undefined && OPEN_TCP.has(e.state)));
    const had = this.open.get(tuple);
    if (had && !isOpen) {
      this.open.delete(tuple);
      this.bump(had, -1);
    } else if (!had && isOpen && entry) {
      const key = `${entry.key}|${e.reply.src}:${e.reply.sport}`;
      this.open.set(tuple, key);
      this.bump(key, 1);
    }
  }

  private bump(key: string, d: number): void {
    const n = (this.counts.get(key) ?? 0) + d;
    if (n <= 0) this.counts.delete(key);
    else this.counts.set(key, n);
    this.pending.add(key.split('|')[0]!);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        const keys = this.pending;
        this.pending = new Set();
        this.onChange(keys);
      });
    }
  }
}
