/**
 * The sink connector runtime: wires the destination (pg pool, sink tables, Citus session
 * settings), the registry, the consumer group and the pure cores. Lifecycle only; a
 * fetched batch is handled by partition-batch.ts.
 *
 * Positions: on every group join the stored offsets of the assigned partitions are read
 * from the destination and each partition starts there (join-positions.ts); batches wait
 * for that read, and records below it are dropped (offsets.ts explains the per-transaction
 * lock).
 *
 * Topics: kafkajs resolves a subscription once, so the topic list under the prefix is
 * re-read every `topicRefreshMs` and the consumer restarted when a table topic appears.
 */
import pg from 'pg';
import type { Registry } from 'prom-client';
import { createKafka, kafkaRemedy, type Admin, type Consumer, type EachBatchPayload, type KafkaClient, type Producer } from '../shared/kafka/client.ts';
import type { Logger } from '../shared/logger.ts';
import { metricsPortError, serveMetrics, type MetricsServer } from '../shared/metrics.ts';
import { RegistryClient } from '../shared/registry/registry-client.ts';
import { atServer, RetriableError } from '../shared/errors.ts';
import { destinationRemedy } from './start-errors.ts';
import { pgEndpoint } from '../shared/config/common.ts';
import { withUserOptions } from '../shared/pg-types.ts';
import { retryUntilAborted } from '../shared/retry.ts';
import { withPooledClient } from './destination-errors.ts';
import { APPLY_CONCURRENCY, connectionConfig, type SinkConfig } from './config.ts';
import { completeSnapshots, controlTopicKind, isSinkTopic, snapshotStatuses } from './control.ts';
import type { RecordDecoder } from './decode.ts';
import { namedSourceTable, targetsFrom, type TargetFor } from './schema-compile.ts';
import { PositionTracker, tpKey } from './offsets.ts';
import { checkTables, openDestination, topicMappings, type UntilDone } from './destination-start.ts';
import { checkAndRecordMappings } from './applied-mappings.ts';
import { pastEndStalls, planStart, readCommitted, readStored, recordTopicIds, recreatedStalls } from './join-positions.ts';
import { checkTopicIds, vanishedMessage } from './topic-identity.ts';
import { ApplyLanes, type LaneWork } from './apply-lanes.ts';
import { describeError, isAbandon, type BatchProcessor, type ConsumerControl } from './partition-batch.ts';
import { createSinkMetrics, lagAtJoin, typeMismatchGauge, type SinkMetrics } from './sink-metrics.ts';
import { GroupCommits } from './group-commits.ts';
import { describeStall, type StallInfo, type Stalls } from './stall.ts';
import type { DeadLetterTarget } from './dead-letter.ts';
import { TableStates } from './table-state.ts';
import { UnseenTopics, unseenMessage, type NamedTopic } from './unseen-topics.ts';
import { wireProcessor, type ProcessorThresholds } from './processor-wiring.ts';
import { LockWatch } from './lock-watch.ts';

/** Tables named in the line of snapshots completing together. */
const SNAPSHOTS_NAMED = 10;

export interface SinkConnectorOptions extends ProcessorThresholds {
  /** Partitions applied at the same time, one destination connection each. Default 3. */
  concurrency?: number;
  /** How often the topic list is re-read for new table topics. Default 10 s. */
  topicRefreshMs?: number;
  /** How often snapshot completion is checked. Default 2 s. */
  controlPollMs?: number;
  /** Kafka group session timeout: how soon a dead member's partitions move. Default 10 s. */
  sessionTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  /** Port for /metrics and /healthz; default config.metricsPort; null: not served. */
  metricsPort?: number | null;
  /** Aborting stops the connector, also while it is still starting (start-up retries until its servers answer). */
  signal?: AbortSignal;
}

export interface SinkConnector {
  /** Graceful: finish or abandon the current batches (nothing half-applied), leave the group, close everything. */
  stop(): Promise<void>;
  /** Resolves after stop(); rejects when the connector dies of a fatal error. */
  done: Promise<void>;
  metrics: Registry;
  metricsPort: number | null;
}

