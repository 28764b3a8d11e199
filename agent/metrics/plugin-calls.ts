/**
 * Plugin calls as metrics: the agent creates the calls file (shared/cni/calls.ts; plugins
 * append to it only when it exists) and, at each scrape, reads what was appended since the last
 * read — following a rotation to `<file>.1` — into counters by plugin / verb / result and a
 * duration histogram by plugin / verb:
 *   cni_ts_plugin_calls_total{plugin,verb,result}
 *   cni_ts_plugin_call_duration_seconds{plugin,verb} (histogram; time inside the plugin process)
 * On start it reads what the files already hold, so an agent restart keeps the recorded calls.
 */
import { closeSync, fstatSync, mkdirSync, openSync, readSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../../shared/cni/log.ts';
import { parseCallLines, type PluginCallRecord } from '../../shared/cni/calls.ts';
import { collector, type CollectedValue, type Registry } from './registry.ts';

export const CALL_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

interface Hist {
  buckets: number[];
  sum: number;
  count: number;
}

export class PluginCalls {
  private ino = -1;
  private offset = 0;
  private partial = '';
  readonly calls = new Map<string, number>();
  readonly durations = new Map<string, Hist>();

  constructor(
    readonly file: string,
    private readonly log?: Logger,
  ) {}

  /** Create the file (plugins append only to an existing one) and read what is there. */
  start(): void {
    try {
      mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o755 });
      try {
        statSync(this.file);
      } catch {
        writeFileSync(this.file, '', { mode: 0o644, flag: 'a' });
      }
    } catch (e) {
      this.log?.warn(`metrics: cannot create the plugin calls file ${this.file}: ${(e as Error).message}`);
    }
    this.readFrom(`${this.file}.1`, 0, true);
    this.poll();
  }

  /** Read what was appended since the last poll (following one rotation). */
  poll(): void {
    let st;
    try {
      st = statSync(this.file);
    } catch {
      return;
    }
    if (this.ino !== -1 && st.ino !== this.ino) {
      // rotated: the rest of the old file is now <file>.1
      try {
        if (statSync(`${this.file}.1`).ino === this.ino) this.readFrom(`${this.file}.1`, this.offset, true);
      } catch {
        /* gone */
      }
      this.offset = 0;
      this.partial = '';
    }
    if (st.size < this.offset) this.offset = 0; // truncated
    this.ino = st.ino;
    this.offset = this.readFrom(this.file, this.offset, false);
  }

  /** Read `file` from `from`; returns the offset read up to (complete lines only). */
  private readFrom(file: string, from: number, whole: boolean): number {
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch {
      return from;
    }
    try {
      const size = fstatSync(fd).size;
      if (size <= from) return from;
      const buf = Buffer.alloc(Math.min(size - from, 4 << 20));
      const n = readSync(fd, buf, 0, buf.length, from);
      const text = (whole ? '' : this.partial) + buf.subarray(0, n).toString('utf8');
      const end = text.lastIndexOf('\n');
      if (!whole) this.partial = end >= 0 ? text.slice(end + 1) : text;
      for (const r of parseCallLines(end >= 0 ? text.slice(0, end) : whole ? text : '')) this.add(r);
      return from + n;
    } finally {
      closeSync(fd);
    }
  }

  add(r: PluginCallRecord): void {
    const k = `${r.plugin}\0${r.verb}\0${r.result}`;
    this.calls.set(k, (this.calls.get(k) ?? 0) + 1);
    const hk = `${r.plugin}\0${r.verb}`;
    let h = this.durations.get(hk);
    if (!h) this.durations.set(hk, (h = { buckets: new Array<number>(CALL_BUCKETS.length).fill(0), sum: 0, count: 0 }));
    for (let i = 0; i < CALL_BUCKETS.length; i++) if (r.seconds <= CALL_BUCKETS[i]!) h.buckets[i]!++;
    h.sum += r.seconds;
    h.count++;
  }

  register(registry: Registry): void {
    collector(
      registry,
      'cni_ts_plugin_calls_total',
      'counter',
      'CNI plugin calls on this host by plugin, verb (ADD, DEL, CHECK, ...) and result (ok, error), as recorded by the plugins.',
      () => {
        this.poll();
        return [...this.calls].map(([k, v]) => {
          const [plugin, verb, result] = k.split('\0');
          return { labels: { plugin: plugin!, verb: verb!, result: result! }, value: v };
        });
      },
    );
    collector(
      registry,
      'cni_ts_plugin_call_duration_seconds',
      'histogram',
      'Wall time of CNI plugin calls inside the plugin process (from reading stdin to writing the result), by plugin and verb.',
      () => {
        this.poll();
        const out: CollectedValue[] = [];
        for (const [k, h] of this.durations) {
          const [plugin, verb] = k.split('\0') as [string, string];
          CALL_BUCKETS.forEach((le, i) =>
            out.push({ metricName: 'cni_ts_plugin_call_duration_seconds_bucket', labels: { plugin, verb, le }, value: h.buckets[i]! }),
          );
          out.push({ metricName: 'cni_ts_plugin_call_duration_seconds_bucket', labels: { plugin, verb, le: '+Inf' }, value: h.count });
          out.push({ metricName: 'cni_ts_plugin_call_duration_seconds_sum', labels: { plugin, verb }, value: h.sum });
          out.push({ metricName: 'cni_ts_plugin_call_duration_seconds_count', labels: { plugin, verb }, value: h.count });
        }
        return out;
      },
    );
  }
}
