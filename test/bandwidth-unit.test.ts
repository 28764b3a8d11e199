/** bandwidth: the pure part (limits, validation, IFB name, tc commands). */
import { describe, expect, it } from 'vitest';
import { ifbName, isZero, limitsOf, rootCommands, shaperOf, validateLimits, type BandwidthConf } from '../plugins/bandwidth/config.ts';
import { CniError } from '../shared/cni/errors.ts';

const conf = (extra: Partial<BandwidthConf>): BandwidthConf =>
  ({ cniVersion: '1.0.0', name: 'n', type: 'bandwidth', ...extra }) as BandwidthConf;
const limits = (extra: Partial<BandwidthConf>) => limitsOf(conf(extra))!;
const code7 = (extra: Partial<BandwidthConf>): string => {
  try {
    validateLimits(limits(extra));
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    expect((e as CniError).code).toBe(7);
    return `${(e as CniError).message} | ${(e as CniError).details}`;
  }
  throw new Error('accepted');
};

describe('bandwidth limits', () => {
  it('none set: no limits; all zero: isZero', () => {
    expect(limitsOf(conf({}))).toBeUndefined();
    expect(isZero(limits({ ingressRate: 0 }))).toBe(true);
    expect(isZero(limits({ egressRate: 8, egressBurst: 8 }))).toBe(false);
  });

  it('as the reference: the config keys win over the bandwidth capability, whole; the capability applies alone', () => {
    const l = limits({ ingressRate: 1000, ingressBurst: 100, runtimeConfig: { bandwidth: { egressRate: 2000, egressBurst: 200 } } });
    expect(l).toMatchObject({ ingressRate: 1000, ingressBurst: 100, egressRate: 0, egressBurst: 0, from: '' });
    expect(limits({ runtimeConfig: { bandwidth: { egressRate: 2000, egressBurst: 200 } } })).toMatchObject({
      egressRate: 2000,
      egressBurst: 200,
      from: 'runtimeConfig.bandwidth.',
    });
    expect(limits({ ingressRate: 1000, ingressBurst: 100, runtimeConfig: { bandwidth: null } })).toMatchObject({
      ingressRate: 1000,
      from: '',
    });
  });

  it('a rate without a burst (or the reverse) is code 7 naming the field', () => {
    expect(code7({ ingressRate: 1000 })).toMatch(/ingressBurst/);
    expect(code7({ egressBurst: 1000 })).toMatch(/egressRate/);
    expect(code7({ runtimeConfig: { bandwidth: { egressRate: 1000 } } })).toMatch(/runtimeConfig\.bandwidth\.egressBurst/);
    expect(code7({ ingressRate: 1000, ingressBurst: 8 * 0xffffffff })).toMatch(/4GB/);
    expect(() => validateLimits(limits({ ingressRate: 1000, ingressBurst: 8 * 0xfffffffe }))).not.toThrow();
  });

  it('subnets: CIDRs only, not both lists', () => {
    expect(code7({ ingressRate: 8, ingressBurst: 8, unshapedSubnets: ['10.0.0.0/8'], shapedSubnets: ['10.1.0.0/16'] })).toMatch(
      /shapedSubnets/,
    );
    expect(code7({ ingressRate: 8, ingressBurst: 8, shapedSubnets: ['10.0.0.0/8', '10.1.2.3'] })).toMatch(/shapedSubnets\[1\]/);
    expect(() => validateLimits(limits({ ingressRate: 8, ingressBurst: 8, unshapedSubnets: ['10.0.0.0/8', 'fd00::/64'] }))).not.toThrow();
  });

  it('IFB name: bwp + 12 hex digits of SHA-512(name + container ID), as the reference', () => {
    // Seen from /usr/lib/cni/bandwidth: network "hnnet", container "abc123".
    expect(ifbName('hnnet', 'abc123')).toBe('bwp5464ae3cc203');
  });
});

describe('bandwidth tc commands', () => {
  const s = shaperOf(20_000_001, 160_007)!;
  it('bits to bytes as the reference (floor), no shaper without both', () => {
    expect(s).toEqual({ rateBytes: 2_500_000, burstBytes: 20_000 });
    expect(shaperOf(1000, 0)).toBeUndefined();
  });

  it('no subnets: one TBF at the root, 25 ms of queue', () => {
    expect(rootCommands('veth1', s, limits({ ingressRate: 0 }), 'src')).toEqual([
      ['qdisc', 'add', 'dev', 'veth1', 'root', 'handle', '1:', 'tbf', 'rate', '20000000bit', 'burst', '20000', 'latency', '25000us'],
    ]);
  });

  it('unshapedSubnets: HTB defaulting to the shaped class, the listed ones to 1:1', () => {
    const c = rootCommands('bwpx', s, limits({ unshapedSubnets: ['10.1.2.3/16', 'fd00::1/64'] }), 'dst');
    expect(c[0]).toEqual(['qdisc', 'add', 'dev', 'bwpx', 'root', 'handle', '1:', 'htb', 'default', '30']);
    expect(c[1]).toEqual([
      'class',
      'add',
      'dev',
      'bwpx',
      'parent',
      '1:',
      'classid',
      '1:1',
      'htb',
      'rate',
      '100000000000bit',
      'burst',
      '1500000',
      'cburst',
      '1500000',
      'quantum',
      '60000',
    ]);
    expect(c[2]).toEqual([
      'class',
      'add',
      'dev',
      'bwpx',
      'parent',
      '1:',
      'classid',
      '1:30',
      'htb',
      'rate',
      '20000000bit',
      'burst',
      '20000',
      'quantum',
      '60000',
    ]);
    expect(c.slice(3)).toEqual([
      [
        'filter',
        'add',
        'dev',
        'bwpx',
        'parent',
        '1:',
        'protocol',
        'ip',
        'prio',
        '16',
        'u32',
        'match',
        'ip',
        'dst',
        '10.1.0.0/16',
        'classid',
        '1:1',
      ],
      [
        'filter',
        'add',
        'dev',
        'bwpx',
        'parent',
        '1:',
        'protocol',
        'ipv6',
        'prio',
        '15', // a priority of its own: the kernel refuses two protocols at one (the Go reference's 15)
        'u32',
        'match',
        'ip6',
        'dst',
        'fd00::/64',
        'classid',
        '1:1',
      ],
    ]);
  });

  it('shapedSubnets: HTB defaulting to the uncapped class, the listed ones to 1:30', () => {
    const c = rootCommands('veth1', s, limits({ shapedSubnets: ['192.168.0.0/24'] }), 'src');
    expect(c[0].at(-1)).toBe('1');
    expect(c.at(-1)).toEqual([
      'filter',
      'add',
      'dev',
      'veth1',
      'parent',
      '1:',
      'protocol',
      'ip',
      'prio',
      '16',
      'u32',
      'match',
      'ip',
      'src',
      '192.168.0.0/24',
      'classid',
      '1:30',
    ]);
  });
});
