/**
 * A connection pooler (PgBouncer, or another) between ShardBridge and a PostgreSQL server, told
 * at start. PgBouncer refuses a startup parameter it does not know ("unsupported startup
 * parameter: options", 08P01, which looks like a lost connection and was retried for ever), or,
 * with `ignore_startup_parameters = options`, drops it without a word: the session settings the
 * connectors put there were then not in effect. It hands out its own cancel key, so the pid a
 * client is told at connect is not its server session's pg_backend_pid(); and under transaction
 * (or statement) pooling two clients share one server session between their transactions.
 * The source's replication connection cannot go through PgBouncer (1.18 refuses `replication`);
 * the sink's session staging (a temporary table per connection) and its session settings need
 * one server session per client: session pooling.
 */
import type pg from 'pg';
import { ConfigError } from '../errors.ts';
import { quoteIdent, quoteLiteral } from '../sql.ts';

/** The startup parameter a pooler refused, from its error ("unsupported startup parameter: options"); null otherwise. Pure. */
export function poolerRefusedParameter(err: unknown): string | null {
  const message = (err as { message?: unknown } | null)?.message;
  if (typeof message !== 'string') return null;
  return /^unsupported startup parameter: (\S+)/.exec(message)?.[1] ?? null;
}

/** `-c name=value` (and `--name=value`) settings of a libpq options string, the last of each name. Pure. */
export function optionSettings(options: string): Map<string, string> {
  const out = new Map<string, string>();
  const words = options.trim().split(/\s+/).filter(Boolean);
  for (let i = 0; i < words.length; i++) {
    let w = words[i];
    if (w === '-c') w = words[++i] ?? '';
    else if (w.startsWith('-c')) w = w.slice(2);
    else if (w.startsWith('--')) w = w.slice(2);
    else continue;
    const eq = w.indexOf('=');
    if (eq > 0) out.set(w.slice(0, eq).replace(/-/g, '_'), w.slice(eq + 1));
  }
  return out;
}

/**
 * The settings asked for whose value in the session (pg_settings.setting, in the setting's own
 * unit) differs, or that the server does not know. Pure.
 */
export function settingsNotInEffect(wanted: ReadonlyMap<string, string>, actual: ReadonlyMap<string, string>): { name: string; wanted: string; actual: string | null }[] {
  const out: { name: string; wanted: string; actual: string | null }[] = [];
  for (const [name, value] of wanted) {
    const now = actual.get(name) ?? null;
    if (now === null || now.toLowerCase() !== value.toLowerCase()) out.push({ name, wanted: value, actual: now });
  }
  return out;
}

export interface PoolerFacts {
  /** The pid the connection was given at start is not its server session's: a pooler hands out its own. */
  pooler: boolean;
  /** Two clients were served by one server session: transaction or statement pooling. */
  sharedSessions: boolean;
}

/**
 * Whether `a` reaches PostgreSQL through a pooler, and (then) whether its server session is
 * shared with `b`'s between transactions: each asks its backend pid in turn, twice; a pooler
 * in transaction mode hands the server session one just released to the next (PgBouncer reuses
 * the last released first), a session pooler or PostgreSQL never does while both are connected.
 */
export async function probePooler(a: pg.Client, b: pg.Client): Promise<PoolerFacts> {
  const first = await pidOf(a);
  const pooler = toldOtherPid(a, first);
  if (!pooler) return { pooler, sharedSessions: false };
  const seen = [first, await pidOf(b), await pidOf(a), await pidOf(b)];
  return { pooler, sharedSessions: seen[0] === seen[1] || seen[1] === seen[2] || seen[2] === seen[3] };
}

/** Whether `client` reaches PostgreSQL through a pooler: the pid it was told at connect is not its session's. */
export async function behindPooler(client: pg.Client): Promise<boolean> {
  return toldOtherPid(client, await pidOf(client));
}

const pidOf = async (c: pg.Client): Promise<number> => Number((await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid);

/** The pid `client` was told at connect (its cancel key: a pooler's own through a pooler). */
function toldPid(client: pg.ClientBase): number | null {
  const told = (client as unknown as { processID?: number | null }).processID;
  return typeof told === 'number' ? told : null;
}

/** Whether the pid `client` was given at connect (its cancel key) is not `pid`, its session's pg_backend_pid(). */
export function toldOtherPid(client: pg.ClientBase, pid: number): boolean {
  const told = toldPid(client);
  return told !== null && told !== pid;
}

const sessionPids = new WeakMap<object, Promise<number | null>>();

/**
 * Ask, once, the server session's pid of a connection made through a pooler (the one it was told
 * at connect is the pooler's cancel key): call it as the connection opens, before its first query.
 */
export function learnSessionPid(client: pg.ClientBase): void {
  sessionPids.set(
    client,
    client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid').then(
      (r) => Number(r.rows[0].pid),
      () => null,
    ),
  );
}

