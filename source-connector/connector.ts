/**
 * The source connector's orchestration. Start-up (once): connect, run the start-up checks
 * (any FAIL stops here, nothing created). Then sessions, retried with backoff on retriable
 * failures (lost connections to PostgreSQL, Kafka or the registry): topics, schemas,
 * publication, then the slot decision (slot-decision.ts: create, keep or drop the slot, the
 * snapshots that go first), then the stream from the slot.
 * `initial_only` copies from a temporary slot and stops.
 */
import { packageVersion } from '../shared/version.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { redactUrl, type Logger } from '../shared/logger.ts';
import { createMetrics, metricsPortError, serveMetrics, type Metrics, type MetricsServer } from '../shared/metrics.ts';
import { createKafka, type Admin, type KafkaClient, type KafkaSettings, type Producer } from '../shared/kafka/client.ts';
import { RegistryClient } from '../shared/registry/registry-client.ts';
import { SourceError, isRetriable } from '../shared/errors.ts';
import { abortable, backoffDelay, errorSummary } from '../shared/retry.ts';
import type { TableInfo } from '../shared/pg-types.ts';
import type { SourceConfig } from './config.ts';
import { controlTopicNames, readControlTopic, reduceSnapshotTopic, type SnapshotState } from './control-topics.ts';
import { LsnTracker, type TrackedTx } from './lsn-tracker.ts';
import { SlotMonitor } from './monitor.ts';
import { attachedByRoot, readPartitions } from './partitions.ts';
import { formatLsn } from './pgoutput-decoder.ts';
import { Publisher } from './publisher.ts';
import { batchBytesFor, type RecordLimits } from './record-limits.ts';
import { setUpKafka } from './kafka-setup.ts';
import { publicationGaps } from './publication.ts';
import type { SkipPoints } from './skip-points.ts';
import { decideSlot, snapshotOnly } from './slot-decision.ts';
import { snapshotVersions } from './snapshot.ts';
import { SessionRestart, parseSignal, requestedMarkers } from './resnapshot-signal.ts';
import type { SnapshotRunContext } from './snapshot-run.ts';
import { openSourceWhenReachable, type SourceSession } from './source-session.ts';
import { ReplicationStream } from './stream.ts';
import { TableVersions, type TableVersion } from './table-versions.ts';
import { nextDelivery } from './truncate-fanout.ts';
import { TopicCounts } from './topic-counts.ts';
import { SequenceValues } from './sequence-values.ts';

export interface SourceConnector {
  /** Resolves when the connector has finished (after stop(), or after the snapshot for `initial_only`); rejects on a fatal error. */
  done: Promise<void>;
  /** Graceful: stop reading, let Kafka acknowledge what is in flight, confirm it, close. */
  stop(): Promise<void>;
  metrics: Metrics;
  /** Bound port of /metrics (null when not served). */
  metricsPort: number | null;
  /** Publish the current values of the replicated tables' sequences to `<prefix>.__sequences` now. */
  publishSequences(): Promise<void>;
  /** For tests and status: the phase and the last confirmed position. */
  state(): { phase: Phase; confirmedLsn: string | null; acknowledgedRecords: number };
}

export type Phase = 'starting' | 'snapshot' | 'streaming' | 'retrying' | 'finished' | 'failed';

export interface StartOptions {
  /** Serve /metrics on config.metricsPort. Default true. */
  serveMetrics?: boolean;
  /** Told the number of selected tables once the start-up checks passed, before any work on them (run.ts tunes the heap by it). */
  onTables?: (count: number) => void;
  /** Awaited before a table's own snapshot is copied beside the stream (a seam for tests: a long copy made to last). */
  beforeOwnCopy?: () => Promise<void>;
  /** Aborting ends the start: the wait for a source that cannot be reached yet (start-up then rejects with the signal's reason). */
  signal?: AbortSignal;
  /** How often the slot monitor reads the slot, the publication and the partitions (default 10 s; tests wait less). */
  slotCheckIntervalMs?: number;
}

