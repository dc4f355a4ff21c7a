/**
 * Destination failures as the error taxonomy: PostgreSQL's own errors keep their fields and
 * are retriable by SQLSTATE class; anything else from the driver means the connection is gone
 * (retriable). Our own errors pass unchanged.
 */
import type pg from 'pg';
import { RetriableError, ShardBridgeError, SinkApplyError, isRetriable, isRetriableSqlState, tlsTrustFailure } from '../shared/errors.ts';

export type Query = (sql: string, params?: unknown[]) => Promise<pg.QueryResult>;

/** `client.query` whose failures are already classified. */
export function queryWith(client: pg.ClientBase): Query {
  return async (sql, params) => {
    try {
      return await client.query(sql, params);
    } catch (err) {
      throw classify(err, {});
    }
  };
}

/** A pool that may name the server it connects to (`host:port/database`, never credentials), for its connection failures' messages. */
export type NamedPool = pg.Pool & { readonly endpoint?: string };

/** `pool` carrying `endpoint` (destination-start.ts makes the sink's pool so). */
export function namedPool(pool: pg.Pool, endpoint: string): NamedPool {
  return Object.assign(pool, { endpoint });
}

/**
 * `fn` on a pooled connection. Failing to connect is retriable; `fn`'s errors pass as they are,
 * and a connection that failed with a retriable one is not given back (it may be dead).
 */
export async function withPooledClient<T>(pool: NamedPool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    // Retried whatever it is (a password changed or a database dropped under a running sink is the operator's to fix, as the log says).
    const code = (err as { code?: unknown }).code;
    const sqlstate = typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
    const at = pool.endpoint;
    throw new RetriableError(`cannot connect to the destination${at ? ` at ${at}` : ''}: ${(err as Error).message}`, {
      cause: err,
      context: { sqlstate },
      // Ours (destination.passwordFile unreadable, password-file.ts) says what to do.
      remedy: (sqlstate && waitingFor(sqlstate, (err as Error).message)) ?? (err instanceof ShardBridgeError ? err.remedy : undefined) ?? 'is the destination up and reachable, and does it accept the sink\'s role? The sink connects again with backoff',
    });
  }
  let broken = false;
  try {
    return await fn(client);
  } catch (err) {
    broken = isRetriable(err);
    throw err;
  } finally {
    client.release(broken);
  }
}

export function classify(err: unknown, where: { table?: string; column?: string }): Error {
  if (err instanceof ShardBridgeError) {
    if (where.table && err.context.table === undefined) return withTable(err, where.table);
    return err;
  }
  const e = err as { code?: string; severity?: string; message?: string; table?: string; schema?: string; column?: string; constraint?: string };
  if (typeof e?.severity === 'string' && typeof e.code === 'string') {
    const table = e.table ? (e.schema ? `${e.schema}.${e.table}` : e.table) : where.table;
    const code = relayedSqlState(e.code, e.message ?? '');
    const named = e.constraint === undefined || e.column === undefined ? fieldsFromMessage(e.message ?? '') : {};
    return new SinkApplyError(e.message ?? 'destination error', {
      retriable: retriableAtDestination(code),
      context: {
        table,
        column: e.column ?? named.column ?? where.column,
        constraint: e.constraint ?? named.constraint,
        sqlstate: code,
        ...(code !== e.code ? { reportedSqlstate: e.code } : {}),
      },
      cause: err,
      remedy: waitingFor(code, e.message ?? ''),
    });
  }
  return new RetriableError(`destination connection failed: ${e?.message ?? String(err)}`, {
    cause: err,
    context: { table: where.table },
    // A certificate that does not verify is a setting, not a lost connection: the start names the CA setting.
    ...(tlsTrustFailure(err) === null
      ? { remedy: 'the connection to the destination was lost (restart, failover, network, a terminated session): the batch rolled back and is applied again on a new connection' }
      : {}),
  });
}

/**
 * Whether the destination failing with `code` is worth waiting for. Beside the shared classes
 * (errors.ts): 25006, no writes accepted (default_transaction_read_only, or a standby after a
 * failover) holds for every record and every table alike, so it is not the record's to stall on:
 * a stall would bisect every partition's batch down to its first record and could not even be
 * recorded (shardbridge.stalls is written on the same destination). Pure.
 */
