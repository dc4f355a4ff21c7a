/**
 * One fetched batch of one topic-partition: drop what is already applied, cut the rest
 * into chunks sized by the backlog (batch-size.ts), decode each chunk, apply it in one
 * transaction with retries for transient failures, and on a failure that retrying cannot
 * fix, narrow it down to the first record that fails (bisecting, so every record before
 * it is applied) and stall the partition there. Undecodable records stall too, or go to
 * the dead-letter topic in that mode.
 */
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import type { ConsumedMessage, EachBatchPayload } from '../shared/kafka/client.ts';
import type { Logger } from '../shared/logger.ts';
import { DecodeError, SchemaError, ShardBridgeError } from '../shared/errors.ts';
import { abortable } from '../shared/retry.ts';
import { redactUrl } from '../shared/redact.ts';
import type { ApplyContext } from './apply.ts';
import type { Counts } from './apply-counts.ts';
import { chunkEnd, chunkOf, hasWork, isFast, type Item } from './chunk-items.ts';
import type { DeadLetterTarget } from './dead-letter.ts';
import { DeadLetterSender } from './dead-letter-send.ts';
import { nextBatchRows, TooBigSizes, underCeiling, type ApplySample, type BatchSizing } from './batch-size.ts';
import { wentInHalves } from './destination-errors.ts';
import { applyControl, controlTopicKind } from './control.ts';
import type { DecodedRecord, RawRecord, RecordDecoder } from './decode.ts';
import type { TargetFor } from './schema-compile.ts';
import type { PositionTracker } from './offsets.ts';
import type { SinkMetrics } from './sink-metrics.ts';
import { describeStall, type StallInfo, type Stalls } from './stall.ts';
import { classifyGap, lostRecordsStall, pastEnd, pastEndStall, type GapTables } from './offset-gaps.ts';
import type { LaneWork } from './apply-lanes.ts';
import type { LockWatch } from './lock-watch.ts';
import { ColumnNamer } from './column-probe.ts';
import { Abandon, attemptApply, RegistryWaits, transient, usable, type AttemptDeps, type ConsumerControl, type Part } from './batch-retry.ts';
import { ChunkDecoder, controlItems, type DecodedChunk } from './chunk-decode.ts';

export interface BatchDeps {
  prefix: string;
  pool: pg.Pool;
  decoder: RecordDecoder;
  apply: ApplyContext;
  tracker: PositionTracker;
  stalls: Stalls;
  metrics: SinkMetrics;
  targetFor: TargetFor;
  /** Dead-letter mode: where undecodable records go. */
  deadLetter: DeadLetterTarget | null;
  adaptive: boolean;
  /** Whole-row inserts and replacements go straight from their bytes to COPY text (fast-rows.ts). */
  transcode?: boolean;
  /** ...and to COPY BINARY where every column's destination type has a binary writer (copy-binary.ts). */
  binaryCopy?: boolean;
  sizing: BatchSizing;
  /** The partition's first offset Kafka has (log start) and its end: asked only when a gap or a stored offset past the end is seen. */
  offsetRange: (topic: string, partition: number) => Promise<{ start: bigint; end: bigint }>;
  logger: Logger;
  /** Says who blocks a batch waiting for a lock in its transaction (lock-watch.ts); null: off. */
  lockWatch?: LockWatch | null;
  /** The schema registry's URL, for log lines (credentials taken out here). */
  registryUrl: string;
  /** How long a batch waits for the registry in its slot before its partition waits paused (tests). Default 3 s. */
  registryHoldMs?: number;
}

/** How often a partition waiting at a truncate looks whether the others reached it. */
const TRUNCATE_WAIT_MS = 500;

export class BatchProcessor {
  private current: number;
  /** topic/partition/truncate already logged as waiting. */
  private readonly waitingAt = new Set<string>();
  private readonly recent: ApplySample[] = [];
  private readonly chunks: ChunkDecoder;
  /** Dead-letter mode's sends (null: the mode is off). */
  private readonly deadLetters: DeadLetterSender | null;
  /** Names the column a stall's error does not (column-probe.ts). */
  private readonly columns: ColumnNamer;
  /** Partitions paused until the registry gives their schemas. */
  private readonly registryWaits: RegistryWaits;
  /** Per topic, the size that fit after a batch was too big for one go (a statement_timeout). */
  private readonly tooBig: TooBigSizes;
  private readonly attemptDeps: AttemptDeps;

