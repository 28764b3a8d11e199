/**
 * The one firewall owner model (shared/firewall/): the tag vocabulary, every declared owner's
 * rule builders tagging what they write for an attachment, and the door rule (no module outside
 * shared/firewall/ and the declared pending owners writes nft or iptables transactions). Pure:
 * no kernel.
 */
import { readdirSync, readFileSync, statSync, existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  commentWithTag,
  humanOfComment,
  inNetwork,
  networkTag,
  ownerComment,
  ownerName,
  ownerTag,
  entriesFor,
  tagOfComment,
  tagOfName,
  type FirewallOwner,
} from '../shared/firewall/owner.ts';
import { FIREWALL_OWNERS, pendingWriters } from '../shared/firewall/owners.ts';
import { deleteElementsScript, deleteRulesScript, setElements, tableOf, taggedElements, taggedRules } from '../shared/firewall/nft.ts';
import { ensureLines, parseSaved, removeLines, restoreScript } from '../shared/firewall/iptables.ts';
import { masqueradeMsgs, masqueradeRulesScript } from '../shared/firewall/masquerade-nft.ts';
import { commentOfUserdata, type NftMsg } from '../shared/kernel/netlink/nftnl.ts';
import { addMsgs as portmapNetlink } from '../plugins/portmap/nft-netlink.ts';
import { ruleLines } from '../shared/firewall/masquerade-iptables.ts';
import { macspoofScript } from '../plugins/bridge/macspoof.ts';
import {
  attachmentComment,
  attachmentTag,
  containerAddrs,
  mappingsOf,
  networkTag as pmNetworkTag,
  planOf,
  settingsOf,
} from '../plugins/portmap/config.ts';
import { addScript as portmapNft, attachmentTags, parseTable } from '../plugins/portmap/nft.ts';
import { addRestore, attachmentChain, legacyIptComment, networkChains, parseSave } from '../plugins/portmap/iptables.ts';
import { masqComment, masqScript, overlayMasqOwner } from '../shared/overlay/host.ts';
import { settingsOf as overlaySettings } from '../shared/overlay/config.ts';
import { addScript as firewallNft } from '../plugins/firewall/nft.ts';
import { addressRules, saveLine as firewallSaveLine } from '../plugins/firewall/rules.ts';
import { ROOT } from './helpers/run.ts';

const o: FirewallOwner = { network: 'net1', containerId: 'c0ffee', ifname: 'eth0' };
const tag = ownerTag(o);

/** The comment values of nft script lines (`comment "..."`). */
const nftComments = (lines: string[]): string[] => lines.map((l) => /comment "((?:[^"\\]|\\.)*)"/.exec(l)?.[1] ?? '');
const ruleLinesOf = (script: string): string[] => script.split('\n').filter((l) => /^add (rule|element)/.test(l));

describe('the tag vocabulary', () => {
  it('one identity in two spellings: the comment tag and the name', () => {
    expect(tag).toMatch(/^cni:[0-9a-f]{8}:[0-9a-f]{16}$/);
    expect(ownerName(o)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{16}$/);
    expect(tagOfName(ownerName(o))).toBe(tag);
    expect(tagOfName(`pm-${ownerName(o)}`)).toBe(tag);
    expect(tagOfName('pm-abc-def')).toBeUndefined();
    expect(tagOfComment(ownerComment(o))).toBe(tag);
    expect(tagOfComment('c0ffee eth0')).toBeUndefined();
    expect(humanOfComment(ownerComment(o))).toBe('c0ffee/eth0');
    expect(humanOfComment('c0ffee eth0')).toBe('c0ffee eth0');
    expect(inNetwork(tag, 'net1')).toBe(true);
    expect(inNetwork(tag, 'net2')).toBe(false);
    expect(tag.startsWith(`${networkTag('net1')}:`)).toBe(true);
  });

  it('distinct attachments get distinct tags; the same one the same tag in every owner', () => {
    const others = [
      { ...o, network: 'net2' },
      { ...o, containerId: 'c0ffef' },
      { ...o, ifname: 'eth1' },
    ];
    expect(new Set([tag, ...others.map(ownerTag)]).size).toBe(4);
    // portmap's attachment tag is the owner's name: same hashes as the masquerade comment tag
    expect(attachmentTag('net1', 'c0ffee', 'eth0')).toBe(ownerName(o));
    expect(`cni:${pmNetworkTag('net1')}`).toBe(networkTag('net1'));
    expect(tagOfComment(attachmentComment('net1', 'c0ffee', 'eth0'))).toBe(tag);
  });

  it('commentWithTag tags an untagged comment once, and leaves a non-tag alone', () => {
    expect(commentWithTag(ownerName(o), 'c1 eth0')).toBe(`${tag} c1 eth0`);
    expect(commentWithTag(tag, 'c1 eth0')).toBe(`${tag} c1 eth0`);
    expect(commentWithTag(ownerName(o), ownerComment(o))).toBe(ownerComment(o));
    expect(commentWithTag('abc-def', 'c1 eth0')).toBe('c1 eth0');
    expect(ownerComment({ ...o, containerId: 'x'.repeat(200) }).length).toBeLessThanOrEqual(120);
  });
});

