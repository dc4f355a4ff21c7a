/**
 * A record that cannot be applied stalls its topic-partition only: the connector pauses
 * the partition at that record, this module logs ONE clear error (topic, partition,
 * offset, table, column, SQLSTATE, the database's message and a remedy), shows it in
 * metrics and in `shardbridge.stalls`, and every `stallRetryMs` asks the connector to
 * retry (re-reading the catalog). The first successful apply clears the stall.
 * While any is stalled, their consumer_lag follows Kafka's end offsets (the source keeps
 * producing), not only at each retry.
 */
import type pg from 'pg';
import type { Gauge, Counter } from 'prom-client';
import type { Logger } from '../shared/logger.ts';
import { ShardBridgeError } from '../shared/errors.ts';
import { inParallel } from '../shared/in-parallel.ts';
import { tpKey } from './offsets.ts';
import { resnapshotCommand } from '../shared/migration/remedies.ts';

export type StallReason = 'apply' | 'decode' | 'gap' | 'past-end';

export interface StallInfo {
  topic: string;
  partition: number;
  /** The first record not applied. */
  offset: string;
  reason: StallReason;
  table?: string;
  column?: string;
  constraint?: string;
  /** What the stalled record's values showed about the column, where the error names none (column-probe.ts). */
  finding?: string;
  sqlstate?: string;
  /** The database's (or decoder's) own message. */
  message: string;
  detail?: string;
  remedy: string;
}

interface PgErrorFields {
  code?: string;
  message?: string;
  detail?: string;
  schema?: string;
  table?: string;
  column?: string;
  constraint?: string;
  /** The error's context, e.g. `COPY orders, line 3, column amount: "x"` for a value COPY refused. */
  where?: string;
}

/** The column a COPY error's context names (a value that does not fit carries no column field). */
export function copyColumnOf(where: string | undefined): string | undefined {
  return where === undefined ? undefined : /^COPY [^\n]*?, line \d+, column (.+?)(?:: |$)/m.exec(where)?.[1];
}

/** The innermost error that carries PostgreSQL's fields, if any. */
function pgErrorOf(err: unknown): PgErrorFields | undefined {
  for (let e: any = err, depth = 0; e && depth < 8; e = e.cause, depth++) {
    if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) && typeof e.severity === 'string') return e as PgErrorFields;
  }
  return undefined;
}

/** Describe why a record cannot be applied. Pure. */
export function describeStall(err: unknown, at: { topic: string; partition: number; offset: string }, reason: StallReason): StallInfo {
  const pgErr = pgErrorOf(err);
  const ctx = err instanceof ShardBridgeError ? err.context : {};
  const str = (v: unknown): string | undefined => (v === undefined || v === null ? undefined : String(v));
  const table = pgErr?.table ? (pgErr.schema ? `${pgErr.schema}.${pgErr.table}` : pgErr.table) : str(ctx.table);
  const column = pgErr?.column ?? copyColumnOf(pgErr?.where) ?? str(ctx.column);
  // Citus relays a worker's error without its fields: classify read them from the text.
  const constraint = pgErr?.constraint ?? str(ctx.constraint);
  // The classified code first: a Citus relay's XX000 stands for the worker's error its message names (relayedSqlState).
  const sqlstate = str(ctx.sqlstate) ?? pgErr?.code;
  const message = pgErr?.message ?? (err instanceof Error ? err.message : String(err));
  const own = err instanceof ShardBridgeError ? err.remedy : undefined;
  const info: StallInfo = { ...at, reason, table, column, constraint, sqlstate, message, detail: pgErr?.detail, remedy: '' };
  info.remedy = own ?? remedyFor(info);
  return info;
}

/**
 * What is known of a column the destination lacks (table-state.ts): `dropped` there after a
 * catalog read found it, `added` at the source (an earlier version of its table lacks it), or
 * `unknown` (a restart since, or PostgreSQL's own 42703 under a catalog read before the drop).
 */
export type MissingColumnHistory = 'dropped' | 'added' | 'unknown';

/**
 * What to do after adding back a missing column. A column dropped on the destination and added
 * back is NULL in every row not changed since (their values came before and no record carries
 * them again; only cutover --verify-only shows it): the table's snapshot is taken again. A
 * column the source just added has no older rows to fill. Pure.
 */
export function refillRemedy(column: string, sourceTable: string, history: MissingColumnHistory): string {
  const resnapshot = resnapshotCommand(sourceTable);
  switch (history) {
    case 'added':
      return ` (the source added ${column}: no older row to fill)`;
    case 'dropped':
      return `; then, the stall gone, ${resnapshot}: ${column} was on the destination before and was dropped there, and rows not changed since would keep NULL in it`;
    case 'unknown':
      return `; if ${column} was on the destination before (dropped there, not just added at the source), then also, the stall gone, ${resnapshot}: rows not changed since keep NULL in it`;
  }
}

