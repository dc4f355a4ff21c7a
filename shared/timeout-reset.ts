/**
 * transaction_timeout (PostgreSQL 17) reset in the sessions that LONG_READ_SETTINGS cover
 * (shared/pg-types.ts): an application role's `ALTER ROLE app SET transaction_timeout = '5min'`
 * would end a snapshot reader's transaction, the slot's exported snapshot or a verify scan,
 * and the retried work would be cut again, forever. It cannot go into the startup options with
 * the others: servers before 17 refuse a setting they do not know, so it is set after connecting,
 * by a statement that is a no-op before 17.
 */
import type pg from 'pg';

const NAME = 'transaction_timeout';

/** The statement, or undefined when the user's own options set it (a timeout in ShardBridge's own connection URL holds). Pure. */
export function transactionTimeoutReset(userOptions: string | undefined): string | undefined {
  if (userOptions && new RegExp(`(^|\\s)(-c\\s*|--)${NAME}=`).test(userOptions)) return undefined;
  return `SELECT set_config('${NAME}', '0', false) WHERE current_setting('server_version_num')::int >= 170000`;
}

/** Runs transactionTimeoutReset's statement on a connected session (one round trip, outside a transaction). */
export async function resetTransactionTimeout(client: pg.ClientBase, userOptions: string | undefined): Promise<void> {
  const sql = transactionTimeoutReset(userOptions);
  if (sql) await client.query(sql);
}
