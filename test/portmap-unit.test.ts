/** portmap's pure parts: config normalisation, nft script, iptables-restore text and parsing. */
import { describe, expect, it } from 'vitest';
import {
  attachmentComment,
  attachmentTag,
  containerAddrs,
  mappingsOf,
  networkTag,
  planOf,
  settingsOf,
  validatePortmapConf,
  type PortmapConf,
} from '../plugins/portmap/config.ts';
import { addScript, conflicts, expectedSignatures, legacyRemoveLines, ownedBy, parseTable, removeLines } from '../plugins/portmap/nft.ts';
import {
  addRestore,
  attachmentChain,
  dnatSignature,
  networkChains,
  parseSave,
  removeRestore,
  tokenize,
} from '../plugins/portmap/iptables.ts';
import { CniError } from '../shared/cni/errors.ts';
import { tagOfName } from '../shared/firewall/owner.ts';

const prev = {
  interfaces: [{ name: 'cni0' }, { name: 'veth1' }, { name: 'eth0', sandbox: '/run/netns/x' }, { name: 'net1', sandbox: '/run/netns/x' }],
  ips: [
    { address: '10.99.0.9/24', interface: 3 },
    { address: '10.88.0.5/16', gateway: '10.88.0.1', interface: 2 },
    { address: 'fd00:88::5/64', interface: 2 },
  ],
};

const base = (extra: Partial<PortmapConf> = {}): PortmapConf => ({
  name: 'net1',
  runtimeConfig: {
    portMappings: [
      { hostPort: 8080, containerPort: 80, protocol: 'TCP' },
      { hostPort: 5353, containerPort: 53, protocol: 'udp', hostIP: '192.0.2.1' },
      { hostPort: 8080, containerPort: 80 },
    ],
  },
  ...extra,
});

