/**
 * shared/posixpath.ts (what the Bun plugin bundles get for `node:path`, scripts/build.mjs) gives
 * Node's exact results: every function against node:path on generated paths.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import shim, { basename, dirname, isAbsolute, join, normalize, resolve } from '../shared/posixpath.ts';

const PIECES = ['', '/', '//', '.', '..', '...', 'a', 'b.c', '.x', 'ä', ' ', 'lock', 'x..y', '\0'];

/** Every string of up to `n` pieces joined by nothing, '/' or '//', deterministic. */
function samples(n: number): string[] {
  const out = new Set<string>(['', '/', '.', '..', './', '../', '/..', '/./a/../b/', 'a//b', '///a///b///']);
  let seed = 7;
  const rnd = (k: number): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % k;
  };
  for (let i = 0; i < 4000; i++) {
    const len = 1 + rnd(n);
    let s = '';
    for (let j = 0; j < len; j++) s += PIECES[rnd(PIECES.length)] + ['', '/', '//'][rnd(3)];
    out.add(s);
  }
  return [...out];
}

describe('posixpath equals node:path', () => {
  const all = samples(6);
  it('normalize, dirname, basename, isAbsolute', () => {
    for (const p of all) {
      expect(normalize(p), p).toBe(path.normalize(p));
      expect(dirname(p), p).toBe(path.dirname(p));
      expect(basename(p), p).toBe(path.basename(p));
      expect(isAbsolute(p), p).toBe(path.isAbsolute(p));
    }
  });
  it('join and resolve of one to three parts', () => {
    for (let i = 0; i < all.length; i++) {
      const parts = [all[i], all[(i * 7) % all.length], all[(i * 13) % all.length]].slice(0, 1 + (i % 3));
      expect(join(...parts), parts.join(' | ')).toBe(path.join(...parts));
      expect(resolve(...parts), parts.join(' | ')).toBe(path.resolve(...parts));
    }
    expect(join()).toBe(path.join());
    expect(resolve()).toBe(path.resolve());
  });
  it('the default export, the rest and the errors are node:path', () => {
    expect(shim.join('/a', 'b')).toBe('/a/b');
    expect(shim.basename('/a/b.json', '.json')).toBe('b');
    expect(shim.relative('/a/b', '/a/c/d')).toBe(path.relative('/a/b', '/a/c/d'));
    expect(shim.extname('x.tar.gz')).toBe('.gz');
    expect(shim.posix).toBe(path.posix);
    expect(shim.sep).toBe('/');
    for (const f of [
      () => join('a', 1 as unknown as string),
      () => dirname(undefined as unknown as string),
      () => resolve(null as unknown as string),
    ])
      expect(f).toThrow(TypeError);
  });
});
