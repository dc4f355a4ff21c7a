/**
 * The replication slot on the source: create a pgoutput slot that exports a snapshot, read a
 * slot's status, drop it (its publication: publication.ts).
 *
 * A new slot is created on a replication connection (`CREATE_REPLICATION_SLOT … (SNAPSHOT
 * 'export')`): the exported snapshot stays importable only while that connection is open and
 * runs no other command, so the caller keeps it until every snapshot reader has imported it.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Logger } from '../shared/logger.ts';
import { RetriableError, SourceError } from '../shared/errors.ts';
import { sourceSessionOptions } from '../shared/pg-types.ts';
import { quoteIdent } from './catalog.ts';
import { parseLsn } from './pgoutput-decoder.ts';
import { describePrepared, preparedRemedy, readPreparedTransactions, type PreparedTransaction } from './prepared-xacts.ts';
import { resetTransactionTimeout } from '../shared/timeout-reset.ts';
import { alterFailoverError } from './failover-checks.ts';
import { askForRunningXacts, currentLsnSql, invalidationReasonSql } from './standby.ts';

export interface SlotStatus {
  slotName: string;
  /** The database the slot decodes (slots are cluster-wide, their names too). */
  database: string | null;
  plugin: string | null;
  active: boolean;
  activePid: number | null;
  /** Null only for a slot that never decoded (or a physical slot). */
  confirmedFlushLsn: bigint | null;
  restartLsn: bigint | null;
  /** reserved | extended | unreserved | lost (NULL for a slot that reserved no WAL yet). */
  walStatus: string | null;
  /** pg_replication_slots.invalidation_reason (PostgreSQL 17+; on 16 rows_removed for a standby's slot that conflicted; null before, or while valid). */
  invalidationReason?: string | null;
  /** pg_replication_slots.failover (PostgreSQL 17+; null before): standbys with sync_replication_slots keep a copy. */
  failover?: boolean | null;
  /** pg_current_wal_lsn() at the time of the query (on a standby, pg_last_wal_replay_lsn(): standby.ts). */
  currentLsn: bigint;
}

export interface ExportedSlot {
  slotName: string;
  /** Decoding from the slot starts with transactions committing after this position. */
  consistentPoint: bigint;
  /** For `SET TRANSACTION SNAPSHOT`; valid until release(). */
  snapshotName: string;
  /** Closes the replication connection: the snapshot can no longer be imported (a temporary slot is dropped). */
  release(): Promise<void>;
}

/** The slot's state, or null when there is no slot of that name. */
export async function slotStatus(client: pg.ClientBase, slotName: string): Promise<SlotStatus | null> {
  const { rows } = await client.query(
    `SELECT s.database, s.plugin, s.active, s.active_pid, s.confirmed_flush_lsn::text AS confirmed, s.restart_lsn::text AS restart,
            s.wal_status, ${invalidationReasonSql()} AS invalidation_reason, (to_jsonb(s) ->> 'failover')::boolean AS failover,
            ${currentLsnSql()}::text AS current
       FROM pg_replication_slots s WHERE s.slot_name = $1`,
    [slotName],
  );
  if (rows.length === 0) return null;
  const r = rows[0];
  return {
    slotName,
    database: r.database,
    plugin: r.plugin,
    active: r.active,
    activePid: r.active_pid,
    confirmedFlushLsn: r.confirmed === null ? null : parseLsn(r.confirmed),
    restartLsn: r.restart === null ? null : parseLsn(r.restart),
    walStatus: r.wal_status,
    invalidationReason: r.invalidation_reason,
    failover: r.failover,
    currentLsn: parseLsn(r.current),
  };
}

/**
 * Once the publication lists the selection: the WAL position, and the top-level xids running
 * (32 bits, as pgoutput's Begin gives them), read together. A change pgoutput sends later of a
 * table the publication no longer lists was committed before that position, or made by one of
 * those transactions under the catalog of before (skip-points.ts).
 */
export async function alignmentPoint(client: pg.ClientBase): Promise<{ lsn: bigint; running: Set<number> }> {
  const { rows: [r] } = await client.query(
    `SELECT ${currentLsnSql()}::text AS lsn, ARRAY(SELECT (x::text::bigint % 4294967296)::text FROM pg_snapshot_xip(pg_current_snapshot()) x) AS running`,
  );
  return { lsn: parseLsn(r.lsn), running: new Set((r.running as string[]).map(Number)) };
}

/** Drop the slot if it exists (it must not be active). */
export async function dropSlot(client: pg.ClientBase, slotName: string, log: Logger): Promise<void> {
  const { rows } = await client.query(
    `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`,
    [slotName],
  );
  if (rows.length > 0) log.info({ slot: slotName }, 'replication slot dropped');
}

/**
 * Create a pgoutput slot on a replication connection and export its snapshot. `temporary`
 * slots vanish with the connection (used by snapshot mode initial_only, which never streams).
 * Creating one waits until every transaction running at its start (in any database) has ended:
 * while it waits, the transactions are named in the log (slotWait), and `signal` cancels it.
 * On a standby (`primary`: its primary's connection) it also waits for a running-transactions
 * record from the primary, which an idle primary writes every 15 s at best: the wait asks the
 * primary for one (pg_log_standby_snapshot()) until the slot exists.
 */