export async function startSinkConnector(config: SinkConfig, logger: Logger, opts: SinkConnectorOptions = {}): Promise<SinkConnector> {
  const runtime = new SinkRuntime(config, logger.child({ component: 'sink', connector: config.name }), opts);
  opts.signal?.throwIfAborted();
  opts.signal?.addEventListener('abort', () => void runtime.stop(), { once: true });
  try {
    await runtime.start();
  } catch (err) {
    await runtime.stop().catch(() => {});
    throw err;
  }
  return { stop: () => runtime.stop(), done: runtime.done, metrics: runtime.m.metrics.registry, metricsPort: runtime.metricsPort };
}

class SinkRuntime {
  readonly m: SinkMetrics;
  metricsPort: number | null = null;
  readonly done: Promise<void>;
  private resolveDone!: () => void;
  private failure?: { err: unknown };
  private rejectDone!: (err: unknown) => void;
  private readonly abort = new AbortController();
  private stopping?: Promise<void>;
  private groupCommits?: GroupCommits;

  private readonly targetFor: TargetFor;
  private readonly deadLetterTopic: string;
  private readonly tracker = new PositionTracker();
  private server?: MetricsServer;
  private pool?: pg.Pool;
  private kafka?: KafkaClient;
  private admin?: Admin;
  private producer?: Producer;
  private consumer?: Consumer;
  private consumerAbort = new AbortController();
  private consumerChain: Promise<void> = Promise.resolve();
  private topics = new Set<string>();
  private positions: Promise<void> = Promise.resolve();
  private generation = 0;
  private states?: TableStates;
  private stalls?: Stalls;
  private processor?: BatchProcessor;
  private decoder?: RecordDecoder;
  private timers: NodeJS.Timeout[] = [];
  private readonly concurrency: number;
  private readonly lanes: ApplyLanes;
  private lockWatch: LockWatch | null = null;

