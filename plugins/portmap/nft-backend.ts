/**
 * The nftables backend: the thin layer that reads our table (one `nft -j list table`) and
 * applies one `nft -f` transaction per verb, both through the firewall owners' one door
 * (shared/firewall/nft.ts: `readTable`, `tryTransaction`, `converge`).
 */
import { CniError, ErrorCode } from '../../shared/cni/errors.ts';
import {
  converge,
  convergeNetlink,
  netlinkPath,
  netlinkReads,
  readTable as readNftTable,
  tryNetlinkTransaction,
  tryTransaction,
} from '../../shared/firewall/nft.ts';
import { addMsgs, lostMappings, readCheck, readRaw, removeMsgs } from './nft-netlink.ts';
import { humanOfComment } from '../../shared/firewall/owner.ts';
import { nftUnusable } from '../../shared/kernel/nft.ts';
import type { FamilyPlan, Mapping, Settings } from './config.ts';
import { describeMapping } from './config.ts';
import {
  addScript,
  attachmentTags,
  chainOf,
  conflicts,
  expectedSignatures,
  legacyRemoveLines,
  ownedBy,
  parseTable,
  removeLines,
  type TableState,
} from './nft.ts';
import type { Backend } from './backend.ts';

async function readTable(table: string): Promise<TableState | undefined> {
  const t = await readNftTable('inet', table);
  return t && parseTable({ nftables: t.objects });
}

const apply = tryTransaction;

const script = (lines: string[]): string => (lines.length ? lines.join('\n') + '\n' : '');

function conflictError(st: TableState, tag: string, plans: FamilyPlan[]): CniError | undefined {
  const c = conflicts(st, tag, plans);
  if (!c.length) return undefined;
  const what = c
    .map(
      (x) =>
        `${describeMapping(x.mapping)} (held by ${x.holderComment ? `container ${humanOfComment(x.holderComment)}` : x.holder.target})`,
    )
    .join(', ');
  return new CniError(ErrorCode.Conflict, `host port already published by another container: ${what}`, 'portmap: nothing was changed');
}

const mismatch = (what: string, where: string): CniError => new CniError(ErrorCode.CheckMismatch, what, where);

/** What CHECK found of one attachment, from either read; the rules and the lost mappings only asked for when the chain is there. */
interface CheckFound {
  table: boolean;
  chain: boolean;
  signatures: () => string[];
  lost: () => Mapping[];
}

/** CHECK's verdict, the same on both reads: the first of table, chain, rules, map elements that is wrong. */
function checkFindings(s: Settings, tag: string, plans: FamilyPlan[], f: CheckFound): void {
  const chain = chainOf(tag);
  const where = `table inet ${s.nftTable}`;
  if (!f.table) throw mismatch(`nft table inet ${s.nftTable} is missing`, 'portmap CHECK');
  if (!f.chain) throw mismatch(`nft chain ${chain} of this container is missing`, where);
  const have = new Set(f.signatures());
  const missing = expectedSignatures(plans).filter((sig) => !have.has(sig));
  if (missing.length) throw mismatch(`port mapping rules missing in chain ${chain}: ${missing.join(', ')}`, where);
  const lost = f.lost();
  if (lost.length)
    throw mismatch(`host ports no longer dispatched to this container: ${lost.map((m) => describeMapping(m)).join(', ')}`, where);
}

/** CHECK with netlink dumps (the chain, its rules, the maps it uses) instead of one `nft -j list table`. */
async function checkNetlink(s: Settings, tag: string, plans: FamilyPlan[]): Promise<void> {
  const st = await readCheck(s.nftTable, netlinkReads('inet'), tag, plans);
  checkFindings(s, tag, plans, { table: st.table, chain: st.chain, signatures: () => st.signatures, lost: () => lostMappings(st, plans) });
}

