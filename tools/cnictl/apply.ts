/**
 * `cnictl apply -f FILE|-`: create or replace every object of a manifest (YAML or JSON, several
 * documents, mixed kinds). Every document is validated first; if one is invalid, nothing is
 * applied and each problem is printed with the document's position, kind, name and field.
 */
import { parseArgs } from 'node:util';
import { describeDocument, validateObject, withDefaults } from '../../shared/objects/validate.ts';
import type { CniObject } from '../../shared/objects/types.ts';
import { ConflictError, refOf, refString, storedForm, StoreUnavailableError, type ObjectStore } from '../../shared/store/index.ts';
import { serviceApplyProblems } from './services.ts';
import { CliError, docLabel, isNamespaced, qualifiedName, readManifests, UsageError, type Ctx } from './common.ts';

export const usage = `usage: cnictl apply -f FILE [-f FILE ...] [-n NAMESPACE] [--dry-run]
  -f, --filename FILE   a manifest (YAML or JSON, several documents, mixed kinds); - reads stdin;
                        a directory: its *.yaml, *.yml, *.json files
  -n, --namespace NS    namespace for namespaced objects that name none (default "default")
      --dry-run         validate only; nothing is written
Creates objects that do not exist and replaces those that do (labels set with \`cnictl label\`
that the document does not carry are dropped); identical objects are left alone.
`;

/** Stable JSON (sorted keys) for comparing objects. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

export type ApplyResult = 'created' | 'configured' | 'unchanged';

/** Create or replace one object (compare-and-swap, retried on conflict). */
export async function applyOne(store: ObjectStore, object: CniObject): Promise<ApplyResult> {
  const want = storedForm(object);
  for (let attempt = 0; ; attempt++) {
    const cur = await store.get(refOf(want));
    try {
      if (!cur) {
        await store.put(want, { expectRevision: 0 });
        return 'created';
      }
      if (canonical(storedForm(cur.object)) === canonical(want)) return 'unchanged';
      await store.put(want, { expectRevision: cur.revision });
      return 'configured';
    } catch (e) {
      if (!(e instanceof ConflictError) || attempt >= 10) throw e;
    }
  }
}

export async function run(ctx: Ctx, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      filename: { type: 'string', short: 'f', multiple: true },
      namespace: { type: 'string', short: 'n' },
      'dry-run': { type: 'boolean' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  if (!values.filename?.length) throw new UsageError('apply needs -f FILE (-f - reads stdin)');
  const manifests = (await Promise.all(values.filename.map((f) => readManifests(ctx, f)))).flat();
  const problems: string[] = [];
  const objects: CniObject[] = [];
  const seen = new Map<string, string>();
  for (const m of manifests) {
    const label = docLabel(m, describeDocument(m.doc));
    const p = validateObject(m.doc);
    if (p.length) {
      problems.push(...p.map((x) => `${label}: ${x}`));
      continue;
    }
    const o = structuredClone(m.doc) as CniObject;
    if (isNamespaced(o.kind)) {
      const ns = o.metadata.namespace;
      if (values.namespace && ns && ns !== values.namespace) {
        problems.push(`${label}: metadata.namespace: ${JSON.stringify(ns)} does not match -n ${values.namespace}`);
        continue;
      }
      o.metadata.namespace = ns || values.namespace || 'default';
    }
    const key = refString(refOf(o));
    const before = seen.get(key);
    if (before) {
      problems.push(`${label}: ${key} is also ${before}`);
      continue;
    }
    seen.set(key, `document ${m.index}`);
    objects.push(withDefaults(o));
  }
  if (!problems.length) problems.push(...(await serviceApplyProblems(objects, () => ctx.store(), ctx.config().serviceCIDR)));
  if (problems.length) {
    ctx.err(
      `${problems.map((p) => `error: ${p}`).join('\n')}\nnothing applied (${problems.length} problem${problems.length > 1 ? 's' : ''})\n`,
    );
    return 1;
  }
  if (values['dry-run']) {
    for (const o of objects) ctx.out(`${qualifiedName(o.kind, o.metadata.name)} valid (dry run)\n`);
    return 0;
  }
  const store = await ctx.store();
  let done = 0;
  for (const o of objects) {
    try {
      ctx.out(`${qualifiedName(o.kind, o.metadata.name)} ${await applyOne(store, o)}\n`);
      done += 1;
    } catch (e) {
      const rest = objects.length - done;
      if (e instanceof StoreUnavailableError)
        throw new CliError(`store unavailable: ${e.message}${done ? ` (${done} applied, ${rest} not)` : ''}`);
      throw e;
    }
  }
  return 0;
}
