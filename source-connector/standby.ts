/**
 * A standby as the source (PostgreSQL 16+ decodes logical replication on a standby): the slot,
 * the snapshot and the stream are on the standby (`source`), and what the connector writes (its
 * publication, heartbeats, cut-over and resnapshot messages) goes to its primary (`primary`),
 * whence the WAL brings it to the standby's decoding. Here: the WAL position both kinds of server
 * answer, the facts and pure verdicts of the start-up checks, and the wait for the standby to
 * replay a write made on the primary.
 */
import type pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, SourceError } from '../shared/errors.ts';
import type { Finding } from './checks.ts';
import { parseLsn, formatLsn } from './pgoutput-decoder.ts';
import type { Logger } from '../shared/logger.ts';

/**
 * The server's current WAL position as SQL: on a primary pg_current_wal_lsn() (or the insert
 * position), on a standby, which refuses both (55000: recovery is in progress), the position it
 * replayed. Decided by the server at each call, so that a standby promoted meanwhile answers too.
 */
export function currentLsnSql(kind: 'flush' | 'insert' = 'flush'): string {
  return `(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE ${kind === 'insert' ? 'pg_current_wal_insert_lsn()' : 'pg_current_wal_lsn()'} END)`;
}

/**
 * pg_replication_slots.invalidation_reason of the row aliased `s` (17+). PostgreSQL 16 has no such
 * column: a slot on a standby invalidated there shows `conflicting`, for catalog rows the primary
 * removed (rows_removed; or, seldom, its wal_level lowered below logical): said as rows_removed.
 */
export function invalidationReasonSql(s = 's'): string {
  return `coalesce(to_jsonb(${s}) ->> 'invalidation_reason', CASE WHEN (to_jsonb(${s}) ->> 'conflicting')::boolean THEN 'rows_removed' END)`;
}

/** What the checks read of a standby source and of its configured primary. */
export interface StandbyFacts {
  /** pg_control_system()'s system_identifier of the source, as text. */
  systemIdentifier: string;
  /** The source's database (current_database()). */
  database: string;
  hotStandbyFeedback: boolean;
  /** primary_slot_name ('' when unset). */
  primarySlotName: string;
  /** max_standby_streaming_delay as SHOW prints it ('-1': replay waits for the standby's queries). */
  maxStandbyStreamingDelay: string;
  /** What the configured `primary` answered; null when `primary` is not set. `canLogSnapshot`: its role may run pg_log_standby_snapshot() (superusers only, by default). */
  primary: { systemIdentifier: string; inRecovery: boolean; endpoint: string; database: string; role?: string; canLogSnapshot?: boolean } | null;
}

/** The system identifier of the server behind `client`, whether it is in recovery, and whether its role may ask it for a running-transactions record. */
async function primaryFacts(client: pg.ClientBase): Promise<{ systemIdentifier: string; inRecovery: boolean; database: string; role: string; canLogSnapshot: boolean }> {
  const { rows: [r] } = await client.query(
    `SELECT system_identifier::text AS id, pg_is_in_recovery() AS in_recovery, current_database() AS db, current_user AS role,
            coalesce(has_function_privilege(to_regprocedure('pg_log_standby_snapshot()'), 'EXECUTE'), false) AS can_log
       FROM pg_control_system()`,
  );
  return { systemIdentifier: r.id, inRecovery: r.in_recovery === true, database: r.db, role: r.role, canLogSnapshot: r.can_log === true };
}

/** The standby's own facts (on the source connection) and the primary's (`primary`: its connection and endpoint, when configured). */
export async function gatherStandbyFacts(source: pg.ClientBase, primary: { client: pg.ClientBase; endpoint: string } | null): Promise<StandbyFacts> {
  const { rows: [s] } = await source.query(
    `SELECT (SELECT system_identifier::text FROM pg_control_system()) AS id, current_database() AS db,
            current_setting('hot_standby_feedback')::boolean AS feedback, current_setting('primary_slot_name') AS slot,
            current_setting('max_standby_streaming_delay') AS delay`,
  );
  const p = primary ? { ...(await primaryFacts(primary.client)), endpoint: primary.endpoint } : null;
  return { systemIdentifier: s.id, database: s.db, hotStandbyFeedback: s.feedback === true, primarySlotName: s.slot ?? '', maxStandbyStreamingDelay: s.delay, primary: p };
}

export const STANDBY_SETTINGS_REMEDY =
  "on the standby: hot_standby_feedback = on and primary_slot_name = '<a physical slot on the primary>' (SELECT pg_create_physical_replication_slot('<name>') on the primary; a reload of the standby is enough)";

/**
 * The verdicts on a standby source, and on `primary` (pure): decoding on a standby needs 16; what
 * the connector writes needs `primary`, the standby's own primary (the same system identifier);
 * the slot survives the primary's vacuum only with hot_standby_feedback, and its feedback survives
 * a reconnect of the standby only through a physical slot. A `primary` set beside a source that
 * is itself a primary is warned of and left unused: the connector writes to the source (which is
 * also what a standby promoted under the connector's feet needs).
 */
