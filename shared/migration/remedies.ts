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
