/**
 * Rendering a compiled `Ruleset` as nft scripts. Pure (strings only): the caller applies them
 * with one `nft -f` (shared/kernel/nft.ts nftApply) — one transaction, so the table is never
 * seen half-written.
 */
import type { NftChain, NftMap, NftSet, Ruleset } from './compile.ts';

/** The policy table's family: one inet table handles IPv4 and IPv6. */
export const POLICY_TABLE_FAMILY = 'inet';
/** Default policy table name (the agent and the endpoint plugin use the same one). */
export const POLICY_TABLE = 'cni_ts_policy';

const HOOK_PRIORITY = 'filter';

function renderSet(s: NftSet, indent: string): string {
  const lines = [`${indent}set ${s.name} {`, `${indent}\ttype ${s.type}`];
  if (s.flags && s.flags.length > 0) lines.push(`${indent}\tflags ${s.flags.join(', ')}`);
  if (s.elements.length > 0) lines.push(`${indent}\telements = { ${s.elements.join(', ')} }`);
  lines.push(`${indent}}`);
  return lines.join('\n');
}

function renderMap(m: NftMap, indent: string): string {
  const lines = [`${indent}map ${m.name} {`, `${indent}\ttype ${m.type}`];
  if (m.elements.length > 0) lines.push(`${indent}\telements = { ${m.elements.map(([k, v]) => `${k} : ${v}`).join(', ')} }`);
  lines.push(`${indent}}`);
  return lines.join('\n');
}

function renderChain(c: NftChain, indent: string): string {
  const lines = [`${indent}chain ${c.name} {`];
  if (c.hook) lines.push(`${indent}\ttype filter hook ${c.hook} priority ${HOOK_PRIORITY}; policy accept;`);
  for (const r of c.rules) lines.push(`${indent}\t${r}`);
  lines.push(`${indent}}`);
  return lines.join('\n');
}

/** The table's definition alone (`table inet NAME { ... }`). */
export function renderTable(rs: Ruleset, table = POLICY_TABLE): string {
  const body: string[] = [];
  for (const c of rs.counters) body.push(`\tcounter ${c} {}`);
  for (const s of rs.sets) body.push(renderSet(s, '\t'));
  for (const m of rs.maps) body.push(renderMap(m, '\t'));
  // nft resolves jump/goto targets and the maps' "jump <chain>" over the whole transaction
  return [`table ${POLICY_TABLE_FAMILY} ${table} {`, ...body, ...rs.chains.map((c) => renderChain(c, '\t')), '}'].join('\n');
}

/**
 * One `nft -f` script replacing the whole table atomically: create it if absent, delete it,
 * define it anew, in one transaction (counters restart from zero).
 */
export function renderNft(rs: Ruleset, table = POLICY_TABLE): string {
  return `table ${POLICY_TABLE_FAMILY} ${table} {}\ndelete table ${POLICY_TABLE_FAMILY} ${table}\n${renderTable(rs, table)}\n`;
}

/** Names of what a table holds now (from `nft -j list chains|sets|maps|counters table inet T`). */
export interface ExistingNames {
  chains: string[];
  sets: string[];
  maps: string[];
  counters: string[];
}

/** ExistingNames from the output of `nft -j [-t] list table inet T` (-t: without elements, cheaper). */
export function existingFromNftJson(json: string): ExistingNames {
  const out: ExistingNames = { chains: [], sets: [], maps: [], counters: [] };
  const parsed = JSON.parse(json || '{"nftables":[]}') as { nftables?: Record<string, { name?: string }>[] };
  for (const o of parsed.nftables ?? []) {
    if (o.chain?.name) out.chains.push(o.chain.name);
    else if (o.set?.name) out.sets.push(o.set.name);
    else if (o.map?.name) out.maps.push(o.map.name);
    else if (o.counter?.name) out.counters.push(o.counter.name);
  }
  return out;
}

/**
 * One `nft -f` script redefining the whole table like `renderNft`, but keeping the named
 * counters' values: the table is created if absent and flushed instead of deleted, every desired
 * set and map is emptied and refilled, chains are refilled. With `existing` (the names the
 * kernel holds now), objects no longer desired are removed too; without it they stay behind,
 * empty and unreferenced (harmless; pass `existing` now and then, or use renderNft).
 * Atomic like the others: packets see the old table or the new one.
 */