export function retriableAtDestination(code: string): boolean {
  return code === '25006' || isRetriableSqlState(code);
}

/**
 * A password refused under a running sink: only new sessions authenticate, those open go on
 * until they end (idle, terminated, a restart). destination.passwordFile, or with no password
 * given the pgpass file, is read at every new connection, so an edit of that file is taken at
 * the next try (docs/configuration.md, credentials rotation).
 */
const PASSWORD_CHANGED =
  "the destination refused the sink role's password (changed on the server?): new sessions fail, those open go on. " +
  'Write the new one in the file destination.passwordFile names (or, with no password in destination, the pgpass file: PGPASSFILE, else ~/.pgpass): ' +
  'it is read at every new connection, so the sink takes it at its next try without a restart. A password in destination.password, destination.url ' +
  'or SHARDBRIDGE_SINK_DESTINATION__PASSWORD is read at start only: change it there and restart the sink';

// A worker refusing the coordinator's own connection (libpq's text in Citus's 08006).
const WORKER_AUTH = /password authentication failed|no password supplied|authentication failed for user/;
const CITUS_WORKER_AUTH =
  "a Citus worker refused the coordinator's connection as the sink's role (the message names the worker): the coordinator authenticates to the workers with its own credentials, " +
  'not with destination.passwordFile: the ~/.pgpass of the operating-system user the coordinator runs as, or pg_dist_authinfo (citus.node_conninfo for the rest of the connection string); ' +
  'after the role\'s password changed, change it there too (ALTER ROLE … PASSWORD on the coordinator reaches the workers); the batch is applied again with backoff';

/**
 * What the sink waits for when the destination fails with `code` (a transient failure, retried
 * with backoff), and what ends the wait; undefined for an error that stalls. Pure.
 */
export function waitingFor(code: string, message: string): string | undefined {
  switch (code) {
    case '25006':
      return 'the destination accepts no writes: default_transaction_read_only is on (for the sink\'s role, its database or the server), or destination points at a standby (after a failover): turn it off or point destination at the primary; the batch is applied again once writes are accepted';
    case '53300':
      return 'the destination has no connection slot for the sink (max_connections reached, or the CONNECTION LIMIT of the sink\'s role or database): end idle sessions or raise the limit; the sink connects again with backoff';
    case '53100':
      return 'the destination\'s disk is full (or a quota is reached): free space or grow the volume; the batch is applied again once it can be written';
    case '53200':
      return 'the destination is out of memory: lower batch.maxRows or raise the memory settings (work_mem, the server\'s memory)';
    case '55P03':
      return 'another session holds a lock the batch needs for longer than the lock_timeout of the sink\'s role: the batch is applied again once the lock is released (pg_locks and pg_blocking_pids() name the holder)';
    case '57014':
      if (cancelledByUser(code, message)) {
        return 'another session cancelled the statement (pg_cancel_backend(<the sink\'s pid>): a DBA, a monitoring or admin job; PostgreSQL does not say which, the destination\'s log does under log_statement = \'all\'): the batch is applied again as it was, not in halves';
      }
      return /statement timeout/.test(message)
        ? 'the statement ran longer than the statement_timeout of the sink\'s role or database (or waited that long for a lock): after 3 tries the batch is applied in halves; raise statement_timeout for the sink\'s role'
        : 'the statement was cancelled on the destination (a timeout, or another session): after 3 tries the batch is applied in halves; raise statement_timeout for the sink\'s role';
    case '25P04':
      return 'the batch\'s transaction ran longer than the transaction_timeout of the sink\'s role or database (PostgreSQL 17+), which ended the session: after 3 tries the batch is applied in halves; raise transaction_timeout for the sink\'s role (ALTER ROLE … SET transaction_timeout = 0)';
    case '57P01':
    case '57P02':
    case '57P03':
      return 'the destination ended the session or is shutting down or starting up (pg_terminate_backend, a restart, a failover): the batch rolled back and is applied again on a new connection';
    case '40001':
    case '40P01':
      if (citusShardGone(message)) return CITUS_SHARD_GONE_REMEDY;
      return 'the destination rolled the batch back for a serialization failure or a deadlock: it is applied again';
    case '28P01':
      return `${PASSWORD_CHANGED}; the sink connects again with backoff`;
    case '28000':
      return "the destination refuses the sink's role (pg_hba.conf has no line letting it connect to this database from here, or a rule rejects it): fix pg_hba.conf and reload; the sink connects again with backoff";
  }
  if (code.startsWith('08') && citusWorkerLost(message)) {
    if (WORKER_AUTH.test(message)) return CITUS_WORKER_AUTH;
    return 'Citus could not reach a worker node or lost its connection to it (the message names host:port: down, restarting, failing over, or out of connection slots): the batch rolled back on every node and is applied again once the worker answers';
  }
  if (code.startsWith('08')) return 'the connection to the destination was lost: the batch rolled back and is applied again on a new connection';
  if (code.startsWith('53')) return 'the destination ran out of a resource (a configured limit): the batch is applied again with backoff';
  return undefined;
}

