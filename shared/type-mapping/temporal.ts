/**
 * Date/time text (PostgreSQL output with DateStyle ISO, TimeZone UTC) <-> Debezium time
 * values, without Date objects: proleptic Gregorian day arithmetic on plain numbers
 * (Howard Hinnant's civil/days algorithms), astronomical years (1 BC = year 0).
 */
import { INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN } from './avro.ts';

const DAY_US = 86_400_000_000;
const DAY_US_N = 86_400_000_000n;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** |days| below this keeps days * DAY_US + µs inside Number's exact-integer range. */
const SAFE_DAYS = 104_000;
/** 4714-11-24 00:00:00 BC, PostgreSQL's minimum timestamp, in µs since 1970. */
const TS_MIN_US = -210_866_803_200_000_000n;
/**
 * PostgreSQL timestamps run to 294276 AD, ~30 years past INT64_MAX µs since 1970. Those
 * values are folded into the unused range just above INT64_MIN (INT64_MAX/MIN stay the
 * ±infinity sentinels), so every timestamp has exactly one long and back.
 */
const FOLD_BASE = INT64_MIN + 1n;

export function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

/** [astronomical year, month, day] of a day count since 1970-01-01. */
export function civilFromDays(days: number): [number, number, number] {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  return [yoe + era * 400 + (m <= 2 ? 1 : 0), m, d];
}

const pad2 = (n: number): string => (n < 10 ? '0' : '') + n;
const pad4 = (n: number): string => (n >= 1000 ? String(n) : String(n).padStart(4, '0'));

function bad(kind: string, text: string): Error {
  return new Error(`invalid ${kind} text: ${JSON.stringify(text)}`);
}

/** Digits at [start, end) as an integer; NaN when any is not a digit. */
function digits(s: string, start: number, end: number): number {
  let n = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return NaN;
    n = n * 10 + c;
  }
  return end > start ? n : NaN;
}

/** Fraction digits at [start, end) as microseconds (PostgreSQL never prints more than 6). */
function fractionUs(s: string, start: number, end: number): number {
  let n = 0;
  let scale = 100000;
  for (let i = start; i < end && scale >= 1; i++, scale /= 10) n += (s.charCodeAt(i) - 48) * scale;
  return n;
}

/** `.ffffff` with PostgreSQL's trailing-zero trimming ('' for whole seconds). */
function fractionText(us: number): string {
  if (us === 0) return '';
  let s = String(us).padStart(6, '0');
  let end = 6;
  while (s.charCodeAt(end - 1) === 48) end--;
  s = s.slice(0, end);
  return '.' + s;
}

interface Parsed {
  days: number;
  /** Microseconds since midnight (may be 86 400 000 000 for 24:00:00). */
  us: number;
  /** Index just after the seconds/fraction. */
  end: number;
}

/** `Y…Y-MM-DD` at 0; returns days and the index after it. */
function parseDatePart(text: string, kind: string): { y: number; m: number; d: number; end: number } {
  const dash = text.indexOf('-', 1);
  const y = digits(text, 0, dash);
  const m = digits(text, dash + 1, dash + 3);
  const d = digits(text, dash + 4, dash + 6);
  if (dash < 4 || text.charCodeAt(dash + 3) !== 45 || Number.isNaN(y + m + d)) throw bad(kind, text);
  return { y, m, d, end: dash + 6 };
}

/** `HH:MM:SS[.f…]` at `pos`. */
function parseTimePart(text: string, pos: number, kind: string): { us: number; end: number } {
  const h = digits(text, pos, pos + 2);
  const mi = digits(text, pos + 3, pos + 5);
  const s = digits(text, pos + 6, pos + 8);
  if (Number.isNaN(h + mi + s) || text.charCodeAt(pos + 2) !== 58 || text.charCodeAt(pos + 5) !== 58) throw bad(kind, text);
  let end = pos + 8;
  let frac = 0;
  if (text.charCodeAt(end) === 46) {
    const start = end + 1;
    end = start;
    while (end < text.length && text.charCodeAt(end) >= 48 && text.charCodeAt(end) <= 57) end++;
    frac = fractionUs(text, start, end);
  }
  return { us: ((h * 60 + mi) * 60 + s) * 1_000_000 + frac, end };
}

