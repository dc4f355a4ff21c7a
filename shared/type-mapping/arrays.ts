/**
 * PostgreSQL array literals: parse one-dimensional `{…}` text into element texts, and
 * write element texts back with array_out's quoting rules. Pure.
 */

const QUOTE = 34; // "
const BACKSLASH = 92;
const LBRACE = 123;
const RBRACE = 125;

/** array_isspace: the whitespace array_in skips around elements. */
function isSpace(c: number): boolean {
  return c === 32 || c === 9 || c === 10 || c === 11 || c === 12 || c === 13;
}

/**
 * Element texts (`null` for NULL) of a one-dimensional array literal with default lower
 * bound; `undefined` when the text is anything else (dimension decoration like
 * `[0:1]={…}`, nested braces, malformed) so the caller keeps the verbatim text.
 */
export function parseArray1D(text: string, delim: string): (string | null)[] | undefined {
  const n = text.length;
  const d = delim.charCodeAt(0);
  if (text.charCodeAt(0) !== LBRACE) return undefined;
  const out: (string | null)[] = [];
  let i = 1;
  while (i < n && isSpace(text.charCodeAt(i))) i++;
  if (text.charCodeAt(i) === RBRACE) return i === n - 1 ? out : undefined;
  for (;;) {
    while (i < n && isSpace(text.charCodeAt(i))) i++;
    if (i >= n) return undefined;
    let c = text.charCodeAt(i);
    if (c === LBRACE) return undefined; // multi-dimensional
    let value = '';
    if (c === QUOTE) {
      let start = ++i;
      for (;;) {
        if (i >= n) return undefined;
        c = text.charCodeAt(i);
        if (c === QUOTE) break;
        if (c === BACKSLASH) {
          value += text.slice(start, i);
          start = ++i; // keep the escaped character
        }
        i++;
      }
      value += text.slice(start, i);
      i++;
      while (i < n && isSpace(text.charCodeAt(i))) i++;
    } else {
      // Unquoted: ends at the delimiter or '}', trailing unescaped whitespace dropped.
      const start = i;
      let end = i;
      let escaped = false;
      for (;;) {
        if (i >= n) return undefined;
        c = text.charCodeAt(i);
        if (c === d || c === RBRACE) break;
        if (c === QUOTE || c === LBRACE) return undefined; // legal but odd: keep verbatim
        if (c === BACKSLASH) {
          escaped = true;
          i += 2;
          end = i;
          continue;
        }
        i++;
        if (!isSpace(c)) end = i;
      }
      if (end > n || end === start) return undefined;
      if (escaped) {
        value = unescape(text.slice(start, end));
      } else {
        value = text.slice(start, end);
        if (value.length === 4 && value.toUpperCase() === 'NULL') {
          out.push(null);
          i++;
          if (c === RBRACE) return i === n ? out : undefined;
          continue;
        }
      }
    }
    out.push(value);
    c = text.charCodeAt(i);
    i++;
    if (c === RBRACE) return i === n ? out : undefined;
    if (c !== d) return undefined;
  }
}

function unescape(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) === BACKSLASH) i++;
    out += s[i];
  }
  return out;
}

/** Whether array_out would quote this element text. */
function needsQuotes(s: string, d: number): boolean {
  const n = s.length;
  if (n === 0) return true;
  if (n === 4 && s.toUpperCase() === 'NULL') return true;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c === QUOTE || c === BACKSLASH || c === LBRACE || c === RBRACE || c === d || isSpace(c)) return true;
  }
  return false;
}

/** Quote an element text the way array_out does (backslash before `"` and `\`). */
export function quoteArrayElement(s: string, delim: string): string {
  if (!needsQuotes(s, delim.charCodeAt(0))) return s;
  let out = '"';
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === QUOTE || c === BACKSLASH) {
      out += s.slice(start, i) + '\\';
      start = i;
    }
  }
  return out + s.slice(start) + '"';
}
