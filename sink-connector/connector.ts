/**
 * The sink connector runtime: wires the destination (pg pool, sink tables, Citus session
 * settings), the registry, the consumer group and the pure cores. Lifecycle only; a
 * fetched batch is handled by partition-batch.ts.
 *
 * Positions: on every group join the stored offsets of the assigned partitions are read
 * from the destination and each partition starts there (group-join.ts); batches wait for
 * that read, and records below it are dropped (offsets.ts explains the per-transaction lock).
 *
 * Topics: kafkajs resolves a subscription once, so the topic list under the prefix is
 * re-read every `topicRefreshMs` and the consumer restarted when a table topic appears
 * (topic-refresh.ts). Snapshots completing: snapshot-progress.ts.
 */
import pg from 'pg';
import type { Registry } from 'prom-client';
import { createKafka, kafkaRemedy, type Admin, type Consumer, type EachBatchPayload, type KafkaClient, type Producer } from '../shared/kafka/client.ts';
import { BROKER_NEEDS, checkBrokerApis } from '../shared/kafka/broker-features.ts';
import { consumerCrashLine } from '../shared/kafka/kafka-log.ts';
import type { Logger } from '../shared/logger.ts';
import { metricsPortError, serveMetrics, type MetricsServer } from '../shared/metrics.ts';
import { RegistryClient } from '../shared/registry/registry-client.ts';
import { atServer, RetriableError } from '../shared/errors.ts';
import { destinationRemedy } from './start-errors.ts';
import { pgEndpoint } from '../shared/config/common.ts';
import { withUserOptions } from '../shared/pg-types.ts';
import { abortable, retryUntilAborted } from '../shared/retry.ts';
import { APPLY_CONCURRENCY, connectionConfig, type SinkConfig } from './config.ts';
import { controlTopicKind, isSinkTopic } from './control.ts';
import type { RecordDecoder } from './decode.ts';
import { namedSourceTable, sourceColumnsOf, targetsFrom, type TargetFor } from './schema-compile.ts';
import { PositionTracker, tpKey } from './offsets.ts';
import { checkTables, openDestination, warnSilentChanges, type UntilDone } from './destination-start.ts';
import { onGroupJoin } from './group-join.ts';
import { TopicRefresh } from './topic-refresh.ts';
import { checkSnapshots } from './snapshot-progress.ts';
import { ApplyLanes, type LaneWork } from './apply-lanes.ts';
import { describeError, isAbandon, type BatchProcessor, type ConsumerControl } from './partition-batch.ts';
import { createSinkMetrics, typeMismatchGauge, type SinkMetrics } from './sink-metrics.ts';
import type { GroupCommits } from './group-commits.ts';
import { groupConsumer } from './group-consumer.ts';
import { warmUp } from './warm-up.ts';
import { describeStall, type Stalls } from './stall.ts';
import type { DeadLetterTarget } from './dead-letter.ts';
import { openDeadLetterTopic } from './dead-letter-topic.ts';
import { TableStates } from './table-state.ts';
import { wireProcessor, type ProcessorThresholds } from './processor-wiring.ts';
import { LockWatch } from './lock-watch.ts';

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
    const topics = await this.step(this.untilDone(`list topics on ${kafka}`, () => this.listSinkTopics()), `cannot use ${kafka}`, kafkaRemedy);
    // A broker too old for a feature (topic ids) would let it go quiet: stop here, naming it.
    await this.step(this.untilDone(`read the API versions of ${kafka}`, () => checkBrokerApis(this.admin!, config.kafka.brokers.join(','), BROKER_NEEDS.sink)), `cannot use ${kafka}`, kafkaRemedy);
    // The cluster the stored positions are read against (applied-mappings.ts); unknown: not compared.
    const kafkaCluster = await this.admin.describeCluster().then((c) => c.clusterId ?? null, () => null);
    const reg = config.schemaRegistry;
    const registry = new RegistryClient({ url: reg.url, username: reg.username, password: reg.password, requestTimeoutMs: reg.requestTimeoutMs, logger: log });
    // Ended by stop(): a registry that does not answer held the start (and SIGTERM) for minutes.
    const latestValueSchema = (topic: string) => abortable(registry.latestSchema(`${topic}-value`), this.abort.signal);
    // Tells a column the source dropped in a later version (source-drops.ts): asked only when a version meets missing columns.
    const latestVersion = async (topic: string) => {
      const latest = await latestValueSchema(topic);
      const read = latest && sourceColumnsOf(latest.schema);
      return read ? { schemaId: latest.id, source: read.source, sourceColumns: read.columns } : null;
    };
    this.states = new TableStates({
      citus,
      requireDistributed: config.citus.requireDistributed,
      replicaRole: config.sessionReplicationRole === 'replica',
      logger: log,
      onTypeMismatches: typeMismatchGauge(this.m.typeMismatches),
      latestVersion,
    });
    const sourceOfTopic = async (topic: string) => {
      const latest = await latestValueSchema(topic);
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
        openDeadLetterTopic(admin, producer, { topic: this.deadLetterTopic, reads: topics, log }),
        `cannot use ${kafka} for the dead-letter topic ${this.deadLetterTopic}`,
        kafkaRemedy,
      );
      deadLetter = { topic: this.deadLetterTopic, connector: config.name, groupId: config.groupId, send: async (messages) => void (await producer.sendBatch(messages)) };
    }
    const states = this.states;
    if (config.batch.lockWaitWarnMs > 0) {
      // Its own session: the lanes' are the ones waiting. Opened at the first batch in its transaction for long.
      const conn = connectionConfig(config.destination, { section: 'destination', application_name: `shardbridge-sink-${config.name}-lockwatch` });
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
      endOffsets: (topic) => this.admin!.offsetRanges(topic),
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
    const refresh = new TopicRefresh({
      config, pool, log, targetFor: this.targetFor, kafkaCluster, topicsUnseen: this.m.topicsUnseen, sourceOfTopic,
      list: () => this.listSinkTopics(),
      subscribed: () => this.topics,
      restartConsumer: (topics) => this.restartConsumer(topics),
      warnSilentChanges: (tables) => warnSilentChanges({ config, pool, citus, log }, tables),
    });
    this.every(refreshMs, () => refresh.refresh());
    this.every(this.opts.controlPollMs ?? 2_000, () => checkSnapshots(this.pool!, config.groupId, log, this.m.snapshot));
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
      // What a stop left under way (kafkajs's retries of a Kafka gone, a step the abort stopped waiting for) ends here.
      this.kafka?.close();
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
  private readonly untilDone: UntilDone = (what, fn) => {
    // Counted in steps_retrying from its first failure until it settles: the metric of a server that is down.
    let counted = false;
    const onRetry = () => {
      if (!counted) this.m.stepsRetrying.inc();
      counted = true;
    };
    return retryUntilAborted(fn, { what, retries: Infinity, initialMs: 500, maxMs: 10_000, signal: this.abort.signal, logger: this.log, onRetry }).finally(() => {
      if (counted) this.m.stepsRetrying.dec();
    });
  };

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

  /** Replace the consumer with one subscribed to `topics` (serialised; the old one finishes its batches first). */
  private restartConsumer(topics: string[]): Promise<void> {
    // While the consumer joins: schemas compiled, connections opened (warm-up.ts).
    const tables = topics.filter((t) => !this.topics.has(t) && !controlTopicKind(t, this.config.topicPrefix));
    warmUp({ decoder: this.decoder!, pool: this.pool!, concurrency: this.concurrency, log: this.log }, tables);
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
    const { consumer, commits, control } = groupConsumer(this.kafka!, config, this.opts, this.lanes, this.log, signal);
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

  /** Read the stored positions of the new assignment and seek where needed (group-join.ts); batches wait for it. */
  private onJoin(consumer: Consumer, assignment: Record<string, number[]>): void {
    const gen = ++this.generation;
    this.processor?.assigned(assignment);
    this.positions = onGroupJoin(
      {
        groupId: this.config.groupId, consumer, admin: this.admin!, pool: this.pool!, lanes: this.lanes, tracker: this.tracker, stalls: this.stalls!, metrics: this.m, log: this.log, untilDone: this.untilDone,
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
