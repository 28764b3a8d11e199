import { describe, expect, it } from 'vitest';
import { CniError } from '../shared/cni/errors.ts';
import { formatIP, parseIP, type IP } from '../shared/ipnet.ts';
import { assignRequested, parseRange, parseRangeSets, requestedIPs, storeDir, type HostLocalConf } from '../ipam/host-local/config.ts';
import { parseResolvConf } from '../ipam/host-local/dns.ts';
import { allocationOrder, capacity, freeCount, nextFree } from '../ipam/host-local/range.ts';
import { formatOwner, ownedBy, parseOwner } from '../ipam/host-local/store.ts';

const ip = (s: string): IP => parseIP(s) as IP;
const conf = (ipam: Record<string, unknown>, extra: Record<string, unknown> = {}): HostLocalConf =>
  ({ cniVersion: '1.1.0', name: 'n', ...extra, ipam: { type: 'host-local', ...ipam } }) as HostLocalConf;
const codeOf = (fn: () => unknown): [number, string] => {
  try {
    fn();
  } catch (e) {
    return [(e as CniError).code, (e as CniError).message];
  }
  return [0, ''];
};

describe('host-local ranges', () => {
  it('fills defaults like the reference: gateway .1, start .1, end before broadcast', () => {
    const r = parseRange({ subnet: '10.1.2.0/24' }, 'ipam');
    expect(formatIP({ family: 4, value: r.start })).toBe('10.1.2.1');
    expect(formatIP({ family: 4, value: r.end })).toBe('10.1.2.254');
    expect(formatIP(r.gateway)).toBe('10.1.2.1');
    expect(capacity(r)).toBe(253n);
    const v6 = parseRange({ subnet: 'fd00:1::/120' }, 'ipam');
    expect(formatIP({ family: 6, value: v6.end })).toBe('fd00:1::ff');
    expect(capacity(v6)).toBe(254n);
  });

  it('iterates round robin after the last reserved address, wrapping across ranges', () => {
    const [set] = parseRangeSets(conf({ ranges: [[{ subnet: '10.0.0.0/29' }, { subnet: '10.0.1.0/30' }]] }), '1.1.0');
    const order = (last?: string): string[] => [...allocationOrder(set, last ? ip(last) : undefined)].map((c) => formatIP(c.ip));
    expect(order()).toEqual(['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6', '10.0.1.1', '10.0.1.2']);
    expect(order('10.0.0.5')).toEqual(['10.0.0.6', '10.0.1.1', '10.0.1.2', '10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5']);
    expect(order('10.0.1.2')[0]).toBe('10.0.0.1');
    expect(order('192.168.0.1')[0]).toBe('10.0.0.1');
  });

  it('picks the next free address, skipping gateway, network and broadcast', () => {
    const [set] = parseRangeSets(
      conf({ subnet: '10.0.0.0/29', rangeStart: '10.0.0.0', rangeEnd: '10.0.0.7', gateway: '10.0.0.3' }),
      '1.1.0',
    );
    const taken = new Set<bigint>();
    const got: string[] = [];
    for (;;) {
      const n = nextFree(set, taken, got.length ? ip(got[got.length - 1]) : undefined);
      if (!n) break;
      got.push(formatIP(n.ip));
      taken.add(n.ip.value);
    }
    expect(got).toEqual(['10.0.0.1', '10.0.0.2', '10.0.0.4', '10.0.0.5', '10.0.0.6']);
    expect(freeCount(set, taken)).toBe(0n);
  });

  it.each([
    [{ subnet: '10.0.0.0/31' }, 'ipam.subnet'],
    [{ subnet: 'nope' }, 'ipam.subnet'],
    [{ subnet: '10.0.0.0/24', gateway: '10.0.1.1' }, 'ipam.gateway'],
    [{ subnet: '10.0.0.0/24', rangeStart: '10.0.1.1' }, 'ipam.rangeStart'],
    [{ subnet: '10.0.0.0/24', rangeEnd: 'fd00::1' }, 'ipam.rangeEnd'],
    [{ subnet: '10.0.0.0/24', rangeStart: '10.0.0.50', rangeEnd: '10.0.0.40' }, 'ipam.rangeEnd'],
    [{ rangeStart: '10.0.0.5' }, 'ipam.rangeStart'],
    [{}, 'ipam.ranges'],
    [{ ranges: [[{ subnet: '10.0.0.0/24' }, { subnet: 'fd00::/64' }]] }, 'ipam.ranges[0][1].subnet'],
    [{ ranges: [[{ subnet: '10.0.0.0/24' }, { subnet: '10.0.0.0/25' }]] }, 'ipam.ranges[0][1]'],
    [{ ranges: [[{ subnet: '10.0.0.0/24' }], [{ subnet: '10.0.0.128/25' }]] }, 'ipam.ranges[1]'],
    [{ ranges: [[]] }, 'ipam.ranges[0]'],
  ])('refuses %j naming %s (code 7)', (ipam, field) => {
    const [code, msg] = codeOf(() => parseRangeSets(conf(ipam), '1.1.0'));
    expect(code).toBe(7);
    expect(msg).toContain(`${field}:`);
  });

  it('allows disjoint ranges of one subnet in one set, and one address per family before 0.3.0', () => {
    expect(
      parseRangeSets(
        conf({
          ranges: [
            [
              { subnet: '10.0.0.0/24', rangeEnd: '10.0.0.99' },
              { subnet: '10.0.0.0/24', rangeStart: '10.0.0.100' },
            ],
          ],
        }),
        '1.1.0',
      ),
    ).toHaveLength(1);
    expect(
      codeOf(() => parseRangeSets(conf({ ranges: [[{ subnet: '10.0.0.0/24' }], [{ subnet: '10.1.0.0/24' }]] }), '0.2.0'))[1],
    ).toContain('cniVersion');
    expect(parseRangeSets(conf({ ranges: [[{ subnet: '10.0.0.0/24' }], [{ subnet: 'fd00::/64' }]] }), '0.2.0')).toHaveLength(2);
    const sets = parseRangeSets(
      conf(
        { subnet: '10.2.0.0/24', ranges: [[{ subnet: '10.0.0.0/24' }]] },
        { runtimeConfig: { ipRanges: [[{ subnet: '10.9.0.0/24' }]] } },
      ),
      '1.1.0',
    );
    expect(sets.map((s) => s[0].field)).toEqual(['runtimeConfig.ipRanges[0][0]', 'ipam', 'ipam.ranges[0][0]']);
  });
});

