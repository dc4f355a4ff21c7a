/**
 * `${NAME}` in a config file's values: the files are read as they are, never expanded, so such a
 * value would be taken literally (a password "${PGPASSWORD}" fails authentication with no hint
 * why). Each one is a config error naming the key and the SHARDBRIDGE_* variable that sets it.
 * Pure.
 */
import { formatPath } from './issues.ts';

/** `${NAME}`, `${NAME:-default}` (shell / docker compose forms). */
const REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-=?+][^}]*)?\}/g;

/**
 * One problem line per file value holding a `${...}` reference, unless the environment sets that
 * key (`overridden`: the dotted paths the environment set). `prefix`: `SHARDBRIDGE_SOURCE_`.
 */
export function envReferenceProblems(fromFile: unknown, prefix: string, overridden: ReadonlySet<string> = new Set()): string[] {
  const out: string[] = [];
  const walk = (value: unknown, path: (string | number)[]) => {
    if (typeof value === 'string') {
      const names = [...value.matchAll(REFERENCE)].map((m) => m[1]);
      if (names.length === 0 || overridden.has(formatPath(keyPath(path)))) return;
      const refs = [...new Set(names)].map((n) => `\${${n}}`).join(', ');
      out.push(`config: ${formatPath(path)}: holds ${refs}, which is not expanded (config files take no environment references): set ${envName(prefix, path)} instead, or write the value`);
    } else if (Array.isArray(value)) {
      value.forEach((v, i) => walk(v, [...path, i]));
    } else if (typeof value === 'object' && value !== null) {
      for (const [k, v] of Object.entries(value)) walk(v, [...path, k]);
    }
  };
  walk(fromFile, []);
  return out;
}

/** The path up to its first list index: the environment sets a list whole. */
function keyPath(path: (string | number)[]): (string | number)[] {
  const list = path.findIndex((s) => typeof s === 'number');
  return list < 0 ? path : path.slice(0, list);
}

/** The override variable of a key: `destination.password` → `SHARDBRIDGE_SINK_DESTINATION__PASSWORD`. */
export function envName(prefix: string, path: (string | number)[]): string {
  // A mapping's own keys (tables."public.orders") are matched verbatim, config keys by name.
  const segment = (s: string | number) => (/^[A-Za-z][A-Za-z0-9]*$/.test(String(s)) ? String(s).replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase() : String(s));
  return prefix + keyPath(path).map(segment).join('__');
}