export function standbyFindings(f: { inRecovery: boolean; serverVersionNum: number; primaryConfigured?: boolean; slotFailover?: boolean; slotName: string; standby?: StandbyFacts }): Finding[] {
  const object = 'server';
  if (!f.inRecovery) {
    if (!f.primaryConfigured) return [];
    return [{ level: 'WARN', check: 'standby', object: 'primary', message: 'primary is set, but the source is not a standby (not in recovery): the connector writes to the source and never connects to primary', remedy: 'remove primary, or point source at a standby of it (PostgreSQL 16+)' }];
  }
  if (f.serverVersionNum < 160000) {
    const v = Math.floor(f.serverVersionNum / 10000);
    return [{ level: 'FAIL', check: 'standby', object, message: `the source server is a standby (in recovery): PostgreSQL ${v} cannot decode logical replication on a standby`, remedy: 'point source at the primary (the writable server); the logical replication slot lives there' }];
  }
  const out: Finding[] = [];
  const s = f.standby;
  if (!f.primaryConfigured) {
    out.push({
      level: 'FAIL',
      check: 'standby',
      object: 'primary',
      message: 'the source server is a standby (in recovery) and primary is not set: the connector creates and alters its publication and writes its heartbeat and cut-over messages into the WAL, which a read-only standby refuses',
      remedy: 'set primary (url, or host/database/user, as source) to the standby\'s primary, the writable server: those writes go there and reach the standby through the WAL; or point source at the primary',
    });
  } else if (s?.primary) {
    if (s.primary.inRecovery) {
      out.push({ level: 'FAIL', check: 'standby', object: 'primary', message: `primary (${s.primary.endpoint}) is a standby too (in recovery): it cannot take the connector's writes`, remedy: 'point primary at the writable server at the head of the replication chain' });
    } else if (s.primary.systemIdentifier !== s.systemIdentifier) {
      out.push({
        level: 'FAIL',
        check: 'standby',
        object: 'primary',
        message: `primary (${s.primary.endpoint}) is not the source standby's primary: its system identifier ${s.primary.systemIdentifier} is not the standby's ${s.systemIdentifier} (pg_control_system()), so what the connector writes there would never reach the standby's slot`,
        remedy: 'point primary at the server the source standby replicates from (its primary_conninfo)',
      });
    } else if (s.primary.database !== s.database) {
      // A logical message is decoded by the slots of its database only, and a publication is one database's.
      out.push({
        level: 'FAIL',
        check: 'standby',
        object: 'primary',
        message: `primary connects to database ${s.primary.database}, the source to ${s.database}: the publication made there and the heartbeat, cut-over and resnapshot messages written there would never reach the slot, which decodes database ${s.database} alone`,
        remedy: `connect primary to database ${s.database} (primary.url's path, or primary.database)`,
      });
    } else {
      out.push({ level: 'PASS', check: 'standby', object: 'primary', message: `the source is a standby of primary (${s.primary.endpoint}): the slot and the reads on the standby, the writes on the primary` });
      if (s.primary.canLogSnapshot === false) {
        out.push({
          level: 'WARN',
          check: 'standby',
          object: 'primary',
          message: `role "${s.primary.role}" may not run pg_log_standby_snapshot() on primary (superusers only, by default): creating a slot on the standby (the first start, a table's own snapshot) then waits for the primary's own running-transactions record, written every 15 s at best and not at all while it is idle`,
          remedy: `as a superuser on the primary: GRANT EXECUTE ON FUNCTION pg_log_standby_snapshot() TO "${s.primary.role}";`,
        });
      }
    }
  }
  if (f.slotFailover) {
    out.push({ level: 'FAIL', check: 'slotFailover', object: 'slotFailover', message: 'slotFailover is true, but a slot on a standby cannot be a failover slot (PostgreSQL refuses it)', remedy: 'set slotFailover to false (a standby source\'s slot is not synced anywhere)' });
  }
  if (s && !s.hotStandbyFeedback) {
    out.push({
      level: 'FAIL',
      check: 'hot_standby_feedback',
      object,
      message: `hot_standby_feedback is off on the source standby: the primary's vacuum removes catalog rows slot "${f.slotName}" still needs, and PostgreSQL then invalidates it (invalidation_reason rows_removed): the migration starts over from a new snapshot`,
      remedy: STANDBY_SETTINGS_REMEDY,
    });
  }
  if (s && s.primarySlotName === '') {
    out.push({
      level: 'WARN',
      check: 'primary_slot_name',
      object,
      message: `primary_slot_name is empty on the source standby: its hot_standby_feedback holds the primary's vacuum back only while it is connected; after a disconnect the primary may remove catalog rows slot "${f.slotName}" needs, which invalidates it (rows_removed)`,
      remedy: STANDBY_SETTINGS_REMEDY,
    });
  }
  if (s && s.maxStandbyStreamingDelay !== '-1') {
    // hot_standby_feedback spares the snapshot from the primary's vacuum, not from its locks.
    out.push({
      level: 'WARN',
      check: 'max_standby_streaming_delay',
      object,
      message: `max_standby_streaming_delay = ${s.maxStandbyStreamingDelay} on the source standby: a snapshot reader there is cancelled or its session ended (conflict with recovery) when the replay of a lock the primary took on its table (ALTER TABLE, vacuum truncating the table's end, LOCK) waits longer, and the session then takes the snapshot again from the start`,
      remedy: 'on the standby, while the snapshots are taken: ALTER SYSTEM SET max_standby_streaming_delay = -1; SELECT pg_reload_conf();  (its replay, and so the stream, then waits behind the snapshot instead)',
    });
  }
  return out;
}

