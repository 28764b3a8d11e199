/**
 * bandwidth: pure part. The effective limits (config keys, or the `bandwidth` capability),
 * their validation, the IFB name, and the tc commands that realise them.
 *
 * Units are the reference's: rates in bits per second, bursts in bits. The kernel works in
 * bytes: a TBF of `rate/8` bytes/s and a bucket of `burst/8` bytes, with a queue limit of
 * 25 ms at that rate on top of the bucket (the reference's latency constant).
 */
import { invalidConfig } from '../../shared/cni/errors.ts';
import type { NetConfBase } from '../../shared/cni/types.ts';
import { formatCIDR, network, parseCIDR } from '../../shared/ipnet.ts';

export interface BandwidthEntry {
  ingressRate?: number;
  ingressBurst?: number;
  egressRate?: number;
  egressBurst?: number;
  unshapedSubnets?: string[] | null;
  shapedSubnets?: string[] | null;
}

export interface BandwidthConf extends NetConfBase, BandwidthEntry {
  runtimeConfig?: { bandwidth?: BandwidthEntry | null; [k: string]: unknown };
}

export interface Limits {
  ingressRate: number;
  ingressBurst: number;
  egressRate: number;
  egressBurst: number;
  unshapedSubnets: string[];
  shapedSubnets: string[];
  /** where the limits came from, for error messages */
  from: string;
}

const KEYS = ['ingressRate', 'ingressBurst', 'egressRate', 'egressBurst'] as const;
/** The reference refuses a burst of 4 GiB (in bytes) or more. */
const MAX_BURST_BYTES = 0xffffffff;
/** Queue latency on top of the bucket (the reference's 25 ms). */
export const LATENCY_US = 25_000;
/** HTB class minor ids (hex in tc syntax): traffic left alone / traffic shaped, when subnets split it. */
export const UNSHAPED_MINOR = '1';
export const SHAPED_MINOR = '30';
/** The rate of the "unshaped" HTB class: high enough never to shape (100 Gbit/s). */
export const UNCAPPED_RATE_BITS = 100_000_000_000;
const UNCAPPED_BURST = '1500000';
const QUANTUM = '60000';
/** u32 filter priorities of the subnet matches, per protocol (the Go reference's) */
export const V4_FILTER_PRIO = '16';
export const V6_FILTER_PRIO = '15';

/**
 * The limits in force: `runtimeConfig.bandwidth` (the capability, set per container by the
 * runtime) wins over the config's own keys; undefined when neither sets any.
 */
export function limitsOf(conf: BandwidthConf): Limits | undefined {
  const rc = conf.runtimeConfig?.bandwidth;
  const top = KEYS.some((k) => conf[k] !== undefined) || conf.unshapedSubnets != null || conf.shapedSubnets != null;
  // As the reference: the config's own keys win; the `bandwidth` capability applies when the config has none.
  const [e, from] = top ? [conf as BandwidthEntry, ''] : rc ? [rc, 'runtimeConfig.bandwidth.'] : [undefined, ''];
  if (!e) return undefined;
  return {
    ingressRate: e.ingressRate ?? 0,
    ingressBurst: e.ingressBurst ?? 0,
    egressRate: e.egressRate ?? 0,
    egressBurst: e.egressBurst ?? 0,
    unshapedSubnets: e.unshapedSubnets ?? [],
    shapedSubnets: e.shapedSubnets ?? [],
    from,
  };
}

export const isZero = (l: Limits): boolean => KEYS.every((k) => l[k] === 0);

/** Code 7 naming the field for a rate without burst (or the reverse), a burst ≥ 4 GiB, or bad subnets. */
export function validateLimits(l: Limits): void {
  for (const dir of ['ingress', 'egress'] as const) {
    const rate = l[`${dir}Rate`];
    const burst = l[`${dir}Burst`];
    if (rate !== 0 && burst === 0) throw invalidConfig(`${l.from}${dir}Burst`, `if ${dir}Rate is set, ${dir}Burst must also be set`);
    if (rate === 0 && burst !== 0) throw invalidConfig(`${l.from}${dir}Rate`, `if ${dir}Burst is set, ${dir}Rate must also be set`);
    if (Math.floor(burst / 8) >= MAX_BURST_BYTES) throw invalidConfig(`${l.from}${dir}Burst`, 'burst cannot be more than 4GB');
    if (rate !== 0 && Math.floor(rate / 8) === 0) throw invalidConfig(`${l.from}${dir}Rate`, 'rate must be at least 8 bits per second');
    if (burst !== 0 && Math.floor(burst / 8) === 0) throw invalidConfig(`${l.from}${dir}Burst`, 'burst must be at least 8 bits');
  }
  if (l.unshapedSubnets.length && l.shapedSubnets.length) {
    throw invalidConfig(
      `${l.from}shapedSubnets`,
      'unshapedSubnets and shapedSubnets cannot be both specified, one of them should be discarded',
    );
  }
  for (const key of ['unshapedSubnets', 'shapedSubnets'] as const) {
    l[key].forEach((s, i) => {
      if (!parseCIDR(s)) throw invalidConfig(`${l.from}${key}[${i}]`, `bad subnet ${JSON.stringify(s)}: not a CIDR`);
    });
  }
}