/** Per declared owner: the attachment's rules its builders write all carry its tag. */
const TAGGED: Record<string, () => void> = {
  masquerade: () => {
    const entries = [
      { ip: '10.1.0.5', subnet: '10.1.0.0/24' },
      { ip: 'fd00::5', subnet: 'fd00::/64' },
    ];
    const nftLines = ruleLinesOf(masqueradeRulesScript('t', o, entries));
    expect(nftLines).toHaveLength(2);
    for (const c of nftComments(nftLines)) expect(tagOfComment(c)).toBe(tag);
    const ipt = ruleLines('CH', o, entries);
    expect(ipt).toHaveLength(4);
    for (const r of parseSaved(`*nat\n:CH - [0:0]\n${ipt.join('\n')}\nCOMMIT\n`).rules) expect(tagOfComment(r.comment)).toBe(tag);
  },
  macspoof: () => {
    const lines = ruleLinesOf(macspoofScript('t', o, 'veth1', '02:00:00:00:00:01'));
    expect(lines).toHaveLength(1);
    expect(tagOfComment(nftComments(lines)[0])).toBe(tag);
  },
  portmap: () => {
    const conf = {
      name: 'net1',
      runtimeConfig: {
        portMappings: [
          { hostPort: 8080, containerPort: 80 },
          { hostPort: 5353, containerPort: 53, protocol: 'udp', hostIP: '192.0.2.1' },
        ],
      },
    };
    const prev = {
      interfaces: [{ name: 'cni0' }, { name: 'eth0', sandbox: '/run/netns/x' }],
      ips: [
        { address: '10.88.0.5/16', interface: 1 },
        { address: 'fd00:88::5/64', interface: 1 },
      ],
    };
    const s = settingsOf(conf);
    const plans = planOf(s, mappingsOf(conf), containerAddrs(prev, 'eth0'));
    const name = attachmentTag('net1', 'c0ffee', 'eth0');
    const script = portmapNft(s, name, attachmentComment('net1', 'c0ffee', 'eth0'), plans, undefined);
    // the attachment's chain is named by the tag, each of its rules carries it, each element goes to it
    const mine = script.split('\n').filter((l) => l.includes(` pm-${name} `) && l.startsWith('add rule'));
    expect(mine.length).toBeGreaterThanOrEqual(4);
    for (const c of nftComments(mine)) expect(tagOfComment(c)).toBe(tag);
    expect(
      script
        .split('\n')
        .filter((l) => l.startsWith('create element'))
        .every((l) => l.includes(`goto pm-${name}`)),
    ).toBe(true);
    // GC finds it by the chain name: tagOfName of every pm- chain
    const listed = parseTable({ nftables: [{ chain: { name: `pm-${name}` } }, { chain: { name: 'hostports' } }] });
    expect(attachmentTags(listed, pmNetworkTag('net1')).map((t) => tagOfName(t))).toEqual([tag]);
    // iptables: the attachment's jumps and rules are tagged
    const ipt = parseSave(
      addRestore({ ...s, iptablesPrefix: 'PX' }, name, attachmentComment('net1', 'c0ffee', 'eth0'), plans[0], {
        chains: new Set(),
        rules: [],
      }),
    );
    const chain = attachmentChain('PX', name);
    const own = ipt.rules.filter((r) => r.chain === chain || r.tokens.at(-1) === chain);
    expect(own.length).toBeGreaterThanOrEqual(3);
    for (const r of own) expect(tagOfComment(r.comment)).toBe(tag);
  },
  'overlay-masquerade': () => {
    const s = overlaySettings({ name: 'n', network: '10.244.0.0/16', store: { type: 'file', path: '/x' }, stateDir: '/x' });
    const lease = { subnet: '10.244.1.0/24', publicIP: '192.0.2.1', vtepMAC: '02:00:00:00:00:01' };
    const lines = masqScript(s, lease)
      .split('\n')
      .filter((l) => l.includes('masquerade'));
    expect(lines).toHaveLength(1);
    expect(tagOfComment(nftComments(lines)[0])).toBe(ownerTag(overlayMasqOwner(s)));
    expect(nftComments(lines)[0]).toBe(masqComment(s, lease));
  },
  firewall: () => {
    const lines = firewallNft('t', o, ['10.1.0.5', 'fd00::5'], 'br0')
      .split('\n')
      .filter((l) => /add element inet t allowed[46]/.test(l));
    expect(lines).toHaveLength(2);
    for (const c of nftComments(lines)) expect(tagOfComment(c)).toBe(tag);
    // iptables: the Go reference's text, untagged (either plugin DELs the other's), found from the addresses
    expect(FIREWALL_OWNERS.find((x) => x.name === 'firewall')?.iptablesTag).toBe('reference-text');
    expect(addressRules('10.1.0.5').map(firewallSaveLine)).toEqual([
      '-A CNI-FORWARD -d 10.1.0.5/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-A CNI-FORWARD -s 10.1.0.5/32 -j ACCEPT',
    ]);
  },
  // Compiled from cluster objects, rewritten whole: no per-attachment tag to find.
  policy: () => undefined,
  services: () => undefined,
};

