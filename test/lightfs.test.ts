/**
 * shared/lightfs.ts (what the Bun plugin bundles get for `node:fs`, scripts/build.mjs): under
 * the pinned Bun, every function against node:fs on the same files (test/fixtures/lightfs-check.ts);
 * under Node (no bun:ffi) it is node:fs.
 */
import { execa } from 'execa';
import * as nodeFs from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as light from '../shared/lightfs.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const BUN = path.join(ROOT, 'node_modules', '@oven', 'bun-linux-x64-baseline', 'bin', 'bun');
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('lightfs', () => {
  it('under Bun: the same results and errors as node:fs', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'cnits-lightfs-'));
    dirs.push(dir);
    const r = await execa(BUN, [path.join(ROOT, 'test', 'fixtures', 'lightfs-check.ts'), dir], { reject: false, cwd: ROOT });
    expect(r.exitCode, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { checks: number; mismatches: string[] };
    expect(out.mismatches).toEqual([]);
    expect(out.checks).toBeGreaterThan(150);
  });

  it('CNI_TS_LIGHTFS=0 under Bun, and Node, use node:fs', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'cnits-lightfs-'));
    dirs.push(dir);
    const r = await execa(BUN, [path.join(ROOT, 'test', 'fixtures', 'lightfs-check.ts'), dir], {
      reject: false,
      cwd: ROOT,
      env: { CNI_TS_LIGHTFS: '0' },
    });
    expect(JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}')).toMatchObject({ mismatches: [] });
    // under Node (vitest) there is no bun:ffi: every call is node:fs's
    nodeFs.writeFileSync(path.join(dir, 'n'), 'x');
    expect(light.readFileSync(path.join(dir, 'n'), 'utf8')).toBe('x');
    expect(() => light.statSync(path.join(dir, 'missing'))).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  });
});
