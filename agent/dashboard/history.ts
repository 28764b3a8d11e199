/**
 * The dashboard's memory: the last 15 minutes (by default) of every endpoint's figures, fed by
 * the metrics sampler (`sampler.onSample`), served as `GET /api/v1/history[?namespace=][&since=]`.
 *
 * Bounded: one ring of sample times shared by every endpoint, and per endpoint one Float32Array
 * of `capacity × SERIES.length` values aligned to that ring (NaN where the endpoint had no
 * sample). `capacity` = window / sampling interval + 1, at most `maxPoints`; an endpoint whose
 * values have all left the window is dropped. At 500 endpoints sampled every 5 s that is
 * 500 × 181 × 10 × 4 bytes = 3.6 MB of values (plus ~1 KB of labels per endpoint); `bytes()`
 * reports it and bench/dashboard.ts measures it.
 *
 * Pure (no I/O, no timers): unit-tested in test/dashboard-unit.test.ts.
 */
import { endpointKey, type EndpointFigures, type EndpointLabels, type MetricsSnapshot } from '../../shared/monitoring.ts';

/** The series kept per endpoint, in storage order (per second unless said otherwise). */
export const SERIES = [
  'rxBytes',
  'txBytes',
  'rxPackets',
  'txPackets',
  'errorRatio',
  'latencySeconds',
  'utilization',
  'connections',
  'drops',
  'errors',
] as const;
export type SeriesName = (typeof SERIES)[number];
const F = SERIES.length;

export interface HistoryEndpoint extends EndpointLabels {
  key: string;
  hostInterface?: string;
  ips: string[];
  limitBitsPerSecond?: number;
  /** one array per series, aligned to `HistoryReport.t`; null: no sample then */
  series: Record<SeriesName, Array<number | null>>;
}

/** What `GET /api/v1/history` answers. */
export interface HistoryReport {
  node: string;
  windowSeconds: number;
  intervalSeconds: number;
  /** sample times, Unix seconds (with milliseconds), oldest first */
  t: number[];
  endpoints: HistoryEndpoint[];
}

export interface HistoryOptions {
  /** how far back to keep (default 900 s: 15 minutes) */
  windowSeconds?: number;
  /** the most samples kept whatever the interval (default 1800: a 0.5 s interval over 15 minutes) */
  maxPoints?: number;
}

interface Entry {
  labels: EndpointLabels;
  hostInterface?: string;
  ips: string[];
  limitBitsPerSecond?: number;
  values: Float32Array;
  /** time (ms) of the last sample holding this endpoint */
  lastSeen: number;
  /** counters of the last sample: drops/s and errors/s are their differences */
  prev?: { at: number; drops: number; errors: number };
}

/**
 * Four significant digits (whole numbers from 1000 up): enough for a chart, and a float32's
 * value prints short in JSON. Arithmetic, not toPrecision (5× faster over 900 000 values).
 */
export function round4(v: number): number | null {
  if (!Number.isFinite(v)) return null;
  const a = Math.abs(v);
  if (a >= 1000) return Math.round(v);
  if (a === 0) return 0;
  const p = 10 ** (3 - Math.floor(Math.log10(a)));
  return Math.round(v * p) / p;
}

export class History {
  readonly windowSeconds: number;
  readonly maxPoints: number;
  private capacity = 0;
  /** sample times in ms; a ring of `capacity` slots, `head` the next one written */
  private times = new Float64Array(0);
  private head = 0;
  private count = 0;
  private intervalSeconds = 0;
  private node = '';
  private entries = new Map<string, Entry>();

  constructor(opts: HistoryOptions = {}) {
    this.windowSeconds = opts.windowSeconds ?? 900;
    this.maxPoints = opts.maxPoints ?? 1800;
  }

  /** Slots for `intervalSeconds`: the window and one more, at most maxPoints. */
  static capacityFor(windowSeconds: number, intervalSeconds: number, maxPoints: number): number {
    const per = intervalSeconds > 0 ? Math.ceil(windowSeconds / intervalSeconds) + 1 : maxPoints;
    return Math.max(2, Math.min(maxPoints, per));
  }

  /** Record one sample (the sampler's onSample callback). */
  add(s: MetricsSnapshot): void {
    const at = Date.parse(s.at);
    if (!Number.isFinite(at)) return;
    // times only move forward: a sample older than the newest one is ignored
    if (this.count && at <= this.times[(this.head - 1 + this.capacity) % this.capacity]!) return;
    this.node = s.node;
    const cap = History.capacityFor(this.windowSeconds, s.intervalSeconds, this.maxPoints);
    if (cap !== this.capacity) this.resize(cap);
    this.intervalSeconds = s.intervalSeconds;
    const slot = this.head;
    this.times[slot] = at;
    this.head = (slot + 1) % this.capacity;
    this.count = Math.min(this.count + 1, this.capacity);
    const off = slot * F;
    for (const e of this.entries.values()) e.values.fill(NaN, off, off + F);
    for (const f of s.endpoints) this.put(f, at, off);
    // drop endpoints with nothing left in the window
    const oldest = this.oldest();
    for (const [k, e] of this.entries) if (e.lastSeen < oldest) this.entries.delete(k);
  }

