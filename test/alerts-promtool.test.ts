/**
 * conf/prometheus/cni-ts-rules.yml: `promtool check rules` accepts it; its rules are the
 * engine's defaults (name, expression, for, severity); and `promtool test rules` on a series
 * history gives the same alerts, at the same evaluation times, with the same labels and
 * annotations as our own engine (agent/alerts/engine.ts) fed the same history.
 * Needs Debian's `prometheus` (promtool).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { AlertEvaluator, DEFAULT_RULES, parseAlertsConfig } from '../agent/alerts/engine.ts';
import { annotationsOf } from '../agent/alerts/notify.ts';
import type { Sample } from '../shared/monitoring.ts';
import { ROOT } from './helpers/run.ts';

const RULES = path.join(ROOT, 'conf', 'prometheus', 'cni-ts-rules.yml');
const promtool = spawnSync('promtool', ['--version']).status === 0 ? 'promtool' : undefined;
const noPromtool = promtool ? '' : 'promtool not installed (Debian package prometheus: scripts/setup-deps.sh test)';
if (noPromtool) console.log(`skipping: ${noPromtool}`);

interface PromRule {
  alert: string;
  expr: string;
  for: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'al-promtool-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the Prometheus rules file', () => {
  it.skipIf(!!noPromtool)('promtool check rules accepts it', () => {
    const r = spawnSync('promtool', ['check', 'rules', RULES], { encoding: 'utf8' });
    expect(r.stdout + r.stderr).toContain('SUCCESS: 3 rules found');
    expect(r.status).toBe(0);
  });

  it('holds the engine defaults: same names, expressions, for and severities', () => {
    const doc = parse(readFileSync(RULES, 'utf8')) as { groups: { rules: PromRule[] }[] };
    const rules = doc.groups.flatMap((g) => g.rules);
    expect(rules.map((r) => [r.alert, r.expr, r.for, r.labels])).toEqual(
      DEFAULT_RULES.map((d) => [d.name, `${d.metric} ${d.op} ${d.threshold}`, d.for, { severity: d.severity }]),
    );
  });

  it.skipIf(!!noPromtool)(
    'promtool test rules: Prometheus fires what our engine fires, when it fires it, with the same annotations',
    () => {
      const labels = (pod: string): Record<string, string> => ({ namespace: 'x', pod, network: 'net1', interface: 'eth0', node: 'n1' });
      // per 15 s step: a saturates from step 0; b's errors stay above 5 % for 3 steps only (never for 1m);
      // c's latency climbs to 150 ms; d is below every threshold
      const steps = 12;
      const series: { metric: string; pod: string; values: number[] }[] = [
        { metric: 'cni_ts_endpoint_bandwidth_utilization_ratio', pod: 'a', values: Array.from({ length: steps }, () => 0.9) },
        {
          metric: 'cni_ts_endpoint_error_ratio',
          pod: 'b',
          values: Array.from({ length: steps }, (_, i) => (i >= 2 && i < 5 ? 0.25 : 0.01)),
        },
        { metric: 'cni_ts_endpoint_error_ratio', pod: 'a', values: Array.from({ length: steps }, (_, i) => (i >= 4 ? 0.125 : 0)) },
        { metric: 'cni_ts_endpoint_latency_seconds', pod: 'c', values: Array.from({ length: steps }, (_, i) => (i >= 1 ? 0.15 : 0.02)) },
        { metric: 'cni_ts_endpoint_bandwidth_utilization_ratio', pod: 'd', values: Array.from({ length: steps }, () => 0.5) },
      ];
      const e = new AlertEvaluator(parseAlertsConfig({}).rules);
      const t0 = 0;
      const tests: {
        eval_time: string;
        alertname: string;
        exp_alerts: { exp_labels: Record<string, string>; exp_annotations: Record<string, string> }[];
      }[] = [];
      for (let i = 0; i < steps; i++) {
        const samples: Sample[] = series.map((s) => ({ metric: s.metric, labels: labels(s.pod), value: s.values[i]! }));
        e.evaluate(samples, t0 + i * 15_000);
        const firing = e.instancesNow().filter((a) => a.state === 'firing');
        for (const r of DEFAULT_RULES) {
          tests.push({
            eval_time: `${i * 15}s`,
            alertname: r.name,
            exp_alerts: firing
              .filter((a) => a.rule.name === r.name)
              .map((a) => ({ exp_labels: a.labels, exp_annotations: annotationsOf(a) })),
          });
        }
      }
      // our engine must fire something for the comparison to mean anything
      const fired = new Set(
        tests.filter((t) => t.exp_alerts.length).map((t) => `${t.alertname} ${t.exp_alerts.map((a) => a.exp_labels.pod).join()}`),
      );
      expect([...fired].sort()).toEqual(['HighBandwidthUsage a', 'HighErrorRate a', 'HighLatency c']);
      const testFile = path.join(dir, 'cni-ts-rules.test.yml');
      writeFileSync(
        testFile,
        stringify({
          rule_files: [RULES],
          evaluation_interval: '15s',
          tests: [
            {
              interval: '15s',
              input_series: series.map((s) => ({
                series: `${s.metric}{${Object.entries(labels(s.pod))
                  .map(([k, v]) => `${k}="${v}"`)
                  .join(',')}}`,
                values: s.values.join(' '),
              })),
              alert_rule_test: tests,
            },
          ],
        }),
      );
      const out = execFileSync('promtool', ['test', 'rules', testFile], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).toString();
      expect(out).toContain('SUCCESS');
    },
  );
});
