/**
 * What libcni does for a runtime, on one network list: ADD/CHECK/DEL/GC/STATUS over the chain,
 * config injection (name, cniVersion, prevResult, runtimeConfig by declared capability), and
 * the attachment cache. Usable as a library (tests, benchmarks) and behind the `cnitool` CLI.
 */
import { asCniError, CniError, ErrorCode } from '../cni/errors.ts';
import { parseResult, renderResult } from '../cni/result.ts';
import type { Attachment } from '../cni/types.ts';
import { atLeast } from '../cni/version.ts';
import { cacheEntry, deleteCache, listCache, readCachedResult, validateAttachment, writeCache, type CacheEntry } from './cache.ts';
import type { NetworkList, PluginConf } from './conf.ts';
import { execPlugin, type ExecOptions } from './invoke.ts';

export interface RuntimeConf {
  containerId: string;
  netns: string;
  ifname: string;
  /** CNI_ARGS pairs */
  args: Array<[string, string]>;
  /** Capability arguments; each plugin receives the ones it declares in `capabilities`. */
  capabilityArgs: Record<string, unknown>;
}

export interface ToolOptions extends ExecOptions {
  cacheDir: string;
  /** On a failed ADD, DEL the whole chain in reverse (default true). */
  rollback?: boolean;
}

/** A chain step failed: keeps the plugin's code; `also` holds failures of the cleanup after it. */
export class ChainError extends CniError {
  readonly step: string;
  readonly inner: CniError;
  readonly also: CniError[];
  constructor(step: string, inner: CniError, also: CniError[] = []) {
    super(inner.code, `${step}: ${inner.message}`, inner.details);
    this.name = 'ChainError';
    this.step = step;
    this.inner = inner;
    this.also = also;
  }
}

export function describePlugin(p: PluginConf, list: NetworkList): string {
  return `type="${p.type}" name="${list.name}"`;
}

/** libcni's buildOneConfig + injectRuntimeConfig (pure). */
export function buildPluginConfig(
  list: NetworkList,
  plugin: PluginConf,
  prevResult: Record<string, unknown> | undefined,
  capabilityArgs: Record<string, unknown>,
): Record<string, unknown> {
  const conf: Record<string, unknown> = { ...plugin, name: list.name, cniVersion: list.cniVersion };
  if (prevResult) conf.prevResult = prevResult;
  const rc: Record<string, unknown> = {};
  for (const [cap, on] of Object.entries(plugin.capabilities ?? {})) {
    if (on === true && capabilityArgs[cap] !== undefined && capabilityArgs[cap] !== null) rc[cap] = capabilityArgs[cap];
  }
  if (Object.keys(rc).length) conf.runtimeConfig = rc;
  return conf;
}

const execArgs = (rt: RuntimeConf) => ({ containerId: rt.containerId, netns: rt.netns, ifname: rt.ifname, args: rt.args });

/** ADD every plugin in order, chaining results; cache the final result. */
export async function addNetworkList(list: NetworkList, rt: RuntimeConf, opts: ToolOptions): Promise<Record<string, unknown>> {
  validateAttachment(list.name, rt.containerId, rt.ifname);
  let result: Record<string, unknown> | undefined;
  for (const p of list.plugins) {
    try {
      result = await execPlugin(p.type, 'ADD', buildPluginConfig(list, p, result, rt.capabilityArgs), execArgs(rt), opts);
    } catch (e) {
      const also = opts.rollback === false ? [] : await rollback(list, rt, result, opts);
      throw new ChainError(`plugin ${describePlugin(p, list)} failed (add)`, asCniError(e), also);
    }
  }
  const final = result ?? { cniVersion: list.cniVersion };
  try {
    writeCache(
      opts.cacheDir,
      cacheEntry({
        network: list.name,
        listBytes: list.bytes,
        containerId: rt.containerId,
        ifname: rt.ifname,
        netns: rt.netns,
        args: rt.args,
        capabilityArgs: rt.capabilityArgs,
        result: final,
      }),
    );
  } catch (e) {
    const also = opts.rollback === false ? [] : await rollback(list, rt, final, opts);
    throw new ChainError(`failed to set network "${list.name}" cached result`, asCniError(e), also);
  }
  return final;
}