  constructor(private readonly deps: BatchDeps) {
    this.registryWaits = new RegistryWaits(deps.metrics, { registry: redactUrl(deps.registryUrl), missing: (raws) => deps.decoder.missing(raws), answeredAt: () => deps.decoder.registryAnsweredAt() }, deps.registryHoldMs);
    this.current = deps.sizing.floor;
    this.tooBig = new TooBigSizes(deps.sizing.maxRows);
    this.attemptDeps = { pool: deps.pool, apply: deps.apply, metrics: deps.metrics, lockWatch: deps.lockWatch, halveAtOnce: (p) => this.tooBig.ceiling(p.topic) !== undefined };
    this.columns = new ColumnNamer(deps.pool, deps.apply.states, deps.logger);
    this.deadLetters = deps.deadLetter ? new DeadLetterSender(deps.deadLetter, deps.metrics) : null;
    this.chunks = new ChunkDecoder({ decoder: deps.decoder, states: deps.apply.states, transcode: deps.transcode, binaryCopy: deps.binaryCopy, deadLetters: deps.deadLetter !== null });
  }

  /**
   * Apply a batch its lane took (apply-lanes.ts). Its offsets were resolved when it was handed
   * over; `lane` says whether it is still wanted (no seek or new assignment since).
   */
  async handle(payload: EachBatchPayload, consumer: ConsumerControl, lane: LaneWork): Promise<void> {
    const { batch } = payload;
    const { topic, partition } = batch;
    const part: Part = {
      topic,
      partition,
      control: controlTopicKind(topic, this.deps.prefix),
      log: this.deps.logger.child({ topic, partition }),
      payload,
      consumer,
      lane,
    };
    const known = this.deps.tracker.get(topic, partition);
    let messages: ConsumedMessage[] = batch.messages;
    const high = BigInt(batch.highWatermark);
    // Before the records below the stored offset are dropped as applied: with the offset past the
    // partition's end they are all "below" it, and would be dropped without a word.
    if (messages.length > 0 && (pastEnd(known, high) || this.deps.tracker.pastEndOf(topic, partition))) {
      if (await this.stalledPastEnd(part, known!, messages)) return;
    }
    if (known !== undefined && messages.length > 0 && BigInt(messages[0].offset) < known) {
      messages = messages.filter((m) => BigInt(m.offset) >= known);
    }
    if (messages.length === 0) return;
    // Set before applying as well: a partition that stalls on this batch shows its backlog, not a stale figure.
    const first = BigInt(messages[0].offset);
    this.deps.metrics.lag.set({ topic, partition: String(partition) }, Number(high > first ? high - first : 0n));
    for (let i = 0; i < messages.length; ) {
      if (!usable(part)) return;
      const lastBefore = BigInt(messages[messages.length - 1].offset);
      const backlog = messages.length - i + Number(high - lastBefore - 1n);
      const sized = this.deps.adaptive ? nextBatchRows({ current: this.current, lag: backlog, recent: this.recent }, this.deps.sizing) : this.deps.sizing.maxRows;
      // The other topics' sizes grow from `current`, not from this topic's ceiling.
      this.current = sized;
      const size = underCeiling(sized, this.tooBig.ceiling(topic));
      // Not cut between a delete and its tombstone (chunk-items.ts).
      const slice = messages.slice(i, chunkEnd(messages, i, size));
      // The consumer's records are ours as they are: no copy, and their key and value read in place.
      const raws: RawRecord[] = slice;
      const done = await this.process(part, raws);
      if (!done) return;
      i += slice.length;
      const next = BigInt(slice[slice.length - 1].offset) + 1n;
      this.deps.metrics.lag.set({ topic, partition: String(partition) }, Number(high > next ? high - next : 0n));
      try {
        await payload.heartbeat();
      } catch (err) {
        // The new assignment seeks to the stored positions, so the rest is fetched again.
        part.log.debug({ err }, 'heartbeat failed (rebalance): leaving the rest of the batch');
        return;
      }
    }
  }

