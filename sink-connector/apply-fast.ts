/**
 * Applying a table's fast rows (fast-rows.ts) inside the batch transaction: rows new to the
 * destination are COPied straight into the table when the direct-COPY policy allows, the
 * others through staging, each version's rows with its own column list. Too few rows for
 * either COPY path are decoded after all and handed back to the general path (collapse and
 * unnest), as are updates of a table whose destination key has columns the source key lacks
 * (their old row may sit under another key: collapse's sparing delete handles that).
 */
import type pg from 'pg';
import type { ApplyContext, Counts, UpsertPath } from './apply.ts';
import type { DecodedRecord } from './decode.ts';
import type { Query } from './destination-errors.ts';
import { byVersion, type FastRow } from './fast-rows.ts';
import { tableShape, type ApplyTable } from './sink-change.ts';
import { copyIntoTarget, upsertViaStaging } from './staging.ts';

/** A direct COPY met a row already at the destination: the transaction is rolled back and the chunk applied again without it. */
export class DirectCopyConflict extends Error {}

/** One table's upsert paths within one transaction: the direct-COPY decision (taken once) and the rows per path. */
export class TablePaths {
  private tryDirect: boolean | undefined;

  constructor(
    readonly name: string,
    private readonly ctx: ApplyContext,
    private readonly paths: Counts,
    /** Rows per table COPied from their bytes (transcoded). */
    private readonly transcoded: Map<string, number>,
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

  used(path: UpsertPath, n: number, transcoded = false): void {
    let m = this.paths.get(this.name);
    if (!m) this.paths.set(this.name, (m = new Map()));
    m.set(path, (m.get(path) ?? 0) + n);
    if (transcoded) this.transcoded.set(this.name, (this.transcoded.get(this.name) ?? 0) + n);
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
): Promise<FastOutcome> {
  const general: DecodedRecord[] = [];
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
      if ((await copyIntoTarget(client, table, columnsOf(version), { lines: list })) === 'conflict') paths.conflict();
    }
    paths.succeeded();
    paths.used('direct_copy', fresh.length, true);
    rows += fresh.length;
  }
  const upserted = direct ? staged : staged.concat(fresh);
  if (upserted.length >= ctx.fastStagingMinRows) {
    for (const [version, list] of byVersion(upserted)) await upsertViaStaging(client, q, table, columnsOf(version), { lines: list }, paths.staged);
    paths.used('staging', upserted.length, true);
    rows += upserted.length;
  } else {
    for (const f of upserted) general.push(ctx.redecode(f));
  }
  return { rows, general };
}

const columnsOf = (v: FastRow['table']): string[] => v.columns.map((c) => c.name);
