/**
 * The reads `status`, `cutover` and `cleanup` share (this file and cutover's sequence step,
 * fix-sequences.ts, are their only I/O besides the commands themselves): the source slot, the sink's tables on the destination
 * (`shardbridge.sink_offsets`, `snapshot_status`, `stalls`, `sequence_sync`), topic end
 * offsets, the `__snapshot` markers and the sink's /metrics. None needs a connector running.
 */
import pg from 'pg';
import type { Logger } from '../logger.ts';
import { connectionConfig, pgEndpoint, type PgConnectionConfig } from '../config/postgres.ts';
import { createKafka, type Admin, type KafkaClient } from '../kafka/client.ts';
import { redactUrl } from '../redact.ts';
import { mapTable } from '../schema/mapping.ts';
import type { SinkConfig } from '../../sink-connector/config.ts';
import type { SourceConfig } from '../../source-connector/config.ts';
import { resolveTables } from '../../source-connector/catalog.ts';
import { currentLsnSql, invalidationReasonSql } from '../../source-connector/standby.ts';
import { controlTopicNames, readControlTopic, reduceSnapshotTopic } from '../../source-connector/control-topics.ts';
import { topicFor } from '../../source-connector/table-versions.ts';
import { isSinkTopic } from '../../sink-connector/control.ts';
import type { TableInfo } from '../pg-types.ts';
import {
  markersNeeded, mergeStalls, parseStalledMetric, splitStallError, type PartitionFacts, type SequenceSyncFacts, type SlotFacts, type SnapshotMarker, type StallFacts, type StatusFacts, type TableFacts,
} from './status.ts';
import type { EndOffset } from './cutover.ts';
import { resetTransactionTimeout } from '../timeout-reset.ts';

const CONNECT_TIMEOUT_MS = 10_000;

export const errorText = (e: unknown): string => redactUrl(e instanceof Error ? e.message || (e as { code?: string }).code || e.name : String(e));

/**
 * A connected client (errors after connect are surfaced by queries, never as crashes). `options`:
 * the `options` parameter made from the user's own (pg-types.ts's commandSourceOptions, commandDestinationOptions).
 */
