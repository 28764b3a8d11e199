/**
 * The netlink codec (shared/kernel/netlink/) against replies captured from this machine's
 * kernel (test/fixtures/netlink/replies.json, made by capture.ts beside `ip -json` for the
 * same objects): decoding gives what `ip` says; errors carry the errno text and the kernel's
 * extended ack; requests encode as iproute2 builds them. Pure: no kernel, runs on Node.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import * as C from '../shared/kernel/netlink/constants.ts';
import {
  Attrs,
  attr,
  describeError,
  encodeMessage,
  formatIp,
  ifinfomsg,
  ipBytes,
  parseError,
  parseIfaddrmsg,
  parseIfinfomsg,
  parseMessages,
  parseRtmsg,
  type NlMsg,
} from '../shared/kernel/netlink/codec.ts';
import { decodeAddr, decodeLink, decodeRoute, resolveLink, resolveRoute, type LinkRef } from '../shared/kernel/netlink/decode.ts';
import { codeOfErrno, errnoText } from '../shared/kernel/netlink/errno.ts';
import { buildRequest, parseIpBatch, parseIpCommand, type BuildContext } from '../shared/kernel/netlink/ipcmd.ts';
import type { AddrInfo, LinkInfo, RouteInfo } from '../shared/kernel/ip.ts';

interface Case {
  name: string;
  replies: string[];
  ip?: unknown;
  netns?: string;
}
const fixture = JSON.parse(readFileSync(path.join(import.meta.dirname, 'fixtures', 'netlink', 'replies.json'), 'utf8')) as {
  kernel: string;
  cases: Case[];
};
const msgsOf = (c: Case): NlMsg[] =>
  c.replies.filter((r) => !r.startsWith('error')).flatMap((h) => parseMessages(Uint8Array.from(Buffer.from(h, 'hex'))));
const cases = (prefix: string): Case[] => fixture.cases.filter((c) => c.name.startsWith(prefix));
const find = (name: string, ns?: string): Case => fixture.cases.find((c) => c.name === name && (!ns || c.netns === ns))!;

/** index → name in a netns, from its captured link dump */
function namesIn(ns: string): (i: number) => string | undefined {
  const links = msgsOf(find('links dump', ns))
    .filter((m) => m.type === C.RTM_NEWLINK)
    .map((m) => decodeLink(m).info);
  return (i) => links.find((l) => l.ifindex === i)?.ifname;
}
function refsIn(ns: string): (i: number) => LinkRef | undefined {
  const links = msgsOf(find('links dump', ns))
    .filter((m) => m.type === C.RTM_NEWLINK)
    .map((m) => decodeLink(m).info);
  return (i) => {
    const l = links.find((x) => x.ifindex === i);
    return l && { name: l.ifname, up: l.flags.includes('UP') };
  };
}

const LINK_KEYS = [
  'ifindex',
  'ifname',
  'flags',
  'mtu',
  'qdisc',
  'operstate',
  'txqlen',
  'address',
  'broadcast',
  'link',
  'link_index',
  'link_netnsid',
  'master',
  'min_mtu',
  'max_mtu',
  'ifalias',
] as const;
const ADDR_KEYS = [
  'family',
  'local',
  'address',
  'prefixlen',
  'broadcast',
  'scope',
  'dynamic',
  'tentative',
  'nodad',
  'noprefixroute',
  'dadfailed',
  'label',
  'valid_life_time',
  'preferred_life_time',
] as const;

function pick<T extends object>(o: T, keys: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if ((o as Record<string, unknown>)[k] !== undefined) out[k] = (o as Record<string, unknown>)[k];
  return out;
}

