/** ajv compiled at run time: used where the build's precompiled validators are absent (tests). */
import { Ajv, type ValidateFunction } from 'ajv';
import { FORMATS } from './formats.ts';
import baseSchema from '../../conf/schemas/netconf.schema.json' with { type: 'json' };

export const AJV_OPTIONS = { allErrors: false, strict: false, useDefaults: false, allowUnionTypes: true, verbose: true } as const;

let ajv: Ajv | undefined;
const cache = new Map<object, ValidateFunction>();

export function compile(schema: object): ValidateFunction {
  let fn = cache.get(schema);
  if (fn) return fn;
  if (!ajv) {
    ajv = new Ajv(AJV_OPTIONS);
    for (const [name, f] of Object.entries(FORMATS)) ajv.addFormat(name, f);
    ajv.addSchema(baseSchema, 'netconf');
  }
  const id = (schema as { $id?: string }).$id;
  fn = (id && ajv.getSchema(id)) || ajv.compile(schema);
  cache.set(schema, fn);
  return fn;
}
