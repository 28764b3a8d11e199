/**
 * The last processes of the plugin paths (issue 12, "Left"), against what was captured on this
 * machine (test/fixtures/netlink/rest.json, made by capture-rest.ts): tuning's `alias` as the
 * IFLA_IFALIAS iproute2 6.1 sends (a value with spaces; the empty alias that clears it);
 * bandwidth's HTB lines with IPv4 and IPv6 subnets together (their own u32 priorities) and
 * `tc class show` as an RTM_GETTCLASS dump decoded to what tc printed; portmap's CHECK from
 * GETRULE / GETSETELEM dumps of a table `nft -f` wrote, giving the signatures `nft -j` gives.
 * Pure: no kernel, runs on Node.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import * as C from '../shared/kernel/netlink/constants.ts';
import { encodeMessage, parseMessages, type NlMsg } from '../shared/kernel/netlink/codec.ts';
import { buildRequest, parseIpCommand, type BuildContext } from '../shared/kernel/netlink/ipcmd.ts';
import { decodeChain, decodeElements, decodeRule, type DumpedElement, type DumpedRule } from '../shared/kernel/netlink/nftnl.ts';
import {
  buildTcRequest,
  decodeClass,
  hzOf,
  parseTcBatch,
  parseTcCommand,
  RTM_GETTCLASS,
  RTM_NEWTCLASS,
  tcmsg,
  tickInUsec,
  type TcContext,
} from '../shared/kernel/netlink/tc.ts';
import { parseClassText } from '../shared/kernel/tc.ts';
import { limitsOf, rootCommands, shaperOf, V4_FILTER_PRIO, V6_FILTER_PRIO } from '../plugins/bandwidth/config.ts';
import { dumpedSignature, lostMappings, readCheck } from '../plugins/portmap/nft-netlink.ts';
import { chainOf, expectedSignatures, parseTable } from '../plugins/portmap/nft.ts';
import type { FamilyPlan } from '../plugins/portmap/config.ts';

interface Fixture {
  kernel: string;
  iproute2: string;
  nft: string;
  indexes: Record<string, number>;
  requests: Array<{ cmd: string[]; request: string }>;
  classDumps: Array<{ dev: string; replies: string[]; text: string }>;
  filters: Array<{ protocol: string; pref: number; options?: { match?: unknown } }>;
  portmap: {
    tag: string;
    plans: FamilyPlan[];
    nftJson: { nftables: Array<Record<string, unknown>> };
    rules: string[];
    chain: string[];
    missingChain: string[];
    elements: Record<string, string[]>;
  };
}
const fx = JSON.parse(readFileSync(path.join(import.meta.dirname, 'fixtures', 'netlink', 'rest.json'), 'utf8')) as Fixture;
const msgs = (hex: string[]): NlMsg[] => hex.flatMap((h) => parseMessages(Uint8Array.from(Buffer.from(h, 'hex'))));

/** This machine's /proc/net/psched when the fixture was captured (as test/nl-tc.test.ts). */
const PSCHED = '000003e8 00000040 000f4240 3b9aca00';
const indexOf = (name: string): number => {
  const i = fx.indexes[name];
  if (i === undefined) throw new Error(`Cannot find device "${name}"`);
  return i;
};
const tcCtx: TcContext = { index: indexOf, tick: () => tickInUsec(PSCHED), hz: () => hzOf(PSCHED) };
const ipCtx: BuildContext = { index: indexOf, nsFd: () => 4 };

/** The request bytes with the sequence number and port id zeroed (they differ per run). */
function norm(b: Uint8Array): string {
  const c = Uint8Array.from(b);
  c.fill(0, 8, 16);
  return Buffer.from(c).toString('hex');
}