export function renderResync(rs: Ruleset, table = POLICY_TABLE, existing?: ExistingNames): string {
  const t = `${POLICY_TABLE_FAMILY} ${table}`;
  const out = [`table ${t} {}`, `flush table ${t}`];
  // declare (creates what is absent; same name = same type, by construction) and empty
  const decl = [
    ...rs.sets.map((x) => `\tset ${x.name} { type ${x.type};${x.flags?.length ? ` flags ${x.flags.join(', ')};` : ''} }`),
    ...rs.maps.map((m) => `\tmap ${m.name} { type ${m.type}; }`),
  ];
  out.push(`table ${t} {`, ...decl, '}');
  for (const x of rs.sets) out.push(`flush set ${t} ${x.name}`);
  for (const m of rs.maps) out.push(`flush map ${t} ${m.name}`);
  if (existing) {
    const want = (names: string[]): Set<string> => new Set(names);
    const chains = want(rs.chains.map((c) => c.name));
    const sets = want(rs.sets.map((x) => x.name));
    const maps = want(rs.maps.map((m) => m.name));
    const counters = want(rs.counters);
    for (const m of existing.maps) if (!maps.has(m)) out.push(`flush map ${t} ${m}`, `delete map ${t} ${m}`);
    for (const c of existing.chains) if (!chains.has(c)) out.push(`delete chain ${t} ${c}`);
    for (const x of existing.sets) if (!sets.has(x)) out.push(`delete set ${t} ${x}`);
    for (const c of existing.counters) if (!counters.has(c)) out.push(`delete counter ${t} ${c}`);
  }
  out.push(renderTable(rs, table));
  return `${out.join('\n')}\n`;
}

/** Script removing the table (no error when it is absent). */
export function renderDelete(table = POLICY_TABLE): string {
  return `table ${POLICY_TABLE_FAMILY} ${table} {}\ndelete table ${POLICY_TABLE_FAMILY} ${table}\n`;
}

const hookSpec = (c: NftChain): string => (c.hook ? ` { type filter hook ${c.hook} priority ${HOOK_PRIORITY}; policy accept; }` : '');

function elementDiff(t: string, name: string, before: string[], after: string[], out: string[]): void {
  const b = new Set(before);
  const a = new Set(after);
  const del = before.filter((e) => !a.has(e));
  const add = after.filter((e) => !b.has(e));
  // delete first, then add: a changed interval is never present twice
  if (del.length > 0) out.push(`delete element ${t} ${name} { ${del.join(', ')} }`);
  if (add.length > 0) out.push(`add element ${t} ${name} { ${add.join(', ')} }`);
}

function mapDiff(t: string, name: string, before: [string, string][], after: [string, string][], out: string[]): void {
  // the usual case (a policy change): the same keys in the same order, a few values differ
  if (before.length === after.length && before.every((e, i) => e[0] === after[i]![0])) {
    const changed = after.filter((e, i) => e[1] !== before[i]![1]);
    if (changed.length > 0) {
      out.push(`delete element ${t} ${name} { ${changed.map(([k]) => k).join(', ')} }`);
      out.push(`add element ${t} ${name} { ${changed.map(([k, v]) => `${k} : ${v}`).join(', ')} }`);
    }
    return;
  }
  const b = new Map(before);
  const a = new Map(after);
  const del = [...b.keys()].filter((k) => a.get(k) !== b.get(k));
  const add = [...a.entries()].filter(([k, v]) => b.get(k) !== v);
  if (del.length > 0) out.push(`delete element ${t} ${name} { ${del.join(', ')} }`);
  if (add.length > 0) out.push(`add element ${t} ${name} { ${add.map(([k, v]) => `${k} : ${v}`).join(', ')} }`);
}

/**
 * One transaction taking the table from `prev` (what the kernel holds) to `next`, touching only
 * what differs: new counters, sets and chains are added; set and map elements are diffed;
 * changed chains are flushed and refilled; what is gone is removed (after everything that
 * referenced it). Counters keep counting. Empty string: nothing to do. If the kernel does not
 * hold `prev` the transaction fails as a whole and changes nothing: apply `renderNft(next)`.
 */
