/**
 * Which records of a chunk skip the general decode and collapse: those whose key has no
 * other event in the chunk and whose event replaces the whole row (an insert, a snapshot
 * read, or an update without unchanged-TOAST columns or a before-image). Such a record's
 * after-image is the key's final state, so it is written once, as a COPY line, straight from
 * its bytes (copy-transcode.ts), and applied by COPY: into the table when the key is new
 * (`c`/`r`, like collapse's fresh rows), or through staging. Every other record takes the
 * general path; its keys never meet a fast row's, so the two sets can be applied in any
 * order within the batch transaction (as collapse's statements are), except where two key
 * spellings are equal at the destination (a case-insensitive collation): apply.ts then runs
 * the general path's deletes first.
 *
 * A tombstone (a delete of its key: decode.ts) is one of its key's events like any other, in
 * the table its topic's latest value schema names (as decode.ts reads it). A table whose
 * records in the chunk carry a truncate, or keys of more than one key schema (the key's bytes
 * identify it only within one schema), takes the general path entirely.
 * Deterministic, given `describe` (the decoder's compiled schemas): what a planner keeps
 * between chunks (its key index) is reset for each.
 */
import type { RawRecord } from './decode.ts';
import type { TableVersion } from './schema-compile.ts';
import type { ApplyTable } from './sink-change.ts';
import { LineWriter, type EnvelopeTranscoder, type ScanResult } from './copy-transcode.ts';
import { WIRE_HEADER_LENGTH } from '../shared/registry/wire-format.ts';
import { keySpan, newSpan, valueSpan, type Span } from './record-bytes.ts';
import { FirstIndex } from './key-index.ts';

export interface FastRow {
  raw: RawRecord;
  table: TableVersion;
  /** Source key columns in destination names. */
  keyColumns: readonly string[];
  op: 'c' | 'r' | 'u';
  /**
   * The destination catalog the row was written for in COPY BINARY format (copy-binary.ts), or
   * null for a COPY text line. A binary row is applied only if its table resolves to this same
   * catalog read in the batch's transaction.
   */
  binary: ApplyTable | null;
  /** The row as one COPY text line (newline included) or binary tuple: `lines.buf[start, end)`, columns as `table.columns`. */
  lines: LineWriter;
  start: number;
  end: number;
}

/** What the decoder knows of a record's schemas; null when it cannot say (unknown id, malformed header). */
export interface RecordSchemas {
  table: TableVersion;
  keyColumns: readonly string[];
  keySchemaId: number;
  transcoder: EnvelopeTranscoder | null;
  /** The COPY BINARY transcoder for these destination types (one per Value field, in order); null when a column has no binary form. */
  binaryFor(destTypes: readonly string[]): EnvelopeTranscoder | null;
}

/** A COPY BINARY transcoder for a record's schemas, with the catalog it was made for (partition-batch.ts decides). */
export interface BinaryLayout {
  table: ApplyTable;
  transcoder: EnvelopeTranscoder;
}

const OPS: Record<number, FastRow['op'] | undefined> = { 0x63: 'c', 0x72: 'r', 0x75: 'u' };
const TRUNCATE = 0x74;

interface TableTally {
  /** The table's number in this chunk, for the key index. */
  no: number;
  keySchemaId: number;
  mixedKeys: boolean;
  truncated: boolean;
}

/**
 * A key's identity within one key schema: its Avro bytes. Up to 6 bytes (a bigint key below
 * 2^41, an int key) as a number (bytes plus length: distinct for distinct byte strings);
 * longer keys as a latin1 string.
 */
function keyIdOf(key: Span): number | string {
  const at = key.start + WIRE_HEADER_LENGTH;
  const n = key.end - at;
  if (n > 6) return key.buf.toString('latin1', at, key.end);
  let v = n * 2 ** 48;
  for (let i = 0, mul = 1; i < n; i++, mul *= 256) v += key.buf[at + i] * mul;
  return v;
}

/**
 * Plans chunks one after another, reusing its key index. `plan` is synchronous, so one planner
 * serves every partition worker. Line buffers are new per chunk: they live as long as its rows.
 */
export class FastRowPlanner {
  private readonly first = new FirstIndex();
  private readonly key = newSpan();
  private readonly value = newSpan();

