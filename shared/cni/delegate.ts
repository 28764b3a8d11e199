/**
 * Delegation (spec section 4): find a plugin on CNI_PATH and execute it with the same
 * environment and the full config. When the file found is this very executable (a hard link
 * or symlink of the multi-call binary), the plugin runs in-process instead: same result, one
 * process start saved.
 */
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import { spawnCollect } from '../spawn.ts';
import { causeOf, CniError, DelegatedError, ErrorCode } from './errors.ts';
import type { Request } from './plugin.ts';
import { load } from './registry.ts';
import { parseResult } from './result.ts';
import { invoke, type Outcome } from './skel.ts';
import type { NetConfBase, Result } from './types.ts';

export type DelegateCommand = 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS';

/**
 * Types that attach interfaces or chain on a result, never IPAM plugins. Named as `ipam.type`
 * they would delegate to themselves for ever (bridge -> bridge -> ...): refused with code 7.
 */
export const NOT_IPAM = new Set([
  'bridge',
  'host-device',
  'overlay',
  'portmap',
  'loopback',
  'cnitool',
  'cni-ts',
  'macvlan',
  'ipvlan',
  'ptp',
  'vlan',
  'tap',
  'dummy',
  'vrf',
  'tuning',
  'bandwidth',
  'firewall',
  'sbr',
]);

/** Delegation depth, passed on to every delegate (in-process and exec'd alike). */
export const DEPTH_ENV = 'CNI_TS_DELEGATION_DEPTH';
/** overlay -> bridge -> host-local is 2 deep; anything past this is a loop. */
export const MAX_DELEGATION_DEPTH = 4;

function depthOf(env: NodeJS.ProcessEnv): number {
  const n = Number(env[DEPTH_ENV] ?? 0);
  return Number.isSafeInteger(n) && n >= 0 ? n : MAX_DELEGATION_DEPTH;
}

/** The config's `ipam.type`, refused (code 7) when it names an interface or chained plugin. */
export function ipamTypeOf(req: Request<NetConfBase>): string | undefined {
  const type = req.config.ipam?.type;
  if (type && NOT_IPAM.has(type)) {
    throw new CniError(
      ErrorCode.InvalidConfig,
      `invalid network config: ipam.type: "${type}" is not an IPAM plugin`,
      'field "ipam.type"; an interface or chained plugin as IPAM would delegate to itself for ever',
    );
  }
  return type;
}

let selfId: string | undefined;
function selfIdentity(): string {
  if (selfId === undefined) {
    try {
      const st = statSync(process.execPath);
      selfId = `${st.dev}:${st.ino}`;
    } catch {
      selfId = '';
    }
  }
  return selfId;
}

/** In-process delegation can be turned off (tests of the out-of-process path, debugging). */
const inProcessAllowed = (env: NodeJS.ProcessEnv): boolean => env.CNI_TS_NO_INPROCESS !== '1';