// Worker errors that Citus relays from a COPY by their message only (multi_copy.c,
// ReportCopyError: no errcode, so XX000; a broken worker connection as 58030): the SQLSTATE
// they had on the worker, so that a conflict, a retry and a stall's remedy are what they are
// on plain PostgreSQL.
const RELAYED: [RegExp, string][] = [
  [/^duplicate key value violates unique constraint/, '23505'],
  [/violates not-null constraint/, '23502'],
  [/violates foreign key constraint/, '23503'],
  [/violates check constraint/, '23514'],
  [/^invalid input syntax for type/, '22P02'],
  [/^value too long for type/, '22001'],
  [/out of range/, '22003'],
  [/^column ".*" of relation ".*" does not exist/, '42703'],
];

// A Citus worker that cannot be reached or whose connection broke. Citus raises some as 08006
// (ReportConnectionError, connection_management.c, adaptive_executor.c), retriable as they are,
// and the others without an errcode (XX000) or as an I/O error (58030), which stalled: every
// partition bisected its batch down to one record and stalled on it while a worker restarted.
// Sources: adaptive_executor.c, remote_transaction.c, intermediate_results.c, multi_copy.c, and
// remote_commands.c's ReportResultError, which relays libpq's own text (no SQLSTATE) as XX000.
const CITUS_WORKER_LOST: RegExp[] = [
  /^failed to complete COPY on /,
  /^failed to COPY to shard \d+ on /,
  /^connection to the remote node .* failed/,
  /^connection establishment for node .* failed/,
  /^could not establish any connections to the node /,
  /^could not connect to any active placements/,
  /^execution cannot recover from multiple connection failures/,
  /^failure on connection marked as essential: /,
  /^failed to prepare transaction '.*' on host /,
  /^cannot connect to .* to fetch intermediate results/,
  /^server closed the connection unexpectedly/,
  /^no connection to the server/,
  /^connection not open/,
  /^could not (receive|send) data (from|to) server/,
  /^SSL SYSCALL error/,
  /^lost synchronization with server/,
];

// A statement planned against a shard that a Citus operation removed as it committed: a shard split
// (citus_split_shard_by_split_points, isolate_tenant_to_new_shard) drops the shard it split, and
// create_distributed_table_concurrently the table's one shard; a batch running at that moment fails
// with this, without an errcode (XX000; metadata_cache.c, metadata_utility.c). Seen on Citus
// 12.1.12 and 13.2.2 in every run of either beside a stream of batches. The same batch applies a
// moment later: a serialization failure, not the record's to stall on. Before, after a split (the
// table's layout unchanged, so no catalog drift either) the batch went in halves, and a batch of
// one record stalled its partition until the stall's retry.
const CITUS_SHARD_GONE = /^could not find valid entry for shard \d+$/;
const CITUS_SHARD_GONE_REMEDY =
  'a Citus operation removed a shard the batch was planned against as it committed (a shard split or create_distributed_table_concurrently finishing): the batch rolled back and is applied again whole, on the new shards';

