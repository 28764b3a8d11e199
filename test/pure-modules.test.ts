/**
 * Unit tests of the pure modules StrykerJS mutates (`make mutate`, stryker.config.mjs): each
 * pins a behaviour a surviving mutant showed untested. Pure functions only: no executables, no
 * kernel, no files.
 */
import { describe, expect, it } from 'vitest';
import { CniError } from '../shared/cni/errors.ts';
import { cloneResult, parseResult, renderResult } from '../shared/cni/result.ts';
import type { ErrorObject } from 'ajv';
import { prepareValidators, usePrecompiled, validate } from '../shared/cni/validate.ts';
import { COMMANDS, ID_PATTERN, parseCniArgs, parseCommand, parseEnv, validIfname } from '../shared/cni/env.ts';
import { cidr, ifname, ip, ipv4, ipv6, mac } from '../shared/cni/formats.ts';
import { canonicalizeKeys, canonicalizeListKeys } from '../shared/cni/keys.ts';
import { atLeast, compareVersions, isSupported, LATEST, negotiate, parseSemver, SUPPORTED_VERSIONS } from '../shared/cni/version.ts';
import {
  bitsOf,
  canonicalCIDR,
  canonicalIP,
  contains,
  familyOf,
  firstHost,
  formatCIDR,
  formatIP,
  ipEqual,
  lastAddr,
  maskString,
  mustCIDR,
  network,
  networkAddr,
  overlaps,
  parseCIDR,
  parseIP,
  size,
  type IPNet,
} from '../shared/ipnet.ts';
import { needsVlanFiltering, resolveSettings, trunkRanges, type BridgeConf, type BridgeSettings } from '../plugins/bridge/config.ts';
import {
  allocatable,
  allocationOrder,
  capacity,
  defaults,
  describeRange,
  describeRangeSet,
  familyOfSet,
  freeCount,
  inRange,
  isNetworkOrBroadcast,
  maxPrefix,
  nextFree,
  rangeFor,
  rangeSetContains,
  rangesOverlap,
  rangeSetsOverlap,
  type Range,
} from '../ipam/host-local/range.ts';
import {
  assignRequested,
  DEFAULT_DATA_DIR,
  parseRange,
  parseRangeSet,
  parseRangeSets,
  requestedIPs,
  storeDir,
  type HostLocalConf,
  type RangeConf,
} from '../ipam/host-local/config.ts';
import { CONTAINER_INDEX, defaultGateway, pickDns, planAdd } from '../plugins/bridge/plan.ts';

/** The CniError `fn` throws (fails the test when it throws nothing or something else). */
function cniError(fn: () => unknown): CniError {
  try {
    fn();
  } catch (e) {
    if (e instanceof CniError) return e;
    throw e;
  }
  throw new Error('expected a CniError');
}
const net = (s: string): IPNet => parseCIDR(s)!;