export async function createSlotWithSnapshot(
  connection: pg.ClientConfig,
  slotName: string,
  log: Logger,
  opts: { temporary?: boolean; signal?: AbortSignal; failover?: boolean; primary?: pg.ClientConfig } = {},
): Promise<ExportedSlot> {
  const client = replicationClient(connection, slotName, log);
  await client.connect();
  // Its transaction holds the exported snapshot until every reader has imported it.
  await resetTransactionTimeout(client, connection.options).catch(async (err: unknown) => {
    await client.end().catch(() => {});
    throw err;
  });
  let rows;
  const wait = slotWait(connection, (client as unknown as { processID: number }).processID, slotName, log, opts);
  try {
    ({ rows } = await client.query(
      `CREATE_REPLICATION_SLOT ${quoteIdent(slotName)} ${opts.temporary ? 'TEMPORARY ' : ''}LOGICAL pgoutput (${slotOptions(opts)})`,
    ));
  } catch (err) {
    await client.end().catch(() => {});
    throw opts.signal?.aborted ? new SourceError(`creating replication slot "${slotName}" was cancelled: the connector is stopping`, { cause: err, context: { slot: slotName } }) : err;
  } finally {
    wait.end();
  }
  const consistentPoint = parseLsn(rows[0].consistent_point);
  const snapshotName = rows[0].snapshot_name as string;
  log.info({ slot: slotName, consistentPoint: rows[0].consistent_point, snapshotName, temporary: Boolean(opts.temporary), failover: Boolean(opts.failover) }, 'replication slot created');
  let released = false;
  return {
    slotName,
    consistentPoint,
    snapshotName,
    async release() {
      if (released) return;
      released = true;
      await client.end().catch(() => {});
    },
  };
}

/** A session on `server` with the source's session options; `extra`: a replication connection, a connect timeout. */
function sourceClient(server: pg.ClientConfig, extra: { replication?: 'database'; connectionTimeoutMillis?: number } = {}): pg.Client {
  return new pg.Client({ ...server, ...extra, options: sourceSessionOptions(server.options) } as pg.ClientConfig);
}

/** A replication connection (slot commands) with the source's session options. */
function replicationClient(connection: pg.ClientConfig, slotName: string, log: Logger): pg.Client {
  const client = sourceClient(connection, { replication: 'database' });
  // An 'error' event without a listener would crash the process; failures surface through queries.
  client.on('error', (err) => log.debug({ err, slot: slotName }, 'slot connection error'));
  return client;
}

/**
 * CREATE_REPLICATION_SLOT's options. FAILOVER only when asked (servers before 17 know no such
 * option); a temporary slot never, which PostgreSQL refuses. Pure.
 */
export function slotOptions(opts: { temporary?: boolean; failover?: boolean }): string {
  return opts.failover && !opts.temporary ? `SNAPSHOT 'export', FAILOVER true` : `SNAPSHOT 'export'`;
}

/**
 * Set an existing slot's failover flag (PostgreSQL 17+), on a replication connection as the
 * command needs; the slot must not be in use.
 */
export async function alterSlotFailover(connection: pg.ClientConfig, slotName: string, failover: boolean, log: Logger): Promise<void> {
  const client = replicationClient(connection, slotName, log);
  try {
    await client.connect();
    await client.query(`ALTER_REPLICATION_SLOT ${quoteIdent(slotName)} (FAILOVER ${failover})`);
  } catch (err) {
    throw alterFailoverError(err, slotName, failover);
  } finally {
    await client.end().catch(() => {});
  }
  log.info({ slot: slotName, failover }, `replication slot "${slotName}" is ${failover ? 'now a failover slot (standbys with sync_replication_slots keep it)' : 'no longer a failover slot'}`);
}

/**
 * The oldest transaction a slot's creation may wait for: a session's, or a prepared one, which
 * has no session (pg_stat_activity does not show it). Pure.
 */
export function slotWaitOldest(o: { pid: number; datname: string; state: string; since: string } | undefined, prepared: readonly PreparedTransaction[]): string {
  // Other roles' transactions show only to a role with pg_read_all_stats: the wait is said all the same.
  const session = o ? `the oldest: pid ${o.pid} in database ${o.datname}, ${o.state} since ${o.since}` : prepared.length ? null : 'none of them visible to this role (pg_read_all_stats shows them)';
  const twoPhase = prepared.length ? `${prepared.length} prepared transaction(s), the oldest ${describePrepared(prepared[0])}` : null;
  return [session, twoPhase].filter((x) => x !== null).join('; ');
}

/** Pure. */
export function slotWaitRemedy(prepared: readonly PreparedTransaction[]): string {
  const sessions = 'end those transactions (COMMIT, ROLLBACK, or pg_terminate_backend(pid)); nothing is streamed until the slot exists';
  return prepared.length ? `${sessions}; prepared ones: ${preparedRemedy(prepared)}` : sessions;
}