describe('requests as iproute2 6.1 sends them', () => {
  it(`the fixture: ${fx.iproute2}, ${fx.nft}, kernel ${fx.kernel}`, () => {
    expect(fx.requests.length).toBe(13);
  });

  for (const r of fx.requests) {
    it(JSON.stringify(r.cmd.join(' ')), () => {
      const want = norm(Uint8Array.from(Buffer.from(r.request, 'hex')));
      const [tool, ...words] = r.cmd;
      let got: Uint8Array;
      if (tool === 'tc' && words[0] === 'class' && words[1] === 'show') {
        got = encodeMessage({ type: RTM_GETTCLASS, flags: C.NLM_F_REQUEST | C.NLM_F_DUMP, header: tcmsg({ index: indexOf(words[3]) }) });
      } else if (tool === 'tc') {
        const op = parseTcCommand(words);
        expect(op, 'parsed').toBeDefined();
        got = encodeMessage(buildTcRequest(op!, tcCtx));
      } else {
        const op = parseIpCommand(words);
        expect(op, 'parsed').toBeDefined();
        got = encodeMessage(buildRequest(op!, ipCtx));
      }
      expect(norm(got)).toBe(want);
    });
  }

  it('alias: IFLA_IFALIAS without a NUL (as ip sends it), empty to clear; longer than the kernel takes, or with a NUL: left to ip', () => {
    const op = parseIpCommand(['link', 'set', 'dev', 'v1', 'alias', 'web pod 1']);
    expect(op).toEqual({ op: 'link-set', dev: 'v1', alias: 'web pod 1' });
    expect(parseIpCommand(['link', 'set', 'dev', 'v1', 'alias', ''])).toEqual({ op: 'link-set', dev: 'v1', alias: '' });
    expect(parseIpCommand(['link', 'set', 'dev', 'v1', 'alias', 'é'.repeat(128)])).toBeUndefined(); // 256 bytes
    expect(parseIpCommand(['link', 'set', 'dev', 'v1', 'alias', 'a'.repeat(255)])).toBeDefined();
    expect(parseIpCommand(['link', 'set', 'dev', 'v1', 'alias', 'a\0b'])).toBeUndefined();
    expect(parseIpCommand(['link', 'set', 'dev', 'v1', 'alias'])).toBeUndefined();
  });
});

describe('bandwidth with IPv4 and IPv6 subnets together', () => {
  const l = limitsOf({ ingressRate: 8e6, ingressBurst: 8e4, unshapedSubnets: ['10.0.0.0/8', 'fd00::/64', '192.168.0.0/16'] } as never)!;
  const cmds = rootCommands('v0', shaperOf(l.ingressRate, l.ingressBurst)!, l, 'src');

  it('a u32 priority per protocol (IPv4 16, IPv6 15, as the Go reference): never two protocols at one priority', () => {
    const filters = cmds.filter((c) => c[0] === 'filter');
    const prio = new Map<string, Set<string>>();
    for (const f of filters) {
      const p = f[f.indexOf('prio') + 1];
      prio.set(p, (prio.get(p) ?? new Set()).add(f[f.indexOf('protocol') + 1]));
    }
    expect(Object.fromEntries([...prio].map(([p, s]) => [p, [...s]]))).toEqual({ [V4_FILTER_PRIO]: ['ip'], [V6_FILTER_PRIO]: ['ipv6'] });
    expect(parseTcBatch(cmds)).toBeDefined(); // in-process, every line
  });

  it('the kernel took both (captured `tc -json filter show`): IPv6 at 15, IPv4 at 16', () => {
    const withMatch = fx.filters.filter((f) => f.options?.match);
    expect(withMatch.map((f) => [f.protocol, f.pref])).toEqual([
      ['ipv6', 15],
      ['ip', 16],
    ]);
  });
});

describe('tc class show as an RTM_GETTCLASS dump', () => {
  for (const d of fx.classDumps) {
    it(`${d.dev}: kind, handle and rate as tc printed them (${d.text.trim().split('\n').length} classes)`, () => {
      const got = msgs(d.replies)
        .filter((m) => m.type === RTM_NEWTCLASS)
        .map(decodeClass);
      const text = parseClassText(d.text);
      expect(got.every((c) => c.ifindex === indexOf(d.dev))).toBe(true);
      expect(got.map((c) => [c.kind, c.handle])).toEqual(text.map((c) => [c.kind, c.handle]));
      // tc prints rounded figures ("100Gbit", "8Mbit"): the exact rate is within its rounding
      got.forEach((c, i) => expect(Math.abs(c.rate! - text[i].rate!) / text[i].rate!).toBeLessThan(0.01));
    });
  }

  it('the 100 Gbit/s class comes from TCA_HTB_RATE64 (above 4 GB/s), the shaped one from the rate spec', () => {
    const got = msgs(fx.classDumps.find((d) => d.dev === 'ifb0')!.replies)
      .filter((m) => m.type === RTM_NEWTCLASS)
      .map(decodeClass);
    expect(got.map(({ ifindex: _, ...c }) => c)).toEqual([
      { kind: 'htb', handle: '1:1', rate: 12_500_000_000 },
      { kind: 'htb', handle: '1:30', rate: 2_000_000 },
    ]);
  });
});

