/** nftables through `nft -f -` transactions (atomic) and `nft -j` for reading. */
import { CniError, ErrorCode } from '../cni/errors.ts';
import { run, type RunOptions, type RunResult } from './exec.ts';
import { parseNftCounters, type NftCounter } from './stats.ts';
import { libnft, libnftRun, NFT_CTX_OUTPUT_JSON, NFT_CTX_OUTPUT_TERSE } from './netlink/libnft.ts';
import type { NlMsg } from './netlink/codec.ts';
import { errnoText } from './netlink/errno.ts';
import {
  chainGet,
  chainsDump,
  decodeChain,
  decodeElements,
  decodeRule,
  elementsDump,
  rulesDump,
  type DumpedElement,
  type DumpedRule,
  type NftFamily,
  type NftMsg,
} from './netlink/nftnl.ts';
import { NftSocket } from './netlink/nftsock.ts';
import { netlinkEnabled } from './netlink/socket.ts';

/**
 * `run('nft', args, opts)`, in-process through libnftables when it is loaded (under Bun, unless
 * CNI_TS_NETLINK=0; docs/netlink.md): `-f -` with `input` (a script), or `[-j] [-t] WORDS…`
 * (a command such as `list table inet x`). Same result and the same CniError (code, message
 * with nft's stderr text) as the process; anything else takes the process.
 */
export async function nftRun(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  if (opts.timeoutMs === undefined && libnft()) {
    let flags = 0;
    let i = 0;
    for (; args[i] === '-j' || args[i] === '-t'; i++) flags |= args[i] === '-j' ? NFT_CTX_OUTPUT_JSON : NFT_CTX_OUTPUT_TERSE;
    const rest = args.slice(i);
    const script = rest.length === 2 && rest[0] === '-f' && rest[1] === '-' && opts.input !== undefined;
    if (script || (rest.length && opts.input === undefined && rest.every((w) => /^[A-Za-z0-9_.:@/-]+$/.test(w) && !w.startsWith('-')))) {
      await new Promise((r) => setImmediate(r)); // as the netlink entry points: work started beside us begins first
      const r = libnftRun(script ? (opts.input as string) : rest.join(' '), { flags, netns: opts.netns, asFile: script });
      if (r.exitCode !== 0 && !opts.allowFail) {
        const where = opts.netns ? ` (in ${opts.netns})` : '';
        throw new CniError(
          opts.code ?? ErrorCode.KernelOperation,
          `nft ${args.slice(0, 6).join(' ')}${where} failed: ${r.stderr.trim() || `exit ${r.exitCode}`}`,
          r.stderr.trim(),
        );
      }
      return r;
    }
  }
  return run('nft', args, opts);
}

/** One `nft -f -` transaction (atomic); `netns`: inside the network namespace at that path. */
export async function nftApply(script: string, netns?: string): Promise<void> {
  await nftRun(['-f', '-'], { input: script, ...(netns ? { netns } : {}) });
}

/** One `nft -f -` transaction that may fail (a concurrent change): the outcome, never a throw. */
export async function nftTry(script: string, netns?: string): Promise<{ ok: true } | { ok: false; stderr: string }> {
  const r = await nftRun(['-f', '-'], { input: script, allowFail: true, ...(netns ? { netns } : {}) });
  return r.exitCode === 0 ? { ok: true } : { ok: false, stderr: r.stderr.trim() };
}

export async function nftJson<T = { nftables: Array<Record<string, unknown>> }>(args: string[]): Promise<T> {
  const r = await nftRun(['-j', ...args]);
  return JSON.parse(r.stdout || '{"nftables":[]}') as T;
}

/** Whether a table exists, without failing when it does not. */
export async function nftTableExists(family: string, table: string): Promise<boolean> {
  const r = await nftRun(['list', 'table', family, table], { allowFail: true });
  return r.exitCode === 0;
}

/**
 * The named counters of one nft table in one `nft -j` read (in-process through libnftables where
 * it loads, like every nft call here); [] when the table is not there.
 */
export async function readNftCounters(table: string, family = 'inet', netns?: string): Promise<NftCounter[]> {
  const r = await nftRun(['-j', 'list', 'counters', 'table', family, table], { netns, allowFail: true });
  return r.exitCode === 0 ? parseNftCounters(r.stdout) : [];
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
  const r = await nftRun(['-j', ...(opts.terse ? ['-t'] : []), 'list', ...what], { allowFail: true });
  if (r.exitCode !== 0) {
    if (nftAbsent(r.stderr)) return undefined;
    throw new CniError(ErrorCode.KernelOperation, `nft could not list ${what.join(' ')}: ${r.stderr.trim()}`, r.stderr.trim());
  }
  return r.stdout;
}