const citusShardGone = (message: string): boolean => CITUS_SHARD_GONE.test(message);

/** Whether `message` is Citus saying a worker could not be reached or its connection broke. Pure. */
export function citusWorkerLost(message: string): boolean {
  return CITUS_WORKER_LOST.some((p) => p.test(message));
}

/**
 * The constraint and column a message names, for an error that does not carry them as fields:
 * Citus relays a worker's error with its SQLSTATE and text only (the shard's constraint or
 * column fields are dropped), so a stall would name neither. PostgreSQL's English texts. Pure.
 */
export function fieldsFromMessage(message: string): { constraint?: string; column?: string } {
  const unquote = (s: string) => s.replace(/""/g, '"');
  const constraint = /violates (?:check|unique|foreign key|exclusion) constraint "((?:[^"]|"")+)"/.exec(message)?.[1];
  const column = /^null value in column "((?:[^"]|"")+)"/.exec(message)?.[1];
  return { ...(constraint !== undefined ? { constraint: unquote(constraint) } : {}), ...(column !== undefined ? { column: unquote(column) } : {}) };
}

/** The SQLSTATE behind `code`: itself, unless it is a Citus XX000 or 58030 whose message names the worker's error, a lost worker or a shard removed under the batch. Pure. */
export function relayedSqlState(code: string, message: string): string {
  if (code !== 'XX000' && code !== '58030') return code;
  for (const [pattern, state] of RELAYED) if (pattern.test(message)) return state;
  if (citusShardGone(message)) return '40001';
  return citusWorkerLost(message) ? '08006' : code;
}

export function withTable(err: ShardBridgeError, table: string): ShardBridgeError {
  (err.context as Record<string, unknown>).table = table;
  return err;
}

/** The SQLSTATE a classified destination error carries, if any. */
export function sqlStateOf(err: unknown): string | undefined {
  return err instanceof ShardBridgeError ? (err.context.sqlstate as string | undefined) : undefined;
}

// Transient failures that the same chunk meets again and again when it is too big for the
// destination: a statement_timeout (57014), a transaction_timeout (25P04), out of memory (53200),
// a configured limit such as max_locks_per_transaction (53400). Retried as they are a few times, then in halves.
const TOO_BIG = new Set(['57014', '25P04', '53200', '53400']);
export const TOO_BIG_RETRIES = 3;

/**
 * A 57014 that another session asked for (pg_cancel_backend: "canceling statement due to user
 * request"), not a timeout: it says nothing about the batch's size. Other 57014 messages (a
 * statement_timeout, or a server whose lc_messages is not English) count as timeouts. Pure.
 */
export function cancelledByUser(code: string | undefined, message: string): boolean {
  return code === '57014' && /due to user request/.test(message);
}

/** Whether a chunk failing with `err` might go through in halves. Pure. */
export function tooBigForOneGo(err: unknown): boolean {
  const state = sqlStateOf(err);
  if (state === undefined || !TOO_BIG.has(state) || !isRetriable(err)) return false;
  return !cancelledByUser(state, err instanceof Error ? err.message : '');
}

/** Errors inHalves made: the batch was too big for one go (for the sizing: batch-size.ts, TooBigSizes). */
const halved = new WeakSet<object>();

/** Whether `err` says its batch was too big for one go and went in halves. Pure. */
export function wentInHalves(err: unknown): boolean {
  return typeof err === 'object' && err !== null && halved.has(err);
}

/** `err` as a failure to apply in halves (partition-batch.ts bisects what is not retriable), and at one record, to stall on. */
export function inHalves(err: ShardBridgeError): SinkApplyError {
  // No cause: isRetriable looks through causes, and this one must end the retries.
  const e = new SinkApplyError(err.message, {
    retriable: false,
    context: err.context,
    remedy: `the destination keeps failing this batch as a whole (SQLSTATE ${String(err.context.sqlstate)}), so it is applied in halves; at one record it stalls: raise the sink role's statement_timeout, or the destination's memory or lock settings`,
  });
  halved.add(e);
  return e;
}
