/** Remedies shared by the connectors' errors and the migration commands' findings. */

// Every step matters: the __snapshot topic makes the source connector refuse while it remembers
// the old slot; topics created again start at offset 0, below the sink's stored positions; and
// rows deleted on the source while changes were lost stay in the destination unless it is emptied.
export const LOST_SLOT_REMEDY =
  'take a new snapshot: stop both connectors; shardbridge cleanup --force --drop-topics --drop-control-tables (drops the slot, the publication, the topics and the sink\'s stored positions); empty the destination tables (TRUNCATE); then start the source connector (new slot, new snapshot) and the sink (docs/migration-runbook.md, "a lost slot")';

/** The command that takes source tables' snapshots again (the remedies of both connectors and the commands name it). Pure. */
export const resnapshotCommand = (...sourceTables: readonly string[]): string =>
  `shardbridge resnapshot --source-config source.yaml ${sourceTables.map((t) => `--table ${shellWord(t)}`).join(' ')}`;

/**
 * A table as `--table` and `tables.include` read it (shared/sql.ts, splitQualifiedName): a part
 * holding a dot or a double quote is double-quoted, or it would split elsewhere. Pure.
 */
export function tableArgument(t: { schema: string; name: string }): string {
  const part = (p: string) => (/[."]/.test(p) ? `"${p.replace(/"/g, '""')}"` : p);
  return `${part(t.schema)}.${part(t.name)}`;
}

/** `word` as one shell word: single-quoted unless it is plain or a `<placeholder>`. Pure. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_.\-/]+$/.test(word) || /^<[^>]*>$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * Why a slot was invalidated, from pg_replication_slots.invalidation_reason (PostgreSQL 17+; null
 * before 17, where exceeding max_slot_wal_keep_size is the one cause on a primary). Pure.
 */
export function slotInvalidatedWhy(reason: string | null | undefined): string {
  switch (reason ?? 'wal_removed') {
    case 'wal_removed':
      return 'wal_status = lost, max_slot_wal_keep_size exceeded';
    case 'idle_timeout':
      return 'invalidation_reason idle_timeout: inactive longer than idle_replication_slot_timeout';
    case 'rows_removed':
      return 'invalidation_reason rows_removed: the server removed catalog rows it still needed';
    case 'wal_level_insufficient':
      return 'invalidation_reason wal_level_insufficient: wal_level was set below logical';
    default:
      return `invalidation_reason ${reason}`;
  }
}

/** What keeps the migration's slot from idle_replication_slot_timeout (PostgreSQL 18): check's warning and the lost slot's remedy. */
export const IDLE_SLOT_TIMEOUT_OFF = 'ALTER SYSTEM SET idle_replication_slot_timeout = 0; SELECT pg_reload_conf()';

/** An invalidated slot as the connector's stop and check's FAIL say it. Pure. */
export function invalidatedSlot(slot: string, reason: string | null | undefined): { message: string; remedy: string } {
  return { message: `replication slot "${slot}" was invalidated (${slotInvalidatedWhy(reason)}): changes were lost`, remedy: lostSlotRemedy(reason) };
}

/** LOST_SLOT_REMEDY, and for an idle timeout, or catalog rows removed under a standby's slot, how to keep the next slot from it. Pure. */
export function lostSlotRemedy(reason: string | null | undefined): string {
  if (reason === 'idle_timeout') return `${LOST_SLOT_REMEDY}; first set idle_replication_slot_timeout = 0 for the migration (${IDLE_SLOT_TIMEOUT_OFF}): a stopped connector's slot is idle`;
  // A logical slot on a standby (source-connector/standby.ts): the primary's vacuum knows of it only through the standby's feedback.
  if (reason === 'rows_removed') return `${LOST_SLOT_REMEDY}; reading from a standby, first set on it hot_standby_feedback = on and primary_slot_name = '<a physical slot on the primary>' (a reload is enough): without them the primary removes catalog rows the standby's slot needs`;
  return LOST_SLOT_REMEDY;
}
