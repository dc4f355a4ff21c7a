/**
 * Configuration pieces both connectors share: field builders, the Kafka section, and pure helpers
 * that turn a section into a printable copy (the PostgreSQL connection section: postgres.ts; the
 * Schema Registry's: registry.ts). Every object is strict: an unknown key is an error, never
 * silently ignored. `.describe()` texts are the "expected form" that config errors print.
 */
import { z } from 'zod';
import { redactDeep } from '../redact.ts';
import { readPasswordFile } from './password-file.ts';

// ---------- field builders ----------

export const positiveInt = () => z.number().int().positive();
export const nonNegativeInt = () => z.number().int().nonnegative();
export const nonEmptyString = () => z.string().min(1);
export const portNumber = () => z.number().int().min(0).max(65535);

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const logLevel = () => z.enum(LOG_LEVELS).default('info');

/** V8's heap growing factor for the connector process, in percent above 1× (shared/heap.ts); 0: V8's default; no default: the connector decides. */
export function heapGrowingPercent(byDefault: number): z.ZodDefault<z.ZodNumber>;
export function heapGrowingPercent(): z.ZodOptional<z.ZodNumber>;
export function heapGrowingPercent(byDefault?: number) {
  const n = z.number().int().min(0).max(1000);
  return byDefault === undefined ? n.optional() : n.default(byDefault);
}

/** Kafka topic names: [a-zA-Z0-9._-]; the prefix leaves room for `.schema.table` within Kafka's 249. */
export const topicName = () =>
  z.string().regex(/^[a-zA-Z0-9._-]{1,200}$/).describe('a Kafka topic name (letters, digits, ".", "_", "-"; at most 200)');

/** Lower-case unquoted PostgreSQL identifier (replication slot names allow nothing else). */
export const lowerIdentifier = () =>
  z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/).describe('a lower-case identifier (a-z, 0-9, "_"; at most 63, not starting with a digit)');

/** `schema.table`; a part holding dots, spaces or quotes is double-quoted (`"My Schema"."Order Items"`). */
export const qualifiedTableName = () =>
  z
    .string()
    .regex(/^(?:[^."\s]+|"(?:[^"]|"")+")\.(?:[^."\s]+|"(?:[^"]|"")+")$/)
    .describe('a "schema.table" name (double-quote a part holding dots or spaces: "My Schema"."Order Items")');

const hostPort = () =>
  z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+):\d{1,5}$/).describe('a "host:port" address');

/** A section that may be left out: validated as `{}` so that errors name its required keys, not the section. */
export function section<S extends z.ZodType>(schema: S): z.ZodPrefault<S> {
  return schema.prefault({} as z.input<S>);
}

// ---------- Kafka (and the password files Schema Registry shares) ----------

export const SASL_MECHANISMS = ['plain', 'scram-sha-256', 'scram-sha-512'] as const;

export const kafkaSchema = () =>
  z.strictObject({
    brokers: z.array(hostPort()).min(1),
    clientId: nonEmptyString().optional(),
    ssl: z
      .union([
        z.boolean(),
        z.strictObject({
          ca: nonEmptyString().describe('PEM text').optional(),
          cert: nonEmptyString().describe('PEM text').optional(),
          key: nonEmptyString().describe('PEM text').optional(),
          rejectUnauthorized: z.boolean().optional(),
        }),
      ])
      .optional(),
    sasl: z
      .strictObject({
        mechanism: z.enum(SASL_MECHANISMS),
        username: nonEmptyString(),
        password: nonEmptyString().optional(),
        /** A file holding the password: read at load, and again at each broker (re)authentication (FilePassword). */
        passwordFile: nonEmptyString().optional(),
      })
      // One pass (validation and value): the file is read once at load.
      .transform((v, ctx) => {
        if (v.password === undefined && v.passwordFile === undefined) {
          ctx.addIssue({ code: 'custom', path: ['password'], message: 'required (or kafka.sasl.passwordFile)' });
        }
        return withFilePassword(v, 'kafka.sasl', ctx) as { mechanism: (typeof SASL_MECHANISMS)[number]; username: string; password: string; passwordFile?: string };
      })
      .optional(),
  });
export type KafkaConfig = z.infer<ReturnType<typeof kafkaSchema>>;

/**
 * `passwordFile` beside `password` (both named), or a file that cannot serve (key and path named,
 * never the content); the file's password otherwise. The file is read here, once.
 */
function filePassword(v: { password?: string; passwordFile?: string }, section: string, ctx: z.RefinementCtx): string | undefined {
  if (v.passwordFile === undefined) return undefined;
  if (v.password !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['passwordFile'], message: `conflicts with ${section}.password: give the password once (the file, or the key)` });
  }
  const read = readPasswordFile(v.passwordFile);
  if ('problem' in read) {
    ctx.addIssue({ code: 'custom', path: ['passwordFile'], message: `${v.passwordFile}: ${read.problem}` });
    return undefined;
  }
  return read.password;
}

/** filePassword's issues alone: a section whose password is read later (PostgreSQL's, at each new connection). */
export function passwordFileIssues(v: { password?: string; passwordFile?: string }, section: string, ctx: z.RefinementCtx): void {
  filePassword(v, section, ctx);
}

/**
 * The section with `password` read from its `passwordFile` (filePassword's issues added), the key
 * kept: kafkajs and the registry client read the file again later (FilePassword).
 */
export function withFilePassword<T extends { password?: string; passwordFile?: string }>(v: T, section: string, ctx: z.RefinementCtx): T {
  const password = filePassword(v, section, ctx);
  return password === undefined ? v : { ...v, password };
}

// ---------- pure helpers ----------

export function safeDecode(x: string): string {
  try {
    return decodeURIComponent(x);
  } catch {
    return x;
  }
}

/** TLS private keys (`ssl.key`) are secrets too. */
const sslKeyPath = (path: readonly string[]) => path.length >= 2 && path[path.length - 1] === 'key' && path[path.length - 2] === 'ssl';

/** A copy fit for printing: every password, secret and `ssl.key` replaced by `***`, URL passwords masked. */
export function describeSafe<T>(config: T): T {
  return redactDeep(config, sslKeyPath) as T;
}
