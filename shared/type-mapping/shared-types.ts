/**
 * Compiled avsc types shared between tables of one shape. A database with a schema per tenant
 * has hundreds of copies of each table, whose change-event schemas differ only in their
 * namespace (`<prefix>.<schema>.<table>`) and their `pg.schema` / `pg.table` labels; compiling
 * each (avsc generates reader, writer, skipper and checker functions per record type) cost
 * each connector 25–50 kB per table. Names do not reach the bytes, and the types are used to
 * encode and decode bytes only, so tables of one shape can share one compiled type.
 */
import { createHash } from 'node:crypto';
import type avro from 'avsc';
import { canonicalSchemaText } from '../registry/canonical.ts';
import { createAvroType, isWriteCached } from './avro.ts';

/** Keys whose string values are (or, in a union, list) type names. */
const NAME_KEYS = new Set(['name', 'namespace', 'type', 'items', 'values', 'connect.name']);
/** Labels that name the table only. */
const TABLE_LABELS = new Set(['pg.schema', 'pg.table']);

/**
 * Pure: a text equal for two schemas that differ only in the top-level namespace (consistently
 * renamed wherever it begins a type name) and in `pg.schema` / `pg.table`: such schemas
 * compile to types that read and write the same bytes as the same values. Everything else
 * (field names and order, types, defaults, every other attribute) is kept. Hashed: a map
 * keyed by it holds one short string per shape.
 */
export function shapeKey(schema: object): string {
  const top = schema as { name?: unknown; namespace?: unknown };
  let ns = typeof top.namespace === 'string' ? top.namespace : '';
  if (typeof top.name === 'string' && top.name.includes('.')) ns = top.name.slice(0, top.name.lastIndexOf('.'));
  let writeCached = false;
  // Only where a type name can be: a field name has no dot, so it never begins with `ns.`.
  const rename = (s: string, key: string): string => {
    if (ns === '' || !NAME_KEYS.has(key)) return s;
    if (key === 'namespace' && s === ns) return '\u0000';
    return s.startsWith(ns + '.') ? '\u0000' + s.slice(ns.length) : s;
  };
  const walk = (v: unknown, key: string): unknown => {
    if (typeof v === 'string') return rename(v, key);
    if (Array.isArray(v)) return v.map((x) => walk(x, key));
    if (v === null || typeof v !== 'object') return v;
    if (isWriteCached(v)) writeCached = true;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (!TABLE_LABELS.has(k)) out[k] = walk(x, k);
    return out;
  };
  const text = canonicalSchemaText(walk(schema, 'type'));
  return (writeCached ? 'w' : 'p') + createHash('sha256').update(text).digest('base64');
}

const byShape = new Map<string, avro.Type>();

/**
 * `createAvroType(schema)`, or the type compiled earlier for a schema of the same shape
 * (shapeKey). Its names are the first such schema's: use it for bytes, not for its names.
 * Kept for the process's life: one per shape, as many as table versions at most.
 */
export function sharedAvroType(schema: object, key: string = shapeKey(schema)): avro.Type {
  let t = byShape.get(key);
  if (!t) byShape.set(key, (t = createAvroType(schema)));
  return t;
}
