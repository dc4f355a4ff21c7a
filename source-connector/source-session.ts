/**
 * The connector's normal (non-replication) connection to the source and what start-up
 * learns through it: the selected tables, the database name, the start-up checks' verdict.
 * A source that cannot be reached yet is waited for (openSourceWhenReachable); one that refuses
 * the connection for good (password, role, database: exit 1) or a FAIL finding (exit 2) is a
 * start-up error (context.phase = 'startup'). Later, a broken connection is re-opened on the
 * next use, until close().
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Logger } from '../shared/logger.ts';
import { ConfigError, RetriableError, SourceError, isRetriable, tlsTrustFailure } from '../shared/errors.ts';
import { behindPooler, poolerRefusedParameter, sourcePoolerError } from '../shared/checks/pooler.ts';
import { abortable, errorSummary, retry } from '../shared/retry.ts';
import { sourceSessionOptions, type TableInfo } from '../shared/pg-types.ts';
import { pgEndpoint, pgRemedy } from '../shared/config/postgres.ts';
import { connectionConfig, type SourceConfig } from './config.ts';
import { columnDefaults, keyIndexes, loadTypes, resolveTables } from './catalog.ts';
import { parseLsn } from './pgoutput-decoder.ts';
import { formatFindings, gatherSourceFacts, judgeSourceFacts, type SourceFacts } from './checks.ts';
import type { CatalogAccess } from './table-versions.ts';
import { resetTransactionTimeout } from '../shared/timeout-reset.ts';
import { currentLsnSql, waitForReplay } from './standby.ts';

export interface SourceSession {
  /** Base connection settings (snapshot readers and the walsender add their own options). */
  connection: pg.ClientConfig;
  /** `host:port`, never with credentials. */
  endpoint: string;
  database: string;
  tables: TableInfo[];
  /**
   * The WAL insert position read just before `tables`: a transaction committed before it is
   * in them, one committed at or after it may not be (table-versions.ts tells a change made
   * while the connector ran by it).
   */
  catalogLsn: bigint;
  /**
   * `schema.name` of the tables whose key has values equal at the destination yet spelled apart
   * (key-equality.ts): their topics are made with one partition, so that a key change between
   * two spellings stays in order.
   */
  singlePartition: ReadonlySet<string>;
  /** The open connection, re-opened if it broke (a failure is retriable). */
  connect(): Promise<pg.Client>;
  /**
   * A standby source's primary (`primary`; unset on a primary): the slot and the reads on the
   * standby, the writes there (standby.ts); slot.ts asks it for what a slot's creation waits for.
   */
  primaryConnection?: pg.ClientConfig;
  /** The connection the connector writes through (publication, heartbeats): the primary's while the source is a standby (asked at each call: a standby promoted meanwhile takes the writes itself), else connect()'s. */
  write(): Promise<pg.Client>;
  /** After a write through write(): returns once the source has replayed it (at once on a primary). */
  replayed(what: string, signal?: AbortSignal): Promise<void>;
  catalogAccess(): CatalogAccess;
  close(): Promise<void>;
}

/** How long a slot that another process still holds gets to be released (a connector killed a moment ago). */
const ACTIVE_SLOT_GRACE_MS = 5_000;


/**
 * The connector's own session on the source, named with its slot (as PostgreSQL keeps it: 63
 * bytes; slot names are ASCII): `resnapshot` tells this connector's sessions from another's.
 */
export function sourceSessionName(slot: string): string {
  return `shardbridge-source ${slot}`.slice(0, 63);
}

