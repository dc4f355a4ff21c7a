/**
 * A chunk's records grouped for applying: cut at multi-partition truncates into segments (each
 * waits for the truncate barrier), and within a segment per destination table into runs in
 * offset order, the chunk's fast rows joining their table's run. Pure.
 */
import type { Chunk } from './apply.ts';
import type { DecodedRecord } from './decode.ts';
import type { TableVersion } from './schema-compile.ts';
import type { TruncateMark } from './truncate-barrier.ts';
import { groupRows, type FastRow } from './fast-rows.ts';

/** Records between multi-partition truncates; each segment but the last ends at one. */
export interface Segment {
  runs: TableRun[];
  barrier?: { record: DecodedRecord; mark: TruncateMark };
}

export interface TableRun {
  version: TableVersion;
  /** Source key in destination names; null when the run holds only truncates. */
  key: readonly string[] | null;
  records: DecodedRecord[];
  /** The table's fast rows (their keys have no event among `records`). */
  fast: readonly FastRow[];
}

/** Cut the chunk at multi-partition truncates (each waits for the barrier); truncates of one partition stay in the runs. */
export function segmentsOf(chunk: Chunk, truncate: 'apply' | 'ignore'): Segment[] {
  const out: Segment[] = [];
  const marks = truncate === 'apply' ? chunk.truncates : undefined;
  let start = 0;
  if (marks && marks.size > 0) {
    chunk.records.forEach((r, i) => {
      const mark = r.change.op === 't' ? marks.get(r.change.offset) : undefined;
      if (!mark) return;
      out.push({ runs: tableRuns(chunk.records.slice(start, i), truncate), barrier: { record: r, mark } });
      start = i + 1;
    });
  }
  const last = tableRuns(start === 0 ? chunk.records : chunk.records.slice(start), truncate);
  if (chunk.fast && chunk.fast.length > 0) {
    if (out.length > 0) throw new RangeError('fast rows in a chunk with multi-partition truncates');
    attachFast(last, chunk.fast);
  }
  out.push({ runs: last });
  return out;
}

/** Each fast row joins its table's run (one per table: a table with key changes in the chunk has no fast rows), or starts one. */
export function attachFast(runs: TableRun[], fast: readonly FastRow[]): void {
  for (const [destId, rows] of groupRows(fast, (f) => f.table.destId)) {
    const run = runs.find((r) => r.version.destId === destId);
    if (run) run.fast = rows;
    else runs.push({ version: rows[0].table, key: rows[0].keyColumns, records: [], fast: rows });
  }
}

/** Split a chunk's records into per-table runs (offset order kept); a key change within a table starts a new run. */
export function tableRuns(records: readonly DecodedRecord[], truncate: 'apply' | 'ignore'): TableRun[] {
  const byTable = new Map<string, TableRun[]>();
  const out: TableRun[] = [];
  for (const r of records) {
    if (r.change.op === 't' && truncate === 'ignore') continue;
    let list = byTable.get(r.table.destId);
    if (!list) byTable.set(r.table.destId, (list = []));
    let run = list[list.length - 1];
    const key = r.keyColumns;
    if (!run || (key !== null && run.key !== null && !sameColumns(run.key, key))) {
      run = { version: r.table, key, records: [], fast: [] };
      list.push(run);
      out.push(run);
    } else if (run.key === null && key !== null) {
      run.key = key;
    }
    // The newest table version of the run decides the columns checked against the destination.
    run.version = r.table;
    run.records.push(r);
  }
  return out;
}

function sameColumns(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
