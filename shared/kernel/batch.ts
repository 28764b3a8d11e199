/**
 * The one routine that puts values into the line-oriented scripts kernel tools read:
 * `ip -batch -` and `bridge -batch -` (iproute2's batch parser), `nft -f -`, and
 * `iptables-restore` (`restoreToken`).
 *
 * Those parsers give meaning to characters an argv never has: iproute2 splits words on
 * blanks, cuts a line at `#`, takes `"` and `'` as quotes and joins a line ending in `\` with
 * the next; nft also separates statements with `;` and newlines, opens blocks with `{`, quotes
 * with `"` and expands `$variables`. A value that carries any of them would be read as more
 * (or other) commands than the builder wrote: a store entry, a config field or a runtime
 * argument could then run kernel commands of its choice. So every value put into a script
 * goes through `batchToken` (one word) or `nftString` (one quoted nft string), which refuse
 * (CniError code 100, naming the value) instead of quoting: nothing the parsers would
 * interpret ever reaches them. Script text written by the builders themselves (keywords,
 * `{ ... }`) is not a value and is not checked; `nft` marks it (see below).
 */
import { CniError, ErrorCode } from '../cni/errors.ts';

/**
 * Characters a token may hold: printable ASCII without blanks, quotes, `#`, `;`, `\`, braces,
 * `$` or backquote. Interface names, addresses, CIDRs, MACs, numbers, table names, nsfs
 * paths all fit; anything else (control characters, newlines, non-ASCII) is refused.
 */
const TOKEN = /^[!%&(-:<-Z[\]^_a-z|~]+$/;
// The class above, spelt out: ! % & ( ) * + , - . / 0-9 : < = > ? @ A-Z [ ] ^ _ a-z | ~
// (no space " # $ ' ; \ ` { }).

const show = (v: string): string => JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}...` : v);

/** Why `v` cannot be one batch word, or undefined when it can. */
export function tokenProblem(v: string): string | undefined {
  if (v === '') return 'is empty';
  if (TOKEN.test(v)) return undefined;
  if (/[\r\n]/.test(v)) return 'contains a line break';
  if (/\s/.test(v)) return 'contains white space';
  if ([...v].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f)) return 'contains a control character';
  if (/[^ -~]/.test(v)) return 'contains a non-ASCII character';
  return 'contains a character the script parser interprets (quote, "#", ";", "\\", "{", "}", "$" or "`")';
}

const refuse = (tool: string, v: string, why: string): CniError =>
  new CniError(
    ErrorCode.KernelOperation,
    `refusing to pass ${show(v)} to ${tool}: it ${why}`,
    'a value in a batch script must be one plain word',
  );

/** One value as a batch word; throws (code 100) when it is not one plain word. */
export function batchToken(v: string | number, tool = 'ip -batch'): string {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw refuse(tool, String(v), 'is not an integer');
    return String(v);
  }
  if (typeof v !== 'string') throw refuse(tool, String(v), 'is not a string');
  const why = tokenProblem(v);
  if (why) throw refuse(tool, v, why);
  return v;
}

/** Whether every argument of every command can go into a batch unchanged. */
export const batchable = (cmds: string[][]): boolean =>
  cmds.every((c) => c.every((a) => typeof a === 'string' && tokenProblem(a) === undefined));

/**
 * The stdin of `ip -batch -` / `bridge -batch -`: one line per command (argv without the
 * tool name), every argument checked by `batchToken`.
 */
export function batchScript(cmds: string[][], tool = 'ip -batch'): string {
  return cmds.map((c) => c.map((a) => batchToken(a, tool)).join(' ')).join('\n') + '\n';
}

// ---- nft ----

/** Script text built by `nft` (or `nftString`): already checked, spliced in as is. */
export class NftText {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

export type NftValue = string | number | NftText | NftText[];

/**
 * Tagged template for nft script text: the literal parts are the builder's own syntax; every
 * `${value}` must be one plain word (`batchToken`), unless it is NftText made by `nft`,
 * `nftString` or `nftExpr` (a list of NftText is joined with ", ").
 */
export function nft(strings: TemplateStringsArray, ...values: NftValue[]): NftText {
  let out = strings[0];
  values.forEach((v, i) => {
    if (v instanceof NftText) out += v.text;
    else if (Array.isArray(v)) out += v.map((x) => (x instanceof NftText ? x.text : batchToken(x as string, 'nft'))).join(', ');
    else out += batchToken(v, 'nft');
    out += strings[i + 1];
  });
  return new NftText(out);
}

/** A double-quoted nft string (a comment): blanks allowed; quotes, `\`, control characters, non-ASCII and more than 128 bytes refused. */
export function nftString(v: string): NftText {
  if (typeof v !== 'string' || /[^\x20-\x7e]|["\\]/.test(v))
    throw refuse('nft', String(v), 'cannot be an nft quoted string (double quote, "\\", control or non-ASCII character)');
  if (v.length > 128) throw refuse('nft', v, 'is longer than 128 characters');
  return new NftText(`"${v}"`);
}

/**
 * A match expression written by the config author (portmap's conditions): blanks allowed,
 * but one line with no statement separator, comment, block or variable.
 */
export function nftExpr(v: string): NftText {
  if (typeof v !== 'string' || v.trim() === '' || /[^\x20-\x7e]|[;#{}$`\\]/.test(v)) {
    throw refuse('nft', String(v), 'is not a single nft match expression (line break, ";", "#", "{", "}", "$" or "\\")');
  }
  return new NftText(v);
}

// ---- iptables-restore ----

/**
 * One argument of an `iptables-restore` line: a plain word as is; otherwise double-quoted when
 * it holds only printable ASCII without `"` or `\` (a comment with blanks); anything else (a
 * line break, control or non-ASCII character, quote, backslash) is refused with code 100.
 */
export function restoreToken(v: string): string {
  if (typeof v === 'string' && TOKEN.test(v)) return v;
  if (typeof v !== 'string' || /[^ -~]|["\\]/.test(v))
    throw refuse(
      'iptables-restore',
      String(v),
      'cannot be an iptables-restore argument (line break, control or non-ASCII character, double quote or "\\")',
    );
  return `"${v}"`;
}

/** One `iptables-restore` rule line from its arguments. */
export const restoreLine = (tokens: string[]): string => tokens.map(restoreToken).join(' ');

/** The text of an nft script made of `nft` lines. */
export const nftScript = (lines: NftText[]): string => lines.map((l) => l.text).join('\n') + (lines.length ? '\n' : '');