/**
 * The server session's pid of `client` (pg_locks', pg_stat_activity's): learnt through a pooler
 * (a promise), else the one it was told at connect (at once: a caller registers it synchronously).
 */
export function sessionPid(client: pg.ClientBase): number | null | Promise<number | null> {
  return sessionPids.get(client) ?? toldPid(client);
}

/** Read `names` from pg_settings (the session's values, in their own unit). */
export async function readSettings(client: pg.ClientBase, names: readonly string[]): Promise<Map<string, string>> {
  const { rows } = await client.query<{ name: string; setting: string }>('SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])', [names]);
  return new Map(rows.map((r) => [r.name, r.setting]));
}

const POOLER = 'PgBouncer or another connection pooler';

/**
 * What to do when a pooler refused a startup parameter (a command's or connector's connection):
 * the source needs the server itself, the destination a session pool or the server. Pure.
 */
export function poolerRemedy(section: string, parameter: string): string {
  const direct = `${section}.url leads to ${POOLER}, which refuses the startup parameter "${parameter}" that carries ShardBridge's session settings: point ${section}.url (or ${section}.host and port) at the PostgreSQL server itself`;
  return section === 'destination'
    ? `${direct}; or, for the sink, a PgBouncer with pool_mode = session and ignore_startup_parameters = ${parameter}, the sink's settings made on its role (docs/configuration.md, "Connection poolers")`
    : direct;
}

/** The source cannot work through a pooler at all (replication, exported snapshots). */
export function sourcePoolerError(key: string, how: string, cause?: unknown): ConfigError {
  return new ConfigError(`${key} leads to ${POOLER} (${how}): the source needs a replication connection, which PgBouncer does not pass on, and its snapshot readers must share the exporting session's snapshot`, {
    cause,
    context: { key },
    remedy: `point ${key} at the PostgreSQL server itself (its host and port, not the pooler's); the pooler can stay in front of the applications`,
  });
}

const SINK_REMEDY_DIRECT = 'point destination.url at the PostgreSQL server itself (not the pooler)';

/** The pooler refused the sink's startup `options` (its session settings). */
export function sinkOptionsRefused(key: string, parameter: string, settings: ReadonlyMap<string, string>, role: string | null, cause?: unknown): ConfigError {
  return new ConfigError(`${key} leads to ${POOLER}, which refuses the startup parameter "${parameter}" that carries the sink's session settings (${describe(settings)})`, {
    cause,
    context: { key },
    remedy: `${SINK_REMEDY_DIRECT}; or use PgBouncer with pool_mode = session and ignore_startup_parameters = ${parameter}, with the settings made on the sink's role: ${alterRole(settings, role)}`,
  });
}

/** Transaction or statement pooling: the sink's temporary staging tables and settings need a session. */
export function sinkSharedSessions(key: string): ConfigError {
  return new ConfigError(
    `${key} leads to ${POOLER} in transaction (or statement) pooling: two of the sink's connections were served by one PostgreSQL session, but the sink keeps a temporary staging table and its settings in each session across transactions`,
    { context: { key }, remedy: `${SINK_REMEDY_DIRECT}, or give the sink a pool with pool_mode = session` },
  );
}

/** The sink's session settings are not what it asked for (a pooler dropped its startup options). */
export function sinkSettingsMissing(key: string, missing: { name: string; wanted: string; actual: string | null }[], pooler: boolean, role: string | null): ConfigError {
  const list = missing.map((m) => `${m.name} is ${m.actual ?? 'unknown'}, not ${m.wanted}`).join('; ');
  const why = pooler ? `${key} leads to ${POOLER} that dropped the sink's startup options (ignore_startup_parameters = options)` : `the destination did not apply the sink's startup options`;
  return new ConfigError(`${why}: its sessions run with ${list}`, {
    context: { key, settings: missing.map((m) => m.name).join(',') },
    remedy: `${SINK_REMEDY_DIRECT}; or make the settings on the sink's role: ${alterRole(new Map(missing.map((m) => [m.name, m.wanted])), role)}`,
  });
}

function describe(settings: ReadonlyMap<string, string>): string {
  return [...settings].map(([k, v]) => `${k}=${v}`).join(', ');
}

function alterRole(settings: ReadonlyMap<string, string>, role: string | null): string {
  const r = role === null ? '<sink role>' : quoteIdent(role);
  return [...settings].map(([k, v]) => `ALTER ROLE ${r} SET ${k} = ${quoteLiteral(v)};`).join(' ');
}