describe('portmap CHECK from netlink dumps (a table nft -f wrote from the text path’s script)', () => {
  const pm = fx.portmap;
  const chain = chainOf(pm.tag);
  const rules = (): DumpedRule[] =>
    msgs(pm.rules)
      .filter((m) => m.type === ((10 << 8) | 6))
      .map(decodeRule);
  const elements = (map: string): DumpedElement[] =>
    msgs(pm.elements[map])
      .filter((m) => m.type === ((10 << 8) | 12))
      .flatMap(decodeElements);

  it('the bytecode gives the signatures `nft -j list table` gives (the masquerade mark rule none)', () => {
    const text = parseTable(pm.nftJson)
      .rules.filter((r) => r.chain === chain)
      .map((r) => r.signature);
    const got = rules().map(dumpedSignature);
    expect(got[0]).toBeUndefined(); // the IPv4 mark rule
    expect(got.filter((s) => s)).toEqual(text);
    expect(text).toEqual(expectedSignatures(pm.plans).sort((a, b) => text.indexOf(a) - text.indexOf(b)));
    expect(text).toContain('udp/5353@192.0.2.1>10.88.0.5:53');
    expect(text).toContain('sctp/9000@2001:db8::1>[fd00:88::5]:9'.replace('[fd00:88::5]', 'fd00:88::5'));
  });

  it('GETCHAIN of the chain answers it; of a missing one ENOENT', () => {
    expect(
      msgs(pm.chain)
        .filter((m) => m.type === ((10 << 8) | 3))
        .map(decodeChain),
    ).toEqual([{ table: 'nr_pm', name: chain }]);
    const err = msgs(pm.missingChain).find((m) => m.type === C.NLMSG_ERROR)!;
    expect(new DataView(err.payload.buffer, err.payload.byteOffset).getInt32(0, true)).toBe(-2);
  });

  /** The dumps of the fixture as readCheck's reads, with `drop` applied (what a tampered table would answer). */
  const reads = (drop: { rule?: number; element?: string; chain?: boolean; table?: boolean } = {}) => ({
    chains: async () => (drop.table ? undefined : ['hostports', chain]),
    chainsNamed: async (_t: string, names: string[]) => (drop.chain || drop.table ? undefined : names.filter((n) => n === chain)),
    rules: async () => rules().filter((_, i) => i !== drop.rule),
    elements: async (_t: string, map: string) =>
      elements(map).filter((e) => `${map}:${Buffer.from(e.key).toString('hex')}` !== drop.element),
  });

  it('an intact table: every signature and every key found', async () => {
    const st = await readCheck('nr_pm', reads(), pm.tag, pm.plans);
    expect(st.table && st.chain).toBe(true);
    const have = new Set(st.signatures);
    expect(expectedSignatures(pm.plans).filter((s) => !have.has(s))).toEqual([]);
    expect(lostMappings(st, pm.plans)).toEqual([]);
  });

  it('a rule, an element, the chain or the table gone: found as the text path finds it', async () => {
    const noRule = await readCheck('nr_pm', reads({ rule: 2 }), pm.tag, pm.plans);
    expect(expectedSignatures(pm.plans).filter((s) => !noRule.signatures.includes(s))).toEqual(['udp/5353@192.0.2.1>10.88.0.5:53']);
    const key = Buffer.from(elements('hostport6')[0].key).toString('hex');
    const noEl = await readCheck('nr_pm', reads({ element: `hostport6:${key}` }), pm.tag, pm.plans);
    expect(lostMappings(noEl, pm.plans)).toEqual([pm.plans[1].mappings[0]]);
    expect(await readCheck('nr_pm', reads({ chain: true }), pm.tag, pm.plans)).toMatchObject({ table: true, chain: false });
    expect(await readCheck('nr_pm', reads({ table: true }), pm.tag, pm.plans)).toMatchObject({ table: false, chain: false });
  });
});