  private put(f: EndpointFigures, at: number, off: number): void {
    const key = endpointKey(f);
    let e = this.entries.get(key);
    if (!e) {
      e = {
        labels: { namespace: f.namespace, pod: f.pod, network: f.network, interface: f.interface, node: f.node },
        ips: [],
        values: new Float32Array(this.capacity * F).fill(NaN),
        lastSeen: at,
      };
      this.entries.set(key, e);
    }
    e.ips = f.ips;
    e.hostInterface = f.hostInterface;
    e.limitBitsPerSecond = f.limitBitsPerSecond;
    e.lastSeen = at;
    const c = f.counters;
    const drops = c.rxDropped + c.txDropped;
    const errors = c.rxErrors + c.txErrors;
    const dt = e.prev ? (at - e.prev.at) / 1000 : 0;
    // a counter that went backwards (interface re-created): no rate for this window
    const perSecond = (now: number, before: number | undefined): number =>
      dt > 0 && before !== undefined && now >= before ? (now - before) / dt : 0;
    const v = e.values;
    v[off] = f.rates.rxBytes;
    v[off + 1] = f.rates.txBytes;
    v[off + 2] = f.rates.rxPackets;
    v[off + 3] = f.rates.txPackets;
    v[off + 4] = f.errorRatio;
    v[off + 5] = f.latencySeconds ?? NaN;
    v[off + 6] = f.utilization ?? NaN;
    v[off + 7] = f.connections;
    v[off + 8] = perSecond(drops, e.prev?.drops);
    v[off + 9] = perSecond(errors, e.prev?.errors);
    e.prev = { at, drops, errors };
  }

  /** Keep what fits when the interval (hence the capacity) changes: the newest samples. */
  private resize(cap: number): void {
    const order = this.slots();
    const keep = order.slice(Math.max(0, order.length - cap));
    const times = new Float64Array(cap);
    keep.forEach((s, i) => (times[i] = this.times[s]!));
    for (const e of this.entries.values()) {
      const values = new Float32Array(cap * F).fill(NaN);
      keep.forEach((s, i) => values.set(e.values.subarray(s * F, s * F + F), i * F));
      e.values = values;
    }
    this.times = times;
    this.capacity = cap;
    this.count = keep.length;
    this.head = keep.length % cap;
  }

  /** Filled slots, oldest first. */
  private slots(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.count; i++) out.push((this.head - this.count + i + this.capacity) % this.capacity);
    return out;
  }

  /** The oldest time (ms) still in the window. */
  private oldest(): number {
    if (!this.count) return Infinity;
    const newest = this.times[(this.head - 1 + this.capacity) % this.capacity]!;
    const first = this.times[this.slots()[0]!]!;
    return Math.max(first, newest - this.windowSeconds * 1000);
  }

  /** Endpoints held. */
  get size(): number {
    return this.entries.size;
  }

  /** Bytes of the value arrays and the time ring (labels not counted). */
  bytes(): number {
    let n = this.times.byteLength;
    for (const e of this.entries.values()) n += e.values.byteLength;
    return n;
  }

  /**
   * The history as the dashboard reads it: samples newer than `sinceMs` (all in the window when
   * absent) of the endpoints in `namespace` (all when absent), endpoints sorted by key.
   */
  report(opts: { namespace?: string; sinceMs?: number } = {}): HistoryReport {
    const { head, endpoints } = this.stream(opts);
    return { ...head, endpoints: [...endpoints] };
  }

  /**
   * `report` in parts: the head now, the endpoints one at a time (the HTTP route serializes them
   * in batches and yields the event loop between them). A slot overwritten by a sample taken
   * while the endpoints are being read comes out as null rather than as another time's value.
   */
  stream(opts: { namespace?: string; sinceMs?: number } = {}): {
    head: Omit<HistoryReport, 'endpoints'>;
    endpoints: Iterable<HistoryEndpoint>;
  } {
    const oldest = this.oldest();
    const slots = this.slots().filter((s) => this.times[s]! >= oldest && (opts.sinceMs === undefined || this.times[s]! > opts.sinceMs));
    const at = slots.map((s) => this.times[s]!);
    const keys = [...this.entries.keys()].sort();
    const head = {
      node: this.node,
      windowSeconds: this.windowSeconds,
      intervalSeconds: this.intervalSeconds,
      t: at.map((ms) => ms / 1000),
    };
    return { head, endpoints: this.endpointsAt(keys, slots, at, opts.namespace) };
  }

  private *endpointsAt(keys: string[], slots: number[], at: number[], namespace: string | undefined): Generator<HistoryEndpoint> {
    for (const key of keys) {
      const e = this.entries.get(key);
      if (!e || (namespace !== undefined && e.labels.namespace !== namespace)) continue;
      const live = slots.map((s, j) => this.times[s] === at[j]);
      const series = {} as Record<SeriesName, Array<number | null>>;
      const v = e.values;
      for (let i = 0; i < F; i++) {
        const out = new Array<number | null>(slots.length);
        for (let j = 0; j < slots.length; j++) out[j] = live[j] ? round4(v[slots[j]! * F + i]!) : null;
        series[SERIES[i]!] = out;
      }
      yield { key, ...e.labels, hostInterface: e.hostInterface, ips: e.ips, limitBitsPerSecond: e.limitBitsPerSecond, series };
    }
  }
}
