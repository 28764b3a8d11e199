/** JSON Schema validation of configs (ajv), with errors that name the offending field. */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { parseCIDR, parseIP } from '../ipnet.ts';
import { validIfname } from './env.ts';
import { CniError, ErrorCode } from './errors.ts';
import baseSchema from '../../conf/schemas/netconf.schema.json' with { type: 'json' };

let ajv: Ajv | undefined;
const cache = new Map<object, ValidateFunction>();

function instance(): Ajv {
  if (ajv) return ajv;
  ajv = new Ajv({ allErrors: false, strict: false, useDefaults: false, allowUnionTypes: true });
  ajv.addFormat('ip', (s: string) => parseIP(s) !== null);
  ajv.addFormat('ipv4', (s: string) => parseIP(s)?.family === 4);
  ajv.addFormat('ipv6', (s: string) => parseIP(s)?.family === 6);
  ajv.addFormat('cidr', (s: string) => parseCIDR(s) !== null);
  ajv.addFormat('mac', /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/);
  ajv.addFormat('ifname', (s: string) => validIfname(s));
  ajv.addSchema(baseSchema, 'netconf');
  return ajv;
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
export function validate<T>(schema: object, config: unknown): T {
  let fn = cache.get(schema);
  if (!fn) {
    fn = instance().compile(schema);
    cache.set(schema, fn);
  }
  if (!fn(config)) {
    const e = fn.errors?.[0];
    const what = e ? describe(e) : 'invalid';
    throw new CniError(ErrorCode.InvalidConfig, `invalid network config: ${what}`, e ? `schema path ${e.schemaPath}` : '');
  }
  return config as T;
}

export const baseNetconfSchema: object = baseSchema;
