/** `shardbridge status`'s screen from its report (status.ts). Pure. */
import { formatBytes, formatCount, formatDuration, renderTable } from './format.ts';
import type { PartitionStatus, StatusReport, TableStatus } from './status.ts';

/** Past this many tables (or partitions), the done ones are counted instead of listed: a schema per tenant makes thousands. */
const FOLD_OVER = 20;

export function renderStatus(r: StatusReport, opts: { all?: boolean } = {}): string {
  const tables = opts.all ? { rows: r.tables, note: null } : foldTables(r.tables);
  const partitions = opts.all ? { rows: r.partitions, note: null } : foldPartitions(r.partitions);
  const out: string[] = [];
  out.push(`ShardBridge status at ${r.at}   ${r.ok ? 'OK' : 'PROBLEMS'}`);
  out.push('');
  out.push('Source slot');
  if (!r.source.ok) out.push(`  source not reachable: ${r.source.error ?? ''}`);
  else if (!r.slot.exists) out.push(`  ${r.slot.name}: does not exist`);
  else {
    const s = r.slot;
    out.push(
      renderTable(
        ['slot', 'active', 'confirmed LSN', 'current LSN', 'lag', 'WAL retained', 'wal_status', 'safe WAL left'],
        [[s.name, s.active ? `yes (pid ${s.activePid})` : 'no', s.confirmedLsn, s.currentLsn, formatBytes(s.lagBytes), formatBytes(s.walRetainedBytes), s.walStatus, s.safeWalSizeBytes === null ? 'unlimited' : formatBytes(s.safeWalSizeBytes)]],
      ),
    );
  }
  out.push(
    '',
    'Snapshot',
    tableOr(
      '(no tables known: the source or Kafka could not be read)',
      ['table', 'destination', 'state', 'rows', 'applied'],
      tables.rows.map((t) => [t.table, t.destination, t.state, t.rows, t.of !== null ? `${formatCount(t.applied ?? 0)} of ${formatCount(t.of)}` : null]),
      tables.note,
    ),
  );
  out.push(
    '',
    'Topics (end offset vs applied)',
    tableOr(
      '(no topics yet)',
      ['topic', 'partition', 'end', 'applied', 'lag', ''],
      partitions.rows.map((p) => [p.topic, String(p.partition), p.end, p.applied, p.lag, p.stalled ? 'STALLED' : p.kind === 'control' ? 'control' : '']),
      partitions.note,
    ),
  );
  const t = r.totals;
  if (r.partitions.length > 0) {
    out.push(
      t.applied === null || t.lag === null
        ? `  table topics: ${formatCount(t.end ?? 0)} records; how many are applied is unknown (the destination could not be read)`
        : `  table topics: ${formatCount(t.applied)} of ${formatCount(t.end ?? 0)} records applied, ${formatCount(t.lag)} to go`,
    );
  }
  out.push('');
  const c = r.catchUp;
  const rates = c.appliedPerSecond !== null ? ` (applying ${formatCount(Math.round(c.appliedPerSecond))}/s, produced ${formatCount(Math.round(c.producedPerSecond ?? 0))}/s over ${c.sampleSeconds?.toFixed(1)} s)` : '';
  const why = c.unknownBecause ? ` (${c.unknownBecause})` : '';
  const eta = c.state === 'catching up' ? `, about ${formatDuration(c.etaSeconds)} to go` : c.state === 'keeping up' ? `, ${formatCount(c.lagRecords ?? 0)} records in flight (${(c.etaSeconds ?? 0) < 1 ? 'under a second' : `about ${formatDuration(c.etaSeconds)}`} of applying)` : '';
  out.push(`Catch-up: ${c.state}${why}${eta}${rates}`);
  out.push('');
  out.push('Stalls');
  if (r.stalls.length === 0) out.push('  none');
  for (const s of r.stalls) {
    out.push(`  ${s.topic}[${s.partition}]${s.offset !== null ? ` at offset ${s.offset}` : ''}${s.reason !== 'apply' ? ` (${s.reason})` : ''}${s.table ? `, table ${s.table}` : ''}${s.sqlstate ? `, SQLSTATE ${s.sqlstate}` : ''}${s.attempts !== null ? `, ${s.attempts} attempts` : ''}${s.since ? ` since ${s.since}` : ''}`);
    out.push(`    reason: ${s.message.replace(/\n/g, '\n            ')}`);
    if (s.remedy) out.push(`    remedy: ${s.remedy.replace(/\n/g, '\n            ')}`);
  }
  out.push('');
  out.push(`Sequences: ${r.sequences.lastSync ? `last sync ${r.sequences.lastSync}` : 'never synced'}`);
  if (r.sequences.entries.length > 0) {
    out.push(renderTable(['sequence', 'source value', 'destination value', 'at'], r.sequences.entries.map((s) => [s.sequence, s.sourceValue, s.appliedValue, s.at])));
  }
  out.push('');
  if (r.problems.length === 0) out.push('No problems.');
  else {
    out.push('Problems');
    for (const p of r.problems) {
      out.push(`  ${p.level.padEnd(4)}  ${p.object}: ${p.message}`);
      if (p.remedy) out.push(`        remedy: ${p.remedy}`);
    }
  }
  return out.join('\n') + '\n';
}

