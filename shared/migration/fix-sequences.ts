/**
 * Step 3 of `shardbridge cutover` (its I/O; the judgement is planSequence in cutover.ts): the
 * destination sequences moved past the source's values. Sequences and tables are handled by
 * their names, never by splitting `schema.name` text.
 */
import type pg from 'pg';
import type { SinkConfig } from '../../sink-connector/config.ts';
import { sequenceValues, standaloneSequences, tableSequences, quoteIdent, quoteQualified, type TableSequence } from '../../source-connector/catalog.ts';
import { mapTable } from '../schema/mapping.ts';
import { planSequence, sequenceTarget, type SequenceResult } from './cutover.ts';
import { errorText, sinkTablesPresent, type SourceTable } from './gather.ts';
import { DESTINATION_SEQUENCE_SQL, isPast, recordSequenceSync, sequenceState } from './sequence-value.ts';

/**
 * Every sequence a selected source table owns or calls in a column default, and every sequence
 * of their schemas that no table uses (the application calls it), moved on the destination to
 * the margin past the source value in its direction, never back, and never past its bound.
 */
export async function fixSequences(src: pg.ClientBase, dst: pg.ClientBase, selected: SourceTable[], sink: SinkConfig, margin: number): Promise<SequenceResult[]> {
  type Used = Pick<TableSequence, 'sequence' | 'sequenceId'> & { table: string | null; tableId: { schema: string; name: string } | null; column: string | null };
  const used: Used[] = await tableSequences(src, selected.map((t) => t.info.relid));
  used.push(...(await standaloneSequences(src, [...new Set(selected.map((t) => t.info.schema))])).map((s) => ({ ...s, table: null, tableId: null, column: null })));
  if (used.length === 0) return [];
  const facts = await sequenceValues(src, used);
  const role = (await src.query<{ role: string }>('SELECT current_user AS role')).rows[0].role;
  const present = await sinkTablesPresent(dst);
  const out: SequenceResult[] = [];
  for (const o of used) {
    const sameName = quoteQualified(o.sequenceId);
    const m = o.tableId === null ? null : mapTable(o.tableId, sink.tables);
    const destColumn = m && o.column !== null ? (m.columnMap[o.column] ?? o.column) : null;
    const f = facts.get(o.sequence);
    const sourceValue = f?.value ?? null;
    const increment = f?.increment ?? 1n;
    const r: SequenceResult = { sequence: o.sequence, table: o.table, column: o.column, destination: null, sourceValue, target: null, before: null, after: null, status: 'failed' };
    out.push(r);
    if (f && !f.readable) {
      // pg_sequences shows an unreadable sequence's value as NULL, as for one never used: moving
      // nothing would hand out on the destination values the source already did.
      r.status = 'not readable on source';
      r.error = `role ${quoteIdent(role)} may neither SELECT nor USE it on the source, so the value it handed out is unknown: GRANT SELECT ON SEQUENCE ${o.sequence} TO ${quoteIdent(role)} (or USAGE) on the source, then run cutover again`;
      continue;
    }
    try {
      const { rows } = await dst.query(DESTINATION_SEQUENCE_SQL, [m ? quoteQualified(m.destination) : null, destColumn, sameName]);
      r.destination = rows[0]?.seq ?? null;
      if (r.destination === null) {
        const target = sequenceTarget(sourceValue, margin, increment);
        r.target = target;
        if (m === null) {
          r.status = 'not on destination';
          r.error = `no table uses it${target === null ? '' : `; the source handed out up to ${sourceValue}: if the application calls it, CREATE SEQUENCE ${sameName}${increment === 1n ? '' : ` INCREMENT BY ${increment}`} START WITH ${target} on the destination`}`;
          continue;
        }
        r.status = 'no destination sequence';
        r.error = `neither ${quoteQualified(m.destination)}.${quoteIdent(destColumn!)} owns a sequence nor does ${sameName} exist on the destination`;
        continue;
      }
      const state = await sequenceState(dst, r.destination);
      r.before = state.reported;
      const plan = planSequence(sourceValue, margin, increment, { name: r.destination, min: state.min, max: state.max }, { min: f?.min ?? 0n, max: f?.max ?? 0n });
      r.target = plan.target;
      if (plan.error) {
        r.status = 'out of range';
        r.error = plan.error;
        r.after = r.before;
        continue;
      }
      if (plan.warning) r.warning = plan.warning;
      if (plan.target === null) {
        r.status = 'unused on source';
        r.after = r.before;
        continue;
      }
      // setval(seq, target) only when it moves the sequence on in the direction it counts.
      const moves = isPast(BigInt(plan.target), state);
      if (moves) await dst.query(`SELECT setval($1::regclass, $2::bigint, true)`, [r.destination, plan.target]);
      const { rows: after } = await dst.query(`SELECT pg_sequence_last_value($1::regclass)::text AS v`, [r.destination]);
      r.after = after[0]?.v ?? null;
      r.status = moves ? 'moved' : 'already above';
      if (present.sequences) await recordSequenceSync(dst, r.destination, sourceValue, r.after);
    } catch (e) {
      r.status = 'failed';
      r.error = errorText(e);
    }
  }
  return out;
}