  /**
   * Fast rows aligned with `raws` (null: the general path). `binary` says when a record's rows
   * are written for COPY BINARY; asked once per run of records with the same schemas.
   */
  plan(raws: readonly RawRecord[], describe: (r: RawRecord) => RecordSchemas | null, binary: (s: RecordSchemas) => BinaryLayout | null = () => null): (FastRow | null)[] {
    const out: (FastRow | null)[] = new Array(raws.length).fill(null);
    // Whole-row inserts and reads go to `fresh`, replacements to `replaced`: apply-fast.ts COPies
    // the two sets apart, and lines that lie back to back go to COPY without a gathering copy.
    const fresh = new LineWriter();
    const replaced = new LineWriter(16 * 1024);
    const tallies = new Map<string, TableTally>();
    this.first.reset(raws.length);
    // Records whose key has another event in the chunk.
    const shared = new Uint8Array(raws.length);
    const scan: ScanResult = { op: 0, hasBefore: false, toast: false, line: false, lineStart: 0, nullKey: false };
    // Consecutive records are mostly of one table version: its tally is looked up when that changes.
    let t!: TableTally;
    let tTable: TableVersion | undefined;
    let lastSchemas: RecordSchemas | undefined;
    let layout: BinaryLayout | null = null;
    const key = this.key;
    const value = this.value;
    for (let i = 0; i < raws.length; i++) {
      const r = raws[i];
      const valued = valueSpan(r, value);
      const keyed = keySpan(r, key);
      // A keyless tombstone decodes to nothing (decode.ts).
      if (!valued && !keyed) continue;
      const s = describe(r);
      // A record whose schemas are not known (a schema the registry does not have): its op is
      // unknown here, and a truncate among them would be applied after fast rows it precedes.
      // The whole chunk goes the general way, which decodes what it can in order.
      if (s === null) return out.fill(null);
      if (s.table !== tTable) {
        tTable = s.table;
        const known = tallies.get(s.table.destId);
        if (known) t = known;
        else tallies.set(s.table.destId, (t = { no: tallies.size, keySchemaId: s.keySchemaId, mixedKeys: false, truncated: false }));
      }
      if (s.keySchemaId !== t.keySchemaId) t.mixedKeys = true;
      if (keyed) {
        const first = this.first.firstOr(t.no, keyIdOf(key), i);
        if (first >= 0) shared[first] = shared[i] = 1;
      }
      // A tombstone is a delete of its key (decode.ts), counted above as one of its key's events.
      if (!valued) continue;
      if (s !== lastSchemas) {
        lastSchemas = s;
        layout = binary(s);
      }
      const transcoder = layout?.transcoder ?? s.transcoder;
      if (transcoder === null || !transcoder.scan(value.buf, value.start + WIRE_HEADER_LENGTH, value.end, fresh, scan)) continue;
      if (scan.op === TRUNCATE) t.truncated = true;
      const op = OPS[scan.op];
      if (op === undefined || !keyed || !scan.line || scan.hasBefore || scan.toast || scan.nullKey) {
        if (scan.line) fresh.pos = scan.lineStart; // not used: free its bytes
        continue;
      }
      let lines = fresh;
      let start = scan.lineStart;
      if (op === 'u') {
        lines = replaced;
        start = replaced.pos;
        replaced.bytes(fresh.buf, scan.lineStart, fresh.pos);
        fresh.pos = scan.lineStart;
      }
      out[i] = { raw: r, table: s.table, keyColumns: s.keyColumns, op, binary: layout?.table ?? null, lines, start, end: lines.pos };
    }
    let rowTable: TableVersion | undefined;
    let dropTable = false;
    for (let i = 0; i < raws.length; i++) {
      const row = out[i];
      if (row === null) continue;
      if (row.table !== rowTable) {
        rowTable = row.table;
        const tally = tallies.get(rowTable.destId)!;
        dropTable = tally.mixedKeys || tally.truncated;
      }
      if (dropTable || shared[i] === 1) out[i] = null;
    }
    return out;
  }
}

const COPY_CHUNK_BYTES = 1 << 20;

/**
 * The rows' COPY lines as Buffers of about 1 MB, in the rows' order: a run of rows that lie
 * back to back in their writer is handed over as one view, scattered rows are gathered.
 */
export function* lineChunks(rows: readonly FastRow[]): Generator<Buffer> {
  let i = 0;
  while (i < rows.length) {
    // One window: rows until ~1 MB; note whether they are one contiguous range.
    const first = rows[i];
    let bytes = 0;
    let contiguous = true;
    let j = i;
    for (; j < rows.length && bytes < COPY_CHUNK_BYTES; j++) {
      const r = rows[j];
      if (j > i && (r.lines !== rows[j - 1].lines || r.start !== rows[j - 1].end)) contiguous = false;
      bytes += r.end - r.start;
    }
    if (contiguous) {
      yield first.lines.buf.subarray(first.start, rows[j - 1].end);
    } else {
      const out = Buffer.allocUnsafe(bytes);
      let p = 0;
      for (let k = i; k < j; k++) {
        const r = rows[k];
        p += r.lines.buf.copy(out, p, r.start, r.end);
      }
      yield out;
    }
    i = j;
  }
}

/**
 * Rows grouped by `groupOf`, groups in first-seen order. Mostly every row is in one group: then
 * the rows go on as they are, not copied row by row.
 */
export function groupRows<K>(rows: readonly FastRow[], groupOf: (r: FastRow) => K): Map<K, readonly FastRow[]> {
  const first = rows.length > 0 ? groupOf(rows[0]) : undefined;
  if (rows.length > 0 && rows.every((r) => groupOf(r) === first)) return new Map([[first as K, rows]]);
  const out = new Map<K, FastRow[]>();
  for (const r of rows) {
    const g = groupOf(r);
    const list = out.get(g);
    if (list) list.push(r);
    else out.set(g, [r]);
  }
  return out;
}

/** Rows grouped by table version (each version has its own column list), versions in first-seen order. */
export const byVersion = (rows: readonly FastRow[]): Map<TableVersion, readonly FastRow[]> => groupRows(rows, (r) => r.table);
