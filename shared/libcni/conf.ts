/**
 * Network configurations as libcni loads them: `.conflist` files first, then `.conf` and
 * `.json` (single plugin, wrapped into a list), each group in lexical file order, first
 * `name` match wins. Parsing is pure; only `loadNetwork` touches the file system.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { CniError, ErrorCode } from '../cni/errors.ts';
import { compareVersions, isSupported, LATEST } from '../cni/version.ts';

export type PluginConf = Record<string, unknown> & { type: string; capabilities?: Record<string, boolean> };

export interface NetworkList {
  name: string;
  /** The version every plugin is run with (after `cniVersions` negotiation). */
  cniVersion: string;
  disableCheck: boolean;
  disableGC: boolean;
  plugins: PluginConf[];
  /** The list as JSON text (libcni caches these bytes with each attachment). */
  bytes: string;
  /** Where it was loaded from, for messages. */
  file?: string;
}

const bad = (file: string, why: string): CniError =>
  new CniError(ErrorCode.InvalidConfig, `invalid network configuration ${file}: ${why}`, `file ${file}`);

function parseObject(text: string, file: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new CniError(ErrorCode.DecodeFailure, `cannot parse ${file}: ${(e as Error).message}`, `file ${file}`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw bad(file, 'must be a JSON object');
  return v as Record<string, unknown>;
}

/** libcni's readBool: true/false or the strings "true"/"false" (any case). */
function readBool(raw: Record<string, unknown>, key: string, file: string): boolean {
  const v = raw[key];
  if (v === undefined) return false;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string' && /^(true|false)$/i.test(v)) return v.toLowerCase() === 'true';
  throw bad(file, `invalid value ${JSON.stringify(v)} for ${key}`);
}

/**
 * The version a list runs with: with `cniVersions`, the highest entry (or `cniVersion`) that
 * this implementation supports; otherwise `cniVersion` as written (empty means 0.1.0).
 */
export function negotiateListVersion(cniVersion: unknown, cniVersions: unknown, file = 'config'): string {
  if (cniVersion !== undefined && typeof cniVersion !== 'string') throw bad(file, 'cniVersion must be a string');
  if (cniVersions === undefined) return cniVersion || '0.1.0';
  if (!Array.isArray(cniVersions) || cniVersions.some((v) => typeof v !== 'string'))
    throw bad(file, 'cniVersions must be a list of strings');
  const candidates = [...(cniVersions as string[]), ...(cniVersion ? [cniVersion] : [])].filter(
    (v) => isSupported(v) && compareVersions(v, LATEST) <= 0,
  );
  candidates.sort(compareVersions);
  return candidates.length ? candidates[candidates.length - 1] : cniVersion || '0.1.0';
}

function pluginConf(v: unknown, file: string, where: string): PluginConf {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw bad(file, `${where} must be an object`);
  const p = v as PluginConf;
  if (typeof p.type !== 'string' || !p.type) throw bad(file, `${where}: missing 'type'`);
  if (p.capabilities !== undefined && (typeof p.capabilities !== 'object' || Array.isArray(p.capabilities)))
    throw bad(file, `${where}: capabilities must be an object`);
  return p;
}

/** Parse a `.conflist` text. `extra` are plugins from `<dir>/<name>/*.conf` (libcni 1.2+). */
export function parseConfList(text: string, file = 'config', extra: (name: string) => PluginConf[] = () => []): NetworkList {
  const raw = parseObject(text, file);
  if (typeof raw.name !== 'string' || !raw.name) throw bad(file, 'no name');
  const inlinedOnly = readBool(raw, 'loadOnlyInlinedPlugins', file);
  let plugins: PluginConf[] = [];
  if (raw.plugins !== undefined) {
    if (!Array.isArray(raw.plugins)) throw bad(file, "invalid 'plugins' type");
    if (raw.plugins.length === 0) throw bad(file, 'no plugins in list');
    plugins = raw.plugins.map((p, i) => pluginConf(p, file, `plugins[${i}]`));
  } else if (inlinedOnly) {
    throw bad(file, "loadOnlyInlinedPlugins is true and there is no 'plugins' key");
  }
  if (!inlinedOnly) plugins = [...plugins, ...extra(raw.name)];
  if (!plugins.length) throw bad(file, 'no plugin configs found');
  return {
    name: raw.name,
    cniVersion: negotiateListVersion(raw.cniVersion, raw.cniVersions, file),
    disableCheck: readBool(raw, 'disableCheck', file),
    disableGC: readBool(raw, 'disableGC', file),
    plugins,
    bytes: text,
    file,
  };
}

/** Parse a single-plugin `.conf`/`.json` and wrap it into a list, as libcni's ConfListFromConf. */
export function parseSingleConf(text: string, file = 'config'): NetworkList {
  const raw = parseObject(text, file);
  const p = pluginConf(raw, file, 'config');
  if (typeof raw.name !== 'string' || !raw.name) throw bad(file, 'no name');
  const listRaw: Record<string, unknown> = {
    name: raw.name,
    cniVersion: typeof raw.cniVersion === 'string' ? raw.cniVersion : '',
    plugins: [p],
  };
  if (raw.cniVersions !== undefined) listRaw.cniVersions = raw.cniVersions;
  if (raw.disableCheck !== undefined) listRaw.disableCheck = raw.disableCheck;
  if (raw.disableGC !== undefined) listRaw.disableGC = raw.disableGC;
  return parseConfList(JSON.stringify(listRaw), file);
}

/** Parse a config text by its file extension. */
export function parseNetworkFile(file: string, text: string, extra?: (name: string) => PluginConf[]): NetworkList {
  return path.extname(file) === '.conflist' ? parseConfList(text, file, extra) : parseSingleConf(text, file);
}

function filesWith(dir: string, exts: string[]): string[] {
  let entries: import('node:fs').Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new CniError(ErrorCode.IOFailure, `cannot read ${dir}: ${(e as Error).message}`);
  }
  return entries
    .filter((e) => !e.isDirectory() && exts.includes(path.extname(e.name)))
    .map((e) => e.name)
    .sort()
    .map((n) => path.join(dir, n));
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new CniError(ErrorCode.IOFailure, `cannot read ${file}: ${(e as Error).message}`);
  }
}

/** Plugins kept as `<dir>/<network>/*.conf` files, appended to a conflist's inline plugins. */
function pluginFiles(dir: string): (name: string) => PluginConf[] {
  return (name) => filesWith(path.join(dir, name), ['.conf']).map((f) => pluginConf(parseObject(readText(f), f), f, 'config'));
}

/** Every network config in `dir`, in libcni's lookup order. */
export function networkFiles(dir: string): string[] {
  return [...filesWith(dir, ['.conflist']), ...filesWith(dir, ['.conf', '.json'])];
}

/** Load network `name` from `dir` like libcni's LoadNetworkConf. */
export function loadNetwork(dir: string, name: string): NetworkList {
  const files = networkFiles(dir);
  if (!files.length)
    throw new CniError(
      ErrorCode.InvalidConfig,
      `no net configurations found in ${dir}`,
      'set NETCONFPATH to the directory holding .conflist/.conf files',
    );
  for (const f of files) {
    const list = parseNetworkFile(f, readText(f), pluginFiles(dir));
    if (list.name === name) return list;
  }
  throw new CniError(
    ErrorCode.InvalidConfig,
    `no net configuration with name "${name}" in ${dir}`,
    `searched ${files.map((f) => path.basename(f)).join(', ')}`,
  );
}