const CONNECTOR_VERSION = packageVersion();

/** Start-up (connect + checks) happens before this resolves; a start-up failure rejects with context.phase = 'startup' (a taken metricsPort: a ConfigError, before connecting). */
export async function startSourceConnector(config: SourceConfig, logger: Logger, opts: StartOptions = {}): Promise<SourceConnector> {
  const log = logger.child({ connector: config.name });
  const metrics = createMetrics({ prefix: 'shardbridge_source_', labels: { connector: config.name }, defaultMetrics: true });
  let phase: Phase = 'starting';
  // The port first, as the sink: a taken one is said before the source is connected and checked.
  let server: MetricsServer | null = null;
  if (opts.serveMetrics ?? true) {
    server = await serveMetrics(metrics.registry, config.metricsPort, '0.0.0.0', { health: () => phase !== 'failed' }).catch((err: unknown) => {
      throw metricsPortError(config.metricsPort, err, 'source');
    });
  }
  const phases = metrics.gauge('phase', '1 for the phase the connector is in (starting, snapshot, streaming, retrying, finished, failed), 0 for the others', ['phase']);
  const setPhase = (p: Phase) => {
    phases.set({ phase }, 0);
    phases.set({ phase: (phase = p) }, 1);
  };
  setPhase('starting');
  let source: SourceSession;
  try {
    // A source that cannot be reached yet (down, starting up, too many connections) is waited for, as Kafka is.
    source = await openSourceWhenReachable(config, log, { signal: opts.signal, onWaiting: (waiting) => setPhase(waiting ? 'retrying' : 'starting') });
  } catch (err) {
    await server?.close();
    throw err;
  }
  opts.onTables?.(source.tables.length);
  const run = new ConnectorRun(config, log, metrics, source, setPhase, opts);
  const done = run.main().then(
    async () => {
      setPhase('finished');
      await server?.close();
    },
    async (err: unknown) => {
      setPhase('failed');
      await server?.close();
      throw err;
    },
  );
  done.catch(() => {}); // the caller awaits `done`; this only keeps an early failure from being "unhandled"
  return {
    done,
    stop: async () => {
      await run.stop();
      await done.catch(() => {});
    },
    metrics,
    metricsPort: server?.port ?? null,
    publishSequences: () => run.publishSequences('demand'),
    state: () => ({ phase, confirmedLsn: run.confirmedLsn(), acknowledgedRecords: run.publisher.acknowledged }),
  };
}

class ConnectorRun {
  readonly publisher: Publisher;
  private readonly kafka: KafkaClient;
  private readonly producer: Producer;
  private readonly admin: Admin;
  private readonly tracker = new LsnTracker();
  private readonly versions: TableVersions;
  private readonly topics;
  private readonly abort = new AbortController();
  private readonly monitor: SlotMonitor;
  private stream: ReplicationStream | null = null;
  private stopping = false;
  private prepared = false;
  /** The wait for Kafka and the registry at start is said once, not at each retry. */
  private waitSaid = false;
  /** Table topics this process created: they held no record before it (earlier-snapshots.ts). */
  private readonly freshTopics = new Set<string>();
  private readonly sequences: SequenceValues;
  private readonly errors;
  private readonly registry: RegistryClient;
  /** Each table topic's partition count and what its truncates fan out by (topic-counts.ts). */
  private readonly counts: TopicCounts;
  /** A table's own snapshot being copied beside this session's stream. */
  private ownCopy: Promise<void> | null = null;
  /** Each table topic's record limits, read at start (record-limits.ts). */
  private recordLimits = new Map<string, RecordLimits>();
  /** Per partitioned table, its ATTACHed partitions as this session found them (partitions.ts). */
  private attached = new Map<string, string[]>();

