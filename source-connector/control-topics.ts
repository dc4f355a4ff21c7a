/**
 * The source connector's control topics, JSON-valued (docs/control-topics.md has the shapes):
 *  - `<prefix>.__snapshot`: per table snapshot started / completed markers (key: `schema.table`),
 *    and per slot a slot-created marker (key: `slot:<name>`; a tombstone once the connector
 *    dropped that slot itself to snapshot again). Compacted: the latest marker per
 *    key is the state. At start-up it tells whether a snapshot was cut short and whether this
 *    connector has published from a slot before (a vanished slot then means lost changes).
 *  - `<prefix>.__sequences`: values of the sequences replicated tables own or call in a default (key: sequence).
 *  - `<prefix>.__transactions`: BEGIN / END of every source transaction (key: xid).
 * Record builders and the state reduction are pure; readControlTopic is the one I/O helper.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from '../shared/logger.ts';
import type { Admin, KafkaClient, TopicSpec } from '../shared/kafka/client.ts';
import { RetriableError } from '../shared/errors.ts';
import { retry } from '../shared/retry.ts';
import { formatLsn } from './pgoutput-decoder.ts';
import type { TableSequence } from './catalog.ts';

export interface ControlTopics {
  snapshot: string;
  sequences: string;
  transactions: string;
}

export function controlTopicNames(prefix: string): ControlTopics {
  return { snapshot: `${prefix}.__snapshot`, sequences: `${prefix}.__sequences`, transactions: `${prefix}.__transactions` };
}

/**
 * One partition each: the markers of a topic are read in the order they were written.
 * Snapshot and sequence state is "latest per key", so those topics are compacted; the
 * transaction log follows the table topics' cleanup policy and retention.
 */
export function controlTopicSpecs(
  prefix: string,
  topics: { replicationFactor: number; cleanupPolicy: string; retentionMs?: number },
): TopicSpec[] {
  const names = controlTopicNames(prefix);
  const retention: Record<string, string> = topics.retentionMs === undefined ? {} : { 'retention.ms': String(topics.retentionMs) };
  return [
    { topic: names.snapshot, partitions: 1, replicationFactor: topics.replicationFactor, configs: { 'cleanup.policy': 'compact' } },
    { topic: names.sequences, partitions: 1, replicationFactor: topics.replicationFactor, configs: { 'cleanup.policy': 'compact' } },
    { topic: names.transactions, partitions: 1, replicationFactor: topics.replicationFactor, configs: { 'cleanup.policy': topics.cleanupPolicy, ...retention } },
  ];
}

export interface ControlRecord {
  key: Buffer;
  value: Buffer;
}

export interface PartitionOffset {
  partition: number;
  offset: string;
}

export interface SnapshotStartedMarker {
  kind: 'started';
  /** `schema.table`, for display and as the key. */
  table: string;
  /** The names themselves, which readers use instead of splitting `table`; absent in markers of older versions. */
  tableSchema?: string;
  tableName?: string;
  topic: string;
  slot: string;
  /** The slot's consistent point: streaming continues from there. */
  consistentPoint: string;
  estimatedRows: number;
  /** Written by `shardbridge resnapshot`, not by a snapshot that began: the next start takes this table's snapshot again. */
  requested?: true;
  at: string;
}

export interface SnapshotCompletedMarker {
  kind: 'completed';
  /** `schema.table`, for display and as the key. */
  table: string;
  /** The names themselves, which readers use instead of splitting `table`; absent in markers of older versions. */
  tableSchema?: string;
  tableName?: string;
  topic: string;
  slot: string;
  consistentPoint: string;
  rows: number;
  /** End offset (next offset to be written) of every partition of `topic` once its snapshot records were acknowledged. */
  endOffsets: PartitionOffset[];
  /** A partitioned table's ATTACHed partitions (`<relid>@<xid>`, partitions.ts) read before the snapshot: one attached since has rows never streamed. Absent: not partitioned, or written before this was recorded. */
  attached?: string[];
  at: string;
}

