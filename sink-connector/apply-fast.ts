/**
 * Applying a table's fast rows (fast-rows.ts) inside the batch transaction: rows new to the
 * destination are COPied straight into the table when the direct-COPY policy allows, the
 * others through staging, each version's rows with its own column list. Too few rows for
 * either COPY path are decoded after all and handed back to the general path (collapse and
 * unnest), as are updates of a table whose destination key has columns the source key lacks
 * (their old row may sit under another key: collapse's sparing delete handles that).
 */
import type pg from 'pg';
import { RetriableError } from '../shared/errors.ts';
import type { ApplyContext, UpsertPath } from './apply.ts';
import { add, type Counts } from './apply-counts.ts';
import type { DecodedRecord } from './decode.ts';
import { destIdOf } from './schema-compile.ts';
import { sqlStateOf, type Query } from './destination-errors.ts';
import { byVersion, groupRows, type FastRow } from './fast-rows.ts';
import { tableShape, type ApplyTable } from './sink-change.ts';
import { copyIntoTarget, upsertViaStaging } from './staging.ts';
import { qualifiedName } from './upsert-batch.ts';
import { stagingTableName } from './staging-sql.ts';

/** A direct COPY met a row already at the destination: the transaction is rolled back and the chunk applied again without it. */
export class DirectCopyConflict extends Error {}

/** One table's upsert paths within one transaction: the direct-COPY decision (taken once) and the rows per path. */
export class TablePaths {
  private tryDirect: boolean | undefined;

  constructor(
    readonly name: string,
    private readonly ctx: ApplyContext,
    private readonly paths: Counts,
    /** Rows per table COPied from their bytes (transcoded), by COPY format. */
    private readonly transcoded: Counts,
    /** Staging tables used so far in this transaction (staging.ts). */
    readonly staged: Set<string>,
  ) {}

  /** Whether `fresh` new rows go straight into the table (the policy is asked once per table and batch). */
  direct(fresh: number): boolean {
    const dc = this.ctx.directCopy;
    if (!dc || fresh < dc.minRows) return false;
    this.tryDirect ??= dc.policy.shouldTry(this.name);
    return this.tryDirect;
  }

  /** A direct COPY met an existing row: tell the policy and the metrics, leave the transaction. */
  conflict(): never {
    const skipping = this.ctx.directCopy!.policy.conflicted(this.name);
    this.ctx.onDirectCopyConflict?.(this.name);
    this.ctx.logger.info(
      { table: this.name, skipping },
      'rows expected new were already at the destination (a replay?): this batch goes through the upsert path, and the next direct COPYs of the table are skipped',
    );
    throw new DirectCopyConflict();
  }

  succeeded(): void {
    this.ctx.directCopy?.policy.succeeded(this.name);
  }

  /** `n` rows went by `path`; `format`: they were transcoded, into COPY text or binary. */
  used(path: UpsertPath, n: number, format?: 'text' | 'binary'): void {
    add(this.paths, this.name, path, n);
    if (format) add(this.transcoded, this.name, format, n);
  }
}

export interface FastOutcome {
  /** Rows applied here. */
  rows: number;
  /** Fast rows decoded for the general path. */
  general: DecodedRecord[];
}

