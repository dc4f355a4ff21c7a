/**
 * Step 6 of `shardbridge cutover`: the foreign keys `schema copy` kept aside in
 * `shardbridge.deferred_foreign_keys`, created when missing and marked done (`created_at`).
 * Each is one `ALTER TABLE … ADD CONSTRAINT` of its own (the session is in autocommit): one that
 * fails leaves nothing of itself, and the ones before it stand.
 *
 * Its SHARE ROW EXCLUSIVE locks, on the table and on the table it references, wait for every
 * open transaction that writes to either and, waiting, hold up the writers that come after it;
 * the destination role's lock_timeout is left on for that reason (pg-types.ts), and a wait it
 * cut (55P03) is said with the setting, who held a lock on those tables then, and the remedy.
 */
import type pg from 'pg';
import { readCitusTables } from '../schema/citus-catalog.ts';
import { describeCitusTable, type CitusTableKind } from '../schema/citus-table-kind.ts';
import { quoteIdent } from '../sql.ts';
import { errorText, sinkTablesPresent } from './gather.ts';
import type { ForeignKeyResult } from './cutover.ts';

/** A granted lock on one of the two tables that ADD FOREIGN KEY's SHARE ROW EXCLUSIVE waits for. */
export interface LockHolder {
  pid: number;
  /** application_name, else backend_type (`autovacuum worker`); empty when not visible to our role. */
  who: string;
  state: string;
  transactionSeconds: number;
  mode: string;
  relation: string;
}

export interface LockTimeoutCut {
  table: string;
  constraint: string;
  /** The referenced table as the definition names it; null when it could not be read from it. */
  referenced: string | null;
  /** current_setting('lock_timeout'), e.g. `200ms`. */
  timeout: string;
  /** pg_settings.source of lock_timeout: `user`, `database`, `database user`, `client`, `configuration file`… */
  setBy: string | null;
  role: string;
  database: string;
  holders: readonly LockHolder[];
}

/** Lock modes that conflict with SHARE ROW EXCLUSIVE (a writer's ROW EXCLUSIVE among them). */
const CONFLICTING = ['RowExclusiveLock', 'ShareUpdateExclusiveLock', 'ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock'];

/** The table a foreign key's definition (pg_get_constraintdef) references, as written there. Pure. */
export function referencedTable(definition: string): string | null {
  const part = '(?:"(?:[^"]|"")+"|[^\\s."(]+)';
  return new RegExp(`\\bREFERENCES\\s+(${part}(?:\\.${part})?)\\s*\\(`).exec(definition)?.[1] ?? null;
}

/** The failure of a foreign key whose lock wait lock_timeout cut: why, who held the tables, what to do. Pure. */
export function lockTimeoutText(c: LockTimeoutCut): string {
  const where =
    c.setBy === 'client' ? "destination.url's options"
    : c.setBy === 'user' ? `role ${c.role}`
    : c.setBy === 'database' ? `database ${c.database}`
    : c.setBy === 'database user' ? `role ${c.role} in database ${c.database}`
    : c.setBy ? `the server (${c.setBy})`
    : `role ${c.role} or database ${c.database}`;
  const tables = c.referenced && c.referenced !== c.table ? `${c.table} and ${c.referenced}` : c.table;
  const held = c.holders.length
    ? `Holding a lock on them just after: ${c.holders.map((h) => `pid ${h.pid} (${h.who || 'another role\'s session'}${h.state ? `, ${h.state}` : ''}, in a transaction for ${h.transactionSeconds} s) holds ${h.mode} on ${h.relation}`).join('; ')}.`
    : 'No session held a lock on them just after (the transaction that held one has ended).';
  const raise =
    c.setBy === 'client'
      ? "raise lock_timeout in destination.url's options (-c lock_timeout=1min) for the cut-over"
      : `raise it for ShardBridge's role alone: ALTER ROLE ${quoteIdent(c.role)} IN DATABASE ${quoteIdent(c.database)} SET lock_timeout = '1min'`;
  return (
    `ALTER TABLE ${c.table} ADD CONSTRAINT ${quoteIdent(c.constraint)} waited longer than lock_timeout (${c.timeout}, set in ${where}) for its SHARE ROW EXCLUSIVE locks on ${tables}, ` +
    'which wait for every open transaction that writes to either, and was cancelled (55P03): nothing of this foreign key was made (each is created by a statement of its own; those created before it stand). ' +
    `${held} While cutover waits, pg_blocking_pids(pid) of its session (application_name shardbridge-cutover, wait_event_type Lock in pg_stat_activity) names the holders. ` +
    `Remedy: run cutover again when the writes to these tables are quiet (it creates only the keys still missing), or ${raise}`
  );
}

