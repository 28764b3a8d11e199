/**
 * JSON Schema validation of configs, with errors that name the offending field.
 * The executable uses validators precompiled by ajv at build time (no schema compilation on
 * the ADD path); elsewhere ajv compiles on first use.
 */
import type { ErrorObject } from 'ajv';
import { CniError, ErrorCode } from './errors.ts';
import baseSchema from '../../conf/schemas/netconf.schema.json' with { type: 'json' };

export interface Validator {
  (data: unknown): boolean;
  errors?: ErrorObject[] | null;
}

let precompiled: Record<string, Validator> | undefined;
let loadPrecompiled: (() => Record<string, Validator>) | undefined;
let runtime: { compile(schema: object): Validator } | undefined;

/**
 * Install the build's precompiled validators, keyed by schema `$id`: a map, or a loader
 * called on first use (VERSION never evaluates them).
 */
export function usePrecompiled(map: Record<string, Validator> | (() => Record<string, Validator>)): void {
  if (typeof map === 'function') loadPrecompiled = map;
  else precompiled = map;
}

function precompiledMap(): Record<string, Validator> | undefined {
  if (!precompiled && loadPrecompiled) precompiled = loadPrecompiled();
  return precompiled;
}

/** A schema's key: its `$id`, else the plugin name (conf/schemas/<plugin>.schema.json). */
const keyOf = (schema: object, key?: string): string => (schema as { $id?: string }).$id ?? key ?? '';

/** Load the run-time compiler when a schema has no precompiled validator. */
export async function prepareValidators(schemas: Array<[object | undefined, string?]>): Promise<void> {
  const missing = schemas.some(([s, k]) => s && !precompiledMap()?.[keyOf(s, k)]);
  if (missing && !runtime) runtime = await import('./ajv-runtime.ts');
}

function validatorFor(schema: object, key?: string): Validator {
  const id = keyOf(schema, key);
  const pre = id ? precompiledMap()?.[id] : undefined;
  if (pre) return pre;
  if (!runtime) throw new Error(`no validator for schema ${id ?? '(no $id)'}: call prepareValidators first`);
  return runtime.compile(schema);
}

function fieldOf(e: ErrorObject): string {
  const segs = e.instancePath
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (e.keyword === 'required') segs.push(String((e.params as { missingProperty: string }).missingProperty));
  let out = '';
  for (const s of segs) out += /^\d+$/.test(s) ? `[${s}]` : out ? `.${s}` : s;
  return out || '(config)';
}

export function describe(e: ErrorObject): string {
  const field = fieldOf(e);
  if (e.keyword === 'required') return `${field}: is required`;
  if (e.keyword === 'format') return `${field}: ${JSON.stringify(e.data)} is not a valid ${(e.params as { format: string }).format}`;
  if (e.keyword === 'enum') return `${field}: must be one of ${JSON.stringify((e.params as { allowedValues: unknown[] }).allowedValues)}`;
  return `${field}: ${e.message ?? 'is invalid'}`;
}

/**
 * Validate `config` against a plugin schema (which may `$ref` "netconf#/definitions/..."),
 * throwing code 7 naming the field. Unknown keys are allowed unless a schema says otherwise.
 */
export function validate<T>(schema: object, config: unknown, key?: string): T {
  const fn = validatorFor(schema, key);
  if (!fn(config)) {
    const e = fn.errors?.[0];
    const what = e ? describe(e) : 'invalid';
    throw new CniError(ErrorCode.InvalidConfig, `invalid network config: ${what}`, `field "${e ? fieldOf(e) : '(config)'}"`);
  }
  return config as T;
}

/**
 * For DEL: validate, and where a field does not validate, drop it (the plugin then uses its
 * default) and validate again, so a config the schema refuses can still be torn down. What
 * cannot be dropped stays an error: an invalid `name` (it names the state: IPAM store, rule
 * tags) and a missing required top-level field. Returns the config and the fields dropped.
 */
export function validateLenient<T>(schema: object, config: Record<string, unknown>, key?: string): { config: T; dropped: string[] } {
  const fn = validatorFor(schema, key);
  let current = config;
  const dropped: string[] = [];
  for (let i = 0; i < 32 && !fn(current); i++) {
    const e = fn.errors?.[0];
    const segs = (e?.instancePath ?? '')
      .split('/')
      .slice(1)
      .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
    while (segs.length && /^\d+$/.test(segs[segs.length - 1])) segs.pop();
    // The name itself, or a top-level requirement (a missing field): not something to drop.
    if (!e || !segs.length || segs[0] === 'name') return { config: validate<T>(schema, current, key), dropped };
    current = structuredClone(current);
    let parent: unknown = current;
    for (const s of segs.slice(0, -1)) parent = (parent as Record<string, unknown>)[s];
    delete (parent as Record<string, unknown>)[segs[segs.length - 1]];
    dropped.push(
      fieldOf({ ...e, keyword: 'type', instancePath: `/${segs.map((s) => s.replace(/~/g, '~0').replace(/\//g, '~1')).join('/')}` }),
    );
  }
  return { config: current as T, dropped };
}

export const baseNetconfSchema: object = baseSchema;

/**
 * Validate a config against the common schema and the plugin's. With `lenient` (DEL), fields
 * that do not validate are dropped (see validateLenient) and reported through it, so teardown
 * is never blocked by a config it does not need.
 */
export function validateNetconf<C>(
  raw: Record<string, unknown>,
  schema: object | undefined,
  key: string,
  lenient?: (msg: string) => void,
): C {
  if (!lenient) {
    validate(baseNetconfSchema, raw);
    return schema ? validate<C>(schema, raw, key) : (raw as C);
  }
  const common = validateLenient<Record<string, unknown>>(baseNetconfSchema, raw);
  const own = schema ? validateLenient<C>(schema, common.config, key) : { config: common.config as C, dropped: [] };
  const dropped = [...common.dropped, ...own.dropped];
  if (dropped.length) lenient(`DEL: ignoring config fields that do not validate: ${dropped.join(', ')}`);
  return own.config;
}