/**
 * Wait until the standby behind `standby` has replayed `lsn` (a position read on its primary
 * after a write there): what is read or decoded on the standby after this sees the write. A
 * standby that does not get there in `timeoutMs` is a retriable error naming both positions.
 */
export async function waitForReplay(standby: pg.ClientBase, lsn: bigint, opts: { timeoutMs?: number; signal?: AbortSignal; what: string }): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  for (;;) {
    const { rows: [r] } = await standby.query(`SELECT ${currentLsnSql()}::text AS lsn`);
    const replayed = parseLsn(r.lsn);
    if (replayed >= lsn) return;
    if (Date.now() > deadline || opts.signal?.aborted) {
      throw new SourceError(`the source standby has not replayed ${opts.what} (${formatLsn(lsn)} on the primary) yet: it replayed up to ${formatLsn(replayed)}`, {
        context: { lsn: formatLsn(lsn), replayed: formatLsn(replayed) },
        retriable: true,
        remedy: 'check that the standby streams from the primary (pg_stat_wal_receiver on the standby, pg_stat_replication on the primary) and what delays its replay (recovery_min_apply_delay, conflicts)',
      });
    }
    await sleep(50);
  }
}

/**
 * The connection a command writes to the source through (cutover's marker, resnapshot's
 * signal): on a standby source, its primary, opened with `open` (the caller ends it when it is
 * not `source`); else `source` itself. A standby without `primary` is a ConfigError naming it.
 */
export async function writerFor<C extends pg.ClientBase>(source: C, primaryConfigured: boolean, open: () => Promise<C>, what: string): Promise<C> {
  const { rows: [r] } = await source.query('SELECT pg_is_in_recovery() AS r');
  if (r.r !== true) return source;
  if (!primaryConfigured) {
    throw new ConfigError(`the source is a standby (in recovery): ${what} is written into the WAL, which a standby refuses, and primary is not set`, {
      context: { key: 'primary' },
      remedy: "set primary in the source configuration to the standby's primary, as the source connector has it (docs/source-connector.md, \"Reading from a standby\")",
    });
  }
  return open();
}

/** How often a standby's slot creation asks the primary for a running-transactions record. */
const ASK_EVERY_MS = 500;

/**
 * While a slot is created on a standby: the primary (a session from `primaryClient`) asked for a running-transactions
 * record (pg_log_standby_snapshot()) every ASK_EVERY_MS, which the slot's snapshot waits for (an
 * idle primary writes one every 15 s at best). On one connection kept for the whole wait, which
 * may last as long as the primary's oldest transaction: the production primary is not sent a new
 * session every half second. A refusal (42501: superusers only, by default) is said once, and
 * ends the asking; end() ends it and closes the connection (a broken one is opened again).
 */
export function askForRunningXacts(primaryClient: () => pg.Client, slotName: string, log: Logger): { end(): void } {
  log.info({ slot: slotName }, `creating replication slot "${slotName}" on the standby: it waits for a running-transactions record from the primary, asked for with pg_log_standby_snapshot()`);
  let client: pg.Client | undefined;
  let asking = false;
  let ended = false;
  const close = () => {
    void client?.end().catch(() => {});
    client = undefined;
  };
  const end = () => {
    ended = true;
    clearInterval(timer);
    close();
  };
  const ask = async () => {
    if (asking || ended) return;
    asking = true;
    try {
      if (!client) {
        client = primaryClient();
        client.on('error', () => {});
        await client.connect();
      }
      await client.query('SELECT pg_log_standby_snapshot()');
    } catch (err) {
      if (ended) return;
      if ((err as { code?: string }).code !== '42501') {
        close();
        log.debug({ err }, 'asking the primary for a running-transactions record (pg_log_standby_snapshot) failed');
        return;
      }
      // Refused for good: not asked again.
      end();
      log.warn({ slot: slotName, remedy: "as a superuser on the primary: GRANT EXECUTE ON FUNCTION pg_log_standby_snapshot() TO <primary's role>;" }, `the primary refuses pg_log_standby_snapshot() to this role: creating replication slot "${slotName}" waits for the primary's own running-transactions record (every 15 s at best, none while it is idle)`);
    } finally {
      asking = false;
    }
  };
  const timer = setInterval(() => void ask(), ASK_EVERY_MS);
  void ask();
  return { end };
}
