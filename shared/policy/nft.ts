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

/** Script removing the table (no error when it is absent). */
export function renderDelete(table = POLICY_TABLE): string {
  return `table ${POLICY_TABLE_FAMILY} ${table} {}\ndelete table ${POLICY_TABLE_FAMILY} ${table}\n`;
}

const sameShape = (a: Ruleset, b: Ruleset): boolean =>
  JSON.stringify(a.chains) === JSON.stringify(b.chains) &&
  JSON.stringify(a.counters) === JSON.stringify(b.counters) &&
  JSON.stringify(a.sets.map((s) => [s.name, s.type, s.flags ?? []])) === JSON.stringify(b.sets.map((s) => [s.name, s.type, s.flags ?? []])) &&
  JSON.stringify(a.maps.map((m) => [m.name, m.type])) === JSON.stringify(b.maps.map((m) => [m.name, m.type]));

/**
 * Element-only changes from `prev` (what the kernel holds) to `next`: `add element` / `delete
 * element` commands in one script, or null when the chains, sets or counters differ in shape
 * (then apply `renderNft(next)`). Counters keep counting. Empty string: nothing to do.
 * The caller must be sure the kernel holds `prev` (else a delete of a missing element fails the
 * transaction, which changes nothing: fall back to the full script).
 */
export function renderSetUpdates(prev: Ruleset, next: Ruleset, table = POLICY_TABLE): string | null {
  if (!sameShape(prev, next)) return null;
  const out: string[] = [];
  const t = `${POLICY_TABLE_FAMILY} ${table}`;
  for (let i = 0; i < next.sets.length; i++) {
    const before = new Set(prev.sets[i].elements);
    const after = new Set(next.sets[i].elements);
    const del = [...before].filter((e) => !after.has(e));
    const add = [...after].filter((e) => !before.has(e));
    // interval sets: delete first, then add (a changed range is never both at once)
    if (del.length > 0) out.push(`delete element ${t} ${next.sets[i].name} { ${del.join(', ')} }`);
    if (add.length > 0) out.push(`add element ${t} ${next.sets[i].name} { ${add.join(', ')} }`);
  }
  for (let i = 0; i < next.maps.length; i++) {
    const before = new Map(prev.maps[i].elements);
    const after = new Map(next.maps[i].elements);
    const del = [...before.keys()].filter((k) => after.get(k) !== before.get(k));
    const add = [...after.entries()].filter(([k, v]) => before.get(k) !== v);
    if (del.length > 0) out.push(`delete element ${t} ${next.maps[i].name} { ${del.join(', ')} }`);
    if (add.length > 0) out.push(`add element ${t} ${next.maps[i].name} { ${add.map(([k, v]) => `${k} : ${v}`).join(', ')} }`);
  }
  return out.length > 0 ? `${out.join('\n')}\n` : '';
}
