/**
 * The sink's reading: the group consumer it reads through, replaced by one subscribed to the
 * new topic list when a table topic appears (serialised: the old one finishes its batches
 * first); each fetched batch handed to its partition's lane (apply-lanes.ts), a failure
 * stalling the partition; every group join's stored positions read before batches go on
 * (group-join.ts). The connector (connector.ts) opens what it uses and stops it.
 */
import type pg from 'pg';
import type { Admin, Consumer, EachBatchPayload, KafkaClient } from '../shared/kafka/client.ts';
import { consumerCrashLine } from '../shared/kafka/kafka-log.ts';
import type { Logger } from '../shared/logger.ts';
import type { SinkConfig } from './config.ts';
import { controlTopicKind } from './control.ts';
import type { RecordDecoder } from './decode.ts';
import { tpKey, type PositionTracker } from './offsets.ts';
import type { UntilDone } from './destination-start.ts';
import { onGroupJoin } from './group-join.ts';
import type { ApplyLanes, LaneWork } from './apply-lanes.ts';
import { isAbandon, type BatchProcessor, type ConsumerControl } from './partition-batch.ts';
import type { SinkMetrics } from './sink-metrics.ts';
import type { GroupCommits } from './group-commits.ts';
import { groupConsumer } from './group-consumer.ts';
import { warmUp } from './warm-up.ts';
import { describeStall, type Stalls } from './stall.ts';

export interface ConsumerRunsDeps {
  config: SinkConfig;
  /** The group's timing (group-consumer.ts). */
  opts: { sessionTimeoutMs?: number; heartbeatIntervalMs?: number };
  log: Logger;
  kafka: KafkaClient;
  admin: Admin;
  pool: pg.Pool;
  lanes: ApplyLanes;
  tracker: PositionTracker;
  m: SinkMetrics;
  decoder: RecordDecoder;
  processor: BatchProcessor;
  stalls: Stalls;
  concurrency: number;
  untilDone: UntilDone;
  /** The connector's: aborted when it stops. */
  abort: AbortController;
  /** The connector dies of a consumer's crash. */
  fail(err: unknown): void;
}

export class ConsumerRuns {
  private readonly config: SinkConfig;
  private readonly opts: ConsumerRunsDeps['opts'];
  private readonly log: Logger;
  private readonly kafka: KafkaClient;
  private readonly admin: Admin;
  private readonly pool: pg.Pool;
  private readonly lanes: ApplyLanes;
  private readonly tracker: PositionTracker;
  private readonly m: SinkMetrics;
  private readonly decoder: RecordDecoder;
  private readonly processor: BatchProcessor;
  private readonly stalls: Stalls;
  private readonly concurrency: number;
  private readonly untilDone: UntilDone;
  private readonly abort: AbortController;
  private readonly fail: (err: unknown) => void;

  private groupCommits?: GroupCommits;
  private consumer?: Consumer;
  private consumerAbort = new AbortController();
  private consumerChain: Promise<void> = Promise.resolve();
  /** The topics the current consumer is subscribed to. */
  topics = new Set<string>();
  private positions: Promise<void> = Promise.resolve();
  private generation = 0;

  constructor(d: ConsumerRunsDeps) {
    this.config = d.config;
    this.opts = d.opts;
    this.log = d.log;
    this.kafka = d.kafka;
    this.admin = d.admin;
    this.pool = d.pool;
    this.lanes = d.lanes;
    this.tracker = d.tracker;
    this.m = d.m;
    this.decoder = d.decoder;
    this.processor = d.processor;
    this.stalls = d.stalls;
    this.concurrency = d.concurrency;
    this.untilDone = d.untilDone;
    this.abort = d.abort;
    this.fail = d.fail;
  }

  /** Ends the current consumer: its batches are finished or abandoned first, its group commits flushed. */
  async stop(): Promise<void> {
    this.consumerAbort.abort(new Error('sink stopping'));
    await this.consumerChain.catch(() => {});
    await this.groupCommits?.flush();
    await this.consumer?.disconnect().catch((err: unknown) => this.log.warn({ err }, 'consumer disconnect failed'));
  }

  /** A partition paused by a stall goes on (the consumer restarting: it throws). */
  resume(topic: string, partition: number): void {
    this.consumer?.resume([{ topic, partitions: [partition] }]);
  }

