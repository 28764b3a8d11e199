/**
 * programPolicy and tableDrift on the real kernel (test host netns, table fw4_policy, a file store
 * in a temp dir), writing through shared/firewall/nft.ts: the whole table first, then element
 * and chain updates, nothing when nothing changed, a refused update (the table deleted by hand)
 * replaced by the whole table, and drift seen after a deleted table and a flushed chain; with
 * and without the agent's in-memory session.
 */
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { FileStore } from '../shared/store/file.ts';
import { programPolicy, tableDrift, recordedRuleset, PolicySession, type PolicySettings } from '../shared/policysync.ts';
import { model, np } from './policy-unit-model.ts';
import { nftRun } from '../shared/kernel/nft.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'fw4-'));
afterAll(async () => {
  await nftRun(['delete', 'table', 'inet', 'fw4_policy'], { allowFail: true });
  rmSync(dir, { recursive: true, force: true });
});
const s: PolicySettings = {
  table: 'fw4_policy',
  lockFile: path.join(dir, 'p.lock'),
  stateFile: path.join(dir, 'p.ruleset.json'),
  allowFromNode: true,
  allowToNode: true,
};

for (const withSession of [false, true]) {
  it(`full, update, unchanged, refused update -> full, drift (session ${withSession})`, async () => {
    await nftRun(['delete', 'table', 'inet', 'fw4_policy'], { allowFail: true });
    rmSync(s.stateFile, { force: true });
    const store = new FileStore(path.join(dir, `store${withSession}`));
    const session = withSession ? new PolicySession() : undefined;
    const m = model();
    for (const o of [...m.namespaces, ...m.endpoints]) await store.put(o);
    const r1 = await programPolicy(store, 'n1', s, { session });
    expect(r1.mode).toBe('full');
    expect(r1.bytes).toBeGreaterThan(0);
    expect(r1.timings?.nft).toBeGreaterThanOrEqual(0);
    expect(await tableDrift(recordedRuleset(s), s.table)).toBeUndefined();
    expect((await programPolicy(store, 'n1', s, { session })).mode).toBe('unchanged');
    await store.put(np('x', 'deny', { podSelector: {} }));
    const r2 = await programPolicy(store, 'n1', s, { session });
    expect(r2.mode).toBe('update');
    expect(r2.timings?.diff).toBeGreaterThanOrEqual(0);
    expect(await tableDrift(recordedRuleset(s), s.table)).toBeUndefined();
    const r2b = await programPolicy(store, 'n1', s, { session, recompile: true });
    expect(r2b.mode).toBe('unchanged');
    expect(r2b.bytes).toBe(0);
    // someone deletes the table: drift says so, the next update is refused and the table replaced
    await nftRun(['delete', 'table', 'inet', 'fw4_policy']);
    expect(await tableDrift(recordedRuleset(s), s.table)).toBe('is gone');
    await store.put(np('y', 'deny', { podSelector: {} }));
    const r3 = await programPolicy(store, 'n1', s, { session });
    expect(r3.mode).toBe('full');
    expect(existsSync(s.stateFile)).toBe(true);
    expect(await tableDrift(recordedRuleset(s), s.table)).toBeUndefined();
    expect(await tableDrift(undefined, s.table)).toBe('has no recorded state');
    const rs = recordedRuleset(s)!;
    const c = rs.chains.find((x) => x.rules.length > 0)!;
    await nftRun(['flush', 'chain', 'inet', 'fw4_policy', c.name]);
    expect(await tableDrift(rs, s.table)).toBe(`chain ${c.name} has 0 rules, not ${c.rules.length}`);
    expect((await programPolicy(store, 'n1', s, { session, full: true })).mode).toBe('full');
    expect(await tableDrift(recordedRuleset(s), s.table)).toBeUndefined();
  });
}
