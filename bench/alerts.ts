/**
 * Alert engine benchmark (figures printed, not asserted; no kernel, no network): one evaluation
 * of the default rules over BENCH_AL_ENDPOINTS endpoints (default 500) × the 6 gauges the
 * sampler reports per endpoint, as the agent runs it every `evaluationInterval` — with every
 * endpoint normal, and with BENCH_AL_FIRING (default 10 %) of them firing all three rules and
 * an Alertmanager and a webhook (a fetch that answers at once) to notify. Prints the time per
 * evaluation (median, p95, max over BENCH_ITER × 20 evaluations) and the CPU share that makes
 * at the default 5 s interval.
 *
 *   node --experimental-transform-types --no-warnings bench/alerts.ts
 */
import { AlertEvaluator, parseAlertsConfig } from '../agent/alerts/engine.ts';
import { Notifier } from '../agent/alerts/notify.ts';
import { Logger } from '../shared/cni/log.ts';
import type { Sample } from '../shared/monitoring.ts';
import { mdTable, ms, stats } from './lib.ts';

const N = Number(process.env.BENCH_AL_ENDPOINTS ?? 500);
const FIRING = Number(process.env.BENCH_AL_FIRING ?? 0.1);
const ITER = Number(process.env.BENCH_ITER ?? 10) * 20;
const METRICS = [
  'cni_ts_endpoint_bandwidth_utilization_ratio',
  'cni_ts_endpoint_error_ratio',
  'cni_ts_endpoint_latency_seconds',
  'cni_ts_endpoint_connections',
  'cni_ts_endpoint_receive_bytes_per_second',
  'cni_ts_endpoint_transmit_bytes_per_second',
];
const HIGH: Record<string, number> = {
  cni_ts_endpoint_bandwidth_utilization_ratio: 0.95,
  cni_ts_endpoint_error_ratio: 0.2,
  cni_ts_endpoint_latency_seconds: 0.3,
};

function samples(hot: number): Sample[] {
  const out: Sample[] = [];
  for (let i = 0; i < N; i++) {
    const labels = { namespace: `ns${i % 20}`, pod: `pod-${i}`, network: 'net1', interface: 'eth0', node: 'node1' };
    for (const metric of METRICS) out.push({ metric, labels, value: i < hot ? (HIGH[metric] ?? 1) : 0.01 });
  }
  return out;
}

function run(label: string, hot: number, notify: boolean): string[] {
  const cfg = parseAlertsConfig({
    rules: [
      { name: 'HighBandwidthUsage', for: '0s' },
      { name: 'HighErrorRate', for: '0s' },
      { name: 'HighLatency', for: '0s' },
    ],
    ...(notify ? { alertmanagers: ['http://127.0.0.1:9'], webhooks: ['http://127.0.0.1:9/hook'] } : {}),
  });
  const ev = new AlertEvaluator(cfg.rules);
  const fetchNow = (async () => new Response('', { status: 200 })) as typeof fetch;
  const n = new Notifier(cfg, new Logger('bench', { CNI_LOG_LEVEL: 'error' }), {
    node: 'node1',
    externalURL: 'http://127.0.0.1:9464',
    fetch: fetchNow,
  });
  const s = samples(hot);
  let t = Date.now();
  const times: number[] = [];
  for (let i = 0; i < ITER; i++) {
    t += 5000;
    const t0 = performance.now();
    const ts = ev.evaluate(s, t);
    n.dispatch(ts, ev.instancesNow());
    times.push(performance.now() - t0);
  }
  n.stop();
  const st = stats(times);
  return [
    label,
    String(s.length),
    String(ev.alerts().length),
    ms(st.median),
    ms(st.p95),
    ms(st.max),
    `${((st.median / 5000) * 100).toFixed(3)} %`,
  ];
}

const rows = [
  run('all normal', 0, false),
  run(`${FIRING * 100} % firing, no receivers`, Math.round(N * FIRING), false),
  run(`${FIRING * 100} % firing, Alertmanager + webhook`, Math.round(N * FIRING), true),
];
process.stdout.write(`alert engine, ${N} endpoints, default rules, ${ITER} evaluations each (Node ${process.version})\n\n`);
process.stdout.write(mdTable(['case', 'samples', 'alerts', 'evaluation median ms', 'p95 ms', 'max ms', 'CPU at 5 s (median)'], rows));
process.stdout.write('\n');
