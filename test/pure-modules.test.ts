/**
 * Unit tests of the pure modules StrykerJS mutates (`make mutate`, stryker.config.mjs): each
 * pins a behaviour a surviving mutant showed untested. Pure functions only: no executables, no
 * kernel, no files.
 */
import { describe, expect, it } from 'vitest';
import { CniError } from '../shared/cni/errors.ts';
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
    expect([...parseCniArgs('A=1;;B=x=y;C=')]).toEqual([['A', '1'], ['B', 'x=y'], ['C', '']]);
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
    expect(cniError(() => parseEnv({ CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'c' })).message).toBe('required environment variables missing: CNI_IFNAME');
    expect(cniError(() => parseEnv({ CNI_COMMAND: 'GC' })).message).toBe('required environment variables missing: CNI_PATH');
    expect(parseEnv({ CNI_COMMAND: 'VERSION' })).toEqual({ command: 'VERSION', containerId: '', netns: '', ifname: '', args: new Map(), path: [] });
  });
  it('reads what the verb takes, and only that', () => {
    const env = parseEnv({ ...add, CNI_ARGS: 'IgnoreUnknown=1', CNI_PATH: '/a::/b' });
    expect(env).toEqual({ command: 'ADD', containerId: 'c1', netns: '/run/netns/x', ifname: 'eth0', args: new Map([['IgnoreUnknown', '1']]), path: ['/a', '/b'] });
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
    for (const bad of ['', 'x'.repeat(16), '.', '..', 'a/b', 'a:b', 'a b', 'a\tb', 'a\nb']) expect(ifname(bad), JSON.stringify(bad)).toBe(false);
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
    for (const bad of ['02:00:00:00:00', '02:00:00:00:00:01:02', '02-00-00-00-00-01', 'g2:00:00:00:00:01', ' 02:00:00:00:00:01', '02:00:00:00:00:01 ', '0200.0000.0001']) expect(mac(bad), bad).toBe(false);
  });
});

