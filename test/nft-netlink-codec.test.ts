/**
 * shared/kernel/netlink/nftnl.ts against what nft 1.0.6 itself sends (`nft --debug=mnl -f`,
 * test/fixtures/nft-netlink/*.mnl.txt): the masquerade owner's messages must be byte for byte
 * nft's (nfgenmsg and attributes), so the kernel holds, and `nft -j list` shows, the same
 * rule whichever path wrote it. Pure: no kernel.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseMessages } from '../shared/kernel/netlink/codec.ts';
import {
  addrMatch,
  commentOfUserdata,
  commentUserdata,
  decodeElements,
  decodeRule,
  delRule,
  encodeBatch,
  jumpTarget,
  NFNL_MSG_BATCH_BEGIN,
  NFNL_MSG_BATCH_END,
  saddrOf,
} from '../shared/kernel/netlink/nftnl.ts';
import { masqueradeMsgs } from '../shared/firewall/masquerade-nft.ts';
import { addMsgs, elementKeyBytes, intervalElements4, removeMsgs } from '../plugins/portmap/nft-netlink.ts';
import type { Settings } from '../plugins/portmap/config.ts';
import { macspoofMsgs } from '../plugins/bridge/macspoof.ts';
import { ownerComment } from '../shared/firewall/owner.ts';
import { ROOT } from './helpers/run.ts';

const FIX = path.join(ROOT, 'test/fixtures/nft-netlink');

/** The messages of an `nft --debug=mnl` dump: type and payload bytes (nfgenmsg + attributes). */
function parseMnl(text: string): Array<{ type: number; payload: Uint8Array }> {
  const out: Array<{ type: number; payload: number[] }> = [];
  let cur: { type: number; payload: number[] } | undefined;
  for (const line of text.split('\n')) {
    let m: RegExpExecArray | null;
    if (/\| message length \|/.test(line)) {
      cur = { type: -1, payload: [] };
      out.push(cur);
    } else if (cur && (m = /^\| (\d{5}) \| [RMAE-]{4} \|/.exec(line))) cur.type = Number(m[1]);
    else if (cur && (m = /^\|(\d{5})\|([NB-]{2})\|(\d{5})\|/.exec(line))) {
      const len = Number(m[1]);
      const type = Number(m[3]) | (m[2][0] === 'N' ? 0x8000 : 0) | (m[2][1] === 'B' ? 0x4000 : 0);
      cur.payload.push(len & 0xff, len >> 8, type & 0xff, type >> 8);
    } else if (cur && (m = /^\| ([0-9a-f]{2}) ([0-9a-f]{2}) ([0-9a-f]{2}) ([0-9a-f]{2})\s+\|/.exec(line)))
      cur.payload.push(...m.slice(1, 5).map((h) => parseInt(h, 16)));
  }
  return out.map((x) => ({ type: x.type, payload: Uint8Array.from(x.payload) }));
}

const owner = { network: 'n', containerId: 'abc', ifname: 'eth0' };