/** After a failed ADD: DEL the whole chain in reverse (what a runtime does), best effort. */
async function rollback(
  list: NetworkList,
  rt: RuntimeConf,
  last: Record<string, unknown> | undefined,
  opts: ToolOptions,
): Promise<CniError[]> {
  const errs: CniError[] = [];
  for (const p of [...list.plugins].reverse()) {
    try {
      await execPlugin(
        p.type,
        'DEL',
        buildPluginConfig(list, p, atLeast(list.cniVersion, '0.4.0') ? last : undefined, rt.capabilityArgs),
        execArgs(rt),
        opts,
      );
    } catch (e) {
      errs.push(new ChainError(`rollback: plugin ${describePlugin(p, list)} failed (delete)`, asCniError(e)));
    }
  }
  return errs;
}

/** The cached result of an attachment, converted to the list's version (libcni GetAsVersion). */
export function cachedResult(
  list: NetworkList,
  rt: Pick<RuntimeConf, 'containerId' | 'ifname'>,
  cacheDir: string,
): Record<string, unknown> | undefined {
  const raw = readCachedResult(cacheDir, list.name, rt.containerId, rt.ifname);
  if (!raw) return undefined;
  if (raw.cniVersion === list.cniVersion) return raw;
  return renderResult(parseResult(raw, typeof raw.cniVersion === 'string' ? raw.cniVersion : list.cniVersion), list.cniVersion);
}

export type CheckOutcome = 'checked' | 'disabled';

/** CHECK every plugin in order with the cached result as prevResult; honours disableCheck. */
export async function checkNetworkList(list: NetworkList, rt: RuntimeConf, opts: ToolOptions): Promise<CheckOutcome> {
  if (!atLeast(list.cniVersion, '0.4.0')) {
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      `configuration version "${list.cniVersion}" does not support the CHECK command`,
      'CHECK needs cniVersion 0.4.0 or later',
    );
  }
  validateAttachment(list.name, rt.containerId, rt.ifname);
  if (list.disableCheck) return 'disabled';
  const prev = cachedResult(list, rt, opts.cacheDir);
  if (!prev) {
    throw new CniError(
      ErrorCode.UnknownContainer,
      `no cached result for network "${list.name}" container "${rt.containerId}" ifname "${rt.ifname}"`,
      `nothing under ${opts.cacheDir}/results: was it added with this cache dir?`,
    );
  }
  for (const p of list.plugins) {
    try {
      await execPlugin(p.type, 'CHECK', buildPluginConfig(list, p, prev, rt.capabilityArgs), execArgs(rt), opts);
    } catch (e) {
      throw new ChainError(`plugin ${describePlugin(p, list)} failed (check)`, asCniError(e));
    }
  }
  return 'checked';
}

/**
 * `rt` with the cached attachment's capability args when none were given: a runtime passes the
 * ADD's ones again on DEL, a person running `cnitool del` by hand does not, and portmap DEL
 * without its portMappings has nothing to remove (the reference's plugins#510 rule).
 */
function withCachedCapabilities(list: NetworkList, rt: RuntimeConf, cacheDir: string): RuntimeConf {
  if (Object.keys(rt.capabilityArgs).length) return rt;
  const e = listCache(cacheDir, list.name).find((x) => x.containerId === rt.containerId && x.ifName === rt.ifname);
  return e?.capabilityArgs && Object.keys(e.capabilityArgs).length ? { ...rt, capabilityArgs: e.capabilityArgs } : rt;
}

/**
 * DEL every plugin in reverse with the cached result as prevResult (0.4.0+). Keeps going past
 * a failing plugin so the others still release what they hold; the cache entry is removed
 * only when every plugin succeeded, so a retry still has prevResult.
 */