/** `rows` as a table (then `note`), or the `empty` line when there are none and no note. */
function tableOr(empty: string, headers: string[], rows: Parameters<typeof renderTable>[1], note: string | null = null): string {
  if (rows.length === 0) return note ? `  ${note}` : `  ${empty}`;
  return renderTable(headers, rows) + (note ? `\n  ${note}` : '');
}

interface Folded<T> {
  rows: T[];
  /** What was left out, as one line; null when nothing was. */
  note: string | null;
}

const ALL = 'each with --all or --json';

/** Tables: the complete ones counted; of the others the first FOLD_OVER listed, those under way first. Pure. */
export function foldTables(tables: readonly TableStatus[]): Folded<TableStatus> {
  if (tables.length <= FOLD_OVER) return { rows: [...tables], note: null };
  const order = { requested: 0, snapshotting: 1, applying: 2, 'not started': 3, complete: 4 } as const;
  const open = tables.filter((t) => t.state !== 'complete').sort((a, b) => order[a.state] - order[b.state]);
  const byState = new Map<string, number>();
  for (const t of tables) byState.set(t.state, (byState.get(t.state) ?? 0) + 1);
  const counts = [...byState].sort((a, b) => order[a[0] as TableStatus['state']] - order[b[0] as TableStatus['state']]).map(([s, n]) => `${formatCount(n)} ${s}`).join(', ');
  const rows = open.slice(0, FOLD_OVER);
  const listed = rows.length === 0 ? '' : rows.length < open.length ? `; the first ${rows.length} not complete listed` : '; those not complete listed';
  return { rows, note: `${formatCount(tables.length)} tables: ${counts}${listed} (${ALL})` };
}

/** Partitions: those applied to their end counted; stalled, control and lagging ones listed (the FOLD_OVER furthest behind). Pure. */
export function foldPartitions(partitions: readonly PartitionStatus[]): Folded<PartitionStatus> {
  if (partitions.length <= FOLD_OVER) return { rows: [...partitions], note: null };
  const done = (p: PartitionStatus) => !p.stalled && p.kind !== 'control' && p.lag === 0;
  const shown = partitions.filter((p) => p.stalled || p.kind === 'control');
  const behind = partitions.filter((p) => !done(p) && !p.stalled && p.kind !== 'control').sort((a, b) => (b.lag ?? Infinity) - (a.lag ?? Infinity));
  const room = Math.max(FOLD_OVER - shown.length, 0);
  const listedBehind = behind.slice(0, room);
  const keep = new Set([...shown, ...listedBehind]);
  const applied = partitions.filter(done).length;
  const more = behind.length - listedBehind.length;
  const notes = [`${formatCount(applied)} of ${formatCount(partitions.length)} partitions applied to their end and not listed`];
  if (more > 0) notes.push(`${formatCount(more)} more behind not listed`);
  return { rows: partitions.filter((p) => keep.has(p)), note: `${notes.join('; ')} (${ALL})` };
}
