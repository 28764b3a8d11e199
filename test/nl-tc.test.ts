/**
 * The tc and rule codecs (shared/kernel/netlink/tc.ts, rule.ts) and the ip lines added for
 * bandwidth, sbr, tuning and macvlan (ipcmd.ts), against what was captured on this machine
 * (test/fixtures/netlink/tc-rule.json, made by capture-tc.ts): each line encodes to the
 * request iproute2 6.1's own `tc` / `ip` sent for it (strace's dump of sendmsg), byte for byte
 * but the sequence number; rule and route dumps decode to what `ip -json` printed; refusals
 * carry the kernel's text. Pure: no kernel, runs on Node.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import * as C from '../shared/kernel/netlink/constants.ts';
import { describeError, parseError, parseMessages, type NlMsg } from '../shared/kernel/netlink/codec.ts';
import { decodeRoute, resolveRoute } from '../shared/kernel/netlink/decode.ts';
import { codeOfErrno } from '../shared/kernel/netlink/errno.ts';
import { buildRequest, parseIpBatch, parseIpCommand, type BuildContext } from '../shared/kernel/netlink/ipcmd.ts';
import { decodeRule, parseRule, RTM_NEWRULE } from '../shared/kernel/netlink/rule.ts';
import {
  buildTcRequest,
  decodeFilter,
  decodeQdisc,
  hzOf,
  RTM_NEWQDISC,
  RTM_NEWTFILTER,
  parseTcBatch,
  parseTcCommand,
  tbfOptions,
  tickInUsec,
  xmittime,
  type TcContext,
} from '../shared/kernel/netlink/tc.ts';
import { encodeMessage } from '../shared/kernel/netlink/codec.ts';
import { withDetails } from '../shared/kernel/ip.ts';
import { rootCommands, redirectCommands, limitsOf, shaperOf } from '../plugins/bandwidth/config.ts';
import { planRoutes, planRulesOnly, rulesToDelete } from '../plugins/sbr/config.ts';
import { linkCommands } from '../plugins/tuning/config.ts';

interface Fixture {
  kernel: string;
  iproute2: string;
  indexes: Record<string, number>;
  requests: Array<{ cmd: string[]; request: string }>;
  cases: Array<{ name: string; replies: string[]; ip?: unknown }>;
}
const fx = JSON.parse(readFileSync(path.join(import.meta.dirname, 'fixtures', 'netlink', 'tc-rule.json'), 'utf8')) as Fixture;
const msgsOf = (name: string): NlMsg[] =>
  fx.cases
    .find((c) => c.name === name)!
    .replies.filter((r) => !r.startsWith('error'))
    .flatMap((h) => parseMessages(Uint8Array.from(Buffer.from(h, 'hex'))));

/** This machine's /proc/net/psched when the fixture was captured (nanosecond clock: 15.625 ticks per µs). */
const PSCHED = '000003e8 00000040 000f4240 3b9aca00';
const indexOf = (name: string): number => {
  const i = fx.indexes[name];
  if (i === undefined) throw new Error(`Cannot find device "${name}"`);
  return i;
};
const tcCtx: TcContext = { index: indexOf, tick: () => tickInUsec(PSCHED), hz: () => hzOf(PSCHED) };
/** the descriptor `ip` used for `netns PATH` (its 4th open file: 0-2, the netlink socket, then the nsfs file) */
const NS_FD = 4;
const ipCtx: BuildContext = { index: indexOf, nsFd: () => NS_FD };

/** The request bytes with the sequence number and port id zeroed (they differ per run). */
function norm(b: Uint8Array): string {
  const c = Uint8Array.from(b);
  c.fill(0, 8, 16);
  return Buffer.from(c).toString('hex');
}

