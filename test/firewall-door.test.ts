/**
 * shared/firewall/nft.ts's whole-table helpers (for the owners compiled from desired state:
 * policy, services): `updateOrReplace` with the kernel door replaced by a recorder (no kernel),
 * and `tableCounts` of a table read.
 */
import { beforeEach, describe, expect, it, vi } from 'vitest';

const applied: string[] = [];
let refuse: (script: string) => boolean = () => false;
vi.mock('../shared/kernel/nft.ts', () => ({
  nftList: vi.fn(),
  nftApply: vi.fn(async (script: string) => {
    if (refuse(script)) throw new Error('refused');
    applied.push(script);
  }),
  nftNetlink: () => false, // the text path: this test reads the scripts
  nftTry: vi.fn(async (script: string) => {
    if (refuse(script)) return { ok: false, stderr: `refused: ${script.trim()}` };
    applied.push(script);
    return { ok: true };
  }),
}));

const { tableCounts, tableOf, updateOrReplace } = await import('../shared/firewall/nft.ts');

beforeEach(() => {
  applied.length = 0;
  refuse = () => false;
});

describe('updateOrReplace', () => {
  it('an empty update changes nothing; an update is one transaction; none is the whole table', async () => {
    const replace = vi.fn(() => 'add table inet t\n');
    expect(await updateOrReplace('', replace)).toBe('unchanged');
    expect(await updateOrReplace('add element inet t s { 1.2.3.4 }\n', replace)).toBe('update');
    expect(await updateOrReplace(undefined, replace)).toBe('full');
    expect(applied).toEqual(['add element inet t s { 1.2.3.4 }\n', 'add table inet t\n']);
    expect(replace).toHaveBeenCalledTimes(1);
  });
  it('a refused update: the caller hears why, then the whole table; a refused table is thrown', async () => {
    refuse = (s) => s.startsWith('delete');
    const why: string[] = [];
    expect(
      await updateOrReplace(
        'delete element inet t s { 1.2.3.4 }\n',
        () => 'add table inet t\n',
        (e) => why.push(e),
      ),
    ).toBe('full');
    expect(why).toEqual(['refused: delete element inet t s { 1.2.3.4 }']);
    expect(applied).toEqual(['add table inet t\n']);
    refuse = () => true;
    await expect(updateOrReplace(undefined, () => 'add table inet t\n')).rejects.toThrow(/refused/);
  });
});

describe('tableCounts', () => {
  it('rules per chain, elements per set and map, named counters', () => {
    const c = tableCounts(
      tableOf('inet', 't', [
        { chain: { name: 'a' } },
        { rule: { family: 'inet', table: 't', chain: 'a', handle: 2 } },
        { rule: { family: 'inet', table: 't', chain: 'a', handle: 3 } },
        { set: { name: 's', elem: ['1.2.3.4', '1.2.3.5'] } },
        { set: { name: 'e' } },
        { map: { name: 'm', elem: [['x', 'y']] } },
        { counter: { name: 'k' } },
      ]),
    );
    expect([...c.rules]).toEqual([['a', 2]]);
    expect([...c.sets]).toEqual([
      ['s', 2],
      ['e', 0],
    ]);
    expect([...c.maps]).toEqual([['m', 1]]);
    expect([...c.counters]).toEqual(['k']);
  });
});
