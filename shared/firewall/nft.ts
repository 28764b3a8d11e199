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
import {
  nftApply,
  nftBatch,
  nftChainsNamed,
  nftDumpChains,
  nftDumpElements,
  nftDumpRules,
  nftList,
  nftNetlink,
  nftTry,
  type NftObject,
} from '../kernel/nft.ts';
import { delRule, type NftFamily, type NftMsg } from '../kernel/netlink/nftnl.ts';
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

/**
 * The table (or one chain of it) in one read; undefined when it does not exist. `terse`: without
 * set and map elements (a large table's drift check counts chains and rules only).
 */
export async function readTable(
  family: string,
  table: string,
  chain?: string,
  opts: { terse?: boolean } = {},
): Promise<NftTable | undefined> {
  const objects = await nftList(family, table, { chain, ...opts });
  return objects && tableOf(family, table, objects);
}

/** What a whole-table owner's drift check compares: rules per chain, elements per set and map, named counters. Pure. */
export interface TableCounts {
  rules: Map<string, number>;
  sets: Map<string, number>;
  maps: Map<string, number>;
  counters: Set<string>;
}

/** The counts of a table read (`chains` are in the read itself). Pure. */
export function tableCounts(t: NftTable): TableCounts {
  const c: TableCounts = { rules: new Map(), sets: new Map(), maps: new Map(), counters: new Set() };
  for (const r of t.rules) c.rules.set(r.chain, (c.rules.get(r.chain) ?? 0) + 1);
  for (const o of t.objects) {
    const x = (o.set ?? o.map) as { name?: string; elem?: unknown[] } | undefined;
    if (x?.name) (o.set ? c.sets : c.maps).set(x.name, x.elem?.length ?? 0);
    else if (o.counter && typeof o.counter.name === 'string') c.counters.add(o.counter.name);
  }
  return c;
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

/**
 * A whole-table owner's verb (policy, services: compiled from desired state, not per attachment):
 * `update` (the diff from what it applied last) as one transaction; when there is none
 * (undefined) or the kernel refuses it (the table does not hold what the owner recorded; the
 * transaction changed nothing), `onRefused` hears why and the whole table, `replace()`, is one
 * transaction (its failure thrown). An empty `update` changes nothing.
 */
export async function updateOrReplace(
  update: string | undefined,
  replace: () => string,
  onRefused?: (stderr: string) => void,
): Promise<'unchanged' | 'update' | 'full'> {
  if (update === '') return 'unchanged';
  if (update !== undefined) {
    const r = await nftTry(update);
    if (r.ok) return 'update';
    onRefused?.(r.stderr);
  }
  await transaction(replace());
  return 'full';
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

/** Whether owners should hand messages (../kernel/netlink/nftnl.ts) rather than text: nf_tables netlink in-process. */
export const netlinkPath = nftNetlink;

/** Netlink reads of one family's tables (GETCHAIN, GETSETELEM, GETRULE dumps); undefined: not there. */
export const netlinkReads = (family: NftFamily) => ({
  chains: (table: string) => nftDumpChains(family, table),
  chainsNamed: (table: string, names: string[]) => nftChainsNamed(family, table, names),
  elements: (table: string, set: string) => nftDumpElements(family, table, set),
  rules: (table: string, chain: string) => nftDumpRules(family, table, chain),
});

/** `transaction` as nf_tables messages: one netlink batch (atomic); a refusal throws (nft's words, the errno's code). */
export async function netlinkTransaction(msgs: NftMsg[]): Promise<void> {
  const r = await nftBatch(msgs);
  if (!r.ok) throw new CniError(ErrorCode.KernelOperation, `nft transaction failed: ${r.stderr}`, r.stderr);
}

/** `tryTransaction` as nf_tables messages. */
export async function tryNetlinkTransaction(msgs: NftMsg[]): Promise<{ ok: true } | { ok: false; stderr: string }> {
  const r = await nftBatch(msgs);
  return r.ok ? r : { ok: false, stderr: r.stderr };
}

/** `converge` with a netlink read and a transaction of messages (an empty plan writes nothing). */
export async function convergeNetlink<T>(
  read: () => Promise<T>,
  plan: (state: T) => NftMsg[],
  opts: { attempts?: number; fail?: (stderr: string) => Error } = {},
): Promise<boolean> {
  const attempts = opts.attempts ?? 3;
  for (let attempt = 1; ; attempt++) {
    const msgs = plan(await read());
    if (!msgs.length) return false;
    const r = await nftBatch(msgs);
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
  if (netlinkPath()) {
    // one GETRULE dump of the chain (handle and comment of each rule) and one DELRULE batch
    const fam = family as NftFamily;
    await convergeNetlink(
      () => nftDumpRules(fam, table, chain),
      (rules) => {
        const mine = taggedRules(
          (rules ?? []).map((r) => ({ family, table, chain: r.chain, handle: r.handle, comment: r.comment })),
          match,
        );
        n = mine.length;
        return mine.map((r) => delRule(fam, table, r.chain, r.handle));
      },
    );
    return n;
  }
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

/** A set element as `nft -j` lists it (an owner's: its comment carries the tag). */
export interface NftElement {
  family: string;
  table: string;
  set: string;
  /** the element's value as listed (an address, an interface name) */
  val: string;
  comment?: string;
}

/** The plain (string-valued) elements of the sets `sets` (all sets when omitted) of a table read. Pure. */
export function setElements(t: NftTable, sets?: readonly string[]): NftElement[] {
  const out: NftElement[] = [];
  for (const o of t.objects) {
    const s = o.set as { name?: string; elem?: unknown[] } | undefined;
    if (!s?.name || (sets && !sets.includes(s.name))) continue;
    for (const e of s.elem ?? []) {
      if (typeof e === 'string') out.push({ family: t.family, table: t.table, set: s.name, val: e });
      else {
        const inner = (e as { elem?: { val?: unknown; comment?: string } }).elem;
        if (inner && typeof inner.val === 'string')
          out.push({ family: t.family, table: t.table, set: s.name, val: inner.val, comment: inner.comment });
      }
    }
  }
  return out;
}

/** Elements whose comment carries one of our tags accepted by `match`. Pure. */
export function taggedElements(elements: NftElement[], match: (tag: string) => boolean): NftElement[] {
  return elements.filter((e) => {
    const t = tagOfComment(e.comment);
    return t !== undefined && match(t);
  });
}

/** `delete element` lines for `elements`; one transaction when applied together. Pure. */
export function deleteElementsScript(elements: NftElement[]): string {
  return nftScript(elements.map((e) => nft`delete element ${e.family} ${e.table} ${e.set} { ${e.val} }`));
}

/**
 * Delete the elements of `family table` (sets `sets`) whose tag `match` accepts, in one
 * transaction, re-planned from a fresh read when a concurrent DEL/GC got there first. Returns
 * how many elements the last plan deleted (0: none were there, or no table).
 */
export async function deleteTaggedElements(
  family: string,
  table: string,
  sets: readonly string[] | undefined,
  match: (tag: string) => boolean,
): Promise<number> {
  let n = 0;
  await converge(
    () => readTable(family, table),
    (t) => {
      const mine = t ? taggedElements(setElements(t, sets), match) : [];
      n = mine.length;
      return deleteElementsScript(mine);
    },
  );
  return n;
}
