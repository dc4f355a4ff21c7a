/**
 * Sink test fixtures: a validated SinkConfig for the test servers, waiting until the sink
 * has applied every topic up to its end, and rows in their text form for comparisons.
 */
import type pg from 'pg';
import { waitFor } from '../../shared/devstack/ports.ts';
import type { Admin, KafkaClient } from '../../shared/kafka/client.ts';
import { sinkConfigSchema, type SinkConfig } from '../../sink-connector/config.ts';
import type { SourceConnector } from '../../source-connector/run.ts';
import { textRows } from './produce-changes.ts';
import { reduceSnapshotTopic } from '../../source-connector/control-topics.ts';
import { caughtUp, readRaw, walLsn } from './source.ts';

export function sinkConfig(base: { kafka: string; registry: string; destination: string; prefix: string; groupId: string }, extra: Record<string, unknown> = {}): SinkConfig {
  return sinkConfigSchema.parse({
    name: 'test',
    groupId: base.groupId,
    topicPrefix: base.prefix,
    kafka: { brokers: [base.kafka] },
    schemaRegistry: { url: base.registry },
    destination: { url: base.destination },
    stallRetryMs: 300,
    metricsPort: 0,
    logLevel: 'warn',
    ...extra,
  });
}

/** Stored next offsets of the sink, per `topic:partition`. */
export async function storedOffsets(db: pg.ClientBase, groupId: string): Promise<Map<string, bigint>> {
  const { rows } = await db.query('SELECT topic, partition, next_offset FROM shardbridge.sink_offsets WHERE group_id = $1', [groupId]);
  return new Map(rows.map((r) => [`${r.topic}:${r.partition}`, BigInt(r.next_offset)]));
}

/** Wait until the sink's stored offsets reach the current end of every partition of `topics`. */
export async function waitApplied(db: pg.ClientBase, admin: Admin, groupId: string, topics: string[], timeoutMs = 60_000): Promise<void> {
  const ends: { topic: string; partition: number; offset: bigint }[] = [];
  for (const topic of topics) for (const e of await admin.endOffsets(topic)) ends.push({ topic, partition: e.partition, offset: BigInt(e.offset) });
  await waitFor(
    `sink to apply ${topics.join(', ')}`,
    async () => {
      const stored = await storedOffsets(db, groupId);
      return ends.every((e) => e.offset === 0n || (stored.get(`${e.topic}:${e.partition}`) ?? 0n) >= e.offset);
    },
    { timeoutMs, intervalMs: 100 },
  );
}

/** Every row of a table, each column in its text output form, ordered by `orderBy`. */
export async function tableText(db: pg.ClientBase, qualified: string, columns: string[], orderBy: string): Promise<(string | null | undefined)[][]> {
  const list = columns.map((c) => `"${c.replace(/"/g, '""')}"`).join(', ');
  return textRows(db, `SELECT ${list} FROM ${qualified} ORDER BY ${orderBy}`);
}

/**
 * Source → Kafka → sink: until the source confirmed everything written at `client` so far and the
 * sink applied `topics` to their ends. With `snapshotTopic`, also until no snapshot of `topics` is
 * requested or being copied: a resnapshot taken beside the stream has its copy's records in
 * Kafka only once its completion marker is.
 */
export async function pipelineCaughtUp(
  kafka: KafkaClient,
  at: { client: pg.ClientBase; source: SourceConnector; snapshotTopic?: string },
  sink: { db: pg.ClientBase; groupId: string; topics: string[] },
  timeoutMs = 90_000,
): Promise<void> {
  await caughtUp(at.source, await walLsn(at.client), 60_000);
  const { snapshotTopic } = at;
  if (snapshotTopic) {
    const ours = new Set(sink.topics);
    await waitFor(`the snapshots of ${sink.topics.join(', ')} completed`, async () => {
      const { tables } = reduceSnapshotTopic(await readRaw(kafka, snapshotTopic));
      return [...tables.values()].every((m) => !ours.has(m.topic) || m.kind === 'completed');
    }, { timeoutMs, intervalMs: 200 });
  }
  const admin = kafka.admin();
  try {
    await waitApplied(sink.db, admin, sink.groupId, sink.topics, timeoutMs);
  } finally {
    await admin.disconnect();
  }
}
