/**
 * The firewall owners' one nftables door (the netavark model: drivers hand their rules to one
 * firewall layer, never to nft): read a table (one `nft -j list`), find an owner's rules by tag,
 * the diff (what to delete, by handle), and one `nft -f` transaction per owner and verb.
 *
 * Only shared/firewall/ (and the owners eslint.config.js still lists as pending) may import the
 * nft write functions of shared/kernel/nft.ts: every other owner writes through `transaction`,
 * `tryTransaction` or `converge` here.
 */
import { CniError, ErrorCode } from '../cni/errors.ts';
import { nft, nftScript } from '../kernel/batch.ts';
import { nftApply, nftList, nftTry, type NftObject } from '../kernel/nft.ts';
import { tagOfComment } from './owner.ts';

/** A rule as `nft -j` lists it (the fields owners use). */
export interface NftRule {
  family: string;
  table: string;
  chain: string;
  handle: number;
  comment?: string;
  expr?: unknown[];
}

/** One read of a table: its objects as listed, and the rules and chain names in it. */
export interface NftTable {
  family: string;
  table: string;
  objects: NftObject[];
  rules: NftRule[];
  chains: Set<string>;
}

/** `nft -j list` objects, reduced to rules and chain names. Pure. */
export function tableOf(family: string, table: string, objects: NftObject[]): NftTable {
  const rules: NftRule[] = [];
  const chains = new Set<string>();
  for (const o of objects) {
    if (o.rule) rules.push(o.rule as unknown as NftRule);
    else if (o.chain) chains.add(String(o.chain.name));
  }
  return { family, table, objects, rules, chains };
}

/** The table (or one chain of it) in one read; undefined when it does not exist. */
export async function readTable(family: string, table: string, chain?: string): Promise<NftTable | undefined> {
  const objects = await nftList(family, table, { chain });
  return objects && tableOf(family, table, objects);
}

/** Rules of a table (optionally one chain); [] when the table or chain does not exist. */
export async function listRules(family: string, table: string, chain?: string): Promise<NftRule[]> {
  return (await readTable(family, table, chain))?.rules ?? [];
}

/** Rules whose comment carries one of our tags accepted by `match`. Pure. */
export function taggedRules(rules: NftRule[], match: (tag: string) => boolean): NftRule[] {
  return rules.filter((r) => {
    const t = tagOfComment(r.comment);
    return t !== undefined && match(t);
  });
}

/** `delete rule` lines for `rules` (by handle); one transaction when applied together. Pure. */
export function deleteRulesScript(rules: NftRule[]): string {
  return nftScript(rules.map((r) => nft`delete rule ${r.family} ${r.table} ${r.chain} handle ${r.handle}`));
}

/** One owner's verb as one `nft -f` transaction (atomic); an empty script changes nothing. */
export async function transaction(script: string): Promise<void> {
  if (script) await nftApply(script);
}

/** `transaction` that may fail (a key held by another owner, a concurrent change): the outcome, never a throw. */
export async function tryTransaction(script: string): Promise<{ ok: true } | { ok: false; stderr: string }> {
  return script ? nftTry(script) : { ok: true };
}

/**
 * Read, diff, write: `plan` turns a read of the owner's state into one transaction ('' when
 * nothing is to change). A write that fails because someone changed the table between the read
 * and the write (a concurrent DEL or GC) is re-planned from a fresh read; after `attempts` the
 * failure is thrown (`fail` words it). Returns whether anything was written.
 */
export async function converge<T>(
  read: () => Promise<T>,
  plan: (state: T) => string,
  opts: { attempts?: number; fail?: (stderr: string) => Error } = {},
): Promise<boolean> {
  const attempts = opts.attempts ?? 3;
  for (let attempt = 1; ; attempt++) {
    const script = plan(await read());
    if (!script) return false;
    const r = await nftTry(script);
    if (r.ok) return true;
    if (attempt >= attempts)
      throw opts.fail?.(r.stderr) ?? new CniError(ErrorCode.KernelOperation, `nft transaction failed: ${r.stderr}`, r.stderr);
  }
}

/**
 * Delete the rules of `family table [chain]` whose tag `match` accepts, in one transaction.
 * A rule deleted meanwhile by someone else (a concurrent GC) only causes a re-read. Returns how
 * many rules the last plan deleted (0: none were there).
 */
export async function deleteTaggedRules(
  family: string,
  table: string,
  chain: string | undefined,
  match: (tag: string) => boolean,
): Promise<number> {
  let n = 0;
  await converge(
    () => listRules(family, table, chain),
    (rules) => {
      const mine = taggedRules(rules, match);
      n = mine.length;
      return deleteRulesScript(mine);
    },
  );
  return n;
}