  constructor(
    private readonly config: SinkConfig,
    private readonly log: Logger,
    private readonly opts: SinkConnectorOptions,
  ) {
    this.concurrency = Math.max(1, opts.concurrency ?? APPLY_CONCURRENCY);
    this.m = createSinkMetrics(config.name);
    this.lanes = new ApplyLanes(this.concurrency, (applying, waiting) => {
      this.m.laneBatches.set({ state: 'applying' }, applying);
      this.m.laneBatches.set({ state: 'waiting' }, waiting);
    });
    this.done = new Promise<void>((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    this.done.catch(() => {}); // the caller may never await it
    this.targetFor = targetsFrom(config.tables);
    this.deadLetterTopic = config.deadLetter.topic ?? `${config.topicPrefix}.__dlq`;
  }

  /** Settles once start() has; stop() waits for it so that nothing start() opens is left open. */
  private starting?: Promise<void>;

  start(): Promise<void> {
    this.starting ??= this.open();
    return this.starting;
  }

  private async open(): Promise<void> {
    const { config, log } = this;
    const port = this.opts.metricsPort === undefined ? config.metricsPort : this.opts.metricsPort;
    if (port !== null) {
      this.server = await serveMetrics(this.m.metrics.registry, port, '0.0.0.0', { health: () => !this.abort.signal.aborted }).catch((err: unknown) => {
        throw metricsPortError(port, err, 'sink');
      });
      this.metricsPort = this.server.port;
    }
    const destination = `the destination PostgreSQL at ${pgEndpoint(config.destination)}`;
    const { citus, pool } = await this.step(openDestination(config, this.concurrency + 2, log, this.untilDone), `cannot use ${destination}`, destinationRemedy);
    this.pool = pool;

    this.kafka = createKafka(
      { brokers: config.kafka.brokers, clientId: config.kafka.clientId ?? `shardbridge-sink-${config.name}`, ssl: config.kafka.ssl, sasl: config.kafka.sasl },
      log,
    );
    this.admin = this.kafka.admin();
    const kafka = `Kafka at ${config.kafka.brokers.join(',')}`;
    let topics = await this.step(this.untilDone(`list topics on ${kafka}`, () => this.listSinkTopics()), `cannot use ${kafka}`, kafkaRemedy);
    // The cluster the stored positions are read against (applied-mappings.ts); unknown: not compared.
    const kafkaCluster = await this.admin.describeCluster().then((c) => c.clusterId ?? null, () => null);
    this.states = new TableStates({ citus, requireDistributed: config.citus.requireDistributed, logger: log, onTypeMismatches: typeMismatchGauge(this.m.typeMismatches) });
    const registry = new RegistryClient({ url: config.schemaRegistry.url, username: config.schemaRegistry.username, password: config.schemaRegistry.password, logger: log });
    const sourceOfTopic = async (topic: string) => {
      const latest = await registry.latestSchema(`${topic}-value`);
      return latest && namedSourceTable(latest.schema);
    };
    await this.step(
      checkTables({ config, pool, states: this.states, targetFor: this.targetFor, citus, log, untilDone: this.untilDone, sourceOfTopic, kafkaCluster }, topics),
      `cannot use ${destination}`,
      destinationRemedy,
    );

    let deadLetter: DeadLetterTarget | null = null;
    if (config.deadLetter.enabled) {
      const admin = this.admin;
      this.producer = this.kafka.producer();
      const producer = this.producer;
      await this.step(
        (async () => {
          const brokers = (await admin.describeCluster()).brokers.length;
          await admin.ensureTopics([{ topic: this.deadLetterTopic, partitions: 1, replicationFactor: Math.min(3, Math.max(1, brokers)) }]);
          await producer.connect();
        })(),
        `cannot use ${kafka} for the dead-letter topic ${this.deadLetterTopic}`,
        kafkaRemedy,
      );
      deadLetter = { topic: this.deadLetterTopic, send: async (messages) => void (await producer.sendBatch(messages)) };
    }
    const states = this.states;
    if (config.batch.lockWaitWarnMs > 0) {
      // Its own session: the lanes' are the ones waiting. Opened at the first batch in its transaction for long.
      const conn = connectionConfig(config.destination, { application_name: `shardbridge-sink-${config.name}-lockwatch` });
      this.lockWatch = new LockWatch({
        warnMs: config.batch.lockWaitWarnMs,
        lanes: this.concurrency,
        logger: log,
        gauge: this.m.lockWaiting,
        client: () => new pg.Client({ ...conn, connectionTimeoutMillis: 5_000, options: withUserOptions(conn.options, '-c statement_timeout=5000') }),
      });
    }
    ({ decoder: this.decoder, stalls: this.stalls, processor: this.processor } = wireProcessor({
      config,
      thresholds: this.opts,
      pool,
      citus,
      states,
      registry,
      targetFor: this.targetFor,
      tracker: this.tracker,
      metrics: this.m,
      deadLetter,
      logger: log,
      lockWatch: this.lockWatch,
      offsetRange: async (topic, partition) => {
        const r = (await this.admin!.offsetRanges(topic)).find((x) => x.partition === partition);
        if (!r) throw new RetriableError(`Kafka reports no offsets for ${topic}[${partition}]`, { context: { topic, partition } });
        return { start: BigInt(r.start), end: BigInt(r.end) };
      },
      onStallRetry: (topic, partition) => {
        states.invalidate();
        try {
          this.consumer?.resume([{ topic, partitions: [partition] }]);
        } catch (err) {
          log.debug({ err, topic, partition }, 'resume after stall failed (consumer restarting)');
        }
      },
    }));

    if (topics.length === 0) log.warn({ prefix: config.topicPrefix }, 'no topics under the prefix yet: waiting for the source connector to create them');
    else await this.restartConsumer(topics);
    const refreshMs = this.opts.topicRefreshMs ?? 10_000;
    const unseen = new UnseenTopics(config.topicPrefix);
    this.every(refreshMs, async () => {
      const named = await withPooledClient(pool, (client) => snapshotStatuses(client)).catch(() => null);
      topics = await this.listSinkTopics();
      if (named) this.reportUnseen(unseen, named, topics);
      if (topics.some((t) => !this.topics.has(t))) {
        const added = topics.filter((t) => !this.topics.has(t));
        log.info({ topics: added }, 'new topics under the prefix: re-subscribing');
        // Recorded now, so that a mapping changed before the next start is compared with this one.
        const named = await Promise.all(added.map(async (topic) => ({ ...(await sourceOfTopic(topic).catch(() => null)), topic })));
        const sources = named.flatMap((n) => (n.schema === undefined || n.table === undefined ? [] : [{ schema: n.schema, table: n.table, topic: n.topic }]));
        await withPooledClient(pool, (client) => checkAndRecordMappings(client, config.groupId, topicMappings(config, added, sources, this.targetFor), log, { atStart: false, kafkaCluster })).catch(
          (err: unknown) => log.warn({ err }, 'could not record the table mappings of the new topics'),
        );
        await this.restartConsumer(topics);
      }
    });
    this.every(this.opts.controlPollMs ?? 2_000, () => this.checkSnapshots());
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.abort.abort(new Error('sink stopping'));
      // Its steps end at the abort (untilDone rejects at once); what it opened is then closed below.
      await this.starting?.catch(() => {});
      for (const t of this.timers) clearInterval(t);
      this.stalls?.stop();
      this.consumerAbort.abort(new Error('sink stopping'));
      await this.consumerChain.catch(() => {});
      await this.groupCommits?.flush();
      await this.consumer?.disconnect().catch((err: unknown) => this.log.warn({ err }, 'consumer disconnect failed'));
      await this.lanes.drain();
      await this.lockWatch?.stop();
      await this.producer?.disconnect().catch(() => {});
      await this.admin?.disconnect().catch(() => {});
      await this.pool?.end().catch(() => {});
      await this.server?.close().catch(() => {});
      this.log.info('sink stopped');
      if (this.failure !== undefined) this.rejectDone(this.failure.err);
      else this.resolveDone();
    })();
    return this.stopping;
  }