  /** Decode and apply a chunk; false when the rest of the batch must be left (stall, seek, stop). */
  private async process(p: Part, raws: RawRecord[]): Promise<boolean> {
    let items: Item[];
    let bad: { index: number; error: DecodeError } | undefined;
    try {
      // Batches of several partitions arrive together: without this turn every partition would
      // decode (CPU, milliseconds) before any sent its first statement, leaving the destination
      // idle meanwhile and the sink idle after. Yielding first lets each apply start as soon as
      // its own decode is done, while the next partition decodes.
      await new Promise<void>((resolve) => setImmediate(resolve));
      ({ items, bad } = await this.decode(p, raws));
    } catch (err) {
      if (err instanceof Abandon) return false;
      // The registry refused the sink itself (decode.ts, prepare): stalled, dead letters or not.
      if (err instanceof SchemaError) {
        this.stall(p, describeStall(err, { topic: p.topic, partition: p.partition, offset: raws[0].offset }, 'decode'));
        return false;
      }
      throw err;
    }
    let upTo = bad ? bad.index : items.length;
    // Dead letters go first, acknowledged, so that no commit moves the offset past one not sent.
    const unsent = this.deadLetters && upTo > 0 ? await this.deadLetters.send({ topic: p.topic, partition: p.partition, log: p.log, signal: p.consumer.signal, usable: () => usable(p) }, items, upTo) : null;
    if (unsent === 'abandon') return false;
    if (unsent) upTo = unsent.index;
    if (upTo > 0 && !(await this.bisect(p, items, 0, upTo))) return false;
    if (unsent) {
      this.stall(p, describeStall(unsent.error, { topic: p.topic, partition: p.partition, offset: items[unsent.index].raw.offset }, 'decode'));
      return false;
    }
    if (bad) {
      this.stall(p, describeStall(bad.error, { topic: p.topic, partition: p.partition, offset: raws[bad.index].offset }, 'decode'));
      return false;
    }
    return true;
  }

  private async decode(p: Part, raws: RawRecord[]): Promise<DecodedChunk> {
    if (p.control) return { items: controlItems(p.control, raws, p.log) };
    await this.registryWaits.fetch(p, raws, () => this.deps.decoder.prepare(raws));
    return this.chunks.decode(raws);
  }

  /** The partitions this process owns after a group join: any other one waits for the registry no more here. */
  assigned(assignment: Record<string, number[]>): void {
    this.registryWaits.keepOnly(assignment);
  }

  /**
   * Apply items[lo, hi) in one transaction; when that fails for good, apply the halves in
   * order, down to the single record that fails, which stalls the partition.
   */
  private async bisect(p: Part, items: Item[], lo: number, hi: number, fit?: { rows: number }): Promise<boolean> {
    let applied: boolean;
    try {
      applied = await this.applyWithRetry(p, items, lo, hi);
    } catch (err) {
      if (err instanceof Abandon) return false;
      if (!fit && wentInHalves(err)) {
        // The batch as cut was too big for one go: the largest of its pieces that applies sizes the next ones.
        const pieces = { rows: 0 };
        try {
          return await this.narrow(p, items, lo, hi, err, pieces);
        } finally {
          this.tooBig.tooBig(p.topic, hi - lo, pieces.rows);
        }
      }
      return this.narrow(p, items, lo, hi, err, fit);
    }
    if (applied && fit) fit.rows = Math.max(fit.rows, hi - lo);
    return applied;
  }

  /** items[lo, hi) failed for good: its halves in order, down to the single record that fails, which stalls the partition. */
  private async narrow(p: Part, items: Item[], lo: number, hi: number, err: unknown, fit?: { rows: number }): Promise<boolean> {
    let withWork = 0;
    for (let i = lo; i < hi; i++) if (hasWork(items[i])) withWork++;
    if (hi - lo <= 1 || withWork <= 1) {
      const at = items.slice(lo, hi).find(hasWork) ?? items[lo];
      const info = describeStall(err, { topic: p.topic, partition: p.partition, offset: at.raw.offset }, 'apply');
      this.stall(p, await this.columns.name(info, this.decodedOf(at)));
      return false;
    }
    const mid = lo + Math.floor((hi - lo) / 2);
    p.log.debug({ from: items[lo].raw.offset, to: items[hi - 1].raw.offset, err: (err as Error).message }, 'batch failed: narrowing down');
    // Pieces of a batch too big for one go (fit) report what of them applied.
    return (await this.bisect(p, items, lo, mid, fit)) && (await this.bisect(p, items, mid, hi, fit));
  }

  /** The item's change, decoded (a fast row's, again), for the column probe; null when it has none or does not decode. */
  private decodedOf(it: Item): DecodedRecord | null {
    if (!isFast(it)) return it.decoded;
    try {
      return this.deps.apply.redecode(it);
    } catch {
      return null;
    }
  }

