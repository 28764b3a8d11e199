/**
 * Batched kernel counter reads for the metrics sampler: ONE `ip -s -json link show`, ONE
 * `tc -s -json qdisc show` and ONE `nft -j list counters table ...` give every interface's, qdisc's
 * and policy rule's counters, so the cost of a sample does not grow with a process per endpoint. Parsers are pure (unit-tested
 * on recorded output); the readers are thin.
 */
import type { EndpointCounters } from '../monitoring.ts';
import { run } from './exec.ts';

/** One interface's counters as the kernel keeps them (its own rx/tx), with its index (a recreated link has a new one). */
export interface LinkCounters extends EndpointCounters {
  ifindex: number;
}

interface RawLink {
  ifindex?: number;
  ifname?: string;
  stats64?: { rx?: Record<string, number>; tx?: Record<string, number> };
  stats?: { rx?: Record<string, number>; tx?: Record<string, number> };
}

const n = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

/** `ip -s -json link show` output → counters by interface name. */
export function parseLinkStats(json: string): Map<string, LinkCounters> {
  const out = new Map<string, LinkCounters>();
  if (!json.trim()) return out;
  for (const l of JSON.parse(json) as RawLink[]) {
    if (!l.ifname) continue;
    const s = l.stats64 ?? l.stats ?? {};
    const rx = s.rx ?? {};
    const tx = s.tx ?? {};
    out.set(l.ifname, {
      ifindex: n(l.ifindex),
      rxBytes: n(rx.bytes),
      txBytes: n(tx.bytes),
      rxPackets: n(rx.packets),
      txPackets: n(tx.packets),
      rxErrors: n(rx.errors),
      txErrors: n(tx.errors),
      rxDropped: n(rx.dropped),
      txDropped: n(tx.dropped),
    });
  }
  return out;
}

/** Every interface's counters in one `ip -s -json link show` (in `netns` when given). */
export async function readLinkStats(netns?: string): Promise<Map<string, LinkCounters>> {
  const r = await run('ip', ['-s', '-json', 'link', 'show'], { netns });
  return parseLinkStats(r.stdout);
}

export interface QdiscCounters {
  kind: string;
  handle: string;
  root: boolean;
  /** "ffff:fff1" for an ingress / clsact qdisc, the parent class otherwise; undefined at the root */
  parent?: string;
  bytes: number;
  packets: number;
  drops: number;
  overlimits: number;
  backlog: number;
  /** TBF rate in bytes/s (tc -json prints bytes/s) */
  rate?: number;
}

/** The qdiscs of one device: the root one (egress shaping) and the others. */
export interface DevQdiscs {
  root?: QdiscCounters;
  all: QdiscCounters[];
  /** drops of every qdisc on the device (egress root and ingress) */
  drops: number;
}

interface RawQdisc {
  kind?: string;
  handle?: string;
  dev?: string;
  root?: boolean;
  parent?: string;
  options?: { rate?: unknown };
  bytes?: number;
  packets?: number;
  drops?: number;
  overlimits?: number;
  backlog?: number;
}

/** `tc -s -json qdisc show` output → qdiscs by device. */
export function parseQdiscStats(json: string): Map<string, DevQdiscs> {
  const out = new Map<string, DevQdiscs>();
  if (!json.trim()) return out;
  for (const q of JSON.parse(json) as RawQdisc[]) {
    if (!q.dev || !q.kind) continue;
    const c: QdiscCounters = {
      kind: q.kind,
      handle: q.handle ?? '',
      root: q.root === true,
      ...(q.parent ? { parent: q.parent } : {}),
      bytes: n(q.bytes),
      packets: n(q.packets),
      drops: n(q.drops),
      overlimits: n(q.overlimits),
      backlog: n(q.backlog),
      ...(q.kind === 'tbf' && typeof q.options?.rate === 'number' ? { rate: q.options.rate } : {}),
    };
    let d = out.get(q.dev);
    if (!d) out.set(q.dev, (d = { all: [], drops: 0 }));
    d.all.push(c);
    if (c.root) d.root = c;
    // a classful root aggregates its children's drops: count the root and non-child qdiscs only
    if (c.root || c.parent === 'ffff:fff1' || c.kind === 'ingress' || c.kind === 'clsact') d.drops += c.drops;
  }
  return out;
}

/** Every qdisc's counters in one `tc -s -json qdisc show`. */
export async function readQdiscStats(netns?: string): Promise<Map<string, DevQdiscs>> {
  const r = await run('tc', ['-s', '-json', 'qdisc', 'show'], { netns, allowFail: true });
  if (r.exitCode !== 0) return new Map();
  return parseQdiscStats(r.stdout);
}

export interface NftCounter {
  name: string;
  packets: number;
  bytes: number;
}

/** `nft -j list counters table FAMILY TABLE` output → the named counters. */
export function parseNftCounters(json: string): NftCounter[] {
  if (!json.trim()) return [];
  const doc = JSON.parse(json) as { nftables?: Array<{ counter?: { name?: string; packets?: number; bytes?: number } }> };
  const out: NftCounter[] = [];
  for (const o of doc.nftables ?? [])
    if (o.counter?.name) out.push({ name: o.counter.name, packets: n(o.counter.packets), bytes: n(o.counter.bytes) });
  return out;
}
