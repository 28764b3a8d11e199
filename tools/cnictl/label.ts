/**
 * `cnictl label KIND NAME|NAMESPACE/NAME k=v ... k- ... [--overwrite]`, as kubectl label:
 * `k=v` adds a label (changing an existing one's value needs --overwrite), `k-` removes one.
 * A compare-and-swap update, retried when someone else wrote the object meanwhile, so a label
 * change never loses a concurrent write (the endpoint plugin re-registering, another label).
 * A namespace that endpoints use but nobody applied is created with the labels.
 */
import { parseArgs } from 'node:util';
import { NAMESPACE_NAME_LABEL } from '../../shared/objects/selectors.ts';
import type { CniObject, Namespace } from '../../shared/objects/types.ts';
import { labelKeyProblem, labelValueProblem } from '../../shared/objects/validate.ts';
import { ConflictError } from '../../shared/store/index.ts';
import { CliError, qualifiedName, resourceOf, splitName, UsageError, type Ctx } from './common.ts';

export const usage = `usage: cnictl label KIND NAME|NAMESPACE/NAME KEY=VALUE ... KEY- ... [-n NAMESPACE] [--overwrite]
  KEY=VALUE      set a label; changing a label that has another value needs --overwrite
  KEY-           remove a label
  e.g. cnictl label endpoint x/web-1 tier=frontend legacy-
       cnictl label namespace x team=payments
`;

export interface LabelChange {
  set: Record<string, string>;
  remove: string[];
}

export function parseLabelArgs(args: string[]): LabelChange {
  const change: LabelChange = { set: {}, remove: [] };
  for (const a of args) {
    if (a.endsWith('-') && !a.includes('=')) {
      const k = a.slice(0, -1);
      const p = labelKeyProblem(k);
      if (p) throw new UsageError(p);
      change.remove.push(k);
      continue;
    }
    const eq = a.indexOf('=');
    if (eq <= 0) throw new UsageError(`${JSON.stringify(a)} is neither KEY=VALUE nor KEY-`);
    const k = a.slice(0, eq);
    const v = a.slice(eq + 1);
    const p = labelKeyProblem(k) ?? labelValueProblem(v);
    if (p) throw new UsageError(p);
    if (k in change.set || change.remove.includes(k)) throw new UsageError(`label ${k} is given twice`);
    change.set[k] = v;
  }
  for (const k of change.remove) if (k in change.set) throw new UsageError(`label ${k} is both set and removed`);
  return change;
}

/** The new labels, or an error message (a changed value without overwrite). */
export function applyLabelChange(
  cur: Record<string, string> | undefined,
  change: LabelChange,
  overwrite: boolean,
): Record<string, string> | string {
  const out = { ...(cur ?? {}) };
  for (const [k, v] of Object.entries(change.set)) {
    if (k in out && out[k] !== v && !overwrite) return `'${k}' already has a value (${out[k]}), and --overwrite is false`;
    out[k] = v;
  }
  for (const k of change.remove) delete out[k];
  return out;
}

export async function run(ctx: Ctx, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { namespace: { type: 'string', short: 'n' }, overwrite: { type: 'boolean' } },
    allowPositionals: true,
    strict: true,
  });
  const [word, nameArg, ...labelArgs] = positionals;
  if (!word || !nameArg) throw new UsageError('label needs KIND and NAME');
  if (!labelArgs.length) throw new UsageError('label needs at least one KEY=VALUE or KEY-');
  const r = resourceOf(word);
  if (!r) throw new UsageError(`unknown kind ${JSON.stringify(word)}`);
  const change = parseLabelArgs(labelArgs);
  const ref = { kind: r.kind, ...splitName(r.kind, nameArg, values.namespace) };
  if (ref.kind === 'Namespace' && (NAMESPACE_NAME_LABEL in change.set || change.remove.includes(NAMESPACE_NAME_LABEL))) {
    throw new CliError(`${NAMESPACE_NAME_LABEL} is set by cni-ts to the namespace's name and cannot be changed`);
  }
  const store = await ctx.store();
  for (let attempt = 0; ; attempt++) {
    const cur = await store.get(ref);
    let object: CniObject;
    if (!cur) {
      if (ref.kind !== 'Namespace')
        throw new CliError(`${r.plural} ${JSON.stringify(ref.name)} not found${ref.namespace ? ` in namespace ${ref.namespace}` : ''}`);
      object = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ref.name } } satisfies Namespace;
    } else object = cur.object;
    const labels = applyLabelChange(object.metadata.labels, change, Boolean(values.overwrite));
    if (typeof labels === 'string') throw new CliError(labels);
    const metadata = { ...object.metadata, labels };
    if (!Object.keys(labels).length) delete (metadata as { labels?: unknown }).labels;
    try {
      await store.put({ ...object, metadata } as CniObject, { expectRevision: cur?.revision ?? 0 });
      ctx.out(`${qualifiedName(ref.kind, ref.name)} ${cur ? 'labeled' : 'created and labeled'}\n`);
      return 0;
    } catch (e) {
      if (!(e instanceof ConflictError) || attempt >= 20) throw e;
    }
  }
}
