/**
 * firewall (chained): let the container's traffic through the host's FORWARD chain. Drop-in
 * for the Go reference `firewall` with its iptables backend: the same chains (CNI-FORWARD,
 * the admin chain `iptablesAdminChainName`, default CNI-ADMIN), the same rules and comments, so
 * either plugin can DEL what the other added; `ingressPolicy` same-bridge / isolated builds the
 * reference's CNI-ISOLATION-STAGE-1/-2 chains. A firewall owner on shared/firewall's doors
 * (shared/firewall/owners.ts): each verb reads the filter table once (`readSaved`) and writes one
 * transaction (`restoreTransaction`, `iptables-restore --noflush`) per family, under the one lock
 * of every iptables owner (`withFirewallLock`); the nftables backend through shared/firewall/nft.ts.
 * The firewalld backend needs firewalld over D-Bus, which this build does not speak:
 * `backend: "firewalld"` fails with code 101; with no backend the reference picks firewalld only
 * when it runs, and we use iptables. `backend: "nftables"` (or "nft"): our own table instead
 * (./nft.ts, docs/firewall.md), element updates per verb.
 */
import { CniError, ErrorCode, invalidConfig } from '../../shared/cni/errors.ts';
import { definePlugin, type Request } from '../../shared/cni/plugin.ts';
import type { Result } from '../../shared/cni/types.ts';
import { canonicalIP, familyOf } from '../../shared/ipnet.ts';
import type { FirewallOwner } from '../../shared/firewall/owner.ts';
import { readSaved, restoreTransaction, withFirewallLock } from '../../shared/firewall/iptables.ts';
import { nftUnusable } from '../../shared/kernel/nft.ts';
import { DEFAULT_FW_NFT_TABLE, nftAdd, nftDel, nftGc, nftMissing } from './nft.ts';
import schema from '../../conf/schemas/firewall.schema.json' with { type: 'json' };
import {
  addressRules,
  adminRule,
  DEFAULT_ADMIN_CHAIN,
  deleteLines,
  ensureLines,
  isolationRules,
  jumpRule,
  missing,
  parseFilter,
  PRIV_CHAIN,
  STAGE1,
  STAGE2,
  type Fam,
  type FilterState,
  type FirewallConf,
} from './rules.ts';

/**
 * The backend: `nftables` (or `nft`) our own table (./nft.ts); `iptables` and unset the
 * reference's chains. Unset stays iptables: an nft `accept` is final only within its own table,
 * so on a host whose FORWARD policy (iptables, Docker's, or another nft table) drops, only rules
 * inside that chain open the path, which is what the reference does and conflists expect.
 */
function backendOf(c: FirewallConf): 'iptables' | 'nftables' {
  if (c.backend === 'firewalld') {
    throw new CniError(
      ErrorCode.KernelFeatureMissing,
      'the firewalld backend is not supported: use "backend": "nftables" or "iptables"',
      'cni-ts does not talk to firewalld over D-Bus',
    );
  }
  return c.backend === 'nftables' || c.backend === 'nft' ? 'nftables' : 'iptables';
}

const ownerOf = (req: Request<FirewallConf>): FirewallOwner => ({
  network: req.config.name,
  containerId: req.env.containerId,
  ifname: req.env.ifname,
});
const nftTableOf = (c: FirewallConf): string => c.nftTable || DEFAULT_FW_NFT_TABLE;
const allIps = (r: Result | undefined): string[] => [...ipsOf(r, 4), ...ipsOf(r, 6)].map((ip) => canonicalIP(ip) ?? ip);

/** One read of the filter table (shared/firewall's iptables door). */
async function filterState(fam: Fam): Promise<FilterState> {
  return (await readSaved(fam, 'filter')) ?? parseFilter('');
}

/** One verb's lines for one family as one transaction; no lines, no process. */
const restore = (fam: Fam, lines: string[]): Promise<void> => restoreTransaction(fam, 'filter', lines);