export function findInPath(type: string, dirs: string[]): string | undefined {
  if (!type || type.includes('/') || type.includes('\0') || type === '.' || type === '..') return undefined;
  for (const dir of dirs) {
    const p = path.join(dir, type);
    try {
      accessSync(p, constants.X_OK);
      if (statSync(p).isFile()) return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

async function execDelegate(
  file: string,
  type: string,
  env: NodeJS.ProcessEnv,
  stdin: string,
  req: Request<NetConfBase>,
): Promise<Outcome> {
  if (inProcessAllowed(env) && selfIdentity()) {
    const st = statSync(file);
    if (`${st.dev}:${st.ino}` === selfIdentity()) {
      const plugin = await load(type);
      if (plugin) return invoke(plugin, env, stdin, req.log.withPrefix(type));
    }
  }
  const r = await spawnCollect(file, [], { input: stdin, env, timeoutMs: 120_000 });
  if (r.stderr) req.log.debug(`${type} stderr: ${r.stderr.trimEnd()}`);
  if (r.exitCode === null) req.log.warn(`${type}: ${r.error ?? 'did not exit normally'}`);
  return { exitCode: r.exitCode ?? 1, stdout: r.stdout };
}

/** The details of a delegate's error: the chain of delegates it came through, then its own details. */
function via(type: string, details: string): string {
  const m = /^via ([\w.-]+(?: > [\w.-]+)*)(?:; ([\s\S]*))?$/.exec(details);
  if (m) return `via ${type} > ${m[1]}${m[2] ? `; ${m[2]}` : ''}`;
  return `via ${type}${details ? `; ${details}` : ''}`;
}

/**
 * Execute delegate `type` for `command` with `config` (default: the request's config as
 * received). Returns the parsed result for ADD; throws the delegate's own error otherwise.
 */
export async function delegate(
  type: string,
  command: DelegateCommand,
  req: Request<NetConfBase>,
  config?: Record<string, unknown>,
): Promise<Result | undefined> {
  const file = findInPath(type, req.env.path);
  if (!file) {
    if (!req.env.path.length) {
      throw new CniError(ErrorCode.InvalidEnvironment, `CNI_PATH is required to find plugin "${type}"`, 'CNI_PATH is empty');
    }
    throw new CniError(ErrorCode.InvalidConfig, `failed to find plugin "${type}" in path`, `searched ${req.env.path.join(':')}`);
  }
  if (config === undefined && type === req.config.ipam?.type) ipamTypeOf(req);
  const depth = depthOf(req.rawEnv);
  if (depth >= MAX_DELEGATION_DEPTH) {
    throw new CniError(
      ErrorCode.InvalidConfig,
      `invalid network config: delegation to "${type}" would be ${depth + 1} levels deep (at most ${MAX_DELEGATION_DEPTH}): the plugins delegate to each other in a loop`,
      `${DEPTH_ENV}=${req.rawEnv[DEPTH_ENV] ?? ''}`,
    );
  }
  const env = { ...req.rawEnv, CNI_COMMAND: command, [DEPTH_ENV]: String(depth + 1) };
  const out = await execDelegate(file, type, env, JSON.stringify(config ?? req.raw), req);
  if (out.exitCode !== 0) {
    let parsed: { code?: unknown; msg?: unknown; details?: unknown } | undefined;
    try {
      parsed = JSON.parse(out.stdout) as typeof parsed;
    } catch {
      parsed = undefined;
    }
    if (parsed && typeof parsed.code === 'number') {
      throw new DelegatedError(
        parsed.code,
        causeOf(String(parsed.msg ?? `${type} ${command} failed`), [type]),
        via(type, typeof parsed.details === 'string' ? parsed.details : ''),
      );
    }
    throw new DelegatedError(
      ErrorCode.DelegateFailed,
      `${type} ${command} failed (exit ${out.exitCode})`,
      via(type, out.stdout.slice(0, 2000)),
    );
  }
  if (command !== 'ADD') return undefined;
  let json: unknown;
  try {
    json = JSON.parse(out.stdout);
  } catch (e) {
    throw new CniError(ErrorCode.DecodeFailure, `${type}: failed to decode its result`, (e as Error).message);
  }
  return parseResult(json, req.version);
}

/**
 * The IPAM ADD every interface plugin does: run it, and if the delegate itself fails, run its
 * DEL before returning the error so a half-made reservation never stays behind.
 */
export async function ipamAdd(req: Request<NetConfBase>): Promise<Result> {
  const type = req.config.ipam?.type;
  if (!type) throw new CniError(ErrorCode.InvalidConfig, 'invalid network config: ipam.type: is required', 'field "ipam.type"');
  try {
    return (await delegate(type, 'ADD', req)) ?? {};
  } catch (e) {
    await ipamDel(req).catch(() => undefined);
    throw e;
  }
}

export async function ipamDel(req: Request<NetConfBase>): Promise<void> {
  const type = req.config.ipam?.type;
  if (type && NOT_IPAM.has(type)) {
    // Nothing was ever allocated through it (ADD refuses it): teardown goes on without it.
    req.log.warn(`ipam.type "${type}" is not an IPAM plugin; no IPAM DEL`);
    return;
  }
  if (type) await delegate(type, 'DEL', req);
}

const inUse = new WeakSet<object>();

/**
 * Mark an ADD failure as "the reservation IPAM returned is in use by a live interface": the
 * IPAM ADD only handed back what that interface already held, so `withIpam` must not release it.
 */
export function reservationInUse<E extends object>(e: E): E {
  inUse.add(e);
  return e;
}

/**
 * Run `body` with the IPAM result; when it throws, release the reservation (IPAM DEL) before
 * rethrowing, so a failed ADD leaves no address behind, unless the body found the reservation
 * in use by a live interface (`reservationInUse`): a failed ADD undoes only what it made.
 */
export async function withIpam<T>(req: Request<NetConfBase>, body: (ipam: Result) => Promise<T>): Promise<T> {
  const ipam = await ipamAdd(req);
  try {
    return await body(ipam);
  } catch (e) {
    if (e && typeof e === 'object' && inUse.has(e)) {
      req.log.warn('ADD failed; the addresses IPAM returned are in use by a live interface: not released');
    } else {
      await ipamDel(req).catch((d: unknown) => req.log.warn(`IPAM DEL after failed ADD also failed: ${String(d)}`));
    }
    throw e;
  }
}
