/**
 * The connector's normal (non-replication) connection to the source and what start-up
 * learns through it: the selected tables, the database name, the start-up checks' verdict.
 * A failure to connect or a FAIL finding is a start-up error (context.phase = 'startup',
 * exit code 2). Later, a broken connection is re-opened on the next use.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Logger } from '../shared/logger.ts';
import { RetriableError, SourceError } from '../shared/errors.ts';
import { sourceSessionOptions, type TableInfo } from '../shared/pg-types.ts';
import { pgEndpoint, pgRemedy } from '../shared/config/common.ts';
import { connectionConfig, type SourceConfig } from './config.ts';
import { columnDefaults, keyIndexes, loadTypes, resolveTables } from './catalog.ts';
import { parseLsn } from './pgoutput-decoder.ts';
import { formatFindings, gatherSourceFacts, judgeSourceFacts, type SourceFacts } from './checks.ts';
import type { CatalogAccess } from './table-versions.ts';

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
  const connection = connectionConfig(config.source, { application_name: sourceSessionName(config.slotName) });
  const endpoint = pgEndpoint(config.source, false);
  const startupError = (message: string, cause?: unknown, remedy?: string) =>
    new SourceError(message, { cause, context: { phase: 'startup', source: endpoint }, remedy });

  let client: pg.Client;
  try {
    client = await open(connection, log);
  } catch (err) {
    const e = err as { code?: string; message?: string };
    throw startupError(
      `cannot connect to the source PostgreSQL at ${endpoint}: ${e.message ?? String(err)}${e.code ? ` (${e.code})` : ''}`,
      err,
      pgRemedy(err, 'source', 'check source.host / source.port (or source.url), that the server runs and accepts connections from here (pg_hba.conf), and the credentials'),
    );
  }
  let broken = false;
  const watch = (c: pg.Client) => {
    c.on('error', (err) => {
      broken = true;
      log.warn({ err, source: endpoint }, 'source connection lost');
    });
    c.on('end', () => (broken = true));
  };
  watch(client);

  let tables: TableInfo[];
  let database: string;
  let catalogLsn: bigint;
  let singlePartition: ReadonlySet<string>;
  try {
    // Read before the catalog, in its own statement: every transaction committed before this
    // position is visible to the catalog queries that follow.
    const { rows: [at] } = await client.query('SELECT current_database() AS db, pg_current_wal_insert_lsn()::text AS lsn');
    database = at.db;
    catalogLsn = parseLsn(at.lsn);
    const resolved = await resolveTables(client, config.tables);
    tables = resolved.tables;
    const gather = () =>
      gatherSourceFacts(client, { slotName: config.slotName, publicationName: config.publicationName, topicPrefix: config.topicPrefix, resolved });
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
    if (err instanceof SourceError) throw err;
    throw startupError(`start-up checks on the source ${endpoint} failed: ${(err as Error).message}`, err);
  }
  log.info({ source: endpoint, database, tables: tables.map((t) => `${t.schema}.${t.name}`) }, 'source checks passed');

  let reopening: Promise<pg.Client> | undefined;
  const connect = async (): Promise<pg.Client> => {
    if (!broken) return client;
    reopening ??= (async () => {
      try {
        const c = await open(connection, log);
        await client.end().catch(() => {});
        client = c;
        broken = false;
        watch(c);
        log.info({ source: endpoint }, 'source connection re-opened');
        return c;
      } catch (err) {
        throw new RetriableError(`cannot reconnect to the source at ${endpoint}: ${(err as Error).message}`, { cause: err, context: { source: endpoint } });
      } finally {
        reopening = undefined;
      }
    })();
    return reopening;
  };
  return {
    connection,
    endpoint,
    database,
    tables,
    catalogLsn,
    singlePartition,
    connect,
    catalogAccess: () => ({
      loadTypes: async (oids) => loadTypes(await connect(), oids),
      primaryKey: async (relid) => (await keyIndexes(await connect(), [relid])).primary.get(relid) ?? [],
      columnDefaults: async (relid, columns) => columnDefaults(await connect(), relid, columns),
    }),
    async close() {
      broken = true;
      await client.end().catch(() => {});
    },
  };
}

async function open(connection: pg.ClientConfig, log: Logger): Promise<pg.Client> {
  const c = new pg.Client({ ...connection, options: sourceSessionOptions(connection.options), connectionTimeoutMillis: connection.connectionTimeoutMillis ?? 15_000 });
  c.on('error', (err) => log.debug({ err }, 'source connection error'));
  try {
    await c.connect();
  } catch (err) {
    await c.end().catch(() => {});
    throw err;
  }
  return c;
}
