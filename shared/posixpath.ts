/**
 * The POSIX `node:path` functions a plugin call uses (join, resolve, dirname, basename,
 * isAbsolute, normalize), in plain JavaScript, with Node's exact results. Under Bun, loading the
 * `node:path` builtin costs every plugin process ~2 ms of CPU and ~2.6 MiB of RSS
 * (docs/benchmarks.md, issue 12 session 4), so scripts/build.mjs resolves `node:path` to this
 * module in the plugins' bundles of the Bun executable. Anything else (relative, parse, win32,
 * a non-string argument and its error) is the real module's, loaded on first use.
 * test/posixpath.test.ts compares every function with node:path.
 */
type NodePath = typeof import('node:path');

let realPath: NodePath | undefined;
const real = (): NodePath => (realPath ??= process.getBuiltinModule('node:path'));

const SLASH = 47; // '/'

/** `p` without '.' segments, '..' applied, duplicate slashes folded; no leading or trailing slash. */
function normalizeSegments(p: string, absolute: boolean): string {
  const out: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (out.length && out[out.length - 1] !== '..') out.pop();
      else if (!absolute) out.push('..');
    } else out.push(seg);
  }
  return out.join('/');
}

export function normalize(p: string): string {
  if (typeof p !== 'string') return real().normalize(p);
  if (p.length === 0) return '.';
  const absolute = p.charCodeAt(0) === SLASH;
  const trailing = p.charCodeAt(p.length - 1) === SLASH;
  let out = normalizeSegments(p, absolute);
  if (!out.length && !absolute) out = '.';
  if (out.length && trailing) out += '/';
  return absolute ? `/${out}` : out;
}

export function join(...parts: string[]): string {
  let joined = '';
  for (const p of parts) {
    if (typeof p !== 'string') return real().join(...parts);
    if (p.length) joined = joined ? `${joined}/${p}` : p;
  }
  return joined ? normalize(joined) : '.';
}

export function resolve(...parts: string[]): string {
  let resolved = '';
  let absolute = false;
  for (let i = parts.length - 1; i >= -1 && !absolute; i--) {
    const p = i >= 0 ? parts[i] : process.cwd();
    if (typeof p !== 'string') return real().resolve(...parts);
    if (!p.length) continue;
    resolved = `${p}/${resolved}`;
    absolute = p.charCodeAt(0) === SLASH;
  }
  const out = normalizeSegments(resolved, absolute);
  if (absolute) return `/${out}`;
  return out.length ? out : '.';
}

export function isAbsolute(p: string): boolean {
  if (typeof p !== 'string') return real().isAbsolute(p);
  return p.length > 0 && p.charCodeAt(0) === SLASH;
}

export function dirname(p: string): string {
  if (typeof p !== 'string') return real().dirname(p);
  if (p.length === 0) return '.';
  const hasRoot = p.charCodeAt(0) === SLASH;
  let end = -1;
  let matchedSlash = true;
  for (let i = p.length - 1; i >= 1; --i) {
    if (p.charCodeAt(i) === SLASH) {
      if (!matchedSlash) {
        end = i;
        break;
      }
    } else matchedSlash = false;
  }
  if (end === -1) return hasRoot ? '/' : '.';
  if (hasRoot && end === 1) return '//';
  return p.slice(0, end);
}

export function basename(p: string, suffix?: string): string {
  if (typeof p !== 'string' || suffix !== undefined) return real().basename(p, suffix);
  let start = 0;
  let end = -1;
  let matchedSlash = true;
  for (let i = p.length - 1; i >= 0; --i) {
    if (p.charCodeAt(i) === SLASH) {
      if (!matchedSlash) {
        start = i + 1;
        break;
      }
    } else if (end === -1) {
      matchedSlash = false;
      end = i + 1;
    }
  }
  return end === -1 ? '' : p.slice(start, end);
}

export const sep = '/';
export const delimiter = ':';
export const relative: NodePath['relative'] = (from, to) => real().relative(from, to);
export const extname: NodePath['extname'] = (p) => real().extname(p);
export const parse: NodePath['parse'] = (p) => real().parse(p);
export const format: NodePath['format'] = (p) => real().format(p);
export const toNamespacedPath: NodePath['toNamespacedPath'] = (p) => real().toNamespacedPath(p);

const path = {
  normalize,
  join,
  resolve,
  isAbsolute,
  dirname,
  basename,
  sep,
  delimiter,
  relative,
  extname,
  parse,
  format,
  toNamespacedPath,
  get posix(): NodePath['posix'] {
    return real().posix;
  },
  get win32(): NodePath['win32'] {
    return real().win32;
  },
};
export default path;
