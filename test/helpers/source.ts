/**
 * Helpers for the source connector's integration tests: a config for a test source, and the
 * records of a topic read back from Kafka and decoded through the registry (createAvroType
 * over the schema the registry holds for each record's id).
 */
import { randomBytes } from 'node:crypto';
import type avro from 'avsc';
import { waitFor } from '../../shared/devstack/ports.ts';
import type { KafkaClient } from '../../shared/kafka/client.ts';
import { RegistryClient } from '../../shared/registry/registry-client.ts';
import { decodeWireHeader } from '../../shared/registry/wire-format.ts';
import { createAvroType } from '../../shared/type-mapping/index.ts';
import { sourceConfigSchema, type SourceConfig } from '../../source-connector/config.ts';

export interface RawRecord {
  partition: number;
  offset: bigint;
  key: Buffer | null;
  value: Buffer | null;
}

export interface DecodedRecord {
  partition: number;
  offset: bigint;
  key: Record<string, unknown> | null;
  /** null: a tombstone. */
  value: { before: Record<string, unknown> | null; after: Record<string, unknown> | null; op: string; source: Record<string, unknown>; unchanged_toast: string[] } | null;
}

/** A source config for tests: strict-parsed like the real one, so defaults apply. */
export function testSourceConfig(args: {
  sourceUrl: string;
  kafka: string;
  registry: string;
  prefix?: string;
  extra?: Record<string, unknown>;
}): SourceConfig {
  return sourceConfigSchema.parse({
    name: 'test',
    source: { url: args.sourceUrl },
    kafka: { brokers: [args.kafka] },
    schemaRegistry: { url: args.registry },
    topicPrefix: args.prefix ?? uniquePrefix(),
    metricsPort: 0,
    logLevel: 'warn',
    ...args.extra,
  });
}

export function uniquePrefix(): string {
  return `sb${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
}

/** Every record of `topic` up to its end offsets at the time of the call (keys and values as bytes). */
export async function readRaw(kafka: KafkaClient, topic: string, timeoutMs = 60_000): Promise<RawRecord[]> {
  const admin = kafka.admin();
  const ends = await admin.endOffsets(topic).finally(() => admin.disconnect());
  const wanted = ends.filter((e) => BigInt(e.offset) > 0n);
  if (wanted.length === 0) return [];
  const next = new Map<number, bigint>();
  const out: RawRecord[] = [];
  const consumer = kafka.consumer({ groupId: `test-read-${randomBytes(6).toString('hex')}`, maxWaitTimeMs: 100, maxBytes: 64 << 20 });
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) out.push({ partition: batch.partition, offset: BigInt(m.offset), key: m.key, value: m.value });
        if (!batch.isEmpty()) next.set(batch.partition, BigInt(batch.lastOffset()) + 1n);
      },
    });
    await waitFor(`${topic} read to its end`, () => wanted.every((e) => (next.get(e.partition) ?? 0n) >= BigInt(e.offset)), { timeoutMs, intervalMs: 50 });
  } finally {
    await consumer.disconnect();
  }
  return out.sort((a, b) => a.partition - b.partition || (a.offset < b.offset ? -1 : 1));
}

/** Decodes Confluent-framed Avro through the registry; one avsc type per schema id. */
export class RegistryDecoder {
  private readonly registry: RegistryClient;
  private readonly types = new Map<number, Promise<avro.Type>>();

  constructor(url: string) {
    this.registry = new RegistryClient({ url });
  }

  async decode(buf: Buffer | null): Promise<any> {
    if (buf === null) return null;
    const { schemaId, payloadOffset } = decodeWireHeader(buf);
    let t = this.types.get(schemaId);
    if (!t) this.types.set(schemaId, (t = this.registry.getSchema(schemaId).then((s) => createAvroType(s))));
    return (await t).fromBuffer(buf.subarray(payloadOffset));
  }
}

export async function readDecoded(kafka: KafkaClient, decoder: RegistryDecoder, topic: string): Promise<DecodedRecord[]> {
  const raw = await readRaw(kafka, topic);
  const out: DecodedRecord[] = [];
  for (const r of raw) out.push({ partition: r.partition, offset: r.offset, key: await decoder.decode(r.key), value: await decoder.decode(r.value) });
  return out;
}

/** JSON records of a control topic. */
export async function readJson(kafka: KafkaClient, topic: string): Promise<{ key: string; value: any }[]> {
  return (await readRaw(kafka, topic)).map((r) => ({ key: r.key?.toString() ?? '', value: r.value ? JSON.parse(r.value.toString()) : null }));
}

/**
 * The table state Kafka describes: per key (JSON of the key record), the last `after` row; a
 * delete or tombstone removes the key, a truncate empties the table. Records are put in
 * source order by their commit LSN (`source.lsn`; a tombstone takes its delete's), which
 * keeps partition order within a transaction: keys of one table land on one partition each.
 */
export function finalState(records: DecodedRecord[]): Map<string, Record<string, unknown>> {
  const lastLsn = new Map<number, bigint>();
  const ordered = records.map((r) => {
    const lsn = (r.value?.source.lsn as bigint | null | undefined) ?? lastLsn.get(r.partition) ?? 0n;
    lastLsn.set(r.partition, lsn);
    return { r, lsn };
  });
  ordered.sort((a, b) => (a.lsn < b.lsn ? -1 : a.lsn > b.lsn ? 1 : 0));
  const state = new Map<string, Record<string, unknown>>();
  for (const { r } of ordered) {
    if (r.value?.op === 't') {
      state.clear();
      continue;
    }
    const key = stableKey(r.key);
    if (r.value === null || r.value.op === 'd') state.delete(key);
    else if (r.value.after) state.set(key, r.value.after);
  }
  return state;
}

/** JSON with bigints as strings: comparable text for keys and rows. */
export function stableKey(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
}
