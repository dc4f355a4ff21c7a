/**
 * A normalised text form of an Avro schema for equality: object keys sorted (field and
 * symbol order kept, as it matters to Avro), `{"type":"int"}` written as `"int"`. Docs and
 * custom attributes are kept, as Confluent's registry keeps them: a changed doc is a new
 * version there too. Pure.
 */
const PRIMITIVES = new Set(['null', 'boolean', 'int', 'long', 'float', 'double', 'bytes', 'string']);

export function canonicalSchemaText(schema: unknown): string {
  return JSON.stringify(normalise(schema));
}

function normalise(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(normalise);
  if (v === null || typeof v !== 'object') return v;
  const obj = v as Record<string, unknown>;
  const keys = Object.keys(obj).sort();
  if (keys.length === 1 && keys[0] === 'type' && typeof obj.type === 'string' && PRIMITIVES.has(obj.type)) {
    return obj.type;
  }
  const out: Record<string, unknown> = {};
  for (const k of keys) out[k] = normalise(obj[k]);
  return out;
}
