/**
 * The Go reference `firewall` plugin's iptables rules (plugins/meta/firewall), as the lines
 * `iptables-save -t filter` prints them, so that presence is a string comparison and changes are
 * one `iptables-restore --noflush` per family. Pure builders: the table read, the diff (which
 * chains to declare, which rules to add or delete) and the transaction are shared/firewall's
 * iptables door (`readSaved`, `ensureLines`, `removeLines`, `restoreTransaction`).
 *
 * The rules stay the reference's, untagged: either plugin CHECKs and DELs what the other added
 * (interop, test/firewall.test.ts), so they are found by their text, from prevResult's addresses.
 *
 *   FORWARD:     -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD      (first)
 *   CNI-FORWARD: -m comment --comment "CNI firewall plugin admin overrides" -j <admin> (first)
 *                -d A/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
 *                -s A/32 -j ACCEPT
 *   ingressPolicy same-bridge / isolated: CNI-ISOLATION-STAGE-1/-2 as the reference builds them.
 */
import type { NetConfBase } from '../../shared/cni/types.ts';
import {
  ensureLines as ensureDoor,
  hasRule,
  parseSaved,
  removeLines,
  wantedLine,
  type SavedTable,
  type WantedRule,
} from '../../shared/firewall/iptables.ts';
import { canonicalIP, familyOf } from '../../shared/ipnet.ts';

export interface FirewallConf extends NetConfBase {
  backend?: '' | 'iptables' | 'nftables' | 'nft' | 'firewalld';
  /** nftables backend: the table (`inet`), default cni_firewall */
  nftTable?: string;
  iptablesAdminChainName?: string;
  firewalldZone?: string;
  ingressPolicy?: '' | 'open' | 'same-bridge' | 'isolated';
}

export type Fam = 4 | 6;
export const PRIV_CHAIN = 'CNI-FORWARD';
export const DEFAULT_ADMIN_CHAIN = 'CNI-ADMIN';
export const STAGE1 = 'CNI-ISOLATION-STAGE-1';
export const STAGE2 = 'CNI-ISOLATION-STAGE-2';

/** A rule of the filter table: the chain it goes in and its `iptables-save` spelling (without `-A chain`). */
export type Rule = WantedRule;

export const saveLine = wantedLine;

const hostCidr = (ip: string): string => `${canonicalIP(ip) ?? ip}/${familyOf(ip) === 6 ? 128 : 32}`;

export const jumpRule = (): Rule => ({
  chain: 'FORWARD',
  spec: ['-m', 'comment', '--comment', 'CNI firewall plugin rules', '-j', PRIV_CHAIN],
  first: true,
});
export const adminRule = (admin: string): Rule => ({
  chain: PRIV_CHAIN,
  spec: ['-m', 'comment', '--comment', 'CNI firewall plugin admin overrides', '-j', admin],
  first: true,
});

/** The two rules of one container address. */
export function addressRules(ip: string): Rule[] {
  const a = hostCidr(ip);
  return [
    { chain: PRIV_CHAIN, spec: ['-d', a, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT'] },
    { chain: PRIV_CHAIN, spec: ['-s', a, '-j', 'ACCEPT'] },
  ];
}

const POLICY_BOTH = 'CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)';
const policyComment = (p: string): string => `CNI firewall plugin rules (ingressPolicy: ${p})`;

/** The isolation rules for `bridge`, in the order the reference inserts them (each only if absent). */
export function isolationRules(bridge: string, isolated: boolean): Rule[] {
  const p = isolated ? 'isolated' : 'same-bridge';
  // same-bridge: every rule says "(ingressPolicy: same-bridge)", as the reference 1.1 (Debian 12's)
  // does, so the two share the rules; isolated (newer references only): their shared comment
  const shared = isolated ? POLICY_BOTH : policyComment(p);
  const c = (spec: string[], comment: string): string[] => {
    const j = spec.indexOf('-j');
    return [...spec.slice(0, j), '-m', 'comment', '--comment', comment, ...spec.slice(j)];
  };
  const rules: Rule[] = [
    { chain: 'FORWARD', spec: c(['-j', STAGE1], shared), first: true },
    { chain: STAGE1, spec: c(['-i', bridge, '!', '-o', bridge, '-j', STAGE2], policyComment(p)), first: true },
  ];
  if (isolated) rules.push({ chain: STAGE1, spec: c(['-i', bridge, '-o', bridge, '-j', 'DROP'], policyComment(p)), first: true });
  rules.push(
    { chain: STAGE1, spec: c(['-j', 'RETURN'], shared) },
    { chain: STAGE2, spec: c(['-o', bridge, '-j', 'DROP'], shared), first: true },
    { chain: STAGE2, spec: c(['-j', 'RETURN'], shared) },
  );
  return rules;
}

/** The filter table as `iptables-save` prints it (one read of the door). */
export type FilterState = SavedTable;

/** The `*filter` section of `iptables-save` text. Pure. */
export const parseFilter = (save: string): FilterState => parseSaved(save, 'filter');

/**
 * The `iptables-restore --noflush` lines that make `rules` present in `st` (chains declared only
 * when missing: declaring an existing chain would flush it). `st` is updated as if applied.
 */
export const ensureLines = (st: FilterState, chains: string[], rules: Rule[]): string[] => ensureDoor(st, chains, rules);

/** Delete lines for those of `rules` present (one occurrence each, as `iptables -D`). */
export const deleteLines = (st: FilterState, rules: Rule[]): string[] => removeLines(st, rules);

/** What CHECK finds missing, in the reference's words; undefined when all is there. */
export function missing(st: FilterState, admin: string, ips: string[]): string | undefined {
  for (const c of [PRIV_CHAIN, admin]) if (!st.chains.has(c)) return `chain ${c} not found`;
  const jump = jumpRule();
  if (!hasRule(st, jump)) return `expected FORWARD rule ${jump.spec.join(' ')} not found`;
  const a = adminRule(admin);
  if (!hasRule(st, a)) return `expected ${PRIV_CHAIN} rule ${a.spec.join(' ')} not found`;
  for (const ip of ips) for (const r of addressRules(ip)) if (!hasRule(st, r)) return `expected rule ${r.spec.join(' ')} not found`;
  return undefined;
}
