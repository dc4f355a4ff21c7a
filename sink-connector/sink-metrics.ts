/** The sink's Prometheus metrics, on the connector's own registry. */
import type { Counter, Gauge, Histogram } from 'prom-client';
import { createMetrics, type Metrics } from '../shared/metrics.ts';
import { inParallel } from '../shared/in-parallel.ts';
import type { Admin } from '../shared/kafka/client.ts';
import type { Logger } from '../shared/logger.ts';
import { tpKey, type PositionTracker } from './offsets.ts';
import type { TypeMismatch } from './table-state.ts';

export interface SinkMetrics {
  metrics: Metrics;
  applied: Counter<'table' | 'op'>;
  batchRows: Histogram<string>;
  applySeconds: Histogram<string>;
  lag: Gauge<'topic' | 'partition'>;
  stalled: Gauge<'topic' | 'partition' | 'reason'>;
  stalls: Counter<'reason'>;
  retries: Counter<string>;
  snapshot: Gauge<'topic' | 'table'>;
  sequences: Counter<'sequence'>;
  deadLetter: Counter<'topic'>;
  upsertRows: Counter<'table' | 'path'>;
  transcodedRows: Counter<'table' | 'format'>;
  directCopyConflicts: Counter<'table'>;
  laneBatches: Gauge<'state'>;
  lockWaiting: Gauge<string>;
  topicsUnseen: Gauge<string>;
  stepsRetrying: Gauge<string>;
  registryWaiting: Gauge<string>;
  fetches: Counter<'result'>;
  typeMismatches: Gauge<'table' | 'column' | 'source_type' | 'destination_type'>;
}

export function createSinkMetrics(connector: string): SinkMetrics {
  const metrics = createMetrics({ prefix: 'shardbridge_sink_', labels: { connector }, defaultMetrics: true });
  return {
    metrics,
    applied: metrics.counter('events_applied_total', 'Change events applied to the destination, per destination table and op', ['table', 'op']),
    batchRows: metrics.histogram('batch_records', 'Kafka records per destination transaction', [], [1, 10, 100, 500, 1000, 5000, 10_000, 50_000, 100_000]),
    applySeconds: metrics.histogram('apply_seconds', 'Time to apply one batch (one destination transaction, retries included)', [], [
      0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
    ]),
    lag: metrics.gauge('consumer_lag', 'Records between the sink position and the log end, per owned topic-partition', ['topic', 'partition']),
    stalled: metrics.gauge('stalled_partitions', '1 while a topic-partition is stalled on a record it cannot apply', ['topic', 'partition', 'reason']),
    stalls: metrics.counter('stalls_total', 'Stalls begun (a distinct error on a partition)', ['reason']),
    retries: metrics.counter('apply_retries_total', 'Transient destination or registry failures retried'),
    snapshot: metrics.gauge('snapshot_complete', "1 once a table's snapshot is applied up to its completion marker, else 0", ['topic', 'table']),
    sequences: metrics.counter('sequences_fixed_total', 'Destination sequences moved up to the source value', ['sequence']),
    deadLetter: metrics.counter('dead_letter_records_total', 'Undecodable records sent to the dead-letter topic', ['topic']),
    upsertRows: metrics.counter('upsert_rows_total', 'Rows written per destination table and path: direct_copy (new rows), staging (COPY + merge), unnest, or in_place (updates leaving unknown TOASTed columns)', ['table', 'path']),
    transcodedRows: metrics.counter(
      'transcoded_rows_total',
      'Rows COPied straight from their Kafka bytes, without the general decode (batch.transcode), by COPY format (text, or binary: batch.binaryCopy); also counted in upsert_rows_total by path',
      ['table', 'format'],
    ),
    directCopyConflicts: metrics.counter(
      'direct_copy_conflicts_total',
      'Direct COPYs of rows expected new that met a row already there (a replay): the batch was applied again by upsert',
      ['table'],
    ),
    fetches: metrics.counter('fetches_total', 'Kafka fetch requests, by whether they brought records (an idle sink asks every consumer.idleMaxWaitMs)', ['result']),
    laneBatches: metrics.gauge(
      'lane_batches',
      'Fetched batches taken by the apply lanes: applying, or waiting for one of the workers (waiting > 0 while the sink or the destination is the bottleneck)',
      ['state'],
    ),
    topicsUnseen: metrics.gauge(
      'topics_unseen',
      "Table topics the source's snapshot markers name that the sink cannot see in Kafka (deleted, or no Describe ACL): their changes are not applied",
    ),
    stepsRetrying: metrics.gauge(
      'steps_retrying',
      'Start-up or group-join steps retrying a transient failure (a destination or Kafka that cannot be reached), each also logged with its server: 0 when none',
    ),
    registryWaiting: metrics.gauge(
      'registry_waiting_partitions',
      'Topic-partitions waiting for the schema registry (unreachable, no answer in time, 5xx) to give the schemas their next records name, each paused and asking again with backoff: 0 when none',
    ),
    lockWaiting: metrics.gauge(
      'lock_waiting_batches',
      'Batches whose destination transaction waits for a lock another session holds, as the lock watchdog last saw (batch.lockWaitWarnMs)',
    ),
    typeMismatches: metrics.gauge(
      'column_type_mismatches',
      "1 per destination column whose type cannot take every source value as it is (values may stall or change), as of the table's latest catalog read",
      ['table', 'column', 'source_type', 'destination_type'],
    ),
  };
}

/** Sets a table's column_type_mismatches series to what its latest catalog read found, removing those gone. */
export function typeMismatchGauge(gauge: SinkMetrics['typeMismatches']): (table: string, found: readonly TypeMismatch[]) => void {
  const shown = new Map<string, { table: string; column: string; source_type: string; destination_type: string }[]>();
  return (table, found) => {
    for (const labels of shown.get(table) ?? []) gauge.remove(labels);
    const now = found.map((m) => ({ table, column: m.column, source_type: m.source, destination_type: m.destination }));
    for (const labels of now) gauge.set(labels, 1);
    shown.set(table, now);
  };
}

/**
 * Every owned partition's lag from Kafka's end offsets, right after a join dropped them all: one
 * with nothing to fetch gets no batch to set it, and was left without a series (no data, not 0)
 * until its next record. A partition a batch moved meanwhile keeps the batch's figure; nothing is
 * set once `current()` says another join came.
 */
export async function lagAtJoin(
  deps: { lag: SinkMetrics['lag']; tracker: PositionTracker; admin: Pick<Admin, 'offsetRanges'>; log: Logger },
  tps: readonly { topic: string; partition: number }[],
  current: () => boolean,
): Promise<void> {
  const before = new Map(tps.map(({ topic, partition }) => [tpKey(topic, partition), deps.tracker.get(topic, partition)]));
  try {
    const topics = [...new Set(tps.map((t) => t.topic))];
    // One request per topic (kafkajs has none for many): a few at a time, off the apply path.
    const ends = await inParallel(topics, 8, async (topic) => ({ topic, ranges: await deps.admin.offsetRanges(topic) }));
    if (!current()) return;
    for (const { topic, ranges } of ends) {
      for (const r of ranges) {
        const k = tpKey(topic, r.partition);
        const at = deps.tracker.get(topic, r.partition);
        if (at === undefined || !before.has(k) || before.get(k) !== at) continue;
        const end = BigInt(r.end);
        deps.lag.set({ topic, partition: String(r.partition) }, Number(end > at ? end - at : 0n));
      }
    }
  } catch (err) {
    deps.log.debug({ err }, 'end offsets after the join not read: consumer_lag waits for the next batches');
  }
}
