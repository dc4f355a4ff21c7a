/**
 * The sink connector runtime: wires the destination (pg pool, sink tables, Citus session
 * settings), the registry, the consumer group and the pure cores. Lifecycle only; the
 * consumer and the batches it fetches are consumer-runs.ts's, a fetched batch is handled by
 * partition-batch.ts.
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
import { createKafka, kafkaRemedy, type Admin, type KafkaClient, type Producer } from '../shared/kafka/client.ts';
import { BROKER_NEEDS, checkBrokerApis } from '../shared/kafka/broker-features.ts';
import type { Logger } from '../shared/logger.ts';
import { metricsPortError, serveMetrics, type MetricsServer } from '../shared/metrics.ts';
import { RegistryClient } from '../shared/registry/registry-client.ts';
import { atServer, RetriableError } from '../shared/errors.ts';
import { destinationRemedy } from './start-errors.ts';
import { pgEndpoint } from '../shared/config/postgres.ts';
import { withUserOptions } from '../shared/pg-types.ts';
import { abortable, retryUntilAborted } from '../shared/retry.ts';
import { APPLY_CONCURRENCY, connectionConfig, type SinkConfig } from './config.ts';
import { isSinkTopic } from './control.ts';
import { namedSourceTable, sourceColumnsOf, targetsFrom, type TargetFor } from './schema-compile.ts';
import { PositionTracker } from './offsets.ts';
import { checkTables, openDestination, warnSilentChanges, type UntilDone } from './destination-start.ts';
import { TopicRefresh } from './topic-refresh.ts';
import { checkSnapshots } from './snapshot-progress.ts';
import { ApplyLanes } from './apply-lanes.ts';
import { describeError } from './partition-batch.ts';
import { createSinkMetrics, typeMismatchGauge, type SinkMetrics } from './sink-metrics.ts';
import type { Stalls } from './stall.ts';
import type { DeadLetterTarget } from './dead-letter.ts';
import { openDeadLetterTopic } from './dead-letter-topic.ts';
import { TableStates } from './table-state.ts';
import { wireProcessor, type ProcessorThresholds } from './processor-wiring.ts';
import { ConsumerRuns } from './consumer-runs.ts';
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

  private readonly targetFor: TargetFor;
  private readonly deadLetterTopic: string;
  private readonly tracker = new PositionTracker();
  private server?: MetricsServer;
  private pool?: pg.Pool;
  private kafka?: KafkaClient;
  private admin?: Admin;
  private producer?: Producer;
  private consumers?: ConsumerRuns;
  private states?: TableStates;
  private stalls?: Stalls;
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
    const registry = new RegistryClient({ url: reg.url, username: reg.username, password: reg.password, passwordFile: reg.passwordFile, requestTimeoutMs: reg.requestTimeoutMs, logger: log });
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
    const { decoder, stalls, processor } = wireProcessor({
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
          this.consumers?.resume(topic, partition);
        } catch (err) {
          log.debug({ err, topic, partition }, 'resume after stall failed (consumer restarting)');
        }
      },
    });
    this.stalls = stalls;
    const consumers = new ConsumerRuns({
      config, opts: this.opts, log, kafka: this.kafka, admin: this.admin, pool, lanes: this.lanes, tracker: this.tracker, m: this.m,
      decoder, processor, stalls, concurrency: this.concurrency, untilDone: this.untilDone, abort: this.abort,
      fail: (err) => this.fail(err),
    });
    this.consumers = consumers;

    if (topics.length === 0) log.warn({ prefix: config.topicPrefix }, 'no topics under the prefix yet: waiting for the source connector to create them');
    else await consumers.restartConsumer(topics);
    const refreshMs = this.opts.topicRefreshMs ?? 10_000;
    const refresh = new TopicRefresh({
      config, pool, log, targetFor: this.targetFor, kafkaCluster, topicsUnseen: this.m.topicsUnseen, sourceOfTopic,
      list: () => this.listSinkTopics(),
      subscribed: () => consumers.topics,
      restartConsumer: (topics) => consumers.restartConsumer(topics),
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
      await this.consumers?.stop();
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
}
