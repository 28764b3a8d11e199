/**
 * The attachment cache, in libcni's format so ours and libcni's caches are interchangeable:
 * `<cacheDir>/results/<network>-<containerID>-<ifname>` holding
 * `{"kind":"cniCacheV1","containerId","config"(base64 of the list),"ifName","networkName",
 *   "netns","cniArgs":[[k,v]],"capabilityArgs",{...},"result":{...}}`.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ID_PATTERN, validIfname } from '../cni/env.ts';
import { CniError, ErrorCode } from '../cni/errors.ts';

export const DEFAULT_CACHE_DIR = '/var/lib/cni';
export const CACHE_KIND = 'cniCacheV1';

export interface CacheEntry {
  kind: typeof CACHE_KIND;
  containerId: string;
  /** base64 of the network list JSON (Go's encoding of []byte) */
  config: string;
  ifName: string;
  networkName: string;
  netns?: string;
  cniArgs?: Array<[string, string]>;
  capabilityArgs?: Record<string, unknown>;
  result?: Record<string, unknown>;
}

/**
 * Check the three names an attachment is known by, as libcni does (ValidateNetworkName,
 * ValidateContainerID, ValidateInterfaceName): they name files, so nothing else is accepted.
 */
export function validateAttachment(network: string, containerId: string, ifname: string): void {
  if (!network || !containerId || !ifname) {
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      'cache file path requires network name, container ID, and interface name',
      `network "${network}", container "${containerId}", ifname "${ifname}"`,
    );
  }
  if (typeof network !== 'string' || !ID_PATTERN.test(network))
    throw new CniError(ErrorCode.InvalidConfig, `invalid network name "${network}"`, `a network name must match ${ID_PATTERN.source}`);
  if (typeof containerId !== 'string' || !ID_PATTERN.test(containerId))
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      `invalid container ID "${containerId}"`,
      `a container ID must match ${ID_PATTERN.source}`,
    );
  if (!validIfname(ifname)) {
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      `invalid interface name "${ifname}"`,
      'an interface name is 1-15 bytes, not "." or "..", without "/", ":" or white space',
    );
  }
}

/** `<cacheDir>/results/<network>-<containerID>-<ifname>`, from validated names only, and inside that directory. */
export function cacheFile(cacheDir: string, network: string, containerId: string, ifname: string): string {
  validateAttachment(network, containerId, ifname);
  const dir = path.resolve(cacheDir, 'results');
  const file = path.resolve(dir, `${network}-${containerId}-${ifname}`);
  if (path.dirname(file) !== dir)
    throw new CniError(ErrorCode.InvalidEnvironment, `cache file of ${network}/${containerId}/${ifname} would be outside ${dir}`);
  return file;
}

/** Build the cache record of one successful ADD (pure). */
export function cacheEntry(a: {
  network: string;
  listBytes: string;
  containerId: string;
  ifname: string;
  netns: string;
  args: Array<[string, string]>;
  capabilityArgs: Record<string, unknown>;
  result: Record<string, unknown>;
}): CacheEntry {
  const e: CacheEntry = {
    kind: CACHE_KIND,
    containerId: a.containerId,
    config: Buffer.from(a.listBytes, 'utf8').toString('base64'),
    ifName: a.ifname,
    networkName: a.network,
  };
  if (a.netns) e.netns = a.netns;
  if (a.args.length) e.cniArgs = a.args;
  if (Object.keys(a.capabilityArgs).length) e.capabilityArgs = a.capabilityArgs;
  e.result = a.result;
  return e;
}

/** Write atomically (temp file + rename), directory 0700 and file 0600 as libcni does. */
export function writeCache(cacheDir: string, e: CacheEntry): string {
  const file = cacheFile(cacheDir, e.networkName, e.containerId, e.ifName);
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, JSON.stringify(e), { mode: 0o600 });
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new CniError(ErrorCode.IOFailure, `failed to write cached result ${file}: ${(err as Error).message}`);
  }
  return file;
}

export function deleteCache(cacheDir: string, network: string, containerId: string, ifname: string): void {
  rmSync(cacheFile(cacheDir, network, containerId, ifname), { force: true });
}

/**
 * The cached result of an attachment, or undefined when there is none. Like libcni, a file
 * that is not a cniCacheV1 record is read as a bare result (the pre-0.8 format).
 */
export function readCachedResult(
  cacheDir: string,
  network: string,
  containerId: string,
  ifname: string,
): Record<string, unknown> | undefined {
  let text: string;
  try {
    text = readFileSync(cacheFile(cacheDir, network, containerId, ifname), 'utf8');
  } catch {
    return undefined;
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new CniError(ErrorCode.DecodeFailure, `failed to parse cached result of network "${network}"`, (e as Error).message);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  if (o.kind === CACHE_KIND) return o.result && typeof o.result === 'object' ? (o.result as Record<string, unknown>) : undefined;
  return o;
}

/** All cniCacheV1 records (libcni's GetCachedAttachments), optionally of one network, in file order. */
export function listCache(cacheDir: string, network?: string): CacheEntry[] {
  const dir = path.join(cacheDir, 'results');
  let names: string[];
  try {
    names = readdirSync(dir)
      .filter((n) => !n.startsWith('.'))
      .sort();
  } catch {
    return [];
  }
  const out: CacheEntry[] = [];
  for (const n of names) {
    try {
      const e = JSON.parse(readFileSync(path.join(dir, n), 'utf8')) as CacheEntry;
      if (e.kind !== CACHE_KIND || !e.ifName || !e.networkName || !e.containerId) continue;
      if (network !== undefined && e.networkName !== network) continue;
      out.push(e);
    } catch {
      /* unreadable or not ours: skipped, as libcni does */
    }
  }
  return out;
}
