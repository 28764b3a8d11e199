/**
 * Helpers every plugin leans on: digests (names derived from them must not change between
 * releases), random bytes, the flock(2) lock, link listing from procfs, the MAC pin check.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { randomBytes, randomHex, sha256Hex, sha512Hex } from '../shared/hash.ts';
import { requestFlock, withFlock, withLock } from '../shared/flock.ts';
import { deleteLink, macIsPinned, ownNetnsLinkNames } from '../shared/kernel/link.ts';
import { hostVethName } from '../shared/kernel/veth.ts';
import { Cleanup, sh } from './helpers/netns.ts';
import { uid } from './helpers/run.ts';
import { until } from './helpers/wait.ts';

const cleanup = new Cleanup();
afterAll(() => cleanup.run());
const tmp = mkdtempSync(path.join(os.tmpdir(), 'cnits-shared-'));
cleanup.add(async () => rmSync(tmp, { recursive: true, force: true }));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('digests and randomness without node:crypto', () => {
  it('SHA-256 and SHA-512 agree with OpenSSL, so derived names (veth, rule tags) are unchanged', () => {
    for (const s of ['', 'abc', 'c1\0eth0', 'ünïcode ✓', 'x'.repeat(1000)]) {
      expect(sha256Hex(s)).toBe(createHash('sha256').update(s).digest('hex'));
      expect(sha512Hex(s)).toBe(createHash('sha512').update(s).digest('hex'));
    }
    const h = createHash('sha256').update('container-1\0eth0').digest('hex');
    expect(hostVethName('container-1', 'eth0')).toBe(`veth${h.slice(0, 8)}`);
  });

  it('random bytes have the asked length and differ between calls', () => {
    expect(randomBytes(32)).toHaveLength(32);
    expect(randomHex(6)).toMatch(/^[0-9a-f]{12}$/);
    expect(new Set(Array.from({ length: 20 }, () => randomHex(8))).size).toBe(20);
  });
});

describe('flock(2) through our own descriptor', () => {
  it('excludes the flock(1) CLI and is excluded by it; released the moment the body ends', async () => {
    const file = path.join(tmp, 'a.lock');
    let inside = false;
    const order: string[] = [];
    await withFlock(file, async () => {
      inside = true;
      // flock(1) with -n must fail while we hold it
      const other = await execa('flock', ['--nonblock', file, 'true'], { reject: false });
      order.push(`cli while held: ${other.exitCode}`);
    });
    expect(inside).toBe(true);
    const after = await execa('flock', ['--nonblock', file, 'true'], { reject: false });
    order.push(`cli after: ${after.exitCode}`);
    expect(order).toEqual(['cli while held: 1', 'cli after: 0']);
  });

  it('waits for an outside holder, then gets the lock', async () => {
    const file = path.join(tmp, 'b.lock');
    const started = path.join(tmp, 'b.started');
    const done = path.join(tmp, 'b.done');
    // The holder marks when it has the lock and when its critical section ends.
    const holder = execa('flock', ['--exclusive', file, 'sh', '-c', `touch ${started}; sleep 0.3; touch ${done}`], { reject: false });
    while (!existsSync(started)) await sleep(10);
    let holderDone: boolean | undefined;
    await withFlock(file, async () => {
      holderDone = existsSync(done);
    });
    expect(holderDone, 'our body ran only after the outside holder released the lock').toBe(true);
    expect((await holder).exitCode).toBe(0);
  });

  it('serialises concurrent holders in one process', async () => {
    const file = path.join(tmp, 'c.lock');
    let active = 0;
    let maxActive = 0;
    await Promise.all(
      Array.from({ length: 5 }, () =>
        withFlock(file, async () => {
          active++;
          maxActive = Math.max(maxActive, active);
          await sleep(20);
          active--;
        }),
      ),
    );
    expect(maxActive).toBe(1);
  });

  it('a timeout is TryAgainLater (11); releasing a request never granted is harmless', async () => {
    const file = path.join(tmp, 'd.lock');
    const started = path.join(tmp, 'd.started');
    // the holder keeps the lock until its stdin ends: a fixed sleep before the request (and a
    // holder that let go after 1.5 s) raced a loaded machine both ways (request first: granted;
    // holder late: it let go before our 1 s timeout ran out)
    const holder = execa('flock', ['--exclusive', file, 'sh', '-c', `touch ${started}; exec cat >/dev/null`], {
      stdin: 'pipe',
      reject: false,
    });
    try {
      await until(
        'the outside holder to have the lock',
        () => existsSync(started),
        (x) => x,
        20_000,
        10,
      );
      const req = requestFlock(file, 1);
      await expect(req.granted).rejects.toMatchObject({ code: 11 });
      await req.release();
    } finally {
      holder.stdin?.end();
      await holder;
    }
  });

  it('replaces an empty lock directory left by the mkdir-based lock of earlier releases', async () => {
    const dir = path.join(tmp, 'e');
    mkdirSync(path.join(dir, 'x.lock'), { recursive: true });
    expect(await withLock(dir, async () => 'ok', 'x.lock')).toBe('ok');
  });
});

describe('links from procfs', () => {
  it("lists the links of the caller's netns; deleteLink of an absent host link starts no process", async () => {
    const names = ownNetnsLinkNames();
    expect(names?.has('lo')).toBe(true);
    const a = `cnsk${uid('').slice(0, 6)}`;
    cleanup.add(() => sh('ip', ['link', 'del', a], { allowFail: true }));
    await sh('ip', ['link', 'add', a, 'type', 'veth', 'peer', 'name', `${a}p`]);
    expect(ownNetnsLinkNames()?.has(a)).toBe(true);
    expect(await deleteLink(a)).toBe(true);
    expect(ownNetnsLinkNames()?.has(a)).toBe(false);
    expect(await deleteLink(a)).toBe(false);
  });

  it('macIsPinned answers "pinned" (leave it alone) when sysfs describes another device', () => {
    expect(macIsPinned({ ifname: 'lo', ifindex: 987654, address: '00:00:00:00:00:00' })).toBe(true);
    expect(macIsPinned({ ifname: `nolink${uid('')}`.slice(0, 15), ifindex: 5, address: '02:00:00:00:00:01' })).toBe(true);
  });
});