describe('every firewall owner', () => {
  it('has a tag test here, and its declared builders and writers exist', () => {
    expect(Object.keys(TAGGED).sort()).toEqual(FIREWALL_OWNERS.map((x) => x.name).sort());
    for (const x of FIREWALL_OWNERS) {
      for (const p of [...x.builders, ...(x.writers ?? [])]) expect(existsSync(join(ROOT, p)), `${x.name}: ${p}`).toBe(true);
      if (x.door === 'own') expect(x.writers?.length, x.name).toBeGreaterThan(0);
      if (x.tag === 'desired-state') expect(x.door === 'own' || x.builders.length > 0).toBe(true);
    }
  });
  for (const x of FIREWALL_OWNERS) it(`${x.name}: an attachment's rules carry its tag (${x.tag})`, () => TAGGED[x.name]());
});

describe('portmap: rules of earlier versions are still found', () => {
  it('GC finds iptables chains by the legacy net=<net8> comment and by the tag', () => {
    const name = attachmentTag('net1', 'c0ffee', 'eth0');
    const chain = attachmentChain('PX', name);
    for (const comment of [legacyIptComment(pmNetworkTag('net1'), 'c0ffee eth0'), ownerComment(o)]) {
      const st = parseSave(
        [
          '*nat',
          `:${chain} - [0:0]`,
          ':PX-HOSTPORT-DNAT - [0:0]',
          `-A PX-HOSTPORT-DNAT -p tcp -m comment --comment "${comment}" -j ${chain}`,
          'COMMIT',
        ].join('\n'),
      );
      expect(networkChains('PX', pmNetworkTag('net1'), st)).toEqual([chain]);
      expect(networkChains('PX', pmNetworkTag('net2'), st)).toEqual([]);
    }
  });
});