export interface SlotCreatedMarker {
  kind: 'slot-created';
  slot: string;
  consistentPoint: string;
  /** The publication's oid the slot streams through: another one at a start means it was dropped and made again meanwhile. Absent: written before this was recorded. */
  publicationOid?: number;
  at: string;
}

/** The partition count a table topic's keys are spread over (partition-pins.ts): partitions added later stay empty. */
export interface TopicPartitionsMarker {
  kind: 'partitions';
  topic: string;
  partitions: number;
  at: string;
}

export type SnapshotTopicMarker = SnapshotStartedMarker | SnapshotCompletedMarker | SlotCreatedMarker | TopicPartitionsMarker;

export const slotMarkerKey = (slot: string): string => `slot:${slot}`;
export const partitionsMarkerKey = (topic: string): string => `partitions:${topic}`;

function record(key: string, value: object): ControlRecord {
  return { key: Buffer.from(key), value: Buffer.from(JSON.stringify(value)) };
}

const tableNames = (m: { tableSchema?: string; tableName?: string }) => (m.tableSchema !== undefined && m.tableName !== undefined ? { tableSchema: m.tableSchema, tableName: m.tableName } : {});

/** What both table markers begin with. */
function markerHead(m: { table: string; tableSchema?: string; tableName?: string; topic: string; slot: string; consistentPoint: bigint }) {
  return { table: m.table, ...tableNames(m), topic: m.topic, slot: m.slot, consistentPoint: formatLsn(m.consistentPoint) };
}

export function snapshotStarted(m: Omit<SnapshotStartedMarker, 'kind' | 'at' | 'consistentPoint'> & { consistentPoint: bigint; at?: Date }): ControlRecord {
  const v: SnapshotStartedMarker = {
    kind: 'started',
    ...markerHead(m),
    estimatedRows: m.estimatedRows,
    ...(m.requested ? { requested: true as const } : {}),
    at: (m.at ?? new Date()).toISOString(),
  };
  return record(m.table, v);
}

export function snapshotCompleted(m: Omit<SnapshotCompletedMarker, 'kind' | 'at' | 'consistentPoint'> & { consistentPoint: bigint; at?: Date }): ControlRecord {
  const v: SnapshotCompletedMarker = {
    kind: 'completed',
    ...markerHead(m),
    rows: m.rows,
    endOffsets: m.endOffsets,
    ...(m.attached ? { attached: m.attached } : {}),
    at: (m.at ?? new Date()).toISOString(),
  };
  return record(m.table, v);
}

export function slotCreated(slot: string, consistentPoint: bigint, at = new Date(), publicationOid?: number): ControlRecord {
  const v: SlotCreatedMarker = { kind: 'slot-created', slot, consistentPoint: formatLsn(consistentPoint), ...(publicationOid !== undefined ? { publicationOid } : {}), at: at.toISOString() };
  return record(slotMarkerKey(slot), v);
}

export function topicPartitions(topic: string, partitions: number, at = new Date()): ControlRecord {
  const v: TopicPartitionsMarker = { kind: 'partitions', topic, partitions, at: at.toISOString() };
  return record(partitionsMarkerKey(topic), v);
}

/** A tombstone for the slot's marker: the connector dropped the slot itself (to snapshot again), so its absence loses nothing. */
export function slotForgotten(slot: string): { key: Buffer; value: null } {
  return { key: Buffer.from(slotMarkerKey(slot)), value: null };
}

export interface SnapshotState {
  /** Latest marker per table. */
  tables: Map<string, SnapshotStartedMarker | SnapshotCompletedMarker>;
  /** Latest slot-created marker per slot name. */
  slots: Map<string, SlotCreatedMarker>;
  /** Per table topic, the partition count its keys are spread over (partition-pins.ts). */
  partitions: Map<string, number>;
}

