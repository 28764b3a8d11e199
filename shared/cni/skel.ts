/**
 * The protocol engine: one entry for every plugin. It reads the environment and stdin, checks
 * them as the spec requires, validates the config, converts prevResult and the result between
 * spec versions, dispatches to the plugin's verb, and renders errors as the spec's JSON.
 */
import { fstatSync, readSync } from 'node:fs';
import { writeStderr, writeStdout } from '../stdio.ts';
import { recordCall } from './calls.ts';
import { parseEnv, parseCommand, type Command } from './env.ts';
import { asCniError, CniError, DelegatedError, ErrorCode } from './errors.ts';
import { Logger } from './log.ts';
import { trace } from '../trace.ts';
import type { Plugin, Request } from './plugin.ts';
import { parseResult, renderResult } from './result.ts';
import type { Attachment, NetConfBase } from './types.ts';
import { baseNetconfSchema, prepareValidators, validateNetconf } from './validate.ts';
import { atLeast, isSupported, LATEST, negotiate, SUPPORTED_VERSIONS } from './version.ts';

export const MAX_STDIN = 16 * 1024 * 1024;

export interface Outcome {
  exitCode: number;
  stdout: string;
}

const MIN_VERSION: Partial<Record<Command, string>> = { CHECK: '0.4.0', GC: '1.1.0', STATUS: '1.1.0' };

function decode(stdin: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdin);
  } catch (e) {
    throw new CniError(ErrorCode.DecodeFailure, 'failed to decode network config from stdin', (e as Error).message);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new CniError(ErrorCode.DecodeFailure, 'failed to decode network config from stdin', 'the config must be a JSON object');
  }
  return parsed as Record<string, unknown>;
}

