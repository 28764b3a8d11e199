/**
 * iptables rule generation (iptables-restore --noflush input) and iptables-save parsing for
 * portmap. Pure functions. Layout in the nat table, all chains named with a prefix (default
 * "CNITS", so the reference plugin's CNI-* chains are never touched):
 *
 *   PREROUTING, OUTPUT: -m addrtype --dst-type LOCAL -j P-HOSTPORT-DNAT
 *   P-HOSTPORT-DNAT:    -p tcp -m multiport --dports 8080,8081 <conditions> -j P-DN-<hash>  (per attachment)
 *   P-DN-<hash>:        -s <subnet>|127.0.0.0/8 -p tcp --dport 8080 -j P-HOSTPORT-SETMARK
 *                       -p tcp --dport 8080 -j DNAT --to-destination 10.88.0.5:80
 *   P-HOSTPORT-SETMARK: -j MARK --set-xmark MARK/MARK
 *   POSTROUTING (first): -j P-HOSTPORT-MASQ;  P-HOSTPORT-MASQ: -m mark --mark MARK/MARK -j MASQUERADE
 *
 * Every rule of an attachment carries its owner tag, `-m comment --comment "cni:<net8>:<att16>
 * <containerID>/<ifname>"` (shared/firewall/owner.ts, the scheme of every firewall owner). Earlier
 * versions wrote `"net=<net8> <containerID> <ifname>"`: GC still finds those (`networkChains`),
 * DEL finds an attachment by its chain name either way. Reading and writing go through
 * shared/firewall/iptables.ts.
 */
import { parseSaved, tokenize, valueAfter, type SavedTable } from '../../shared/firewall/iptables.ts';
import { commentWithTag, humanOfComment, tagOfComment } from '../../shared/firewall/owner.ts';
import { restoreLine, restoreToken } from '../../shared/kernel/batch.ts';
import type { Family } from '../../shared/ipnet.ts';
import type { FamilyPlan, Mapping, Settings } from './config.ts';

export const chainNames = (prefix: string) => ({
  dnat: `${prefix}-HOSTPORT-DNAT`,
  setmark: `${prefix}-HOSTPORT-SETMARK`,
  masq: `${prefix}-HOSTPORT-MASQ`,
  dnPrefix: `${prefix}-DN-`,
});

/** The per-attachment chain: at most 28 characters (prefix is at most 10). */
export const attachmentChain = (prefix: string, tag: string): string => `${prefix}-DN-${tag.split('-')[1].slice(0, 14)}`;
export const netTagOf = (tag: string): string => tag.split('-')[0];
/** The comment of earlier versions (read by GC, never written). */
export const legacyIptComment = (netTag: string, comment: string): string => `net=${netTag} ${comment}`;
/** The rules' comment: `comment` when it carries the owner tag (attachmentComment), else the tag is put first. */
export const iptComment = (tag: string, comment: string): string => commentWithTag(tag, comment);

/** One argv token in iptables-restore syntax (shared/kernel/batch.ts: refused unless it is safe). */
export const quote = restoreToken;
const line = restoreLine;

const hex = (n: number): string => `0x${n.toString(16)}`;
const hostMatch = (m: Mapping, f: Family): string[] => (m.hostIP ? ['-d', `${m.hostIP}/${f === 4 ? 32 : 128}`] : []);

/** iptables-save output, reduced to what we need: chains and `-A` rules as token lists (shared/firewall/iptables.ts). */
export type SavedNat = SavedTable;

export { tokenize };

export function parseSave(text: string): SavedNat {
  return parseSaved(text, 'nat');
}

/** "tcp/8080@192.0.2.1/32>10.88.0.5:80" for a DNAT rule, else undefined. */
export function dnatSignature(tokens: string[]): string | undefined {
  if (valueAfter(tokens, '-j') !== 'DNAT') return undefined;
  const d = valueAfter(tokens, '-d');
  return `${valueAfter(tokens, '-p')}/${valueAfter(tokens, '--dport')}${d ? `@${d}` : ''}>${valueAfter(tokens, '--to-destination')}`;
}

export function expectedDnat(p: FamilyPlan): string[] {
  const f = p.container.family;
  return p.mappings.map((m) => {
    const to = f === 4 ? `${p.container.ip}:${m.containerPort}` : `[${p.container.ip}]:${m.containerPort}`;
    return `${m.protocol}/${m.hostPort}${m.hostIP ? `@${m.hostIP}/${f === 4 ? 32 : 128}` : ''}>${to}`;
  });
}

/** "tcp/8080@192.0.2.1/32" — the host side of a DNAT signature, for conflict checks. */
export const hostSide = (sig: string): string => sig.split('>')[0];

