/**
 * The source connector's Kafka send queue: records (already bytes) are accumulated into
 * batches; one batch is in flight at a time (the idempotent producer allows one request in
 * flight), and the next one fills while it is. Records of a source transaction are registered
 * with the LsnTracker when queued and acknowledged there when Kafka has acknowledged their
 * batch, so the confirm point never passes what Kafka has. The publisher (publisher.ts) encodes
 * what it queues.
 *
 * Back-pressure: `writable` turns false past inFlight.maxRecords / maxBytes (queued plus in
 * flight); readers await `whenWritable()`. A send that fails for good fails the queue: its
 * transactions block the confirm point and every waiter is rejected.
 */
import type { Counter } from 'prom-client';
import type { Logger } from '../shared/logger.ts';
import type { Metrics } from '../shared/metrics.ts';
import type { OutMessage, Producer } from '../shared/kafka/client.ts';
import { ShardBridgeError, SourceError } from '../shared/errors.ts';
import type { LsnTracker, TrackedTx } from './lsn-tracker.ts';
import { redelivered } from './truncate-fanout.ts';
import type { CopyGuard } from './copy-guard.ts';

export interface SendQueueOptions {
  producer: Producer;
  tracker: LsnTracker;
  maxRecords: number;
  maxBytes: number;
  /**
   * Bytes per send. Kafka refuses a partition's record batch over message.max.bytes (1 MB by
   * default); keeping the whole send under it keeps every partition's part under it too.
   */
  maxBatchBytes?: number;
  maxBatchRecords?: number;
  /**
   * Full batches waiting behind the one in flight before reading pauses. One request is in
   * flight at a time, so a few queued batches keep Kafka busy; more only hold memory (the
   * inFlight limits remain the upper bound).
   */
  maxQueuedBatches?: number;
  log: Logger;
  metrics?: Metrics;
  /**
   * A later delivery for truncate copies sent again (truncate-fanout.ts): a batch holding
   * copies whose send failed with its outcome unknown may be on some partitions already, and
   * the sink must tell the copies sent again from those (sink-connector/truncate-barrier.ts).
   */
  redeliver?: () => number;
}

/** A send in flight this long without an answer ends a flush (a stop with Kafka gone). */
const FLUSH_STALL_MS = 1_500;

/** Kafka record overhead (headers, varints, attributes) counted per record in batch sizing. */
const RECORD_OVERHEAD = 24;

interface Run {
  tx: TrackedTx | null;
  records: number;
  bytes: number;
  counter: Counter.Internal | null;
}

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}

export interface Batch {
  messages: OutMessage[];
  bytes: number;
  runs: Run[];
  done?: Deferred;
  /** Indexes of truncate copies in `messages`. */
  fanouts?: number[];
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {}); // a failure is also reported through onFailure; do not make it "unhandled"
  return { promise, resolve, reject };
}

/** The batches and their sends; the publisher (publisher.ts) extends it with what it queues. */
export class SendQueue {
  private readonly producer: Producer;
  private readonly tracker: LsnTracker;
  private readonly maxRecords: number;
  private readonly maxBytes: number;
  private maxBatchBytes: number;
  private readonly maxBatchRecords: number;
  private readonly maxQueuedBatches: number;
  private readonly log: Logger;
  private readonly redeliver?: () => number;
  private readonly queue: Batch[] = [];
  /** The batch still taking records (the last of `queue`), if any. */
  private open: Batch | null = null;
  private inFlight: Batch | null = null;
  /** When the send in flight began or the last one was acknowledged (flush's stall). */
  private progressAt = 0;
  private sending = false;
  private scheduled = false;
  private records = 0;
  private bytes = 0;
  private writers: Deferred[] = [];
  protected failure: Error | null = null;
  private readonly failureListeners: ((err: Error) => void)[] = [];
  private readonly abort = new AbortController();
  /** While a table's own snapshot is copied beside the stream: the keys the stream sent (copy-guard.ts). */
  protected guard: CopyGuard | null = null;
  private readonly published?: Counter<'table' | 'op'>;
  private readonly counters = new Map<string, Map<string, Counter.Internal>>();
  /** Records acknowledged by Kafka since start. */
  acknowledged = 0;

