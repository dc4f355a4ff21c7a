/**
 * Prepared transactions (two-phase commit, PREPARE TRANSACTION) hold their xid until a
 * COMMIT PREPARED or ROLLBACK PREPARED, with no session behind them: a slot's creation waits for
 * them to end like for any running transaction, but pg_stat_activity does not show them. A
 * transaction manager that lost track of one leaves it there for good.
 */
import type pg from 'pg';
import { quoteLiteral } from '../shared/sql.ts';

export interface PreparedTransaction {
  gid: string;
  database: string;
  owner: string;
  /** When it was prepared, as PostgreSQL prints it. */
  prepared: string;
}

/** Every prepared transaction of the cluster, oldest first (pg_prepared_xacts is readable by every role). */
export async function readPreparedTransactions(client: pg.ClientBase, o: { thisDatabase?: boolean } = {}): Promise<PreparedTransaction[]> {
  const { rows } = await client.query<PreparedTransaction>(
    `SELECT gid, database, owner, prepared::text AS prepared FROM pg_prepared_xacts${o.thisDatabase ? ' WHERE database = current_database()' : ''} ORDER BY prepared, gid`,
  );
  return rows;
}

/** `prepared transaction 'gid' in database d (owner o) since t`. Pure. */
export function describePrepared(p: PreparedTransaction): string {
  return `prepared transaction ${quoteLiteral(p.gid)} in database ${p.database} (owner ${p.owner}) since ${p.prepared}`;
}

/** What ends them: run in their database, once their transaction manager agrees. Pure. */
export function preparedRemedy(list: readonly PreparedTransaction[]): string {
  const first = list[0];
  return `connected to its database, COMMIT PREPARED ${quoteLiteral(first.gid)} or ROLLBACK PREPARED ${quoteLiteral(first.gid)}${list.length > 1 ? ' (and so for each)' : ''}, as the application's transaction manager would have`;
}
