/**
 * Pure: is a destination column type (as `format_type` prints it) able to take every value of
 * the source column type, with the same text form? Equal → same; a known lossless widening
 * (int → bigint, varchar(10) → text, numeric(10,2) → numeric(12,2)...) → widening; else
 * incompatible. Conservative on purpose: a widening that changes the text form (numeric scale,
 * json → jsonb) would make the cut-over checksums differ, so it is not listed. The one
 * exception, real → double precision, is compared through a cast (comparisonCast).
 */

export type TypeVerdict = 'same' | 'widening' | 'incompatible';

interface ParsedType {
  name: string;
  args: number[];
  array: boolean;
}

/** `timestamp(3) with time zone` → name `timestamp with time zone`, args [3]; `integer[]` → array. */
export function parseFormatType(t: string): ParsedType {
  let s = t.trim();
  const array = s.endsWith('[]');
  if (array) s = s.replace(/(\[\])+$/, '');
  const m = /\((\d+(?:,\d+)*)\)/.exec(s);
  const args = m ? m[1].split(',').map(Number) : [];
  const name = m ? (s.slice(0, m.index) + s.slice(m.index + m[0].length)).replace(/\s+/g, ' ').trim() : s;
  return { name, args, array };
}

const INT_RANK: Record<string, number> = { smallint: 1, integer: 2, bigint: 3 };
const STRINGS = new Set(['character varying', 'text']);
const PRECISION_TYPES = new Set(['timestamp with time zone', 'timestamp without time zone', 'time with time zone', 'time without time zone', 'interval']);

export function compareTypes(source: string, destination: string): TypeVerdict {
  if (source === destination) return 'same';
  const s = parseFormatType(source);
  const d = parseFormatType(destination);
  if (s.array !== d.array) return 'incompatible';
  if (s.name === d.name && s.args.join() === d.args.join()) return 'same';
  return widens(s, d) ? 'widening' : 'incompatible';
}

/**
 * The type to cast a destination value to before comparing its text form with the source's,
 * or null when the two print alike. Only real → double precision needs one: float4 prints
 * 1234567 as 1.234567e+06, float8 as 1234567. The other widenings print alike, and casting
 * them back would hide a real difference (varchar(n) truncates, timestamp(p) rounds).
 */
export function comparisonCast(source: string, destination: string): string | null {
  if (compareTypes(source, destination) !== 'widening') return null;
  return parseFormatType(source).name === 'real' ? source : null;
}

function widens(s: ParsedType, d: ParsedType): boolean {
  // Integers into a larger integer or an unconstrained numeric.
  if (s.name in INT_RANK) return (d.name in INT_RANK && INT_RANK[d.name] > INT_RANK[s.name]) || (d.name === 'numeric' && d.args.length === 0);
  if (s.name === 'real') return d.name === 'double precision';
  if (s.name === 'numeric' && d.name === 'numeric') {
    if (d.args.length === 0) return true;
    // Same scale (same text form), at least as many digits.
    return s.args.length === 2 && d.args.length === 2 && d.args[1] === s.args[1] && d.args[0] >= s.args[0];
  }
  if (STRINGS.has(s.name) && STRINGS.has(d.name)) {
    if (d.args.length === 0) return true;
    return s.name === 'character varying' && d.name === 'character varying' && s.args.length === 1 && d.args[0] >= s.args[0];
  }
  if (s.name === 'bit varying' && d.name === 'bit varying') return d.args.length === 0 || (s.args.length === 1 && d.args[0] >= s.args[0]);
  if (PRECISION_TYPES.has(s.name) && s.name === d.name) {
    // No typmod means full precision (6).
    return d.args.length === 0 || (s.args.length === 1 && d.args[0] >= s.args[0]);
  }
  return false;
}
