/**
 * `make install` / `make uninstall` (Makefile) lay out what `make build` made: one executable in
 * CNI_BIN_DIR, every other name a hard link to it, the operator commands (dist/on-path) symlinks
 * in BIN_DIR, and nothing else. The footprint (issue 12) is that one file: the Bun runtime plus
 * our embedded JavaScript; a bundle that pulls in a heavy dependency shows up here.
 * Installs into a DESTDIR under /tmp (prefix bv-inst-), removed afterwards.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN } from './helpers/run.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const CNI_BIN_DIR = '/opt/cni/bin';
const BIN_DIR = '/usr/local/bin';
const PINNED_BUN = path.join(ROOT, 'node_modules', '@oven', 'bun-linux-x64-baseline', 'bin', 'bun');
/** what the compile adds to the runtime today: 21.4 MiB (docs/benchmarks.md, "Session 5: footprint") */
const EMBEDDED_MAX_MIB = 24;

/** make with the build taken as done: the test checks the install of the dist/bin under test. */
function make(target: string, dest: string): string {
  return execFileSync(
    'make',
    ['-s', '-o', 'build', '-o', 'dist/bin/cni-ts', target, `DESTDIR=${dest}`, `CNI_BIN_DIR=${CNI_BIN_DIR}`, `BIN_DIR=${BIN_DIR}`],
    { cwd: ROOT, encoding: 'utf8', env: { ...process.env, SETUP_DEPS: '0' } },
  );
}

/** every file under dir, relative */
function walk(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const r = path.join(rel, e.name);
    if (e.isDirectory()) out.push(...walk(dir, r));
    else out.push(r);
  }
  return out.sort();
}

describe('make install: one binary, hard links, symlinks on PATH', () => {
  let dest = '';
  let printed = '';
  const names = readdirSync(BIN).sort();
  const onPath = readFileSync(path.join(ROOT, 'dist', 'on-path'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .sort();
  const isBun = existsSync(PINNED_BUN) && readFileSync(path.join(BIN, 'cni-ts')).includes('/$bunfs/root/');
  let exe = '';
  if (!isBun) console.log('install.test.ts: the embedded-size check is skipped: dist/bin is not a Bun build (make build RUNTIME=node)');

  beforeAll(() => {
    dest = mkdtempSync('/tmp/bv-inst-');
    exe = path.join(dest, CNI_BIN_DIR, 'cni-ts');
    printed = make('install', dest);
  });
  afterAll(() => {
    if (dest) rmSync(dest, { recursive: true, force: true });
  });

  it('installs every name of dist/bin as a hard link of one file, and nothing else', () => {
    expect(names).toContain('cni-ts');
    const files = walk(dest);
    const expected = [...names.map((n) => path.join(CNI_BIN_DIR, n).slice(1)), ...onPath.map((n) => path.join(BIN_DIR, n).slice(1))].sort();
    expect(files).toEqual(expected);
    const st = statSync(exe);
    expect(st.mode & 0o777).toBe(0o755);
    expect(st.nlink).toBe(names.length);
    for (const n of names) expect(statSync(path.join(dest, CNI_BIN_DIR, n)).ino).toBe(st.ino);
    // the same bytes as the build's
    expect(st.size).toBe(statSync(path.join(BIN, 'cni-ts')).size);
    for (const n of onPath) {
      const l = path.join(dest, BIN_DIR, n);
      expect(lstatSync(l).isSymbolicLink()).toBe(true);
      expect(readlinkSync(l)).toBe(path.join(CNI_BIN_DIR, 'cni-ts'));
    }
  });

  it('reports the installed size: one binary, the rest links', () => {
    expect(printed).toMatch(new RegExp(`installed size: \\S+ \\(one binary, ${names.length - 1} hard links\\)`));
  });

  it('the installed names run: a plugin answers VERSION, cnictl its help', () => {
    const version = execFileSync(path.join(dest, CNI_BIN_DIR, 'host-local'), [], {
      env: { CNI_COMMAND: 'VERSION', PATH: process.env.PATH ?? '' },
      input: '',
      encoding: 'utf8',
    });
    expect(JSON.parse(version).supportedVersions).toContain('1.0.0');
    expect(execFileSync(path.join(dest, CNI_BIN_DIR, 'cnictl'), ['--help'], { encoding: 'utf8' })).toMatch(/^cnictl:/);
  });

  it.skipIf(!isBun)(`the embedded JavaScript (what the compile adds to the pinned Bun) stays under ${EMBEDDED_MAX_MIB} MiB`, () => {
    const embedded = (statSync(exe).size - statSync(PINNED_BUN).size) / 1048576;
    expect(embedded).toBeGreaterThan(0);
    expect(embedded).toBeLessThan(EMBEDDED_MAX_MIB);
  });

  it('make uninstall removes every file it installed', () => {
    make('uninstall', dest);
    expect(walk(dest)).toEqual([]);
  });
});
