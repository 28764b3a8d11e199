/**
 * `cnictl delete -f FILE|-` (the objects a manifest names) and `cnictl delete KIND NAME...`.
 * An object that is not there is reported and makes the exit code 1 (the others are still
 * deleted), unless --ignore-not-found.
 */
import { parseArgs } from 'node:util';
import { describeDocument, KINDS } from '../../shared/objects/validate.ts';
import type { Kind } from '../../shared/objects/types.ts';
import { refString, type ObjectRef } from '../../shared/store/index.ts';
import { CliError, docLabel, isNamespaced, qualifiedName, readManifests, resourceOf, splitName, UsageError, type Ctx } from './common.ts';

export const usage = `usage: cnictl delete -f FILE [-f FILE ...] [-n NAMESPACE] [--ignore-not-found]
       cnictl delete KIND NAME|NAMESPACE/NAME ... [-n NAMESPACE] [--ignore-not-found]
  -f, --filename FILE   delete the objects a manifest names (YAML or JSON); - reads stdin, a directory its *.yaml|*.yml|*.json
  -n, --namespace NS    namespace of namespaced objects that name none (default "default")
`;

export async function run(ctx: Ctx, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      filename: { type: 'string', short: 'f', multiple: true },
      namespace: { type: 'string', short: 'n' },
      'ignore-not-found': { type: 'boolean' },
    },
    allowPositionals: true,
    strict: true,
  });
  const refs: ObjectRef[] = [];
  if (values.filename?.length) {
    if (positionals.length) throw new UsageError('give either -f FILE or KIND NAME, not both');
    const problems: string[] = [];
    for (const m of (await Promise.all(values.filename.map((f) => readManifests(ctx, f)))).flat()) {
      const d = m.doc as { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown } };
      const label = docLabel(m, describeDocument(m.doc));
      if (typeof d?.kind !== 'string' || !KINDS.includes(d.kind as Kind)) {
        problems.push(`${label}: kind: ${JSON.stringify(d?.kind)} is not a kind cni-ts stores`);
        continue;
      }
      const name = d.metadata?.name;
      if (typeof name !== 'string' || !name) {
        problems.push(`${label}: metadata.name: is required`);
        continue;
      }
      const kind = d.kind as Kind;
      const ns = typeof d.metadata?.namespace === 'string' ? d.metadata.namespace : undefined;
      refs.push({ kind, name, namespace: isNamespaced(kind) ? ns || values.namespace || 'default' : '' });
    }
    if (problems.length) {
      ctx.err(`${problems.map((p) => `error: ${p}`).join('\n')}\nnothing deleted\n`);
      return 1;
    }
  } else {
    const [word, ...names] = positionals;
    if (!word) throw new UsageError('delete needs -f FILE or KIND NAME');
    const r = resourceOf(word);
    if (!r) throw new UsageError(`unknown kind ${JSON.stringify(word)}`);
    if (!names.length) throw new UsageError(`delete ${word}: give the NAME of what to delete`);
    for (const n of names) refs.push({ kind: r.kind, ...splitName(r.kind, n, values.namespace) });
  }
  const store = await ctx.store();
  let missing = 0;
  for (const ref of refs) {
    if (await store.delete(ref)) ctx.out(`${qualifiedName(ref.kind, ref.name)} deleted\n`);
    else if (!values['ignore-not-found']) {
      missing += 1;
      ctx.err(`error: ${refString(ref)} not found\n`);
    }
  }
  if (missing) throw new CliError(`${missing} of ${refs.length} not found`);
  return 0;
}
