/**
 * The nftables masquerade backend, plus small nft helpers other firewall code may reuse
 * (listing tagged rules, deleting them by handle in one transaction).
 *
 * Layout: `table inet <table>` / `chain postrouting` (nat hook, srcnat priority), one rule per
 * container address: `ip saddr A ip daddr != SUBNET ip daddr != 224.0.0.0/4 masquerade
 * comment "cni:<net>:<att> ..."`. Every change is one atomic `nft -f` transaction.
 */
import type { Attachment } from '../cni/types.ts';
import { familyOf } from '../ipnet.ts';
import { nft, nftScript, nftString } from '../kernel/batch.ts';
import { nftApply, nftList, nftTry } from '../kernel/nft.ts';
import {
  multicastOf,
  networkTag,
  ownerComment,
  ownerTag,
  tagOfComment,
  type MasqueradeBackend,
  type MasqueradeEntry,
  type MasqueradeOwner,
} from './owner.ts';

export const MASQ_CHAIN = 'postrouting';

/** A rule as `nft -j` lists it (the fields we use). */
export interface NftRule {
  family: string;
  table: string;
  chain: string;
  handle: number;
  comment?: string;
  expr?: unknown[];
}

/** Rules of a table (optionally one chain); [] when the table or chain does not exist. */
export async function listRules(family: string, table: string, chain?: string): Promise<NftRule[]> {
  const objects = (await nftList(family, table, { chain })) ?? [];
  return objects.filter((o) => o.rule).map((o) => o.rule as unknown as NftRule);
}

/** `delete rule` lines for `rules` (by handle); one transaction when applied together. */
export function deleteRulesScript(rules: NftRule[]): string {
  return nftScript(rules.map((r) => nft`delete rule ${r.family} ${r.table} ${r.chain} handle ${r.handle}`));
}

/** Rules whose comment carries one of our tags accepted by `match`. */
export function taggedRules(rules: NftRule[], match: (tag: string) => boolean): NftRule[] {
  return rules.filter((r) => {
    const t = tagOfComment(r.comment);
    return t !== undefined && match(t);
  });
}

/**
 * Delete the rules of `family table [chain]` whose tag `match` accepts, in one transaction.
 * A rule deleted meanwhile by someone else (a concurrent GC) only causes a re-read.
 */
export async function deleteTaggedRules(
  family: string,
  table: string,
  chain: string | undefined,
  match: (tag: string) => boolean,
): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const mine = taggedRules(await listRules(family, table, chain), match);
    if (!mine.length) return 0;
    const script = deleteRulesScript(mine);
    if (attempt >= 2) await nftApply(script);
    else if (!(await nftTry(script)).ok) continue;
    return mine.length;
  }
}

/** The table and chain, created when absent (`add` is idempotent). */
export function masqueradeBaseScript(table: string): string {
  return nftScript([
    nft`add table inet ${table}`,
    nft`add chain inet ${table} ${MASQ_CHAIN} { type nat hook postrouting priority srcnat; policy accept; }`,
  ]);
}

/** One rule per entry, tagged with the owner. Pure. */
export function masqueradeRulesScript(table: string, owner: MasqueradeOwner, entries: MasqueradeEntry[]): string {
  const comment = nftString(ownerComment(owner));
  return nftScript(
    entries.map((e) => {
      const fam = familyOf(e.ip) === 6 ? 'ip6' : 'ip';
      return nft`add rule inet ${table} ${MASQ_CHAIN} ${fam} saddr ${e.ip} ${fam} daddr != ${e.subnet} ${fam} daddr != ${multicastOf(e.ip)} counter masquerade comment ${comment}`;
    }),
  );
}

/** The source address a masquerade rule matches (from its JSON expression). */
function ruleSaddr(r: NftRule): string | undefined {
  for (const e of r.expr ?? []) {
    const m = (e as { match?: { left?: { payload?: { field?: string } }; right?: unknown; op?: string } }).match;
    if (m?.left?.payload?.field === 'saddr' && m.op === '==' && typeof m.right === 'string') return m.right;
  }
  return undefined;
}

export class NftMasquerade implements MasqueradeBackend {
  readonly kind = 'nftables' as const;
  constructor(readonly table: string) {}

  /** The script `add` applies; callers may append their own lines to the same transaction. */
  addScript(owner: MasqueradeOwner, entries: MasqueradeEntry[]): string {
    if (!entries.length) return '';
    return masqueradeBaseScript(this.table) + masqueradeRulesScript(this.table, owner, entries);
  }

  async add(owner: MasqueradeOwner, entries: MasqueradeEntry[]): Promise<void> {
    const script = this.addScript(owner, entries);
    if (script) await nftApply(script);
  }

  async del(owner: MasqueradeOwner): Promise<void> {
    const tag = ownerTag(owner);
    await deleteTaggedRules('inet', this.table, MASQ_CHAIN, (t) => t === tag);
  }

  async dedupe(owner: MasqueradeOwner): Promise<void> {
    const tag = ownerTag(owner);
    const seen = new Set<string>();
    const extra = taggedRules(await listRules('inet', this.table, MASQ_CHAIN), (t) => t === tag)
      .sort((a, b) => a.handle - b.handle)
      .filter((r) => {
        const k = ruleSaddr(r) ?? String(r.handle);
        if (!seen.has(k)) {
          seen.add(k);
          return false;
        }
        return true;
      });
    if (extra.length) await nftApply(deleteRulesScript(extra));
  }

  async missing(owner: MasqueradeOwner, entries: MasqueradeEntry[]): Promise<MasqueradeEntry[]> {
    const tag = ownerTag(owner);
    const have = new Set(taggedRules(await listRules('inet', this.table, MASQ_CHAIN), (t) => t === tag).map(ruleSaddr));
    return entries.filter((e) => !have.has(e.ip));
  }

  async gc(networkName: string, keep: Attachment[]): Promise<void> {
    const net = networkTag(networkName);
    const keepTags = new Set(keep.map((a) => ownerTag({ network: networkName, containerId: a.containerID, ifname: a.ifname })));
    await deleteTaggedRules('inet', this.table, MASQ_CHAIN, (t) => t.startsWith(`${net}:`) && !keepTags.has(t));
  }
}
