/**
 * The sink connector's configuration schema (strict, with defaults). docs/configuration.md
 * describes every key; keep the two in step.
 */
import { z } from 'zod';
import { loadConfig } from '../shared/config/load.ts';
import {
  kafkaSchema,
  logLevel,
  heapGrowingPercent,
  nonEmptyString,
  portNumber,
  positiveInt,
  qualifiedTableName,
  section,
  topicName,
} from '../shared/config/common.ts';
import { pgConnectionSchema } from '../shared/config/postgres.ts';
import { schemaRegistrySchema } from '../shared/config/registry.ts';

export { describeSafe } from '../shared/config/common.ts';
export { connectionConfig } from '../shared/config/postgres.ts';

export const SINK_ENV_PREFIX = 'SHARDBRIDGE_SINK_';

const MiB = 1024 * 1024;

/** Partitions applied at once (kafkajs `partitionsConsumedConcurrently`). */
export const APPLY_CONCURRENCY = 3;

/**
 * The consumer's fetch sizes by default (`consumer.*`); the bench's broker warm-up fetches alike.
 * A far-behind fetch fills maxBytes / maxBytesPerPartition partitions: one full partition per
 * worker, so the next fetch is asked for as the workers take the last one.
 */
export const CONSUMER_DEFAULTS = { maxBytesPerPartition: 1 * MiB, maxBytes: APPLY_CONCURRENCY * MiB, minBytes: 64 * 1024 } as const;

const tableMapping = z.strictObject({
  /** Destination schema; default: the source table's schema. */
  schema: nonEmptyString().optional(),
  /** Destination table; default: the source table's name. */
  table: nonEmptyString().optional(),
  /** Source column → destination column; unlisted columns keep their names. */
  columns: z.record(nonEmptyString(), nonEmptyString()).optional(),
});

export const sinkConfigSchema = z.strictObject({
  name: nonEmptyString().default('shardbridge'),
  groupId: nonEmptyString().default('shardbridge-sink'),
  topicPrefix: topicName().default('shardbridge'),
  kafka: section(kafkaSchema()),
  schemaRegistry: section(schemaRegistrySchema()),
  destination: section(pgConnectionSchema('destination')),
  tables: z.record(qualifiedTableName(), tableMapping).default({}),
  batch: z
    .strictObject({
      maxRows: positiveInt().default(10_000),
      maxWaitMs: z.number().int().nonnegative().default(50),
      adaptive: z.boolean().default(true),
      // Rows new to the destination (inserts, snapshot reads) COPied straight into the table;
      // a replay that finds them there falls back to the upsert path (direct-copy.ts).
      directCopy: z.boolean().default(true),
      // Rows that only need inserting or replacing whole go from the Kafka bytes straight to
      // COPY text, skipping the general decode and collapse (fast-rows.ts).
      transcode: z.boolean().default(true),
      // ...and in COPY BINARY where every column's destination type has a binary form
      // (copy-binary.ts): PostgreSQL then skips parsing the text. Not on Citus (session staging only).
      binaryCopy: z.boolean().default(true),
      // Each batch commits its rows with its stored offsets, so a destination crash that loses
      // the last asynchronous commits loses their offsets too: the sink applies them again from
      // Kafka. Native subscriptions' apply worker defaults to off for the same reason.
      synchronousCommit: z.enum(['off', 'local', 'remote_write', 'on', 'remote_apply']).default('off'),
      // A member frozen (SIGSTOP, a paused VM) or cut off inside a batch transaction keeps its
      // partition's offsets row locked, and the member that took the partition over waits on it
      // without end: the destination ends such a session after this long idle in its
      // transaction (its batch rolls back; applied later, it finds the new owner's offset).
      idleInTransactionTimeoutMs: positiveInt().default(30_000),
      // A batch in its destination transaction this long is looked at: when it waits for a lock
      // another session holds, the holder is named in a warning (lock-watch.ts). 0: off.
      lockWaitWarnMs: z.number().int().nonnegative().default(10_000),
    })
    .prefault({}),
  // What one Kafka fetch may hold. The sink holds the batches its apply lanes have taken (at
  // most six) and one fetch waiting for them (apply-lanes.ts), so these bound the records held
  // in memory however far the sink is behind.
  consumer: z
    .strictObject({
      maxBytesPerPartition: positiveInt().default(CONSUMER_DEFAULTS.maxBytesPerPartition),
      maxBytes: positiveInt().default(CONSUMER_DEFAULTS.maxBytes),
      // Under light load a fetch waits up to batch.maxWaitMs for this much instead of returning
      // each few records at once: fewer fetches, transactions and commits for the same changes.
      minBytes: positiveInt().default(CONSUMER_DEFAULTS.minBytes),
      // Each fetch names every assigned partition (kafkajs has no fetch sessions): an idle sink
      // polling all of them every batch.maxWaitMs kept brokers busy (and grew a small broker's
      // heap to OOM at 900 partitions). After an empty fetch the next one waits this long, and
      // returns at the first record, so a change after a quiet spell is not delayed.
      idleMaxWaitMs: positiveInt().default(500),
    })
    .superRefine((v, ctx) => {
      if (v.maxBytesPerPartition > v.maxBytes) {
        ctx.addIssue({ code: 'custom', path: ['maxBytesPerPartition'], message: `must not exceed consumer.maxBytes (${v.maxBytes}), got ${v.maxBytesPerPartition}` });
      }
    })
    .prefault({}),
  citus: z
    .strictObject({
      maxCachedConnsPerWorker: positiveInt().default(16),
      enableDeadlockPrevention: z.boolean().default(false),
      requireDistributed: z.boolean().default(false),
    })
    .prefault({}),
  truncate: z.enum(['apply', 'ignore']).default('apply'),
  // `replica`: the sink's sessions apply as PostgreSQL's own logical replication does, so the
  // destination tables' ordinary triggers and foreign keys do not fire (docs/sink-connector.md).
  // Refused on Citus and for a role that may not set it (destination-start.ts).
  sessionReplicationRole: z.enum(['origin', 'replica']).default('origin'),
  autoEvolve: z.boolean().default(false),
  deadLetter: z
    .strictObject({
      enabled: z.boolean().default(false),
      topic: topicName().optional(),
    })
    .prefault({}),
  stallRetryMs: positiveInt().default(5_000),
  metricsPort: portNumber().default(9465),
  heapGrowingPercent: heapGrowingPercent(100),
  logLevel: logLevel(),
});

