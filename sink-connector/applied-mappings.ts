/**
 * What the sink applied each topic into, per group (`shardbridge.sink_mappings`), so that a
 * configuration edited between two runs cannot split a table silently. Changing a table's
 * mapping (`tables`: its schema, table or column names) after rows were applied would leave the
 * old destination table (or column) with the rows applied so far and start the new one empty at
 * the stored offset. So a start compares the mapping recorded for each topic with the
 * configuration's, and refuses a change on a topic it has applied something of; a topic with
 * nothing applied (also after `replay --to-offset 0`) takes the new mapping.
 *
 * The same read tells a changed `groupId` or `topicPrefix`: stored offsets of these topics under
 * other groups only, or of this group under other topics only (a warning each: the sink then
 * applies every topic from its first offset, which converges, but not quickly). And a destination
 * whose positions were stored reading another Kafka cluster (by its cluster id): offsets there
 * name other records, so the start is refused.
 */
import type pg from 'pg';
import { ConfigError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import { resnapshotCommand } from '../shared/migration/remedies.ts';

export const CREATE_MAPPINGS_SQL = `
CREATE TABLE IF NOT EXISTS shardbridge.sink_mappings (
  group_id text NOT NULL,
  topic text NOT NULL,
  source_table text NOT NULL,
  dest_schema text NOT NULL,
  dest_table text NOT NULL,
  columns jsonb NOT NULL,
  kafka_cluster text,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_id, topic)
);
`;

/** One topic's mapping as the configuration gives it now, or as it was recorded. */
export interface TopicMapping {
  topic: string;
  /** `schema.table` of the source table. */
  source: string;
  destSchema: string;
  destTable: string;
  /** Source column → destination column (the `columns` mapping only). */
  columns: Readonly<Record<string, string>>;
}

export interface MappingDrift {
  topic: string;
  /** The stored next offset furthest on: the rows applied under the recorded mapping. */
  applied: bigint;
  recorded: TopicMapping;
  now: TopicMapping;
}

const sortedColumns = (c: Readonly<Record<string, string>>): [string, string][] => Object.entries(c).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
const sameMapping = (a: TopicMapping, b: TopicMapping): boolean =>
  a.destSchema === b.destSchema && a.destTable === b.destTable && JSON.stringify(sortedColumns(a.columns)) === JSON.stringify(sortedColumns(b.columns));

/** Pure: the topics whose mapping changed since something of them was applied (`applied`: the highest stored next offset per topic). */
export function mappingDrift(now: readonly TopicMapping[], recorded: ReadonlyMap<string, TopicMapping>, applied: ReadonlyMap<string, bigint>): MappingDrift[] {
  const out: MappingDrift[] = [];
  for (const m of now) {
    const r = recorded.get(m.topic);
    const n = applied.get(m.topic) ?? 0n;
    if (r && n > 0n && !sameMapping(r, m)) out.push({ topic: m.topic, applied: n, recorded: r, now: m });
  }
  return out;
}

function describeTarget(m: TopicMapping): string {
  const cols = sortedColumns(m.columns);
  const table = `${m.destSchema}.${m.destTable}`;
  return cols.length === 0 ? table : `${table} (columns ${cols.map(([s, d]) => `${s} → ${d}`).join(', ')})`;
}

/** Pure: the start-up refusal for mapping changes, naming the key, both mappings and the remedies. */
export function mappingDriftError(drift: readonly MappingDrift[], groupId: string, sinkConfigHint = 'sink.yaml'): ConfigError {
  const lines = drift.map(
    (d) => `tables."${d.now.source}": ${d.topic} was applied into ${describeTarget(d.recorded)} up to offset ${d.applied} (group ${groupId}), and is now mapped to ${describeTarget(d.now)}`,
  );
  const topics = drift.map((d) => `'${d.topic.replace(/'/g, "''")}'`).join(', ');
  return new ConfigError(
    `the table mapping changed since the sink applied these topics: ${lines.join('; ')}. Applied on, the new destination would start empty at the stored offset while the old one keeps the rows applied so far`,
    {
      context: { key: `tables."${drift[0].now.source}"`, topic: drift[0].topic, group: groupId },
      remedy:
        `set the mapping back; or, to move the table, either (a) with the sink stopped, \`shardbridge replay --sink-config ${sinkConfigHint} --topic <topic> --to-offset 0\` for each such topic (every change is applied again into the new mapping, if Kafka still has the topic from offset 0), ` +
        `or (b) accept the new mapping as it stands, \`DELETE FROM shardbridge.sink_mappings WHERE group_id = '${groupId.replace(/'/g, "''")}' AND topic IN (${topics})\`, and have the source copy the table again (\`${resnapshotCommand(...new Set(drift.map((d) => d.now.source)))}\`); the old destination table keeps its rows: drop it once done`,
    },
  );
}

/**
 * Compare the configuration's mapping of each topic with the recorded one, refuse a change on a
 * topic already applied (ConfigError), then record the current mappings. Also warns when this
 * group has applied none of these topics while other groups, or other topics of this group, have.
 */
export async function checkAndRecordMappings(
  client: pg.ClientBase,
  groupId: string,
  now: readonly TopicMapping[],
  log: Logger,
  opts: { atStart: boolean; kafkaCluster: string | null },
): Promise<void> {
  if (now.length === 0) return;
  const topics = now.map((m) => m.topic);
  const [{ rows: recordedRows }, { rows: offsetRows }] = await Promise.all([
    client.query<{ topic: string; source_table: string; dest_schema: string; dest_table: string; columns: Record<string, string>; kafka_cluster: string | null }>(
      'SELECT topic, source_table, dest_schema, dest_table, columns, kafka_cluster FROM shardbridge.sink_mappings WHERE group_id = $1 AND topic = ANY($2::text[])',
      [groupId, topics],
    ),
    // Applied so far: these topics under every group, and every topic of this group.
    client.query<AppliedRow>(
      `SELECT group_id, topic, max(next_offset)::text AS applied FROM shardbridge.sink_offsets
        WHERE next_offset > 0 AND (topic = ANY($2::text[]) OR group_id = $1) GROUP BY 1, 2`,
      [groupId, topics],
    ),
  ]);
  const recorded = new Map(recordedRows.map((r) => [r.topic, { topic: r.topic, source: r.source_table, destSchema: r.dest_schema, destTable: r.dest_table, columns: r.columns }]));
  const ours = new Set(topics);
  const applied = new Map(offsetRows.filter((r) => r.group_id === groupId && ours.has(r.topic)).map((r) => [r.topic, BigInt(r.applied)]));
  const foreign = recordedRows.filter((r) => (applied.get(r.topic) ?? 0n) > 0n && r.kafka_cluster !== null && opts.kafkaCluster !== null && r.kafka_cluster !== opts.kafkaCluster);
  if (foreign.length > 0) throw otherClusterError(foreign, groupId, opts.kafkaCluster!);
  const drift = mappingDrift(now, recorded, applied);
  if (drift.length > 0) throw mappingDriftError(drift, groupId);
  // A topic that appears while the sink runs is new: nothing of it was applied anywhere.
  if (opts.atStart) warnElsewhere(offsetRows, ours, groupId, log);
  await client.query(
    `INSERT INTO shardbridge.sink_mappings (group_id, topic, source_table, dest_schema, dest_table, columns, kafka_cluster)
     SELECT $1, u.topic, u.source_table, u.dest_schema, u.dest_table, u.columns, $7
       FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[]) AS u(topic, source_table, dest_schema, dest_table, columns)
     ON CONFLICT (group_id, topic) DO UPDATE SET source_table = EXCLUDED.source_table, dest_schema = EXCLUDED.dest_schema,
       dest_table = EXCLUDED.dest_table, columns = EXCLUDED.columns, kafka_cluster = COALESCE(EXCLUDED.kafka_cluster, sink_mappings.kafka_cluster), recorded_at = now()
     WHERE (sink_mappings.dest_schema, sink_mappings.dest_table, sink_mappings.columns, sink_mappings.kafka_cluster)
           IS DISTINCT FROM (EXCLUDED.dest_schema, EXCLUDED.dest_table, EXCLUDED.columns, COALESCE(EXCLUDED.kafka_cluster, sink_mappings.kafka_cluster))`,
    [groupId, topics, now.map((m) => m.source), now.map((m) => m.destSchema), now.map((m) => m.destTable), now.map((m) => JSON.stringify(m.columns)), opts.kafkaCluster],
  );
}

/** Pure: the refusal of positions stored while reading another Kafka cluster. */
export function otherClusterError(rows: readonly { topic: string; kafka_cluster: string | null }[], groupId: string, kafkaCluster: string): ConfigError {
  const g = groupId.replace(/'/g, "''");
  return new ConfigError(
    `the destination holds positions of group ${groupId} stored while reading Kafka cluster ${rows[0].kafka_cluster} (${rows.map((r) => r.topic).join(', ')}), and this sink reads cluster ${kafkaCluster}: ` +
      'those offsets are positions in another cluster\'s topics, and applied on they would skip or stall this cluster\'s records',
    {
      context: { key: 'destination', group: groupId, topic: rows[0].topic },
      remedy:
        'point destination (or kafka.brokers) at the pair that belong together; to apply this cluster\'s topics into this destination from the start, empty its tables and forget the old positions: ' +
        `DELETE FROM shardbridge.sink_offsets WHERE group_id = '${g}'; DELETE FROM shardbridge.sink_mappings WHERE group_id = '${g}'`,
    },
  );
}

interface AppliedRow {
  group_id: string;
  topic: string;
  applied: string;
}

const CONTROL_TOPIC = /\.__(snapshot|sequences|transactions|dlq)$/;

/** A new group, or a new prefix, over positions stored elsewhere: said once at start. */
function warnElsewhere(rows: readonly AppliedRow[], ours: ReadonlySet<string>, groupId: string, log: Logger): void {
  if (rows.some((r) => r.group_id === groupId && ours.has(r.topic))) return;
  const others = [...new Set(rows.filter((r) => r.group_id !== groupId && ours.has(r.topic)).map((r) => r.group_id))];
  if (others.length > 0) {
    log.warn(
      { key: 'groupId', groupId, otherGroups: others },
      `groupId ${groupId} has applied none of these topics, but group(s) ${others.join(', ')} have (shardbridge.sink_offsets): the sink applies every topic again from its first offset. ` +
        `That converges (changes are applied by key, in order), but takes as long as the first run, and each table goes back through its older states (a truncate in a topic empties its table again) until it has; if groupId was changed by mistake, set it back to ${others.join(' or ')}`,
    );
  }
  // Control topics are not mapped: after a replay to offset 0 they are all this group shows applied.
  const elsewhere = rows.filter((r) => r.group_id === groupId && !ours.has(r.topic) && !CONTROL_TOPIC.test(r.topic)).map((r) => r.topic).sort();
  if (elsewhere.length > 0) {
    log.warn(
      { key: 'topicPrefix', groupId, otherTopics: elsewhere.length, example: elsewhere[0] },
      `group ${groupId} has applied ${elsewhere.length} topic(s) outside this topicPrefix (${elsewhere[0]}, …) and none under it: if topicPrefix was changed, the topics under the old prefix are no longer applied, and the new ones are applied from their first offset; set it back unless the source connector's topicPrefix changed too`,
    );
  }
}