describe('decoding captured kernel replies gives what ip -json says', () => {
  it(`fixtures were captured (kernel ${fixture.kernel}) and cover links, addresses, routes and errors`, () => {
    expect(cases('link ').length).toBeGreaterThanOrEqual(6);
    for (const n of ['addr dump', 'route dump 4', 'route dump 6', 'error EEXIST', 'error ENODEV', 'error unknown kind', 'ack'])
      expect(cases(n).length).toBeGreaterThan(0);
  });

  for (const c of cases('link ')) {
    it(`${c.name} (netns ${c.netns?.slice(-1)}): link fields, IFLA_LINKINFO kind/slave data, addresses`, () => {
      const [m] = msgsOf(c);
      expect(m.type).toBe(C.RTM_NEWLINK);
      const ip = c.ip as LinkInfo;
      const mine = resolveLink(decodeLink(m), refsIn(c.netns!));
      expect(pick(mine, LINK_KEYS)).toEqual(pick(ip, LINK_KEYS));
      expect(mine.linkinfo?.info_kind).toBe(ip.linkinfo?.info_kind);
      expect(mine.linkinfo?.info_slave_kind).toBe(ip.linkinfo?.info_slave_kind);
      if (ip.linkinfo?.info_kind === 'bridge') expect(mine.linkinfo?.info_data?.vlan_filtering).toBe(ip.linkinfo.info_data?.vlan_filtering);
      if (ip.linkinfo?.info_slave_kind === 'bridge') {
        expect(mine.linkinfo?.info_slave_data?.hairpin).toBe(ip.linkinfo.info_slave_data?.hairpin);
        expect(mine.linkinfo?.info_slave_data?.isolated).toBe(ip.linkinfo.info_slave_data?.isolated);
      }
      // the same link's addresses, from the netns's address dump, in ip's order (IPv4 first)
      const addrs = msgsOf(find('addr dump', c.netns))
        .filter((x) => x.type === C.RTM_NEWADDR)
        .map(decodeAddr)
        .filter((a) => a.index === mine.ifindex);
      const ordered = [...addrs.filter((a) => a.info.family === 'inet'), ...addrs.filter((a) => a.info.family === 'inet6')].map((a) =>
        pick(a.info, ADDR_KEYS),
      );
      expect(ordered).toEqual((ip.addr_info ?? []).map((a: AddrInfo) => pick(a, ADDR_KEYS)));
    });
  }

  it('a veth peer in another netns: link_index + link_netnsid, no name; a bridge port names its master', () => {
    const host = resolveLink(decodeLink(msgsOf(find('link vethhost'))[0]), refsIn(find('link vethhost').netns!));
    expect(host.master).toBe('br0');
    expect(host.link_netnsid).toBeTypeOf('number');
    expect(host.link).toBeUndefined();
    const va = resolveLink(decodeLink(msgsOf(find('link va'))[0]), refsIn(find('link va').netns!));
    expect(va.link).toBe('vb');
    expect(va.flags).toContain('PROMISC');
  });

  it('a veth peer in another netns with the same ifindex as ours is still named by link_index (ptp CHECK compares it)', () => {
    const m = parseMessages(
      encodeMessage({
        type: C.RTM_NEWLINK,
        flags: 0,
        header: ifinfomsg({ index: 2, flags: 0x1043 }),
        attrs: [attr.str(C.IFLA_IFNAME, 'eth0'), attr.u32(C.IFLA_LINK, 2), attr.i32(C.IFLA_LINK_NETNSID, 0)],
      }),
    )[0];
    expect(resolveLink(decodeLink(m), () => undefined)).toMatchObject({ ifindex: 2, link_index: 2, link_netnsid: 0 });
  });

  it('every route of the IPv4 and IPv6 dumps, all tables, as ip -json prints them', () => {
    let n = 0;
    for (const c of [...cases('route dump 4'), ...cases('route dump 6')]) {
      const mine = msgsOf(c)
        .filter((m) => m.type === C.RTM_NEWROUTE)
        .map(decodeRoute)
        .map((r) => resolveRoute(r, namesIn(c.netns!)));
      const ip = c.ip as RouteInfo[];
      expect(mine.length).toBe(ip.length);
      mine.forEach((r, i) => {
        const keys = ['type', 'dst', 'gateway', 'dev', 'table', 'protocol', 'scope', 'metric', 'prefsrc', 'flags', 'pref'];
        expect(pick(r, keys), JSON.stringify(ip[i])).toEqual(pick(ip[i], keys));
        n++;
      });
    }
    expect(n).toBeGreaterThan(10);
  });

  it('route metrics (RTA_METRICS > RTAX_MTU) and a table above 255 (RTA_TABLE)', () => {
    const b = find('route dump 4', fixture.cases.find((c) => c.name === 'link eth0')!.netns);
    const routes = msgsOf(b)
      .filter((m) => m.type === C.RTM_NEWROUTE)
      .map(decodeRoute);
    expect(routes.find((r) => r.info.dst === '198.51.100.0/24')?.info).toMatchObject({ gateway: '10.77.0.1', metric: 7, mtu: 1400 });
    expect(routes.find((r) => r.info.dst === '203.0.113.0/24')).toMatchObject({ table: 1000, info: { table: '1000', scope: 'link' } });
  });

  it('a dump ends with NLMSG_DONE; replies carry the multi-part flag', () => {
    const ms = msgsOf(find('addr dump'));
    expect(ms.at(-1)!.type).toBe(C.NLMSG_DONE);
    expect(ms.slice(0, -1).every((m) => m.flags & C.NLM_F_MULTI)).toBe(true);
  });
});

