/**
 * The host's one config file (`/etc/cni-ts/agent.json`), read by the agent, by `cnictl` and by
 * the `endpoint` plugin (its `agentConfig` key): it says where this host's cluster state lives
 * (`store`) and how the agent serves. See ../shared/design/node-agent.md.
 *
 * Which file: `--config FILE` (callers pass their argv to `configPathFrom`), else the
 * `CNI_TS_CONFIG` environment variable, else `/etc/cni-ts/agent.json`.
 *
 * Only `store` is required. The sections other issues add (`dns`, `alerts`, `overlay`,
 * `policy`, ...) are checked to be objects here and validated by their owners; unknown
 * top-level keys are kept (a newer file read by an older binary still loads).
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { CniError, ErrorCode } from './cni/errors.ts';
import { parseCIDR } from './ipnet.ts';
import type { StoreConfig } from './store/types.ts';

export const DEFAULT_AGENT_CONFIG = '/etc/cni-ts/agent.json';
export const CONFIG_ENV = 'CNI_TS_CONFIG';

export const AGENT_DEFAULTS = {
  listen: '127.0.0.1:9464',
  socket: '/run/cni-ts/agent.sock',
  clusterDomain: 'cluster.local',
  serviceCIDR: ['10.96.0.0/16'],
} as const;

export interface AgentConfig {
  /** the file it was read from ("" when parsed from a value) */
  source: string;
  store: StoreConfig;
  /** this host's node name (default: the hostname) */
  node: string;
  /** HTTP (metrics, API, health, dashboard): "host:port" */
  listen: string;
  /** unix socket for cnictl */
  socket: string;
  clusterDomain: string;
  serviceCIDR: string[];
  dns: Record<string, unknown>;
  alerts: Record<string, unknown>;
  overlay: Record<string, unknown>;
  policy: Record<string, unknown>;
  /** metrics sampling (issue 16): intervalSeconds, per-network capacity, latency probes */
  metrics: Record<string, unknown>;
  /** Docker's CNM plugin socket (issue 20) */
  docker: Record<string, unknown>;
  /** the file as written (for sections this module does not know) */
  raw: Record<string, unknown>;
}

/** Code 7 (invalid config) naming the file and the field. */
export class AgentConfigError extends CniError {
  constructor(source: string, field: string, why: string) {
    super(
      ErrorCode.InvalidConfig,
      `agent config ${source || '(value)'}: ${field ? `${field}: ` : ''}${why}`,
      field ? `field "${field}"` : '',
    );
    this.name = 'AgentConfigError';
  }
}

/**
 * The config file to read: `--config FILE` / `--config=FILE` in `argv`, else `$CNI_TS_CONFIG`,
 * else /etc/cni-ts/agent.json. Does not touch argv (see `takeConfigFlag` for that).
 */
export function configPathFrom(argv: readonly string[] = [], env: NodeJS.ProcessEnv = process.env): string {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--config' && argv[i + 1] !== undefined) return argv[i + 1] as string;
    if (a.startsWith('--config=')) return a.slice('--config='.length);
  }
  return env[CONFIG_ENV] || DEFAULT_AGENT_CONFIG;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function str(raw: Record<string, unknown>, key: string, source: string, field = key): string | undefined {
  const v = raw[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '') throw new AgentConfigError(source, field, 'must be a non-empty string');
  return v;
}

function section(raw: Record<string, unknown>, key: string, source: string): Record<string, unknown> {
  const v = raw[key];
  if (v === undefined) return {};
  if (!isObject(v)) throw new AgentConfigError(source, key, 'must be an object');
  return v;
}

const ENDPOINT = /^(https?:\/\/)?[^\s/]+(:[0-9]+)?\/?$/;

