/**
 * Executing one plugin as a runtime does (libcni's invoke package): find it on CNI_PATH, run
 * it with execa (argv, environment, config on stdin; never a shell), decode its result or its
 * CNI error.
 */
import { execa } from 'execa';
import { findInPath } from '../cni/delegate.ts';
import { CniError, ErrorCode } from '../cni/errors.ts';

export type Verb = 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS' | 'VERSION';

export interface ExecOptions {
  /** Directories searched for plugins (CNI_PATH). */
  path: string[];
  /** Base environment (default process.env); CNI_* variables in it are replaced. */
  env?: NodeJS.ProcessEnv;
  /** Command prefix, e.g. ['nsenter', '--net=/run/netns/host1', '--'] (tests, benchmarks). */
  wrapper?: string[];
  timeoutMs?: number;
  /** Called after every plugin execution (tracing, benchmarks). */
  onExec?: (e: ExecRecord) => void;
  /**
   * Run the plugin without a process when this returns an outcome (the node agent runs the
   * plugins built into its own executable this way); undefined: execute it as usual.
   */
  inProcess?: (
    type: string,
    verb: Verb,
    stdin: string,
    env: Record<string, string>,
  ) => Promise<{ exitCode: number; stdout: string } | undefined>;
}

export interface ExecRecord {
  type: string;
  verb: Verb;
  exitCode: number;
  ms: number;
  pid?: number;
  stderr: string;
}

export interface ExecArgs {
  containerId?: string;
  netns?: string;
  ifname?: string;
  args?: Array<[string, string]>;
}

/** A plugin's failure, with the plugin named and its stderr kept for people. */
export class PluginError extends CniError {
  readonly plugin: string;
  readonly verb: Verb;
  readonly stderr: string;
  constructor(plugin: string, verb: Verb, code: number, msg: string, details: string, stderr: string) {
    super(code, msg, details);
    this.name = 'PluginError';
    this.plugin = plugin;
    this.verb = verb;
    this.stderr = stderr;
  }
}

/** The environment of one invocation (pure). */
export function pluginEnv(verb: Verb, a: ExecArgs, path: string[], base: NodeJS.ProcessEnv): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (v !== undefined && !k.startsWith('CNI_')) env[k] = v;
  env.CNI_COMMAND = verb;
  if (a.containerId) env.CNI_CONTAINERID = a.containerId;
  if (a.netns) env.CNI_NETNS = a.netns;
  if (a.ifname) env.CNI_IFNAME = a.ifname;
  if (a.args?.length) env.CNI_ARGS = a.args.map(([k, v]) => `${k}=${v}`).join(';');
  env.CNI_PATH = path.join(':');
  // keep the plugins' own logging settings, which are CNI_-prefixed but not protocol variables
  for (const k of ['CNI_LOG_FILE', 'CNI_LOG_LEVEL', 'CNI_TS_NO_INPROCESS', 'CNI_TS_TRACE'])
    if (base[k] !== undefined) env[k] = base[k] as string;
  return env;
}

/** The first executable file named `type` in `dirs` (libcni's FindInPath): the engine's own lookup. */
export { findInPath };

export function findPlugin(type: string, dirs: string[]): string {
  const file = findInPath(type, dirs);
  if (!file) {
    throw new CniError(
      ErrorCode.InvalidConfig,
      `failed to find plugin "${type}" in path [${dirs.join(' ')}]`,
      dirs.length ? `searched ${dirs.join(':')}` : 'CNI_PATH is empty',
    );
  }
  return file;
}

/** Run `type` for `verb`; returns the decoded stdout JSON for ADD and VERSION. */
export async function execPlugin(
  type: string,
  verb: Verb,
  config: Record<string, unknown>,
  a: ExecArgs,
  opts: ExecOptions,
): Promise<Record<string, unknown> | undefined> {
  const file = findPlugin(type, opts.path);
  const inProc =
    opts.inProcess && !opts.wrapper?.length
      ? await opts.inProcess(type, verb, JSON.stringify(config), pluginEnv(verb, a, opts.path, opts.env ?? process.env))
      : undefined;
  if (inProc) return decodeOutcome(type, verb, inProc.exitCode, inProc.stdout, '', 'in-process');
  const [cmd, argv] = opts.wrapper?.length ? [opts.wrapper[0], [...opts.wrapper.slice(1), file]] : [file, []];
  const start = performance.now();
  const child = execa(cmd, argv, {
    input: JSON.stringify(config),
    env: pluginEnv(verb, a, opts.path, opts.env ?? process.env),
    extendEnv: false,
    reject: false,
    stripFinalNewline: false,
    timeout: opts.timeoutMs ?? 300_000,
  });
  const pid = child.pid;
  const r = await child;
  const stdout = String(r.stdout ?? '');
  const stderr = String(r.stderr ?? '').trimEnd();
  const exitCode = r.exitCode ?? -1;
  opts.onExec?.({ type, verb, exitCode, ms: performance.now() - start, pid, stderr });
  const why = r.timedOut
    ? 'timed out'
    : r.signal
      ? `killed by ${r.signal}`
      : r.exitCode === undefined
        ? (r.shortMessage ?? 'could not be started')
        : `exit status ${exitCode}`;
  return decodeOutcome(type, verb, exitCode, stdout, stderr, why);
}

/** A plugin's exit status and stdout as its result, or its CNI error (a PluginError). */
function decodeOutcome(
  type: string,
  verb: Verb,
  exitCode: number,
  stdout: string,
  stderr: string,
  why: string,
): Record<string, unknown> | undefined {
  if (exitCode !== 0) {
    let e: { code?: unknown; msg?: unknown; details?: unknown } | undefined;
    try {
      e = JSON.parse(stdout) as typeof e;
    } catch {
      e = undefined;
    }
    if (e && typeof e.code === 'number') {
      throw new PluginError(type, verb, e.code, String(e.msg ?? ''), typeof e.details === 'string' ? e.details : '', stderr);
    }
    throw new PluginError(
      type,
      verb,
      ErrorCode.DelegateFailed,
      `plugin failed without a CNI error (${why})`,
      stdout.trim().slice(0, 2000),
      stderr,
    );
  }
  if (verb !== 'ADD' && verb !== 'VERSION') return undefined;
  try {
    const v = JSON.parse(stdout) as unknown;
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new PluginError(
      type,
      verb,
      ErrorCode.DecodeFailure,
      `failed to decode the ${verb} result`,
      `${(e as Error).message}: ${stdout.slice(0, 500)}`,
      stderr,
    );
  }
}