  private async applyWithRetry(p: Part, items: Item[], lo: number, hi: number): Promise<boolean> {
    const slice = lo === 0 && hi === items.length ? items : items.slice(lo, hi);
    const { chunk, actions } = chunkOf(p.topic, p.partition, slice, this.deps.apply.redecode);
    if (chunk.truncates) chunk.logStarts = () => this.logStarts(p.topic, chunk.truncates!.values().next().value!.partitions);
    let moved: string[] = [];
    if (actions.length > 0) {
      chunk.extra = async (client, from) => {
        const todo = actions.filter((a) => a.offset >= from).map((a) => a.action);
        moved = (await applyControl(client, todo, this.deps.targetFor, p.log)).sequencesMoved;
      };
    }
    const started = performance.now();
    let outcome = await attemptApply(p, chunk, this.attemptDeps);
    if (outcome.kind === 'gap' && this.deps.tracker.gapSeekedBefore(p.topic, p.partition, outcome.stored)) {
      // Kafka served the records after the stored offset from a later one, once more after a seek back to it.
      const stored = outcome.stored;
      let range: { start: bigint; end: bigint };
      try {
        range = await this.transient(p, `read the log start of ${p.topic}[${p.partition}]`, () => this.deps.offsetRange(p.topic, p.partition));
      } catch (err) {
        if (err instanceof Abandon) return false;
        throw err;
      }
      if (classifyGap(stored, range.start) === 'lost') {
        const info = lostRecordsStall({ topic: p.topic, partition: p.partition, stored, logStart: range.start }, await this.tablesOf(p, slice.map((it) => it.raw)));
        this.stall(p, info, chunk.firstOffset);
        return false;
      }
      p.log.debug({ stored: String(stored), first: String(chunk.firstOffset), logStart: String(range.start) }, 'offsets without records before the batch (transaction markers, compaction): applying from the stored offset');
      outcome = await attemptApply(p, chunk, this.attemptDeps, stored);
    }
    if (outcome.kind === 'gap' || (outcome.kind === 'behind' && outcome.stored > chunk.nextOffset)) {
      // Someone else applied further (or we must re-read from the stored offset): start over there.
      p.log.info({ stored: String(outcome.stored), chunk: `${chunk.firstOffset}..${chunk.nextOffset - 1n}` }, 'position differs from the stored offset: seeking to it');
      this.deps.tracker.set(p.topic, p.partition, outcome.stored);
      p.consumer.seek(p.topic, p.partition, outcome.stored);
      return false;
    }
    if (outcome.kind === 'waiting') {
      this.countCommitted(outcome);
      this.deps.tracker.set(p.topic, p.partition, outcome.at);
      p.consumer.commit(p.topic, p.partition, outcome.at);
      this.waitAtTruncate(p, outcome);
      return false;
    }
    this.deps.tracker.set(p.topic, p.partition, chunk.nextOffset);
    if (outcome.kind === 'applied') {
      const ms = performance.now() - started;
      const m = this.deps.metrics;
      m.applySeconds.observe(ms / 1000);
      m.batchRows.observe(slice.length);
      this.countCommitted(outcome);
      for (const s of moved) m.sequences.inc({ sequence: s });
      this.recent.push({ rows: slice.length, ms });
      if (this.recent.length > 8) this.recent.shift();
      this.tooBig.applied(p.topic, slice.length);
      p.log.debug({ records: slice.length, rows: outcome.rows, ms: Math.round(ms), next: String(chunk.nextOffset) }, 'batch applied');
    }
    this.deps.stalls.resolved(p.topic, p.partition);
    p.consumer.commit(p.topic, p.partition, chunk.nextOffset);
    return true;
  }

  /** Kafka's first offset of each of the topic's first `partitions` partitions (those a truncate's copies went to). */
  private async logStarts(topic: string, partitions: number): Promise<Map<number, bigint>> {
    const ranges = await Promise.all(Array.from({ length: partitions }, (_, partition) => this.deps.offsetRange(topic, partition)));
    return new Map(ranges.map((r, partition) => [partition, r.start]));
  }

  /** Metrics of what a transaction committed: events per table and op, rows per upsert path. */
  private countCommitted(outcome: { counts: Counts; paths: Counts; transcoded: Counts }): void {
    const m = this.deps.metrics;
    for (const [table, ops] of outcome.counts) for (const [op, n] of ops) m.applied.inc({ table, op }, n);
    for (const [table, paths] of outcome.paths) for (const [path, n] of paths) m.upsertRows.inc({ table, path }, n);
    for (const [table, byFormat] of outcome.transcoded) for (const [format, n] of byFormat) m.transcodedRows.inc({ table, format }, n);
  }