/** `nft list table FAMILY TABLE` as text (for a human or a substring check): `text`, or why not (`stderr`). */
export async function nftTableText(family: string, table: string): Promise<{ text: string } | { text?: undefined; stderr: string }> {
  const r = await nftRun(['list', 'table', family, table], { allowFail: true });
  return r.exitCode === 0 ? { text: r.stdout } : { stderr: r.stderr.trim() };
}

/** Whether nftables is usable here (`nft list tables`): undefined, or why not. */
export async function nftUnusable(): Promise<string | undefined> {
  const r = await nftRun(['list', 'tables'], { allowFail: true });
  return r.exitCode === 0 ? undefined : r.stderr.trim() || `exit ${r.exitCode}`;
}

// ---- nf_tables over netlink, without libnftables (docs/netlink.md, "nftables over netlink")

/**
 * Whether the firewall owners' hot verbs talk nf_tables netlink themselves (./netlink/nftnl.ts):
 * under Bun with in-process netlink, unless CNI_TS_NFT_NETLINK=0 (then libnftables, as before;
 * CNI_TS_NETLINK=0 takes the `nft` process for everything).
 */
export function nftNetlink(): boolean {
  const v = process.env.CNI_TS_NFT_NETLINK;
  if (v === '0' || v === 'off' || v === 'false') return false;
  return netlinkEnabled();
}

/** One nf_tables transaction of messages (./netlink/nftnl.ts builds them): the outcome, never a throw for a refusal. */
export async function nftBatch(msgs: NftMsg[], netns?: string): Promise<{ ok: true } | { ok: false; errno: number; stderr: string }> {
  if (!msgs.length) return { ok: true };
  await new Promise((r) => setImmediate(r)); // as the netlink entry points: work started beside us begins first
  const r = NftSocket.get(netns).batch(msgs);
  return r ? { ok: false, ...r } : { ok: true };
}

const ENOENT = 2;

function dumpOf<T>(what: string, netns: string | undefined, req: (seq: number) => Uint8Array, decode: (m: NlMsg) => T): T[] | undefined {
  const r = NftSocket.get(netns).dump(req, what);
  if ('errno' in r) {
    if (r.errno === ENOENT) return undefined;
    throw new CniError(ErrorCode.KernelOperation, `nft could not list ${what}: ${errnoText(r.errno)}`, `errno ${r.errno}`);
  }
  return r.msgs.map(decode);
}

/** The rules of `family table [chain]` read by netlink (GETRULE dump); undefined when the table or chain is not there. */
export async function nftDumpRules(family: NftFamily, table: string, chain?: string, netns?: string): Promise<DumpedRule[] | undefined> {
  await new Promise((r) => setImmediate(r));
  return dumpOf(`rules of ${family} ${table}${chain ? ` ${chain}` : ''}`, netns, (seq) => rulesDump(family, table, chain, seq), decodeRule);
}

/** The chain names of `family table` (GETCHAIN dump of the family, filtered here); undefined when the table has none. */
export async function nftDumpChains(family: NftFamily, table: string, netns?: string): Promise<string[] | undefined> {
  await new Promise((r) => setImmediate(r));
  const all = dumpOf(`chains of ${family}`, netns, (seq) => chainsDump(family, table, seq), decodeChain);
  const mine = all?.filter((c) => c.table === table).map((c) => c.name);
  return mine?.length ? mine : undefined;
}

/**
 * Which of `names` are chains of `family table` (one GETCHAIN each, not a dump of every chain
 * of the family); undefined when none is (or there is no table).
 */
export async function nftChainsNamed(family: NftFamily, table: string, names: string[], netns?: string): Promise<string[] | undefined> {
  await new Promise((r) => setImmediate(r));
  const out: string[] = [];
  for (const name of names)
    if (dumpOf(`chain ${family} ${table} ${name}`, netns, (seq) => chainGet(family, table, name, seq), decodeChain)?.length) out.push(name);
  return out.length ? out : undefined;
}

/** The elements of map/set `set` of `family table` (GETSETELEM dump); undefined when it is not there. */
export async function nftDumpElements(family: NftFamily, table: string, set: string, netns?: string): Promise<DumpedElement[] | undefined> {
  const r = dumpOf(`elements of ${family} ${table} ${set}`, netns, (seq) => elementsDump(family, table, set, seq), decodeElements);
  return r?.flat();
}