  constructor(
    private readonly config: SourceConfig,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly source: SourceSession,
    private readonly setPhase: (p: Phase) => void,
    private readonly opts: Pick<StartOptions, 'beforeOwnCopy' | 'slotCheckIntervalMs'> = {},
  ) {
    const k = config.kafka;
    const settings: KafkaSettings = { brokers: k.brokers, clientId: k.clientId ?? `shardbridge-source-${config.name}`, ssl: k.ssl, sasl: k.sasl };
    this.kafka = createKafka(settings, log);
    this.producer = this.kafka.producer();
    this.admin = this.kafka.admin();
    this.counts = new TopicCounts(this.admin, this.producer, config.topics.partitions);
    this.publisher = new Publisher({
      producer: this.producer, tracker: this.tracker, maxRecords: config.inFlight.maxRecords, maxBytes: config.inFlight.maxBytes, log, metrics,
      redeliver: () => (this.counts.delivery += 1),
      limits: (topic) => this.recordLimits.get(topic),
    });
    this.publisher.onFailure((err) => this.stream?.fail(err));
    const r = config.schemaRegistry;
    const registry = new RegistryClient({ url: r.url, username: r.username, password: r.password, passwordFile: r.passwordFile, requestTimeoutMs: r.requestTimeoutMs, logger: log, signal: this.abort.signal });
    this.registry = registry;
    this.versions = new TableVersions({
      registry,
      topicPrefix: config.topicPrefix,
      connectorVersion: CONNECTOR_VERSION,
      catalog: source.catalogAccess(),
      topicExists: (topic) => this.counts.exists(topic),
      log,
    });
    this.topics = controlTopicNames(config.topicPrefix);
    this.sequences = new SequenceValues({ connect: () => source.connect(), publisher: this.publisher, topic: this.topics.sequences, log });
    this.errors = metrics.counter('errors_total', 'Failures of the connector, per kind (retried ones included)', ['kind']);
    this.monitor = new SlotMonitor({
      connect: () => source.connect(),
      write: () => source.write(),
      slotName: config.slotName,
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      checkIntervalMs: opts.slotCheckIntervalMs,
      walRetentionWarnBytes: config.walRetentionWarnBytes,
      log,
      metrics,
      publication: { name: config.publicationName, tables: source.tables.map((t) => ({ relid: t.relid, name: `${t.schema}.${t.name}` })) },
      partitionedTables: source.tables.filter((t) => t.partitioned).map((t) => t.relid),
      selection: config.tables,
      onFatal: (err) => this.stream?.fail(err),
    });
  }

  confirmedLsn(): string | null {
    const c = this.stream?.confirmed ?? null;
    return c === null ? null : formatLsn(c);
  }

  /** Sessions until stopped, finished or failed for good; retriable failures back off and retry. */
  async main(): Promise<void> {
    try {
      let attempt = 0;
      for (;;) {
        const startedAt = Date.now();
        try {
          await this.session();
          return;
        } catch (err) {
          if (this.stopping) return;
          if (err instanceof SessionRestart) {
            this.log.info({ slot: this.config.slotName }, err.message);
            continue;
          }
          this.errors.labels((err as { kind?: string }).kind ?? 'other').inc();
          if (!isRetriable(err) || this.publisher.failed) throw err;
          attempt = Date.now() - startedAt > 60_000 ? 1 : attempt + 1;
          const delayMs = backoffDelay(attempt, { initialMs: 500, maxMs: 30_000 });
          this.setPhase('retrying');
          // Before the first set-up, nothing was made yet: say what the connector waits for, not a stream to resume.
          const after = this.prepared ? 'the stream resumes from the slot' : `not started yet: waiting for ${this.waitingFor()}`;
          // Type, code and messages (they name the server); the stack per attempt buried them, so it comes at debug.
          this.log.warn({ err: this.log.isLevelEnabled('debug') ? err : errorSummary(err), attempt, delayMs }, `source connector session failed, retrying in ${delayMs} ms (${after})`);
          await sleep(delayMs, undefined, { signal: this.abort.signal }).catch(() => {});
          if (this.stopping) return;
        }
      }
    } finally {
      await this.close();
    }
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.log.info('stopping the source connector');
    this.abort.abort(new SourceError('source connector stopped'));
    await this.stream?.stop().catch(() => {});
  }