describe('requests as iproute2 sends them', () => {
  it(`the fixture comes from ${fx.iproute2}`, () => {
    expect(fx.requests.length).toBeGreaterThan(15);
    expect(tickInUsec(PSCHED)).toBe(15.625);
  });

  for (const r of fx.requests) {
    const words = r.cmd.filter((w) => w !== '-4' && w !== '-6');
    it(words.join(' '), () => {
      const want = norm(Uint8Array.from(Buffer.from(r.request, 'hex')));
      let got: Uint8Array;
      if (words[0] === 'tc') {
        const op = parseTcCommand(words.slice(1));
        expect(op, 'parsed').toBeDefined();
        got = encodeMessage(buildTcRequest(op!, tcCtx));
      } else {
        const op = parseIpCommand(words.slice(1));
        expect(op, 'parsed').toBeDefined();
        got = encodeMessage(buildRequest(op!, ipCtx));
      }
      expect(attrsSorted(norm(got))).toEqual(attrsSorted(want));
      // byte for byte where iproute2's attribute order is ours (every tc line, rules, routes)
      if (!/^ip link add/.test(words.join(' '))) expect(norm(got)).toBe(want);
    });
  }
});

/**
 * A link request's top-level attributes in type order: `ip link add` writes IFLA_IFNAME after
 * the others, we write it first (the kernel reads attributes by type, not position).
 */
function attrsSorted(h: string): { head: string; attrs: string[] } {
  const b = Buffer.from(h, 'hex');
  const type = b.readUInt16LE(4);
  const fixed = type === C.RTM_NEWLINK ? 16 : type >= 32 && type <= 34 ? 12 : type >= 36 ? 20 : 12;
  const head =
    b
      .subarray(0, 16 + fixed)
      .toString('hex')
      .slice(0, 8 * 2) + b.subarray(4, 16 + fixed).toString('hex');
  const attrs: string[] = [];
  for (let off = 16 + fixed; off + 4 <= b.length;) {
    const len = b.readUInt16LE(off);
    const a = Buffer.from(b.subarray(off, off + len));
    // IFLA_LINKINFO > IFLA_INFO_KIND: iproute2 sends the kind without its NUL, we with (the kernel takes both)
    if (type === C.RTM_NEWLINK && a.readUInt16LE(2) === C.IFLA_LINKINFO && a.readUInt16LE(6) === C.IFLA_INFO_KIND) {
      const kindLen = a.readUInt16LE(4);
      if (a[4 + kindLen - 1] === 0) a.writeUInt16LE(kindLen - 1, 4);
    }
    attrs.push(a.toString('hex'));
    off += (len + 3) & ~3;
  }
  return { head, attrs: attrs.sort() };
}

