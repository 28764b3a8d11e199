/**
 * Address ranges of host-local, as pure functions: a range is a subnet with the first and
 * last address it may hand out and its gateway; a range set is a list of ranges of one family
 * from which one address is allocated. Network address, IPv4 broadcast and gateway are never
 * allocatable. Iteration is round robin: it continues after the last reserved address, as the
 * reference plugin does, so a crash-looping container does not get the same address back.
 */
import { bitsOf, firstHost, formatCIDR, formatIP, lastAddr, networkAddr, type Family, type IP, type IPNet } from '../../shared/ipnet.ts';

export interface Range {
  /** The subnet, in network form (10.1.2.0/24). */
  subnet: IPNet;
  /** First address that may be handed out (inclusive). */
  start: bigint;
  /** Last address that may be handed out (inclusive). */
  end: bigint;
  gateway: IP;
  /** Where the range was written in the config, for error messages ("ipam.ranges[0][1]"). */
  field: string;
}

export type RangeSet = Range[];

export const familyOfSet = (set: RangeSet): Family => set[0].subnet.family;

/** Between start and end of the range (same family). */
export function inRange(r: Range, ip: IP): boolean {
  return ip.family === r.subnet.family && ip.value >= r.start && ip.value <= r.end;
}

/** Network address, or the IPv4 broadcast address, of the range's subnet. */
export function isNetworkOrBroadcast(r: Range, ip: IP): boolean {
  if (ip.family !== r.subnet.family) return false;
  if (ip.value === networkAddr(r.subnet)) return true;
  return r.subnet.family === 4 && ip.value === lastAddr(r.subnet);
}

/** May this address be handed out from this range? */
export function allocatable(r: Range, ip: IP): boolean {
  return inRange(r, ip) && !isNetworkOrBroadcast(r, ip) && ip.value !== r.gateway.value;
}

export function rangeFor(set: RangeSet, ip: IP): Range | undefined {
  return set.find((r) => inRange(r, ip));
}

export const rangeSetContains = (set: RangeSet, ip: IP): boolean => rangeFor(set, ip) !== undefined;

/** Two ranges overlap when their [start, end] intervals intersect (same family). */
export function rangesOverlap(a: Range, b: Range): boolean {
  return a.subnet.family === b.subnet.family && a.start <= b.end && b.start <= a.end;
}

export function rangeSetsOverlap(a: RangeSet, b: RangeSet): boolean {
  return a.some((x) => b.some((y) => rangesOverlap(x, y)));
}

export function describeRange(r: Range): string {
  const f = r.subnet.family;
  return `${formatCIDR(r.subnet)} (${formatIP({ family: f, value: r.start })}-${formatIP({ family: f, value: r.end })})`;
}

export const describeRangeSet = (set: RangeSet): string => set.map(describeRange).join(', ');

/** Number of addresses the range can hand out. */
export function capacity(r: Range): bigint {
  const f = r.subnet.family;
  const excluded = new Set<bigint>([r.gateway.value, networkAddr(r.subnet)]);
  if (f === 4) excluded.add(lastAddr(r.subnet));
  let n = r.end - r.start + 1n;
  for (const v of excluded) if (v >= r.start && v <= r.end) n--;
  return n > 0n ? n : 0n;
}

/** Free addresses left in a set, given the reserved values of the set's family. */
export function freeCount(set: RangeSet, reserved: ReadonlySet<bigint>): bigint {
  let free = 0n;
  for (const r of set) {
    let used = 0n;
    for (const v of reserved) if (allocatable(r, { family: r.subnet.family, value: v })) used++;
    free += capacity(r) - used;
  }
  return free;
}

/**
 * Every address of the set exactly once, in allocation order: after `last` (when it lies in
 * one of the ranges) to the end of its range, the following ranges (wrapping around), then
 * the start of the first range up to `last`; otherwise from the first range's start.
 */
export function* allocationOrder(set: RangeSet, last?: IP): Generator<{ range: Range; ip: IP }> {
  const n = set.length;
  const hit = last ? set.findIndex((r) => inRange(r, last)) : -1;
  const fam = familyOfSet(set);
  const span = function* (r: Range, from: bigint, to: bigint): Generator<{ range: Range; ip: IP }> {
    for (let v = from; v <= to; v++) yield { range: r, ip: { family: fam, value: v } };
  };
  if (hit < 0 || !last) {
    for (const r of set) yield* span(r, r.start, r.end);
    return;
  }
  const first = set[hit];
  yield* span(first, last.value + 1n, first.end);
  for (let k = 1; k < n; k++) {
    const r = set[(hit + k) % n];
    yield* span(r, r.start, r.end);
  }
  yield* span(first, first.start, last.value);
}

/**
 * The next address to try: the first allocatable one in allocation order that is not in
 * `reserved` (values of the set's family). Undefined when the set is exhausted.
 */
export function nextFree(set: RangeSet, reserved: ReadonlySet<bigint>, last?: IP): { range: Range; ip: IP } | undefined {
  for (const c of allocationOrder(set, last)) {
    if (!reserved.has(c.ip.value) && allocatable(c.range, c.ip)) return c;
  }
  return undefined;
}

/** The default gateway and range bounds of a subnet, as the reference computes them. */
export function defaults(subnet: IPNet): { gateway: IP; start: bigint; end: bigint } {
  const gateway = firstHost(subnet);
  const last = lastAddr(subnet);
  return { gateway, start: networkAddr(subnet) + 1n, end: subnet.family === 4 ? last - 1n : last };
}

/** Smallest subnet (largest prefix) a range may have: two host bits, as the reference requires. */
export const maxPrefix = (f: Family): number => bitsOf(f) - 2;