function timeText(us: number): string {
  const secs = Math.floor(us / 1_000_000);
  const h = Math.floor(secs / 3600);
  const mi = Math.floor(secs / 60) % 60;
  return `${pad2(h)}:${pad2(mi)}:${pad2(secs % 60)}${fractionText(us % 1_000_000)}`;
}

function isBc(text: string): boolean {
  return text.endsWith(' BC');
}

/** Astronomical year from a PostgreSQL year number and its BC flag. */
const astroYear = (y: number, bc: boolean): number => (bc ? 1 - y : y);

function pgYearText(y: number): { year: string; bc: string } {
  return y <= 0 ? { year: pad4(1 - y), bc: ' BC' } : { year: pad4(y), bc: '' };
}

// ---------- date: io.debezium.time.Date, int days since 1970-01-01 ----------

export function dateFromText(text: string): number {
  if (text === 'infinity') return INT32_MAX;
  if (text === '-infinity') return INT32_MIN;
  const p = parseDatePart(text, 'date');
  return daysFromCivil(astroYear(p.y, isBc(text)), p.m, p.d);
}

export function dateToText(days: number): string {
  if (days === INT32_MAX) return 'infinity';
  if (days === INT32_MIN) return '-infinity';
  const [y, m, d] = civilFromDays(days);
  const { year, bc } = pgYearText(y);
  return `${year}-${pad2(m)}-${pad2(d)}${bc}`;
}

// ---------- timestamp: io.debezium.time.MicroTimestamp, long µs since 1970 ----------

function parseDateTime(text: string, kind: string): Parsed {
  const date = parseDatePart(text, kind);
  if (text.charCodeAt(date.end) !== 32) throw bad(kind, text);
  const time = parseTimePart(text, date.end + 1, kind);
  return { days: daysFromCivil(astroYear(date.y, isBc(text)), date.m, date.d), us: time.us, end: time.end };
}

function combine(days: number, us: number): bigint | number {
  if (days < SAFE_DAYS && days > -SAFE_DAYS) return days * DAY_US + us;
  const v = BigInt(days) * DAY_US_N + BigInt(us);
  return v >= INT64_MAX ? FOLD_BASE + (v - INT64_MAX) : v;
}

/** µs since 1970 as a safe-integer number when it fits, else bigint (both valid for our long). */
export function timestampFromText(text: string): bigint | number {
  if (text === 'infinity') return INT64_MAX;
  if (text === '-infinity') return INT64_MIN;
  const p = parseDateTime(text, 'timestamp');
  return combine(p.days, p.us);
}

export function timestampToText(value: bigint | number): string {
  let days: number;
  let us: number;
  const small = typeof value === 'number' ? value : value >= -MAX_SAFE && value <= MAX_SAFE ? Number(value) : undefined;
  if (small !== undefined && Number.isSafeInteger(small)) {
    days = Math.floor(small / DAY_US);
    us = small - days * DAY_US;
  } else {
    let v = BigInt(value);
    if (v === INT64_MAX) return 'infinity';
    if (v === INT64_MIN) return '-infinity';
    if (v < TS_MIN_US) v = v - FOLD_BASE + INT64_MAX;
    let d = v / DAY_US_N;
    if (v < 0n && d * DAY_US_N !== v) d -= 1n;
    days = Number(d);
    us = Number(v - d * DAY_US_N);
  }
  const [y, m, d] = civilFromDays(days);
  const { year, bc } = pgYearText(y);
  return `${year}-${pad2(m)}-${pad2(d)} ${timeText(us)}${bc}`;
}

// ---------- timestamptz: io.debezium.time.ZonedTimestamp, ISO-8601 UTC text ----------

/** Offset `±HH[:MM[:SS]]` at `pos` in seconds east of UTC. */
function parseOffset(text: string, pos: number, end: number, kind: string): number {
  const sign = text.charCodeAt(pos) === 45 ? -1 : 1;
  const h = digits(text, pos + 1, pos + 3);
  const mi = end > pos + 3 ? digits(text, pos + 4, pos + 6) : 0;
  const s = end > pos + 6 ? digits(text, pos + 7, pos + 9) : 0;
  if (Number.isNaN(h + mi + s)) throw bad(kind, text);
  return sign * ((h * 60 + mi) * 60 + s);
}

