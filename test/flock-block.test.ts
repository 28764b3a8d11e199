/**
 * The blocking in-process wait of shared/flock.ts (`block`, what host-local uses), under Bun:
 * a lock held by the flock(1) CLI (what the Go reference's flock(2) is to us) is waited for in
 * poll(2) on an inotify watch of the lock file and taken once the holder closes it; a holder
 * that unlocks but keeps the file open is noticed too; the timeout still holds (code 11).
 * Files are /tmp/hcc-lock-*, removed afterwards; the holders are children of the script.
 */
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from './helpers/run.ts';

const BUN = path.join(ROOT, 'node_modules', '@oven', 'bun-linux-x64-baseline', 'bin', 'bun');
const hex = (n: number): string => randomBytes(n).toString('hex');
const files: string[] = [];
afterAll(() => files.forEach((f) => rmSync(f, { force: true })));

/** Run a TypeScript snippet with the pinned Bun (what the shipped executable runs on); its JSON output and stderr. */
async function bun(body: string): Promise<{ out: Record<string, unknown>; stderr: string }> {
  const file = `/tmp/hcc-lock-script-${hex(4)}.ts`;
  files.push(file);
  writeFileSync(file, body.replaceAll('@/', `${ROOT}/`));
  const r = await execa(BUN, [file], { reject: false, env: { PATH: process.env.PATH ?? '', CNI_TS_TRACE: '1' }, extendEnv: false });
  expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
  const last = String(r.stdout).trim().split('\n').at(-1) ?? '{}';
  return { out: JSON.parse(last) as Record<string, unknown>, stderr: String(r.stderr) };
}

const lockFile = (): string => {
  const f = `/tmp/hcc-lock-${hex(4)}`;
  files.push(f, `${f}.done`, `${f}.child.ts`);
  return f;
};

describe('flock(2) with `block`: waiting in poll(2), woken by the holder closing the file', () => {
  it('a lock held by flock(1) is taken only after the holder is done, woken by its close, with no process of ours', async () => {
    const f = lockFile();
    const { out, stderr } = await bun(`
      import { spawn } from 'node:child_process';
      import { existsSync } from 'node:fs';
      import { withFlock } from '@/shared/flock.ts';
      const f = ${JSON.stringify(f)};
      // the marker is written while the CLI's child still holds the lock (released when that exits)
      const holder = spawn('flock', [f, 'sh', '-c', 'echo held; sleep 0.3; touch ' + f + '.done']);
      await new Promise((r) => holder.stdout.once('data', r));
      const orderOk = await withFlock(f, async () => existsSync(f + '.done'), 10, { block: true });
      console.log(JSON.stringify({ orderOk }));
    `);
    expect(out.orderOk).toBe(true);
    expect(stderr).toMatch(/flock .*: held elsewhere, waiting in-process/);
    expect(stderr).toMatch(/flock .*: taken in-process after \d+ tries \(woken by closes\); released after/);
    expect(stderr).not.toMatch(/flock .*: spawned/);
  });

  it('a holder that unlocks (LOCK_UN) and keeps the file open is noticed without a close', async () => {
    const f = lockFile();
    const { out } = await bun(`
      import { spawn } from 'node:child_process';
      import { existsSync } from 'node:fs';
      import { withFlock } from '@/shared/flock.ts';
      const f = ${JSON.stringify(f)};
      // fd 9 stays open for 3 s after the unlock: no close event until then
      const holder = spawn('sh', ['-c', 'exec 9>>' + f + '; flock 9; echo held; sleep 0.3; flock -u 9; sleep 3; touch ' + f + '.done'], { detached: true });
      await new Promise((r) => holder.stdout.once('data', r));
      const holderStillOpen = await withFlock(f, async () => !existsSync(f + '.done'), 10, { block: true });
      process.kill(-holder.pid, 'SIGKILL');
      holder.stdout.destroy();
      console.log(JSON.stringify({ holderStillOpen }));
    `);
    // taken after the unlock (test above: never before), while the holder and its descriptor still lived
    expect(out).toEqual({ holderStillOpen: true });
  });

  it('the timeout holds: code 11 naming it, after the time and while the holder still holds', async () => {
    const f = lockFile();
    const { out } = await bun(`
      import { spawn } from 'node:child_process';
      import { withFlock } from '@/shared/flock.ts';
      const f = ${JSON.stringify(f)};
      // the holder keeps the lock until it is killed (its process group, below): "not much
      // later" is that it gave up while the lock was still held, not a figure in milliseconds
      // (a 4 s bound was wall-clock a loaded machine could miss)
      const holder = spawn('flock', [f, 'sh', '-c', 'echo held; sleep 60'], { detached: true });
      await new Promise((r) => holder.stdout.once('data', r));
      const t0 = performance.now();
      let err;
      try { await withFlock(f, async () => 'got', 1, { block: true }); } catch (e) { err = { code: e.code, details: e.details }; }
      const waited = performance.now() - t0;
      const holderAlive = holder.exitCode === null && holder.signalCode === null;
      process.kill(-holder.pid, 'SIGKILL');
      holder.stdout.destroy();
      console.log(JSON.stringify({ err, waited, holderAlive }));
    `);
    expect(out.err).toEqual({ code: 11, details: 'timed out after 1s' });
    expect(out.waited).toBeGreaterThanOrEqual(950);
    expect(out.holderAlive).toBe(true);
  });

  it('several blocking waiters in different processes take turns, one holder at a time', async () => {
    const f = lockFile();
    const log = `${f}.log`;
    files.push(log);
    const { out } = await bun(`
      import { spawn } from 'node:child_process';
      import { readFileSync, writeFileSync } from 'node:fs';
      const f = ${JSON.stringify(f)}, log = ${JSON.stringify(log)};
      writeFileSync(log, '');
      const child = \`
        import { appendFileSync } from 'node:fs';
        import { withFlock } from '@/shared/flock.ts';
        await withFlock(\${JSON.stringify(f)}, async () => {
          appendFileSync(\${JSON.stringify(log)}, 'in\\\\n');
          await new Promise((r) => setTimeout(r, 20));
          appendFileSync(\${JSON.stringify(log)}, 'out\\\\n');
        }, 30, { block: true });
      \`;
      const script = f + '.child.ts';
      writeFileSync(script, child);
      await Promise.all(Array.from({ length: 6 }, () => new Promise((r) => spawn(process.execPath, [script], { stdio: 'inherit' }).once('exit', r))));
      console.log(JSON.stringify({ log: readFileSync(log, 'utf8').trim().split('\\n') }));
    `);
    expect(out.log).toEqual(Array.from({ length: 6 }, () => ['in', 'out']).flat());
  });
});