export async function openSource(config: SourceConfig, log: Logger): Promise<SourceSession> {
  const connection = connectionConfig(config.source, { section: 'source', application_name: sourceSessionName(config.slotName) });
  const endpoint = pgEndpoint(config.source, false);
  const startupError = (message: string, cause?: unknown, remedy?: string) =>
    new SourceError(message, { cause, context: { phase: 'startup', source: endpoint }, remedy });

  let client: pg.Client;
  try {
    client = await open(connection, log);
  } catch (err) {
    const parameter = poolerRefusedParameter(err);
    if (parameter) throw sourcePoolerError(sourceKey(config), `it refuses the startup parameter "${parameter}"`, err);
    const e = err as { code?: string; message?: string };
    throw new SourceError(`cannot connect to the source PostgreSQL at ${endpoint}: ${e.message ?? String(err)}${e.code ? ` (${e.code})` : ''}`, {
      cause: err,
      context: { phase: 'startup', source: endpoint },
      remedy: pgRemedy(err, 'source', 'check source.host / source.port (or source.url), that the server runs and accepts connections from here (pg_hba.conf), and the credentials'),
      retriable: unreachable(err),
    });
  }
  let tables: TableInfo[];
  let database: string;
  let catalogLsn: bigint;
  let singlePartition: ReadonlySet<string>;
  // The standby's primary, opened when the source is a standby and `primary` is set.
  let primary: { client: pg.Client; connection: pg.ClientConfig; endpoint: string } | null = null;
  try {
    // Before any check: through a pooler (one that passes our options on) the checks would pass
    // and the replication connection then be refused, retried for ever.
    if (await behindPooler(client)) throw sourcePoolerError(sourceKey(config), "the server session's pid is not the one the connection was given");
    // Read before the catalog, in its own statement: every transaction committed before this
    // position is visible to the catalog queries that follow.
    const { rows: [at] } = await client.query(`SELECT current_database() AS db, ${currentLsnSql('insert')}::text AS lsn, pg_is_in_recovery() AS in_recovery`);
    database = at.db;
    catalogLsn = parseLsn(at.lsn);
    if (at.in_recovery === true && config.primary) primary = await openPrimary(config, log);
    const resolved = await resolveTables(client, config.tables);
    tables = resolved.tables;
    const gather = () =>
      gatherSourceFacts(client, {
        slotName: config.slotName,
        publicationName: config.publicationName,
        topicPrefix: config.topicPrefix,
        resolved,
        slotFailover: config.slotFailover,
        primary,
        primaryConfigured: config.primary !== undefined,
      });
    let facts: SourceFacts = await gather();
    const deadline = Date.now() + ACTIVE_SLOT_GRACE_MS;
    while (facts.slot?.active && Date.now() < deadline) {
      await sleep(250);
      facts = await gather();
    }
    singlePartition = new Set(facts.keyEquality.map((f) => f.table));
    const findings = judgeSourceFacts(facts);
    for (const f of findings.filter((x) => x.level === 'WARN')) log.warn({ check: f.check, object: f.object, remedy: f.remedy }, f.message);
    if (findings.some((f) => f.level === 'FAIL')) {
      throw startupError(`start-up checks failed on the source ${endpoint}:\n${formatFindings(findings.filter((f) => f.level !== 'PASS'))}`);
    }
  } catch (err) {
    await client.end().catch(() => {});
    await primary?.client.end().catch(() => {});
    if (err instanceof SourceError || err instanceof ConfigError) throw err;
    // A connection lost during the checks (the server restarting) is tried again, as a refused one.
    throw new SourceError(`start-up checks on the source ${endpoint} failed: ${(err as Error).message}`, {
      cause: err,
      context: { phase: 'startup', source: endpoint },
      retriable: unreachable(err),
    });
  }
  log.info({ source: endpoint, database, tables: tables.map((t) => `${t.schema}.${t.name}`), ...(primary && { primary: primary.endpoint }) }, primary ? 'source checks passed: the source is a standby, the connector writes to its primary' : 'source checks passed');

  const src = reconnecting(client, connection, 'source', endpoint, log);
  const prim = primary && reconnecting(primary.client, primary.connection, 'primary', primary.endpoint, log);
  const connect = src.connect;
  // A standby promoted under the running connector no longer replays its primary: from then on
  // its writes go to the source itself (as the next start would do), else the heartbeats would
  // go where the slot never sees them, or fail with the old primary down.
  let promoted = false;
  const write = !prim
    ? connect
    : async (): Promise<pg.Client> => {
        const c = await connect();
        if (promoted) return c;
        if ((await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r === true) return prim.connect();
        log.warn({ source: endpoint, primary: primary!.endpoint }, 'the source standby was promoted (no longer in recovery): the connector writes to it from now on, not to primary; remove primary from the configuration');
        promoted = true;
        return c;
      };
  return {
    connection,
    endpoint,
    database,
    tables,
    catalogLsn,
    singlePartition,
    connect,
    get primaryConnection() {
      return promoted ? undefined : primary?.connection;
    },
    write,
    async replayed(what, signal) {
      if (!prim || promoted) return;
      const { rows: [r] } = await (await write()).query(`SELECT ${currentLsnSql()}::text AS lsn`);
      await waitForReplay(await connect(), parseLsn(r.lsn), { what, signal });
    },
    catalogAccess: () => ({
      loadTypes: async (oids) => loadTypes(await connect(), oids),
      primaryKey: async (relid) => (await keyIndexes(await connect(), [relid])).primary.get(relid) ?? [],
      columnDefaults: async (relid, columns) => columnDefaults(await connect(), relid, columns),
    }),
    async close() {
      await Promise.all([src.close(), prim?.close()]);
    },
  };
}

/** A standby source's primary (`primary`): opened for the checks (its identity) and the connector's writes. */
async function openPrimary(config: SourceConfig, log: Logger): Promise<{ client: pg.Client; connection: pg.ClientConfig; endpoint: string }> {
  const section = config.primary!;
  const connection = connectionConfig(section, { section: 'primary', application_name: sourceSessionName(config.slotName) });
  const endpoint = pgEndpoint(section, false);
  try {
    return { client: await open(connection, log), connection, endpoint };
  } catch (err) {
    const e = err as { code?: string; message?: string };
    throw new SourceError(`cannot connect to the source standby's primary at ${endpoint} (primary): ${e.message ?? String(err)}${e.code ? ` (${e.code})` : ''}`, {
      cause: err,
      context: { phase: 'startup', primary: endpoint },
      remedy: pgRemedy(err, 'primary', 'check primary.host / primary.port (or primary.url), that the server runs and accepts connections from here (pg_hba.conf), and the credentials'),
      retriable: unreachable(err),
    });
  }
}

/**
 * An open connection re-opened on the next use after it broke (a failure is retriable), until
 * close(). `section` (source, primary) and `endpoint` name it in the log and errors.
 */
function reconnecting(first: pg.Client, connection: pg.ClientConfig, section: string, endpoint: string, log: Logger): { connect(): Promise<pg.Client>; close(): Promise<void> } {
  let client = first;
  let broken = false;
  const watch = (c: pg.Client) => {
    c.on('error', (err) => {
      broken = true;
      log.warn({ err, [section]: endpoint }, `${section} connection lost`);
    });
    c.on('end', () => (broken = true));
  };
  watch(client);
  let reopening: Promise<pg.Client> | undefined;
  let closed = false;
  const connect = async (): Promise<pg.Client> => {
    // After close (a stop), what is still under way gets no new connection: it would stay open.
    if (closed) throw new SourceError(`the connection to the ${section} ${endpoint} was closed (the connector stops)`, { context: { [section]: endpoint } });
    if (!broken) return client;
    reopening ??= (async () => {
      try {
        const c = await open(connection, log);
        await client.end().catch(() => {});
        if (closed) {
          await c.end().catch(() => {});
          throw new Error('the connector stopped');
        }
        client = c;
        broken = false;
        watch(c);
        log.info({ [section]: endpoint }, `${section} connection re-opened`);
        return c;
      } catch (err) {
        throw new RetriableError(`cannot reconnect to the ${section} at ${endpoint}: ${(err as Error).message}`, { cause: err, context: { [section]: endpoint } });
      } finally {
        reopening = undefined;
      }
    })();
    return reopening;
  };
  return {
    connect,
    async close() {
      broken = true;
      closed = true;
      await reopening?.catch(() => {});
      await client.end().catch(() => {});
    },
  };
}

/** The key the source's connection comes from, for messages. */
const sourceKey = (config: SourceConfig): string => (config.source.url !== undefined ? 'source.url' : 'source.host');

/**
 * Whether a failure to connect (or a connection lost during the start-up checks) is the server
 * not reachable yet, which the source waits out: a refused port, a timeout, DNS, a server
 * starting up or shutting down (57P0x), a connection-level (08xxx) or resource (53xxx, too many
 * connections) SQLSTATE, pg's connect timeout. Not a wrong password, role or database (28P01,
 * 28000, 3D000) nor a certificate that does not verify: those are settings to fix. Pure.
 */
export function unreachable(err: unknown): boolean {
  if (tlsTrustFailure(err) !== null) return false;
  if (isRetriable(err)) return true;
  const e = err as { severity?: unknown; message?: unknown } | null;
  return typeof e?.severity !== 'string' && typeof e?.message === 'string' && /^(timeout expired|Connection terminated unexpectedly)$/.test(e.message);
}

/**
 * openSource(), tried again with backoff while the source cannot be reached (`unreachable`):
 * a warning per attempt naming host:port and since when, `onWaiting(true)` at the first and
 * `onWaiting(false)` once it answered or gave up. Anything else rejects as openSource's error;
 * `signal` ends the wait at once (rejects with its reason), also during an attempt.
 */
export async function openSourceWhenReachable(
  config: SourceConfig,
  log: Logger,
  o: { signal?: AbortSignal; onWaiting?: (waiting: boolean) => void } = {},
): Promise<SourceSession> {
  const endpoint = pgEndpoint(config.source, false);
  let since: number | null = null;
  const attempt = async (): Promise<SourceSession> => {
    const session = await openSource(config, log);
    // Opened after the stop: closed, not left open.
    if (o.signal?.aborted) {
      await session.close();
      throw o.signal.reason;
    }
    return session;
  };
  try {
    const opening = retry(attempt, {
      what: `connect to the source PostgreSQL at ${endpoint}`,
      retries: Infinity,
      initialMs: 500,
      maxMs: 30_000,
      signal: o.signal,
      retryIf: (err) => err instanceof SourceError && err.retriable,
      onRetry: (err, n, delayMs) => {
        if (since === null) {
          since = Date.now();
          o.onWaiting?.(true);
        }
        const e = err as SourceError;
        const cause = e.cause as { message?: string; code?: string } | undefined;
        const at = new Date(since).toISOString();
        log.warn(
          { source: endpoint, err: log.isLevelEnabled('debug') ? e : errorSummary(e.cause), attempt: n, delayMs, since: at, remedy: e.remedy },
          `cannot reach the source PostgreSQL at ${endpoint} since ${at} (${Math.round((Date.now() - since) / 1000)} s): ${cause?.message ?? e.message}${cause?.code ? ` (${cause.code})` : ''}; retrying in ${delayMs} ms`,
        );
      },
    });
    // Also during an attempt: a connect may take its whole timeout.
    const session = o.signal ? await abortable(opening, o.signal) : await opening;
    if (since !== null) log.info({ source: endpoint, seconds: Math.round((Date.now() - since) / 1000) }, `the source PostgreSQL at ${endpoint} answered`);
    return session;
  } finally {
    if (since !== null) o.onWaiting?.(false);
  }
}

async function open(connection: pg.ClientConfig, log: Logger): Promise<pg.Client> {
  const c = new pg.Client({ ...connection, options: sourceSessionOptions(connection.options), connectionTimeoutMillis: connection.connectionTimeoutMillis ?? 15_000 });
  c.on('error', (err) => log.debug({ err }, 'source connection error'));
  try {
    await c.connect();
    await resetTransactionTimeout(c, connection.options);
  } catch (err) {
    await c.end().catch(() => {});
    throw err;
  }
  return c;
}