function isoText(days: number, us: number): string {
  const [y, m, d] = civilFromDays(days);
  // ISO 8601 expanded years as java.time prints them: sign for < 0 and > 9999.
  const year = y < 0 ? '-' + pad4(-y) : y > 9999 ? '+' + y : pad4(y);
  return `${year}-${pad2(m)}-${pad2(d)}T${timeText(us)}Z`;
}

function normalise(days: number, us: number, offsetSec: number): [number, number] {
  let u = us - offsetSec * 1_000_000;
  let dd = days;
  while (u < 0) { u += DAY_US; dd--; }
  while (u >= DAY_US) { u -= DAY_US; dd++; }
  return [dd, u];
}

/** `2000-01-01 00:00:00.000001+00` -> `2000-01-01T00:00:00.000001Z`; ±infinity verbatim. */
export function timestamptzFromText(text: string): string {
  if (text === 'infinity' || text === '-infinity') return text;
  const n = text.length;
  // Fast path: 4-digit AD year, UTC offset.
  if (text.charCodeAt(4) === 45 && text.charCodeAt(n - 3) === 43 && text.endsWith('+00') && text.charCodeAt(10) === 32) {
    return text.slice(0, 10) + 'T' + text.slice(11, n - 3) + 'Z';
  }
  const p = parseDateTime(text, 'timestamptz');
  const offEnd = isBc(text) ? n - 3 : n;
  const [days, us] = normalise(p.days, p.us, parseOffset(text, p.end, offEnd, 'timestamptz'));
  return isoText(days, us);
}

/** ISO-8601 (`Z` or `±HH:MM[:SS]` offset, optional sign/expanded year) -> PostgreSQL text in UTC. */
export function timestamptzToText(iso: string): string {
  if (iso === 'infinity' || iso === '-infinity') return iso;
  const n = iso.length;
  if (iso.charCodeAt(4) === 45 && iso.charCodeAt(n - 1) === 90 && iso.charCodeAt(10) === 84 && !iso.startsWith('0000')) {
    return iso.slice(0, 10) + ' ' + iso.slice(11, n - 1) + '+00';
  }
  const sign = iso.charCodeAt(0) === 45 ? -1 : 1;
  const body = iso.charCodeAt(0) === 45 || iso.charCodeAt(0) === 43 ? iso.slice(1) : iso;
  const date = parseDatePart(body, 'timestamptz');
  if (body.charCodeAt(date.end) !== 84) throw bad('timestamptz', iso);
  const time = parseTimePart(body, date.end + 1, 'timestamptz');
  const offset = body.charCodeAt(time.end) === 90 ? 0 : parseOffset(body, time.end, body.length, 'timestamptz');
  const [days, us] = normalise(daysFromCivil(sign * date.y, date.m, date.d), time.us, offset);
  const [y, m, d] = civilFromDays(days);
  const { year, bc } = pgYearText(y);
  return `${year}-${pad2(m)}-${pad2(d)} ${timeText(us)}+00${bc}`;
}

// ---------- time: io.debezium.time.MicroTime, long µs since midnight ----------

export function timeFromText(text: string): number {
  return parseTimePart(text, 0, 'time').us;
}

export function timeToText(us: bigint | number): string {
  return timeText(Number(us));
}

// ---------- timetz: io.debezium.time.ZonedTime, ISO-8601 time with its own offset ----------

function offsetStart(text: string): number {
  for (let i = text.length - 1; i > 0; i--) {
    const c = text.charCodeAt(i);
    if (c === 43 || c === 45) return i;
  }
  return -1;
}

/** `13:45:10.5+05:30` stays; `+00` -> `Z`, `+05` -> `+05:00` (ISO needs minutes). */
export function timetzFromText(text: string): string {
  const at = offsetStart(text);
  if (at < 0) throw bad('timetz', text);
  const off = text.slice(at);
  if (off === '+00') return text.slice(0, at) + 'Z';
  return off.length === 3 ? text + ':00' : text;
}

/** Inverse of timetzFromText: PostgreSQL's own spelling of the offset. */
export function timetzToText(iso: string): string {
  const n = iso.length;
  if (iso.charCodeAt(n - 1) === 90) return iso.slice(0, n - 1) + '+00';
  const at = offsetStart(iso);
  if (at > 0 && n - at === 6 && iso.endsWith(':00')) {
    const off = iso.slice(at, n - 3);
    return iso.slice(0, at) + (off === '-00' ? '+00' : off);
  }
  return iso;
}