/** The first note of a slot creation still waiting, then one a minute. */
const SLOT_WAIT_NOTE_MS = 3_000;
const SLOT_WAIT_REPEAT_MS = 60_000;

/**
 * While the walsender `pid` creates a slot: after a few seconds, and every minute, the
 * transactions it may be waiting for (those holding an xid, oldest first) are logged, since
 * nothing streams meanwhile; on `signal`, the creation is cancelled (pg_cancel_backend), as
 * the wait does not end by itself. Read on connections of their own: the replication one is busy.
 * On a standby, the transactions are the primary's (`primary`), which is asked for
 * running-transactions records meanwhile (standby.ts, askForRunningXacts).
 */
function slotWait(connection: pg.ClientConfig, pid: number, slotName: string, log: Logger, opts: { signal?: AbortSignal; primary?: pg.ClientConfig }): { end(): void } {
  const onAdmin = async <T>(fn: (c: pg.Client) => Promise<T>, server = connection): Promise<T> => {
    const c = sourceClient(server);
    c.on('error', () => {});
    try {
      await c.connect();
      return await fn(c);
    } finally {
      await c.end().catch(() => {});
    }
  };
  const started = Date.now();
  const standby = opts.primary !== undefined;
  const note = async () => {
    const [rows, prepared] = await onAdmin(async (c) => [
      (await c.query(
        `SELECT pid, datname, state, xact_start::text AS since, application_name AS app, left(query, 120) AS query
           FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> $1 ORDER BY xact_start LIMIT 5`,
        // On the primary the walsender's pid (the standby's) is no session of its own.
        [standby ? 0 : pid],
      )).rows,
      await readPreparedTransactions(c),
    ] as const, opts.primary);
    log.warn(
      { slot: slotName, waitedSeconds: Math.round((Date.now() - started) / 1000), transactions: rows, prepared, remedy: slotWaitRemedy(prepared) },
      `creating replication slot "${slotName}" waits for the transactions running when it began to end (a slot's snapshot needs them ended)${standby ? ", on the primary, and on a standby for the primary's next running-transactions record (asked for with pg_log_standby_snapshot() until the slot exists)" : ''}, ${slotWaitOldest(rows[0], prepared)}`,
    );
  };
  // A standby's slot needs a running-transactions record written after it began: asked of the primary until the slot exists.
  const primary = opts.primary;
  const asker = primary && askForRunningXacts(() => sourceClient(primary, { connectionTimeoutMillis: 10_000 }), slotName, log);
  let timer: NodeJS.Timeout | undefined;
  const schedule = (ms: number) => {
    timer = setTimeout(() => void note().catch((err: unknown) => log.debug({ err }, 'reading the transactions a slot waits for failed')).finally(() => timer && schedule(SLOT_WAIT_REPEAT_MS)), ms);
  };
  schedule(SLOT_WAIT_NOTE_MS);
  const cancel = () => void onAdmin((c) => c.query('SELECT pg_cancel_backend($1::int)', [pid])).catch((err: unknown) => log.debug({ err }, 'cancelling the slot creation failed'));
  opts.signal?.addEventListener('abort', cancel, { once: true });
  if (opts.signal?.aborted) cancel();
  return {
    end() {
      clearTimeout(timer);
      asker?.end();
      timer = undefined;
      opts.signal?.removeEventListener('abort', cancel);
    },
  };
}

/**
 * The name of a temporary slot beside `slotName` (63 bytes at most). A name too long for the
 * suffix keeps a hash of the whole name, so that two slots alike in their first characters
 * never take the same temporary slot. Pure.
 */
export function temporarySlotName(slotName: string, suffix: string): string {
  const plain = `${slotName}_${suffix}`;
  if (plain.length <= 63) return plain;
  const hash = createHash('sha1').update(slotName).digest('hex').slice(0, 8);
  return `${slotName.slice(0, 63 - suffix.length - hash.length - 2)}_${hash}_${suffix}`;
}

/**
 * A temporary slot exporting a snapshot, for `purpose` (named in errors). Every slot or WAL
 * sender taken is said with the remedy and retried with the session (a slot freed goes on by
 * itself), as is a slot of that name still held by an earlier session's connection (it goes with it).
 */
export async function createTemporarySlot(connection: pg.ClientConfig, slotName: string, purpose: string, log: Logger, signal?: AbortSignal, primary?: pg.ClientConfig): Promise<ExportedSlot> {
  try {
    return await createSlotWithSnapshot(connection, slotName, log, { temporary: true, signal, primary });
  } catch (err) {
    const code = (err as { code?: string })?.code;
    const context = { slot: slotName, sqlstate: code };
    if (code === '53400' || code === '53300') {
      throw new SourceError(`${purpose} needs a temporary replication slot and WAL sender besides the connector's, and none is free: ${(err as Error).message}`, {
        cause: err,
        context,
        retriable: true,
        remedy: 'drop an unused slot with pg_drop_replication_slot() (the connector retries), or raise max_replication_slots and max_wal_senders by one (restart required)',
      });
    }
    if (code === '42710') throw new RetriableError(`temporary slot "${slotName}" is still held by an earlier session: ${(err as Error).message}`, { cause: err, context });
    throw err;
  }
}