/** Latest marker per key, in topic order; records that are not ours are skipped. Pure. */
export function reduceSnapshotTopic(records: { key: Buffer | null; value: Buffer | null }[]): SnapshotState {
  const state: SnapshotState = { tables: new Map(), slots: new Map(), partitions: new Map() };
  for (const r of records) {
    if (!r.key) continue;
    const key = r.key.toString();
    if (!r.value) {
      state.tables.delete(key);
      if (key.startsWith('slot:')) state.slots.delete(key.slice(5));
      if (key.startsWith('partitions:')) state.partitions.delete(key.slice(11));
      continue;
    }
    let m: SnapshotTopicMarker;
    try {
      m = JSON.parse(r.value.toString()) as SnapshotTopicMarker;
    } catch {
      continue;
    }
    if (m.kind === 'slot-created') state.slots.set(m.slot, m);
    else if (m.kind === 'partitions') {
      if (Number.isInteger(m.partitions) && m.partitions > 0) state.partitions.set(m.topic, m.partitions);
    }
    else if (m.kind === 'started' || m.kind === 'completed') state.tables.set(m.table, m);
  }
  return state;
}

/** Verdict for start-up, given the slot's presence. Pure. */
export function judgeSnapshotState(
  state: SnapshotState,
  /**
   * `republished`: tables this start added to an existing publication (publication.ts, ensurePublication);
   * `narrowed`: tables whose changes the publication left partly out (publication.ts, publicationGaps);
   * `attached`: per partitioned table, its ATTACHed partitions now (partitions.ts).
   */
  args: { slot: string; tables: string[]; slotExists: boolean; republished?: string[]; narrowed?: string[]; attached?: ReadonlyMap<string, string[]> },
): { publishedFromSlot: boolean; incomplete: { table: string; marker: 'started' | 'requested' | 'completed-other-slot' | 'none' | 'republished' | 'narrowed' | 'attached' }[] } {
  const republished = new Set(args.republished ?? []);
  const narrowed = new Set(args.narrowed ?? []);
  // A partition ATTACHed after the snapshot (or attached again): the rows it brought were never streamed.
  const attachedSince = (m: SnapshotCompletedMarker) => m.attached !== undefined && (args.attached?.get(m.table) ?? []).some((p) => !m.attached!.includes(p));
  const incomplete = args.tables
    .map((table) => {
      const m = state.tables.get(table);
      if (!m) return { table, marker: 'none' as const };
      if (m.kind === 'started') return { table, marker: m.requested ? ('requested' as const) : ('started' as const) };
      if (m.slot !== args.slot) return { table, marker: 'completed-other-slot' as const };
      // Snapshotted from this slot, then out of the publication (left the selection, or dropped
      // and created again): the slot did not stream its changes meanwhile.
      if (republished.has(table)) return { table, marker: 'republished' as const };
      if (narrowed.has(table)) return { table, marker: 'narrowed' as const };
      return attachedSince(m) ? { table, marker: 'attached' as const } : null;
    })
    .filter((x): x is NonNullable<typeof x> => x !== null);
  return { publishedFromSlot: state.slots.has(args.slot), incomplete };
}

/**
 * The start-up warning before the snapshot is taken again: the tables by reason, and why. With
 * `slotKept`, only these tables are snapshotted again (the others' are complete); otherwise the
 * slot is dropped and every table snapshotted again. Pure.
 */