/** What fixes the destination, by SQLSTATE. Pure. */
export function remedyFor(s: Pick<StallInfo, 'sqlstate' | 'table' | 'column' | 'constraint' | 'reason'> & { message?: string }): string {
  const table = s.table ?? '<table>';
  const column = s.column ?? '<column>';
  if (s.reason === 'decode') {
    return 'the record cannot be decoded: check that the sink reads the registry the source writes to; enable deadLetter to set such records aside';
  }
  const code = s.sqlstate ?? '';
  switch (code) {
    case '42703':
      return `ALTER TABLE ${table} ADD COLUMN ${column} <type>; or set autoEvolve: true${refillRemedy(column, '<source table>', 'unknown')}`;
    case '42P01':
      return `create ${table} on the destination (shardbridge schema copy) or map the source table to an existing one`;
    case '23503':
      return `foreign keys cannot be honoured while tables are applied independently: drop ${s.constraint ?? 'the foreign key'} on ${table} now and create foreign keys at cut-over, not before`;
    case '23502':
      return `the destination requires ${column} but the change has no value for it: ALTER TABLE ${table} ALTER COLUMN ${column} DROP NOT NULL (or give it a DEFAULT)`;
    case '23505':
      return `a unique constraint of ${table} (${s.constraint ?? 'not the primary key'}) that the source does not have rejects the row: drop it until cut-over`;
    case '23514':
      return `check constraint ${s.constraint ?? ''} of ${table}${s.column ? ` (on ${s.column})` : ''} rejects a source row: align it with the source's`;
    case '42501':
      return `grant the sink's role INSERT, UPDATE, DELETE and TRUNCATE on ${table}`;
    case '428C9':
      return `${table}.${column} is GENERATED ALWAYS AS IDENTITY, which refuses the source's values: ALTER TABLE ${table} ALTER COLUMN ${column} SET GENERATED BY DEFAULT`;
    case '0A000':
      // TRUNCATE of a table another table's foreign key references fails as "not supported".
      if (/foreign key/i.test(s.message ?? '')) {
        return `foreign keys cannot be honoured while tables are applied independently: drop the foreign keys referencing ${table} now and create foreign keys at cut-over, not before`;
      }
      if (/partition value/i.test(s.message ?? '')) {
        return `Citus refuses to change the distribution column of a row of ${table}: the destination key must contain the distribution column (shardbridge check names the table's layout)`;
      }
      // Citus refuses some statement shapes on distributed tables; the sink's are meant to be none of them.
      return `the destination does not support a statement the sink sends for ${table} (on Citus: a shape its planner refuses on a distributed or reference table, named in the message): check the table's layout with shardbridge check; if it is as docs/sink-connector.md describes, this is a ShardBridge defect: report it with this message`;
    case '22P05':
      // Not the column's type: the database's encoding (server_encoding) has no such character.
      return `the destination database's encoding cannot store a character of this value${s.column ? ` (column ${s.column})` : ''}: the source's text is UTF8, so the destination database must be too (CREATE DATABASE … ENCODING 'UTF8', then schema copy and replay); or make ${table}.${column} bytea`;
    case '54000':
      if (/index row|index entry|exceeds .*maximum/i.test(s.message ?? '')) {
        return `an index of ${table}${s.constraint ? ` (${s.constraint})` : ''} cannot hold this row's value (a btree entry holds at most about 2700 bytes, a third of a page): drop it, or index md5(<column>) or a hash index instead`;
      }
      return `the destination refuses the row or statement as over one of its limits: ${s.message ?? ''}`;
  }
  if (code.startsWith('22') || code === '42804' || code === '42846') {
    return `the destination column type of ${table}${s.column ? `.${s.column}` : ''} cannot hold the source's value: ALTER TABLE ${table} ALTER COLUMN ${s.column ?? '…'} TYPE <the source's type>`;
  }
  return 'fix the destination so that the statement succeeds; the sink retries by itself';
}

export interface StallMetrics {
  stalled: Gauge<'topic' | 'partition' | 'reason'>;
  stalls: Counter<'reason'>;
}

/**
 * How often a stalled partition's consumer_lag is read from Kafka's end offsets. Otherwise only
 * its retry (stallRetryMs) set it: a figure that old while the source keeps producing, and the
 * one a dashboard alerts on.
 */
export const STALLED_LAG_MS = 5_000;