export { ifbName } from '../../shared/kernel/tc.ts';

/** What the kernel holds for one direction: rate in bytes/s, bucket in bytes. */
export interface Shaper {
  rateBytes: number;
  burstBytes: number;
}

export const shaperOf = (rateBits: number, burstBits: number): Shaper | undefined =>
  rateBits > 0 && burstBits > 0 ? { rateBytes: Math.floor(rateBits / 8), burstBytes: Math.floor(burstBits / 8) } : undefined;

/**
 * tc commands (argv without "tc") that shape the root of `dev`. Without subnets: one TBF
 * (handle 1:). With subnets: an HTB (handle 1:) with an uncapped class 1:1 and a shaped class
 * 1:30, the default being the shaped one for `unshapedSubnets` (the listed ones go to 1:1) and
 * the uncapped one for `shapedSubnets` (the listed ones go to 1:30); u32 filters match the
 * remote end's address (`remote`: src for traffic to the container, dst for traffic from it).
 */
export function rootCommands(dev: string, s: Shaper, l: Limits, remote: 'src' | 'dst'): string[][] {
  const subnets = l.unshapedSubnets.length ? l.unshapedSubnets : l.shapedSubnets;
  if (!subnets.length) {
    return [
      [
        'qdisc',
        'add',
        'dev',
        dev,
        'root',
        'handle',
        '1:',
        'tbf',
        'rate',
        `${s.rateBytes * 8}bit`,
        'burst',
        String(s.burstBytes),
        'latency',
        `${LATENCY_US}us`,
      ],
    ];
  }
  const [deflt, listed] = l.unshapedSubnets.length ? [SHAPED_MINOR, UNSHAPED_MINOR] : [UNSHAPED_MINOR, SHAPED_MINOR];
  const cmds: string[][] = [
    ['qdisc', 'add', 'dev', dev, 'root', 'handle', '1:', 'htb', 'default', deflt],
    // Explicit buckets and quantum: tc's defaults leave a 100 Gbit/s class a zero ceil bucket and warn about the quantum.
    [
      'class',
      'add',
      'dev',
      dev,
      'parent',
      '1:',
      'classid',
      `1:${UNSHAPED_MINOR}`,
      'htb',
      'rate',
      `${UNCAPPED_RATE_BITS}bit`,
      'burst',
      UNCAPPED_BURST,
      'cburst',
      UNCAPPED_BURST,
      'quantum',
      QUANTUM,
    ],
    [
      'class',
      'add',
      'dev',
      dev,
      'parent',
      '1:',
      'classid',
      `1:${SHAPED_MINOR}`,
      'htb',
      'rate',
      `${s.rateBytes * 8}bit`,
      'burst',
      String(s.burstBytes),
      'quantum',
      QUANTUM,
    ],
  ];
  for (const c of subnets) {
    const n = network(parseCIDR(c)!);
    // One u32 filter chain per (priority, protocol): the kernel refuses a second protocol at a
    // priority already holding one ("Protocol mismatch"), so IPv6 subnets go one priority ahead,
    // as the Go reference does (IPv4 at 16, IPv6 at 15).
    const [proto, match, prio] = n.family === 4 ? ['ip', 'ip', V4_FILTER_PRIO] : ['ipv6', 'ip6', V6_FILTER_PRIO];
    cmds.push([
      'filter',
      'add',
      'dev',
      dev,
      'parent',
      '1:',
      'protocol',
      proto,
      'prio',
      prio,
      'u32',
      'match',
      match,
      remote,
      formatCIDR(n),
      'classid',
      `1:${listed}`,
    ]);
  }
  return cmds;
}

/** The redirection of everything the container sends (the host veth's ingress) to the IFB. */
export const redirectCommands = (hostDev: string, ifb: string): string[][] => [
  ['qdisc', 'add', 'dev', hostDev, 'handle', 'ffff:', 'ingress'],
  [
    'filter',
    'add',
    'dev',
    hostDev,
    'parent',
    'ffff:',
    'protocol',
    'all',
    'prio',
    '1',
    'u32',
    'match',
    'u32',
    '0',
    '0',
    'flowid',
    '1:1',
    'action',
    'mirred',
    'egress',
    'redirect',
    'dev',
    ifb,
  ],
];