export function describeResnapshot(incomplete: ReturnType<typeof judgeSnapshotState>['incomplete'], opts: { slotKept: boolean }): { tables: Record<string, string[]>; message: string } {
  const of = (...markers: string[]) => incomplete.filter((i) => markers.includes(i.marker)).map((i) => i.table);
  const [asked, cut, back, narrowed, attached] = [of('requested'), of('started'), of('republished'), of('narrowed'), of('attached')];
  const again = opts.slotKept
    ? `taking a snapshot of ${incomplete.map((i) => i.table).join(', ')} alone, keeping the slot (the other tables' snapshots are complete)`
    : 'dropping the slot and taking the snapshot again from a fresh slot';
  return {
    tables: { requested: asked, startedNotCompleted: cut, republished: back, publicationNarrowed: narrowed, partitionAttached: attached, withoutSnapshot: of('none', 'completed-other-slot') },
    message:
      asked.length > 0 ? `a new snapshot of ${asked.join(', ')} was asked for (shardbridge resnapshot): ${again}`
      : cut.length > 0 ? `the snapshot of ${cut.join(', ')} was started but never completed (the connector stopped during the snapshot): ${again}`
      : back.length > 0 ? `${back.join(', ')} came back into the publication (out of the selection, or dropped and created again, since its snapshot): its changes meanwhile were not streamed, so ${again}`
      : narrowed.length > 0 ? `the publication left out some changes of ${narrowed.join(', ')} since its snapshot (a row filter, a column list, or a publish option without some operation), so ${again}`
      : attached.length > 0 ? `${attached.join(', ')} got a partition by ATTACH PARTITION since its snapshot: the rows the partition held were never streamed, so ${again}`
      : `no completed snapshot from this slot for some tables: ${again}`,
  };
}

export interface SequenceValueRecord {
  /** format('%I.%I'): a part is quoted where it needs it (`public."odd.seq"`). */
  sequence: string;
  /** `schema.table`, for display: a dot in a name makes it ambiguous. */
  table: string;
  column: string;
  /** The names themselves, which readers use instead of splitting `sequence` and `table`. */
  sequenceSchema: string;
  sequenceName: string;
  tableSchema: string;
  tableName: string;
  /** Last value as decimal text (bigint range); null if the sequence was never used. */
  value: string | null;
  reason: 'snapshot' | 'interval' | 'demand';
  at: string;
}

/** `s`: a sequence as catalog.ts reads it (its text made by the server's format('%I.%I')). */
export function sequenceRecord(s: Pick<TableSequence, 'sequence' | 'sequenceId' | 'table' | 'tableId' | 'column'> & { value: string | null; reason: SequenceValueRecord['reason']; at?: Date }): ControlRecord {
  const out: SequenceValueRecord = {
    sequence: s.sequence,
    table: s.table,
    column: s.column,
    sequenceSchema: s.sequenceId.schema,
    sequenceName: s.sequenceId.name,
    tableSchema: s.tableId.schema,
    tableName: s.tableId.name,
    value: s.value,
    reason: s.reason,
    at: (s.at ?? new Date()).toISOString(),
  };
  return record(out.sequence, out);
}

/** Debezium's transaction metadata shape plus the commit LSN. */
export interface TransactionMarker {
  status: 'BEGIN' | 'END';
  /** The source xid as text (Debezium's `id`). */
  id: string;
  xid: number;
  /** Commit LSN (Begin's final LSN). */
  commitLsn: string;
  /** END only: end of the commit record, the position confirmed once all of it is in Kafka. */
  endLsn?: string;
  /** END only: records published for the transaction (tombstones included). */
  event_count?: number;
  data_collections?: { data_collection: string; topic: string; event_count: number }[];
  /** Commit time, ms since 1970. */
  ts_ms: number;
}

export function transactionBegin(xid: number, commitLsn: bigint, tsMs: number): ControlRecord {
  const m: TransactionMarker = { status: 'BEGIN', id: String(xid), xid, commitLsn: formatLsn(commitLsn), ts_ms: tsMs };
  return record(String(xid), m);
}

export function transactionEnd(
  xid: number,
  commitLsn: bigint,
  endLsn: bigint,
  tsMs: number,
  counts: { table: string; topic: string; count: number }[],
): ControlRecord {
  const m: TransactionMarker = {
    status: 'END',
    id: String(xid),
    xid,
    commitLsn: formatLsn(commitLsn),
    endLsn: formatLsn(endLsn),
    event_count: counts.reduce((n, c) => n + c.count, 0),
    data_collections: counts.map((c) => ({ data_collection: c.table, topic: c.topic, event_count: c.count })),
    ts_ms: tsMs,
  };
  return record(String(xid), m);
}