describe('host-local requested addresses', () => {
  const sets = parseRangeSets(conf({ ranges: [[{ subnet: '10.0.0.0/24' }], [{ subnet: 'fd00::/64' }]] }), '1.1.0');
  it('reads args.cni.ips, runtimeConfig.ips and CNI_ARGS IP, as the conventions say', () => {
    const c = conf({}, { args: { cni: { ips: ['10.0.0.5'] } }, runtimeConfig: { ips: ['fd00::5/64', '10.0.0.5/24'] } });
    const r = requestedIPs(c, new Map([['IP', '10.0.0.9']]));
    expect(r.map((x) => `${formatIP(x.ip)} ${x.source}`)).toEqual(['10.0.0.5 args.cni.ips[0]', 'fd00::5 runtimeConfig.ips[0]']);
    expect(requestedIPs(conf({}), new Map([['IP', '10.0.0.9,fd00::9']]))).toHaveLength(2);
    const m = assignRequested(sets, r);
    expect([...m.keys()]).toEqual([0, 1]);
  });
  it('refuses addresses outside the ranges, network, gateway, two per set', () => {
    const req = (s: string, source = 'runtimeConfig.ips[0]') => [{ ip: ip(s), source }];
    expect(codeOf(() => assignRequested(sets, req('10.9.0.5')))).toEqual([7, expect.stringContaining('runtimeConfig.ips[0]')]);
    expect(codeOf(() => assignRequested(sets, req('10.9.0.5', 'CNI_ARGS IP')))[0]).toBe(4);
    expect(codeOf(() => assignRequested(sets, req('10.0.0.1')))[0]).toBe(102);
    expect(codeOf(() => assignRequested(sets, req('10.0.0.255')))[0]).toBe(7);
    expect(codeOf(() => assignRequested(sets, [...req('10.0.0.5'), ...req('10.0.0.6', 'args.cni.ips[0]')]))[1]).toContain(
      'args.cni.ips[0]',
    );
    expect(codeOf(() => requestedIPs(conf({}, { args: { cni: { ips: ['x'] } } }), new Map()))).toEqual([
      7,
      expect.stringContaining('args.cni.ips[0]'),
    ]);
  });
});

describe('host-local store paths and files', () => {
  it('keeps the store inside dataDir', () => {
    expect(storeDir(conf({ dataDir: '/var/lib/x' }))).toBe('/var/lib/x/n');
    expect(storeDir({ ...conf({}), name: 'a..b' })).toBe('/var/lib/cni/networks/a..b');
    for (const name of ['..', '../x', 'a/b', 'a\0b', '.hidden', '']) expect(codeOf(() => storeDir({ ...conf({}), name }))[0]).toBe(7);
    for (const dataDir of ['rel/dir', '/var/lib/../../etc', '/x\0y'])
      expect(codeOf(() => storeDir(conf({ dataDir })))).toEqual([7, expect.stringContaining('ipam.dataDir')]);
  });
  it('reads and writes the reference format', () => {
    expect(formatOwner('abc', 'eth0')).toBe('abc\r\neth0');
    expect(parseOwner('abc\r\neth0')).toEqual({ containerId: 'abc', ifname: 'eth0' });
    expect(parseOwner('abc\n')).toEqual({ containerId: 'abc' });
    expect(parseOwner('')).toBeUndefined();
    const r = { ip: ip('10.0.0.2'), name: '10.0.0.2', owner: { containerId: 'abc' } };
    expect(ownedBy(r, 'abc', 'eth0')).toBe(false);
    expect(ownedBy(r, 'abc', 'eth0', true)).toBe(true);
  });
  it('names IPv6 files in the canonical form Go uses', () => {
    expect(formatIP(ip('2001:0db8:0000:0001:0000:0000:0000:0001'))).toBe('2001:db8:0:1::1');
    expect(formatIP(ip('FD00:0:0:0:1:0:0:0'))).toBe('fd00::1:0:0:0');
    expect(formatIP(ip('2001:db8:0:0:1:0:0:1'))).toBe('2001:db8::1:0:0:1');
    expect(formatIP(ip('2001:db8:1:0:1:1:1:1'))).toBe('2001:db8:1:0:1:1:1:1');
  });
});

describe('host-local resolv.conf', () => {
  it('parses nameserver, domain, search, options; skips comments', () => {
    const text =
      '# c\n; c\nnameserver 10.0.0.53\nnameserver fd00::53\ndomain example.test\nsearch a.test b.test\noptions ndots:2 edns0\nbogus\n';
    expect(parseResolvConf(text)).toEqual({
      nameservers: ['10.0.0.53', 'fd00::53'],
      domain: 'example.test',
      search: ['a.test', 'b.test'],
      options: ['ndots:2', 'edns0'],
    });
  });
});