/**
 * Why a key from a table outside Citus's metadata (a plain coordinator table) to a distributed
 * or single-shard table is not created. Citus 13.2 takes it (it refuses one from a reference
 * or Citus local table), but its checks on the referenced side run on the coordinator's shell
 * table, whose rows live in the workers' shards: deleting a referenced row, or changing its
 * key, neither fails nor cascades, and the local table keeps rows pointing at nothing. Pure.
 */
export function unenforcedCitusKeyText(table: string, constraint: string, referenced: string, kind: CitusTableKind, column: string | null): string {
  return (
    `not created: ${referenced} is ${describeCitusTable(kind, column)} and ${table} is a local table outside Citus's metadata; Citus takes such a key but does not enforce it on ${referenced}'s side ` +
    `(its rows live in the workers' shards: a delete or key change there neither fails nor cascades, and ${table} keeps rows that point at nothing). ` +
    `Remedy: distribute ${table} colocated with ${referenced} by the column the key pairs with its distribution column (create_distributed_table(…, colocate_with => '${referenced}')), then run cutover again; ` +
    `or accept a key enforced on ${table}'s writes only: delete its row from shardbridge.deferred_foreign_keys and ALTER TABLE ${table} ADD CONSTRAINT ${quoteIdent(constraint)} … by hand`
  );
}

/** On Citus, the reason a kept-aside key would be created but not enforced (unenforcedCitusKeyText); null when it would be. */
export async function citusUnenforcedKey(dst: pg.ClientBase, r: { table_name: string; constraint_name: string; definition: string }): Promise<string | null> {
  const referenced = referencedTable(r.definition);
  if (!referenced) return null;
  const { rows: [o] } = await dst.query(
    `SELECT to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL AS citus, to_regclass($1::text)::oid::int AS t, to_regclass($2::text)::oid::int AS ref`,
    [r.table_name, referenced],
  );
  if (!o.citus || o.t == null || o.ref == null) return null;
  const dist = await readCitusTables(dst, [o.t, o.ref]);
  const to = dist.get(o.ref);
  if (dist.has(o.t) || !to || (to.kind !== 'distributed' && to.kind !== 'single-shard')) return null;
  return unenforcedCitusKeyText(r.table_name, r.constraint_name, referenced, to.kind, to.distributionColumn);
}

/**
 * A refused key's error with the server's DETAIL and HINT: Citus says why in the DETAIL alone
 * ("cannot create foreign key constraint", then which action or layout it does not support). Pure.
 */
export function keyErrorText(e: unknown): string {
  const { detail, hint } = (e ?? {}) as { detail?: unknown; hint?: unknown };
  const text = [errorText(e), detail, hint].filter((x): x is string => typeof x === 'string' && x !== '').join(': ');
  return /^cannot create foreign key constraint\b/.test(errorText(e)) ? `${text.replace(/\.$/, '')}. ${CITUS_REFUSED_REMEDY}` : text;
}

const CITUS_REFUSED_REMEDY =
  "Remedy: Citus refuses this key in the tables' layout (schema copy's notes said which and why): create by hand a key it accepts, or none (ON DELETE / ON UPDATE actions then fall to the application), " +
  'and delete its row from shardbridge.deferred_foreign_keys; or change the layout (undistribute_table, create_distributed_table … colocate_with, create_reference_table) and run cutover again';

