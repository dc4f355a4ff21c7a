/**
 * Scalar text <-> Avro value helpers: floats in PostgreSQL's shortest round-trip
 * spelling, bytea, booleans, money. Pure.
 */

/** Scientific digits of a finite non-zero |x|: digit string without point, decimal exponent. */
function splitExponential(e: string): { digits: string; exp: number } {
  const at = e.indexOf('e');
  const mantissa = e.slice(0, at);
  const digits = mantissa.length > 1 ? mantissa[0] + mantissa.slice(2) : mantissa;
  return { digits, exp: Number(e.slice(at + 1)) };
}

/**
 * PostgreSQL's float output (extra_float_digits > 0): shortest digits, fixed notation for
 * decimal exponents in [-4, fixedBelow), else `d.ddde±XX` with at least two exponent digits.
 */
function pgFloatLayout(negative: boolean, digits: string, exp: number, fixedBelow: number): string {
  let body: string;
  if (exp >= -4 && exp < fixedBelow) {
    if (exp < 0) body = '0.' + '0'.repeat(-exp - 1) + digits;
    else if (digits.length <= exp + 1) body = digits + '0'.repeat(exp + 1 - digits.length);
    else body = digits.slice(0, exp + 1) + '.' + digits.slice(exp + 1);
  } else {
    const a = exp < 0 ? -exp : exp;
    body = digits[0] + (digits.length > 1 ? '.' + digits.slice(1) : '') + (exp < 0 ? 'e-' : 'e+') + (a < 10 ? '0' : '') + a;
  }
  return negative ? '-' + body : body;
}

function nonFinite(x: number): string | undefined {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0' : '0';
  return undefined;
}

/** float8 text as PostgreSQL prints it (NaN, ±Infinity, -0 included). */
export function float8ToText(x: number): string {
  const special = nonFinite(x);
  if (special !== undefined) return special;
  const a = x < 0 ? -x : x;
  // Within [1e-4, 1e15) JavaScript's shortest fixed spelling is PostgreSQL's too.
  if (a >= 1e-4 && a < 1e15) return String(x);
  const { digits, exp } = splitExponential(a.toExponential());
  return pgFloatLayout(x < 0, digits, exp, 15);
}

/** float4 text: the shortest digits that read back to the same float32. */
export function float4ToText(x: number): string {
  const special = nonFinite(x);
  if (special !== undefined) return special;
  const a = x < 0 ? -x : x;
  const f = Math.fround(a);
  let e = a.toExponential(8);
  for (let p = 0; p < 8; p++) {
    const candidate = a.toExponential(p);
    if (Math.fround(Number(candidate)) === f) {
      e = candidate;
      break;
    }
  }
  const { digits, exp } = splitExponential(e);
  return pgFloatLayout(x < 0, digits, exp, 6);
}

/** `NaN`, `Infinity`, `-0` and decimal/exponent text: Number() reads them all exactly. */
export function floatFromText(text: string): number {
  return Number(text);
}

export function float4FromText(text: string): number {
  return Math.fround(Number(text));
}

export function byteaFromText(text: string): Buffer {
  if (text.charCodeAt(0) === 92 && text.charCodeAt(1) === 120) return Buffer.from(text.slice(2), 'hex');
  return byteaFromEscape(text);
}

/** bytea_output=escape form (`\\`, `\ooo`), in case a connection missed our settings. */
function byteaFromEscape(text: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c !== 92) {
      out.push(c);
    } else if (text.charCodeAt(i + 1) === 92) {
      out.push(92);
      i++;
    } else {
      out.push(parseInt(text.slice(i + 1, i + 4), 8));
      i += 3;
    }
  }
  return Buffer.from(out);
}

export function byteaToText(buf: Buffer): string {
  return '\\x' + buf.toString('hex');
}

/**
 * money text (`$1,234.56`, `-$5.00`, `($5.00)`) -> its numeric value `1234.56`: the
 * currency symbol and separators depend on lc_monetary, the value does not.
 */
export function moneyFromText(text: string): string {
  let out = '';
  let negative = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if ((ch >= '0' && ch <= '9') || ch === '.') out += ch;
    else if (ch === '-' || ch === '(') negative = true;
  }
  return negative ? '-' + out : out;
}
