/**
 * Waiting in tests: poll the condition itself until a bounded deadline, never a fixed sleep.
 * Another process, task or timer updates what a test looks at (a counter, a store object, the
 * kernel, a log line), so a test waits for that state to be what it asserts — a different signal
 * (the peer saw our request, a process printed something, "it is usually done after 300 ms") is
 * not enough on a loaded 2-core CI machine. See docs/DEVELOPING.md, "Tests".
 */
import { inNs, type TestNetns } from './netns.ts';

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Poll `get()` every `everyMs` until `ok(value)`; returns that value. After `withinMs` it
 * throws, naming `what` and the last value seen (a thrown `get()` counts as not yet).
 */
export async function until<T>(
  what: string,
  get: () => T | Promise<T>,
  ok: (v: T) => boolean,
  withinMs = 20_000,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    let v: T | undefined;
    let err: unknown;
    try {
      v = await get();
      if (ok(v)) return v;
    } catch (e) {
      err = e;
    }
    if (Date.now() > deadline) {
      const last = err !== undefined ? `error ${String(err)}` : (JSON.stringify(v) ?? String(v)).slice(0, 2000);
      throw new Error(`timed out after ${withinMs} ms waiting for ${what}; last: ${last}`);
    }
    await pause(everyMs);
  }
}

/**
 * Wait until something in `ns` listens on `port` (TCP, or UDP with `proto: 'udp'`): a server
 * started in the background is ready only once it listens, not once it was spawned.
 */
export async function listening(ns: TestNetns | string, port: number, proto: 'tcp' | 'udp' = 'tcp', withinMs = 20_000): Promise<void> {
  await until(
    `a ${proto} listener on port ${port}`,
    async () => (await inNs(ns, 'ss', ['-H', proto === 'tcp' ? '-tln' : '-uln', `sport = :${port}`], true)).stdout.trim(),
    (s) => s !== '',
    withinMs,
    50,
  );
}