describe('portmap config', () => {
  it('defaults like the reference: snat on, mark bit 13, tcp; nftables unless conditions are iptables-style', () => {
    const s = settingsOf(base());
    expect(s).toMatchObject({
      backend: 'nftables',
      snat: true,
      masqAll: false,
      mark: 0x2000,
      nftTable: 'cni_portmap',
      iptablesPrefix: 'CNITS',
    });
    expect(settingsOf(base({ conditionsV4: ['!', '-s', '10.0.0.0/8'] })).backend).toBe('iptables');
    expect(settingsOf(base({ markMasqBit: 0 })).mark).toBe(1);
  });
  it('normalises mappings and merges identical duplicates', () => {
    expect(mappingsOf(base())).toEqual([
      { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
      { hostPort: 5353, containerPort: 53, protocol: 'udp', hostIP: '192.0.2.1', hostFamily: 4 },
    ]);
    expect(mappingsOf({ name: 'n', runtimeConfig: { portMappings: [{ hostPort: 1, containerPort: 2, hostIP: '0.0.0.0' }] } })).toEqual([
      { hostPort: 1, containerPort: 2, protocol: 'tcp', hostFamily: 4 },
    ]);
    expect(() =>
      mappingsOf({
        name: 'n',
        runtimeConfig: {
          portMappings: [
            { hostPort: 1, containerPort: 2 },
            { hostPort: 1, containerPort: 3 },
          ],
        },
      }),
    ).toThrow(CniError);
  });
  it('takes the sandbox interface addresses of CNI_IFNAME only', () => {
    expect(containerAddrs(prev, 'eth0')).toEqual({
      4: { family: 4, ip: '10.88.0.5', subnet: '10.88.0.0/16' },
      6: { family: 6, ip: 'fd00:88::5', subnet: 'fd00:88::/64' },
    });
    expect(containerAddrs(prev, 'net1')[4]?.ip).toBe('10.99.0.9');
  });
  it('skips hostIPs of the other family', () => {
    const plans = planOf(settingsOf(base()), mappingsOf(base()), containerAddrs(prev, 'eth0'));
    expect(plans.map((p) => [p.container.family, p.mappings.length])).toEqual([
      [4, 2],
      [6, 1],
    ]);
  });
  it('rejects contradictions with code 7', () => {
    expect(() => validatePortmapConf(base({ markMasqBit: 3, externalSetMarkChain: 'X', backend: 'iptables' }))).toThrow(
      /externalSetMarkChain/,
    );
    expect(() => validatePortmapConf(base({ externalSetMarkChain: 'X' }))).toThrow(/only supported by the iptables backend/);
    expect(() => validatePortmapConf(base({ backend: 'nftables', conditionsV4: ['-s', '1.2.3.4'] }))).toThrow(/conditionsV4\[0\]/);
    expect(() => validatePortmapConf(base({ conditionsV6: ['ip6 saddr ::1\nflush ruleset'] }))).toThrow(/conditionsV6\[0\]/);
  });
  it('tags attachments per network', () => {
    expect(attachmentTag('a', 'c1', 'eth0')).not.toBe(attachmentTag('b', 'c1', 'eth0'));
    expect(attachmentTag('a', 'c1', 'eth0').startsWith(`${networkTag('a')}-`)).toBe(true);
  });
});

describe('portmap nftables script', () => {
  const c = base({ nftTable: 't1' });
  const s = settingsOf(c);
  const plans = planOf(s, mappingsOf(c), containerAddrs(prev, 'eth0'));
  const script = addScript(s, 'abc-def', 'c1 eth0', plans, undefined);
  it('hooks prerouting and output at dstnat, postrouting at srcnat, in one inet table, in chains of its own', () => {
    expect(script).toContain('add chain inet t1 portmap-prerouting { type nat hook prerouting priority dstnat; policy accept; }');
    expect(script).toContain('add chain inet t1 portmap-output { type nat hook output priority -100; policy accept; }');
    expect(script).toContain('add chain inet t1 portmap-postrouting { type nat hook postrouting priority srcnat; policy accept; }');
    expect(script).toContain('meta mark & 0x2000 == 0x2000 masquerade');
    // never a chain another owner (the bridge masquerade: chain postrouting) writes into
    expect(script).not.toMatch(/(add|flush) chain inet t1 (prerouting|output|postrouting)\b/);
  });
  it('removes only the rules earlier versions wrote into the legacy base chains', () => {
    const jump = [{ fib: {} }, { jump: { target: 'hostports' } }];
    const rules = [
      { chain: 'prerouting', handle: 2, expr: jump },
      { chain: 'output', handle: 3, expr: jump },
      { chain: 'output', handle: 9, comment: 'someone else', expr: [{ accept: null }] },
      { chain: 'postrouting', handle: 4, comment: 'cni-ts portmap: loopback and hairpin', expr: [{ masquerade: null }] },
      { chain: 'postrouting', handle: 5, comment: 'cni:abc:def', expr: [{ masquerade: null }] },
      { chain: 'portmap-prerouting', handle: 6, expr: jump },
    ];
    expect(legacyRemoveLines('t1', rules)).toEqual([
      'delete rule inet t1 prerouting handle 2',
      'delete rule inet t1 output handle 3',
      'delete rule inet t1 postrouting handle 4',
      'delete chain inet t1 prerouting',
    ]);
    expect(legacyRemoveLines('t1', rules.slice(4))).toEqual([]);
  });
  it('has one chain per attachment, with the masquerade mark and dnat rules, and create-element dispatch', () => {
    expect(script).toContain('ip saddr { 127.0.0.0/8, 10.88.0.0/16 } meta mark set meta mark | 0x2000');
    expect(script).toContain('meta l4proto tcp th dport 8080 dnat ip to 10.88.0.5:80 comment "c1 eth0"');
    expect(script).toContain('ip daddr 192.0.2.1 meta l4proto udp th dport 5353 dnat ip to 10.88.0.5:53');
    expect(script).toContain('dnat ip6 to [fd00:88::5]:80');
    expect(script).toContain('create element inet t1 hostport4 { tcp . 8080 : goto pm-abc-def }');
    expect(script).toContain('create element inet t1 hostip4 { 192.0.2.1 . udp . 5353 : goto pm-abc-def }');
    expect(expectedSignatures(plans)).toEqual(['tcp/8080>10.88.0.5:80', 'udp/5353@192.0.2.1>10.88.0.5:53', 'tcp/8080>fd00:88::5:80']);
  });
  it('masqAll marks every published flow; snat false marks none and leaves postrouting alone', () => {
    const all = settingsOf(base({ nftTable: 't1', masqAll: true }));
    const sAll = addScript(all, 'abc-def', 'c1 eth0', plans, undefined);
    expect(sAll).toContain('add rule inet t1 pm-abc-def meta nfproto ipv4 meta mark set meta mark | 0x2000');
    const none = settingsOf(base({ nftTable: 't1', snat: false }));
    const sNone = addScript(none, 'abc-def', 'c1 eth0', plans, undefined);
    expect(sNone).not.toContain('meta mark set');
    expect(sNone).not.toContain('postrouting');
  });
  it('reads the table back: ownership, conflicts, removal', () => {
    const json = {
      nftables: [
        {
          map: {
            name: 'hostport4',
            elem: [
              [{ concat: ['tcp', 8080] }, { goto: { target: 'pm-zzz-1' } }],
              [{ concat: ['tcp', 9090] }, { goto: { target: 'pm-abc-def' } }],
            ],
          },
        },
        { chain: { name: 'pm-zzz-1' } },
        { chain: { name: 'pm-abc-def' } },
        {
          rule: {
            chain: 'pm-zzz-1',
            handle: 3,
            comment: 'other eth0',
            expr: [
              { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: 8080 } },
              { dnat: { family: 'ip', addr: '10.88.0.7', port: 80 } },
            ],
          },
        },
      ],
    };
    const st = parseTable(json);
    expect(st.rules[0].signature).toBe('tcp/8080>10.88.0.7:80');
    const c1 = conflicts(st, 'abc-def', plans);
    expect(c1.map((x) => [x.mapping.hostPort, x.holderComment])).toEqual([[8080, 'other eth0']]);
    expect(removeLines('t1', ownedBy(st, 'abc-def'))).toEqual([
      'delete element inet t1 hostport4 { tcp . 9090 }',
      'flush chain inet t1 pm-abc-def',
      'delete chain inet t1 pm-abc-def',
    ]);
  });
});

