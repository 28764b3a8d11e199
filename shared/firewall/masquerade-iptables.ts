/**
 * The iptables masquerade backend (`ipMasqBackend: "iptables"`), for hosts whose firewall is
 * managed with iptables. A chain of our own in the nat table, jumped to from POSTROUTING;
 * per container address two rules tagged with `-m comment`:
 *   -A <chain> -s A/32 -d SUBNET -j RETURN
 *   -A <chain> -s A/32 ! -d 224.0.0.0/4 -j MASQUERADE
 * Each change is one `iptables-save` read and one `iptables-restore --noflush` write per
 * family, under the one iptables lock (./iptables.ts: the door of every iptables owner).
 */
import { restoreLine, restoreToken } from '../kernel/batch.ts';
import type { Attachment } from '../cni/types.ts';
import { familyOf } from '../ipnet.ts';
import { commentOf, parseSaved, readSaved, restoreTransaction, withFirewallLock, type SavedTable } from './iptables.ts';
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

type Fam = 4 | 6;
export const JUMP_COMMENT = 'cni-ts bridge masquerade';

/** The nat table as `iptables-save` prints it, reduced to what we need. */
export interface NatState {
  hasChain: boolean;
  hasJump: boolean;
  /** `-A <chain> ...` lines of our chain */
  rules: string[];
}

/** The masquerade chain's view of a read of the nat table (./iptables.ts reads and parses it). Pure. */
export function natStateOf(saved: SavedTable, chain: string): NatState {
  return {
    hasChain: saved.chains.has(chain),
    hasJump: saved.rules.some((r) => r.chain === 'POSTROUTING' && r.tokens.at(-2) === '-j' && r.tokens.at(-1) === chain),
    rules: saved.rules.filter((r) => r.chain === chain).map((r) => `-A ${chain} ${r.text}`),
  };
}

export function parseNat(save: string, chain: string): NatState {
  return natStateOf(parseSaved(save, 'nat'), chain);
}

export { commentOf };

export function ruleLines(chain: string, owner: MasqueradeOwner, entries: MasqueradeEntry[]): string[] {
  const c = ownerComment(owner);
  return entries.flatMap((e) => {
    const host = `${e.ip}/${familyOf(e.ip) === 6 ? 128 : 32}`;
    return [
      restoreLine(['-A', chain, '-s', host, '-d', e.subnet, '-m', 'comment', '--comment', c, '-j', 'RETURN']),
      restoreLine(['-A', chain, '-s', host, '!', '-d', multicastOf(e.ip), '-m', 'comment', '--comment', c, '-j', 'MASQUERADE']),
    ];
  });
}

export class IptablesMasquerade implements MasqueradeBackend {
  readonly kind = 'iptables' as const;
  constructor(readonly chain: string) {}

  private async state(fam: Fam): Promise<NatState> {
    return natStateOf((await readSaved(fam, 'nat')) ?? { chains: new Set(), rules: [] }, this.chain);
  }

  private async restore(fam: Fam, lines: string[]): Promise<void> {
    await restoreTransaction(fam, 'nat', lines, 5);
  }

  private locked<T>(body: () => Promise<T>): Promise<T> {
    return withFirewallLock(body);
  }

  async add(owner: MasqueradeOwner, entries: MasqueradeEntry[]): Promise<void> {
    await this.locked(async () => {
      for (const fam of [4, 6] as const) {
        const mine = entries.filter((e) => familyOf(e.ip) === fam);
        if (!mine.length) continue;
        const st = await this.state(fam);
        const lines: string[] = [];
        if (!st.hasChain) lines.push(`:${restoreToken(this.chain)} - [0:0]`);
        if (!st.hasJump) lines.push(restoreLine(['-A', 'POSTROUTING', '-m', 'comment', '--comment', JUMP_COMMENT, '-j', this.chain]));
        lines.push(...ruleLines(this.chain, owner, mine));
        await this.restore(fam, lines);
      }
    });
  }

  private async deleteMatching(match: (tag: string) => boolean): Promise<void> {
    await this.locked(async () => {
      for (const fam of [4, 6] as const) {
        const st = await this.state(fam);
        const del = st.rules.filter((l) => {
          const t = tagOfComment(commentOf(l));
          return t !== undefined && match(t);
        });
        await this.restore(
          fam,
          del.map((l) => `-D${l.slice(2)}`),
        );
      }
    });
  }

  async del(owner: MasqueradeOwner): Promise<void> {
    const tag = ownerTag(owner);
    await this.deleteMatching((t) => t === tag);
  }

  async dedupe(owner: MasqueradeOwner): Promise<void> {
    const tag = ownerTag(owner);
    await this.locked(async () => {
      for (const fam of [4, 6] as const) {
        const seen = new Set<string>();
        const extra = (await this.state(fam)).rules.filter((l) => {
          if (tagOfComment(commentOf(l)) !== tag) return false;
          if (!seen.has(l)) {
            seen.add(l);
            return false;
          }
          return true;
        });
        await this.restore(
          fam,
          extra.map((l) => `-D${l.slice(2)}`),
        );
      }
    });
  }

  async missing(owner: MasqueradeOwner, entries: MasqueradeEntry[]): Promise<MasqueradeEntry[]> {
    const tag = ownerTag(owner);
    const out: MasqueradeEntry[] = [];
    for (const fam of [4, 6] as const) {
      const mine = entries.filter((e) => familyOf(e.ip) === fam);
      if (!mine.length) continue;
      const rules = (await this.state(fam)).rules.filter((l) => tagOfComment(commentOf(l)) === tag && l.endsWith('-j MASQUERADE'));
      for (const e of mine) if (!rules.some((l) => l.includes(` -s ${e.ip}/`))) out.push(e);
    }
    return out;
  }

  async gc(networkName: string, keep: Attachment[]): Promise<void> {
    const net = networkTag(networkName);
    const keepTags = new Set(keep.map((a) => ownerTag({ network: networkName, containerId: a.containerID, ifname: a.ifname })));
    await this.deleteMatching((t) => t.startsWith(`${net}:`) && !keepTags.has(t));
  }

  /**
   * Remove the chain and its POSTROUTING jump entirely (operators, tests). Three restores:
   * iptables-nft refuses to delete a chain in the batch that drops its last reference.
   */
  async removeChain(): Promise<void> {
    await this.locked(async () => {
      for (const fam of [4, 6] as const) {
        const st = await this.state(fam);
        if (st.hasJump)
          await this.restore(fam, [restoreLine(['-D', 'POSTROUTING', '-m', 'comment', '--comment', JUMP_COMMENT, '-j', this.chain])]);
        if (st.hasChain) {
          await this.restore(fam, [restoreLine(['-F', this.chain])]);
          await this.restore(fam, [restoreLine(['-X', this.chain])]);
        }
      }
    });
  }
}