export type SinkConfig = z.infer<typeof sinkConfigSchema>;
export type SinkTableMapping = z.infer<typeof tableMapping>;

/**
 * libpq `options` for every sink session: startup parameters hold for reconnects too, unlike SET.
 * On Citus:
 *  - the connection cache to the workers (else every batch opens ~30 new worker connections);
 *  - deadlock prevention off: with it, every multi-shard write holds a self-conflicting lock on
 *    each shard it touches until commit, so the apply lanes writing one table would take turns.
 *    The lanes write disjoint keys (a key has one partition) and never wait on each other's
 *    rows; a distributed deadlock would still be cancelled by Citus's detector (40P01, retried);
 *  - new tables stay plain (citus.use_citus_managed_tables): the sink's offsets table must not
 *    become a Citus-managed local table (citus issue 6729), and its staging tables are
 *    distributed by the sink itself.
 */
export function sessionOptions(config: Pick<SinkConfig, 'batch' | 'citus' | 'sessionReplicationRole'>, citus: boolean): string {
  // Input that depends on settings a destination may change per database or role:
  // - money follows lc_monetary (a de_DE destination would read 1234.56 as 123456): the sink
  //   sends the C form, as the source reads it;
  // - with array_nulls off, `NULL` in an array literal is the string "NULL": the unnest
  //   parameters carry SQL NULLs that way (a NULL text column would arrive as 'NULL');
  // - with xmloption document, xml content fragments (`text <b/>`) are refused;
  // - with standard_conforming_strings off, a backslash in a quoted name (staging table, group
  //   id, topic in the offsets SQL) would be read as an escape.
  const opts = [
    `-c synchronous_commit=${config.batch.synchronousCommit}`,
    '-c lc_monetary=C -c array_nulls=on -c xmloption=content -c standard_conforming_strings=on',
    `-c idle_in_transaction_session_timeout=${config.batch.idleInTransactionTimeoutMs}`,
  ];
  if (config.sessionReplicationRole === 'replica') opts.push('-c session_replication_role=replica');
  if (citus) {
    opts.push(`-c citus.max_cached_conns_per_worker=${config.citus.maxCachedConnsPerWorker}`);
    if (!config.citus.enableDeadlockPrevention) opts.push('-c citus.enable_deadlock_prevention=off');
    opts.push('-c citus.use_citus_managed_tables=off');
  }
  return opts.join(' ');
}

/** Load the sink configuration from a file and `SHARDBRIDGE_SINK_*` variables; throws ConfigError. */
export function loadSinkConfig(opts: { file?: string; env?: NodeJS.ProcessEnv; overrides?: object } = {}): SinkConfig {
  return loadConfig(sinkConfigSchema, { ...opts, envPrefix: SINK_ENV_PREFIX });
}