/** The restore script that (re)creates one attachment's rules for one family. */
export function addRestore(s: Settings, tag: string, comment: string, p: FamilyPlan, saved: SavedNat): string {
  const n = chainNames(s.iptablesPrefix);
  const chain = attachmentChain(s.iptablesPrefix, tag);
  const c = iptComment(tag, comment);
  const f = p.container.family;
  const setmark = s.externalSetMarkChain ?? n.setmark;
  const out = ['*nat'];
  if (!saved.chains.has(n.dnat)) out.push(`:${n.dnat} - [0:0]`);
  if (s.snat && !s.externalSetMarkChain) out.push(`:${n.setmark} - [0:0]`, `:${n.masq} - [0:0]`);
  out.push(`:${chain} - [0:0]`);
  const entry = ['-m', 'addrtype', '--dst-type', 'LOCAL', '-m', 'comment', '--comment', 'cni-ts portmap', '-j', n.dnat];
  for (const base of ['PREROUTING', 'OUTPUT']) {
    if (!saved.rules.some((r) => r.chain === base && valueAfter(r.tokens, '-j') === n.dnat)) out.push(line(['-A', base, ...entry]));
  }
  if (s.snat && !s.externalSetMarkChain) {
    if (!saved.rules.some((r) => r.chain === 'POSTROUTING' && valueAfter(r.tokens, '-j') === n.masq)) {
      out.push(line(['-I', 'POSTROUTING', '1', '-m', 'comment', '--comment', 'cni-ts portmap: loopback and hairpin', '-j', n.masq]));
    }
    out.push(
      line([
        '-A',
        n.setmark,
        '-m',
        'comment',
        '--comment',
        'cni-ts portmap: masquerade mark',
        '-j',
        'MARK',
        '--set-xmark',
        `${hex(s.mark)}/${hex(s.mark)}`,
      ]),
    );
    out.push(line(['-A', n.masq, '-m', 'mark', '--mark', `${hex(s.mark)}/${hex(s.mark)}`, '-j', 'MASQUERADE']));
  }
  // Old jumps to this attachment's chain (a repeated ADD) go; new ones are appended.
  for (const r of saved.rules) if (r.chain === n.dnat && valueAfter(r.tokens, '-j') === chain) out.push(`-D ${n.dnat} ${r.text}`);
  const byProto = new Map<string, number[]>();
  for (const m of p.mappings) byProto.set(m.protocol, [...(byProto.get(m.protocol) ?? []), m.hostPort]);
  for (const [proto, ports] of [...byProto].sort()) {
    const uniq = [...new Set(ports)];
    for (let i = 0; i < uniq.length; i += 15) {
      out.push(
        line([
          '-A',
          n.dnat,
          '-m',
          'comment',
          '--comment',
          c,
          '-p',
          proto,
          '-m',
          'multiport',
          '--dports',
          uniq.slice(i, i + 15).join(','),
          ...p.conditions,
          '-j',
          chain,
        ]),
      );
    }
  }
  for (const m of p.mappings) {
    const base = [
      '-A',
      chain,
      '-m',
      'comment',
      '--comment',
      c,
      ...hostMatch(m, f),
      '-p',
      m.protocol,
      '-m',
      m.protocol,
      '--dport',
      String(m.hostPort),
    ];
    if (s.snat) {
      const sources = s.masqAll ? [f === 4 ? '0.0.0.0/0' : '::/0'] : f === 4 ? [p.container.subnet, '127.0.0.0/8'] : [p.container.subnet];
      for (const src of sources) out.push(line([...base, '-s', src, '-j', setmark]));
    }
    const to = f === 4 ? `${p.container.ip}:${m.containerPort}` : `[${p.container.ip}]:${m.containerPort}`;
    out.push(line([...base, '-j', 'DNAT', '--to-destination', to]));
  }
  out.push('COMMIT', '');
  return out.join('\n');
}

/** Lines that remove the given attachment chains and the jumps to them, or '' when none exist. */
export function removeRestore(chains: string[], saved: SavedNat): string {
  const want = new Set(chains);
  const out: string[] = [];
  for (const r of saved.rules) {
    const target = valueAfter(r.tokens, '-j');
    if (target && want.has(target)) out.push(`-D ${r.chain} ${r.text}`);
  }
  for (const ch of chains) if (saved.chains.has(ch)) out.push(`:${ch} - [0:0]`, `-X ${ch}`);
  if (!out.length) return '';
  return ['*nat', ...out, 'COMMIT', ''].join('\n');
}

/** The attachment chains of network `netTag` (found through the comments of their jumps). */
export function networkChains(prefix: string, netTag: string, saved: SavedNat): string[] {
  const n = chainNames(prefix);
  const out = new Set<string>();
  for (const r of saved.rules) {
    if (r.chain !== n.dnat) continue;
    const target = valueAfter(r.tokens, '-j');
    const comment = valueAfter(r.tokens, '--comment');
    if (!target?.startsWith(n.dnPrefix) || !comment) continue;
    const tag = tagOfComment(comment);
    if (tag ? tag.startsWith(`cni:${netTag}:`) : comment.startsWith(`net=${netTag} `)) out.add(target);
  }
  return [...out];
}

/** Host sides held by other attachments' chains that this plan wants; with the holder's comment. */
export function iptConflicts(prefix: string, ownChain: string, p: FamilyPlan, saved: SavedNat): Array<{ want: string; holder: string }> {
  const n = chainNames(prefix);
  const wanted = new Set(expectedDnat(p).map(hostSide));
  const out: Array<{ want: string; holder: string }> = [];
  for (const r of saved.rules) {
    if (!r.chain.startsWith(n.dnPrefix) || r.chain === ownChain) continue;
    const sig = dnatSignature(r.tokens);
    if (sig && wanted.has(hostSide(sig)))
      out.push({ want: hostSide(sig), holder: humanOfComment(valueAfter(r.tokens, '--comment') ?? r.chain) });
  }
  return out;
}