describe('nf_tables messages (nftnl.ts) against nft 1.0.6', () => {
  it('the masquerade batch is byte for byte what nft sends for the same rule text', () => {
    // test/fixtures/nft-netlink/masq-batch.mnl.txt is `nft --debug=mnl -f` of:
    //   add table inet hnf_t
    //   add chain inet hnf_t postrouting { type nat hook postrouting priority srcnat; policy accept; }
    //   add rule inet hnf_t postrouting ip saddr 10.1.2.5 ip daddr != 10.1.2.0/24 ip daddr != 224.0.0.0/4 counter masquerade comment "C"
    //   add rule inet hnf_t postrouting ip6 saddr fd00:1::5 ip6 daddr != fd00:1::/64 ip6 daddr != ff00::/8 counter masquerade comment "C"
    //   add rule inet hnf_t postrouting ip saddr 10.1.18.5 ip daddr != 10.1.16.0/20 ip daddr != 224.0.0.0/4 counter masquerade comment "c"
    // with C = "cni:01234567:0123456789abcdef abc/eth0"
    const nft = parseMnl(readFileSync(path.join(FIX, 'masq-batch.mnl.txt'), 'utf8'));
    expect(nft.map((m) => m.type)).toEqual([16, 2560, 2563, 2566, 2566, 2566, 17]);
    const C = 'cni:01234567:0123456789abcdef abc/eth0';
    const two = masqueradeMsgs('hnf_t', owner, [
      { ip: '10.1.2.5', subnet: '10.1.2.0/24' },
      { ip: 'fd00:1::5', subnet: 'fd00:1::/64' },
    ])!;
    const third = masqueradeMsgs('hnf_t', owner, [{ ip: '10.1.18.5', subnet: '10.1.16.0/20' }])!.slice(2);
    const ours = [...two, ...third];
    // the comment the owner writes, replaced by the fixture's (same length class, one TLV)
    ours[2].attrs[3] = { type: 7, value: commentUserdata(C) };
    ours[3].attrs[3] = { type: 7, value: commentUserdata(C) };
    ours[4].attrs[3] = { type: 7, value: commentUserdata('c') };
    const { datagram, seqs } = encodeBatch(ours, 0);
    expect(seqs).toEqual([2, 3, 4, 5, 6]);
    const msgs = parseMessages(datagram);
    expect(msgs.map((m) => m.type)).toEqual(nft.map((m) => m.type));
    expect(msgs[0].type).toBe(NFNL_MSG_BATCH_BEGIN);
    expect(msgs.at(-1)!.type).toBe(NFNL_MSG_BATCH_END);
    msgs.forEach((m, i) =>
      expect(Buffer.from(m.payload).toString('hex'), `message ${i}`).toBe(Buffer.from(nft[i].payload).toString('hex')),
    );
    // create/append as nft; the last message asks for the one ACK
    expect(msgs.slice(1, -1).map((m) => m.flags)).toEqual([0x1, 0x401, 0xc01, 0xc01, 0xc05]);
  });

  it('the portmap ADD batch is byte for byte what nft sends for addScript', () => {
    // test/fixtures/nft-netlink/portmap-batch.mnl.txt is `nft --debug=mnl -f` of plugins/portmap/nft.ts
    // addScript for these settings and plan (table hnf_pm, one tcp mapping 18080 -> 10.231.0.5:80)
    const nft = parseMnl(readFileSync(path.join(FIX, 'portmap-batch.mnl.txt'), 'utf8'));
    const s = {
      backend: 'nftables',
      snat: true,
      masqAll: false,
      mark: 0x2000,
      conditions: { 4: [], 6: [] },
      nftTable: 'hnf_pm',
      iptablesPrefix: 'X',
    } as Settings;
    const plans = [
      {
        container: { family: 4 as const, ip: '10.231.0.5', subnet: '10.231.0.0/24' },
        mappings: [{ hostPort: 18080, containerPort: 80, protocol: 'tcp' as const }],
        conditions: [],
      },
    ];
    const ours = addMsgs(s, '01234567-0123456789abcdef', 'x', plans)!;
    const msgs = parseMessages(encodeBatch(ours, 0).datagram);
    expect(msgs.map((m) => m.type)).toEqual(nft.map((m) => m.type));
    msgs.forEach((m, i) =>
      expect(Buffer.from(m.payload).toString('hex'), `message ${i}: ${ours[i - 1]?.what}`).toBe(
        Buffer.from(nft[i].payload).toString('hex'),
      ),
    );
  });

  for (const [name, subnet, ip] of [
    ['inside', '127.1.0.0/16', '127.1.0.5'],
    ['below', '126.0.0.0/8', '126.0.0.5'],
    ['around', '64.0.0.0/2', '64.0.0.5'],
  ]) {
    it(`a container subnet touching 127/8 (${subnet}, ${name}): the merged set nft sends, byte for byte`, () => {
      // portmap-127-*.mnl.txt: `nft --debug=mnl -f` of addScript for this plan (test/nl-rest.test.ts's capture session)
      const all = parseMnl(readFileSync(path.join(FIX, `portmap-127-${name}.mnl.txt`), 'utf8'));
      const nft = all.slice(
        all.findIndex((m) => m.type === 16),
        all.findIndex((m) => m.type === 17) + 1,
      ); // the batch (nft reads its cache first)
      const s = {
        backend: 'nftables',
        snat: true,
        masqAll: false,
        mark: 0x2000,
        conditions: { 4: [], 6: [] },
        nftTable: 'nr_pm',
        iptablesPrefix: 'X',
      } as Settings;
      const plans = [
        {
          container: { family: 4 as const, ip, subnet },
          mappings: [{ hostPort: 18080, containerPort: 80, protocol: 'tcp' as const }],
          conditions: [],
        },
      ];
      const ours = addMsgs(s, '01234567-0123456789abcdef', 'x', plans);
      expect(ours, 'netlink, not the text path').toBeDefined();
      const msgs = parseMessages(encodeBatch(ours!, 0).datagram);
      expect(msgs.map((m) => m.type)).toEqual(nft.map((m) => m.type));
      msgs.forEach((m, i) =>
        expect(Buffer.from(m.payload).toString('hex'), `message ${i}: ${ours![i - 1]?.what}`).toBe(
          Buffer.from(nft[i].payload).toString('hex'),
        ),
      );
    });
  }

  it('a subnet reaching 255.255.255.255 (128.0.0.0/1): the text path (nft flags an open interval, portmap-127-above.mnl.txt)', () => {
    const all = parseMnl(readFileSync(path.join(FIX, 'portmap-127-above.mnl.txt'), 'utf8'));
    expect(all.some((m) => m.type === 2572 && Buffer.from(m.payload).toString('hex').includes('0a0006000104010000000000'))).toBe(true);
    const s = {
      backend: 'nftables',
      snat: true,
      masqAll: false,
      mark: 0x2000,
      conditions: { 4: [], 6: [] },
      nftTable: 'nr_pm',
      iptablesPrefix: 'X',
    } as Settings;
    const plan = {
      container: { family: 4 as const, ip: '128.0.0.5', subnet: '128.0.0.0/1' },
      mappings: [{ hostPort: 1, containerPort: 1, protocol: 'tcp' as const }],
      conditions: [],
    };
    expect(addMsgs(s, '01234567-0123456789abcdef', 'x', [plan])).toBeUndefined();
  });

  it('the macspoof batch is byte for byte what nft sends for macspoofScript', () => {
    // macspoof-batch.mnl.txt: add table bridge hnf_b; add chain … macspoof { type filter hook prerouting priority -300; … };
    // add rule bridge hnf_b macspoof iifname "veth1234abcd" ether saddr != 02:42:ac:11:00:02 counter drop comment "cni:01234567:0123456789abcdef x"
    const nft = parseMnl(readFileSync(path.join(FIX, 'macspoof-batch.mnl.txt'), 'utf8'));
    const ours = macspoofMsgs('hnf_b', owner, 'veth1234abcd', '02:42:ac:11:00:02')!;
    ours[2].attrs[3] = { type: 7, value: commentUserdata('cni:01234567:0123456789abcdef x') };
    const msgs = parseMessages(encodeBatch(ours, 0).datagram);
    expect(msgs.map((m) => m.type)).toEqual(nft.map((m) => m.type));
    msgs.forEach((m, i) =>
      expect(Buffer.from(m.payload).toString('hex'), `message ${i}`).toBe(Buffer.from(nft[i].payload).toString('hex')),
    );
    expect(macspoofMsgs('t', owner, 'a-name-of-16-chr', '02:42:ac:11:00:02')).toBeUndefined();
    expect(macspoofMsgs('t', owner, 'veth0', 'not-a-mac')).toBeUndefined();
  });

  it('portmap: element keys, the interval set of source ranges, and the DEL plan', () => {
    const hx = (b: Uint8Array | undefined): string | undefined => b && Buffer.from(b).toString('hex');
    expect(hx(elementKeyBytes({ hostPort: 8080, containerPort: 80, protocol: 'tcp' }))).toBe('060000001f900000');
    expect(hx(elementKeyBytes({ hostPort: 53, containerPort: 53, protocol: 'udp', hostIP: '192.0.2.1' }))).toBe(
      'c000020111000000' + '00350000',
    );
    expect(hx(elementKeyBytes({ hostPort: 1, containerPort: 1, protocol: 'sctp', hostIP: 'fd00::1' }))?.length).toBe(48);
    const iv = (c: string[]): Array<[string, boolean]> | undefined => intervalElements4(c)?.map((e) => [hx(e.key)!, e.end === true]);
    expect(iv(['127.0.0.0/8', '10.231.0.0/24'])).toEqual([
      ['00000000', true],
      ['0ae70000', false],
      ['0ae70100', true],
      ['7f000000', false],
      ['80000000', true],
    ]);
    expect(iv(['127.0.0.0/8', '192.168.0.0/16'])).toEqual([
      ['00000000', true],
      ['7f000000', false],
      ['80000000', true],
      ['c0a80000', false],
      ['c0a90000', true],
    ]);
    expect(iv(['127.0.0.0/8', '255.255.255.0/24'])).toBeUndefined(); // open-ended: nft flags it in userdata; the text path
    // overlapping or adjacent: merged, as nft does (test below: byte for byte against nft's batches)
    expect(iv(['127.0.0.0/8', '127.1.0.0/16'])).toEqual([
      ['00000000', true],
      ['7f000000', false],
      ['80000000', true],
    ]);
    expect(iv(['127.0.0.0/8', '128.0.0.0/8'])).toEqual([
      ['00000000', true],
      ['7f000000', false],
      ['81000000', true],
    ]);
    const st = {
      chains: new Set(['hostports', 'pm-a', 'pm-b', 'prerouting']),
      elements: [
        { map: 'hostport4' as const, key: Uint8Array.of(6, 0, 0, 0, 0, 80, 0, 0), target: 'pm-a' },
        { map: 'hostport6' as const, key: Uint8Array.of(6, 0, 0, 0, 0, 80, 0, 0), target: 'pm-a' },
        { map: 'hostport4' as const, key: Uint8Array.of(6, 0, 0, 0, 0, 81, 0, 0), target: 'pm-b' },
      ],
      legacy: [],
    };
    expect(removeMsgs('t', st, ['a']).map((m) => m.what)).toEqual([
      'delete element inet t hostport4',
      'delete element inet t hostport6',
      'flush chain inet t pm-a',
      'delete chain inet t pm-a',
    ]);
    expect(removeMsgs('t', st, ['zzz'])).toEqual([]);
  });

  it('address matches: whole-byte prefixes load only their bytes, others mask; nothing for what nft writes otherwise', () => {
    const hex = (e: ReturnType<typeof addrMatch>): string[] | undefined => e?.map((x) => x.name);
    expect(hex(addrMatch(4, 'daddr', true, '10.0.0.0/8'))).toEqual(['payload', 'cmp']);
    expect(hex(addrMatch(4, 'daddr', true, '10.0.0.0/9'))).toEqual(['payload', 'bitwise', 'cmp']);
    expect(hex(addrMatch(6, 'saddr', false, 'fd00::1'))).toEqual(['payload', 'cmp']);
    expect(hex(addrMatch(6, 'daddr', true, 'fd00::/63'))).toEqual(['payload', 'bitwise', 'cmp']);
    expect(addrMatch(4, 'daddr', true, '0.0.0.0/0')).toBeUndefined();
    expect(addrMatch(4, 'daddr', true, 'fd00::/8')).toBeUndefined();
    expect(addrMatch(4, 'daddr', true, '10.0.0.0/33')).toBeUndefined();
    expect(masqueradeMsgs('t', owner, [{ ip: '10.0.0.5', subnet: '0.0.0.0/0' }])).toBeUndefined();
  });

  it('comments: one userdata TLV, read back; owner comments fit', () => {
    const c = ownerComment(owner);
    expect(commentOfUserdata(commentUserdata(c))).toBe(c);
    expect(commentOfUserdata(Uint8Array.of(1, 2, 0, 0, 0, 2, 0x61, 0))).toBe('a');
    expect(commentOfUserdata(Uint8Array.of(0, 9, 0x61))).toBeUndefined();
    expect(() => commentUserdata('x'.repeat(255))).toThrow(RangeError);
  });

  it('decodes a rule of a GETRULE dump (captured from the kernel): table, chain, handle, comment, saddr', () => {
    const datagram = Uint8Array.from(Buffer.from(readFileSync(path.join(FIX, 'getrule-masq.hex'), 'utf8').trim(), 'hex'));
    const rules = parseMessages(datagram)
      .filter((m) => m.type === ((10 << 8) | 6))
      .map(decodeRule);
    expect(rules.map((r) => [r.table, r.chain, r.comment, saddrOf(r)])).toEqual([
      ['hnf_t', 'postrouting', 'cni:01234567:0123456789abcdef abc/eth0', '10.1.2.5'],
      ['hnf_t', 'postrouting', 'cni:01234567:0123456789abcdef abc/eth0', 'fd00:1::5'],
      ['hnf_t', 'postrouting', 'c', '10.1.18.5'],
    ]);
    expect(rules.every((r) => r.handle > 0 && r.family === 1)).toBe(true);
    expect(rules[0].exprs.map((e) => e.name)).toEqual([
      'meta',
      'cmp',
      'payload',
      'cmp',
      'payload',
      'cmp',
      'payload',
      'bitwise',
      'cmp',
      'counter',
      'masq',
    ]);
    expect(jumpTarget(rules[0])).toBeUndefined();
    const del = delRule('inet', 'hnf_t', 'postrouting', rules[0].handle);
    expect(del.what).toBe(`delete rule inet hnf_t postrouting handle ${rules[0].handle}`);
  });

  it('decodes the elements of a verdict map (captured): key bytes and goto target', () => {
    const datagram = Uint8Array.from(Buffer.from(readFileSync(path.join(FIX, 'getsetelem-hostport4.hex'), 'utf8').trim(), 'hex'));
    const els = parseMessages(datagram)
      .filter((m) => m.type === ((10 << 8) | 12))
      .flatMap(decodeElements);
    expect(els.map((e) => [e.set, Buffer.from(e.key).toString('hex'), e.verdict])).toEqual([
      ['hostport4', '060000004e200000', { code: -4, chain: 'pm-01234567-0123456789abcdef' }],
    ]);
  });
});
