/**
 * The demo's report and progress lines, as pure functions of what the run measured. The last
 * line of the report is the verdict, `verdict: PASS …` or `verdict: FAIL …`.
 */

/** Change counts by Debezium op: r snapshot read, c insert, u update, d delete, t truncate. */
export type OpCounts = Partial<Record<'r' | 'c' | 'u' | 'd' | 't', number>>;

export interface TableOutcome {
  /** `schema.table`. */
  table: string;
  sourceRows: number | null;
  destRows: number | null;
  match: boolean;
  /** Records the source published for this table, by op. */
  published: OpCounts;
  /** Why it does not match: an error, or the first differing key ranges. */
  problems: string[];
}

export interface SequenceOutcome {
  sequence: string;
  source: string | null;
  destination: string | null;
  ok: boolean;
  /** Who moved it: the sink (from the `__sequences` topic) or the demo's own setval fallback. */
  movedBy: 'sink' | 'demo' | 'none';
}

export interface DemoOutcome {
  destination: string;
  schemaVia: string;
  tables: TableOutcome[];
  /** Records the sink applied, by op (all tables). */
  applied: OpCounts;
  burstTransactions: number;
  /** Last burst commit → destination equal to the source; null when it never caught up. */
  catchUpMs: number | null;
  sequences: SequenceOutcome[];
  phases: { name: string; ms: number }[];
  totalMs: number;
  /** Anything else that went wrong (a phase that timed out, a connector that died). */
  failures: string[];
}

const num = (n: number) => n.toLocaleString('en-US');
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const sum = (c: OpCounts, ops: readonly (keyof OpCounts)[]) => ops.reduce((a, op) => a + (c[op] ?? 0), 0);

/** Changes made after the snapshot: inserts, updates, deletes (truncates too). */
export const streamedCount = (c: OpCounts): number => sum(c, ['c', 'u', 'd', 't']);

export function passed(o: DemoOutcome): boolean {
  return o.failures.length === 0 && o.tables.length > 0 && o.tables.every((t) => t.match) && o.sequences.every((s) => s.ok);
}

export function verdictLine(o: DemoOutcome): string {
  const rows = o.tables.reduce((a, t) => a + (t.sourceRows ?? 0), 0);
  if (passed(o)) {
    const seqs = o.sequences.length === 1 ? '1 sequence' : `${o.sequences.length} sequences`;
    return `verdict: PASS — the destination equals the source (${o.tables.length} tables, ${num(rows)} rows, ${seqs} at or above the source)`;
  }
  const why: string[] = [];
  const bad = o.tables.filter((t) => !t.match).map((t) => t.table);
  if (bad.length) why.push(`${bad.join(', ')} differ${bad.length === 1 ? 's' : ''}`);
  const seqs = o.sequences.filter((s) => !s.ok).map((s) => s.sequence);
  if (seqs.length) why.push(`sequence${seqs.length === 1 ? '' : 's'} behind: ${seqs.join(', ')}`);
  why.push(...o.failures);
  if (o.tables.length === 0 && o.failures.length === 0) why.push('nothing was compared');
  return `verdict: FAIL — ${why.join('; ')}`;
}

function pad(cells: string[][], rightAligned: Set<number>): string[] {
  const widths = cells[0].map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  return cells.map((r) => r.map((c, i) => (rightAligned.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd());
}

const opsText = (c: OpCounts) => `${num(c.c ?? 0)} inserts, ${num(c.u ?? 0)} updates, ${num(c.d ?? 0)} deletes`;

export function formatReport(o: DemoOutcome): string {
  const lines: string[] = [];
  lines.push(`ShardBridge demo: source PostgreSQL → Kafka (Avro) → ${o.destination}`, '');
  const rows = [['table', 'source rows', 'dest rows', 'snapshot', 'streamed', 'equal']];
  // A run that failed before the verification: no table of empty rows.
  if (o.tables.length === 0) rows.splice(0);
  for (const t of o.tables) {
    rows.push([
      t.table,
      t.sourceRows === null ? '?' : num(t.sourceRows),
      t.destRows === null ? '?' : num(t.destRows),
      num(t.published.r ?? 0),
      num(streamedCount(t.published)),
      t.match ? 'yes' : 'NO',
    ]);
  }
  if (rows.length) lines.push(...pad(rows, new Set([1, 2, 3, 4])).map((l) => `  ${l}`));
  else lines.push('  no table was compared: the demo ended before its verification');
  for (const t of o.tables) for (const p of t.problems) lines.push(`  ! ${t.table}: ${p}`);
  lines.push('');

  const published = o.tables.reduce<OpCounts>((acc, t) => {
    for (const [op, n] of Object.entries(t.published) as [keyof OpCounts, number][]) acc[op] = (acc[op] ?? 0) + n;
    return acc;
  }, {});
  lines.push(`schema:     copied to the destination with ${o.schemaVia}`);
  lines.push(`snapshot:   ${num(published.r ?? 0)} rows`);
  lines.push(
    `streamed:   ${num(streamedCount(published))} changes from ${num(o.burstTransactions)} source transactions (${opsText(published)}); ` +
      `the sink applied ${num(streamedCount(o.applied))} (${opsText(o.applied)})`,
  );
  lines.push(`lag:        ${o.catchUpMs === null ? 'never caught up' : `${secs(o.catchUpMs)} from the last source commit to a destination equal to the source`}`);
  if (o.sequences.length) {
    const seq = o.sequences.map((s) => `${s.sequence} ${s.source ?? 'unused'} → ${s.destination ?? 'unused'}${s.ok ? '' : ' (BEHIND)'}`);
    const by = [...new Set(o.sequences.map((s) => s.movedBy))].filter((b) => b !== 'none');
    const via = by.length === 0 ? '' : ` (moved by ${by.map((b) => (b === 'sink' ? 'the sink from the __sequences topic' : 'the demo with setval')).join(' and ')})`;
    lines.push(`sequences:  ${seq.join(', ')}${via}`);
  }
  lines.push(`time:       ${secs(o.totalMs)} in all (${o.phases.map((p) => `${p.name} ${secs(p.ms)}`).join(', ')})`);
  for (const f of o.failures) lines.push(`failure:    ${f}`);
  lines.push('', verdictLine(o));
  return lines.join('\n') + '\n';
}

/** A progress line for stderr: `[  12.3s] text`. */
export function progressLine(elapsedMs: number, text: string): string {
  return `[${(elapsedMs / 1000).toFixed(1).padStart(6)}s] ${text}\n`;
}

/** `1,234/5,678 rows` style progress of the catch-up, per table that is still behind. */
export function catchUpProgress(tables: { table: string; sourceRows: number | null; destRows: number | null; match: boolean }[]): string {
  const behind = tables.filter((t) => !t.match);
  if (behind.length === 0) return 'all tables equal';
  return behind.map((t) => `${t.table} ${t.destRows === null ? '?' : num(t.destRows)}/${t.sourceRows === null ? '?' : num(t.sourceRows)}`).join(', ') + ' (destination/source rows, differing)';
}
