/**
 * The firewall owners' one iptables door, the counterpart of ./nft.ts for hosts managed with
 * iptables: read a table (one `iptables-save -t T` per family, parsed once), find rules by the
 * tag in their `-m comment`, and one `iptables-restore --noflush` transaction per owner, verb and
 * family, all under the one iptables lock of every owner of ours (restore declaring an existing
 * chain would flush it, so the read-check-write must not interleave).
 */
import type { Family } from '../ipnet.ts';
import { iptablesRestore, iptablesSave, withIptablesLock } from '../kernel/iptables.ts';
import { tagOfComment } from './owner.ts';

/** A saved `-A CHAIN ...` line: its chain, the rest as text (for `-D CHAIN <text>`) and as tokens. */
export interface SavedRule {
  chain: string;
  text: string;
  tokens: string[];
  /** the `--comment` value, if any */
  comment?: string;
}

/** One table as `iptables-save -t T` printed it: chain names and rules in order. */
export interface SavedTable {
  chains: Set<string>;
  rules: SavedRule[];
}

/** Split an iptables-save rule line into tokens (double quotes with backslash escapes). Pure. */
export function tokenize(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inQ = false;
  let has = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (inQ) {
      if (c === '\\' && i + 1 < s.length) cur += s[++i];
      else if (c === '"') inQ = false;
      else cur += c;
    } else if (c === '"') {
      inQ = true;
      has = true;
    } else if (/\s/.test(c)) {
      if (has || cur) out.push(cur);
      cur = '';
      has = false;
    } else {
      cur += c;
    }
  }
  if (has || cur) out.push(cur);
  return out;
}

/** The value after `flag` in a rule's tokens. */
export const valueAfter = (tokens: string[], flag: string): string | undefined => {
  const i = tokens.indexOf(flag);
  return i >= 0 ? tokens[i + 1] : undefined;
};

/** The comment of a saved rule line (quoted or bare). Pure. */
export function commentOf(line: string): string | undefined {
  const m = /--comment (?:"((?:[^"\\]|\\.)*)"|(\S+))/.exec(line);
  return m ? (m[1] ?? m[2]) : undefined;
}

/** `iptables-save` text, the section of `table` (default nat) parsed. Pure. */
export function parseSaved(text: string, table = 'nat'): SavedTable {
  const st: SavedTable = { chains: new Set(), rules: [] };
  let inTable = false;
  for (const raw of text.split('\n')) {
    const l = raw.trim();
    if (l.startsWith('*')) inTable = l === `*${table}`;
    if (!inTable) continue;
    if (l.startsWith(':')) st.chains.add(l.slice(1).split(' ')[0]);
    else if (l.startsWith('-A ')) {
      const tokens = tokenize(l);
      st.rules.push({
        chain: tokens[1],
        text: l.slice(3 + tokens[1].length).trim(),
        tokens: tokens.slice(2),
        comment: valueAfter(tokens, '--comment'),
      });
    }
  }
  return st;
}

/** The tag a saved rule carries in its comment, or undefined. */
export const tagOfRule = (r: SavedRule): string | undefined => tagOfComment(r.comment);

/** One read of `table` for family `f`; undefined when iptables-save failed and `allowFail`. */
export async function readSaved(f: Family, table = 'nat', opts: { allowFail?: boolean } = {}): Promise<SavedTable | undefined> {
  const text = await iptablesSave(f, table, opts);
  return text === undefined ? undefined : parseSaved(text, table);
}

/** The `iptables-restore` script of one transaction (`*table`, lines, COMMIT); '' for no lines. Pure. */
export function restoreScript(table: string, lines: string[]): string {
  return lines.length ? `*${table}\n${lines.join('\n')}\nCOMMIT\n` : '';
}

/** One owner's verb for one family as one `iptables-restore --noflush` transaction; no lines, no process. */
export async function restoreTransaction(f: Family, table: string, lines: string[], waitSeconds = 5): Promise<void> {
  const script = restoreScript(table, lines);
  if (script) await iptablesRestore(f, script, waitSeconds);
}

/** A whole script (`*table ... COMMIT`, e.g. portmap's) as one transaction; '' changes nothing. */
export async function restoreScriptTransaction(f: Family, script: string, waitSeconds = 5): Promise<void> {
  if (script) await iptablesRestore(f, script, waitSeconds);
}

/** `-D` lines undoing saved rules. Pure. */
export const deleteLines = (rules: SavedRule[]): string[] => rules.map((r) => `-D ${r.chain} ${r.text}`);

/** Run an owner's read-check-write under the one iptables lock of every owner. */
export const withFirewallLock = <T>(body: () => Promise<T>): Promise<T> => withIptablesLock(body);