export const nftBackend: Backend = {
  async add(s, tag, comment, plans) {
    // Optimistic: one transaction. `create element` fails atomically when a key exists. As
    // nf_tables messages when it can (./nft-netlink.ts); the rare second round below is text.
    const msgs = netlinkPath() ? addMsgs(s, tag, comment, plans) : undefined;
    const first = msgs ? await tryNetlinkTransaction(msgs) : await apply(addScript(s, tag, comment, plans, undefined));
    if (first.ok) return;
    if (!/File exists/i.test(first.stderr))
      throw new CniError(ErrorCode.KernelOperation, `nft transaction for port mappings failed: ${first.stderr}`, first.stderr);
    // Someone holds a key: another attachment (conflict) or this one (a repeated ADD).
    const st = await readTable(s.nftTable);
    if (st) {
      const err = conflictError(st, tag, plans);
      if (err) throw err;
    }
    const again = await apply(addScript(s, tag, comment, plans, st ? ownedBy(st, tag) : undefined));
    if (!again.ok) {
      const now = await readTable(s.nftTable);
      const err = now && conflictError(now, tag, plans);
      throw err || new CniError(ErrorCode.KernelOperation, `nft transaction for port mappings failed: ${again.stderr}`, again.stderr);
    }
  },

  async del(s, tag) {
    // Also the rules an earlier version left in the legacy base chains (see nft.ts). A
    // concurrent GC may remove some of it between the read and the write: re-read, retry.
    if (netlinkPath()) {
      await convergeNetlink(
        () => readRaw(s.nftTable, netlinkReads('inet'), tag),
        (st) => (st ? removeMsgs(s.nftTable, st, [tag]) : []),
        { fail: (e) => new CniError(ErrorCode.KernelOperation, `nft could not remove port mappings: ${e}`, e) },
      );
      return;
    }
    await converge(
      () => readTable(s.nftTable),
      (st) => (st ? script([...removeLines(s.nftTable, ownedBy(st, tag)), ...legacyRemoveLines(s.nftTable, st.listed)]) : ''),
      { fail: (e) => new CniError(ErrorCode.KernelOperation, `nft could not remove port mappings: ${e}`, e) },
    );
  },

  async check(s, tag, plans) {
    if (netlinkPath()) return checkNetlink(s, tag, plans);
    const st = await readTable(s.nftTable);
    const own = st ? ownedBy(st, tag) : undefined;
    const keys = new Set(own?.elements.map((e) => `${e.map}:${e.key}`));
    checkFindings(s, tag, plans, {
      table: st !== undefined,
      chain: own?.chainExists ?? false,
      signatures: () => (st?.rules ?? []).filter((r) => r.chain === own?.chain).map((r) => r.signature),
      lost: () =>
        plans.flatMap((p) =>
          p.mappings.filter(
            (m) =>
              !keys.has(
                `${m.hostIP ? 'hostip' : 'hostport'}${p.container.family}:${m.hostIP ? `${m.hostIP} . ` : ''}${m.protocol} . ${m.hostPort}`,
              ),
          ),
        ),
    });
  },

  async gc(s, netTag, validTags) {
    // A concurrent DEL or GC may remove some of it between the read and the write: re-read, retry.
    if (netlinkPath()) {
      const prefix = `pm-${netTag}-`;
      await convergeNetlink(
        () => readRaw(s.nftTable, netlinkReads('inet')),
        (st) => {
          if (!st) return [];
          const stale = [...st.chains]
            .filter((c) => c.startsWith(prefix))
            .map((c) => c.slice(3))
            .filter((t) => !validTags.has(t));
          return removeMsgs(s.nftTable, st, stale);
        },
        { fail: (e) => new CniError(ErrorCode.KernelOperation, `nft could not remove stale port mappings: ${e}`, e) },
      );
      return;
    }
    await converge(
      () => readTable(s.nftTable),
      (st) => {
        if (!st) return '';
        const stale = attachmentTags(st, netTag).filter((t) => !validTags.has(t));
        return script([...stale.flatMap((t) => removeLines(s.nftTable, ownedBy(st, t))), ...legacyRemoveLines(s.nftTable, st.listed)]);
      },
      { fail: (e) => new CniError(ErrorCode.KernelOperation, `nft could not remove stale port mappings: ${e}`, e) },
    );
  },

  async status() {
    const why = await nftUnusable();
    if (why) throw new CniError(ErrorCode.NotAvailable, `nftables is not usable: ${why}`, 'portmap STATUS');
  },
};
