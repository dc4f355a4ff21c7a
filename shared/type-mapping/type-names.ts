/**
 * Full PostgreSQL type names with typmod (`numeric(12,2)`, `varchar(20)`, `_int4`,
 * `timestamp(3)`, `interval year to month(0)`), written into the Avro schema as `pg.type`
 * and used to detect changed column types between table versions. Pure.
 */
import type { PgTypeInfo } from '../pg-types.ts';

const VARHDRSZ = 4;

// Interval field bits from PostgreSQL's datetime.h (INTERVAL_MASK of each field).
const YEAR = 1 << 2;
const MONTH = 1 << 1;
const DAY = 1 << 3;
const HOUR = 1 << 10;
const MINUTE = 1 << 11;
const SECOND = 1 << 12;
const INTERVAL_FULL_RANGE = 0x7fff;
const INTERVAL_FULL_PRECISION = 0xffff;

const INTERVAL_FIELDS = new Map<number, string>([
  [YEAR, ' year'],
  [MONTH, ' month'],
  [DAY, ' day'],
  [HOUR, ' hour'],
  [MINUTE, ' minute'],
  [SECOND, ' second'],
  [YEAR | MONTH, ' year to month'],
  [DAY | HOUR, ' day to hour'],
  [DAY | HOUR | MINUTE, ' day to minute'],
  [DAY | HOUR | MINUTE | SECOND, ' day to second'],
  [HOUR | MINUTE, ' hour to minute'],
  [HOUR | MINUTE | SECOND, ' hour to second'],
  [MINUTE | SECOND, ' minute to second'],
]);

/** The typmod suffix as PostgreSQL's typmodout functions print it ('' when none). */
export function typmodSuffix(baseName: string, typmod: number): string {
  if (typmod < 0) return '';
  switch (baseName) {
    case 'numeric': {
      const t = typmod - VARHDRSZ;
      // Scale is an 11-bit signed field since PostgreSQL 15 (negative scales allowed).
      const scale = ((t & 0x7ff) ^ 1024) - 1024;
      return `(${(t >> 16) & 0xffff},${scale})`;
    }
    case 'varchar':
    case 'bpchar':
      return `(${typmod - VARHDRSZ})`;
    case 'bit':
    case 'varbit':
    case 'time':
    case 'timetz':
    case 'timestamp':
    case 'timestamptz':
      return `(${typmod})`;
    case 'interval': {
      const range = (typmod >> 16) & 0x7fff;
      const precision = typmod & 0xffff;
      const fields = range === INTERVAL_FULL_RANGE ? '' : (INTERVAL_FIELDS.get(range) ?? '');
      return precision === INTERVAL_FULL_PRECISION ? fields : `${fields}(${precision})`;
    }
    default:
      // Extension types (e.g. PostGIS) have their own typmod encodings: keep the raw number.
      return `(${typmod})`;
  }
}

/** `name` for pg_catalog types, `schema.name` for others. */
export function qualifiedName(type: PgTypeInfo): string {
  return type.schema === 'pg_catalog' || type.schema === '' ? type.name : `${type.schema}.${type.name}`;
}

/**
 * Full type name incl. typmod. For arrays the typmod belongs to the element, so it
 * follows the array type name (`_numeric(12,2)`).
 */
export function pgTypeName(type: PgTypeInfo, typmod: number): string {
  const modOwner = type.kind === 'array' && type.elem ? type.elem : type;
  return qualifiedName(type) + typmodSuffix(modOwner.name, typmod);
}

/** Resolve domains (possibly nested) to the type whose text form they share. */
export function resolveDomain(type: PgTypeInfo): PgTypeInfo {
  let t = type;
  for (let depth = 0; t.kind === 'domain' && t.base && depth < 32; depth++) t = t.base;
  return t;
}

/** pg_catalog types that `format_type` prints by their SQL name (format_type.c). */
const SQL_NAMES: Record<string, string> = {
  bool: 'boolean',
  int2: 'smallint',
  int4: 'integer',
  int8: 'bigint',
  float4: 'real',
  float8: 'double precision',
  varchar: 'character varying',
  varbit: 'bit varying',
};
/** Those whose typmod goes between two words of the name. */
const SPLIT_NAMES: Record<string, [string, string]> = {
  time: ['time', ' without time zone'],
  timetz: ['time', ' with time zone'],
  timestamp: ['timestamp', ' without time zone'],
  timestamptz: ['timestamp', ' with time zone'],
};

/**
 * A `pg.type` name (pgTypeName: `int4`, `_numeric(12,2)`, `timestamptz(3)`) as `format_type`
 * prints the same type (`integer`, `numeric(12,2)[]`, `timestamp(3) with time zone`), so it
 * can be compared with a destination column's type. Null for types outside pg_catalog (their
 * printed name depends on the search path, their typmod on the extension) and for the few
 * whose unmodified name format_type quotes (`"char"`, `bit` without a length).
 */
export function formatTypeName(pgType: string): string | null {
  const m = /^(_?)([a-z0-9_]+)(\(.*\)| .*)?$/.exec(pgType);
  if (!m || pgType.includes('.')) return null;
  const [, array, name, mod = ''] = m;
  if (name === 'char' || (name === 'bit' && mod === '')) return null;
  const split = SPLIT_NAMES[name];
  let out: string;
  if (split) out = split[0] + mod + split[1];
  else if (name === 'bpchar') out = mod === '' ? 'bpchar' : `character${mod}`;
  else out = (SQL_NAMES[name] ?? name) + mod;
  return array ? `${out}[]` : out;
}
