/**
 * Destination failures as the error taxonomy: PostgreSQL's own errors keep their fields and
 * are retriable by SQLSTATE class; anything else from the driver means the connection is gone
 * (retriable). Our own errors pass unchanged.
 */
import type pg from 'pg';
import { RetriableError, ShardBridgeError, SinkApplyError, isRetriable, isRetriableSqlState } from '../shared/errors.ts';

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

/**
 * `fn` on a pooled connection. Failing to connect is retriable; `fn`'s errors pass as they are,
 * and a connection that failed with a retriable one is not given back (it may be dead).
 */
export async function withPooledClient<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    throw new RetriableError(`cannot connect to the destination: ${(err as Error).message}`, { cause: err });
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
    return new SinkApplyError(e.message ?? 'destination error', {
      retriable: isRetriableSqlState(e.code),
      context: { table, column: e.column ?? where.column, constraint: e.constraint, sqlstate: e.code },
      cause: err,
    });
  }
  return new RetriableError(`destination connection failed: ${e?.message ?? String(err)}`, { cause: err, context: { table: where.table } });
}

export function withTable(err: ShardBridgeError, table: string): ShardBridgeError {
  (err.context as Record<string, unknown>).table = table;
  return err;
}

/** The SQLSTATE a classified destination error carries, if any. */
export function sqlStateOf(err: unknown): string | undefined {
  return err instanceof ShardBridgeError ? (err.context.sqlstate as string | undefined) : undefined;
}