describe('the doors', () => {
  it('nft: one table read gives rules and chains; tagged rules are deleted by handle in one script', () => {
    const t = tableOf('inet', 'x', [
      { chain: { name: 'c' } },
      { rule: { family: 'inet', table: 'x', chain: 'c', handle: 4, comment: ownerComment(o) } },
      { rule: { family: 'inet', table: 'x', chain: 'c', handle: 5, comment: 'someone else' } },
    ]);
    expect([...t.chains]).toEqual(['c']);
    const mine = taggedRules(t.rules, (x) => x === tag);
    expect(mine.map((r) => r.handle)).toEqual([4]);
    expect(deleteRulesScript(mine)).toBe('delete rule inet x c handle 4\n');
    expect(deleteRulesScript([])).toBe('');
  });
  it('nft: tagged set elements are read from the same table read and deleted in one script', () => {
    const t = tableOf('inet', 'x', [
      { set: { name: 'a4', elem: [{ elem: { val: '10.0.0.5', comment: ownerComment(o) } }, '10.0.0.6'] } },
      { set: { name: 'b', elem: [{ elem: { val: 'br0', comment: ownerComment(o) } }] } },
    ]);
    expect(setElements(t).map((e) => e.val)).toEqual(['10.0.0.5', '10.0.0.6', 'br0']);
    const mine = taggedElements(setElements(t, ['a4']), (x) => x === tag);
    expect(mine.map((e) => e.val)).toEqual(['10.0.0.5']);
    expect(deleteElementsScript(mine)).toBe('delete element inet x a4 { 10.0.0.5 }\n');
    expect(deleteElementsScript([])).toBe('');
  });
  it('iptables: one transaction per table and family; nothing to do is no script', () => {
    expect(restoreScript('nat', ['-A X -j RETURN'])).toBe('*nat\n-A X -j RETURN\nCOMMIT\n');
    expect(restoreScript('nat', [])).toBe('');
  });
  it('iptables: the diff declares missing chains only, adds missing rules once, deletes present ones', () => {
    const st = parseSaved('*filter\n:FORWARD ACCEPT [0:0]\n:Y - [0:0]\n-A Y -s 10.0.0.1/32 -j ACCEPT\nCOMMIT\n', 'filter');
    const want = [
      { chain: 'Y', spec: ['-s', '10.0.0.1/32', '-j', 'ACCEPT'] },
      { chain: 'FORWARD', spec: ['-m', 'comment', '--comment', 'a b', '-j', 'X'], first: true },
    ];
    expect(ensureLines(st, ['X', 'Y'], want)).toEqual([':X - [0:0]', '-I FORWARD 1 -m comment --comment "a b" -j X']);
    expect(ensureLines(st, ['X', 'Y'], want)).toEqual([]);
    expect(removeLines(st, want)).toEqual(['-D Y -s 10.0.0.1/32 -j ACCEPT', '-D FORWARD -m comment --comment "a b" -j X']);
    expect(removeLines(parseSaved('', 'filter'), want)).toEqual([]);
  });

  it('the nf_tables netlink builders tag every rule of an attachment too (masquerade, portmap)', () => {
    const owner = { network: 'netA', containerId: 'c1', ifname: 'eth0' };
    const tag = ownerTag(owner);
    const commentsOf = (msgs: NftMsg[]): Array<string | undefined> =>
      msgs.filter((m) => m.msg === 6).map((m) => commentOfUserdata(m.attrs.find((a) => a.type === 7)?.value as Uint8Array | undefined));
    const masq = commentsOf(masqueradeMsgs('t', owner, entriesFor(['10.1.2.5/24', 'fd00::5/64']))!);
    expect(masq).toHaveLength(2);
    for (const c of masq) expect(tagOfComment(c)).toBe(tag);
    const s = settingsOf({ cniVersion: '1.0.0', name: 'netA', type: 'portmap' } as never);
    const plans = planOf(s, [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }], {
      4: { family: 4, ip: '10.1.2.5', subnet: '10.1.2.0/24' },
    });
    const att = attachmentTag('netA', 'c1', 'eth0');
    const msgs = portmapNetlink(s, att, 'c1/eth0', plans)!;
    const pmChain = msgs.filter((m) => m.msg === 6 && m.what.includes(`pm-${att}`));
    expect(pmChain.length).toBe(2);
    for (const c of commentsOf(pmChain)) expect(tagOfComment(c)).toBe(tag);
  });

  it('no module outside shared/firewall/ (and the declared pending owners) writes nft or iptables transactions', () => {
    const allowed = new Set(pendingWriters());
    const files: string[] = [];
    const walk = (d: string): void => {
      for (const e of readdirSync(d)) {
        const p = join(d, e);
        if (statSync(p).isDirectory()) walk(p);
        else if (p.endsWith('.ts')) files.push(relative(ROOT, p));
      }
    };
    for (const d of ['shared', 'plugins', 'ipam', 'agent', 'tools']) walk(join(ROOT, d));
    files.push('main.ts', 'names.ts');
    const writes = /import\s*{([^}]*)}\s*from\s*'[^']*kernel\/(nft|iptables)\.ts'/g;
    const WRITERS = /\b(nftApply|nftTry|nftRun|nftBatch|iptablesRestore|withIptablesLock)\b/;
    const offenders = files.filter((f) => {
      if (f.startsWith('shared/kernel/') || f.startsWith('shared/firewall/') || allowed.has(f)) return false;
      const text = readFileSync(join(ROOT, f), 'utf8');
      return [...text.matchAll(writes)].some((m) => WRITERS.test(m[1]));
    });
    expect(offenders).toEqual([]);
  });
});
