/** agent/loop.ts: kicks collapse, failures back off and recover, resync ticks; the API answers. */
import { afterEach, describe, expect, it } from 'vitest';
import { Loop } from '../agent/loop.ts';
import { answer, parseListen } from '../agent/api.ts';
import { Logger } from '../shared/cni/log.ts';

const log = new Logger('test', { CNI_LOG_LEVEL: 'error' });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const loops: Loop[] = [];
afterEach(async () => {
  for (const l of loops.splice(0)) await l.stop();
});

describe('agent reconcile loop', () => {
  it('runs once at start and collapses a burst of kicks into one more pass', async () => {
    const whys: string[] = [];
    let release: () => void = () => undefined;
    const l = new Loop({
      name: 't', log, resyncMs: 0,
      reconcile: async (why) => {
        whys.push(why);
        if (whys.length === 1) await new Promise<void>((r) => (release = r));
      },
    });
    loops.push(l);
    l.start();
    await sleep(5);
    for (let i = 0; i < 50; i++) l.kick(`event ${i % 3}`);
    release();
    await l.idle();
    expect(whys).toEqual(['start', 'event 0, event 1, event 2']);
    expect(l.status()).toMatchObject({ state: 'ok', passes: 2, failures: 0 });
  });

  it('backs off after a failure, reports it, and recovers', async () => {
    let n = 0;
    const l = new Loop({ name: 't', log, resyncMs: 0, backoffMinMs: 20, backoffMaxMs: 40, reconcile: async () => {
      if (++n <= 3) throw new Error(`boom ${n}`);
      return 'fine';
    } });
    loops.push(l);
    l.start();
    await sleep(5);
    expect(l.status()).toMatchObject({ state: 'failing', consecutiveFailures: 1, lastError: 'boom 1' });
    await l.idle();
    expect(n).toBe(4);
    expect(l.status()).toMatchObject({ state: 'ok', failures: 3, consecutiveFailures: 0, lastSummary: 'fine' });
  });

  it('resyncs periodically', async () => {
    const whys: string[] = [];
    const l = new Loop({ name: 't', log, resyncMs: 30, reconcile: async (why) => void whys.push(why) });
    loops.push(l);
    l.start();
    await sleep(110);
    await l.stop();
    expect(whys[0]).toBe('start');
    expect(whys.filter((w) => w === 'resync').length).toBeGreaterThanOrEqual(2);
  });
});

describe('agent API', () => {
  it('answers status and resync, and refuses unknown requests', async () => {
    const h = {
      status: () => ({ node: 'n', pid: 1, startedAt: '', store: 'file /x', memory: { rss: 1, heapUsed: 1 }, reconcilers: [] }),
      resync: async (name?: string) => {
        if (name === 'nope') throw new Error('no reconciler named "nope"');
        return [];
      },
    };
    expect(await answer(h, { type: 'status' })).toMatchObject({ ok: true, type: 'status', status: { node: 'n' } });
    expect(await answer(h, { type: 'resync' })).toEqual({ ok: true, type: 'resync', reconcilers: [] });
    expect(await answer(h, { type: 'resync', name: 'nope' })).toEqual({ ok: false, error: 'no reconciler named "nope"' });
    expect(await answer(h, { type: 'what' } as never)).toMatchObject({ ok: false });
    expect(parseListen('[::1]:9464')).toEqual({ host: '::1', port: 9464 });
    expect(parseListen('127.0.0.1:80')).toEqual({ host: '127.0.0.1', port: 80 });
  });
});