export async function delNetworkList(list: NetworkList, given: RuntimeConf, opts: ToolOptions): Promise<void> {
  validateAttachment(list.name, given.containerId, given.ifname);
  const rt = withCachedCapabilities(list, given, opts.cacheDir);
  let prev: Record<string, unknown> | undefined;
  if (atLeast(list.cniVersion, '0.4.0')) {
    try {
      prev = cachedResult(list, rt, opts.cacheDir);
    } catch {
      deleteCache(opts.cacheDir, list.name, rt.containerId, rt.ifname);
      prev = undefined;
    }
  }
  const errs: ChainError[] = [];
  for (const p of [...list.plugins].reverse()) {
    try {
      await execPlugin(p.type, 'DEL', buildPluginConfig(list, p, prev, rt.capabilityArgs), execArgs(rt), opts);
    } catch (e) {
      errs.push(new ChainError(`plugin ${describePlugin(p, list)} failed (delete)`, asCniError(e)));
    }
  }
  if (errs.length) throw new ChainError(errs[0].step, errs[0].inner, errs.slice(1));
  deleteCache(opts.cacheDir, list.name, rt.containerId, rt.ifname);
}

export interface GcReport {
  skipped?: string;
  /** Cached attachments that were not valid and were deleted. */
  deleted: Attachment[];
  /** What plugins were told is valid. */
  valid: Attachment[];
  /** Plugin types that ran GC. */
  collected: string[];
  errors: CniError[];
}

const key = (a: Attachment): string => `${a.containerID}\0${a.ifname}`;

/** A cache record as the runtime config that added it. */
export function runtimeFromCache(e: CacheEntry): RuntimeConf {
  return {
    containerId: e.containerId,
    netns: e.netns ?? '',
    ifname: e.ifName,
    args: e.cniArgs ?? [],
    capabilityArgs: e.capabilityArgs ?? {},
  };
}

/**
 * libcni's GCNetworkList: DEL the cached attachments of this network that are not in `valid`,
 * then (1.1.0+) GC every plugin with `cni.dev/valid-attachments` and `cni.dev/attachments`.
 * Keeps going on errors; honours disableGC.
 */
export async function gcNetworkList(list: NetworkList, valid: Attachment[], opts: ToolOptions): Promise<GcReport> {
  const report: GcReport = { deleted: [], valid, collected: [], errors: [] };
  if (list.disableGC) return { ...report, skipped: 'disableGC is set' };
  const validKeys = new Set(valid.map(key));
  for (const e of listCache(opts.cacheDir, list.name)) {
    const a = { containerID: e.containerId, ifname: e.ifName };
    if (validKeys.has(key(a))) continue;
    try {
      await delNetworkList(list, runtimeFromCache(e), opts);
      report.deleted.push(a);
    } catch (err) {
      report.errors.push(new ChainError(`failed to delete stale attachment ${a.containerID} ${a.ifname}`, asCniError(err)));
    }
  }
  if (!atLeast(list.cniVersion, '1.1.0')) return { ...report, skipped: `plugin GC needs cniVersion 1.1.0, network is ${list.cniVersion}` };
  const attachments = valid.map((a) => ({ containerID: a.containerID, ifname: a.ifname }));
  for (const p of list.plugins) {
    const conf = {
      ...buildPluginConfig(list, p, undefined, {}),
      'cni.dev/valid-attachments': attachments,
      'cni.dev/attachments': attachments,
    };
    try {
      await execPlugin(p.type, 'GC', conf, {}, opts);
      report.collected.push(p.type);
    } catch (e) {
      report.errors.push(new ChainError(`failed to GC plugin ${p.type}`, asCniError(e)));
    }
  }
  return report;
}

export interface PluginStatus {
  type: string;
  ok: boolean;
  error?: CniError;
}

/** STATUS of every plugin (1.1.0+); every plugin is asked so people see each one's state. */
export async function statusNetworkList(list: NetworkList, opts: ToolOptions): Promise<{ skipped?: string; plugins: PluginStatus[] }> {
  if (!atLeast(list.cniVersion, '1.1.0')) return { skipped: `STATUS needs cniVersion 1.1.0, network is ${list.cniVersion}`, plugins: [] };
  const plugins: PluginStatus[] = [];
  for (const p of list.plugins) {
    try {
      await execPlugin(p.type, 'STATUS', buildPluginConfig(list, p, undefined, {}), {}, opts);
      plugins.push({ type: p.type, ok: true });
    } catch (e) {
      plugins.push({ type: p.type, ok: false, error: asCniError(e) });
    }
  }
  return { plugins };
}
