/**
 * The nftables masquerade backend (its table reader, diff and transaction are ./nft.ts's).
 *
 * Layout: `table inet <table>` / `chain postrouting` (nat hook, srcnat priority), one rule per
 * container address: `ip saddr A ip daddr != SUBNET ip daddr != 224.0.0.0/4 masquerade
 * comment "cni:<net>:<att> ..."`. Every change is one atomic `nft -f` transaction.
 */
import type { Attachment } from '../cni/types.ts';
import { familyOf } from '../ipnet.ts';
import { nft, nftScript, nftString } from '../kernel/batch.ts';
import {
  addBaseChain,
  addRule,
  addrMatch,
  addTable,
  delRule,
  ex,
  nfprotoIs,
  PRIORITY,
  saddrOf,
  type NftMsg,
} from '../kernel/netlink/nftnl.ts';
import { nftDumpRules } from '../kernel/nft.ts';
import {
  deleteRulesScript,
  deleteTaggedRules,
  listRules,
  netlinkPath,
  netlinkTransaction,
  taggedRules,
  transaction,
  type NftRule,
} from './nft.ts';
import {
  multicastOf,
  networkTag,
  ownerComment,
  ownerTag,
  type MasqueradeBackend,
  type MasqueradeEntry,
  type MasqueradeOwner,
} from './owner.ts';

export const MASQ_CHAIN = 'postrouting';
/** Moved to ./nft.ts (the one table reader and transaction of every owner); kept here for importers. */
export { deleteRulesScript, deleteTaggedRules, listRules, taggedRules, type NftRule } from './nft.ts';

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

/**
 * `masqueradeBaseScript` + `masqueradeRulesScript` as nf_tables messages, the same bytecode nft
 * writes for that text (test/nft-netlink.test.ts compares both in a netns); undefined when an
 * entry is one nft would write otherwise (the caller then applies the text). Pure.
 */
export function masqueradeMsgs(table: string, owner: MasqueradeOwner, entries: MasqueradeEntry[]): NftMsg[] | undefined {
  const comment = ownerComment(owner);
  const msgs: NftMsg[] = [addTable('inet', table), addBaseChain('inet', table, MASQ_CHAIN, 'nat', 'postrouting', PRIORITY.srcnat)];
  for (const e of entries) {
    const v = familyOf(e.ip) === 6 ? 6 : 4;
    const src = addrMatch(v, 'saddr', false, e.ip);
    const dst = addrMatch(v, 'daddr', true, e.subnet);
    const mc = addrMatch(v, 'daddr', true, multicastOf(e.ip));
    if (!src || !dst || !mc || familyOf(e.subnet.split('/')[0]) !== v) return undefined;
    msgs.push(
      addRule(
        'inet',
        table,
        MASQ_CHAIN,
        [...nfprotoIs(v), ...src, ...dst, ...mc, ex.counter(), ex.masq()],
        comment,
        `add rule inet ${table} ${MASQ_CHAIN} (${e.ip})`,
      ),
    );
  }
  return msgs;
}

/** The source address a masquerade rule matches (from its JSON expression). */
function ruleSaddr(r: NftRule): string | undefined {
  for (const e of r.expr ?? []) {
    const m = (e as { match?: { left?: { payload?: { field?: string } }; right?: unknown; op?: string } }).match;
    if (m?.left?.payload?.field === 'saddr' && m.op === '==' && typeof m.right === 'string') return m.right;
  }
  return undefined;
}

/** The owner's rules with the source address each matches, by netlink (a GETRULE dump) or `nft -j`. */
async function ownedRules(table: string, tag: string): Promise<Array<{ rule: NftRule; saddr?: string }>> {
  if (netlinkPath()) {
    const dumped = (await nftDumpRules('inet', table, MASQ_CHAIN)) ?? [];
    const all = dumped.map((r) => ({
      rule: { family: 'inet', table, chain: r.chain, handle: r.handle, comment: r.comment },
      saddr: saddrOf(r),
    }));
    const mine = new Set(
      taggedRules(
        all.map((x) => x.rule),
        (t) => t === tag,
      ),
    );
    return all.filter((x) => mine.has(x.rule));
  }
  return taggedRules(await listRules('inet', table, MASQ_CHAIN), (t) => t === tag).map((rule) => ({ rule, saddr: ruleSaddr(rule) }));
}

export class NftMasquerade implements MasqueradeBackend {
  readonly kind = 'nftables' as const;
  constructor(readonly table: string) {}

  /** The script `add` applies; callers may append their own lines to the same transaction. */
  addScript(owner: MasqueradeOwner, entries: MasqueradeEntry[]): string {
    if (!entries.length) return '';
    return masqueradeBaseScript(this.table) + masqueradeRulesScript(this.table, owner, entries);
  }

  addMsgs(owner: MasqueradeOwner, entries: MasqueradeEntry[]): NftMsg[] | undefined {
    return entries.length && netlinkPath() ? masqueradeMsgs(this.table, owner, entries) : undefined;
  }

  async add(owner: MasqueradeOwner, entries: MasqueradeEntry[]): Promise<void> {
    if (!entries.length) return;
    const msgs = netlinkPath() ? masqueradeMsgs(this.table, owner, entries) : undefined;
    if (msgs) return netlinkTransaction(msgs);
    const script = this.addScript(owner, entries);
    await transaction(script);
  }

  async del(owner: MasqueradeOwner): Promise<void> {
    const tag = ownerTag(owner);
    await deleteTaggedRules('inet', this.table, MASQ_CHAIN, (t) => t === tag);
  }

  async dedupe(owner: MasqueradeOwner): Promise<void> {
    const tag = ownerTag(owner);
    const seen = new Set<string>();
    const extra = (await ownedRules(this.table, tag))
      .sort((a, b) => a.rule.handle - b.rule.handle)
      .filter(({ rule, saddr }) => {
        const k = saddr ?? String(rule.handle);
        if (!seen.has(k)) {
          seen.add(k);
          return false;
        }
        return true;
      })
      .map((x) => x.rule);
    if (netlinkPath()) return netlinkTransaction(extra.map((r) => delRule('inet', this.table, r.chain, r.handle)));
    await transaction(deleteRulesScript(extra));
  }

  async missing(owner: MasqueradeOwner, entries: MasqueradeEntry[]): Promise<MasqueradeEntry[]> {
    const tag = ownerTag(owner);
    const have = new Set((await ownedRules(this.table, tag)).map((x) => x.saddr));
    return entries.filter((e) => !have.has(e.ip));
  }

  async gc(networkName: string, keep: Attachment[]): Promise<void> {
    const net = networkTag(networkName);
    const keepTags = new Set(keep.map((a) => ownerTag({ network: networkName, containerId: a.containerID, ifname: a.ifname })));
    await deleteTaggedRules('inet', this.table, MASQ_CHAIN, (t) => t.startsWith(`${net}:`) && !keepTags.has(t));
  }
}