/** Foreign keys `schema copy` kept aside: created when missing, marked with `created_at`. */
export async function createDeferredForeignKeys(dst: pg.ClientBase): Promise<ForeignKeyResult[]> {
  if (!(await sinkTablesPresent(dst)).deferred) return [];
  await dst.query('ALTER TABLE shardbridge.deferred_foreign_keys ADD COLUMN IF NOT EXISTS created_at timestamptz');
  const { rows } = await dst.query<{ table_name: string; constraint_name: string; definition: string }>(
    'SELECT table_name, constraint_name, definition FROM shardbridge.deferred_foreign_keys ORDER BY table_name, constraint_name',
  );
  const out: ForeignKeyResult[] = [];
  for (const r of rows) {
    const res: ForeignKeyResult = { table: r.table_name, constraint: r.constraint_name, definition: r.definition, status: 'failed' };
    out.push(res);
    try {
      const { rows: ex } = await dst.query(
        `SELECT to_regclass($1::text) IS NOT NULL AS table_exists,
                EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass($1::text) AND conname = $2 AND contype = 'f') AS fk_exists`,
        [r.table_name, r.constraint_name],
      );
      if (!ex[0].table_exists) {
        res.error = `table ${r.table_name} does not exist on the destination`;
        continue;
      }
      if (ex[0].fk_exists) res.status = 'already there';
      else {
        const unenforced = await citusUnenforcedKey(dst, r);
        if (unenforced) {
          res.error = unenforced;
          continue;
        }
        try {
          await dst.query(`ALTER TABLE ${r.table_name} ADD CONSTRAINT ${quoteIdent(r.constraint_name)} ${r.definition}`);
        } catch (e) {
          if ((e as { code?: unknown }).code !== '55P03') throw e;
          res.error = await lockTimeoutCut(dst, r).then(lockTimeoutText, () => errorText(e));
          continue;
        }
        res.status = 'created';
      }
      await dst.query('UPDATE shardbridge.deferred_foreign_keys SET created_at = COALESCE(created_at, now()) WHERE table_name = $1 AND constraint_name = $2', [r.table_name, r.constraint_name]);
    } catch (e) {
      res.status = 'failed';
      res.error = keyErrorText(e);
    }
  }
  return out;
}

/**
 * What is known right after the wait was cut: the setting and where it comes from, and the
 * sessions holding a conflicting lock on either table now (pg_blocking_pids answers only while
 * waiting; a holder still in its transaction is the likely one).
 */
async function lockTimeoutCut(dst: pg.ClientBase, r: { table_name: string; constraint_name: string; definition: string }): Promise<LockTimeoutCut> {
  const referenced = referencedTable(r.definition);
  const { rows: [s] } = await dst.query(
    `SELECT current_setting('lock_timeout') AS timeout, current_user AS role, current_database() AS database,
            (SELECT source FROM pg_settings WHERE name = 'lock_timeout') AS "setBy"`,
  );
  const { rows } = await dst.query(
    `SELECT l.pid, coalesce(nullif(a.application_name, ''), a.backend_type, '') AS who, coalesce(a.state, '') AS state,
            coalesce(extract(epoch FROM now() - a.xact_start), 0)::float8 AS secs, l.mode, l.relation::regclass::text AS relation
       FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.relation IN (to_regclass($1::text), to_regclass($2::text)) AND l.mode = ANY($3::text[])
      ORDER BY a.xact_start NULLS LAST, l.pid LIMIT 5`,
    [r.table_name, referenced, CONFLICTING],
  );
  return {
    table: r.table_name,
    constraint: r.constraint_name,
    referenced,
    timeout: s.timeout,
    setBy: s.setBy ?? null,
    role: s.role,
    database: s.database,
    holders: rows.map((h) => ({ pid: h.pid, who: h.who, state: h.state, transactionSeconds: Math.round(h.secs), mode: h.mode, relation: h.relation })),
  };
}