describe('portmap iptables text', () => {
  const c = base({ backend: 'iptables', iptablesChainPrefix: 'PX' });
  const s = settingsOf(c);
  const plans = planOf(s, mappingsOf(c), containerAddrs(prev, 'eth0'));
  const tag = attachmentTag('net1', 'c1', 'eth0');
  const chain = attachmentChain('PX', tag);
  it('names chains within 28 characters', () => {
    expect(attachmentChain('ABCDEFGHIJ', tag).length).toBeLessThanOrEqual(28);
  });
  it('builds one restore per family with comments, marks and DNAT', () => {
    const r = addRestore(s, tag, 'c1 eth0', plans[0], { chains: new Set(), rules: [] });
    expect(r).toContain(':PX-HOSTPORT-DNAT - [0:0]');
    expect(r).toContain('-A PREROUTING -m addrtype --dst-type LOCAL');
    expect(r).toContain('-I POSTROUTING 1');
    expect(r).toContain(`-m multiport --dports 8080 -j ${chain}`);
    expect(r).toContain('-s 127.0.0.0/8 -j PX-HOSTPORT-SETMARK');
    expect(r).toContain('-d 192.0.2.1/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.88.0.5:53');
    // the owner tag first (shared/firewall/owner.ts; earlier versions wrote "net=<net8> c1 eth0")
    expect(r).toContain(`--comment "${tagOfName(tag)} c1 eth0"`);
    expect(addRestore(s, tag, attachmentComment('net1', 'c1', 'eth0'), plans[0], { chains: new Set(), rules: [] })).toContain(
      `--comment "${tagOfName(tag)} c1/eth0"`,
    );
    expect(r.trimEnd().endsWith('COMMIT')).toBe(true);
  });
  it('parses iptables-save, finds the network chains and removes them exactly', () => {
    const save = [
      '*nat',
      ':PREROUTING ACCEPT [0:0]',
      `:${chain} - [0:0]`,
      ':PX-HOSTPORT-DNAT - [0:0]',
      `-A PX-HOSTPORT-DNAT -p tcp -m comment --comment "net=${networkTag('net1')} c1 eth0" -m multiport --dports 8080 -j ${chain}`,
      `-A ${chain} -d 192.0.2.1/32 -p udp -m comment --comment "x \\"y\\"" -m udp --dport 5353 -j DNAT --to-destination 10.88.0.5:53`,
      'COMMIT',
    ].join('\n');
    const st = parseSave(save);
    expect(tokenize('-m comment --comment "x \\"y\\"" -j A')).toEqual(['-m', 'comment', '--comment', 'x "y"', '-j', 'A']);
    expect(dnatSignature(st.rules[1].tokens)).toBe('udp/5353@192.0.2.1/32>10.88.0.5:53');
    expect(networkChains('PX', networkTag('net1'), st)).toEqual([chain]);
    expect(networkChains('PX', networkTag('other'), st)).toEqual([]);
    const rm = removeRestore([chain], st);
    expect(rm).toContain(
      `-D PX-HOSTPORT-DNAT -p tcp -m comment --comment "net=${networkTag('net1')} c1 eth0" -m multiport --dports 8080 -j ${chain}`,
    );
    expect(rm).toContain(`-X ${chain}`);
    expect(removeRestore(['PX-DN-none'], st)).toBe('');
  });
});