describe('ipnet', () => {
  it('parses addresses strictly', () => {
    expect(parseIP('10.1.2.3')).toEqual({ family: 4, value: 0x0a010203n });
    expect(parseIP('::1')).toEqual({ family: 6, value: 1n });
    expect(parseIP('::ffff:10.1.2.3')?.family).toBe(6);
    for (const bad of ['10.1.2', '10.1.2.3/24', 'fe80::1%eth0', '256.1.1.1', 'x', '', '10.1.2.3.4', '1']) expect(parseIP(bad), bad).toBeNull();
    expect(parseIP(7 as unknown as string)).toBeNull();
  });
  it('parses CIDRs: prefix 0..bits, decimal, at most three digits', () => {
    expect(parseCIDR('10.1.2.3/24')).toEqual({ family: 4, value: 0x0a010203n, prefix: 24 });
    expect(parseCIDR('10.1.2.3/0')?.prefix).toBe(0);
    expect(parseCIDR('10.1.2.3/32')?.prefix).toBe(32);
    expect(parseCIDR('fd00::/128')?.prefix).toBe(128);
    for (const bad of ['10.1.2.3', '10.1.2.3/33', 'fd00::/129', '10.1.2.3/', '10.1.2.3/x', '10.1.2.3/0024', '10.1.2.3/-1', 'x/24', '/24', '10.1.2.3/ 24']) expect(parseCIDR(bad), bad).toBeNull();
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
      bridge: 'cni0', isGateway: false, isDefaultGateway: false, forceAddress: false, ipMasq: false, masqBackend: 'nftables', mtu: undefined,
      hairpinMode: false, promiscMode: false, macspoofchk: false, enableDad: false, disableContainerInterface: false, portIsolation: false,
      vlan: 0, vlanTrunk: [], preserveDefaultVlan: true, nftTable: 'cni_bridge', iptablesChain: 'CNI-BRIDGE-MASQ', mac: undefined, layer3: false,
    });
  });
  it('every switch, and isDefaultGateway implies isGateway', () => {
    const c = {
      ...base, bridge: 'br9', isDefaultGateway: true, forceAddress: true, ipMasq: true, ipMasqBackend: 'iptables', mtu: 1400, hairpinMode: true, promiscMode: true,
      macspoofchk: true, enabledad: true, disableContainerInterface: true, portIsolation: true, vlan: 7, vlanTrunk: [{ id: 9 }], preserveDefaultVlan: false,
      nftTable: 't', iptablesChain: 'C', ipam: { type: 'host-local' },
    } as unknown as BridgeConf;
    expect(resolveSettings(c, env())).toEqual({
      bridge: 'br9', isGateway: true, isDefaultGateway: true, forceAddress: true, ipMasq: true, masqBackend: 'iptables', mtu: 1400,
      hairpinMode: true, promiscMode: true, macspoofchk: true, enableDad: true, disableContainerInterface: true, portIsolation: true,
      vlan: 7, vlanTrunk: [[9, 9]], preserveDefaultVlan: false, nftTable: 't', iptablesChain: 'C', mac: undefined, layer3: true,
    });
    expect(resolveSettings({ ...base, isGateway: true } as BridgeConf, env()).isDefaultGateway).toBe(false);
    expect(resolveSettings({ ...base, isGateway: true } as BridgeConf, env()).isGateway).toBe(true);
    // only `true` switches on (truthy strings do not)
    const truthy = { ...base, isGateway: 'yes', ipMasq: 1, hairpinMode: 'true' } as unknown as BridgeConf;
    expect(resolveSettings(truthy, env())).toMatchObject({ isGateway: false, ipMasq: false, hairpinMode: false });
  });
  it('MAC: runtimeConfig.mac, then args.cni.mac, then CNI_ARGS MAC, lower-cased; malformed or multicast is code 7', () => {
    const all = { ...base, runtimeConfig: { mac: '02:AA:00:00:00:01' }, args: { cni: { mac: '02:bb:00:00:00:02' } } } as unknown as BridgeConf;
    expect(resolveSettings(all, env({ MAC: '02:cc:00:00:00:03' })).mac).toBe('02:aa:00:00:00:01');
    expect(resolveSettings({ ...all, runtimeConfig: {} } as BridgeConf, env({ MAC: '02:cc:00:00:00:03' })).mac).toBe('02:bb:00:00:00:02');
    expect(resolveSettings(base, env({ MAC: '02:CC:00:00:00:03' })).mac).toBe('02:cc:00:00:00:03');
    expect(resolveSettings(base, env({ MAC: '' })).mac).toBeUndefined();
    const bad = (mac: unknown, where: 'runtime' | 'args' | 'env') => {
      const c = where === 'runtime' ? ({ ...base, runtimeConfig: { mac } } as unknown as BridgeConf) : where === 'args' ? ({ ...base, args: { cni: { mac } } } as unknown as BridgeConf) : base;
      return cniError(() => resolveSettings(c, env(where === 'env' ? { MAC: String(mac) } : {})));
    };
    expect(bad('02:00:00:00:00', 'runtime').message).toBe('invalid network config: runtimeConfig.mac: "02:00:00:00:00" is not a MAC address');
    expect(bad(42, 'args').message).toBe('invalid network config: args.cni.mac: 42 is not a MAC address');
    expect(bad('01:00:00:00:00:01', 'env').message).toBe('invalid network config: CNI_ARGS MAC: 01:00:00:00:00:01 is a multicast MAC address');
    expect(bad('03:00:00:00:00:01', 'runtime').code).toBe(7);
    expect(resolveSettings({ ...base, runtimeConfig: { mac: '02:00:00:00:00:01' } } as unknown as BridgeConf, env()).mac).toBe('02:00:00:00:00:01');
  });
  it('vlanTrunk: id, or minID..maxID', () => {
    expect(trunkRanges([{ id: 5 }, { minID: 10, maxID: 20 }, { minID: 3, maxID: 3 }])).toEqual([[5, 5], [10, 20], [3, 3]]);
    expect(cniError(() => trunkRanges([{ id: 1 }, { id: 5, minID: 1 }])).message).toBe('invalid network config: vlanTrunk[1]: give either id or minID/maxID');
    expect(cniError(() => trunkRanges([{ id: 5, maxID: 9 }])).message).toContain('give either id');
    expect(cniError(() => trunkRanges([{ minID: 1 }])).message).toBe('invalid network config: vlanTrunk[0]: needs id, or both minID and maxID');
    expect(cniError(() => trunkRanges([{ maxID: 1 }])).message).toContain('needs id');
    expect(cniError(() => trunkRanges([{ minID: 9, maxID: 8 }])).message).toBe('invalid network config: vlanTrunk[0]: minID is greater than maxID');
    expect(needsVlanFiltering(resolveSettings(base, env()))).toBe(false);
    expect(needsVlanFiltering(resolveSettings({ ...base, vlan: 3 } as BridgeConf, env()))).toBe(true);
    expect(needsVlanFiltering(resolveSettings({ ...base, vlanTrunk: [{ id: 3 }] } as BridgeConf, env()))).toBe(true);
  });
});