  /** A start-up step whose failure names its server (not when it failed because the sink is stopping). */
  private step<T>(p: Promise<T>, what: string, remedy: (err: unknown) => string): Promise<T> {
    return p.catch((err: unknown) => {
      throw this.abort.signal.aborted ? err : atServer(err, what, remedy(err));
    });
  }

  private fail(err: unknown): void {
    this.log.error({ err }, `sink connector failed: ${describeError(err)}`);
    // Kept for stop(), which settles `done`: resolved there, it would end the process with 0.
    this.failure ??= { err };
    void this.stop();
  }

  /** Retry a step while its failures are transient, until stop(); stop() rejects it at once. */
  private readonly untilDone: UntilDone = (what, fn) =>
    retryUntilAborted(fn, { what, retries: Infinity, initialMs: 500, maxMs: 10_000, signal: this.abort.signal, logger: this.log });

  private every(ms: number, fn: () => Promise<void>): void {
    let running = false;
    const t = setInterval(() => {
      if (running || this.abort.signal.aborted) return;
      running = true;
      fn()
        .catch((err: unknown) => this.log.debug({ err }, 'periodic task failed'))
        .finally(() => (running = false));
    }, ms);
    t.unref();
    this.timers.push(t);
  }

  private async listSinkTopics(): Promise<string[]> {
    const all = await this.admin!.listTopics();
    return all.filter((t) => isSinkTopic(t, this.config.topicPrefix, this.deadLetterTopic)).sort();
  }

  /**
   * While the consumer joins its group: compile the topics' latest schemas (decode.ts, warm) and
   * open the lanes' destination connections, so that the first batches wait for neither.
   */
  private warmUp(topics: string[]): void {
    const tables = topics.filter((t) => !this.topics.has(t) && !controlTopicKind(t, this.config.topicPrefix));
    this.decoder!.warm(tables).then(
      (ready) => this.log.debug({ topics: ready }, 'schemas compiled ahead of the first records'),
      (err: unknown) => this.log.debug({ err }, 'schema warm-up failed: schemas are fetched with the first records'),
    );
    const pool = this.pool!;
    const open = Math.max(0, this.concurrency - pool.totalCount);
    for (let i = 0; i < open; i++) {
      pool.connect().then(
        (client) => client.release(),
        (err: unknown) => this.log.debug({ err: (err as Error).message }, 'destination connection not opened ahead (the first batch opens it)'),
      );
    }
  }

