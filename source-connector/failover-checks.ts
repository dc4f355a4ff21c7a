/**
 * Failover slots (PostgreSQL 17+) in the start-up checks and `check` (checks.ts): a slot that
 * is not one is lost when the primary fails over to a standby; one whose primary names no
 * synchronized_standby_slots can let the connector publish changes the standby never gets, and
 * one whose primary names a slot there that does not exist is sent nothing, ever.
 */
import type { Finding, SourceFacts } from './checks.ts';
import { isRetriable, SourceError } from '../shared/errors.ts';

export const FAILOVER_SLOT_REMEDY =
  "set slotFailover: true (the connector makes its slot a failover slot), and on each standby: sync_replication_slots = on, hot_standby_feedback = on, primary_slot_name = '<its physical slot on the primary>', a dbname in primary_conninfo; on the primary: synchronized_standby_slots = '<those physical slots>' (a reload is enough for each)";

/**
 * Failover slots (PostgreSQL 17+): whether the slot would survive the primary failing over to
 * one of its standbys, and whether the connector can get ahead of them. Pure.
 */
export function failoverFindings(f: SourceFacts): Finding[] {
  const wanted = f.slotFailover ?? f.slot?.failover === true;
  const version = Math.floor(f.serverVersionNum / 10000);
  if (f.serverVersionNum < 170000) {
    if (!f.slotFailover) return [];
    return [{ level: 'FAIL', check: 'slotFailover', object: 'slotFailover', message: `slotFailover is true, but PostgreSQL ${version} has no failover slots (PostgreSQL 17 and newer)`, remedy: 'set slotFailover to false, or upgrade the source to PostgreSQL 17 or newer' }];
  }
  if (f.inRecovery) return [];
  const standbys = f.physicalStandbys ?? [];
  const object = `slot ${f.slotName}`;
  if (!wanted) {
    if (standbys.length === 0) return [];
    return [{
      level: 'WARN',
      check: 'failover slot',
      object,
      message: `the source has physical standbys (${standbys.join(', ')}) and slot "${f.slotName}" is not a failover slot: after a failover to one of them the promoted standby has no slot, the connector stops (slot lost) and the migration starts over from a new snapshot`,
      remedy: FAILOVER_SLOT_REMEDY,
    }];
  }
  // A name there that is no physical slot of the primary holds every failover slot's stream (17+): nothing is ever sent.
  const missing = f.physicalSlots === undefined ? [] : standbySlotNames(f.synchronizedStandbySlots ?? '').filter((n) => !f.physicalSlots!.includes(n));
  if (missing.length > 0) {
    return [{
      level: 'FAIL',
      check: 'failover slot',
      object,
      message: `synchronized_standby_slots names ${missing.map((n) => `"${n}"`).join(', ')}, which ${missing.length === 1 ? 'is' : 'are'} no physical slot of the source: the WAL sender of failover slot "${f.slotName}" waits for ${missing.length === 1 ? 'it' : 'them'} forever, and the connector streams nothing (PostgreSQL logs a warning naming ${missing.length === 1 ? 'it' : 'them'})`,
      remedy: "on the primary: name the standbys' physical slots (pg_replication_slots where slot_type = 'physical') in synchronized_standby_slots, or create the missing slot; ALTER SYSTEM SET synchronized_standby_slots = '<standby_slot>, …'; SELECT pg_reload_conf();  or set slotFailover to false",
    }];
  }
  // No standby (say, the promoted one's new primary before it has one of its own): nothing to get ahead of.
  if (standbys.length === 0 || (f.synchronizedStandbySlots ?? '').trim() !== '') return [];
  return [{
    level: 'WARN',
    check: 'failover slot',
    object,
    message:
      'slotFailover is on but synchronized_standby_slots is empty: the connector may be sent, and publish, changes no standby has received yet. ' +
      'After a failover the promoted standby lacks them: its synced slot is behind the topics, and what it streams again is replayed (duplicates the sink applies idempotently), ' +
      'but the transactions the standby never received are gone from the new primary while their changes stay in Kafka and at the destination',
    remedy: "on the primary: ALTER SYSTEM SET synchronized_standby_slots = '<standby_slot>, …'; SELECT pg_reload_conf();  (the connector then waits for those standbys to have each change first)",
  }];
}

/**
 * ALTER_REPLICATION_SLOT (slot.ts, alterSlotFailover) failing, as the error that stops or
 * retries the connector: the slot in use (55006) or the connection lost is retried, and the
 * remedy says to free the slot; anything else (permission, a slot synced from a primary, an
 * invalidated slot) comes again at each retry, so it stops and names slotFailover. Pure.
 */
export function alterFailoverError(err: unknown, slot: string, failover: boolean): SourceError {
  const code = (err as { code?: string }).code;
  const inUse = code === '55006';
  return new SourceError(`setting replication slot "${slot}"'s failover flag to ${failover} (slotFailover) failed: ${(err as Error).message}`, {
    cause: err,
    context: { slot, key: 'slotFailover', ...(code ? { code } : {}) },
    retriable: isRetriable(err),
    remedy: inUse
      ? 'ALTER_REPLICATION_SLOT needs the slot free: stop whatever else streams from it (the connector retries meanwhile)'
      : `set slotFailover to ${!failover} to keep the slot as it is; or set its flag as a replication role: ` +
        `psql "dbname=<db> replication=database" -c 'ALTER_REPLICATION_SLOT "${slot.replace(/"/g, '""')}" (FAILOVER ${failover})'`,
  });
}

/**
 * The slot names of synchronized_standby_slots as PostgreSQL reads the list (SplitIdentifierString):
 * comma-separated, an unquoted name folded to lower case, a double-quoted one kept ("" a quote). Pure.
 */
export function standbySlotNames(setting: string): string[] {
  const out: string[] = [];
  for (const m of setting.matchAll(/\s*("(?:[^"]|"")*"|[^,]*?)\s*(?:,|$)/g)) {
    const item = m[1];
    if (item === '') continue;
    out.push(item.startsWith('"') ? item.slice(1, -1).replace(/""/g, '"') : item.toLowerCase());
  }
  return out;
}
