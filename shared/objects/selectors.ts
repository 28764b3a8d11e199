/**
 * Kubernetes label selectors (metav1.LabelSelector), with the API server's semantics:
 * - an empty selector (`{}`) selects everything; so does `undefined` here (where an absent
 *   selector means something else, as a NetworkPolicy peer's absent namespaceSelector means
 *   "the policy's own namespace", the caller decides before asking);
 * - `matchLabels` and every `matchExpressions` requirement must all hold (AND);
 * - `In`: the key is present and its value is one of `values`; `NotIn`: the key is absent or
 *   its value is not one of `values`; `Exists` / `DoesNotExist`: presence only.
 */
import type { LabelSelector, LabelSelectorRequirement, Namespace } from './types.ts';

export type Labels = Readonly<Record<string, string>>;

/** The label Kubernetes puts on every namespace (and we too, applied or not). */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

function requirementHolds(r: LabelSelectorRequirement, labels: Labels): boolean {
  const has = Object.prototype.hasOwnProperty.call(labels, r.key);
  switch (r.operator) {
    case 'In':
      return has && (r.values ?? []).includes(labels[r.key] as string);
    case 'NotIn':
      return !has || !(r.values ?? []).includes(labels[r.key] as string);
    case 'Exists':
      return has;
    case 'DoesNotExist':
      return !has;
    default:
      // An unknown operator selects nothing (validation rejects it before it is stored).
      return false;
  }
}

/** Does `selector` select an object with these labels? Empty or undefined selects all. */
export function matchesSelector(selector: LabelSelector | undefined, labels: Labels | undefined): boolean {
  if (!selector) return true;
  const l = labels ?? {};
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    if (!Object.prototype.hasOwnProperty.call(l, k) || l[k] !== v) return false;
  }
  for (const r of selector.matchExpressions ?? []) if (!requirementHolds(r, l)) return false;
  return true;
}

/** True for `{}` (or a selector with only empty lists): selects every object. */
export function isEmptySelector(selector: LabelSelector | undefined): boolean {
  return !selector || (Object.keys(selector.matchLabels ?? {}).length === 0 && (selector.matchExpressions ?? []).length === 0);
}

/**
 * The labels of namespace `name`: those of its Namespace object (if one was applied) plus
 * `kubernetes.io/metadata.name: <name>`, which is always there (a namespace that endpoints
 * use but nobody applied still has it, as Kubernetes guarantees the label is immutable).
 */
export function namespaceLabels(ns: Namespace | undefined, name: string): Record<string, string> {
  return { ...(ns?.metadata.labels ?? {}), [NAMESPACE_NAME_LABEL]: name };
}

/** kubectl's one-line form: `app=web,tier in (a,b),!legacy`. "<none>" for an empty selector. */
export function selectorString(selector: LabelSelector | undefined): string {
  if (isEmptySelector(selector)) return '<none>';
  const parts: string[] = [];
  for (const [k, v] of Object.entries(selector?.matchLabels ?? {})) parts.push(`${k}=${v}`);
  for (const r of selector?.matchExpressions ?? []) {
    if (r.operator === 'In') parts.push(`${r.key} in (${(r.values ?? []).join(',')})`);
    else if (r.operator === 'NotIn') parts.push(`${r.key} notin (${(r.values ?? []).join(',')})`);
    else if (r.operator === 'Exists') parts.push(r.key);
    else parts.push(`!${r.key}`);
  }
  return parts.join(',');
}

/**
 * kubectl's `-l` syntax to a LabelSelector: `k=v` / `k==v`, `k!=v` (NotIn, which also selects
 * objects without k), `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, joined by commas (AND).
 * Throws an Error naming the part it cannot read.
 */
export function parseSelector(s: string): LabelSelector {
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  parts.push(cur);
  const sel: Required<LabelSelector> = { matchLabels: {}, matchExpressions: [] };
  for (const raw of parts) {
    const p = raw.trim();
    if (!p) continue;
    let m: RegExpMatchArray | null;
    if ((m = /^([^\s!=(),]+)\s+(in|notin)\s+\(([^()]*)\)$/.exec(p))) {
      const values = (m[3] as string)
        .split(',')
        .map((v) => v.trim())
        .filter(Boolean);
      if (!values.length) throw new Error(`selector ${JSON.stringify(p)}: the list is empty`);
      sel.matchExpressions.push({ key: m[1] as string, operator: m[2] === 'in' ? 'In' : 'NotIn', values });
    } else if ((m = /^([^\s!=(),]+)\s*!=\s*([^\s!=(),]*)$/.exec(p))) {
      sel.matchExpressions.push({ key: m[1] as string, operator: 'NotIn', values: [m[2] as string] });
    } else if ((m = /^([^\s!=(),]+)\s*==?\s*([^\s!=(),]*)$/.exec(p))) {
      sel.matchLabels[m[1] as string] = m[2] as string;
    } else if ((m = /^!\s*([^\s!=(),]+)$/.exec(p))) {
      sel.matchExpressions.push({ key: m[1] as string, operator: 'DoesNotExist' });
    } else if (/^[^\s!=(),]+$/.test(p)) {
      sel.matchExpressions.push({ key: p, operator: 'Exists' });
    } else throw new Error(`selector ${JSON.stringify(p)}: expected k=v, k!=v, k, !k, k in (a,b) or k notin (a,b)`);
  }
  return sel;
}