describe('version', () => {
  it('parses x.y.z only', () => {
    expect(parseSemver('1.2.3')).toEqual([1, 2, 3]);
    expect(parseSemver('10.20.30')).toEqual([10, 20, 30]);
    for (const bad of ['1.2', '1.2.3.4', 'v1.2.3', '1.2.3-rc1', ' 1.2.3', '1.2.3 ', 'a.b.c', '']) expect(parseSemver(bad), bad).toBeNull();
  });
  it('compares each component numerically; non-semver sorts lowest', () => {
    expect(compareVersions('0.10.0', '0.9.0')).toBeGreaterThan(0);
    expect(compareVersions('0.9.0', '0.10.0')).toBeLessThan(0);
    expect(compareVersions('1.0.1', '1.0.0')).toBe(1);
    expect(compareVersions('1.1.0', '1.0.9')).toBe(1);
    expect(compareVersions('2.0.0', '1.9.9')).toBe(1);
    expect(compareVersions('0.4.0', '0.4.0')).toBe(0);
    expect(compareVersions('junk', '0.0.0')).toBeLessThan(0);
    expect(compareVersions('0.0.0', 'junk')).toBeGreaterThan(0);
    expect(compareVersions('junk', 'other')).toBe(0);
  });
  it('atLeast is >=', () => {
    expect(atLeast('0.4.0', '0.4.0')).toBe(true);
    expect(atLeast('1.0.0', '0.4.0')).toBe(true);
    expect(atLeast('0.3.1', '0.4.0')).toBe(false);
  });
  it('knows exactly the supported versions', () => {
    expect([...SUPPORTED_VERSIONS]).toEqual(['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
    expect(LATEST).toBe('1.1.0');
    for (const v of SUPPORTED_VERSIONS) expect(isSupported(v)).toBe(true);
    for (const v of ['0.5.0', '1.2.0', 1, undefined, null, '']) expect(isSupported(v)).toBe(false);
  });
  it('negotiates: cniVersion when supported, else the highest supported of cniVersions; none is 0.1.0', () => {
    expect(negotiate('0.3.1')).toBe('0.3.1');
    expect(negotiate(undefined)).toBe('0.1.0');
    expect(negotiate('')).toBe('0.1.0');
    expect(negotiate('9.9.9', ['0.4.0', '1.0.0', '9.9.9', '0.3.1'])).toBe('1.0.0');
    expect(negotiate('9.9.9', ['1.0.0', '0.4.0'])).toBe('1.0.0');
    expect(negotiate('1.0.0', ['0.4.0'])).toBe('1.0.0');
    const none = cniError(() => negotiate('9.9.9', ['8.0.0']));
    expect(none.code).toBe(1);
    expect(none.details).toContain('"9.9.9"');
    expect(none.details).toContain('cniVersions ["8.0.0"]');
    expect(cniError(() => negotiate('9.9.9', 'not a list')).details).not.toContain('cniVersions');
    const notString = cniError(() => negotiate(4));
    expect(notString.code).toBe(6);
    expect(notString.details).toBe('got 4');
  });
});

describe('keys (Go runtimes spell keys case-insensitively)', () => {
  it('renames the named keys to their canonical spelling, leaving others alone', () => {
    const o: Record<string, unknown> = { HostPort: 1, CONTAINERPORT: 2, protocol: 'tcp', Other: 3 };
    canonicalizeKeys(o, ['hostPort', 'containerPort', 'protocol']);
    expect(o).toEqual({ hostPort: 1, containerPort: 2, protocol: 'tcp', Other: 3 });
  });
  it('never overwrites a key already spelled canonically; the other spelling is dropped', () => {
    const o: Record<string, unknown> = { hostPort: 1, HostPort: 2 };
    canonicalizeKeys(o, ['hostPort']);
    expect(o).toEqual({ hostPort: 1 });
  });
  it('ignores non-objects and arrays; the list form applies to every item', () => {
    expect(() => canonicalizeKeys(null, ['a'])).not.toThrow();
    expect(() => canonicalizeKeys('x', ['a'])).not.toThrow();
    const arr = [{ A: 1 }];
    canonicalizeKeys(arr, ['a']);
    expect(arr).toEqual([{ A: 1 }]);
    const list = [{ A: 1 }, { a: 2 }, 'x'];
    canonicalizeListKeys(list, ['a']);
    expect(list).toEqual([{ a: 1 }, { a: 2 }, 'x']);
    const notList = { A: 1 };
    canonicalizeListKeys(notList, ['a']);
    expect(notList).toEqual({ A: 1 });
  });
});

describe('environment', () => {
  const add = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0' };
  it('knows the verbs; anything else is code 4 naming CNI_COMMAND', () => {
    expect([...COMMANDS]).toEqual(['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION']);
    for (const c of COMMANDS) expect(parseCommand(c)).toBe(c);
    for (const bad of [undefined, '', 'add', 'NOPE']) {
      const e = cniError(() => parseCommand(bad));
      expect(e.code).toBe(4);
      expect(e.message).toBe(`unknown CNI_COMMAND "${bad ?? ''}"`);
      expect(e.details).toBe('CNI_COMMAND must be one of ADD, DEL, CHECK, GC, STATUS, VERSION');
    }
  });
  it('CNI_ARGS: KEY=VALUE pairs split on ";", "=" allowed in values, empty pairs skipped', () => {
    expect(parseCniArgs(undefined).size).toBe(0);
    expect(parseCniArgs('').size).toBe(0);
    expect([...parseCniArgs('A=1;;B=x=y;C=')]).toEqual([
      ['A', '1'],
      ['B', 'x=y'],
      ['C', ''],
    ]);
    for (const bad of ['novalue', '=v', 'A=1;x']) {
      const e = cniError(() => parseCniArgs(bad));
      expect(e.code).toBe(4);
      expect(e.message).toBe('invalid CNI_ARGS');
      expect(e.details).toMatch(/^CNI_ARGS: pair ".*" is not KEY=VALUE$/);
    }
  });
  it('names every missing variable of the verb', () => {
    const e = cniError(() => parseEnv({ CNI_COMMAND: 'ADD' }));
    expect(e.code).toBe(4);
    expect(e.message).toBe('required environment variables missing: CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME');
    expect(e.details).toBe('CNI_COMMAND=ADD needs CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME');
    expect(cniError(() => parseEnv({ CNI_COMMAND: 'CHECK', CNI_CONTAINERID: 'c', CNI_IFNAME: 'e' })).message).toContain('CNI_NETNS');
    expect(cniError(() => parseEnv({ CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'c' })).message).toBe(
      'required environment variables missing: CNI_IFNAME',
    );
    expect(cniError(() => parseEnv({ CNI_COMMAND: 'GC' })).message).toBe('required environment variables missing: CNI_PATH');
    expect(parseEnv({ CNI_COMMAND: 'VERSION' })).toEqual({
      command: 'VERSION',
      containerId: '',
      netns: '',
      ifname: '',
      args: new Map(),
      path: [],
    });
  });
  it('reads what the verb takes, and only that', () => {
    const env = parseEnv({ ...add, CNI_ARGS: 'IgnoreUnknown=1', CNI_PATH: '/a::/b' });
    expect(env).toEqual({
      command: 'ADD',
      containerId: 'c1',
      netns: '/run/netns/x',
      ifname: 'eth0',
      args: new Map([['IgnoreUnknown', '1']]),
      path: ['/a', '/b'],
    });
    // GC and STATUS take no container, netns, ifname or CNI_ARGS, even when set
    const gc = parseEnv({ ...add, CNI_COMMAND: 'GC', CNI_PATH: '/p', CNI_ARGS: 'broken' });
    expect(gc).toEqual({ command: 'GC', containerId: '', netns: '', ifname: '', args: new Map(), path: ['/p'] });
    expect(parseEnv({ CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'c', CNI_IFNAME: 'eth0', CNI_NETNS: '' }).netns).toBe('');
  });
  it('checks the container ID, interface name and netns path (code 4 naming the variable)', () => {
    const cases: Array<[Record<string, string>, string, string]> = [
      [{ CNI_CONTAINERID: '-x' }, 'invalid CNI_CONTAINERID', `CNI_CONTAINERID must match ${ID_PATTERN.source}`],
      [{ CNI_CONTAINERID: 'a/b' }, 'invalid CNI_CONTAINERID', `CNI_CONTAINERID must match ${ID_PATTERN.source}`],
      [{ CNI_IFNAME: 'eth:0' }, 'invalid CNI_IFNAME', 'CNI_IFNAME "eth:0" is not a valid Linux interface name'],
      [{ CNI_NETNS: 'run/netns/x' }, 'invalid CNI_NETNS', 'CNI_NETNS must be an absolute path'],
      [{ CNI_NETNS: '/run/netns/x\0y' }, 'invalid CNI_NETNS', 'CNI_NETNS must be an absolute path'],
    ];
    for (const [over, msg, details] of cases) {
      for (const command of ['ADD', 'CHECK', 'DEL']) {
        const e = cniError(() => parseEnv({ ...add, CNI_COMMAND: command, ...over }));
        expect(e.code).toBe(4);
        expect(e.message).toBe(msg);
        expect(e.details).toBe(details);
      }
    }
    expect(ID_PATTERN.test('a')).toBe(true);
    expect(ID_PATTERN.test('A0_.-z')).toBe(true);
    for (const bad of ['', '_a', '.a', 'a b', 'a:b']) expect(ID_PATTERN.test(bad), bad).toBe(false);
  });
});

describe('formats (schema formats and CNI_IFNAME)', () => {
  it('ifname: 1..15 characters, no "/", ":" or white space, not "." or ".."', () => {
    for (const good of ['e', 'eth0', 'x'.repeat(15), 'a.b', 'veth-1_2', '...']) expect(ifname(good), good).toBe(true);
    for (const bad of ['', 'x'.repeat(16), '.', '..', 'a/b', 'a:b', 'a b', 'a\tb', 'a\nb'])
      expect(ifname(bad), JSON.stringify(bad)).toBe(false);
    expect(validIfname).toBe(ifname);
  });
  it('ip, ipv4, ipv6, cidr', () => {
    expect([ip('10.0.0.1'), ip('fd00::1'), ip('10.0.0.1/8'), ip('x')]).toEqual([true, true, false, false]);
    expect([ipv4('10.0.0.1'), ipv4('fd00::1'), ipv4('x')]).toEqual([true, false, false]);
    expect([ipv6('fd00::1'), ipv6('10.0.0.1'), ipv6('x')]).toEqual([true, false, false]);
    expect([cidr('10.0.0.0/8'), cidr('fd00::/64'), cidr('10.0.0.1'), cidr('10.0.0.0/33')]).toEqual([true, true, false, false]);
  });
  it('mac: six colon-separated hex pairs, either case', () => {
    for (const good of ['02:00:00:00:00:01', 'AA:bb:CC:dd:EE:ff']) expect(mac(good), good).toBe(true);
    for (const bad of [
      '02:00:00:00:00',
      '02:00:00:00:00:01:02',
      '02-00-00-00-00-01',
      'g2:00:00:00:00:01',
      ' 02:00:00:00:00:01',
      '02:00:00:00:00:01 ',
      '0200.0000.0001',
    ])
      expect(mac(bad), bad).toBe(false);
  });
});

describe('ipnet', () => {
  it('parses addresses strictly', () => {
    expect(parseIP('10.1.2.3')).toEqual({ family: 4, value: 0x0a010203n });
    expect(parseIP('::1')).toEqual({ family: 6, value: 1n });
    expect(parseIP('::ffff:10.1.2.3')?.family).toBe(6);
    for (const bad of ['10.1.2', '10.1.2.3/24', 'fe80::1%eth0', '256.1.1.1', 'x', '', '10.1.2.3.4', '1'])
      expect(parseIP(bad), bad).toBeNull();
    expect(parseIP(7 as unknown as string)).toBeNull();
  });
  it('parses CIDRs: prefix 0..bits, decimal, at most three digits', () => {
    expect(parseCIDR('10.1.2.3/24')).toEqual({ family: 4, value: 0x0a010203n, prefix: 24 });
    expect(parseCIDR('10.1.2.3/0')?.prefix).toBe(0);
    expect(parseCIDR('10.1.2.3/32')?.prefix).toBe(32);
    expect(parseCIDR('fd00::/128')?.prefix).toBe(128);
    for (const bad of [
      '10.1.2.3',
      '10.1.2.3/33',
      'fd00::/129',
      '10.1.2.3/',
      '10.1.2.3/x',
      '10.1.2.3/0024',
      '10.1.2.3/-1',
      'x/24',
      '/24',
      '10.1.2.3/ 24',
    ])
      expect(parseCIDR(bad), bad).toBeNull();
    expect(parseCIDR(undefined as unknown as string)).toBeNull();
    expect(mustCIDR('10.0.0.0/8', 'f').prefix).toBe(8);
    expect(() => mustCIDR('nope', 'ipam.subnet')).toThrow('ipam.subnet: "nope" is not a CIDR');
  });
  it('network arithmetic', () => {
    const n = net('10.1.2.77/24');
    expect(bitsOf(4)).toBe(32);
    expect(bitsOf(6)).toBe(128);
    expect(formatIP({ family: 4, value: networkAddr(n) })).toBe('10.1.2.0');
    expect(formatIP({ family: 4, value: lastAddr(n) })).toBe('10.1.2.255');
    expect(size(n)).toBe(256n);
    expect(size(net('10.0.0.0/32'))).toBe(1n);
    expect(size(net('fd00::/64'))).toBe(1n << 64n);
    expect(formatCIDR(network(n))).toBe('10.1.2.0/24');
    expect(formatCIDR(n)).toBe('10.1.2.77/24');
    expect(formatCIDR(network(net('fd00:1:2:3:4::9/64')))).toBe('fd00:1:2:3::/64');
  });
  it('contains and overlaps respect family and prefix', () => {
    const n = net('10.1.2.0/24');
    expect(contains(n, parseIP('10.1.2.255')!)).toBe(true);
    expect(contains(n, parseIP('10.1.3.0')!)).toBe(false);
    expect(contains(n, parseIP('10.1.1.255')!)).toBe(false);
    expect(contains(net('::/0'), parseIP('10.1.2.3')!)).toBe(false);
    expect(contains(net('0.0.0.0/0'), parseIP('10.1.2.3')!)).toBe(true);
    expect(overlaps(net('10.0.0.0/8'), n)).toBe(true);
    expect(overlaps(n, net('10.0.0.0/8'))).toBe(true);
    expect(overlaps(n, net('10.1.3.0/24'))).toBe(false);
    expect(overlaps(n, n)).toBe(true);
    expect(overlaps(net('0.0.0.0/0'), net('::/0'))).toBe(false);
  });
  it('formats canonically; compares by family and value', () => {
    expect(formatIP(parseIP('2001:DB8:0:0::1')!)).toBe('2001:db8::1');
    expect(canonicalIP('2001:0db8::0001')).toBe('2001:db8::1');
    expect(canonicalIP('x')).toBeNull();
    expect(canonicalCIDR('2001:DB8::1/64')).toBe('2001:db8::1/64');
    expect(canonicalCIDR('x')).toBeNull();
    expect(ipEqual(parseIP('10.0.0.1')!, parseIP('10.0.0.1')!)).toBe(true);
    expect(ipEqual(parseIP('10.0.0.1')!, parseIP('10.0.0.2')!)).toBe(false);
    expect(ipEqual({ family: 4, value: 1n }, { family: 6, value: 1n })).toBe(false);
    expect(familyOf('fd00::1')).toBe(6);
    expect(familyOf('10.0.0.1')).toBe(4);
  });
  it('firstHost: .1 (::1), or the address itself for /31, /32, /127, /128', () => {
    expect(formatIP(firstHost(net('10.1.2.0/24')))).toBe('10.1.2.1');
    expect(formatIP(firstHost(net('10.1.2.9/30')))).toBe('10.1.2.9');
    expect(formatIP(firstHost(net('10.1.2.8/31')))).toBe('10.1.2.8');
    expect(formatIP(firstHost(net('10.1.2.8/32')))).toBe('10.1.2.8');
    expect(formatIP(firstHost(net('fd00::/64')))).toBe('fd00::1');
    expect(formatIP(firstHost(net('fd00::/127')))).toBe('fd00::');
    expect(firstHost(net('fd00::/64')).family).toBe(6);
  });
  it('maskString', () => {
    expect(maskString(net('10.0.0.0/24'))).toBe('255.255.255.0');
    expect(maskString(net('10.0.0.0/0'))).toBe('0.0.0.0');
    expect(maskString(net('10.0.0.0/32'))).toBe('255.255.255.255');
    expect(maskString(net('fd00::/64'))).toBe('ffff:ffff:ffff:ffff::');
  });
});

describe('bridge settings', () => {
  const env = (args: Record<string, string> = {}) => ({ args: new Map(Object.entries(args)) });
  const base = { cniVersion: '1.1.0', name: 'n', type: 'bridge' } as BridgeConf;
  it('defaults', () => {
    expect(resolveSettings(base, env())).toEqual({
      bridge: 'cni0',
      isGateway: false,
      isDefaultGateway: false,
      forceAddress: false,
      ipMasq: false,
      masqBackend: 'nftables',
      mtu: undefined,
      hairpinMode: false,
      promiscMode: false,
      macspoofchk: false,
      enableDad: false,
      disableContainerInterface: false,
      portIsolation: false,
      vlan: 0,
      vlanTrunk: [],
      preserveDefaultVlan: true,
      nftTable: 'cni_bridge',
      iptablesChain: 'CNI-BRIDGE-MASQ',
      mac: undefined,
      layer3: false,
    });
  });
  it('every switch, and isDefaultGateway implies isGateway', () => {
    const c = {
      ...base,
      bridge: 'br9',
      isDefaultGateway: true,
      forceAddress: true,
      ipMasq: true,
      ipMasqBackend: 'iptables',
      mtu: 1400,
      hairpinMode: true,
      promiscMode: true,
      macspoofchk: true,
      enabledad: true,
      disableContainerInterface: true,
      portIsolation: true,
      vlan: 7,
      vlanTrunk: [{ id: 9 }],
      preserveDefaultVlan: false,
      nftTable: 't',
      iptablesChain: 'C',
      ipam: { type: 'host-local' },
    } as unknown as BridgeConf;
    expect(resolveSettings(c, env())).toEqual({
      bridge: 'br9',
      isGateway: true,
      isDefaultGateway: true,
      forceAddress: true,
      ipMasq: true,
      masqBackend: 'iptables',
      mtu: 1400,
      hairpinMode: true,
      promiscMode: true,
      macspoofchk: true,
      enableDad: true,
      disableContainerInterface: true,
      portIsolation: true,
      vlan: 7,
      vlanTrunk: [[9, 9]],
      preserveDefaultVlan: false,
      nftTable: 't',
      iptablesChain: 'C',
      mac: undefined,
      layer3: true,
    });
    expect(resolveSettings({ ...base, isGateway: true } as BridgeConf, env()).isDefaultGateway).toBe(false);
    expect(resolveSettings({ ...base, isGateway: true } as BridgeConf, env()).isGateway).toBe(true);
    // only `true` switches on (truthy strings do not)
    const truthy = { ...base, isGateway: 'yes', ipMasq: 1, hairpinMode: 'true' } as unknown as BridgeConf;
    expect(resolveSettings(truthy, env())).toMatchObject({ isGateway: false, ipMasq: false, hairpinMode: false });
  });
  it('MAC: runtimeConfig.mac, then args.cni.mac, then CNI_ARGS MAC, lower-cased; malformed or multicast is code 7', () => {
    const all = {
      ...base,
      runtimeConfig: { mac: '02:AA:00:00:00:01' },
      args: { cni: { mac: '02:bb:00:00:00:02' } },
    } as unknown as BridgeConf;
    expect(resolveSettings(all, env({ MAC: '02:cc:00:00:00:03' })).mac).toBe('02:aa:00:00:00:01');
    expect(resolveSettings({ ...all, runtimeConfig: {} } as BridgeConf, env({ MAC: '02:cc:00:00:00:03' })).mac).toBe('02:bb:00:00:00:02');
    expect(resolveSettings(base, env({ MAC: '02:CC:00:00:00:03' })).mac).toBe('02:cc:00:00:00:03');
    expect(resolveSettings(base, env({ MAC: '' })).mac).toBeUndefined();
    const bad = (mac: unknown, where: 'runtime' | 'args' | 'env') => {
      const c =
        where === 'runtime'
          ? ({ ...base, runtimeConfig: { mac } } as unknown as BridgeConf)
          : where === 'args'
            ? ({ ...base, args: { cni: { mac } } } as unknown as BridgeConf)
            : base;
      return cniError(() => resolveSettings(c, env(where === 'env' ? { MAC: String(mac) } : {})));
    };
    expect(bad('02:00:00:00:00', 'runtime').message).toBe(
      'invalid network config: runtimeConfig.mac: "02:00:00:00:00" is not a MAC address',
    );
    expect(bad(42, 'args').message).toBe('invalid network config: args.cni.mac: 42 is not a MAC address');
    expect(bad('01:00:00:00:00:01', 'env').message).toBe(
      'invalid network config: CNI_ARGS MAC: 01:00:00:00:00:01 is a multicast MAC address',
    );
    expect(bad('03:00:00:00:00:01', 'runtime').code).toBe(7);
    expect(resolveSettings({ ...base, runtimeConfig: { mac: '02:00:00:00:00:01' } } as unknown as BridgeConf, env()).mac).toBe(
      '02:00:00:00:00:01',
    );
  });
  it('vlanTrunk: id, or minID..maxID', () => {
    expect(trunkRanges([{ id: 5 }, { minID: 10, maxID: 20 }, { minID: 3, maxID: 3 }])).toEqual([
      [5, 5],
      [10, 20],
      [3, 3],
    ]);
    expect(cniError(() => trunkRanges([{ id: 1 }, { id: 5, minID: 1 }])).message).toBe(
      'invalid network config: vlanTrunk[1]: give either id or minID/maxID',
    );
    expect(cniError(() => trunkRanges([{ id: 5, maxID: 9 }])).message).toContain('give either id');
    expect(cniError(() => trunkRanges([{ minID: 1 }])).message).toBe(
      'invalid network config: vlanTrunk[0]: needs id, or both minID and maxID',
    );
    expect(cniError(() => trunkRanges([{ maxID: 1 }])).message).toContain('needs id');
    expect(cniError(() => trunkRanges([{ minID: 9, maxID: 8 }])).message).toBe(
      'invalid network config: vlanTrunk[0]: minID is greater than maxID',
    );
    expect(needsVlanFiltering(resolveSettings(base, env()))).toBe(false);
    expect(needsVlanFiltering(resolveSettings({ ...base, vlan: 3 } as BridgeConf, env()))).toBe(true);
    expect(needsVlanFiltering(resolveSettings({ ...base, vlanTrunk: [{ id: 3 }] } as BridgeConf, env()))).toBe(true);
  });
});

describe('bridge plan', () => {
  const s = (over: Partial<BridgeSettings> = {}): BridgeSettings => ({
    ...resolveSettings({ cniVersion: '1.1.0', name: 'n', type: 'bridge' } as BridgeConf, { args: new Map() }),
    ...over,
  });
  it('without isGateway: no gateway invented, no bridge address, routes as IPAM gave them', () => {
    const p = planAdd({ ips: [{ address: '10.1.2.5/24' }], routes: [{ dst: '10.9.0.0/16' }] }, s());
    expect(p.ips).toEqual([{ address: '10.1.2.5/24', interface: CONTAINER_INDEX }]);
    expect(p.bridgeGateways).toEqual([]);
    expect(p.routes).toEqual([{ dst: '10.9.0.0/16' }]);
    expect(p.containerRoutes).toEqual([
      { dst: '10.9.0.0/16', gw: undefined, mtu: undefined, advmss: undefined, metric: undefined, table: undefined, scope: undefined },
    ]);
    expect(p.containerAddrs).toEqual([{ cidr: '10.1.2.5/24', nodad: true }]);
    expect(p.families).toEqual([4]);
  });
  it('isGateway: the first host is the gateway and goes on the bridge once per subnet; IPAM gateways win', () => {
    const p = planAdd(
      { ips: [{ address: '10.1.2.5/24' }, { address: 'fd00::5/64', gateway: 'fd00::fe' }, { address: '10.1.2.6/24' }] },
      s({ isGateway: true, enableDad: true }),
    );
    expect(p.ips.map((i) => i.gateway)).toEqual(['10.1.2.1', 'fd00::fe', '10.1.2.1']);
    expect(p.bridgeGateways).toEqual(['10.1.2.1/24', 'fd00::fe/64']);
    expect(p.containerAddrs.map((a) => a.nodad)).toEqual([false, false, false]);
    expect(p.families).toEqual([4, 6]);
    expect(defaultGateway('10.1.2.77/24')).toBe('10.1.2.1');
    expect(defaultGateway('fd00::9/64')).toBe('fd00::1');
  });
  it('isDefaultGateway adds a default route per family via its gateway, unless IPAM has one (same gateway ok, another is code 7)', () => {
    const p = planAdd({ ips: [{ address: '10.1.2.5/24' }, { address: 'fd00::5/64' }] }, s({ isGateway: true, isDefaultGateway: true }));
    expect(p.routes).toEqual([
      { dst: '0.0.0.0/0', gw: '10.1.2.1' },
      { dst: '::/0', gw: 'fd00::1' },
    ]);
    expect(p.containerRoutes.map((r) => [r.dst, r.gw])).toEqual([
      ['0.0.0.0/0', '10.1.2.1'],
      ['::/0', 'fd00::1'],
    ]);
    const same = planAdd(
      { ips: [{ address: '10.1.2.5/24' }], routes: [{ dst: '0.0.0.0/0', gw: '10.1.2.1' }] },
      s({ isGateway: true, isDefaultGateway: true }),
    );
    expect(same.routes).toEqual([{ dst: '0.0.0.0/0', gw: '10.1.2.1' }]);
    const noGw = planAdd(
      { ips: [{ address: '10.1.2.5/24' }], routes: [{ dst: '0.0.0.0/0' }] },
      s({ isGateway: true, isDefaultGateway: true }),
    );
    expect(noGw.routes).toEqual([{ dst: '0.0.0.0/0' }]);
    expect(noGw.containerRoutes[0].gw).toBe('10.1.2.1');
    // a default route in another table is not "the" default route
    const other = planAdd(
      { ips: [{ address: '10.1.2.5/24' }], routes: [{ dst: '0.0.0.0/0', gw: '10.1.2.9', table: 100 }] },
      s({ isGateway: true, isDefaultGateway: true }),
    );
    expect(other.routes).toEqual([
      { dst: '0.0.0.0/0', gw: '10.1.2.9', table: 100 },
      { dst: '0.0.0.0/0', gw: '10.1.2.1' },
    ]);
    const e = cniError(() =>
      planAdd(
        { ips: [{ address: '10.1.2.5/24' }], routes: [{ dst: '0.0.0.0/0', gw: '10.1.2.9' }] },
        s({ isGateway: true, isDefaultGateway: true }),
      ),
    );
    expect(e.code).toBe(7);
    expect(e.message).toBe('invalid network config: isDefaultGateway: ineffective because IPAM sets the default route via 10.1.2.9');
  });
  it('route fields become kernel route specs; a route without gw takes its family gateway', () => {
    const p = planAdd(
      {
        ips: [{ address: '10.1.2.5/24', gateway: '10.1.2.254' }],
        routes: [{ dst: '10.9.0.0/16', mtu: 1400, advmss: 1360, priority: 5, table: 7, scope: 253 }, { dst: 'fd09::/64' }],
      },
      s(),
    );
    expect(p.containerRoutes).toEqual([
      { dst: '10.9.0.0/16', gw: '10.1.2.254', mtu: 1400, advmss: 1360, metric: 5, table: 7, scope: 253 },
      { dst: 'fd09::/64', gw: undefined, mtu: undefined, advmss: undefined, metric: undefined, table: undefined, scope: undefined },
    ]);
    expect(planAdd({}, s())).toMatchObject({ ips: [], routes: [], families: [] });
  });
  it('DNS: the config when it sets anything, else IPAM', () => {
    const ipam = { nameservers: ['10.0.0.53'] };
    expect(pickDns(undefined, ipam)).toBe(ipam);
    expect(pickDns({}, ipam)).toBe(ipam);
    expect(pickDns({ nameservers: [] }, ipam)).toBe(ipam);
    for (const conf of [{ nameservers: ['1.1.1.1'] }, { domain: 'd' }, { search: ['s'] }, { options: ['o'] }])
      expect(pickDns(conf, ipam)).toBe(conf);
  });
});

describe('result conversion (every field, every version)', () => {
  const code6 = (raw: unknown, v = '1.0.0'): string => {
    const e = cniError(() => parseResult(raw, v));
    expect(e.code).toBe(6);
    expect(e.message).toBe('failed to decode prevResult');
    return e.details;
  };
  it('refuses what is not a result, naming the part', () => {
    expect(code6(null)).toBe('prevResult must be an object');
    expect(code6([])).toBe('prevResult must be an object');
    expect(code6('x')).toBe('prevResult must be an object');
    expect(code6({ interfaces: {} })).toBe('interfaces must be a list');
    expect(code6({ interfaces: [{}] })).toBe('interfaces[].name must be a string');
    expect(code6({ interfaces: [null] })).toBe('interfaces[].name must be a string');
    expect(code6({ ips: {} })).toBe('ips must be a list');
    expect(code6({ ips: [{ address: 5 }] })).toBe('ips[].address must be a CIDR string');
    expect(code6({ ips: [null] })).toBe('ips[].address must be a CIDR string');
    expect(code6({ routes: {} })).toBe('routes must be a list');
    expect(code6({ routes: [{ gw: '10.0.0.1' }] })).toBe('routes[].dst must be a CIDR string');
    expect(code6({ routes: [null] })).toBe('routes[].dst must be a CIDR string');
    expect(code6({ ip4: { ip: 5 } }, '0.2.0')).toBe('ip4.ip must be a CIDR string');
    expect(code6({ ip6: {} }, '0.1.0')).toBe('ip6.ip must be a CIDR string');
  });
  it("parses the legacy shape by the result's own cniVersion (else the config's)", () => {
    const legacy = {
      ip4: { ip: '10.0.0.2/24', gateway: '10.0.0.1', routes: [{ dst: '0.0.0.0/0', gw: '10.0.0.1' }] },
      ip6: { ip: 'fd00::2/64', routes: [{ dst: '::/0' }] },
      dns: { nameservers: ['10.0.0.53'] },
    };
    const want = {
      ips: [{ address: '10.0.0.2/24', gateway: '10.0.0.1' }, { address: 'fd00::2/64' }],
      routes: [{ dst: '0.0.0.0/0', gw: '10.0.0.1' }, { dst: '::/0' }],
      dns: { nameservers: ['10.0.0.53'] },
    };
    expect(parseResult(legacy, '0.2.0')).toEqual(want);
    expect(parseResult({ ...legacy, cniVersion: '0.1.0' }, '1.0.0')).toEqual(want);
    expect(parseResult({}, '0.2.0')).toEqual({ ips: [], routes: [] });
    // a 1.0.0 result given to a 0.2.0 config is read as 1.0.0
    expect(parseResult({ cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/24' }] }, '0.2.0')).toEqual({ ips: [{ address: '10.0.0.2/24' }] });
  });
  it('keeps only known fields of known types', () => {
    const raw = {
      cniVersion: '1.1.0',
      interfaces: [
        { name: 'a', mac: '02:00:00:00:00:01', mtu: 1400, sandbox: '/x', socketPath: '/s', pciID: 'p', extra: 1 },
        { name: 'b', mac: '', mtu: 0, sandbox: '' },
        { name: 'c', mtu: '9000' },
      ],
      ips: [
        { address: '10.0.0.2/24', gateway: '10.0.0.1', interface: 0, version: '4' },
        { address: '10.0.0.3/24', gateway: '', interface: '1' },
      ],
      routes: [
        { dst: '10.9.0.0/16', gw: '10.0.0.1', mtu: 1, advmss: 2, priority: 3, table: 4, scope: 5, extra: 6 },
        { dst: '10.8.0.0/16', gw: '', mtu: '1' },
      ],
      dns: { nameservers: [], domain: '', search: [], options: [] },
    };
    expect(parseResult(raw, '1.1.0')).toEqual({
      interfaces: [
        { name: 'a', mac: '02:00:00:00:00:01', mtu: 1400, sandbox: '/x', socketPath: '/s', pciID: 'p' },
        { name: 'b' },
        { name: 'c' },
      ],
      ips: [{ address: '10.0.0.2/24', gateway: '10.0.0.1', interface: 0 }, { address: '10.0.0.3/24' }],
      routes: [{ dst: '10.9.0.0/16', gw: '10.0.0.1', mtu: 1, advmss: 2, priority: 3, table: 4, scope: 5 }, { dst: '10.8.0.0/16' }],
    });
    expect(parseResult({ dns: { nameservers: ['1.1.1.1'], domain: 'd', search: ['s'], options: ['o'] } }, '1.0.0').dns).toEqual({
      nameservers: ['1.1.1.1'],
      domain: 'd',
      search: ['s'],
      options: ['o'],
    });
    expect(parseResult({ dns: 'x' }, '1.0.0').dns).toBeUndefined();
    expect(parseResult({}, '1.0.0')).toEqual({});
  });
  it('renders the legacy shape: first address per family, routes split by family, dns always', () => {
    const res = {
      ips: [{ address: 'fd00::2/64' }, { address: '10.0.0.2/24' }, { address: '10.0.0.3/24' }],
      routes: [{ dst: '::/0', gw: 'fd00::1', mtu: 9 }],
    };
    expect(renderResult(res, '0.2.0')).toEqual({
      cniVersion: '0.2.0',
      ip4: { ip: '10.0.0.2/24' },
      ip6: { ip: 'fd00::2/64', routes: [{ dst: '::/0', gw: 'fd00::1' }] },
      dns: {},
    });
    expect(renderResult({}, '0.1.0')).toEqual({ cniVersion: '0.1.0', dns: {} });
  });
  it('renders 0.3.x-1.1.0: version field before 1.0.0, 1.1.0 fields only in 1.1.0, empty lists omitted', () => {
    const res = {
      interfaces: [
        { name: 'a', mac: 'm', mtu: 1400, sandbox: '/x', socketPath: '/s', pciID: 'p' },
        { name: 'b', sandbox: '' },
      ],
      ips: [{ address: '10.0.0.2/24', gateway: '10.0.0.1', interface: 0 }, { address: 'fd00::2/64' }],
      routes: [{ dst: '10.9.0.0/16', gw: '10.0.0.1', mtu: 1, priority: 3 }, { dst: '::/0' }],
      dns: { nameservers: ['10.0.0.53'] },
    };
    expect(renderResult(res, '1.1.0')).toEqual({ cniVersion: '1.1.0', ...res, interfaces: [res.interfaces[0], { name: 'b' }] });
    expect(renderResult(res, '1.0.0')).toEqual({
      cniVersion: '1.0.0',
      interfaces: [{ name: 'a', mac: 'm', sandbox: '/x' }, { name: 'b' }],
      ips: [{ address: '10.0.0.2/24', gateway: '10.0.0.1', interface: 0 }, { address: 'fd00::2/64' }],
      routes: [{ dst: '10.9.0.0/16', gw: '10.0.0.1' }, { dst: '::/0' }],
      dns: { nameservers: ['10.0.0.53'] },
    });
    expect(renderResult(res, '0.3.0').ips).toEqual([
      { version: '4', interface: 0, address: '10.0.0.2/24', gateway: '10.0.0.1' },
      { version: '6', address: 'fd00::2/64' },
    ]);
    expect(renderResult({ interfaces: [], ips: [], routes: [] }, '1.0.0')).toEqual({ cniVersion: '1.0.0', dns: {} });
  });
  it('cloneResult copies deeply', () => {
    const r = { ips: [{ address: '10.0.0.2/24' }] };
    const c = cloneResult(r);
    expect(c).toEqual(r);
    c.ips![0].address = 'x';
    expect(r.ips[0].address).toBe('10.0.0.2/24');
    expect(cloneResult(undefined)).toEqual({});
  });
});

describe('host-local ranges (range.ts)', () => {
  const r = (rc: RangeConf): Range => parseRange(rc, 'ipam');
  const v = (s: string): bigint => parseIP(s)!.value;
  it('defaults: network+1 .. broadcast-1 (v4), network+1 .. last (v6); gateway the first host', () => {
    expect(defaults(net('10.1.2.0/24'))).toEqual({ gateway: parseIP('10.1.2.1'), start: v('10.1.2.1'), end: v('10.1.2.254') });
    expect(defaults(net('fd00::/120'))).toEqual({ gateway: parseIP('fd00::1'), start: v('fd00::1'), end: v('fd00::ff') });
    expect(maxPrefix(4)).toBe(30);
    expect(maxPrefix(6)).toBe(126);
  });
  it('inRange is inclusive and same-family; network/broadcast only for v4 broadcast', () => {
    const x = r({ subnet: '10.1.2.0/24', rangeStart: '10.1.2.10', rangeEnd: '10.1.2.20' });
    expect(['10.1.2.9', '10.1.2.10', '10.1.2.20', '10.1.2.21'].map((s) => inRange(x, parseIP(s)!))).toEqual([false, true, true, false]);
    expect(inRange(r({ subnet: 'fd00::/120' }), { family: 4, value: v('fd00::5') })).toBe(false);
    const full = r({ subnet: '10.1.2.0/24', rangeStart: '10.1.2.0', rangeEnd: '10.1.2.255' });
    expect(isNetworkOrBroadcast(full, parseIP('10.1.2.0')!)).toBe(true);
    expect(isNetworkOrBroadcast(full, parseIP('10.1.2.255')!)).toBe(true);
    expect(isNetworkOrBroadcast(full, parseIP('10.1.2.254')!)).toBe(false);
    expect(isNetworkOrBroadcast(full, { family: 6, value: v('10.1.2.0') })).toBe(false);
    const six = r({ subnet: 'fd00::/120' });
    expect(isNetworkOrBroadcast(six, parseIP('fd00::')!)).toBe(true);
    expect(isNetworkOrBroadcast(six, parseIP('fd00::ff')!)).toBe(false);
    expect(allocatable(full, parseIP('10.1.2.1')!)).toBe(false); // gateway
    expect(allocatable(full, parseIP('10.1.2.2')!)).toBe(true);
    expect(allocatable(full, parseIP('10.1.3.2')!)).toBe(false);
  });
  it('capacity excludes gateway, network and v4 broadcast only when inside [start, end]', () => {
    expect(capacity(r({ subnet: '10.1.2.0/24' }))).toBe(253n);
    expect(capacity(r({ subnet: '10.1.2.0/24', rangeStart: '10.1.2.0', rangeEnd: '10.1.2.255' }))).toBe(253n);
    expect(capacity(r({ subnet: '10.1.2.0/24', rangeStart: '10.1.2.10', rangeEnd: '10.1.2.20' }))).toBe(11n);
    expect(capacity(r({ subnet: '10.1.2.0/24', rangeStart: '10.1.2.1', rangeEnd: '10.1.2.1' }))).toBe(0n);
    expect(capacity(r({ subnet: 'fd00::/126' }))).toBe(2n);
    const reserved = new Set([v('10.1.2.10'), v('10.1.2.99'), v('10.1.2.1')]);
    expect(freeCount([r({ subnet: '10.1.2.0/24', rangeStart: '10.1.2.10', rangeEnd: '10.1.2.20' })], reserved)).toBe(10n);
    expect(freeCount([], reserved)).toBe(0n);
  });
  it('overlap of ranges and sets; rangeFor; descriptions', () => {
    const a = r({ subnet: '10.1.2.0/24', rangeEnd: '10.1.2.99' });
    const b = r({ subnet: '10.1.2.0/24', rangeStart: '10.1.2.100' });
    const c = r({ subnet: '10.1.2.0/24', rangeStart: '10.1.2.99', rangeEnd: '10.1.2.100' });
    expect(rangesOverlap(a, b)).toBe(false);
    expect(rangesOverlap(a, c)).toBe(true);
    expect(rangesOverlap(c, b)).toBe(true);
    expect(rangesOverlap(b, c)).toBe(true);
    expect(rangesOverlap(a, r({ subnet: 'fd00::/120' }))).toBe(false);
    expect(rangeSetsOverlap([a], [b])).toBe(false);
    expect(rangeSetsOverlap([a], [b, c])).toBe(true);
    expect(rangeFor([a, b], parseIP('10.1.2.150')!)).toBe(b);
    expect(rangeFor([a, b], parseIP('10.1.3.1')!)).toBeUndefined();
    expect(rangeSetContains([a, b], parseIP('10.1.2.50')!)).toBe(true);
    expect(rangeSetContains([a], parseIP('10.1.2.150')!)).toBe(false);
    expect(describeRange(a)).toBe('10.1.2.0/24 (10.1.2.1-10.1.2.99)');
    expect(describeRangeSet([a, b])).toBe('10.1.2.0/24 (10.1.2.1-10.1.2.99), 10.1.2.0/24 (10.1.2.100-10.1.2.254)');
    expect(familyOfSet([r({ subnet: 'fd00::/120' })])).toBe(6);
  });
  it('allocation order: after `last` within one range, then the rest; nextFree skips reserved', () => {
    const set = [r({ subnet: '10.1.2.0/29' })];
    const order = (last?: string): string[] => [...allocationOrder(set, last ? parseIP(last)! : undefined)].map((c) => formatIP(c.ip));
    expect(order()).toEqual(['10.1.2.1', '10.1.2.2', '10.1.2.3', '10.1.2.4', '10.1.2.5', '10.1.2.6']);
    expect(order('10.1.2.3')).toEqual(['10.1.2.4', '10.1.2.5', '10.1.2.6', '10.1.2.1', '10.1.2.2', '10.1.2.3']);
    expect(order('10.1.2.6')).toEqual(['10.1.2.1', '10.1.2.2', '10.1.2.3', '10.1.2.4', '10.1.2.5', '10.1.2.6']);
    expect([...allocationOrder(set)].every((c) => c.range === set[0] && c.ip.family === 4)).toBe(true);
    expect(formatIP(nextFree(set, new Set([v('10.1.2.2'), v('10.1.2.4')]), parseIP('10.1.2.1')!)!.ip)).toBe('10.1.2.3');
    expect(formatIP(nextFree(set, new Set([v('10.1.2.2')]))!.ip)).toBe('10.1.2.3');
    const all = new Set(['10.1.2.2', '10.1.2.3', '10.1.2.4', '10.1.2.5', '10.1.2.6'].map(v));
    expect(nextFree(set, all)).toBeUndefined();
  });
});

describe('host-local config (config.ts)', () => {
  const hl = (ipam: Record<string, unknown>, extra: Record<string, unknown> = {}): HostLocalConf =>
    ({ cniVersion: '1.1.0', name: 'n', ...extra, ipam: { type: 'host-local', ...ipam } }) as HostLocalConf;
  const msg = (fn: () => unknown): string => {
    const e = cniError(fn);
    expect(e.code).toBe(7);
    return e.message;
  };
  it('parseRange: every message names the field', () => {
    expect(msg(() => parseRange({}, 'f'))).toBe('invalid network config: f.subnet: is required');
    expect(msg(() => parseRange({ subnet: '' }, 'f'))).toBe('invalid network config: f.subnet: is required');
    expect(msg(() => parseRange({ subnet: 'x' }, 'f'))).toBe('invalid network config: f.subnet: "x" is not a CIDR');
    expect(msg(() => parseRange({ subnet: '10.0.0.0/31' }, 'f'))).toBe(
      'invalid network config: f.subnet: 10.0.0.0/31 is too small to allocate from (at most /30)',
    );
    expect(parseRange({ subnet: '10.0.0.0/30' }, 'f').end).toBe(parseIP('10.0.0.2')!.value);
    expect(msg(() => parseRange({ subnet: '10.0.0.0/24', gateway: 'x' }, 'f'))).toBe(
      'invalid network config: f.gateway: "x" is not an IP address',
    );
    expect(msg(() => parseRange({ subnet: '10.0.0.0/24', gateway: 'fd00::1' }, 'f'))).toBe(
      'invalid network config: f.gateway: fd00::1 is not the same family as subnet 10.0.0.0/24',
    );
    expect(msg(() => parseRange({ subnet: '10.0.0.0/24', rangeStart: '10.0.1.1' }, 'f'))).toBe(
      'invalid network config: f.rangeStart: 10.0.1.1 is not in subnet 10.0.0.0/24',
    );
    expect(msg(() => parseRange({ subnet: '10.0.0.0/24', rangeStart: '10.0.0.9', rangeEnd: '10.0.0.8' }, 'f'))).toBe(
      'invalid network config: f.rangeEnd: 10.0.0.8 is before rangeStart 10.0.0.9',
    );
    expect(msg(() => parseRange({ subnet: '10.0.0.0/24', rangeStart: '10.0.0.255' }, 'f'))).toBe(
      'invalid network config: f.rangeEnd: 10.0.0.254 is before rangeStart 10.0.0.255',
    );
    expect(msg(() => parseRange({ subnet: '10.0.0.77/24' }, 'f'))).toBe(
      'invalid network config: f.subnet: 10.0.0.77/24 has host bits set (the network address of a /24 is 10.0.0.0)',
    );
    const ok = parseRange({ subnet: '10.0.0.0/24', gateway: '10.0.0.254', rangeStart: '', rangeEnd: '10.0.0.9' }, 'f');
    expect({ subnet: formatCIDR(ok.subnet), gw: formatIP(ok.gateway), start: ok.start, end: ok.end, field: ok.field }).toEqual({
      subnet: '10.0.0.0/24',
      gw: '10.0.0.254',
      start: parseIP('10.0.0.1')!.value,
      end: parseIP('10.0.0.9')!.value,
      field: 'f',
    });
    expect(parseRange({ subnet: '10.0.0.0/24', rangeStart: '10.0.0.9', rangeEnd: '10.0.0.9' }, 'f').start).toBe(parseIP('10.0.0.9')!.value);
  });
  it('parseRangeSet / parseRangeSets messages', () => {
    expect(msg(() => parseRangeSet([], 'f'))).toBe('invalid network config: f: a range set needs at least one range');
    expect(msg(() => parseRangeSet('x' as unknown as RangeConf[], 'f'))).toContain('at least one range');
    expect(msg(() => parseRangeSet([{ subnet: '10.0.0.0/24' }, { subnet: 'fd00::/64' }], 'f'))).toBe(
      'invalid network config: f[1].subnet: mixes address families within one range set',
    );
    expect(msg(() => parseRangeSet([{ subnet: '10.0.0.0/24' }, { subnet: '10.1.0.0/24' }, { subnet: '10.0.0.0/25' }], 'f'))).toBe(
      'invalid network config: f[2]: overlaps f[0]',
    );
    expect(parseRangeSet([{ subnet: '10.0.0.0/24' }, { subnet: '10.1.0.0/24' }], 'f').map((x) => x.field)).toEqual(['f[0]', 'f[1]']);
    for (const k of ['rangeStart', 'rangeEnd', 'gateway'])
      expect(msg(() => parseRangeSets(hl({ [k]: '10.0.0.5', ranges: [[{ subnet: '10.0.0.0/24' }]] }), '1.1.0'))).toBe(
        `invalid network config: ipam.${k}: needs ipam.subnet (or put it in an ipam.ranges entry)`,
      );
    expect(msg(() => parseRangeSets(hl({}), '1.1.0'))).toBe(
      'invalid network config: ipam.ranges: no IP ranges specified (set ipam.subnet or ipam.ranges)',
    );
    expect(msg(() => parseRangeSets(hl({ ranges: [[{ subnet: '10.0.0.0/24' }], [{ subnet: '10.0.0.0/25' }]] }), '1.1.0'))).toBe(
      'invalid network config: ipam.ranges[1]: range set overlaps ipam.ranges[0]',
    );
    expect(
      msg(() => parseRangeSets(hl({ subnet: '10.0.0.0/24' }, { runtimeConfig: { ipRanges: [[{ subnet: '10.0.0.0/25' }]] } }), '1.1.0')),
    ).toBe('invalid network config: ipam: range set overlaps runtimeConfig.ipRanges[0]');
    expect(msg(() => parseRangeSets(hl({ ranges: [[{ subnet: 'fd00::/64' }], [{ subnet: 'fd01::/64' }]] }), '0.2.0'))).toBe(
      'invalid network config: cniVersion: 0.2.0 results carry one address per family; 2 range sets need 0.3.0 or later',
    );
    expect(parseRangeSets(hl({ ranges: [[{ subnet: '10.0.0.0/24' }], [{ subnet: '10.1.0.0/24' }]] }), '0.3.0')).toHaveLength(2);
  });
  it('storeDir: dataDir default and checks', () => {
    expect(DEFAULT_DATA_DIR).toBe('/var/lib/cni/networks');
    expect(storeDir(hl({}))).toBe('/var/lib/cni/networks/n');
    expect(storeDir(hl({ dataDir: '/x/y/' }))).toBe('/x/y/n');
    expect(msg(() => storeDir(hl({ dataDir: 'rel' })))).toBe('invalid network config: ipam.dataDir: must be an absolute path');
    expect(msg(() => storeDir(hl({ dataDir: '/a\0b' })))).toBe('invalid network config: ipam.dataDir: must be an absolute path');
    expect(msg(() => storeDir(hl({ dataDir: '/a/../b' })))).toBe('invalid network config: ipam.dataDir: must not contain ".." segments');
    expect(storeDir(hl({ dataDir: '/a/..b' }))).toBe('/a/..b/n');
    for (const name of ['', '-a', 'a b', 'a/b', 7])
      expect(msg(() => storeDir({ ...hl({}), name } as HostLocalConf))).toBe(
        'invalid network config: name: the network name must be alphanumerics, "_", "." or "-" (it names the store directory)',
      );
    expect(storeDir({ ...hl({}), name: 'A_b.c-d' })).toBe('/var/lib/cni/networks/A_b.c-d');
  });
  it('requested addresses: sources, order, duplicates, CNI_ARGS ignored when args.cni.ips is given', () => {
    const src = (c: HostLocalConf, args: Record<string, string> = {}) =>
      requestedIPs(c, new Map(Object.entries(args))).map((x) => `${formatIP(x.ip)} ${x.source}`);
    expect(src(hl({}), { IP: '10.0.0.5,,fd00::5/64' })).toEqual(['10.0.0.5 CNI_ARGS IP', 'fd00::5 CNI_ARGS IP']);
    expect(src(hl({}, { args: { cni: { ips: ['10.0.0.6'] } } }), { IP: '10.0.0.5' })).toEqual(['10.0.0.6 args.cni.ips[0]']);
    expect(src(hl({}, { args: { cni: { ips: [] } } }), { IP: '10.0.0.5' })).toEqual(['10.0.0.5 CNI_ARGS IP']);
    expect(src(hl({}, { runtimeConfig: { ips: ['10.0.0.7/24', '10.0.0.7'] } }), { IP: '10.0.0.7' })).toEqual([
      '10.0.0.7 runtimeConfig.ips[0]',
    ]);
    expect(src(hl({}), { IP: '' })).toEqual([]);
    expect(msg(() => requestedIPs(hl({}, { args: { cni: { ips: 'x' } } }), new Map()))).toBe(
      'invalid network config: args.cni.ips: must be a list of "<ip>[/<prefix>]"',
    );
    expect(msg(() => requestedIPs(hl({}, { runtimeConfig: { ips: 'x' } }), new Map()))).toBe(
      'invalid network config: runtimeConfig.ips: must be a list of "<ip>[/<prefix>]"',
    );
    expect(msg(() => requestedIPs(hl({}, { runtimeConfig: { ips: [5] } }), new Map()))).toBe(
      'invalid network config: runtimeConfig.ips[0]: must be a string "<ip>[/<prefix>]"',
    );
    expect(msg(() => requestedIPs(hl({}, { runtimeConfig: { ips: ['10.0.0.0/40'] } }), new Map()))).toBe(
      'invalid network config: runtimeConfig.ips[0]: "10.0.0.0/40" is not an IP address',
    );
    const env = cniError(() => requestedIPs(hl({}), new Map([['IP', 'nope']])));
    expect([env.code, env.message, env.details]).toEqual([4, 'invalid CNI_ARGS: IP: "nope" is not an IP address', 'CNI_ARGS IP']);
  });
  it('assignRequested: one per set, its messages and codes', () => {
    const sets = parseRangeSets(hl({ ranges: [[{ subnet: '10.0.0.0/24' }], [{ subnet: 'fd00::/120' }]] }), '1.1.0');
    const req = (s: string, source = 'runtimeConfig.ips[0]') => ({ ip: parseIP(s)!, source });
    const m = assignRequested(sets, [req('fd00::9'), req('10.0.0.9', 'args.cni.ips[0]')]);
    expect([...m.entries()].map(([k, x]) => `${k} ${formatIP(x.ip)}`)).toEqual(['1 fd00::9', '0 10.0.0.9']);
    expect(msg(() => assignRequested(sets, [req('10.9.0.1')]))).toBe(
      'invalid network config: runtimeConfig.ips[0]: requested address 10.9.0.1 is not in any range (10.0.0.0/24 (10.0.0.1-10.0.0.254); fd00::/120 (fd00::1-fd00::ff))',
    );
    const env = cniError(() => assignRequested(sets, [req('10.9.0.1', 'CNI_ARGS IP')]));
    expect([env.code, env.details]).toEqual([4, 'CNI_ARGS IP']);
    expect(env.message).toMatch(/^invalid CNI_ARGS: IP: requested address 10\.9\.0\.1 is not in any range/);
    const wide = parseRangeSets(hl({ ranges: [[{ subnet: '10.0.0.0/24', rangeStart: '10.0.0.0', rangeEnd: '10.0.0.255' }]] }), '1.1.0');
    expect(msg(() => assignRequested(wide, [req('10.0.0.255')]))).toBe(
      'invalid network config: runtimeConfig.ips[0]: requested address 10.0.0.255 is the network or broadcast address of 10.0.0.0/24',
    );
    const gw = cniError(() => assignRequested(sets, [req('10.0.0.1')]));
    expect([gw.code, gw.message, gw.details]).toEqual([
      102,
      'requested address 10.0.0.1 is the gateway of 10.0.0.0/24',
      'runtimeConfig.ips[0]',
    ]);
    expect(msg(() => assignRequested(sets, [req('10.0.0.5'), req('10.0.0.6', 'args.cni.ips[1]')]))).toBe(
      'invalid network config: args.cni.ips[1]: requested addresses 10.0.0.5 and 10.0.0.6 are in the same range set; one address per range set',
    );
  });
});

describe('config validation messages (validate.ts)', () => {
  const schema = {
    type: 'object',
    required: ['name'],
    properties: {
      name: { type: 'string' },
      mode: { enum: ['a', 'b'] },
      'odd/key~x': { type: 'number' },
      ipam: {
        type: 'object',
        required: ['type'],
        properties: {
          type: { type: 'string' },
          ranges: {
            type: 'array',
            items: { type: 'array', items: { type: 'object', properties: { subnet: { type: 'string', format: 'cidr' } } } },
          },
        },
      },
    },
  };
  const fail = (config: unknown): [string, string] => {
    const e = cniError(() => validate(schema, config, 'pure-test'));
    expect(e.code).toBe(7);
    return [e.message, e.details];
  };
  it('names the field: nested, indexed, escaped, required, format, enum, root', async () => {
    await prepareValidators([[schema, 'pure-test']]);
    expect(fail({})).toEqual(['invalid network config: name: is required', 'field "name"']);
    expect(fail({ name: 'n', ipam: {} })).toEqual(['invalid network config: ipam.type: is required', 'field "ipam.type"']);
    expect(fail({ name: 'n', ipam: { type: 't', ranges: [[{ subnet: '10.0.0.0/24' }, { subnet: 'x' }]] } })).toEqual([
      'invalid network config: ipam.ranges[0][1].subnet: "x" is not a valid cidr',
      'field "ipam.ranges[0][1].subnet"',
    ]);
    expect(fail({ name: 'n', mode: 'c' })).toEqual(['invalid network config: mode: must be one of ["a","b"]', 'field "mode"']);
    expect(fail({ name: 'n', 'odd/key~x': 'one' })).toEqual(['invalid network config: odd/key~x: must be number', 'field "odd/key~x"']);
    expect(fail([])).toEqual(['invalid network config: (config): must be object', 'field "(config)"']);
    expect(validate(schema, { name: 'n', extra: 1 }, 'pure-test')).toEqual({ name: 'n', extra: 1 });
  });
});

/** Mutants the first `make mutate` run left alive (docs/benchmarks.md, "Mutation testing"). */
describe('survivors of the first mutation run', () => {
  it('result: absent fields are absent, not undefined-valued keys', () => {
    expect(parseResult({}, '1.0.0')).toStrictEqual({});
    expect(parseResult({}, '0.2.0')).toStrictEqual({ ips: [], routes: [] });
    expect(
      parseResult({ interfaces: [{ name: 'a' }], ips: [{ address: '10.0.0.2/24' }], routes: [{ dst: '::/0' }] }, '1.1.0'),
    ).toStrictEqual({
      interfaces: [{ name: 'a' }],
      ips: [{ address: '10.0.0.2/24' }],
      routes: [{ dst: '::/0' }],
    });
    expect(renderResult({ ips: [{ address: '10.0.0.2/24' }] }, '0.2.0')).toStrictEqual({
      cniVersion: '0.2.0',
      ip4: { ip: '10.0.0.2/24' },
      dns: {},
    });
    expect(renderResult({ interfaces: [{ name: 'a' }], ips: [{ address: '10.0.0.2/24' }] }, '1.1.0')).toStrictEqual({
      cniVersion: '1.1.0',
      interfaces: [{ name: 'a' }],
      ips: [{ address: '10.0.0.2/24' }],
      dns: {},
    });
  });
  it('validate: precompiled validators (map or lazy loader, loaded once), fallback messages, field paths', async () => {
    let loads = 0;
    const bad = Object.assign(() => false, { errors: null as null | ErrorObject[] });
    const untyped = Object.assign(() => false, {
      errors: [{ instancePath: '/a', keyword: 'type', params: {}, schemaPath: '', message: undefined }] as ErrorObject[],
    });
    usePrecompiled(() => {
      loads++;
      return { 'pure-bad': bad, 'pure-untyped': untyped };
    });
    expect(loads).toBe(0);
    expect(cniError(() => validate({}, {}, 'pure-bad'))).toMatchObject({
      code: 7,
      message: 'invalid network config: invalid',
      details: 'field "(config)"',
    });
    expect(cniError(() => validate({ $id: 'pure-untyped' }, {}))).toMatchObject({
      message: 'invalid network config: a: is invalid',
      details: 'field "a"',
    });
    expect(loads).toBe(1);
    usePrecompiled({});
    const schema = {
      type: 'object',
      properties: { v4: { type: 'number' }, '4x': { type: 'number' }, list: { type: 'array', items: { type: 'number' } } },
    };
    await prepareValidators([[schema, 'pure-paths']]);
    expect(cniError(() => validate(schema, { v4: 'x' }, 'pure-paths')).details).toBe('field "v4"');
    expect(cniError(() => validate(schema, { '4x': 'x' }, 'pure-paths')).details).toBe('field "4x"');
    expect(cniError(() => validate(schema, { list: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 'x'] }, 'pure-paths')).details).toBe('field "list[10]"');
  });
  it('host-local config: non-string subnet, bad range bounds, set overlap names beyond the first', () => {
    expect(cniError(() => parseRange({ subnet: 5 } as unknown as RangeConf, 'f')).message).toBe(
      'invalid network config: f.subnet: is required',
    );
    expect(cniError(() => parseRange({ subnet: '10.0.0.0/24', rangeStart: 'x' }, 'f')).message).toBe(
      'invalid network config: f.rangeStart: "x" is not an IP address',
    );
    expect(cniError(() => parseRange({ subnet: '10.0.0.0/24', rangeEnd: 'x' }, 'f')).message).toBe(
      'invalid network config: f.rangeEnd: "x" is not an IP address',
    );
    const sets = (n: number, overlapWith: number) => [
      ...Array.from({ length: n }, (_, i) => [{ subnet: `10.${i}.0.0/24` }]),
      [{ subnet: `10.${overlapWith}.0.0/25` }],
    ];
    const hl = { cniVersion: '1.1.0', name: 'n', ipam: { type: 'host-local' } };
    expect(cniError(() => parseRangeSets({ ...hl, ipam: { ...hl.ipam, ranges: sets(3, 1) } } as HostLocalConf, '1.1.0')).message).toBe(
      'invalid network config: ipam.ranges[3]: range set overlaps ipam.ranges[1]',
    );
    expect(cniError(() => parseRangeSets({ ...hl, ipam: { ...hl.ipam, ranges: sets(11, 10) } } as HostLocalConf, '1.1.0')).message).toBe(
      'invalid network config: ipam.ranges[11]: range set overlaps ipam.ranges[10]',
    );
  });
  it('bridge: MAC anchored at both ends; plan errors name the address; no bridge gateway without isGateway', () => {
    const base = { cniVersion: '1.1.0', name: 'n', type: 'bridge' } as BridgeConf;
    for (const mac of ['zz02:00:00:00:00:01', '02:00:00:00:00:01zz'])
      expect(cniError(() => resolveSettings({ ...base, runtimeConfig: { mac } } as unknown as BridgeConf, { args: new Map() })).code).toBe(
        7,
      );
    expect(() => defaultGateway('x')).toThrow('address: "x" is not a CIDR');
    const s = (over: Partial<BridgeSettings>): BridgeSettings => ({ ...resolveSettings(base, { args: new Map() }), ...over });
    expect(() => planAdd({ ips: [{ address: 'x', gateway: '10.0.0.1' }] }, s({ isGateway: true }))).toThrow('address: "x" is not a CIDR');
    const p = planAdd({ ips: [{ address: '10.1.2.5/24', gateway: '10.1.2.9' }, { address: '10.1.3.5/24' }] }, s({}));
    expect(p.bridgeGateways).toEqual([]);
    expect(p.ips).toStrictEqual([
      { address: '10.1.2.5/24', interface: CONTAINER_INDEX, gateway: '10.1.2.9' },
      { address: '10.1.3.5/24', interface: CONTAINER_INDEX },
    ]);
  });
  it('ranges and ipnet: families never overlap numerically, some vs every, disjoint prefixes of different length, multi-digit octets', () => {
    const v4 = parseRange({ subnet: '10.0.0.0/24' }, 'a');
    const v6 = parseRange({ subnet: '::a00:0/120' }, 'b'); // the same numbers as 10.0.0.0/24
    expect(rangesOverlap(v4, v6)).toBe(false);
    const other = parseRange({ subnet: '10.0.1.0/24' }, 'c');
    expect(rangeSetsOverlap([other, v4], [parseRange({ subnet: '10.0.0.0/25' }, 'd')])).toBe(true);
    expect(overlaps(net('10.1.2.0/24'), net('10.0.0.0/16'))).toBe(false);
    expect(overlaps(net('10.0.0.0/16'), net('10.1.2.0/24'))).toBe(false);
    expect(parseIP('10.20.30.40')).toEqual({ family: 4, value: 0x0a141e28n });
    expect(parseIP('192.168.100.200')?.family).toBe(4);
  });
  it('version: messages', () => {
    expect(cniError(() => negotiate(4)).message).toBe('cniVersion must be a string');
    expect(cniError(() => negotiate('9.9.9', 'x')).details).toBe(
      'config is "9.9.9", plugin supports ["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]',
    );
  });
});