describe('bridge plan', () => {
  const s = (over: Partial<BridgeSettings> = {}): BridgeSettings => ({ ...resolveSettings({ cniVersion: '1.1.0', name: 'n', type: 'bridge' } as BridgeConf, { args: new Map() }), ...over });
  it('without isGateway: no gateway invented, no bridge address, routes as IPAM gave them', () => {
    const p = planAdd({ ips: [{ address: '10.1.2.5/24' }], routes: [{ dst: '10.9.0.0/16' }] }, s());
    expect(p.ips).toEqual([{ address: '10.1.2.5/24', interface: CONTAINER_INDEX }]);
    expect(p.bridgeGateways).toEqual([]);
    expect(p.routes).toEqual([{ dst: '10.9.0.0/16' }]);
    expect(p.containerRoutes).toEqual([{ dst: '10.9.0.0/16', gw: undefined, mtu: undefined, advmss: undefined, metric: undefined, table: undefined, scope: undefined }]);
    expect(p.containerAddrs).toEqual([{ cidr: '10.1.2.5/24', nodad: true }]);
    expect(p.families).toEqual([4]);
  });
  it('isGateway: the first host is the gateway and goes on the bridge once per subnet; IPAM gateways win', () => {
    const p = planAdd({ ips: [{ address: '10.1.2.5/24' }, { address: 'fd00::5/64', gateway: 'fd00::fe' }, { address: '10.1.2.6/24' }] }, s({ isGateway: true, enableDad: true }));
    expect(p.ips.map((i) => i.gateway)).toEqual(['10.1.2.1', 'fd00::fe', '10.1.2.1']);
    expect(p.bridgeGateways).toEqual(['10.1.2.1/24', 'fd00::fe/64']);
    expect(p.containerAddrs.map((a) => a.nodad)).toEqual([false, false, false]);
    expect(p.families).toEqual([4, 6]);
    expect(defaultGateway('10.1.2.77/24')).toBe('10.1.2.1');
    expect(defaultGateway('fd00::9/64')).toBe('fd00::1');
  });
  it('isDefaultGateway adds a default route per family via its gateway, unless IPAM has one (same gateway ok, another is code 7)', () => {
    const p = planAdd({ ips: [{ address: '10.1.2.5/24' }, { address: 'fd00::5/64' }] }, s({ isGateway: true, isDefaultGateway: true }));
    expect(p.routes).toEqual([{ dst: '0.0.0.0/0', gw: '10.1.2.1' }, { dst: '::/0', gw: 'fd00::1' }]);
    expect(p.containerRoutes.map((r) => [r.dst, r.gw])).toEqual([['0.0.0.0/0', '10.1.2.1'], ['::/0', 'fd00::1']]);
    const same = planAdd({ ips: [{ address: '10.1.2.5/24' }], routes: [{ dst: '0.0.0.0/0', gw: '10.1.2.1' }] }, s({ isGateway: true, isDefaultGateway: true }));
    expect(same.routes).toEqual([{ dst: '0.0.0.0/0', gw: '10.1.2.1' }]);
    const noGw = planAdd({ ips: [{ address: '10.1.2.5/24' }], routes: [{ dst: '0.0.0.0/0' }] }, s({ isGateway: true, isDefaultGateway: true }));
    expect(noGw.routes).toEqual([{ dst: '0.0.0.0/0' }]);
    expect(noGw.containerRoutes[0].gw).toBe('10.1.2.1');
    // a default route in another table is not "the" default route
    const other = planAdd({ ips: [{ address: '10.1.2.5/24' }], routes: [{ dst: '0.0.0.0/0', gw: '10.1.2.9', table: 100 }] }, s({ isGateway: true, isDefaultGateway: true }));
    expect(other.routes).toEqual([{ dst: '0.0.0.0/0', gw: '10.1.2.9', table: 100 }, { dst: '0.0.0.0/0', gw: '10.1.2.1' }]);
    const e = cniError(() => planAdd({ ips: [{ address: '10.1.2.5/24' }], routes: [{ dst: '0.0.0.0/0', gw: '10.1.2.9' }] }, s({ isGateway: true, isDefaultGateway: true })));
    expect(e.code).toBe(7);
    expect(e.message).toBe('invalid network config: isDefaultGateway: ineffective because IPAM sets the default route via 10.1.2.9');
  });
  it('route fields become kernel route specs; a route without gw takes its family gateway', () => {
    const p = planAdd({ ips: [{ address: '10.1.2.5/24', gateway: '10.1.2.254' }], routes: [{ dst: '10.9.0.0/16', mtu: 1400, advmss: 1360, priority: 5, table: 7, scope: 253 }, { dst: 'fd09::/64' }] }, s());
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
    for (const conf of [{ nameservers: ['1.1.1.1'] }, { domain: 'd' }, { search: ['s'] }, { options: ['o'] }]) expect(pickDns(conf, ipam)).toBe(conf);
  });
});