export async function connectPg(section: PgConnectionConfig, name: 'source' | 'destination' | 'primary', application: string, options?: (user?: string) => string): Promise<pg.Client> {
  const config = connectionConfig(section, { section: name, application_name: application });
  const client = new pg.Client({ ...config, ...(options ? { options: options(config.options) } : {}), connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  client.on('error', () => {});
  try {
    await client.connect();
    if (options) await resetTransactionTimeout(client, config.options);
  } catch (e) {
    await client.end().catch(() => {});
    throw e;
  }
  return client;
}

export const pgTarget = (section: PgConnectionConfig): string => pgEndpoint(section, false);

/** A Kafka client for the commands: few retries, so an unreachable broker is reported in seconds. */
export function commandKafka(config: SinkConfig | SourceConfig, log: Logger, clientId: string): KafkaClient {
  const k = config.kafka;
  return createKafka({ ...COMMAND_KAFKA_TIMEOUTS, brokers: k.brokers, clientId: k.clientId ?? clientId, ssl: k.ssl, sasl: k.sasl }, log);
}

/**
 * The one-shot commands' Kafka timeouts. A broker that accepts TCP and never answers costs one
 * request timeout per attempt (kafkajs waits that long for the first request, ApiVersions): three
 * attempts of 8 s end a command in about 25 s (three of 15 s took 47 s under SASL).
 */
export const COMMAND_KAFKA_TIMEOUTS = { connectionTimeoutMs: 5_000, requestTimeoutMs: 8_000, retry: { retries: 2, initialRetryTime: 200, maxRetryTime: 2_000 } };

// ---------- source ----------

export async function readSlot(client: pg.ClientBase, slotName: string): Promise<SlotFacts | null> {
  const { rows } = await client.query(
    `SELECT s.plugin, s.active, s.active_pid, s.confirmed_flush_lsn::text AS confirmed, s.restart_lsn::text AS restart, s.wal_status,
            ${invalidationReasonSql()} AS invalidation_reason,
            s.safe_wal_size::float8 AS safe, c.lsn::text AS current,
            pg_wal_lsn_diff(c.lsn, s.confirmed_flush_lsn)::float8 AS lag,
            pg_wal_lsn_diff(c.lsn, s.restart_lsn)::float8 AS retained,
            r.sent_lsn::text AS sent, pg_wal_lsn_diff(c.lsn, r.sent_lsn)::float8 AS unsent
       FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
            -- On a standby source, the position it replayed (pg_current_wal_lsn() fails in recovery).
            CROSS JOIN (SELECT ${currentLsnSql()} AS lsn) c
      WHERE s.slot_name = $1`,
    [slotName],
  );
  if (rows.length === 0) return null;
  const r = rows[0];
  return {
    name: slotName,
    plugin: r.plugin,
    active: r.active,
    activePid: r.active_pid,
    confirmedLsn: r.confirmed,
    restartLsn: r.restart,
    currentLsn: r.current,
    lagBytes: r.lag === null ? null : Math.max(0, r.lag),
    sentLsn: r.sent,
    unsentBytes: r.unsent === null ? null : Math.max(0, r.unsent),
    walRetainedBytes: r.retained === null ? null : Math.max(0, r.retained),
    walStatus: r.wal_status,
    invalidationReason: r.invalidation_reason,
    safeWalSizeBytes: r.safe,
  };
}

export interface SourceTable {
  info: TableInfo;
  /** Source `schema.table`. */
  table: string;
  topic: string;
  destination: { schema: string; name: string };
}

/** The selected source tables with their topics and destination names. */
export async function sourceTables(client: pg.ClientBase, source: SourceConfig, sink: SinkConfig): Promise<SourceTable[]> {
  const { tables } = await resolveTables(client, source.tables);
  return tables.map((info) => ({
    info,
    table: `${info.schema}.${info.name}`,
    topic: topicFor(source.topicPrefix, info.schema, info.name),
    destination: mapTable(info, sink.tables).destination,
  }));
}

// ---------- destination: the sink's tables ----------

export interface SinkTablesPresent {
  offsets: boolean;
  snapshot: boolean;
  sequences: boolean;
  stalls: boolean;
  deferred: boolean;
}

export async function sinkTablesPresent(client: pg.ClientBase): Promise<SinkTablesPresent> {
  const { rows } = await client.query(
    `SELECT to_regclass('shardbridge.sink_offsets') IS NOT NULL AS offsets, to_regclass('shardbridge.snapshot_status') IS NOT NULL AS snapshot,
            to_regclass('shardbridge.sequence_sync') IS NOT NULL AS sequences, to_regclass('shardbridge.stalls') IS NOT NULL AS stalls,
            to_regclass('shardbridge.deferred_foreign_keys') IS NOT NULL AS deferred`,
  );
  return rows[0];
}

/** Sessions of a sink connector on the destination (its sessions' application_name is shardbridge-sink-*). */
export async function sinkSessions(client: pg.ClientBase): Promise<number> {
  const { rows } = await client.query(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'shardbridge-sink-%' AND datname = current_database() AND pid <> pg_backend_pid()`,
  );
  return rows[0].n;
}

export const tpKey = (topic: string, partition: number): string => `${topic}\u0000${partition}`;

/** Stored next offsets of the sink's group, per topic-partition. */
export async function readApplied(client: pg.ClientBase, groupId: string): Promise<Map<string, number>> {
  const { rows } = await client.query<{ topic: string; partition: number; next_offset: string }>(
    'SELECT topic, partition, next_offset FROM shardbridge.sink_offsets WHERE group_id = $1',
    [groupId],
  );
  return new Map(rows.map((r) => [tpKey(r.topic, r.partition), Number(r.next_offset)]));
}

export async function readSnapshotStatus(client: pg.ClientBase): Promise<Map<string, { state: string; rowsExpected: number | null }>> {
  const { rows } = await client.query('SELECT topic, state, rows_expected FROM shardbridge.snapshot_status');
  return new Map(rows.map((r) => [r.topic as string, { state: r.state as string, rowsExpected: r.rows_expected === null ? null : Number(r.rows_expected) }]));
}

/** A stall row's reason: where a stall has no SQLSTATE the sink writes its reason there (sink-connector/stall.ts: decode, gap, past-end). Pure. */
export function stallReasonOf(sqlstate: string | null): string {
  return sqlstate === null || /^[0-9A-Z]{5}$/.test(sqlstate) ? 'apply' : sqlstate;
}

export async function readStalls(client: pg.ClientBase, groupId: string): Promise<StallFacts[]> {
  const { rows } = await client.query(
    `SELECT topic, partition, next_offset, table_name, sqlstate, error, attempts, first_seen FROM shardbridge.stalls WHERE group_id = $1 ORDER BY topic, partition`,
    [groupId],
  );
  return rows.map((r) => {
    const { message, remedy } = splitStallError(r.error as string);
    const reason = stallReasonOf(r.sqlstate);
    return {
      topic: r.topic,
      partition: r.partition,
      offset: Number(r.next_offset),
      table: r.table_name,
      sqlstate: reason === 'apply' ? r.sqlstate : null,
      reason,
      message,
      remedy,
      attempts: r.attempts,
      since: r.first_seen instanceof Date ? r.first_seen.toISOString() : r.first_seen,
      seenIn: ['table'],
    };
  });
}

export async function readSequenceSync(client: pg.ClientBase): Promise<SequenceSyncFacts[]> {
  const { rows } = await client.query('SELECT sequence_name, source_value::text AS s, applied_value::text AS a, applied_at FROM shardbridge.sequence_sync ORDER BY sequence_name');
  return rows.map((r) => ({ sequence: r.sequence_name, sourceValue: r.s, appliedValue: r.a, at: r.applied_at instanceof Date ? r.applied_at.toISOString() : r.applied_at }));
}

// ---------- Kafka ----------

/**
 * Table topics: those of the selected source tables plus any other `<prefix>.<schema>.<table>`
 * topic Kafka has (a table dropped from the selection still has its topic); control topics
 * that exist. Sorted, table topics first.
 */
export async function migrationTopics(
  admin: Admin,
  prefix: string,
  deadLetterTopic: string,
  expected: string[],
): Promise<{ tables: string[]; control: string[]; existing: Set<string> }> {
  const existing = new Set(await admin.listTopics());
  const names = controlTopicNames(prefix);
  const controlSet = new Set<string>([names.snapshot, names.sequences, names.transactions]);
  const tables = new Set(expected.filter((t) => existing.has(t)));
  for (const t of existing) if (isSinkTopic(t, prefix, deadLetterTopic) && !controlSet.has(t)) tables.add(t);
  return { tables: [...tables].sort(), control: [...controlSet].filter((t) => existing.has(t)).sort(), existing };
}

/** End offsets of every partition of the topics. */
export async function endOffsets(admin: Admin, topics: string[]): Promise<EndOffset[]> {
  const out: EndOffset[] = [];
  const all = await Promise.all(topics.map(async (topic) => ({ topic, ends: await admin.endOffsets(topic) })));
  for (const { topic, ends } of all) for (const e of ends) out.push({ topic, partition: e.partition, end: Number(e.offset) });
  return out;
}

export function partitionFacts(
  ends: { topic: string; partition: number; end: number }[],
  applied: Map<string, number>,
  control: ReadonlySet<string>,
): PartitionFacts[] {
  return ends.map((e) => ({ ...e, kind: control.has(e.topic) ? 'control' : 'table', applied: applied.get(tpKey(e.topic, e.partition)) ?? null }));
}

/** Latest `__snapshot` marker per source table, and the slots the topic says were created. */
export async function readSnapshotMarkers(kafka: KafkaClient, topic: string, log: Logger, timeoutMs = 20_000): Promise<{ tables: Map<string, SnapshotMarker>; slots: Set<string> }> {
  const state = reduceSnapshotTopic(await readControlTopic(kafka, topic, log, timeoutMs));
  const tables = new Map<string, SnapshotMarker>();
  for (const [table, m] of state.tables) {
    tables.set(
      table,
      m.kind === 'completed'
        ? { kind: 'completed', topic: m.topic, rows: m.rows, endOffsets: m.endOffsets, at: m.at }
        : { kind: 'started', topic: m.topic, estimatedRows: m.estimatedRows, at: m.at, ...(m.requested ? { requested: true } : {}) },
    );
  }
  return { tables, slots: new Set(state.slots.keys()) };
}

/** The sink's /metrics text, or why not. */
export async function scrapeMetrics(url: string, timeoutMs = 2_000): Promise<{ ok: true; text: string } | { ok: false; error: string }> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return { ok: false, error: `HTTP ${res.status}` };
    return { ok: true, text: await res.text() };
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause?.code;
    return { ok: false, error: cause ?? errorText(e) };
  }
}

// ---------- everything status shows ----------

export interface StatusInputs {
  source: SourceConfig;
  sink: SinkConfig;
  admin: Admin;
  kafka: KafkaClient;
  log: Logger;
  /** The sink's metrics URL, or null not to ask; `explicit` when the operator gave it. */
  sinkMetricsUrl: string | null;
  sinkMetricsExplicit?: boolean;
  /** Read the `__snapshot` topic even when the destination says every snapshot is complete. */
  readMarkers?: boolean;
}

/** Every fact of one status screen; parts that cannot be read are reported, never thrown. */
export async function gatherStatusFacts(inp: StatusInputs): Promise<StatusFacts> {
  const { source, sink, admin, kafka, log } = inp;
  const facts: StatusFacts = {
    atMs: Date.now(),
    source: { target: pgTarget(source.source), ok: true },
    destination: { target: pgTarget(sink.destination), ok: true },
    kafka: { target: source.kafka.brokers.join(','), ok: true },
    slotName: source.slotName,
    slot: null,
    walRetentionWarnBytes: source.walRetentionWarnBytes,
    tables: [],
    partitions: [],
    stalls: [],
    sequences: [],
    sinkTables: false,
    sinkMetrics: null,
    slotCreatedMarker: false,
    groupId: sink.groupId,
  };
  const deadLetter = sink.deadLetter.topic ?? `${sink.topicPrefix}.__dlq`;

  const sourceSide = (async () => {
    let client: pg.Client | undefined;
    try {
      client = await connectPg(source.source, 'source', 'shardbridge-status');
      facts.slot = await readSlot(client, source.slotName);
      return await sourceTables(client, source, sink);
    } catch (e) {
      facts.source = { ...facts.source, ok: false, error: errorText(e) };
      return null;
    } finally {
      await client?.end().catch(() => {});
    }
  })();

  const destSide = (async () => {
    let client: pg.Client | undefined;
    try {
      client = await connectPg(sink.destination, 'destination', 'shardbridge-status');
      const present = await sinkTablesPresent(client);
      facts.sinkTables = present.offsets;
      const applied = present.offsets ? await readApplied(client, sink.groupId) : new Map<string, number>();
      facts.sinkApplied = [...applied.values()].some((n) => n > 0);
      return {
        applied,
        snapshot: present.snapshot ? await readSnapshotStatus(client) : new Map<string, { state: string; rowsExpected: number | null }>(),
        stalls: present.stalls ? await readStalls(client, sink.groupId) : [],
        sequences: present.sequences ? await readSequenceSync(client) : [],
      };
    } catch (e) {
      facts.destination = { ...facts.destination, ok: false, error: errorText(e) };
      return null;
    } finally {
      await client?.end().catch(() => {});
    }
  })();

  const metricsSide = inp.sinkMetricsUrl ? scrapeMetrics(inp.sinkMetricsUrl) : Promise.resolve(null);
  const [tables, dest, metrics] = await Promise.all([sourceSide, destSide, metricsSide]);

  let topics: Awaited<ReturnType<typeof migrationTopics>> | null = null;
  try {
    topics = await migrationTopics(admin, source.topicPrefix, deadLetter, tables?.map((t) => t.topic) ?? []);
    const ends = await endOffsets(admin, [...topics.tables, ...topics.control]);
    facts.partitions = partitionFacts(ends, dest?.applied ?? new Map(), new Set(topics.control));
  } catch (e) {
    facts.kafka = { ...facts.kafka, ok: false, error: errorText(e) };
  }

  // Tables: the source's selection, else what the destination and Kafka know.
  const tableFacts = new Map<string, TableFacts>();
  for (const t of tables ?? []) {
    tableFacts.set(t.topic, { table: t.table, topic: t.topic, destination: `${t.destination.schema}.${t.destination.name}`, sinkState: null });
  }
  if (!tables) {
    for (const [topic, s] of dest?.snapshot ?? []) tableFacts.set(topic, { table: topic.slice(source.topicPrefix.length + 1), topic, destination: '?', sinkState: s.state });
  }
  for (const t of tableFacts.values()) {
    const s = dest?.snapshot.get(t.topic);
    if (s) {
      t.sinkState = s.state;
      t.rowsExpected = s.rowsExpected;
    }
  }
  const snapshotTopic = controlTopicNames(source.topicPrefix).snapshot;
  const allComplete = !markersNeeded([...tableFacts.values()], facts.partitions, snapshotTopic);
  if (facts.kafka.ok && topics?.existing.has(snapshotTopic) && (inp.readMarkers || !allComplete)) {
    try {
      const markers = await readSnapshotMarkers(kafka, snapshotTopic, log);
      facts.slotCreatedMarker = markers.slots.has(source.slotName);
      for (const t of tableFacts.values()) t.marker = markers.tables.get(t.table) ?? null;
    } catch (e) {
      log.debug({ err: e }, 'could not read the __snapshot topic');
      facts.slotCreatedMarker = null;
    }
  } else if (allComplete) {
    facts.slotCreatedMarker = true;
  } else if (!facts.kafka.ok) {
    facts.slotCreatedMarker = null;
  }
  facts.tables = [...tableFacts.values()].sort((a, b) => a.table.localeCompare(b.table));

  let fromMetrics: ReturnType<typeof parseStalledMetric> = [];
  if (inp.sinkMetricsUrl && metrics) {
    const explicit = Boolean(inp.sinkMetricsExplicit);
    facts.sinkMetrics = metrics.ok ? { url: inp.sinkMetricsUrl, ok: true, explicit } : { url: inp.sinkMetricsUrl, ok: false, explicit, error: metrics.error };
    if (metrics.ok) fromMetrics = parseStalledMetric(metrics.text);
  }
  facts.stalls = mergeStalls(dest?.stalls ?? [], fromMetrics);
  facts.sequences = dest?.sequences ?? [];
  return facts;
}