  /** Replace the consumer with one subscribed to `topics` (serialised; the old one finishes its batches first). */
  private restartConsumer(topics: string[]): Promise<void> {
    this.warmUp(topics);
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
    const consumer = this.kafka!.consumer({
      groupId: config.groupId,
      sessionTimeoutMs: this.opts.sessionTimeoutMs ?? 10_000,
      heartbeatIntervalMs: this.opts.heartbeatIntervalMs ?? 3_000,
      maxWaitTimeMs: Math.max(10, config.batch.maxWaitMs),
      idleMaxWaitTimeMs: Math.max(10, config.consumer.idleMaxWaitMs),
      // With the apply lanes' bound these bound the records the sink holds (config.ts, apply-lanes.ts).
      maxBytesPerPartition: config.consumer.maxBytesPerPartition,
      maxBytes: config.consumer.maxBytes,
      minBytes: config.consumer.minBytes,
    });
    const commits = new GroupCommits((offsets) =>
      consumer.commitOffsets(offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: o.next.toString() }))).catch((err: unknown) =>
        this.log.debug({ err: (err as Error).message, partitions: offsets.length }, 'group offset commit failed (monitoring only)'),
      ),
    );
    this.consumer = consumer;
    this.groupCommits = commits;
    this.topics = new Set(topics);
    consumer.onGroupJoin((assignment) => this.onJoin(consumer, assignment));
    consumer.onFetch(({ partitionsWithRecords }) => this.m.fetches.inc({ result: partitionsWithRecords > 0 ? 'records' : 'empty' }));
    consumer.onCrash(({ error, restart }) => {
      if (restart) this.log.warn({ err: error }, 'consumer crashed; kafkajs restarts it');
      else if (this.consumer === consumer && !signal.aborted) this.fail(error);
    });
    const control: ConsumerControl = {
      seek: (topic, partition, offset) => {
        this.lanes.invalidate(tpKey(topic, partition));
        consumer.seek({ topic, partition, offset: offset.toString() });
      },
      pause: (topic, partition) => consumer.pause([{ topic, partitions: [partition] }]),
      commit: (topic, partition, next) => commits.offer(topic, partition, next),
      signal,
    };
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
      await this.processor!.handle(payload, control, lane);
    } catch (err) {
      if (isAbandon(err) || control.signal.aborted || !lane.current()) return;
      // Anything unexpected stalls this partition at its position instead of killing the consumer.
      const offset = this.tracker.get(topic, partition) ?? BigInt(payload.batch.firstOffset() ?? '0');
      control.seek(topic, partition, offset);
      control.pause(topic, partition);
      this.stalls!.report(describeStall(err, { topic, partition, offset: offset.toString() }, 'apply'));
    }
  }

  /** Read the stored positions of the new assignment and seek where needed (join-positions.ts); batches wait for it. */
  private onJoin(consumer: Consumer, assignment: Record<string, number[]>): void {
    const gen = ++this.generation;
    this.lanes.invalidateAll();
    const tps = Object.entries(assignment).flatMap(([topic, parts]) => parts.map((partition) => ({ topic, partition })));
    this.log.info({ partitions: tps.length, generation: gen }, 'group joined: reading stored positions');
    const { groupId } = this.config;
    const committed = readCommitted(this.admin!, groupId, tps, this.log);
    // Batches handed over before the rebalance end first, so the stored positions read are theirs.
    const stored = this.lanes.drain().then(() => this.untilDone('read stored positions', () => readStored(this.pool!, groupId, tps)));
    const ids = this.admin!.topicIds([...new Set(tps.map((t) => t.topic))]).catch((err: unknown) => {
      this.log.warn({ err: (err as Error).message }, 'topic ids not read: a topic deleted and created again under the stored offsets is not noticed at this join');
      return null;
    });
    this.positions = Promise.all([stored, committed, ids]).then(async ([{ stored, rows, stalled }, committed, ids]) => {
      if (gen !== this.generation || this.consumer !== consumer) return;
      const check = checkTopicIds(tps, rows, ids);
      await this.untilDone('record topic ids', () => recordTopicIds(this.pool!, groupId, check.record, this.log));
      const recreated = await recreatedStalls(this.admin!, this.pool!, groupId, check.recreated);
      for (const v of check.vanished) {
        const { msg, remedy } = vanishedMessage(v);
        this.log.error({ topic: v.topic, partitions: v.partitions, stored: v.stored.map((s) => ({ partition: s.partition, offset: String(s.offset) })), remedy }, `${msg} — remedy: ${remedy}`);
      }
      if (gen !== this.generation || this.consumer !== consumer) return;
      const { positions, seeks, overridden } = planStart(tps, stored, committed);
      if (overridden.length > 0) {
        this.log.info(
          { partitions: overridden.length, first: overridden.slice(0, 10).map((o) => ({ topic: o.topic, partition: o.partition, groupOffset: o.group.toString(), storedOffset: o.stored.toString() })) },
          "the consumer group's committed offsets differ from the offsets stored in the destination: the sink resumes from the stored ones " +
            '(offsets set with kafka-consumer-groups --reset-offsets are not used; shardbridge replay moves both, with the sink stopped)',
        );
      }
      for (const { topic, partition, offset } of seeks) {
        try {
          consumer.seek({ topic, partition, offset: offset.toString() });
        } catch (err) {
          this.log.debug({ err, topic, partition }, 'seek failed (consumer stopping)');
        }
      }
      this.tracker.reset(positions, [...pastEndStalls(stalled), ...recreated.map((r) => [tpKey(r.topic, r.partition), { stored: BigInt(r.offset), info: r }] as [string, { stored: bigint; info: StallInfo }])]);
      this.stalls!.retain(new Set(positions.map(([k]) => k)), stalled);
      // Stalled at once, records or not: the partition may be idle at the stored offset.
      for (const info of recreated) {
        try {
          consumer.pause([{ topic: info.topic, partitions: [info.partition] }]);
        } catch (err) {
          this.log.debug({ err }, 'pause failed (consumer stopping)');
        }
        this.stalls!.report(info);
      }
      // kafkajs keeps a partition paused across rebalances: one this member stalled, lost and
      // got back (its stall and retry timer dropped above) would never be fetched again.
      const resume = tps.filter(({ topic, partition }) => !this.stalls!.stalledHere(topic, partition));
      try {
        consumer.resume(resume.map(({ topic, partition }) => ({ topic, partitions: [partition] })));
      } catch (err) {
        this.log.debug({ err }, 'resume after the join failed (consumer stopping)');
      }
      this.m.lag.reset();
      void lagAtJoin({ lag: this.m.lag, tracker: this.tracker, admin: this.admin!, log: this.log }, tps, () => gen === this.generation);
    });
    this.positions.catch((err: unknown) => {
      if (!this.abort.signal.aborted) this.log.error({ err }, 'cannot read stored positions');
    });
  }

  private reportUnseen(unseen: UnseenTopics, named: readonly NamedTopic[], listed: readonly string[]): void {
    const { fresh, unseen: count } = unseen.look(named, new Set(listed));
    this.m.topicsUnseen.set(count);
    if (fresh.length === 0) return;
    const { msg, remedy } = unseenMessage(fresh);
    this.log.error({ topics: fresh.map((n) => n.topic), remedy }, `${msg} — remedy: ${remedy}`);
  }

  private checkSnapshots(): Promise<void> {
    return withPooledClient(this.pool!, async (client) => {
      const done = await completeSnapshots(client, this.config.groupId);
      // Thousands of small tables complete within seconds: a line per check at info, each table at debug.
      const each = done.length === 1 ? 'info' : 'debug';
      for (const d of done) this.log[each]({ topic: d.topic, table: d.table }, 'snapshot complete in the destination: applied up to the completion marker');
      if (done.length > 1) {
        const tables = done.map((d) => d.table);
        this.log.info(
          { count: done.length, tables: tables.length <= SNAPSHOTS_NAMED ? tables : [...tables.slice(0, SNAPSHOTS_NAMED), '…'] },
          `snapshots of ${done.length} tables complete in the destination: applied up to their completion markers`,
        );
      }
      for (const s of await snapshotStatuses(client)) this.m.snapshot.set({ topic: s.topic, table: s.table }, s.state === 'complete' ? 1 : 0);
    });
  }
}
