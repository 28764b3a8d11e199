/**
 * The iptables backend: per family one `iptables-save -t nat` read and one
 * `iptables-restore --noflush` write per verb, under the one iptables lock so the
 * read-check-write of concurrent ADDs (conflict detection) is serialised; all through the
 * firewall owners' iptables door (shared/firewall/iptables.ts).
 */
import { CniError, ErrorCode } from '../../shared/cni/errors.ts';
import { readSaved, restoreScriptTransaction, withFirewallLock } from '../../shared/firewall/iptables.ts';
import { iptablesUnusable } from '../../shared/kernel/iptables.ts';
import type { Family } from '../../shared/ipnet.ts';
import type { Backend } from './backend.ts';
import type { Settings } from './config.ts';
import {
  addRestore,
  attachmentChain,
  dnatSignature,
  expectedDnat,
  iptConflicts,
  networkChains,
  removeRestore,
  type SavedNat,
} from './iptables.ts';

const save = (f: Family): Promise<SavedNat | undefined> => readSaved(f, 'nat', { allowFail: true });

const restore = (f: Family, script: string): Promise<void> => restoreScriptTransaction(f, script, 10);

const locked = <T>(_s: Settings, body: () => Promise<T>): Promise<T> => withFirewallLock(body);

async function removeChains(s: Settings, pick: (f: Family, saved: SavedNat) => string[]): Promise<void> {
  let usable = 0;
  for (const f of [4, 6] as const) {
    const saved = await save(f);
    if (!saved) continue;
    usable++;
    const script = removeRestore(pick(f, saved), saved);
    if (script) await restore(f, script);
  }
  if (!usable)
    throw new CniError(
      ErrorCode.KernelOperation,
      'neither iptables nor ip6tables is usable',
      'iptables-save -t nat failed for both families',
    );
}

export const iptablesBackend: Backend = {
  async add(s, tag, comment, plans) {
    const chain = attachmentChain(s.iptablesPrefix, tag);
    await locked(s, async () => {
      const saved = new Map<Family, SavedNat>();
      for (const p of plans) {
        const f = p.container.family;
        const st = await save(f);
        if (!st)
          throw new CniError(
            ErrorCode.KernelOperation,
            `${f === 6 ? 'ip6tables' : 'iptables'}-save -t nat failed: ${f === 6 ? 'ip6tables' : 'iptables'} is not usable`,
            'portmap iptables backend',
          );
        const c = iptConflicts(s.iptablesPrefix, chain, p, st);
        if (c.length)
          throw new CniError(
            ErrorCode.Conflict,
            `host port already published by another container: ${c.map((x) => `${x.want} (held by ${x.holder})`).join(', ')}`,
            'portmap: nothing was changed',
          );
        saved.set(f, st);
      }
      for (const p of plans) await restore(p.container.family, addRestore(s, tag, comment, p, saved.get(p.container.family)!));
    });
  },

  async del(s, tag) {
    const chain = attachmentChain(s.iptablesPrefix, tag);
    await locked(s, () => removeChains(s, () => [chain]));
  },

  async check(s, tag, plans) {
    const chain = attachmentChain(s.iptablesPrefix, tag);
    for (const p of plans) {
      const f = p.container.family;
      const st = await save(f);
      if (!st || !st.chains.has(chain))
        throw new CniError(
          ErrorCode.CheckMismatch,
          `${f === 4 ? 'iptables' : 'ip6tables'} chain ${chain} of this container is missing`,
          'portmap CHECK',
        );
      const have = new Set(st.rules.filter((r) => r.chain === chain).map((r) => dnatSignature(r.tokens)));
      const missing = expectedDnat(p).filter((sig) => !have.has(sig));
      if (missing.length)
        throw new CniError(ErrorCode.CheckMismatch, `port mapping rules missing in ${chain}: ${missing.join(', ')}`, 'portmap CHECK');
      if (!st.rules.some((r) => r.tokens.includes(chain) && r.chain !== chain))
        throw new CniError(ErrorCode.CheckMismatch, `no jump to ${chain}`, 'portmap CHECK');
    }
  },

  async gc(s, netTag, validTags) {
    const valid = new Set([...validTags].map((t) => attachmentChain(s.iptablesPrefix, t)));
    await locked(s, () => removeChains(s, (_f, saved) => networkChains(s.iptablesPrefix, netTag, saved).filter((c) => !valid.has(c))));
  },

  async status() {
    const why = await iptablesUnusable();
    if (why) throw new CniError(ErrorCode.NotAvailable, `iptables is not usable: ${why}`, 'portmap STATUS');
  },
};