  publishSequences(reason: 'snapshot' | 'interval' | 'demand'): Promise<void> {
    return this.sequences.publish(reason);
  }

  private async session(): Promise<void> {
    // What runs beside the stream (a table's own snapshot being copied) ends with the session: the next one takes it again.
    const ended = new AbortController();
    try {
      await this.runSession(AbortSignal.any([this.abort.signal, ended.signal]));
    } finally {
      ended.abort(new SourceError('the session ended before the own snapshot was copied'));
      await this.ownCopy?.catch(() => {});
      this.ownCopy = null;
    }
  }

  private async runSession(sessionSignal: AbortSignal): Promise<void> {
    const cfg = this.config;
    const client = await this.source.connect();
    // The database's clock, not this host's: one clock for every host the connector may run on.
    const { rows: [now] } = await client.query(`SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint::text AS ms`);
    this.counts.delivery = nextDelivery(Number(now.ms), this.counts.delivery);
    // The first session reads `__snapshot` once, in the set-up, which records the topics' partition counts there.
    let state: SnapshotState | undefined;
    if (!this.prepared) {
      const tables = async () => {
        await this.versions.init(this.source.tables, this.source.catalogLsn);
        return this.versions.all().map((v) => ({ topic: v.topic, singlePartition: this.source.singlePartition.has(v.qualified) }));
      };
      if (!this.waitSaid) this.log.info({ brokers: cfg.kafka.brokers, registry: redactUrl(cfg.schemaRegistry.url) }, `waiting for ${this.waitingFor()}: topics and schemas next`);
      this.waitSaid = true;
      // Ended by a stop at once: kafkajs's retries of a Kafka that cannot be reached took 10 s and more (close() ends them).
      const setup = await abortable(setUpKafka(cfg, tables, { kafka: this.kafka, admin: this.admin, producer: this.producer, registry: this.registry, log: this.log }), this.abort.signal);
      for (const topic of setup.created) this.freshTopics.add(topic);
      this.counts.truncateKeySchemaId = setup.truncateKeySchemaId;
      this.counts.adopt(setup.partitionCounts);
      this.recordLimits = setup.recordLimits;
      this.publisher.capBatchBytes(batchBytesFor(this.recordLimits.values()));
      await this.sequences.read(client, this.source.tables.map((x) => x.relid));
      this.prepared = true;
      state = setup.snapshotState;
      this.log.info({ brokers: cfg.kafka.brokers }, 'source connector started: Kafka and the schema registry answered, topics and schemas are ready');
    }
    state ??= reduceSnapshotTopic(await abortable(readControlTopic(this.kafka, this.topics.snapshot, this.log), this.abort.signal));
    this.counts.recorded = state.partitions;
    // Read before the publication is altered, and the slot dropped before it is: a stop in
    // between cannot make the connector forget that these tables need their snapshot again.
    const gaps = await publicationGaps(client, cfg.publicationName, this.source.tables.map(qualified));
    // Read before the slot (and its snapshot): a partition attached after this is one the next check finds.
    const partitions = await readPartitions(client, this.source.tables.filter((t) => t.partitioned).map((t) => t.relid));
    this.attached = attachedByRoot(partitions);
    if (this.stopping) return;

    if (cfg.snapshot.mode === 'initial_only') {
      await snapshotOnly(this.snapshotContext(), client, this.selectedVersions());
      this.setPhase('finished');
      return;
    }

    const { from, skip, publicationOid } = await decideSlot({
      run: () => this.snapshotContext(),
      client,
      state,
      gaps,
      partitions,
      attached: this.attached,
      versions: () => this.versions.all(),
      freshTopics: this.freshTopics,
      sessionSignal,
      beforeOwnCopy: this.opts.beforeOwnCopy,
      onOwnCopy: (copied) => (this.ownCopy = copied),
    });
    if (this.stopping) return;
    this.monitor.publicationChecked(publicationOid);
    await this.streamFrom(from, skip);
  }