/**
 * End offsets of a topic. Right after creation a broker answers NOT_LEADER (retriable) until it
 * has made its partitions: its metadata names the leader before that. Made with 400 tables of
 * six partitions, one broker took 6 to 9 s, so the retries span 15 to 30 s (8 of them, 3.5 to
 * 7 s, failed the first session of every such start).
 */
export function settledEndOffsets(admin: Admin, topic: string, log: Logger, backoff = { initialMs: 100, maxMs: 2_000 }): Promise<PartitionOffset[]> {
  return retry(() => admin.endOffsets(topic), {
    what: `end offsets of ${topic}`,
    retries: 20,
    ...backoff,
    onRetry: (err) => log.debug({ err, topic }, 'end offsets not available yet'),
  });
}

/** Every record of a (small) control topic up to its current end, with a throw-away consumer group. */
export async function readControlTopic(
  kafka: KafkaClient,
  topic: string,
  log: Logger,
  timeoutMs = 60_000,
): Promise<{ key: Buffer | null; value: Buffer | null }[]> {
  return (await readTopicToEnd(kafka, topic, log, { timeoutMs })).map(({ key, value }) => ({ key, value }));
}

/** The partition count `topic`'s keys go by, as the (existing) `__snapshot` topic recorded it; undefined when it did not. */
export async function keyedPartitions(kafka: KafkaClient, snapshotTopic: string, topic: string, log: Logger): Promise<number | undefined> {
  return reduceSnapshotTopic(await readControlTopic(kafka, snapshotTopic, log, 30_000)).partitions.get(topic);
}

export interface TopicRecord {
  partition: number;
  offset: bigint;
  key: Buffer | null;
  value: Buffer | null;
}

/** The consumer groups of readTopicToEnd (kafkajs reads only through a group): an ACL grants them by this prefix. */
export const READER_GROUP_PREFIX = 'shardbridge-read-';

/** Every record of `topic` up to its end offsets at the time of the call, ordered by partition and offset. */
export async function readTopicToEnd(
  kafka: KafkaClient,
  topic: string,
  log: Logger,
  opts: { timeoutMs?: number; maxBytes?: number } = {},
): Promise<TopicRecord[]> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const admin = kafka.admin();
  let ends: PartitionOffset[];
  try {
    ends = await settledEndOffsets(admin, topic, log);
  } finally {
    await admin.disconnect().catch(() => {});
  }
  const wanted = ends.filter((e) => BigInt(e.offset) > 0n);
  if (wanted.length === 0) return [];
  const next = new Map<number, bigint>();
  const out: TopicRecord[] = [];
  const consumer = kafka.consumer({ groupId: `${READER_GROUP_PREFIX}${randomBytes(6).toString('hex')}`, groupPrefix: READER_GROUP_PREFIX, maxWaitTimeMs: 100, maxBytes: opts.maxBytes });
  let reached!: () => void;
  let crashed!: (err: unknown) => void;
  const done = new Promise<void>((resolve, reject) => ((reached = resolve), (crashed = reject)));
  // A crash kafkajs does not restart from (a refused ACL) ends the read now, not at the timeout.
  consumer.onCrash(({ error, restart }) => {
    if (!restart) crashed(error);
  });
  const check = () => {
    if (wanted.every((e) => (next.get(e.partition) ?? 0n) >= BigInt(e.offset))) reached();
  };
  await consumer.connect();
  let timer: NodeJS.Timeout | undefined;
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) out.push({ partition: batch.partition, offset: BigInt(m.offset), key: m.key, value: m.value });
        // Compaction may leave gaps: the batch's last offset is where reading got to.
        if (!batch.isEmpty()) next.set(batch.partition, BigInt(batch.lastOffset()) + 1n);
        check();
      },
    });
    await Promise.race([
      done,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new RetriableError(`timed out after ${timeoutMs} ms reading topic ${topic}`, { context: { topic } })),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
    await consumer.disconnect().catch((err: unknown) => log.debug({ err, topic }, 'topic reader disconnect failed'));
  }
  return out.sort((a, b) => a.partition - b.partition || (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
}