/** Records from the stalled one (the first not applied) to the partition's end. Pure. */
export function stalledLag(end: bigint, offset: string): number | undefined {
  if (!/^\d+$/.test(offset)) return undefined;
  const at = BigInt(offset);
  return Number(end > at ? end - at : 0n);
}

export interface StallsOptions {
  groupId: string;
  retryMs: number;
  logger: Logger;
  metrics: StallMetrics;
  /** Runs a statement on the destination (outside any batch transaction). */
  query: (sql: string, params: unknown[]) => Promise<pg.QueryResult>;
  /** Called every retryMs while a partition is stalled: re-read what is needed and resume it. */
  onRetry: (topic: string, partition: number, info: StallInfo) => void;
  /**
   * The stalled partitions' consumer_lag, from each stalled topic's end offsets (one request a
   * topic) every `everyMs` (STALLED_LAG_MS); no timer while nothing is stalled. Absent: not kept.
   */
  lag?: {
    gauge: Gauge<'topic' | 'partition'>;
    ends: (topic: string) => Promise<readonly { partition: number; end: string }[]>;
    everyMs?: number;
  };
}

interface Entry {
  info: StallInfo;
  signature: string;
  timer?: NodeJS.Timeout;
  attempts: number;
  /** Known only from `shardbridge.stalls` (another member stalled it): no log or timer of ours. */
  inherited: boolean;
}

export class Stalls {
  private readonly entries = new Map<string, Entry>();
  private stopped = false;
  private lagTimer: NodeJS.Timeout | undefined;
  private lagReading = false;

  constructor(private readonly opts: StallsOptions) {}

  isStalled(topic: string, partition: number): boolean {
    const e = this.entries.get(tpKey(topic, partition));
    return e !== undefined && !e.inherited;
  }

  get size(): number {
    return [...this.entries.values()].filter((e) => !e.inherited).length;
  }

  /** A partition cannot go on: log (once per distinct error), record, and schedule a retry. */
  report(info: StallInfo): void {
    const k = tpKey(info.topic, info.partition);
    const signature = `${info.offset}\u0000${info.sqlstate ?? ''}\u0000${info.message}`;
    const prev = this.entries.get(k);
    if (prev?.timer) clearTimeout(prev.timer);
    const entry: Entry = { info, signature, attempts: (prev?.attempts ?? 0) + 1, inherited: false };
    this.entries.set(k, entry);
    const log = this.opts.logger.child({ topic: info.topic, partition: info.partition });
    if (prev === undefined || prev.inherited || prev.signature !== signature) {
      // topic and partition are the child logger's already.
      const { remedy, topic: _topic, partition: _partition, ...fields } = info;
      const where = info.table ? ` (table ${info.table}${info.finding ? `; ${info.finding}` : info.column ? `, column ${info.column}` : ''})` : '';
      log.error({ ...fields, remedy }, `partition stalled at offset ${info.offset}: ${info.message}${where}${info.sqlstate ? ` [SQLSTATE ${info.sqlstate}]` : ''} — remedy: ${remedy}`);
      if (prev && !prev.inherited) this.opts.metrics.stalled.remove({ topic: info.topic, partition: String(info.partition), reason: prev.info.reason });
      this.opts.metrics.stalls.inc({ reason: info.reason });
    } else {
      log.debug({ offset: info.offset, attempts: entry.attempts }, 'still stalled');
    }
    this.opts.metrics.stalled.set({ topic: info.topic, partition: String(info.partition), reason: info.reason }, 1);
    void this.record(entry);
    if (!this.stopped) {
      entry.timer = setTimeout(() => {
        entry.timer = undefined;
        if (this.entries.get(k) === entry && !this.stopped) this.opts.onRetry(info.topic, info.partition, info);
      }, this.opts.retryMs);
      entry.timer.unref();
    }
    this.lagTimerFollows();
  }

  /** The partition applied a batch: clear its stall, if it had one (or inherited one). */
  resolved(topic: string, partition: number): void {
    const k = tpKey(topic, partition);
    const e = this.entries.get(k);
    if (!e) return;
    this.entries.delete(k);
    if (e.timer) clearTimeout(e.timer);
    if (!e.inherited) {
      this.opts.metrics.stalled.remove({ topic, partition: String(partition), reason: e.info.reason });
      this.opts.logger.child({ topic, partition }).info({ offset: e.info.offset, attempts: e.attempts }, 'stall cleared: partition applies again');
    }
    this.opts
      .query('DELETE FROM shardbridge.stalls WHERE group_id = $1 AND topic = $2 AND partition = $3', [this.opts.groupId, topic, partition])
      .catch((err: unknown) => this.opts.logger.warn({ err, topic, partition }, 'could not clear the stall row'));
    this.lagTimerFollows();
  }