/** Best-effort peek at the config version, for the cniVersion of an error reply. */
function peekVersion(stdin: string): string {
  try {
    const v = (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion;
    return isSupported(v) ? v : LATEST;
  } catch {
    return LATEST;
  }
}

function attachmentsOf(raw: Record<string, unknown>): Attachment[] {
  const seen = new Set<string>();
  const out: Attachment[] = [];
  for (const key of ['cni.dev/valid-attachments', 'cni.dev/attachments']) {
    const list = raw[key];
    if (!Array.isArray(list)) continue;
    for (const a of list as Attachment[]) {
      const k = `${a.containerID}\0${a.ifname}`;
      if (seen.has(k)) continue;
      seen.add(k);
      out.push({ containerID: a.containerID, ifname: a.ifname });
    }
  }
  return out;
}

/**
 * Run one plugin invocation without touching the process: used by `pluginMain` and by
 * in-process delegation, so both produce byte-identical output.
 */
export async function invoke<C extends NetConfBase>(
  plugin: Plugin<C>,
  rawEnv: NodeJS.ProcessEnv,
  stdin: string,
  log?: Logger,
): Promise<Outcome> {
  const logger = log ?? new Logger(plugin.name, rawEnv);
  let errVersion = peekVersion(stdin);
  try {
    const command = parseCommand(rawEnv.CNI_COMMAND);
    if (command === 'VERSION') {
      let asked: unknown;
      try {
        asked = stdin.trim() ? (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion : undefined;
      } catch {
        asked = undefined;
      }
      const cniVersion = isSupported(asked) ? asked : LATEST;
      return { exitCode: 0, stdout: JSON.stringify({ cniVersion, supportedVersions: SUPPORTED_VERSIONS }) };
    }
    const env = parseEnv(rawEnv);
    const raw = decode(stdin);
    const version = negotiate(raw.cniVersion, raw.cniVersions);
    errVersion = version;
    const min = MIN_VERSION[command];
    if (min && !atLeast(version, min)) {
      throw new CniError(
        ErrorCode.IncompatibleVersion,
        `config version does not allow ${command}`,
        `${command} needs cniVersion ${min} or later, config is ${version}`,
      );
    }
    if (command === 'CHECK' && (raw.prevResult === undefined || raw.prevResult === null)) {
      // The spec makes prevResult part of every CHECK (0.4.0+): refused before any work, for every plugin.
      throw new CniError(ErrorCode.InvalidConfig, 'invalid network config: prevResult: is required for CHECK', 'field "prevResult"');
    }
    logger.configure(raw);
    plugin.normalize?.(raw, command);
    await prepareValidators([[baseNetconfSchema], [plugin.schema, plugin.name]]);
    // DEL validates only what it needs (a field the schema refuses is dropped, with a warning).
    const config = validateNetconf<C>(raw, plugin.schema, plugin.name, command === 'DEL' ? (m) => logger.warn(m) : undefined);
    const prevResult = raw.prevResult !== undefined ? parseResult(raw.prevResult, version) : undefined;
    const base = { env, rawEnv, raw, version, prevResult, log: logger };
    plugin.validateConfig?.(config, base);
    const req: Request<C> = { ...base, config };
    trace(`${plugin.name} ${command}: config validated`);
    logger.debug(`${command} container=${env.containerId} ifname=${env.ifname} netns=${env.netns}`);
    switch (command) {
      case 'ADD': {
        const result = await plugin.add(req);
        return { exitCode: 0, stdout: JSON.stringify(renderResult(result, version)) };
      }
      case 'DEL':
        await plugin.del(req);
        return { exitCode: 0, stdout: '' };
      case 'CHECK':
        await plugin.check(req);
        return { exitCode: 0, stdout: '' };
      case 'GC':
        if (plugin.gc) await plugin.gc({ ...req, validAttachments: attachmentsOf(raw) });
        return { exitCode: 0, stdout: '' };
      case 'STATUS':
        if (plugin.status) await plugin.status(req);
        return { exitCode: 0, stdout: '' };
    }
  } catch (e) {
    let err = asCniError(e);
    // A delegate's error names the plugin the runtime called, once, then the cause.
    if (err instanceof DelegatedError) err = new CniError(err.code, `${plugin.name}: ${err.message}`, err.details);
    if (err.code === ErrorCode.Internal) logger.error(e instanceof Error && e.stack ? e.stack : String(e));
    else logger.info(`error ${err.code}: ${err.message}${err.details ? ` (${err.details})` : ''}`);
    return { exitCode: 1, stdout: JSON.stringify(err.toJSON(errVersion)) };
  }
  return { exitCode: 1, stdout: '' };
}

let sleeper: Int32Array | undefined;

function stdinIsTerminal(): boolean {
  try {
    return fstatSync(0).isCharacterDevice();
  } catch {
    return false;
  }
}

/** Read all of stdin, up to MAX_STDIN bytes. */
export function readStdin(): string {
  const chunks: Buffer[] = [];
  let total = 0;
  const buf = Buffer.allocUnsafe(65536);
  for (;;) {
    let n: number;
    try {
      n = readSync(0, buf, 0, buf.length, null);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') {
        // stdin is a non-blocking pipe with nothing in it yet: wait 1 ms, not a busy loop.
        Atomics.wait((sleeper ??= new Int32Array(new SharedArrayBuffer(4))), 0, 0, 1);
        continue;
      }
      if (code === 'EOF' || code === 'EBADF' || code === 'ENXIO') break;
      throw new CniError(ErrorCode.IOFailure, 'failed to read network config from stdin', (e as Error).message);
    }
    if (n === 0) break;
    total += n;
    if (total > MAX_STDIN) throw new CniError(ErrorCode.IOFailure, 'network config on stdin is too large', `more than ${MAX_STDIN} bytes`);
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  return Buffer.concat(chunks).toString('utf8');
}

export function aboutText(plugin: Plugin<never> | Plugin<NetConfBase>): string {
  return `${plugin.name}: ${plugin.about}\nCNI protocol versions supported: ${SUPPORTED_VERSIONS.join(', ')}\nThis is a CNI plugin: container runtimes execute it with CNI_COMMAND and the other CNI_* variables set and the network config on stdin.\n`;
}

/** The process entry of a plugin: like the reference's skel.PluginMain. */
export async function pluginMain<C extends NetConfBase>(plugin: Plugin<C>): Promise<void> {
  const env = process.env;
  if (!env.CNI_COMMAND) {
    writeStderr(aboutText(plugin as unknown as Plugin<NetConfBase>));
    process.exitCode = 0;
    return;
  }
  let stdin = '';
  let outcome: Outcome;
  const t0 = performance.now();
  try {
    // Never touch process.stdin: creating that stream makes fd 0 non-blocking.
    stdin = env.CNI_COMMAND === 'VERSION' && stdinIsTerminal() ? '' : readStdin();
    outcome = await invoke(plugin, env, stdin);
  } catch (e) {
    const err = asCniError(e);
    outcome = { exitCode: 1, stdout: JSON.stringify(err.toJSON(peekVersion(stdin))) };
  }
  if (outcome.stdout) writeStdout(outcome.stdout + '\n');
  process.exitCode = outcome.exitCode;
  // one small line for the agent's plugin-call metrics (shared/cni/calls.ts; never throws)
  const code = outcome.exitCode === 0 ? undefined : Number(/"code":\s*(\d+)/.exec(outcome.stdout)?.[1] ?? 999);
  recordCall(
    {
      t: Date.now(),
      plugin: plugin.name,
      verb: env.CNI_COMMAND,
      result: outcome.exitCode === 0 ? 'ok' : 'error',
      ...(code !== undefined ? { code } : {}),
      seconds: (performance.now() - t0) / 1000,
    },
    env,
  );
}
