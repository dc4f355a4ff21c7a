/**
 * Secret masking shared by the logger, config errors and the CLI. Pure: no I/O.
 * Masking is deliberately generous (it would rather hide a host than leak a password).
 */

export const MASK = '***';

/**
 * `scheme://user:PASSWORD@` → `scheme://user:***@`. Operators paste unencoded `@`, `/`, `#`
 * and even spaces into passwords, and those malformed URLs are exactly the ones error messages
 * quote: the password runs past spaces (not lines) to the first `@`, then on to the LAST `@` of
 * that token. A `host:port` (digits after the colon) is no userinfo and is left alone.
 */
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/[^\s:@/?#"'`<>[\]]*:)(?!\d+(?:[/?#\s"'`<>]|$))[^\n\r"`<>@]*@(?:[^\s"'`<>@]*@)*/gi;
/** `?password=x` / `&sslpassword=x` inside a URL query string. */
const URL_QUERY_PASSWORD = /([?&][a-z_]*password=)[^&\s"'`<>#]*/gi;
/** libpq keyword form: `host=h password=secret` or `password='se cret'`. */
const KEYWORD_PASSWORD = /(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'"&]+)/gi;
/** SQL a session ran, quoted from pg_stat_activity (the sink's lock watchdog): `ALTER ROLE r PASSWORD 'secret'`, `ENCRYPTED PASSWORD 'x'`. */
const SQL_PASSWORD = /(\bpassword\s+)('(?:[^']|'')*')/gi;

/**
 * HTTP credentials a server may echo back in an error body: `Basic dXNlcjpwdw==`, `Bearer eyJ...`.
 * A token has a capital, digit or `+/=` somewhere: "Basic authentication failed" is prose.
 */
const HTTP_AUTH = /\b(Basic|Bearer)(\s+)(?=[A-Za-z0-9+/._~-]*[A-Z0-9+/=])[A-Za-z0-9+/._~-]{6,}=*/g;

/** Mask every password inside URLs (postgres://, postgresql://, http://…), libpq keyword strings, SQL's `PASSWORD '…'` and HTTP auth tokens in `text`. */
export function redactUrl(text: string): string {
  if (!text.includes('://') && !/password|basic|bearer/i.test(text)) return text;
  return text
    .replace(URL_USERINFO, `$1${MASK}@`)
    .replace(URL_QUERY_PASSWORD, `$1${MASK}`)
    .replace(KEYWORD_PASSWORD, (_m, k: string) => `${k}${MASK}`)
    .replace(SQL_PASSWORD, (_m, k: string) => `${k}'${MASK}'`)
    .replace(HTTP_AUTH, `$1$2${MASK}`);
}

/**
 * `text` with each of `secrets` (a client's own credentials, in every form it sends them) masked
 * wherever it occurs: for quoting a server's answer, which may echo what it was sent. Secrets
 * shorter than 4 characters are left alone (masking every "a" would garble the text). Pure.
 */
export function redactKnown(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  const longestFirst = secrets.filter((s): s is string => s !== undefined && s.length >= 4).sort((a, b) => b.length - a.length);
  for (const s of longestFirst) out = out.split(s).join(MASK);
  return out;
}

/**
 * `scheme://host:port` of a URL-like string and nothing else (no user, password, path or query),
 * or undefined when no plain host can be made out. Pure; for naming a server in messages.
 */
export function urlOrigin(value: string): string | undefined {
  const m = /^\s*([a-z][a-z0-9+.-]*):\/\/([^\n]*)$/i.exec(value);
  if (!m) return undefined;
  // Anything up to the last `@` may be userinfo (an unencoded `@` in a password included).
  const rest = m[2].slice(m[2].lastIndexOf('@') + 1);
  const host = /^[^/?#\s]*/.exec(rest)![0];
  if (!/^(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/.test(host)) return undefined;
  return `${m[1].toLowerCase()}://${host}`;
}

/** Keys whose values are secrets wherever they appear (password, sasl.password, PGPASSWORD, clientSecret...). */
export function isSecretKey(key: string): boolean {
  return /(password|passwd|secret)$/i.test(key) || /^pwd$/i.test(key);
}

/**
 * A copy of `value` with secret-keyed values replaced by `***` and URL passwords masked in every
 * string. Walks plain objects, arrays and Errors (as `{type, message, stack, ...}`); other class
 * instances are returned unchanged. `extraSecret(path)` adds path-dependent secrets (e.g. `ssl.key`).
 */
export function redactDeep(value: unknown, extraSecret?: (path: readonly string[]) => boolean): unknown {
  const seen = new WeakSet<object>();
  const walk = (v: unknown, path: string[], depth: number): unknown => {
    if (typeof v === 'string') return redactUrl(v);
    if (v === null || typeof v !== 'object') return v;
    if (seen.has(v) || depth > 12) return '[Circular or too deep]';
    if (v instanceof Error) {
      seen.add(v);
      const out: Record<string, unknown> = { type: v.constructor?.name ?? v.name, message: redactUrl(v.message) };
      if (v.stack) out.stack = redactUrl(v.stack);
      for (const [k, inner] of Object.entries(v)) {
        if (k in out) continue;
        out[k] = isSecret(k, [...path, k]) ? MASK : walk(inner, [...path, k], depth + 1);
      }
      if (v.cause !== undefined && !('cause' in out)) out.cause = walk(v.cause, [...path, 'cause'], depth + 1);
      return out;
    }
    if (Array.isArray(v)) {
      seen.add(v);
      return v.map((item, i) => walk(item, [...path, String(i)], depth + 1));
    }
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return v;
    seen.add(v);
    const out: Record<string, unknown> = {};
    for (const [k, inner] of Object.entries(v)) {
      const p = [...path, k];
      out[k] = isSecret(k, p) && inner !== undefined && inner !== null ? MASK : walk(inner, p, depth + 1);
    }
    return out;
  };
  const isSecret = (k: string, path: string[]) => isSecretKey(k) || (extraSecret?.(path) ?? false);
  return walk(value, [], 0);
}
