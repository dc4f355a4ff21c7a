/**
 * zod issues → operator-facing lines (pure): `config: <dotted.path>: <problem>, expected <form>`.
 * Values are quoted only when harmless: never where a secret may sit, URLs cut to scheme://host:port.
 */
import type { z } from 'zod';
import { MASK, isSecretKey, redactUrl, urlOrigin } from '../redact.ts';
import { childSchema, describeExpected, objectKeys, recordKeySchema, schemaAt, schemaType } from './introspect.ts';

type Issue = z.core.$ZodIssue;
type Path = readonly PropertyKey[];

export interface FormatOptions {
  /** The schema that produced the issues: gives the expected forms and the "did you mean" keys. */
  schema?: z.ZodType;
  /** Where a value came from when not from the file, by dotted path (e.g. the env var name). */
  origins?: ReadonlyMap<string, string>;
}

/** `kafka.brokers[0]`, `tables["public.orders"].columns`. */
export function formatPath(path: Path): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (typeof seg === 'string' && /^[A-Za-z_$][\w$-]*$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out || '(top level)';
}

/**
 * Config keys whose values are never echoed: the secret-named ones, and the sections that hold
 * secrets as plain strings (`sasl` as "plain:user:pw", `ssl` as a PEM key, a certificate).
 */
export function isSecretSegment(seg: PropertyKey): boolean {
  if (typeof seg !== 'string') return false;
  return isSecretKey(seg) || /^(ssl|tls|sasl|auth|key)$/i.test(seg) || /(secret|token|credential|cert|private|apikey|pwd|passw)/i.test(seg);
}

/**
 * Whether the value at `path` may hold a secret: a segment of the path is secret-ish, or the
 * schema there has a secret-ish key at any depth (`kafka.sasl` given as a string instead of its
 * mapping still carries the password).
 */
export function isSecretPath(path: Path, schema?: z.ZodType): boolean {
  if (path.some(isSecretSegment)) return true;
  const here = schema && schemaAt(schema, path);
  return here !== undefined && holdsSecret(here, 0);
}

function holdsSecret(s: z.ZodType, depth: number): boolean {
  if (depth > 8) return false;
  for (const key of objectKeys(s)) {
    if (isSecretSegment(key)) return true;
    const child = childSchema(s, key);
    if (child && holdsSecret(child, depth + 1)) return true;
  }
  const type = schemaType(s);
  const element = (type === 'array' || type === 'record') && childSchema(s, 0);
  return element ? holdsSecret(element, depth + 1) : false;
}

/**
 * A short, safe rendering of an input value for "got ...". A URL shows only its scheme, host and
 * port: whatever follows may be a password with characters that no pattern can delimit.
 */
export function describeInput(value: unknown, secret: boolean): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `a list of ${value.length}`;
  if (typeof value === 'object') return 'a mapping';
  if (secret) return `a ${typeof value} (value hidden)`;
  if (typeof value === 'string') {
    if (value.includes('://')) {
      const origin = urlOrigin(value);
      return origin ? `${JSON.stringify(origin)} (the rest of the URL not shown)` : 'a URL (value hidden)';
    }
    // Also mask scheme-less `user:pass@host` (a URL with a mistyped scheme is still a secret),
    // on to the LAST `@` of the token: an unencoded `@` in the password is no end of it.
    const masked = redactUrl(value).replace(/(^|[\s/])([^\s:/@]+):(?!\/\/|\*\*\*@)[^\n\r@]*@(?:[^\s@]*@)*/g, `$1$2:${MASK}@`);
    return JSON.stringify(masked.length > 80 ? `${masked.slice(0, 77)}...` : masked);
  }
  return String(value);
}

/** One line per problem, in input order; unknown keys get a "did you mean" when one is close. */
export function formatZodIssues(issues: readonly Issue[], opts: FormatOptions = {}): string[] {
  const lines: string[] = [];
  const emit = (path: Path, problem: string) => {
    lines.push(`config: ${formatPath(path)}${originOf(path, opts.origins)}: ${problem}`);
  };
  const expected = (path: Path, fallback: string) => {
    const s = opts.schema && schemaAt(opts.schema, path);
    return s ? describeExpected(s) : fallback;
  };
  const visit = (issue: Issue, prefix: Path) => {
    const path = [...prefix, ...issue.path];
    const got = () => describeInput(issue.input, isSecretPath(path, opts.schema));
    switch (issue.code) {
      case 'invalid_type':
        if (issue.input === undefined) emit(path, `required (expected ${expected(path, issue.expected)})`);
        else emit(path, `expected ${expected(path, issue.expected)}, got ${got()}`);
        break;
      case 'too_small':
      case 'too_big':
      case 'invalid_format':
      case 'not_multiple_of':
        emit(path, `expected ${expected(path, issue.message)}, got ${got()}`);
        break;
      case 'invalid_value':
        emit(path, `expected ${expected(path, `one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`)}, got ${got()}`);
        break;
      case 'unrecognized_keys': {
        const here = opts.schema && schemaAt(opts.schema, path);
        const known = here ? objectKeys(here) : [];
        for (const key of issue.keys) {
          const hint = suggest(key, known);
          const tail = hint ? ` (did you mean "${hint}"?)` : known.length ? ` (known keys: ${known.join(', ')})` : '';
          emit([...path, key], `unknown key${tail}`);
        }
        break;
      }
      case 'invalid_key': {
        const parent = opts.schema && schemaAt(opts.schema, path.slice(0, -1));
        const keySchema = parent && recordKeySchema(parent);
        emit(path, `bad key: expected ${keySchema ? describeExpected(keySchema) : 'a valid key'}`);
        break;
      }
      case 'invalid_union': {
        // A branch whose only complaint is not "wrong type here" matched the shape: report inside it.
        const deeper = issue.errors.filter((branch) => !branch.every((i) => i.code === 'invalid_type' && i.path.length === 0));
        if (deeper.length === 1) deeper[0].forEach((i) => visit(i, path));
        else emit(path, `expected ${expected(path, 'a valid value')}, got ${got()}`);
        break;
      }
      default:
        // custom refinements carry their own wording ("required (or ...)").
        emit(path, redactUrl(issue.message));
    }
  };
  for (const issue of issues) visit(issue, []);
  return lines;
}

function originOf(path: Path, origins?: ReadonlyMap<string, string>): string {
  if (!origins?.size) return '';
  for (let n = path.length; n > 0; n--) {
    const from = origins.get(formatPath(path.slice(0, n)));
    if (from) return ` (from ${from})`;
  }
  return '';
}

/** The known key closest to `key` when it is plausibly a typo (case, `_`/`-`, a couple of edits). */
export function suggest(key: string, known: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[_-]/g, '');
  let best: { k: string; d: number } | undefined;
  for (const k of known) {
    if (norm(k) === norm(key)) return k;
    const d = editDistance(norm(key), norm(k));
    if (!best || d < best.d) best = { k, d };
  }
  const limit = key.length <= 4 ? 1 : 2;
  return best && best.d <= limit ? best.k : undefined;
}

/** Optimal-string-alignment distance: a swap of neighbours ("tabels") counts as one edit. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}