  constructor(opts: SendQueueOptions) {
    this.producer = opts.producer;
    this.tracker = opts.tracker;
    this.maxRecords = opts.maxRecords;
    this.maxBytes = opts.maxBytes;
    this.maxBatchBytes = opts.maxBatchBytes ?? 800_000;
    this.maxBatchRecords = opts.maxBatchRecords ?? 20_000;
    this.maxQueuedBatches = opts.maxQueuedBatches ?? 4;
    this.log = opts.log.child({ component: 'publisher' });
    this.redeliver = opts.redeliver;
    if (opts.metrics) {
      this.published = opts.metrics.counter('changes_published_total', 'Records acknowledged by Kafka, per table and op (tombstone: delete tombstones)', ['table', 'op']);
      // Read when scraped: set at each send and acknowledgement, they stood still while a send
      // hung (Kafka unreachable) and the records queued behind it grew.
      opts.metrics.sampled('inflight_records', 'Records queued or sent and not yet acknowledged', () => this.records);
      opts.metrics.sampled('inflight_bytes', 'Bytes queued or sent and not yet acknowledged', () => this.bytes);
    }
  }

  /** Queued or in flight, not yet acknowledged. */
  get pendingRecords(): number {
    return this.records;
  }

  get pendingBytes(): number {
    return this.bytes;
  }

  get writable(): boolean {
    return this.records < this.maxRecords && this.bytes < this.maxBytes && this.queue.length <= this.maxQueuedBatches;
  }

  get failed(): Error | null {
    return this.failure;
  }

  /** Called once when a send fails for good. */
  onFailure(listener: (err: Error) => void): void {
    this.failureListeners.push(listener);
  }