export function renderUpdate(prev: Ruleset, next: Ruleset, table = POLICY_TABLE): string {
  const t = `${POLICY_TABLE_FAMILY} ${table}`;
  const out: string[] = [];
  const prevCounters = new Set(prev.counters);
  const nextCounters = new Set(next.counters);
  const prevSets = new Map(prev.sets.map((x) => [x.name, x]));
  const nextSets = new Map(next.sets.map((x) => [x.name, x]));
  const prevMaps = new Map(prev.maps.map((x) => [x.name, x]));
  const nextMaps = new Map(next.maps.map((x) => [x.name, x]));
  const prevChains = new Map(prev.chains.map((x) => [x.name, x]));
  const nextChains = new Map(next.chains.map((x) => [x.name, x]));
  const sameSet = (a: NftSet, b: NftSet): boolean => a.type === b.type && (a.flags ?? []).join() === (b.flags ?? []).join();

  // 1. what is new (chains empty for now: rules may jump to each other)
  for (const c of next.counters) if (!prevCounters.has(c)) out.push(`add counter ${t} ${c}`);
  const recreatedSets = new Set<string>();
  for (const x of next.sets) {
    const old = prevSets.get(x.name);
    if (old && sameSet(old, x)) continue;
    if (old) recreatedSets.add(x.name);
    else out.push(`add set ${t} ${x.name} { type ${x.type};${x.flags?.length ? ` flags ${x.flags.join(', ')};` : ''} }`);
  }
  for (const m of next.maps)
    if (!prevMaps.has(m.name) || prevMaps.get(m.name)?.type !== m.type) out.push(`add map ${t} ${m.name} { type ${m.type}; }`);
  const changed: NftChain[] = [];
  for (const c of next.chains) {
    const old = prevChains.get(c.name);
    if (old === c) continue; // the same object (PolicyCompiler reuses unchanged chains): nothing to compare
    if (!old) {
      out.push(`add chain ${t} ${c.name}${hookSpec(c)}`);
      changed.push(c);
    } else if (old.hook !== c.hook || old.rules.join('\n') !== c.rules.join('\n')) {
      changed.push(c);
    }
  }
  // 2. elements
  for (const x of next.sets) {
    const old = prevSets.get(x.name);
    if (old === x) continue;
    elementDiff(t, x.name, old && sameSet(old, x) ? old.elements : [], x.elements, out);
  }
  for (const m of next.maps) {
    const old = prevMaps.get(m.name);
    if (old === m) continue;
    mapDiff(t, m.name, old && old.type === m.type ? old.elements : [], m.elements, out);
  }
  // 3. chains: refill the changed ones, empty the ones that go
  const gone = prev.chains.filter((c) => !nextChains.has(c.name));
  for (const c of [...changed.filter((c) => prevChains.has(c.name)), ...gone]) out.push(`flush chain ${t} ${c.name}`);
  for (const c of changed) for (const r of c.rules) out.push(`add rule ${t} ${c.name} ${r}`);
  // 4. what is gone (nothing references it any more)
  for (const c of gone) out.push(`delete chain ${t} ${c.name}`);
  for (const m of prev.maps) if (!nextMaps.has(m.name)) out.push(`delete map ${t} ${m.name}`);
  for (const x of prev.sets) if (!nextSets.has(x.name)) out.push(`delete set ${t} ${x.name}`);
  for (const c of prev.counters) if (!nextCounters.has(c)) out.push(`delete counter ${t} ${c}`);
  if (recreatedSets.size > 0) throw new Error(`set ${[...recreatedSets].join(', ')} changed type: render the whole table`);
  return out.length > 0 ? `${out.join('\n')}\n` : '';
}

const sameShape = (a: Ruleset, b: Ruleset): boolean =>
  JSON.stringify(a.chains) === JSON.stringify(b.chains) &&
  JSON.stringify(a.counters) === JSON.stringify(b.counters) &&
  JSON.stringify(a.sets.map((s) => [s.name, s.type, s.flags ?? []])) ===
    JSON.stringify(b.sets.map((s) => [s.name, s.type, s.flags ?? []])) &&
  JSON.stringify(a.maps.map((m) => [m.name, m.type])) === JSON.stringify(b.maps.map((m) => [m.name, m.type]));

/**
 * Element-only changes from `prev` to `next` (endpoint churn within existing groups), or null
 * when chains, sets or counters differ (then use `renderUpdate` or `renderNft`).
 */
export function renderSetUpdates(prev: Ruleset, next: Ruleset, table = POLICY_TABLE): string | null {
  if (!sameShape(prev, next)) return null;
  return renderUpdate(prev, next, table);
}
