/**
 * Reading zod 4 schemas (pure): walk to the schema at a config path, list an object's keys,
 * and describe what a field expects in words ("a positive integer", "one of "a", "b"").
 */
import type { z } from 'zod';

type AnySchema = z.ZodType;
type Def = { type: string; [k: string]: any };

const def = (s: AnySchema): Def => (s as any)._zod.def as Def;

const WRAPPERS = new Set(['optional', 'nullable', 'default', 'prefault', 'readonly', 'catch', 'nonoptional']);

/** Strip optional/default/pipe... wrappers, returning the schema that decides the value's shape. */
export function unwrap(s: AnySchema): AnySchema {
  for (let i = 0; i < 20; i++) {
    const d = def(s);
    if (WRAPPERS.has(d.type)) s = d.innerType;
    else if (d.type === 'pipe') s = d.in;
    else if (d.type === 'lazy') s = d.getter();
    else break;
  }
  return s;
}

export function schemaType(s: AnySchema): string {
  return def(unwrap(s)).type;
}

/** Keys of an object schema (or of the object members of a union). */
export function objectKeys(s: AnySchema): string[] {
  const u = unwrap(s);
  const d = def(u);
  if (d.type === 'object') return Object.keys(d.shape);
  if (d.type === 'union') return [...new Set((d.options as AnySchema[]).flatMap(objectKeys))];
  return [];
}

/** The schema one step below `s`: an object member, array element or record value. */
export function childSchema(s: AnySchema, key: PropertyKey): AnySchema | undefined {
  const u = unwrap(s);
  const d = def(u);
  switch (d.type) {
    case 'object':
      return typeof key === 'string' && Object.prototype.hasOwnProperty.call(d.shape, key) ? d.shape[key] : undefined;
    case 'array':
      return d.element;
    case 'record':
      return d.valueType;
    case 'union':
      for (const o of d.options as AnySchema[]) {
        const c = childSchema(o, key);
        if (c) return c;
      }
      return undefined;
    default:
      return undefined;
  }
}

export function schemaAt(s: AnySchema, path: readonly PropertyKey[]): AnySchema | undefined {
  let cur: AnySchema | undefined = s;
  for (const key of path) {
    if (!cur) return undefined;
    cur = childSchema(cur, key);
  }
  return cur;
}

/** The record key schema at `s`, if `s` is a record. */
export function recordKeySchema(s: AnySchema): AnySchema | undefined {
  const d = def(unwrap(s));
  return d.type === 'record' ? d.keyType : undefined;
}

/** What a value of `s` must look like, in words. Uses `.describe()` text when there is one. */
export function describeExpected(s: AnySchema): string {
  for (let cur = s, i = 0; i < 20; i++) {
    if (cur.description) return cur.description;
    const d = def(cur);
    if (WRAPPERS.has(d.type)) cur = d.innerType;
    else if (d.type === 'pipe') cur = d.in;
    else break;
  }
  const u = unwrap(s);
  const d = def(u);
  switch (d.type) {
    case 'string':
      return (u as any).minLength > 0 ? 'a non-empty string' : 'a string';
    case 'number':
      return describeNumber(d);
    case 'boolean':
      return 'true or false';
    case 'enum':
      return `one of ${Object.values(d.entries as Record<string, string>).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'literal':
      return (d.values as unknown[]).map((v) => JSON.stringify(v)).join(' or ');
    case 'array': {
      const elem = describeExpected(d.element);
      const nonEmpty = (u as any)._zod.def.checks?.some((c: any) => c._zod.def.check === 'min_length' && c._zod.def.minimum > 0);
      return `${nonEmpty ? 'a non-empty list' : 'a list'}${elem === 'a string' ? ' of strings' : `, each ${elem}`}`;
    }
    case 'object':
      return 'a mapping';
    case 'record':
      return `a mapping whose keys are each ${describeExpected(d.keyType)}`;
    case 'union':
      return (d.options as AnySchema[]).map(describeExpected).join(' or ');
    default:
      return `a ${d.type}`;
  }
}

function describeNumber(d: Def): string {
  let isInt = false;
  let min: { value: number; inclusive: boolean } | undefined;
  let max: { value: number; inclusive: boolean } | undefined;
  for (const c of (d.checks ?? []) as any[]) {
    const cd = c._zod.def;
    if (cd.check === 'number_format' && /int/.test(cd.format)) isInt = true;
    if (cd.check === 'greater_than') min = { value: Number(cd.value), inclusive: cd.inclusive };
    if (cd.check === 'less_than') max = { value: Number(cd.value), inclusive: cd.inclusive };
  }
  const noun = isInt ? 'integer' : 'number';
  if (min && max && isInt) {
    return `an integer from ${min.inclusive ? min.value : min.value + 1} to ${max.inclusive ? max.value : max.value - 1}`;
  }
  if (min && max) return `a number between ${min.value} and ${max.value}`;
  if (min?.value === 0) return min.inclusive ? `a non-negative ${noun}` : `a positive ${noun}`;
  if (min) return `${isInt ? 'an integer' : 'a number'} ${min.inclusive ? '>=' : '>'} ${min.value}`;
  if (max) return `${isInt ? 'an integer' : 'a number'} ${max.inclusive ? '<=' : '<'} ${max.value}`;
  return isInt ? 'an integer' : 'a number';
}