  private transient<T>(p: Part, what: string, fn: () => Promise<T>): Promise<T> {
    return transient(p, what, fn, this.deps.metrics);
  }

  /**
   * The partition reached its copy of a truncate before the others: paused at the copy and
   * resumed shortly to look again (pausing, not blocking, keeps the concurrency slots free for
   * the partitions it waits for).
   */
  private waitAtTruncate(p: Part, w: { at: bigint; truncate: string; delivery: number; arrived: number; partitions: number }): void {
    const where = `${p.topic}/${p.partition}/${w.truncate}/${w.delivery}`;
    const first = !this.waitingAt.has(where);
    this.waitingAt.add(where);
    const fields = { truncate: w.truncate, delivery: w.delivery, offset: String(w.at), arrived: w.arrived, partitions: w.partitions };
    if (first) p.log.info(fields, 'truncate reached: waiting until every partition of the topic has reached it, then it is applied once');
    else p.log.debug(fields, 'still waiting for the other partitions at a truncate');
    p.consumer.seek(p.topic, p.partition, w.at);
    const resume = p.payload.pause();
    setTimeout(() => {
      try {
        resume();
      } catch (err) {
        p.log.debug({ err }, 'resuming after a truncate wait failed (rebalanced or stopped)');
      }
    }, TRUNCATE_WAIT_MS).unref();
  }

  /**
   * The stored offset is past the partition's end (offset-gaps.ts), as the batch's high watermark
   * says or as found before at this stored offset: confirmed with Kafka's end offset (a new
   * leader's high watermark may lag a moment), the partition stalls. True when it did.
   */
  private async stalledPastEnd(p: Part, stored: bigint, messages: readonly ConsumedMessage[]): Promise<boolean> {
    // Found before at this stored offset (here, or recorded in shardbridge.stalls before a restart): stalled as it was.
    const found = this.deps.tracker.pastEndOf(p.topic, p.partition);
    let info = found?.info;
    if (info === undefined) {
      let end: bigint;
      try {
        end = (await this.transient(p, `read the end offset of ${p.topic}[${p.partition}]`, () => this.deps.offsetRange(p.topic, p.partition))).end;
      } catch (err) {
        if (err instanceof Abandon) return true;
        throw err;
      }
      if (!found && !pastEnd(stored, end)) {
        p.log.debug({ stored: String(stored), end: String(end) }, 'stored offset above the fetched high watermark but not above the end offset: going on');
        return false;
      }
      info = pastEndStall({ topic: p.topic, partition: p.partition, stored, end }, await this.tablesOf(p, messages));
      this.deps.tracker.markPastEnd(p.topic, p.partition, stored, info);
    }
    // The stored offset itself is out of range: the resume re-reads the batch (one fetch per retry).
    this.stall(p, info, BigInt(messages[0].offset));
    return true;
  }

  /** The partition's source and destination tables, as its records' schemas name them; none for control topics or unknown schemas. */
  private async tablesOf(p: Part, raws: readonly RawRecord[]): Promise<GapTables> {
    if (p.control) return {};
    try {
      await abortable(this.deps.decoder.prepare(raws.slice(0, 16)), p.consumer.signal);
    } catch {
      return {};
    }
    for (const raw of raws.slice(0, 16)) {
      const t = this.deps.decoder.describe(raw)?.table;
      if (t) return { source: `${t.source.schema}.${t.source.table}`, dest: `${t.dest.schema}.${t.dest.name}` };
    }
    return {};
  }

  private stall(p: Part, info: StallInfo, seekTo = BigInt(info.offset)): void {
    // Seek back first: a paused partition keeps its seek, so a resume re-reads from the stalled
    // record (or, when the stall's offset is one Kafka cannot serve, from where the batch began).
    p.consumer.seek(p.topic, p.partition, seekTo);
    p.consumer.pause(p.topic, p.partition);
    this.deps.stalls.report(info);
  }
}

export { isAbandon, type ConsumerControl } from './batch-retry.ts';

/** For errors that escape handle(): whether they are ours to log (not kafkajs's own). */
export function describeError(err: unknown): string {
  return err instanceof ShardBridgeError ? err.describe() : err instanceof Error ? err.message : String(err);
}