export async function applyFastRows(
  client: pg.ClientBase,
  q: Query,
  table: ApplyTable,
  fast: readonly FastRow[],
  ctx: ApplyContext,
  paths: TablePaths,
  /** Columns the source dropped since (source-drops.ts): rows of a version carrying them are decoded for the general path, which leaves them out. */
  omit: ReadonlySet<string> = new Set(),
): Promise<FastOutcome> {
  const general: DecodedRecord[] = [];
  if (omit.size > 0) {
    const carries = new Map<FastRow['table'], boolean>();
    const current: FastRow[] = [];
    for (const f of fast) {
      let c = carries.get(f.table);
      if (c === undefined) carries.set(f.table, (c = f.table.columns.some((col) => omit.has(col.name))));
      if (c) general.push(ctx.redecode(f));
      else current.push(f);
    }
    fast = current;
  }
  // Binary rows written for another catalog read than this transaction's (the table changed
  // meanwhile) are decoded after all.
  if (fast.some((f) => f.binary !== null && f.binary !== table)) {
    const current: FastRow[] = [];
    for (const f of fast) {
      if (f.binary !== null && f.binary !== table) general.push(ctx.redecode(f));
      else current.push(f);
    }
    fast = current;
  }
  const binaryInto = new Set<string>();
  const movable = tableShape(table).destOnly.length > 0;
  let fresh: readonly FastRow[] = fast;
  const staged: FastRow[] = [];
  // Split only when there are updates (a snapshot chunk has none): the rows as they are otherwise.
  if (fast.some((f) => f.op === 'u')) {
    const inserts: FastRow[] = [];
    for (const f of fast) {
      if (f.op !== 'u') inserts.push(f);
      else if (movable) general.push(ctx.redecode(f));
      else staged.push(f);
    }
    fresh = inserts;
  }
  let rows = 0;
  const direct = fresh.length > 0 && paths.direct(fresh.length);
  if (direct) {
    for (const [version, list] of byVersion(fresh)) {
      for (const [binary, lines] of byFormat(list)) {
        const copied = await changedTypes(ctx, table, binary, () => copyIntoTarget(client, table, columnsOf(version), { lines, binary }));
        if (copied === 'conflict') paths.conflict();
        if (binary) binaryInto.add(qualifiedName(table));
        paths.used('direct_copy', lines.length, binary ? 'binary' : 'text');
      }
    }
    paths.succeeded();
    rows += fresh.length;
  }
  const upserted = direct ? staged : staged.concat(fresh);
  if (stagesFastRows(upserted, ctx)) {
    for (const [version, list] of byVersion(upserted)) {
      for (const [binary, lines] of byFormat(list)) {
        await changedTypes(ctx, table, binary, () => upsertViaStaging(client, q, table, columnsOf(version), { lines, binary }, paths.staged));
        if (binary) binaryInto.add(stagingTableName(table));
        paths.used('staging', lines.length, binary ? 'binary' : 'text');
      }
    }
    rows += upserted.length;
  } else {
    for (const f of upserted) general.push(ctx.redecode(f));
  }
  if (binaryInto.size > 0) await checkBinaryTypes(q, table, [...binaryInto], ctx);
  return { rows, general };
}

const columnsOf = (v: FastRow['table']): string[] => v.columns.map((c) => c.name);

/** Whether fast rows go through COPY staging: enough of them, or enough bytes (a few very large rows). Pure. */
export function stagesFastRows(rows: readonly FastRow[], ctx: Pick<ApplyContext, 'fastStagingMinRows' | 'fastStagingMinBytes'>): boolean {
  if (rows.length >= ctx.fastStagingMinRows) return true;
  let bytes = 0;
  for (const r of rows) bytes += r.end - r.start;
  return bytes >= ctx.fastStagingMinBytes;
}

/** Rows by COPY format (mostly one). */
const byFormat = (rows: readonly FastRow[]): Map<boolean, readonly FastRow[]> => groupRows(rows, (f) => f.binary !== null);

/** A binary COPY refused as malformed (22P03): a column's type changed since the catalog read; applied again after a fresh one. */
async function changedTypes<T>(ctx: ApplyContext, table: ApplyTable, binary: boolean, copy: () => Promise<T>): Promise<T> {
  try {
    return await copy();
  } catch (err) {
    if (!binary || sqlStateOf(err) !== '22P03') throw err;
    throw staleCatalog(ctx, table, `binary COPY into ${table.schema}.${table.name} refused (${(err as Error).message})`, { cause: err });
  }
}

/**
 * After a binary COPY, under the lock it took: the relations' column types are still those of
 * the catalog read the rows were written for. A type changed at the destination since (an
 * ALTER the sink was not told of) could read the bytes as another type without an error; then
 * the batch is rolled back and applied again, its catalog read afresh.
 */
async function checkBinaryTypes(q: Query, table: ApplyTable, relations: string[], ctx: ApplyContext): Promise<void> {
  const { rows } = await q(
    `SELECT a.attrelid::regclass::text AS rel, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
       FROM pg_attribute a WHERE a.attrelid = ANY($1::regclass[]) AND a.attnum > 0 AND NOT a.attisdropped`,
    [relations],
  );
  const want = tableShape(table).typeOf;
  const changed = (rows as { rel: string; name: string; type: string }[]).find((r) => want.has(r.name) && want.get(r.name) !== r.type);
  if (changed) throw staleCatalog(ctx, table, `column ${changed.name} of ${changed.rel} is now ${changed.type}, not ${want.get(changed.name)}`, { column: changed.name });
}

/** The table's catalog read is forgotten, and the batch retried: it is applied again with a fresh one. */
function staleCatalog(ctx: ApplyContext, table: ApplyTable, why: string, o: { column?: string; cause?: unknown }): RetriableError {
  ctx.states.invalidate(destIdOf(table.schema, table.name));
  return new RetriableError(`${why}: the batch is applied again with the catalog read afresh`, {
    context: { table: `${table.schema}.${table.name}`, column: o.column },
    cause: o.cause,
  });
}