describe("NLMSG_ERROR: errno, the errno text, the kernel's extended ack, our code", () => {
  const errOf = (name: string) => parseError(msgsOf(find(name)).find((m) => m.type === C.NLMSG_ERROR)!);
  it('EEXIST: "File exists" (what callers match to report a Conflict), code 100 as from ip', () => {
    const e = errOf('error EEXIST');
    expect(e.errno).toBe(17);
    expect(e.requestType).toBe(C.RTM_NEWLINK);
    expect(describeError(e)).toBe('RTNETLINK answers: File exists (EEXIST)');
    expect(codeOfErrno(e.errno)).toBe(100);
  });
  it('ENODEV: "No such device"', () => {
    const e = errOf('error ENODEV');
    expect(e.errno).toBe(19);
    expect(describeError(e)).toContain('No such device');
  });
  it('an unknown link kind: EOPNOTSUPP with the kernel\'s "Unknown device type" (addLinkOfKind maps it to 101)', () => {
    const e = errOf('error unknown kind');
    expect(errnoText(e.errno)).toBe('Operation not supported');
    expect(e.message).toBe('Unknown device type');
    expect(describeError(e)).toBe('Error: Unknown device type. RTNETLINK answers: Operation not supported (EOPNOTSUPP)');
  });
  it('an ACK is an NLMSG_ERROR with error 0', () => {
    const e = errOf('ack');
    expect(e.errno).toBe(0);
  });
  it('unknown errnos still get a text and code 100; EAFNOSUPPORT is a missing feature (101)', () => {
    expect(errnoText(4095)).toBe('Unknown error 4095');
    expect(codeOfErrno(4095)).toBe(100);
    expect(codeOfErrno(97)).toBe(101);
  });
  it('malformed input throws instead of reading past the end', () => {
    const bad = Uint8Array.from([40, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
    expect(() => parseMessages(bad)).toThrow(/malformed/);
    expect(() => new Attrs(Uint8Array.from([9, 0, 1, 0, 1]))).toThrow(/malformed/);
  });
});

describe('encoding', () => {
  it('nlmsghdr, ifinfomsg and attributes, 4-byte aligned, in host order', () => {
    const m = encodeMessage({
      type: C.RTM_GETLINK,
      flags: C.NLM_F_REQUEST,
      seq: 7,
      header: ifinfomsg({ index: 3 }),
      attrs: [attr.str(C.IFLA_IFNAME, 'eth0')],
    });
    expect(Buffer.from(m).toString('hex')).toBe(
      '2c000000' +
        '1200' +
        '0100' +
        '07000000' +
        '00000000' + // nlmsghdr: len 44, RTM_GETLINK, REQUEST, seq 7
        '00000000' +
        '03000000' +
        '00000000' +
        '00000000' + // ifinfomsg: index 3
        '0900' +
        '0300' +
        '6574683000' +
        '000000', // IFLA_IFNAME "eth0\0" padded
    );
    const [back] = parseMessages(m);
    expect(parseIfinfomsg(back.payload).index).toBe(3);
    expect(new Attrs(back.payload, 16).str(C.IFLA_IFNAME)).toBe('eth0');
  });

  const ctx: BuildContext = { index: (n) => ({ br0: 5, veth1: 6, eth0: 2 })[n] ?? 99, nsFd: () => 42 };
  const decodeReq = (argv: string[]) => {
    const op = parseIpCommand(argv);
    expect(op, argv.join(' ')).toBeDefined();
    const [m] = parseMessages(encodeMessage(buildRequest(op!, ctx)));
    return m;
  };

  it('veth with the peer in a netns by fd: IFLA_LINKINFO > IFLA_INFO_DATA > VETH_INFO_PEER (ifinfomsg + IFLA_NET_NS_FD)', () => {
    const m = decodeReq([
      'link',
      'add',
      'name',
      'veth1',
      'mtu',
      '1400',
      'address',
      '02:00:00:00:00:01',
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'mtu',
      '1400',
      'address',
      '02:00:00:00:00:02',
      'netns',
      '/run/netns/x',
    ]);
    expect(m.type).toBe(C.RTM_NEWLINK);
    expect(m.flags).toBe(C.NLM_F_REQUEST | C.NLM_F_ACK | C.NLM_F_CREATE | C.NLM_F_EXCL);
    const a = new Attrs(m.payload, 16);
    expect(a.str(C.IFLA_IFNAME)).toBe('veth1');
    expect(a.u32(C.IFLA_MTU)).toBe(1400);
    const li = a.nested(C.IFLA_LINKINFO)!;
    expect(li.str(C.IFLA_INFO_KIND)).toBe('veth');
    const peer = li.nested(C.IFLA_INFO_DATA)!.bytes(C.VETH_INFO_PEER)!;
    const pa = new Attrs(peer, 16);
    expect(pa.str(C.IFLA_IFNAME)).toBe('eth0');
    expect(pa.u32(C.IFLA_NET_NS_FD)).toBe(42);
    expect(pa.bytes(C.IFLA_ADDRESS)).toEqual(Uint8Array.from([2, 0, 0, 0, 0, 2]));
  });

  it('link set: up/promisc as flags+change, master by index, bridge_slave hairpin as slave data', () => {
    let m = decodeReq(['link', 'set', 'dev', 'veth1', 'master', 'br0']);
    expect(parseIfinfomsg(m.payload)).toMatchObject({ index: 6, change: 0 });
    expect(new Attrs(m.payload, 16).u32(C.IFLA_MASTER)).toBe(5);
    m = decodeReq(['link', 'set', 'dev', 'br0', 'up']);
    expect(parseIfinfomsg(m.payload)).toMatchObject({ index: 5, flags: C.IFF_UP, change: C.IFF_UP });
    m = decodeReq(['link', 'set', 'dev', 'veth1', 'type', 'bridge_slave', 'hairpin', 'on']);
    const li = new Attrs(m.payload, 16).nested(C.IFLA_LINKINFO)!;
    expect(li.str(C.IFLA_INFO_SLAVE_KIND)).toBe('bridge');
    expect(li.nested(C.IFLA_INFO_SLAVE_DATA)!.u8(C.IFLA_BRPORT_MODE)).toBe(1);
  });

  it('addresses: add is CREATE|EXCL, replace CREATE|REPLACE; nodad in the header, noprefixroute in IFA_FLAGS', () => {
    let m = decodeReq(['addr', 'add', 'fd00::5/64', 'dev', 'eth0', 'nodad']);
    expect(m.flags & (C.NLM_F_EXCL | C.NLM_F_REPLACE)).toBe(C.NLM_F_EXCL);
    expect(parseIfaddrmsg(m.payload)).toMatchObject({ family: C.AF_INET6, prefixlen: 64, flags: C.IFA_F_NODAD, index: 2 });
    m = decodeReq(['addr', 'replace', '10.0.0.1/24', 'dev', 'br0', 'noprefixroute']);
    expect(m.flags & C.NLM_F_REPLACE).toBeTruthy();
    const a = new Attrs(m.payload, 8);
    expect(a.u32(C.IFA_FLAGS)).toBe(C.IFA_F_NOPREFIXROUTE);
    expect(formatIp(a.bytes(C.IFA_LOCAL)!)).toBe('10.0.0.1');
  });

  it('routes as iproute2 sends them: proto boot, scope link without a gateway, big tables in RTA_TABLE, metrics nested', () => {
    let m = decodeReq(['route', 'add', '0.0.0.0/0', 'via', '10.0.0.1', 'dev', 'eth0']);
    expect(parseRtmsg(m.payload)).toMatchObject({
      family: C.AF_INET,
      dstLen: 0,
      table: C.RT_TABLE_MAIN,
      protocol: C.RTPROT_BOOT,
      scope: 0,
      type: C.RTN_UNICAST,
    });
    // iproute2 sends RTA_DST 0.0.0.0 for "0.0.0.0/0" (only `default` goes without): captured in tc-rule.json (test/nl-tc.test.ts)
    expect(new Attrs(m.payload, 12).has(C.RTA_DST)).toBe(true);
    m = decodeReq(['route', 'add', '10.9.0.0/16', 'dev', 'eth0', 'table', '1000', 'mtu', '1400', 'metric', '5']);
    expect(parseRtmsg(m.payload)).toMatchObject({ dstLen: 16, table: 0, scope: C.RT_SCOPE_LINK });
    const a = new Attrs(m.payload, 12);
    expect(a.u32(C.RTA_TABLE)).toBe(1000);
    expect(a.u32(C.RTA_PRIORITY)).toBe(5);
    expect(a.nested(C.RTA_METRICS)!.u32(C.RTAX_MTU)).toBe(1400);
  });

  it('a batch with any line it does not know goes to ip as a whole', () => {
    expect(
      parseIpBatch([
        ['link', 'set', 'dev', 'x', 'up'],
        ['route', 'add', '10.0.0.0/8', 'dev', 'x'],
      ]),
    ).toHaveLength(2);
    for (const bad of [
      ['link', 'set', 'dev', 'x', 'alias', 'y'.repeat(256)], // an alias IFLA_IFALIAS cannot hold: ip says why
      ['link', 'add', 'name', 'x', 'type', 'vxlan', 'id', '5'],
      ['route', 'add', '10.0.0.0/8', 'via', 'fe80::1', 'dev', 'x'],
      ['link', 'set', 'dev', 'x', 'netns', '1234'],
      ['addr', 'add', '10.0.0.1/33', 'dev', 'x'],
      ['neigh', 'add', '10.0.0.1', 'lladdr', '02:00:00:00:00:01', 'dev', 'x'],
    ]) {
      expect(parseIpCommand(bad), bad.join(' ')).toBeUndefined();
      expect(parseIpBatch([['link', 'set', 'dev', 'x', 'up'], bad])).toBeUndefined();
    }
  });

  it('addresses format as inet_ntop does', () => {
    for (const s of [
      '::',
      '::1',
      'fe80::1',
      'fd00:0:0:1::5',
      '2001:db8::',
      '1:0:0:1::1',
      '::ffff:10.1.2.3',
      '1:2:3:4:5:6:7:8',
      '0:1:0:0:0:0:0:0',
      '10.0.0.255',
    ]) {
      expect(formatIp(ipBytes(s)!)).toBe(s === '0:1:0:0:0:0:0:0' ? '0:1::' : s);
    }
    expect(formatIp(ipBytes('1:0:0:2:0:0:0:3')!)).toBe('1:0:0:2::3');
    expect(ipBytes('1::2::3')).toBeUndefined();
    expect(ipBytes('256.0.0.1')).toBeUndefined();
  });
});
