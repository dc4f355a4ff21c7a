/**
 * Canonical key text: one spelling per value that PostgreSQL's btree equality counts as one,
 * for the types whose text output spells equal values differently. Pure.
 *
 * Kafka partitions by the key's bytes and the sink collapses a batch by them, so two events
 * for one destination row stay in order only when their keys are byte-identical. PostgreSQL
 * logs `UPDATE … SET id = 1.00` on a row stored as `1.0` as a key change (the datums differ):
 * a delete of `1.0` and a create of `1.00`, which under their own spellings may land on two
 * partitions and be applied create first, then delete: the row is gone. The Kafka key carries
 * the canonical text; the envelope keeps the exact one. Only these types pay for it:
 *  - unconstrained `numeric`: `1.0` = `1.00` = `1` (a `numeric(p,s)` column stores every value
 *    at scale s, so its text is canonical already);
 *  - `float4`/`float8`: `-0` = `0` (NaN has one spelling, and PostgreSQL counts NaN = NaN);
 *  - `interval`: `1 day` = `24 hours`, `1 mon` = `30 days` (btree compares the total span).
 * Cost per key, measured on the row transcoder: integer, text, uuid … keys unchanged (~32 ns);
 * numeric +10–15 ns (~50 ns, a scan for the point, no allocation); float unchanged (~195 ns,
 * it was the generic writer already); interval ~1.2 µs instead of ~30 ns (regex and BigInt).
 * Equality by collation (nondeterministic ICU collations, citext) has no canonical text
 * without the server's collation code: the source's checks warn about such keys instead.
 */

/** The text → canonical text function for a base type (after domains), or null when its text is canonical. */
export function keyTextFor(typeName: string, schema: string, typmod: number): ((text: string) => string) | null {
  if (schema !== 'pg_catalog') return null;
  switch (typeName) {
    case 'numeric':
      return typmod < 0 ? NUMERIC_KEY_TEXT : null;
    case 'float4':
    case 'float8':
      return floatKeyText;
    case 'interval':
      return intervalKeyText;
    default:
      return null;
  }
}

/**
 * Where numeric text `src[start, end)` ends once trailing fractional zeros (and a bare point)
 * are dropped: `1.500` → `1.5`, `2.000` → `2`, `10` stays. PostgreSQL never prints an
 * exponent or `-0`, so this is the whole canonical form. No allocation: the row transcoder
 * writes the shortened byte range.
 */
export function numericKeyEnd(src: Uint8Array, start: number, end: number): number {
  let dot = -1;
  for (let i = start; i < end; i++) {
    if (src[i] === 0x2e) {
      dot = i;
      break;
    }
  }
  if (dot < 0) return end;
  let e = end;
  while (e > dot + 1 && src[e - 1] === 0x30) e--;
  return e === dot + 1 ? dot : e;
}

/** The numeric canonical text (see numericKeyEnd); compared by identity in row-transcode.ts. */
export const NUMERIC_KEY_TEXT = (text: string): string => {
  const dot = text.indexOf('.');
  if (dot < 0) return text;
  let e = text.length;
  while (e > dot + 1 && text.charCodeAt(e - 1) === 0x30) e--;
  return text.slice(0, e === dot + 1 ? dot : e);
};

function floatKeyText(text: string): string {
  return text === '-0' ? '0' : text;
}

const DAY = 86_400_000_000n;
const HOUR = 3_600_000_000n;
const MINUTE = 60_000_000n;
const MONTH = 30n * DAY;
const INT32_MAX = 2_147_483_647n;
// IntervalStyle iso_8601 output: each field signed on its own (`P1M-1DT1S`), only seconds with a fraction.
const ISO_INTERVAL = /^P(?:(-?\d+)Y)?(?:(-?\d+)M)?(?:(-?\d+)D)?(?:T(?:(-?\d+)H)?(?:(-?\d+)M)?(?:(-?)(\d+)(?:\.(\d{1,6}))?S)?)?$/;

/**
 * The interval as PostgreSQL's justify_interval would print it: its total span (months as 30
 * days, days as 24 hours: what btree compares, interval_cmp_value) as months, then days below
 * 30, then a time below a day, all of one sign. That spelling is unique per span and is
 * already what most values look like: `P1D`, `PT1H`, `P1Y2M` stay; `PT24H` → `P1D`,
 * `P30D` → `P1M`, `P1DT-1H` → `PT23H`. Text it cannot read (`infinity` on PostgreSQL 17), or
 * a span whose months overflow int32 (PostgreSQL could not store it so), stays as it is.
 */
function intervalKeyText(text: string): string {
  const m = ISO_INTERVAL.exec(text);
  if (m === null) return text;
  const [, y, mo, d, h, mi, secSign, sec, frac] = m;
  const n = (s: string | undefined): bigint => (s === undefined ? 0n : BigInt(s));
  let secs = n(sec) * 1_000_000n + (frac === undefined ? 0n : BigInt(frac.padEnd(6, '0')));
  if (secSign === '-') secs = -secs;
  let total = ((n(y) * 12n + n(mo)) * 30n + n(d)) * DAY + n(h) * HOUR + n(mi) * MINUTE + secs;
  if (total === 0n) return 'PT0S';
  const sign = total < 0n ? '-' : '';
  if (total < 0n) total = -total;
  const months = total / MONTH;
  if (months > INT32_MAX) return text;
  const days = (total % MONTH) / DAY;
  const time = total % DAY;
  let out = 'P';
  if (months >= 12n) out += `${sign}${months / 12n}Y`;
  if (months % 12n !== 0n) out += `${sign}${months % 12n}M`;
  if (days !== 0n) out += `${sign}${days}D`;
  if (time === 0n) return out;
  const hours = time / HOUR;
  const minutes = (time % HOUR) / MINUTE;
  const micros = time % MINUTE;
  out += 'T';
  if (hours !== 0n) out += `${sign}${hours}H`;
  if (minutes !== 0n) out += `${sign}${minutes}M`;
  if (micros !== 0n) {
    const f = (micros % 1_000_000n).toString().padStart(6, '0').replace(/0+$/, '');
    out += `${sign}${micros / 1_000_000n}${f === '' ? '' : `.${f}`}S`;
  }
  return out;
}
