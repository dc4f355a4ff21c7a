/**
 * The bulk paths for big upsert groups. Fresh rows (expected absent) may be COPied straight
 * into the target (direct-copy.ts); otherwise COPY into a staging table shaped like the
 * target, then one `INSERT … SELECT … ON CONFLICT` and a DELETE of the staged rows, all in
 * the batch transaction. On Citus the staging table is distributed colocated with the target,
 * so the merge is pushed down to the shards (../shared/README.md measured it fastest there);
 * without Citus it is a temporary table per connection ('session' staging: no WAL, no bloat).
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { classify, sqlStateOf, type Query } from './destination-errors.ts';
import type { ApplyTable } from './sink-change.ts';
import { lineChunks, type FastRow } from './fast-rows.ts';
import { BINARY_HEADER, BINARY_TRAILER } from './copy-binary.ts';
import { copyTextChunks } from './upsert-batch.ts';
import {
  clearStagingSql,
  copyIntoStagingSql,
  copyIntoTargetSql,
  createStagingSql,
  mergeFromStagingSql,
  sessionStaging,
  STAGING_SCHEMA,
  stagingBaseName,
  stagingTableName,
} from './staging-sql.ts';
import { openStagingPrepareSql, stagingLayout, stagingLayoutSql, stagingPrepareSql, type StagingColumn, type StagingLayoutRow } from './staging-layout.ts';

type Value = string | null;

/** COPY text: rows of values (encoded here) or lines already encoded (fast-rows.ts), in text or, `binary`, as COPY BINARY tuples. */
export type CopySource = { rows: readonly Value[][] } | { lines: readonly FastRow[]; binary?: boolean };

const isBinary = (source: CopySource): boolean => 'lines' in source && source.binary === true;

/** COPY `source` with `sql`; failures classified for `table`. */
async function copyRows(client: pg.ClientBase, sql: string, table: ApplyTable, source: CopySource): Promise<void> {
  try {
    const chunks = 'rows' in source ? copyTextChunks(source.rows) : source.binary ? binaryChunks(source.lines) : lineChunks(source.lines);
    await writeCopy(client.query(copyFrom(sql)), chunks);
  } catch (err) {
    throw classify(err, { table: `${table.schema}.${table.name}` });
  }
}

/** COPY BINARY tuples between the format's header and trailer. */
function* binaryChunks(rows: readonly FastRow[]): Generator<Buffer> {
  yield BINARY_HEADER;
  yield* lineChunks(rows);
  yield BINARY_TRAILER;
}

/**
 * Write `chunks` into a COPY stream and end it; resolves once the COPY has completed. Not
 * `pipeline(Readable.from(chunks), …)`: that costs a Readable, and an AbortController aborted
 * with a DOMException (a stack trace captured) per COPY, a few per batch.
 */
export async function writeCopy(copy: Writable, chunks: Iterable<Buffer | string>): Promise<void> {
  const done = once(copy, 'finish'); // rejects on the first 'error'
  done.catch(() => {}); // observed below; an early failure must not go unhandled meanwhile
  copy.on('error', () => {}); // a later one (after destroy) must not crash the process
  try {
    for (const chunk of chunks) {
      if (!copy.write(chunk)) await Promise.race([once(copy, 'drain'), done]);
    }
  } catch (err) {
    copy.destroy(err as Error); // CopyFail: the connection stays usable
    await done.catch(() => {});
    throw err;
  }
  copy.end();
  await done;
}

/**
 * Upsert `source` (aligned with `columns`) through the staging table. `staged`: the staging
 * tables this transaction used already (session staging still holds their rows).
 */
export async function upsertViaStaging(client: pg.ClientBase, q: Query, table: ApplyTable, columns: string[], source: CopySource, staged: Set<string>): Promise<void> {
  const session = sessionStaging(table);
  const name = stagingTableName(table);
  if (session && staged.has(name)) await q(clearStagingSql(table));
  staged.add(name);
  await copyRows(client, copyIntoStagingSql(table, columns, isBinary(source)), table, source);
  await q(mergeFromStagingSql(table, columns));
  if (!session) await q(clearStagingSql(table));
}

/**
 * COPY fresh rows straight into the target. 'conflict' when one was there already
 * (unique_violation; on Citus relayed from the worker as XX000 and read back by classify's
 * relayedSqlState): the transaction is then aborted, the caller rolls it back and applies
 * the batch again without this path.
 */
export async function copyIntoTarget(client: pg.ClientBase, table: ApplyTable, columns: string[], source: CopySource): Promise<'copied' | 'conflict'> {
  try {
    await copyRows(client, copyIntoTargetSql(table, columns, isBinary(source)), table, source);
    return 'copied';
  } catch (err) {
    if (sqlStateOf(err) === '23505') return 'conflict';
    throw err;
  }
}

const stagingReady = new WeakSet<ApplyTable>();
/** Staging DDL in progress, by staging table: partitions applied concurrently wait for one. */
const preparing = new Map<string, Promise<void>>();
/** Session staging: the table version each connection's temporary table was made for, by name. */
const sessionTables = new WeakMap<pg.ClientBase, Map<string, ApplyTable>>();

/**
 * The staging table exists with every target column. Shared: once per ApplyTable (a column
 * added later is added to it too) and, on Citus, distributed colocated with the target.
 * Session: once per connection and table version, outside the batch transaction.
 */
export async function ensureStaging(client: pg.ClientBase, q: Query, table: ApplyTable): Promise<void> {
  if (sessionStaging(table)) {
    const name = stagingTableName(table);
    let made = sessionTables.get(client);
    if (made?.get(name) === table) return;
    await q(createStagingSql(table));
    if (!made) sessionTables.set(client, (made = new Map()));
    made.set(name, table);
    return;
  }
  if (stagingReady.has(table)) return;
  const name = stagingTableName(table);
  for (let pending = preparing.get(name); pending; pending = preparing.get(name)) await pending.catch(() => {});
  if (stagingReady.has(table)) return;
  const run = prepareStaging(q, table).finally(() => preparing.delete(name));
  preparing.set(name, run);
  await run;
  stagingReady.add(table);
}

async function createStaging(q: Query, table: ApplyTable): Promise<void> {
  try {
    await q(createStagingSql(table));
  } catch (err) {
    // CREATE TABLE IF NOT EXISTS racing another sink process: the loser fails on the catalog's
    // unique index (23505) or as a duplicate table (42P07). The table exists either way.
    const state = sqlStateOf(err);
    if (state !== '23505' && state !== '42P07') throw err;
  }
}

const STAGING_COLUMNS_SQL = `SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull, a.attisdropped, c.relreplident::text AS replident
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0`;

/**
 * Made if missing, then laid out and altered (or made anew) in one transaction under the
 * staging table's lock (staging-layout.ts: openStagingPrepareSql says why). Runs before the
 * batch transaction, on a connection in none.
 */
async function prepareStaging(q: Query, table: ApplyTable): Promise<void> {
  await createStaging(q, table);
  await q('BEGIN');
  try {
    for (const sql of openStagingPrepareSql(table)) await q(sql);
    const layoutSql = stagingLayoutSql(table);
    const layout = layoutSql === null ? 'ok' : stagingLayout((await q(layoutSql)).rows[0] as StagingLayoutRow | undefined, table);
    const { rows } = await q(STAGING_COLUMNS_SQL, [STAGING_SCHEMA, stagingBaseName(table)]);
    for (const sql of stagingPrepareSql(table, layout, rows as StagingColumn[])) await q(sql);
    await q('COMMIT');
  } catch (err) {
    await q('ROLLBACK').catch(() => {});
    throw err;
  }
}

