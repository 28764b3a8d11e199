/**
 * The agent config's `metrics` section (docs/monitoring.md):
 * ```json
 * "metrics": {
 *   "enabled": true,
 *   "intervalSeconds": 5,
 *   "capacity": {"net1": "1Gbit"},
 *   "defaultCapacity": "10Gbit",
 *   "latency": {"mode": "icmp", "timeoutMs": 1000, "maxProbesPerSample": 10, "concurrency": 4},
 *   "pluginCallsFile": "/run/cni-ts/plugin-calls.log",   (default: beside `socket`)
 *   "ipamDataDirs": ["/var/lib/cni/networks"]
 * }
 * ```
 * Invalid values are code 7 (AgentConfigError) naming the field.
 */
import path from 'node:path';
import { AgentConfigError, type AgentConfig } from '../../shared/agentconfig.ts';

export type LatencyMode = 'icmp' | 'tcp' | 'both' | 'off';

export interface MetricsSettings {
  enabled: boolean;
  intervalSeconds: number;
  /** bits/s by network name: the utilization denominator without a shaping limit */
  capacity: Record<string, number>;
  /** bits/s for networks not in `capacity`; undefined: no utilization without a limit */
  defaultCapacity?: number;
  latency: { mode: LatencyMode; timeoutMs: number; maxProbesPerSample: number; concurrency: number };
  /** where plugins append one record per call (shared/cni/calls.ts) */
  pluginCallsFile: string;
  /** host-local data directories to count allocations in */
  ipamDataDirs: string[];
}

export const METRICS_DEFAULTS = {
  intervalSeconds: 5,
  defaultCapacity: 10e9,
  latency: { mode: 'icmp' as LatencyMode, timeoutMs: 1000, maxProbesPerSample: 10, concurrency: 4 },
  pluginCallsFile: '/run/cni-ts/plugin-calls.log',
  ipamDataDirs: ['/var/lib/cni/networks'],
};

const UNITS: Record<string, number> = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9, tbit: 1e12, bps: 8, kbps: 8e3, mbps: 8e6, gbps: 8e9 };

/** "1Gbit", "100mbit", "500kbit", "1.5gbps" (bytes/s, as tc says), or a number of bits/s. */
export function parseBandwidth(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v > 0 ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
  if (!m) return undefined;
  const unit = m[2]!.toLowerCase() || 'bit';
  const f = UNITS[unit];
  const x = Number(m[1]) * (f ?? NaN);
  return Number.isFinite(x) && x > 0 ? x : undefined;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function metricsSettings(cfg: Pick<AgentConfig, 'metrics' | 'source'> & { socket?: string }): MetricsSettings {
  const m = cfg.metrics;
  const err = (field: string, why: string): AgentConfigError => new AgentConfigError(cfg.source, `metrics.${field}`, why);
  const known = ['enabled', 'intervalSeconds', 'capacity', 'defaultCapacity', 'latency', 'pluginCallsFile', 'ipamDataDirs'];
  for (const k of Object.keys(m)) if (!known.includes(k)) throw err(k, `unknown key (known: ${known.join(', ')})`);
  if (m.enabled !== undefined && typeof m.enabled !== 'boolean') throw err('enabled', 'must be true or false');
  let intervalSeconds = METRICS_DEFAULTS.intervalSeconds;
  if (m.intervalSeconds !== undefined) {
    if (typeof m.intervalSeconds !== 'number' || !(m.intervalSeconds >= 0.1) || m.intervalSeconds > 3600)
      throw err('intervalSeconds', 'must be a number of seconds between 0.1 and 3600');
    intervalSeconds = m.intervalSeconds;
  }
  const capacity: Record<string, number> = {};
  if (m.capacity !== undefined) {
    if (!isObject(m.capacity)) throw err('capacity', 'must be an object of network name → bandwidth ({"net1": "1Gbit"})');
    for (const [net, v] of Object.entries(m.capacity)) {
      const bits = parseBandwidth(v);
      if (bits === undefined)
        throw err(`capacity.${net}`, `${JSON.stringify(v)} is not a bandwidth ("1Gbit", "100Mbit", or bits/s as a number)`);
      capacity[net] = bits;
    }
  }
  let defaultCapacity: number | undefined = METRICS_DEFAULTS.defaultCapacity;
  if (m.defaultCapacity === null || m.defaultCapacity === false) defaultCapacity = undefined;
  else if (m.defaultCapacity !== undefined) {
    defaultCapacity = parseBandwidth(m.defaultCapacity);
    if (defaultCapacity === undefined)
      throw err(
        'defaultCapacity',
        `${JSON.stringify(m.defaultCapacity)} is not a bandwidth ("10Gbit"; null: no utilization without a limit)`,
      );
  }
  const latency = { ...METRICS_DEFAULTS.latency };
  if (m.latency !== undefined) {
    if (!isObject(m.latency)) throw err('latency', 'must be an object ({"mode": "icmp", "timeoutMs": 1000})');
    const l = m.latency;
    for (const k of Object.keys(l))
      if (!['mode', 'timeoutMs', 'maxProbesPerSample', 'concurrency'].includes(k))
        throw err(`latency.${k}`, 'unknown key (known: mode, timeoutMs, maxProbesPerSample, concurrency)');
    if (l.mode !== undefined) {
      if (!['icmp', 'tcp', 'both', 'off'].includes(l.mode as string))
        throw err('latency.mode', `must be "icmp", "tcp", "both" or "off" (got ${JSON.stringify(l.mode)})`);
      latency.mode = l.mode as LatencyMode;
    }
    const int = (k: 'timeoutMs' | 'maxProbesPerSample' | 'concurrency', min: number, max: number): void => {
      const v = l[k];
      if (v === undefined) return;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
        throw err(`latency.${k}`, `must be an integer from ${min} to ${max}`);
      latency[k] = v;
    };
    int('timeoutMs', 100, 10_000);
    int('maxProbesPerSample', 0, 100_000);
    int('concurrency', 1, 64);
  }
  // beside the agent's socket (/run/cni-ts/agent.sock → /run/cni-ts/plugin-calls.log, where the
  // plugins write by default): an agent with a private socket directory keeps its file there
  let pluginCallsFile = cfg.socket ? path.join(path.dirname(cfg.socket), 'plugin-calls.log') : METRICS_DEFAULTS.pluginCallsFile;
  if (m.pluginCallsFile !== undefined) {
    if (typeof m.pluginCallsFile !== 'string' || !m.pluginCallsFile.startsWith('/'))
      throw err('pluginCallsFile', 'must be an absolute path');
    pluginCallsFile = m.pluginCallsFile;
  }
  let ipamDataDirs = [...METRICS_DEFAULTS.ipamDataDirs];
  if (m.ipamDataDirs !== undefined) {
    if (!Array.isArray(m.ipamDataDirs) || m.ipamDataDirs.some((d) => typeof d !== 'string' || !d.startsWith('/')))
      throw err('ipamDataDirs', 'must be a list of absolute paths (host-local dataDir values)');
    ipamDataDirs = m.ipamDataDirs as string[];
  }
  return { enabled: m.enabled !== false, intervalSeconds, capacity, defaultCapacity, latency, pluginCallsFile, ipamDataDirs };
}
