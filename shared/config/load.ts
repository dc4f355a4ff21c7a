/**
 * Configuration loading: file (YAML or JSON) ← environment overrides ← explicit overrides,
 * validated once by a strict zod schema. Every problem is reported at once, each naming its key.
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import YAML from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { childSchema, objectKeys, schemaType, unwrap } from './introspect.ts';
import { formatPath, formatZodIssues, suggest } from './issues.ts';
import { envReferenceProblems } from './env-refs.ts';

export { formatZodIssues, formatPath, suggest } from './issues.ts';
export { describeExpected } from './introspect.ts';

export interface LoadOptions {
  /** A .yaml, .yml or .json file; without one the configuration comes from env/overrides alone. */
  file?: string;
  /** Default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** e.g. `SHARDBRIDGE_SOURCE_`: `SHARDBRIDGE_SOURCE_KAFKA__BROKERS=a:9092,b:9092` sets kafka.brokers. */
  envPrefix: string;
  /** Applied last (e.g. command-line flags); `undefined` leaves a value alone. */
  overrides?: object;
}

/** Load, merge and validate; throws ConfigError listing every bad key. */
export function loadConfig<T>(schema: z.ZodType<T>, opts: LoadOptions): T {
  const fromFile = opts.file ? readConfigFile(opts.file) : {};
  const env = envOverrides(schema, opts.env ?? process.env, opts.envPrefix);
  const merged = mergeConfig(mergeConfig(fromFile, env.value), opts.overrides ?? {});
  const result = schema.safeParse(merged, { reportInput: true });
  const references = envReferenceProblems(fromFile, opts.envPrefix, new Set(env.origins.keys()));
  const lines = [...env.problems, ...references, ...(result.success ? [] : formatZodIssues(result.error.issues, { schema, origins: env.origins }))];
  if (lines.length > 0 || !result.success) {
    // No `cause`: the zod error carries raw input, passwords included.
    const firstKey = /^config: ([^:]*?)(?: \(from [^)]*\))?:/.exec(lines[0] ?? '')?.[1];
    throw new ConfigError(lines.join('\n'), { context: { key: firstKey, file: opts.file } });
  }
  return result.data;
}

/** Parse a config file by extension (the YAML parser reads JSON too). Errors never quote file content. */
export function readConfigFile(file: string): Record<string, unknown> {
  const ext = extname(file).toLowerCase();
  if (!['.yaml', '.yml', '.json'].includes(ext)) {
    throw new ConfigError(`config: ${file}: unsupported file type "${ext}" (use .yaml, .yml or .json)`, { context: { file } });
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new ConfigError(`config: cannot read ${file}: ${why}`, { context: { file } });
  }
  let data: unknown;
  try {
    data = YAML.parse(text);
  } catch (err) {
    // The YAML message's first line is "<what> at line L, column C:"; the rest quotes the file (maybe a password).
    const first = String((err as Error).message).split('\n')[0].replace(/:$/, '');
    throw new ConfigError(`config: ${file}: not valid ${ext === '.json' ? 'JSON' : 'YAML'}: ${first}`, { context: { file } });
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError(`config: ${file}: expected a mapping of keys at the top level`, { context: { file } });
  }
  return data as Record<string, unknown>;
}

export interface EnvOverrides {
  value: Record<string, unknown>;
  /** Dotted path → env var name, so errors can say where a bad value came from. */
  origins: Map<string, string>;
  /** Env vars under the prefix that name no config key. */
  problems: string[];
}

/**
 * Environment variables under `prefix` as a partial config (pure). `__` separates levels; each
 * segment matches a schema key case-insensitively ignoring `_` (CHUNK_SIZE → chunkSize); record
 * keys are taken verbatim. Values are coerced by the schema type at that path: numbers, booleans,
 * comma-separated lists, JSON for objects. Empty values are ignored (= not set).
 */
export function envOverrides(schema: z.ZodType, env: NodeJS.ProcessEnv, prefix: string): EnvOverrides {
  const out: EnvOverrides = { value: {}, origins: new Map(), problems: [] };
  for (const name of Object.keys(env).sort()) {
    const raw = env[name];
    if (!name.startsWith(prefix) || raw === undefined || raw === '') continue;
    const segments = name.slice(prefix.length).split('__');
    const path: string[] = [];
    let s: z.ZodType | undefined = schema;
    for (const seg of segments) {
      const here: z.ZodType = s;
      const key = matchKey(here, seg);
      s = key === undefined ? undefined : childSchema(here, key);
      if (key === undefined || !s) {
        const hint = suggest(seg.toLowerCase().replace(/_/g, ''), objectKeys(here));
        out.problems.push(`config: ${formatPath([...path, seg])} (from ${name}): unknown key${hint ? ` (did you mean "${hint}"?)` : ''}`);
        break;
      }
      path.push(key);
    }
    if (!s) continue;
    setPath(out.value, path, coerceEnv(s, raw));
    out.origins.set(formatPath(path), name);
  }
  return out;
}

function matchKey(s: z.ZodType, seg: string): string | undefined {
  if (schemaType(s) === 'record') return seg;
  const norm = (k: string) => k.toLowerCase().replace(/_/g, '');
  return objectKeys(s).find((k) => norm(k) === norm(seg));
}

/** Turn an env string into the JS value the schema at that path wants; leave it as is if it cannot be. */
export function coerceEnv(s: z.ZodType, raw: string): unknown {
  const u = unwrap(s);
  const d = (u as any)._zod.def;
  switch (d.type) {
    case 'number': {
      const t = raw.trim();
      return t !== '' && Number.isFinite(Number(t)) ? Number(t) : raw;
    }
    case 'boolean': {
      const t = raw.trim().toLowerCase();
      if (['true', '1', 'yes', 'on'].includes(t)) return true;
      if (['false', '0', 'no', 'off'].includes(t)) return false;
      return raw;
    }
    case 'array':
      if (raw.trim().startsWith('[')) return parseJson(raw);
      return raw.split(',').map((p) => p.trim()).filter(Boolean).map((p) => coerceEnv(d.element, p));
    case 'object':
    case 'record':
      return raw.trim().startsWith('{') ? parseJson(raw) : raw;
    case 'union': {
      let converted: unknown = raw;
      for (const option of d.options as z.ZodType[]) {
        const v = coerceEnv(option, raw);
        if (option.safeParse(v).success) return v;
        if (converted === raw) converted = v;
      }
      // No option takes it: give validation the first conversion (a JSON mapping with a bad
      // key), so that its error names that key instead of "got a string".
      return converted;
    }
    default:
      return raw;
  }
}

function parseJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let cur = target;
  for (const key of path.slice(0, -1)) {
    if (!isPlainObject(cur[key])) cur[key] = {};
    cur = cur[key] as Record<string, unknown>;
  }
  cur[path[path.length - 1]] = value;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null);

/** Deep merge: mappings merge key by key; anything else in `over` replaces; `undefined` keeps `base`. */
export function mergeConfig(base: unknown, over: unknown): any {
  if (over === undefined) return base;
  if (!isPlainObject(base) || !isPlainObject(over)) return over;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = mergeConfig(base[k], v);
  return out;
}
