/** `shardbridge status`'s screen from its report (status.ts). Pure. */
import { formatBytes, formatCount, formatDuration, renderTable } from './format.ts';
import type { StatusReport } from './status.ts';

export function renderStatus(r: StatusReport): string {
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
      r.tables.map((t) => [t.table, t.destination, t.state, t.rows, t.of !== null ? `${formatCount(t.applied ?? 0)} of ${formatCount(t.of)}` : null]),
    ),
  );
  out.push(
    '',
    'Topics (end offset vs applied)',
    tableOr(
      '(no topics yet)',
      ['topic', 'partition', 'end', 'applied', 'lag', ''],
      r.partitions.map((p) => [p.topic, String(p.partition), p.end, p.applied, p.lag, p.stalled ? 'STALLED' : p.kind === 'control' ? 'control' : '']),
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
  out.push(`Catch-up: ${c.state}${why}${c.state === 'catching up' ? `, about ${formatDuration(c.etaSeconds)} to go` : ''}${rates}`);
  out.push('');
  out.push('Stalls');
  if (r.stalls.length === 0) out.push('  none');
  for (const s of r.stalls) {
    out.push(`  ${s.topic}[${s.partition}]${s.offset !== null ? ` at offset ${s.offset}` : ''}${s.table ? `, table ${s.table}` : ''}${s.sqlstate ? `, SQLSTATE ${s.sqlstate}` : ''}${s.attempts !== null ? `, ${s.attempts} attempts` : ''}${s.since ? ` since ${s.since}` : ''}`);
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

/** `rows` as a table, or the `empty` line when there are none. */
function tableOr(empty: string, headers: string[], rows: Parameters<typeof renderTable>[1]): string {
  return rows.length === 0 ? `  ${empty}` : renderTable(headers, rows);
}