describe('the lines the plugins write are all understood (no process)', () => {
  it('bandwidth: a TBF each way and the redirect; DEL’s two deletions', () => {
    const l = limitsOf({
      cniVersion: '1.0.0',
      name: 'n',
      type: 'bandwidth',
      ingressRate: 20_000_000,
      ingressBurst: 1_000_000,
      egressRate: 8000,
      egressBurst: 80,
    })!;
    const cmds = [
      ...rootCommands('veth1', shaperOf(l.ingressRate, l.ingressBurst)!, l, 'src'),
      ...rootCommands('bwp0', shaperOf(l.egressRate, l.egressBurst)!, l, 'dst'),
      ...redirectCommands('veth1', 'bwp0'),
      ['qdisc', 'del', 'dev', 'veth1', 'root', 'handle', '1:'],
      ['qdisc', 'del', 'dev', 'veth1', 'handle', 'ffff:', 'ingress'],
    ];
    expect(parseTcBatch(cmds)?.map((o) => o.op)).toEqual(['tbf', 'tbf', 'ingress', 'redirect', 'qdisc-del', 'qdisc-del']);
  });

  it('bandwidth with subnets: the HTB, its two classes and a u32 filter per subnet (either family)', () => {
    const base = limitsOf({ cniVersion: '1.0.0', name: 'n', type: 'bandwidth', ingressRate: 8000, ingressBurst: 80 })!;
    for (const l of [
      { ...base, shapedSubnets: ['10.0.0.0/8', '192.0.2.7/32'] },
      { ...base, unshapedSubnets: ['fd00::/56', '::/0'] },
    ]) {
      const cmds = rootCommands('veth1', shaperOf(8000, 80)!, l, 'src');
      expect(parseTcBatch(cmds)?.map((o) => o.op)).toEqual(['htb', 'htb-class', 'htb-class', 'u32-match', 'u32-match']);
    }
    expect(hzOf(PSCHED)).toBe(1_000_000_000);
    expect(hzOf('00000001 00000001 00000064 00000064')).toBe(100);
  });

  it('tc lines with anything else are refused', () => {
    for (const w of [
      'qdisc add dev v0 root handle 1: tbf rate 20mbit burst 125000 latency 25000us', // a unit we do not convert
      'qdisc add dev v0 root handle 1: tbf rate 20000000bit burst 125000 limit 3000',
      'qdisc add dev v0 root handle 1: tbf rate 20000000bit burst 125000 latency 25000us peakrate 1000bit',
      'qdisc add dev v0 root handle 1:1 tbf rate 20000000bit burst 125000 latency 25000us',
      'qdisc add dev v0 root handle 1: tbf rate 0bit burst 125000 latency 25000us',
      'qdisc replace dev v0 root handle 1: tbf rate 20000000bit burst 125000 latency 25000us',
      'filter add dev v0 parent ffff: protocol ip prio 1 u32 match u32 0 0 flowid 1:1 action mirred egress redirect dev i',
      'filter add dev v0 parent ffff: protocol all prio 1 u32 match u32 0 0 flowid 1:1 action mirred ingress redirect dev i',
      'qdisc del dev v0 root',
      'class add dev v0 parent 1: classid 1:30 htb rate 8000bit burst 10 ceil 16000bit quantum 60000',
      'filter add dev v0 parent 1: protocol ip prio 16 u32 match ip6 src fd00::/8 classid 1:1',
      'filter add dev v0 parent 1: protocol ip prio 16 u32 match ip src 10.0.0.0/33 classid 1:1',
      'filter add dev v0 parent 1: protocol ip prio 16 u32 match ip sport 80 0xffff classid 1:1',
      'qdisc add dev a-very-long-device-name handle ffff: ingress',
    ])
      expect(parseTcCommand(w.split(' ')), w).toBeUndefined();
  });

  it('sbr: rules of both families, table routes with proto/scope/type words, main-table deletions', () => {
    const ips = [
      { address: '10.1.2.3/24', gateway: '10.1.2.1' },
      { address: 'fd00::3/64', gateway: 'fd00::1' },
    ];
    const routes = [
      { type: 'unicast', dst: '10.1.2.0/24', protocol: 'kernel', scope: 'link', prefsrc: '10.1.2.3', family: 4 as const },
      { type: 'unicast', dst: 'fd00::/64', protocol: 'kernel', scope: 'global', metric: 256, family: 6 as const },
      { type: 'unicast', dst: 'fe80::/64', protocol: 'kernel', scope: 'global', metric: 256, family: 6 as const },
    ];
    for (const hints of [false, true]) {
      const plan = planRoutes(ips, 'eth0', routes, new Set([255, 254, 253]), {}, hints);
      for (const batch of [plan.rules[4], plan.rules[6], plan.commands, plan.deletions])
        expect(parseIpBatch(batch), JSON.stringify(batch)).toBeDefined();
    }
    expect(parseIpBatch(planRulesOnly(ips, 500)[6])).toBeDefined();
    const del = rulesToDelete(
      [
        { priority: 32765, src: '10.1.2.3', table: '100' },
        { priority: 32764, src: 'fd00::3', table: 'main' },
      ],
      ['10.1.2.3', 'fd00::3'],
    );
    expect(parseIpBatch(del[4])).toEqual([
      { op: 'rule', verb: 'del', family: 4, src: Uint8Array.of(10, 1, 2, 3), srcLen: 32, table: 100, priority: 32765 },
    ]);
    expect(parseIpBatch(del[6])?.[0]).toMatchObject({ op: 'rule', family: 6, table: 254, srcLen: 128 });
  });

  it('rules: only from/table/pref; an add needs its table', () => {
    expect(parseRule('add', ['from', '10.0.0.1/32'])).toBeUndefined();
    expect(parseRule('add', ['from', 'all', 'table', '100'])).toBeUndefined();
    expect(parseRule('add', ['from', '10.0.0.1/32', 'table', '100', 'fwmark', '1'])).toBeUndefined();
    expect(parseRule('add', ['from', '10.0.0.1/33', 'table', '100'])).toBeUndefined();
    expect(parseRule('flush', [])).toBeUndefined();
    expect(parseRule('del', ['from', '10.0.0.1'])).toMatchObject({ srcLen: 32 });
  });

  it('tuning: mtu, address, promisc, allmulticast, txqueuelen', () => {
    const cmds = linkCommands('eth0', { mtu: 1400, mac: '02:00:00:00:00:01', promisc: true, allmulti: false, txQLen: 0 });
    const ops = parseIpBatch(cmds);
    expect(ops?.length).toBe(5);
    expect(ops?.[4]).toEqual({ op: 'link-set', dev: 'eth0', txqlen: 0 });
  });

  it('ip link add: ifb and macvlan as the plugins write them; other kinds or words still go to ip', () => {
    expect(parseIpCommand('link add name bwp1 address 02:00:00:00:00:01 mtu 1500 txqueuelen 1000 up type ifb'.split(' '))).toMatchObject({
      kind: 'ifb',
      link: { name: 'bwp1', txqlen: 1000, up: true },
    });
    expect(parseIpCommand('link add link eth9 name mac123 netns /run/netns/x type macvlan mode passthru'.split(' '))).toMatchObject({
      kind: 'macvlan',
      mode: 8,
      link: { lower: 'eth9', netns: '/run/netns/x' },
    });
    for (const w of [
      'link add link eth9 name m0 type macvlan mode nosuch',
      'link add link eth9 name m0 type macvlan',
      'link add name m0 up type veth peer name m1',
      'link add link eth9 name v0 type vlan id 5',
      'link add name i0 type ifb numtxqueues 2',
      'link add name v0 netns /run/netns/x type veth peer name v1',
    ])
      expect(parseIpCommand(w.split(' ')), w).toBeUndefined();
  });
});