  /** Replace the consumer with one subscribed to `topics` (serialised; the old one finishes its batches first). */
  restartConsumer(topics: string[]): Promise<void> {
    // While the consumer joins: schemas compiled, connections opened (warm-up.ts).
    const tables = topics.filter((t) => !this.topics.has(t) && !controlTopicKind(t, this.config.topicPrefix));
    warmUp({ decoder: this.decoder, pool: this.pool, concurrency: this.concurrency, log: this.log }, tables);
    this.consumerChain = this.consumerChain.catch(() => {}).then(async () => {
      if (this.abort.signal.aborted) return;
      const old = this.consumer;
      this.consumerAbort.abort(new Error('consumer restarting'));
      await this.groupCommits?.flush();
      await old?.disconnect().catch((err: unknown) => this.log.warn({ err }, 'consumer disconnect failed'));
      this.consumerAbort = new AbortController();
      await this.runConsumer(topics, this.consumerAbort.signal);
    });
    return this.consumerChain;
  }

  private async runConsumer(topics: string[], signal: AbortSignal): Promise<void> {
    const { config } = this;
    const { consumer, commits, control } = groupConsumer(this.kafka, config, this.opts, this.lanes, this.log, signal);
    this.consumer = consumer;
    this.groupCommits = commits;
    this.topics = new Set(topics);
    consumer.onGroupJoin((assignment) => this.onJoin(consumer, assignment));
    consumer.onFetch(({ partitionsWithRecords }) => this.m.fetches.inc({ result: partitionsWithRecords > 0 ? 'records' : 'empty' }));
    consumer.onCrash((crash) => {
      const line = consumerCrashLine(crash, signal.aborted);
      if (line) this.log[line.level](line.fields, line.msg);
      else if (this.consumer === consumer && !signal.aborted) this.fail(crash.error);
    });
    await consumer.connect();
    await consumer.subscribe({ topics, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      // Handlers only hand batches over (and wait while a partition's lane is full): as many may
      // do so at once as the lanes take; the lanes bound how many apply.
      partitionsConsumedConcurrently: this.lanes.capacity,
      eachBatch: (payload) => this.eachBatch(payload, control),
    });
    this.log.info({ topics: topics.length, groupId: config.groupId }, 'consuming');
  }

  /**
   * Hand the batch to its partition's lane (apply-lanes.ts) and let the consumer fetch on from
   * after it; the lane applies it, or seeks back to where it stalled.
   */
  private async eachBatch(payload: EachBatchPayload, control: ConsumerControl): Promise<void> {
    const { topic, partition } = payload.batch;
    await this.positions;
    if (payload.isStale() || !payload.isRunning() || control.signal.aborted) return;
    const last = payload.batch.lastOffset();
    await this.lanes.handOver(tpKey(topic, partition), (lane) => this.applyBatch(payload, control, lane));
    if (!control.signal.aborted) payload.resolveOffset(last);
  }

  private async applyBatch(payload: EachBatchPayload, control: ConsumerControl, lane: LaneWork): Promise<void> {
    const { topic, partition } = payload.batch;
    try {
      await this.processor.handle(payload, control, lane);
    } catch (err) {
      if (isAbandon(err) || control.signal.aborted || !lane.current()) return;
      // Anything unexpected stalls this partition at its position instead of killing the consumer.
      const offset = this.tracker.get(topic, partition) ?? BigInt(payload.batch.firstOffset() ?? '0');
      control.seek(topic, partition, offset);
      control.pause(topic, partition);
      this.stalls.report(describeStall(err, { topic, partition, offset: offset.toString() }, 'apply'));
    }
  }

  /** Read the stored positions of the new assignment and seek where needed (group-join.ts); batches wait for it. */
  private onJoin(consumer: Consumer, assignment: Record<string, number[]>): void {
    const gen = ++this.generation;
    this.processor.assigned(assignment);
    this.positions = onGroupJoin(
      {
        groupId: this.config.groupId, consumer, admin: this.admin, pool: this.pool, lanes: this.lanes, tracker: this.tracker, stalls: this.stalls, metrics: this.m, log: this.log, untilDone: this.untilDone,
        generation: gen,
        latest: () => gen === this.generation,
        current: () => gen === this.generation && this.consumer === consumer,
      },
      assignment,
    );
    this.positions.catch((err: unknown) => {
      if (!this.abort.signal.aborted) this.log.error({ err }, 'cannot read stored positions');
    });
  }
}
