/** nftables through `nft -f -` transactions (atomic) and `nft -j` for reading. */
import { CniError, ErrorCode } from '../cni/errors.ts';
import { run } from './exec.ts';
import { readNftCounters } from './stats.ts';

export async function nftApply(script: string): Promise<void> {
  await run('nft', ['-f', '-'], { input: script });
}

/** One `nft -f -` transaction that may fail (a concurrent change): the outcome, never a throw. */
export async function nftTry(script: string): Promise<{ ok: true } | { ok: false; stderr: string }> {
  const r = await run('nft', ['-f', '-'], { input: script, allowFail: true });
  return r.exitCode === 0 ? { ok: true } : { ok: false, stderr: r.stderr.trim() };
}

export async function nftJson<T = { nftables: Array<Record<string, unknown>> }>(args: string[]): Promise<T> {
  const r = await run('nft', ['-j', ...args]);
  return JSON.parse(r.stdout || '{"nftables":[]}') as T;
}

/** Whether a table exists, without failing when it does not. */
export async function nftTableExists(family: string, table: string): Promise<boolean> {
  const r = await run('nft', ['list', 'table', family, table], { allowFail: true });
  return r.exitCode === 0;
}

/**
 * The named counters of one table (`nft -j list counters table FAMILY T`), name -> packets and
 * bytes; empty when the table does not exist.
 */
export async function nftCounters(family: string, table: string, netns?: string): Promise<Map<string, { packets: number; bytes: number }>> {
  return new Map((await readNftCounters(table, family, netns)).map((c) => [c.name, { packets: c.packets, bytes: c.bytes }]));
}

/** The one reading of nft's "that table (or chain) is not there" (the message differs across versions). */
export const nftAbsent = (stderr: string): boolean => /No such file or directory|does not exist/i.test(stderr);

/** An object of `nft -j` output: `{rule: {...}}`, `{chain: {...}}`, `{set: {...}}`, ... */
export type NftObject = Record<string, Record<string, unknown> | undefined>;

/**
 * `nft -j list table FAMILY TABLE` (or `list chain ... CHAIN`; `terse`: without set elements):
 * its objects, undefined when the table (or chain) does not exist; any other failure throws
 * (code 100).
 */
export async function nftList(
  family: string,
  table: string,
  opts: { chain?: string; terse?: boolean } = {},
): Promise<NftObject[] | undefined> {
  const text = await nftListRaw(family, table, opts);
  return text === undefined ? undefined : ((JSON.parse(text || '{"nftables":[]}') as { nftables?: NftObject[] }).nftables ?? []);
}

/** `nftList`'s `nft -j` output as text (for a caller that parses it itself); undefined when absent. */
export async function nftListRaw(
  family: string,
  table: string,
  opts: { chain?: string; terse?: boolean } = {},
): Promise<string | undefined> {
  const what = opts.chain ? ['chain', family, table, opts.chain] : ['table', family, table];
  const r = await run('nft', ['-j', ...(opts.terse ? ['-t'] : []), 'list', ...what], { allowFail: true });
  if (r.exitCode !== 0) {
    if (nftAbsent(r.stderr)) return undefined;
    throw new CniError(ErrorCode.KernelOperation, `nft could not list ${what.join(' ')}: ${r.stderr.trim()}`, r.stderr.trim());
  }
  return r.stdout;
}

/** `nft list table FAMILY TABLE` as text (for a human or a substring check): `text`, or why not (`stderr`). */
export async function nftTableText(family: string, table: string): Promise<{ text: string } | { text?: undefined; stderr: string }> {
  const r = await run('nft', ['list', 'table', family, table], { allowFail: true });
  return r.exitCode === 0 ? { text: r.stdout } : { stderr: r.stderr.trim() };
}

/** Whether nftables is usable here (`nft list tables`): undefined, or why not. */
export async function nftUnusable(): Promise<string | undefined> {
  const r = await run('nft', ['list', 'tables'], { allowFail: true });
  return r.exitCode === 0 ? undefined : r.stderr.trim() || `exit ${r.exitCode}`;
}