describe('tbf numbers', () => {
  it('rate table, buffer and limit as tc computes them (truncating conversions)', () => {
    const tick = tickInUsec(PSCHED);
    // 20 Mbit/s: 8 bytes take 3.2 µs → 3 → 46.875 ticks → 46
    expect(xmittime(2_500_000, 8, tick)).toBe(46);
    expect(xmittime(2_500_000, 125_000, tick)).toBe(781_250);
    // above 4 GB/s the 32-bit rate is ~0U and RATE64 carries it
    const opts = tbfOptions(5_000_000_000, 4_294_967_294, 25_000, tick);
    expect(opts.map((a) => a.type)).toEqual([1, 6, 4, 2]);
    const parms = Buffer.from(opts[0].value as Uint8Array);
    expect(parms.readUInt32LE(8)).toBe(0xffffffff);
    expect(parms.readUInt32LE(24)).toBe(124_999_998); // (125e6 + 4294967294) mod 2^32
    expect(parms.readUInt32LE(28)).toBe(15_624_984);
  });

  it('a clock with microsecond resolution (old kernels) gives 1 tick per µs', () => {
    expect(tickInUsec('00000001 00000001 000f4240 000f4240')).toBe(1);
  });
});

describe('dumps and refusals from the kernel', () => {
  for (const fam of [4, 6] as const) {
    it(`rule dump (IPv${fam}) decodes to what ip -json rule show printed`, () => {
      const got = msgsOf(`rule dump ${fam}`)
        .filter((m) => m.type === RTM_NEWRULE)
        .map(decodeRule)
        .map(({ family, ...r }) => {
          expect(family).toBe(fam);
          return r;
        });
      expect(got).toEqual(fx.cases.find((c) => c.name === `rule dump ${fam}`)!.ip);
    });

    it(`main-table routes of one device (IPv${fam}) as ip -json -d route show dev v0 table main`, () => {
      const names = (i: number): string | undefined => Object.entries(fx.indexes).find(([, x]) => x === i)?.[0];
      const got = msgsOf(`route dump ${fam}`)
        .filter((m) => m.type === C.RTM_NEWROUTE)
        .map(decodeRoute)
        .filter((r) => r.table === C.RT_TABLE_MAIN && !r.cloned)
        .map((r) => resolveRoute(r, names))
        .filter((r) => r.dev === 'v0')
        .map(withDetails)
        .map(({ dev, ...r }) => {
          expect(dev).toBe('v0'); // `ip route show dev X` leaves dev out
          return r;
        });
      expect(got).toEqual(fx.cases.find((c) => c.name === `route dump ${fam}`)!.ip);
    });
  }

  it('qdisc dump: kind, handle, root/parent, TBF rate and burst (from the kernel’s ticks, as tc computes it), HTB default', () => {
    const want = fx.cases.find((c) => c.name === 'qdisc dump')!.ip as Record<string, Array<Record<string, unknown>>>;
    const got = msgsOf('qdisc dump')
      .filter((m) => m.type === RTM_NEWQDISC)
      .map((m) => decodeQdisc(m, tickInUsec(PSCHED)));
    for (const dev of ['v0', 'ifb0', 'ifb2']) {
      const mine = got.filter((q) => q.ifindex === indexOf(dev));
      expect(mine.length, dev).toBe(want[dev].length);
      mine.forEach(({ ifindex: _, options, ...q }, i) => {
        const tc = want[dev][i];
        expect(tc).toMatchObject(q);
        // every option we decode is what tc printed (tc prints more: latency, limit, r2q…)
        expect(tc.options).toMatchObject(options ?? {});
      });
    }
    expect(got.find((q) => q.ifindex === indexOf('ifb0'))?.options).toEqual({ rate: 5_000_000_000, burst: 4_294_965_000 });
    expect(got.find((q) => q.ifindex === indexOf('ifb2'))?.options).toEqual({ default: '0x30' });
  });

  it('filter dump: the u32 filter’s mirred action and the device it redirects to', () => {
    const names = (i: number): string | undefined => Object.entries(fx.indexes).find(([, x]) => x === i)?.[0];
    const got = msgsOf('filter dump v0 ingress')
      .filter((m) => m.type === RTM_NEWTFILTER)
      .map((m) => decodeFilter(m, names));
    const want = fx.cases.find((c) => c.name === 'filter dump v0 ingress')!.ip as Array<Record<string, unknown>>;
    expect(got.length).toBe(want.length);
    got.forEach(({ ifindex, kind, options }, i) => {
      expect(ifindex).toBe(indexOf('v0'));
      expect(want[i]).toMatchObject({ kind, ...(options?.actions?.length ? { options } : {}) });
    });
    expect(got.flatMap((f) => f.options?.actions ?? [])).toEqual([{ kind: 'mirred', to_dev: 'ifb0' }]);
  });

  it('deleting a qdisc that is not there: EINVAL with the kernel’s "Invalid handle" (what tc prints), code 100', () => {
    const err = msgsOf('tc error del missing').find((m) => m.type === C.NLMSG_ERROR && parseError(m).errno !== 0)!;
    const e = parseError(err);
    expect(describeError(e)).toBe('Error: Invalid handle. RTNETLINK answers: Invalid argument (EINVAL)');
    expect(codeOfErrno(e.errno)).toBe(100);
  });

  it('a second root qdisc: EEXIST, "Exclusivity flag on, cannot modify."', () => {
    const err = msgsOf('tc error exists').find((m) => m.type === C.NLMSG_ERROR && parseError(m).errno !== 0)!;
    expect(describeError(parseError(err))).toBe('Error: Exclusivity flag on, cannot modify. RTNETLINK answers: File exists (EEXIST)');
    expect(fx.cases.find((c) => c.name === 'tc error exists')!.replies.at(-1)).toMatch(/failed: Error: Exclusivity flag on/);
  });
});