  /**
   * `shardbridge resnapshot` while streaming (resnapshot-signal.ts): the tables it names are
   * marked requested within its transaction; the session then restarts to take them.
   */
  private resnapshotAsked(content: Buffer, tx: TrackedTx, commitLsn: bigint): string | null {
    const asked = parseSignal(content, this.config.slotName);
    if (asked === null) return null;
    const { markers, tables, unknown } = requestedMarkers(asked, this.selectedVersions(), this.config.slotName, commitLsn);
    if (unknown.length > 0) this.log.warn({ tables: unknown }, `resnapshot asked for ${unknown.join(', ')}, which this connector does not select: passed over`);
    for (const m of markers) this.publisher.publishRaw(this.topics.snapshot, m.key, m.value, tx);
    return tables.length === 0 ? null : `a new snapshot of ${tables.join(', ')} was asked for (shardbridge resnapshot): restarting the session to take it`;
  }

  /** The current versions of the selected tables (the snapshot's tables). */
  private selectedVersions(): TableVersion[] {
    return snapshotVersions(this.versions.all(), this.source.tables);
  }

  private snapshotContext(): SnapshotRunContext {
    return {
      config: this.config,
      source: this.source,
      publisher: this.publisher,
      admin: this.admin,
      topics: this.topics,
      metrics: this.metrics,
      log: this.log,
      signal: this.abort.signal,
      attached: () => this.attached,
      truncateFanout: (topic) => this.counts.fanout(topic),
      publishSequences: () => this.publishSequences('snapshot'),
      onSnapshotPhase: () => this.setPhase('snapshot'),
    };
  }

  private async streamFrom(confirmed: bigint | null, skip: SkipPoints): Promise<void> {
    const cfg = this.config;
    this.tracker.reset(confirmed);
    const stream = new ReplicationStream({
      connection: this.source.connection,
      slotName: cfg.slotName,
      publicationName: cfg.publicationName,
      versions: this.versions,
      publisher: this.publisher,
      tracker: this.tracker,
      transactionsTopic: this.topics.transactions,
      db: this.source.database,
      tombstones: cfg.tombstones,
      transcode: cfg.transcode,
      log: this.log,
      metrics: this.metrics,
      truncateFanout: (topic) => this.counts.fanout(topic),
      skip,
      onResnapshot: (content, tx, commitLsn) => this.resnapshotAsked(content, tx, commitLsn),
    });
    this.stream = stream;
    // While a table's own snapshot is copied beside the stream, the phase stays "snapshot".
    if (skip.copying) skip.copying.done.then(() => !this.stopping && this.stream === stream && this.setPhase('streaming'), (err: unknown) => stream.fail(err));
    else this.setPhase('streaming');
    this.monitor.start(new Set([...this.attached.values()].flat()));
    this.sequences.startInterval(cfg.sequencesIntervalMs);
    try {
      if (this.stopping) return;
      await stream.run();
    } finally {
      this.monitor.stop();
      this.sequences.stopInterval();
    }
  }

  /** What the first session needs before it can make anything: Kafka and the registry (never their credentials). */
  private waitingFor(): string {
    return `Kafka at ${this.config.kafka.brokers.join(',')} and the schema registry at ${redactUrl(this.config.schemaRegistry.url)}`;
  }

  private async close(): Promise<void> {
    // Unsent records are given up when Kafka does not take them within the grace period, or
    // stopped answering (flush's stall): they are not confirmed, the slot gives them again.
    if (!(await this.publisher.flush(10_000))) this.publisher.abandon('shutting down while Kafka is unavailable');
    await Promise.allSettled([this.producer.disconnect(), this.admin.disconnect(), this.source.close()]);
    // What a stop left under way (a set-up step, a control topic read): its kafkajs retries end here.
    this.kafka.close();
    this.log.info('source connector closed');
  }
}

function qualified(t: TableInfo): string {
  return `${t.schema}.${t.name}`;
}