  /** Resolves once below the in-flight limits; rejects if the publisher failed. */
  whenWritable(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.writable) return Promise.resolve();
    const d = deferred();
    this.writers.push(d);
    return d.promise;
  }

  /** Sends of at most `bytes` from now on (record-limits.ts, batchBytesFor), when that is fewer. */
  capBatchBytes(bytes: number): void {
    this.maxBatchBytes = Math.min(this.maxBatchBytes, bytes);
  }

  /** Resolves when every record queued so far is acknowledged. */
  barrier(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const last = this.queue.length > 0 ? this.queue[this.queue.length - 1] : this.inFlight;
    if (!last) return Promise.resolve();
    if (last === this.open) this.open = null; // later records need not hold this barrier up
    last.done ??= deferred();
    return last.done.promise;
  }

  /**
   * barrier() with a deadline: true when everything queued was acknowledged in time, false on
   * timeout or failure, and false as soon as the send in flight has gone `stallMs` without an
   * answer (Kafka gone: it would not answer within the deadline either, and the stop that
   * waits here waited the whole deadline, twice). What is not acknowledged is not confirmed.
   */
  async flush(timeoutMs: number, stallMs = FLUSH_STALL_MS): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    let poll: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        this.barrier().then(() => true, () => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), timeoutMs);
          const stalled = () => this.inFlight !== null && Date.now() - this.progressAt >= stallMs;
          if (stalled()) resolve(false);
          else poll = setInterval(() => stalled() && resolve(false), Math.min(100, stallMs));
        }),
      ]);
    } finally {
      clearTimeout(timer);
      clearInterval(poll);
    }
  }

  /** Give up on unsent and in-flight records (shutdown when Kafka does not come back). */
  abandon(reason: string): void {
    this.abort.abort(new SourceError(reason));
  }

  protected push(topic: string, key: Buffer | null, value: Buffer | null, tx: TrackedTx | null, counter: Counter.Internal | null): Batch {
    const size = (key?.length ?? 0) + (value?.length ?? 0) + topic.length + RECORD_OVERHEAD;
    tx?.add(1, size); // first: it throws for a transaction from before a tracker reset
    if (this.guard !== null && tx !== null && key !== null) this.guard.touch(topic, key);
    let batch = this.open;
    if (!batch || batch.bytes + size > this.maxBatchBytes || batch.messages.length >= this.maxBatchRecords) {
      batch = { messages: [], bytes: 0, runs: [] };
      this.queue.push(batch);
      this.open = batch;
    }
    batch.messages.push({ topic, key, value });
    batch.bytes += size;
    const runs = batch.runs;
    const last = runs.length > 0 ? runs[runs.length - 1] : undefined;
    if (last && last.tx === tx && last.counter === counter) {
      last.records++;
      last.bytes += size;
    } else {
      runs.push({ tx, records: 1, bytes: size, counter });
    }
    this.records++;
    this.bytes += size;
    if (!this.sending && !this.scheduled) {
      // Send on the next turn: what the current burst of work queues goes in one request.
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        void this.sendLoop();
      });
    }
    return batch;
  }

  private async sendLoop(): Promise<void> {
    if (this.sending || this.failure) return;
    this.sending = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.shift()!;
        if (batch === this.open) this.open = null;
        this.inFlight = batch;
        this.progressAt = Date.now();
        try {
          await this.producer.sendBatch(batch.messages, { signal: this.abort.signal, resend: this.resender(batch) });
        } catch (err) {
          this.fail(err, batch);
          return;
        }
        this.inFlight = null;
        this.acked(batch);
      }
    } finally {
      this.sending = false;
    }
  }

  /** For a batch with truncate copies: the same batch with its copies at a later delivery. */
  private resender(batch: Batch): (() => OutMessage[]) | undefined {
    const { fanouts } = batch;
    const redeliver = this.redeliver;
    if (!fanouts || !redeliver) return undefined;
    return () => {
      const delivery = redeliver();
      const messages = batch.messages.slice();
      for (const i of fanouts) messages[i] = { ...messages[i], key: redelivered(messages[i].key!, delivery) };
      this.log.warn({ truncateCopies: fanouts.length, delivery }, 'a batch with truncate copies is sent again: its copies go as a later delivery');
      return messages;
    };
  }

  private acked(batch: Batch): void {
    this.progressAt = Date.now();
    for (const run of batch.runs) {
      if (run.tx) this.tracker.ack(run.tx, run.records, run.bytes);
      run.counter?.inc(run.records);
    }
    this.records -= batch.messages.length;
    this.bytes -= batch.bytes;
    this.acknowledged += batch.messages.length;
    batch.done?.resolve();
    if (this.writers.length > 0 && this.writable) {
      const ws = this.writers;
      this.writers = [];
      for (const w of ws) w.resolve();
    }
  }

  private fail(err: unknown, batch: Batch): void {
    const failure =
      err instanceof ShardBridgeError
        ? err
        : new SourceError(`sending to Kafka failed: ${(err as Error)?.message ?? String(err)}`, {
            cause: err,
            context: { topics: [...new Set(batch.messages.map((m) => m.topic))].slice(0, 5).join(',') },
          });
    this.failure = failure;
    this.inFlight = null;
    for (const b of [batch, ...this.queue]) {
      for (const run of b.runs) if (run.tx) this.tracker.fail(run.tx, failure);
      b.done?.reject(failure);
    }
    this.queue.length = 0;
    this.open = null;
    for (const w of this.writers) w.reject(failure);
    this.writers = [];
    // Given up by the shutdown (abandon): said once by the stop, not as a failure.
    if (this.abort.signal.aborted) this.log.debug({ err: failure }, 'Kafka send given up at shutdown');
    else this.log.error({ err: failure }, 'Kafka send failed: no position past it will be confirmed');
    for (const l of this.failureListeners) l(failure);
  }

  protected counter(table: string, op: string): Counter.Internal | null {
    if (!this.published) return null;
    let byOp = this.counters.get(table);
    if (!byOp) this.counters.set(table, (byOp = new Map()));
    let c = byOp.get(op);
    if (!c) byOp.set(op, (c = this.published.labels(table, op)));
    return c;
  }
}
