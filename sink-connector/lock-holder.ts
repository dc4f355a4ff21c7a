/**
 * What follows a bounded lock wait of a batch transaction (the partition's offsets row, a
 * truncate's barrier) that ran out: who holds the lock. Members of one group take these locks
 * only inside a batch, so a sink session holding one past the wait belongs to a member that has
 * not moved for the whole wait: frozen (SIGSTOP, a paused VM) or cut off, possibly in the middle
 * of a COPY, where the destination's idle timeouts do not apply. It is ended (same role: no
 * privilege needed); its batch rolls back, and a thawed member finds the new owner's offset and
 * drops the batch. Anyone else's session is only reported, with the statement that would end it.
 */
import type pg from 'pg';
import { RetriableError, type ErrorContext } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';

/** The session that held a lock past the wait, as pg_stat_activity shows it. */
interface LockHolder {
  pid: number;
  applicationName: string;
  state: string;
  waitEvent: string | null;
  transactionSeconds: number;
  /** Ended by us: a session of a sink. */
  ended: boolean;
}

/** The columns `holderSql` selects, from pg_stat_activity `a`. */
export const HOLDER_COLUMNS = `a.pid, coalesce(a.application_name, '') AS app, coalesce(a.state, '') AS state, a.wait_event,
  coalesce(extract(epoch FROM now() - a.xact_start), 0)::float8 AS secs`;

export interface HeldLock {
  /** For messages: "the offsets row of t[0]". */
  what: string;
  /** Log fields and error context: topic, partition, … */
  where: ErrorContext;
  /** Selects HOLDER_COLUMNS of the holding session (not this one), or no row. */
  holderSql: string;
  params: unknown[];
}

async function endHolder(client: pg.ClientBase, lock: HeldLock): Promise<LockHolder | null> {
  await client.query('ROLLBACK');
  const { rows } = await client.query(lock.holderSql, lock.params);
  if (rows.length === 0) return null;
  const r = rows[0];
  const holder: LockHolder = { pid: r.pid, applicationName: r.app, state: r.state, waitEvent: r.wait_event, transactionSeconds: Math.round(r.secs), ended: false };
  if (holder.applicationName.startsWith('shardbridge-sink')) {
    // Typed: Citus adds pg_terminate_backend(global_pid bigint, …), beside which an untyped parameter is ambiguous.
    holder.ended = (await client.query('SELECT pg_terminate_backend($1::int) AS ok', [holder.pid])).rows[0].ok === true;
  }
  return holder;
}

/** After the wait ran out (the transaction is rolled back here): a retriable error saying who held the lock, and whether it was ended. */
export async function heldPastWait(client: pg.ClientBase, lock: HeldLock, ctx: { logger: Logger; waitedMs: number }, err: unknown): Promise<Error> {
  const where = lock.where;
  const holder = await endHolder(client, lock).catch((e: unknown) => {
    ctx.logger.warn({ ...where, err: (e as Error).message }, `cannot tell who holds ${lock.what}`);
    return null;
  });
  const waited = `waited ${ctx.waitedMs} ms for ${lock.what}`;
  if (!holder) return new RetriableError(`${waited}; its holder is gone, or is the transaction that inserts it`, { cause: err, context: where });
  const fields = { ...where, pid: holder.pid, applicationName: holder.applicationName, state: holder.state, waitEvent: holder.waitEvent, transactionSeconds: holder.transactionSeconds };
  if (holder.ended) {
    ctx.logger.warn(fields, `ended the destination session of a sink member that held ${lock.what} without moving (frozen or cut off inside a batch): its batch rolls back, and this member applies on`);
    return new RetriableError(`${waited}; ended the sink session (pid ${holder.pid}) holding it`, { cause: err, context: where });
  }
  const remedy = `end that session if it is stuck: SELECT pg_terminate_backend(${holder.pid})`;
  ctx.logger.warn({ ...fields, remedy }, `a session that is not a sink's holds ${lock.what}: waiting for it`);
  return new RetriableError(`${waited}: held by pid ${holder.pid} (${holder.applicationName || 'no application_name'}, ${holder.state}, in a transaction for ${holder.transactionSeconds} s); waiting for it`, {
    cause: err,
    context: where,
    remedy,
  });
}

/** `sql` run with `lock_timeout` = `ms` (none when 0 or unset), inside the caller's transaction, in the same round trip. */
export function withLockTimeout(sql: string, ms: number | undefined): string {
  return ms !== undefined && ms > 0 ? `SET LOCAL lock_timeout = ${Math.trunc(ms)}; ${sql}; SET LOCAL lock_timeout TO DEFAULT` : sql;
}

export const isLockTimeout = (err: unknown): boolean => (err as { code?: string }).code === '55P03';