// the one iptables lock every iptables owner of ours takes (portmap, bridge's masquerade)
const locked = withFirewallLock;

const adminChain = (c: FirewallConf): string => c.iptablesAdminChainName || DEFAULT_ADMIN_CHAIN;
const ipsOf = (r: Result | undefined, fam: Fam): string[] =>
  (r?.ips ?? []).map((i) => i.address.split('/')[0]).filter((ip) => familyOf(ip) === fam);

async function add(req: Request<FirewallConf>): Promise<Result> {
  const prev = req.prevResult;
  if (!prev) throw invalidConfig('prevResult', 'missing prevResult from earlier plugin');
  const backend = backendOf(req.config);
  const policy = req.config.ingressPolicy || 'open';
  let bridge: string | undefined;
  if (policy !== 'open') {
    bridge = prev.interfaces?.[0]?.name;
    if (!bridge)
      throw invalidConfig(
        'ingressPolicy',
        `interface needs to be set for ingress policy "${policy}", make sure to chain "firewall" plugin with "bridge"`,
      );
  }
  if (backend === 'nftables') {
    await nftAdd(nftTableOf(req.config), ownerOf(req), allIps(prev), bridge, policy === 'isolated');
    return structuredClone(prev);
  }
  const admin = adminChain(req.config);
  await locked(async () => {
    for (const fam of [4, 6] as const) {
      const ips = ipsOf(prev, fam);
      if (!ips.length) continue;
      const st = await filterState(fam);
      const lines = ensureLines(st, [PRIV_CHAIN, admin], [jumpRule(), adminRule(admin), ...ips.flatMap(addressRules)]);
      // the isolation jump goes in front of CNI-FORWARD's: inserted after it, first in FORWARD
      if (bridge) lines.push(...ensureLines(st, [STAGE1, STAGE2], isolationRules(bridge, policy === 'isolated')));
      await restore(fam, lines);
    }
  });
  return structuredClone(prev);
}

async function del(req: Request<FirewallConf>): Promise<void> {
  if (backendOf(req.config) === 'nftables') return nftDel(nftTableOf(req.config), ownerOf(req));
  // The isolation chains stay, as in the reference: other containers of the bridge may use them.
  await locked(async () => {
    for (const fam of [4, 6] as const) {
      const ips = ipsOf(req.prevResult, fam);
      if (!ips.length) continue;
      await restore(fam, deleteLines(await filterState(fam), ips.flatMap(addressRules)));
    }
  });
}

async function check(req: Request<FirewallConf>): Promise<void> {
  if (backendOf(req.config) === 'nftables') {
    const why = await nftMissing(nftTableOf(req.config), ownerOf(req), allIps(req.prevResult));
    if (why) throw new CniError(ErrorCode.CheckMismatch, why, `table inet ${nftTableOf(req.config)}`);
    return;
  }
  for (const fam of [4, 6] as const) {
    const ips = ipsOf(req.prevResult, fam);
    if (!ips.length) continue;
    const why = missing(await filterState(fam), adminChain(req.config), ips);
    if (why) throw new CniError(ErrorCode.CheckMismatch, why, `IPv${fam} filter table`);
  }
}

export default definePlugin<FirewallConf>({
  name: 'firewall',
  about:
    'chained: let the container traffic through the host FORWARD chain (CNI-FORWARD / CNI-ADMIN, iptables; or its own nft table with backend nftables), ingressPolicy same-bridge / isolated',
  schema,
  add,
  del,
  check,
  async gc(req) {
    // the iptables backend's rules carry no owner (as the reference's): nothing to collect there
    if (backendOf(req.config) === 'nftables') await nftGc(nftTableOf(req.config), req.config.name, req.validAttachments);
  },
  async status(req) {
    if (backendOf(req.config) !== 'nftables') return;
    const why = await nftUnusable();
    if (why) throw new CniError(ErrorCode.NotAvailable, `nftables is not usable: ${why}`, 'firewall STATUS');
  },
});