/** Validate a `store` value (the agent config's, or the overlay plugin's same-shaped key). */
export function parseStoreConfig(v: unknown, source: string, field = 'store'): StoreConfig {
  if (v === undefined)
    throw new AgentConfigError(
      source,
      field,
      'is required ({"type": "file", "path": "/var/lib/cni-ts/cluster"} or {"type": "etcd", "endpoints": [...]})',
    );
  if (!isObject(v)) throw new AgentConfigError(source, field, 'must be an object');
  if (v.type === 'file') {
    const p = str(v, 'path', source, `${field}.path`);
    if (!p) throw new AgentConfigError(source, `${field}.path`, 'is required for a file store');
    // relative to the config file's directory, so a config and its store can move together
    return { type: 'file', path: source && !path.isAbsolute(p) ? path.resolve(path.dirname(source), p) : p };
  }
  if (v.type === 'etcd') {
    const eps = v.endpoints;
    if (!Array.isArray(eps) || eps.length === 0)
      throw new AgentConfigError(source, `${field}.endpoints`, 'needs at least one endpoint ("https://10.0.0.1:2379")');
    eps.forEach((e, i) => {
      if (typeof e !== 'string' || !ENDPOINT.test(e))
        throw new AgentConfigError(source, `${field}.endpoints[${i}]`, `${JSON.stringify(e)} is not host:port or http(s)://host:port`);
    });
    const out: StoreConfig = { type: 'etcd', endpoints: eps as string[] };
    const prefix = str(v, 'prefix', source, `${field}.prefix`);
    if (prefix !== undefined) {
      if (!prefix.startsWith('/')) throw new AgentConfigError(source, `${field}.prefix`, 'must start with "/"');
      out.prefix = prefix;
    }
    for (const k of ['caFile', 'certFile', 'keyFile', 'username', 'password'] as const) {
      const s = str(v, k, source, `${field}.${k}`);
      if (s !== undefined) out[k] = k.endsWith('File') && source && !path.isAbsolute(s) ? path.resolve(path.dirname(source), s) : s;
    }
    if ((out.certFile === undefined) !== (out.keyFile === undefined))
      throw new AgentConfigError(source, `${field}.${out.certFile ? 'keyFile' : 'certFile'}`, 'certFile and keyFile go together');
    if ((out.username === undefined) !== (out.password === undefined))
      throw new AgentConfigError(source, `${field}.${out.username ? 'password' : 'username'}`, 'username and password go together');
    return out;
  }
  throw new AgentConfigError(source, `${field}.type`, `must be "file" or "etcd" (got ${JSON.stringify(v.type)})`);
}

/** Validate a parsed config; `source` names the file in errors and anchors relative paths. */
export function parseAgentConfig(raw: unknown, source = ''): AgentConfig {
  if (!isObject(raw)) throw new AgentConfigError(source, '', 'must be a JSON object');
  const store = parseStoreConfig(raw.store, source);
  const listen = str(raw, 'listen', source) ?? AGENT_DEFAULTS.listen;
  if (!/^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]*):\d{1,5}$/.test(listen) || Number(listen.slice(listen.lastIndexOf(':') + 1)) > 65535) {
    throw new AgentConfigError(source, 'listen', `${JSON.stringify(listen)} is not host:port ("127.0.0.1:9464", "[::1]:9464")`);
  }
  const socket = str(raw, 'socket', source) ?? AGENT_DEFAULTS.socket;
  if (!path.isAbsolute(socket)) throw new AgentConfigError(source, 'socket', 'must be an absolute path');
  let serviceCIDR: string[] = [...AGENT_DEFAULTS.serviceCIDR];
  if (raw.serviceCIDR !== undefined) {
    const v = typeof raw.serviceCIDR === 'string' ? [raw.serviceCIDR] : raw.serviceCIDR;
    if (!Array.isArray(v)) throw new AgentConfigError(source, 'serviceCIDR', 'must be a list of CIDRs');
    v.forEach((c, i) => {
      if (typeof c !== 'string' || !parseCIDR(c))
        throw new AgentConfigError(source, `serviceCIDR[${i}]`, `${JSON.stringify(c)} is not a CIDR`);
    });
    serviceCIDR = v as string[];
  }
  return {
    source,
    store,
    node: str(raw, 'node', source) ?? hostname(),
    listen,
    socket,
    clusterDomain: str(raw, 'clusterDomain', source) ?? AGENT_DEFAULTS.clusterDomain,
    serviceCIDR,
    dns: section(raw, 'dns', source),
    alerts: section(raw, 'alerts', source),
    overlay: section(raw, 'overlay', source),
    policy: section(raw, 'policy', source),
    metrics: section(raw, 'metrics', source),
    docker: section(raw, 'docker', source),
    raw,
  };
}

/**
 * Read and validate the agent config. A missing file is code 7 with the path (there is no
 * usable default store); unreadable is code 5; bad JSON code 6.
 */
export function loadAgentConfig(file: string = configPathFrom()): AgentConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT')
      throw new AgentConfigError(file, '', `no such file (write one with a "store" key, or point --config / ${CONFIG_ENV} at one)`);
    throw new CniError(ErrorCode.IOFailure, `agent config ${file}: cannot read it`, err.message);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new CniError(ErrorCode.DecodeFailure, `agent config ${file}: not valid JSON`, (e as Error).message);
  }
  return parseAgentConfig(raw, path.resolve(file));
}
