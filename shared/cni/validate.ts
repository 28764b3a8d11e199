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

export const baseNetconfSchema: object = baseSchema;
