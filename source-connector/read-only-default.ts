/**
 * default_transaction_read_only = on, set for an application's role or database (a database
 * frozen for the cut-over, a reporting role), is left alone in our sessions, unlike the timeouts
 * (pg-types.ts): it is a write guard. What ShardBridge writes is its own (the source's
 * publication, the destination's tables at `schema copy`), so a statement it refuses (25006) is
 * said with the setting, where it was set and the statement that lifts it for our role alone.
 */
import type pg from 'pg';
import { quoteIdent } from '../shared/sql.ts';

export interface ReadOnlyOrigin {
  role: string;
  database: string;
  /** pg_settings.source of default_transaction_read_only: `user`, `database`, `database user`, `client`, `configuration file`, `default`… */
  setBy: string | null;
  /** A standby refuses every write, whatever the setting. */
  inRecovery: boolean;
}

/** Whether `err` is PostgreSQL's refusal of a write in a read-only transaction. Pure. */
export function isReadOnlyRefusal(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === '25006';
}

/**
 * What the refusal says about the setting, and its remedy (for `what`: the statement's purpose);
 * null when the setting is not why (a standby, the server's default left off). Pure.
 */
export function readOnlyExplained(origin: ReadOnlyOrigin, side: 'source' | 'primary' | 'destination', what: string): { message: string; remedy: string } | null {
  if (origin.inRecovery || origin.setBy === 'default' || origin.setBy === 'session') return null;
  if (origin.setBy === 'client') {
    return {
      message: `default_transaction_read_only is on in the ${side} connection's own options: ${what} was refused (a read-only transaction)`,
      remedy: `remove -c default_transaction_read_only=on from the options of ${side}.url`,
    };
  }
  const where =
    origin.setBy === 'user' ? `role ${origin.role}`
    : origin.setBy === 'database' ? `database ${origin.database}`
    : origin.setBy === 'database user' ? `role ${origin.role} in database ${origin.database}`
    : origin.setBy ? `the server (${origin.setBy})`
    : `role ${origin.role} or database ${origin.database}`;
  return {
    message: `default_transaction_read_only is on for ${where} on the ${side}: ${what} was refused (a read-only transaction)`,
    // The role-in-database setting takes precedence over the role's, the database's and the server's.
    remedy: `for ShardBridge's role alone: ALTER ROLE ${quoteIdent(origin.role)} IN DATABASE ${quoteIdent(origin.database)} SET default_transaction_read_only = off; then run it again`,
  };
}

/** Where the session's default_transaction_read_only comes from. */
export async function readOnlyOrigin(client: pg.ClientBase): Promise<ReadOnlyOrigin> {
  const { rows: [r] } = await client.query(
    `SELECT current_user AS role, current_database() AS database, pg_is_in_recovery() AS "inRecovery",
            (SELECT source FROM pg_settings WHERE name = 'default_transaction_read_only') AS "setBy"`,
  );
  return { role: r.role, database: r.database, setBy: r.setBy ?? null, inRecovery: r.inRecovery === true };
}
