/**
 * The source connector's configuration schema (strict, with defaults). docs/configuration.md
 * describes every key; keep the two in step.
 */
import { z } from 'zod';
import { loadConfig } from '../shared/config/load.ts';
import {
  kafkaSchema,
  logLevel,
  heapGrowingPercent,
  lowerIdentifier,
  nonEmptyString,
  nonNegativeInt,
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

export const SOURCE_ENV_PREFIX = 'SHARDBRIDGE_SOURCE_';

const MiB = 1024 * 1024;

export const sourceConfigSchema = z.strictObject({
  name: nonEmptyString().default('shardbridge'),
  source: section(pgConnectionSchema('source')),
  // When source is a standby (PostgreSQL 16+): its primary, where the connector's writes go
  // (publication, heartbeats, cut-over and resnapshot messages); source-connector/standby.ts.
  primary: pgConnectionSchema('primary').optional(),
  tables: z
    .strictObject({
      schemas: z.array(nonEmptyString()).min(1).default(['public']),
      /** Empty = every table of `schemas`. */
      include: z.array(qualifiedTableName()).default([]),
      exclude: z.array(qualifiedTableName()).default([]),
    })
    .prefault({}),
  topicPrefix: topicName().default('shardbridge'),
  slotName: lowerIdentifier().default('shardbridge_slot'),
  publicationName: lowerIdentifier().default('shardbridge_pub'),
  // A failover slot (PostgreSQL 17+): standbys that sync slots keep it, so a promoted one streams on from it.
  slotFailover: z.boolean().default(false),
  topics: z
    .strictObject({
      partitions: positiveInt().default(6),
      /** Unset: the brokers' default.replication.factor (shared/kafka/topic-durability.ts). */
      replicationFactor: positiveInt().optional(),
      cleanupPolicy: z.enum(['delete', 'compact', 'compact,delete']).default('delete'),
      /** -1 = keep forever. */
      retentionMs: z.number().int().min(-1).optional(),
      /** max.message.bytes of created table topics (the broker's message.max.bytes otherwise, ~1 MB): rows with large values need more. */
      maxMessageBytes: positiveInt().optional(),
    })
    .prefault({}),
  kafka: section(kafkaSchema()),
  schemaRegistry: section(schemaRegistrySchema()),
  snapshot: z
    .strictObject({
      mode: z.enum(['initial', 'never', 'initial_only']).default('initial'),
      chunkSize: positiveInt().default(100_000),
      parallelReaders: positiveInt().default(2),
    })
    .prefault({}),
  heartbeatIntervalMs: positiveInt().default(10_000),
  sequencesIntervalMs: positiveInt().default(60_000),
  tombstones: z.boolean().default(true),
  // Inserts, key-preserving updates and deletes by key written from the pgoutput bytes
  // without decoding their values (row-transcode.ts); false: every change takes the general path.
  transcode: z.boolean().default(true),
  inFlight: z
    .strictObject({
      maxRecords: positiveInt().default(100_000),
      maxBytes: positiveInt().default(64 * MiB),
    })
    .prefault({}),
  metricsPort: portNumber().default(9464),
  // Unset: V8's own growth, or 100 over many tables (shared/heap.ts, sourceHeapGrowingPercent).
  heapGrowingPercent: heapGrowingPercent(),
  walRetentionWarnBytes: nonNegativeInt().default(1024 * MiB),
  logLevel: logLevel(),
});

export type SourceConfig = z.infer<typeof sourceConfigSchema>;

/** Load the source configuration from a file and `SHARDBRIDGE_SOURCE_*` variables; throws ConfigError. */
export function loadSourceConfig(opts: { file?: string; env?: NodeJS.ProcessEnv; overrides?: object } = {}): SourceConfig {
  return loadConfig(sourceConfigSchema, { ...opts, envPrefix: SOURCE_ENV_PREFIX });
}