  /** After a rebalance: keep only owned partitions; rows other members left behind are cleared on our first apply. */
  retain(owned: ReadonlySet<string>, storedStalls: Iterable<{ topic: string; partition: number }>): void {
    for (const [k, e] of this.entries) {
      if (owned.has(k)) continue;
      if (e.timer) clearTimeout(e.timer);
      if (!e.inherited) this.opts.metrics.stalled.remove({ topic: e.info.topic, partition: String(e.info.partition), reason: e.info.reason });
      this.entries.delete(k);
    }
    for (const s of storedStalls) {
      const k = tpKey(s.topic, s.partition);
      if (owned.has(k) && !this.entries.has(k)) {
        this.entries.set(k, { info: { ...s, offset: '', reason: 'apply', message: '', remedy: '' }, signature: '', attempts: 0, inherited: true });
      }
    }
    this.lagTimerFollows();
  }

  /** Whether this member stalled the partition itself (and so resumes it on its retry timer). */
  stalledHere(topic: string, partition: number): boolean {
    const e = this.entries.get(tpKey(topic, partition));
    return e !== undefined && !e.inherited;
  }

  stop(): void {
    this.stopped = true;
    for (const e of this.entries.values()) if (e.timer) clearTimeout(e.timer);
    this.lagTimerFollows();
  }

  /** The lag timer runs while this member has a stall of its own, and not after stop. */
  private lagTimerFollows(): void {
    const lag = this.opts.lag;
    const wanted = lag !== undefined && !this.stopped && this.size > 0;
    if (wanted && !this.lagTimer) {
      this.lagTimer = setInterval(() => void this.readLag(), lag.everyMs ?? STALLED_LAG_MS);
      this.lagTimer.unref();
    } else if (!wanted && this.lagTimer) {
      clearInterval(this.lagTimer);
      this.lagTimer = undefined;
    }
  }

  /** Each stalled topic's end offsets (a few topics at a time); a tick while the last is under way is skipped. */
  private async readLag(): Promise<void> {
    const lag = this.opts.lag;
    if (!lag || this.lagReading) return;
    this.lagReading = true;
    try {
      const topics = [...new Set([...this.entries.values()].filter((e) => !e.inherited).map((e) => e.info.topic))];
      await inParallel(topics, 8, async (topic) => {
        try {
          for (const { partition, end } of await lag.ends(topic)) {
            // Read at the answer: a stall cleared (or moved on) meanwhile is the batches' to show.
            const e = this.entries.get(tpKey(topic, partition));
            const n = e && !e.inherited && !this.stopped ? stalledLag(BigInt(end), e.info.offset) : undefined;
            if (n !== undefined) lag.gauge.set({ topic, partition: String(partition) }, n);
          }
        } catch (err) {
          this.opts.logger.debug({ err, topic }, 'end offsets of a stalled topic not read: its consumer_lag waits for the next try');
        }
      });
    } finally {
      this.lagReading = false;
    }
  }

  private async record(e: Entry): Promise<void> {
    const i = e.info;
    const error = [i.message, i.detail && `detail: ${i.detail}`, i.column && `column: ${i.column}`, i.finding, `remedy: ${i.remedy}`].filter(Boolean).join('\n');
    try {
      await this.insert(i, error).catch((err: unknown) => {
        // A destination database not in UTF8 (LATIN1) cannot store every character of the text
        // (a remedy's "…", a key in the detail): then stored with those characters escaped.
        if ((err as { code?: unknown }).code !== '22P05') throw err;
        return this.insert(i, asciiOnly(error));
      });
    } catch (err) {
      this.opts.logger.warn({ err, topic: i.topic, partition: i.partition }, 'could not record the stall in shardbridge.stalls');
    }
  }

  private async insert(i: StallInfo, error: string): Promise<void> {
    await this.opts.query(
      `INSERT INTO shardbridge.stalls (group_id, topic, partition, next_offset, table_name, sqlstate, error)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, table_name = EXCLUDED.table_name,
         sqlstate = EXCLUDED.sqlstate, error = EXCLUDED.error, attempts = shardbridge.stalls.attempts + 1, last_seen = now()`,
      [this.opts.groupId, i.topic, i.partition, i.offset, i.table ?? null, i.sqlstate ?? i.reason, error],
    );
  }
}

/** `text` with every character outside printable ASCII (and tab, newline) as `\u{…}` (its code point in hex). Pure. */
export function asciiOnly(text: string): string {
  return text.replace(/[^ -~\t\n\r]/gu, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}
