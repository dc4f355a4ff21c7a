/**
 * A TRUNCATE goes to every partition of the table's topic: one `t` record per partition,
 * so that each partition's consumer sees it after that partition's earlier rows and before
 * its later ones (a single record on one partition is ordered against nothing else).
 *
 * The producer picks partitions from the key (murmur2, as the Java client), so each copy
 * gets a key that hashes to its partition: a small Avro record in the Confluent wire
 * format (generic Avro consumers can decode it through the registry) naming the truncate,
 * how many partitions got it, which one this is, and the delivery: which session of the
 * source sent it. The sink uses that to apply the truncate once all partitions reached it
 * (sink-connector/truncate-barrier.ts). Pure.
 */
import avro from 'avsc';
import { partitionForKey } from '../shared/kafka/murmur2.ts';
import { WIRE_HEADER_LENGTH, decodeWireHeader, encodeWire } from '../shared/registry/wire-format.ts';

/**
 * Registered under `<topicPrefix>.__truncate-key`. `delivery` came later, last and with a
 * default: a compatible evolution, and keys written without it still decode (delivery 0).
 */
export const TRUNCATE_KEY_SCHEMA = {
  type: 'record',
  name: 'TruncateKey',
  namespace: 'io.shardbridge',
  doc: 'Key of a truncate (op t) record: one copy per partition of the topic',
  fields: [
    { name: 'truncate', type: 'string', doc: 'Identifies the truncate: commit LSN / position in the transaction' },
    { name: 'partitions', type: 'int', doc: 'How many partitions got a copy (0 .. partitions-1)' },
    { name: 'partition', type: 'int', doc: 'The partition this copy is for' },
    { name: 'salt', type: 'int', doc: 'Varied until the key hashes to its partition' },
    {
      name: 'delivery',
      type: 'long',
      default: 0,
      doc: 'Grows from one session of the source to the next (its start on the source database clock, ms): a replayed truncate has a later one; 0 from older sources',
    },
  ],
} as const;

export interface TruncateKey {
  truncate: string;
  partitions: number;
  partition: number;
  salt: number;
  delivery: number;
}

/** A truncate copy's key as the sink reads it. */
export interface ParsedTruncateKey {
  id: string;
  partitions: number;
  partition: number;
  delivery: number;
}

const keyType = avro.Type.forSchema(TRUNCATE_KEY_SCHEMA as unknown as avro.Schema);
/** Keys of sources from before `delivery`: read through Avro schema resolution (delivery = its default). */
const olderKeys = keyType.createResolver(
  avro.Type.forSchema({ ...TRUNCATE_KEY_SCHEMA, fields: TRUNCATE_KEY_SCHEMA.fields.filter((f) => f.name !== 'delivery') } as unknown as avro.Schema),
);

/** One key per partition 0..partitions-1, each hashing to its own partition. */
export function truncateKeys(schemaId: number, truncate: string, partitions: number, delivery: number): Buffer[] {
  return Array.from({ length: partitions }, (_, partition) => truncateKey(schemaId, truncate, partitions, partition, delivery));
}

function truncateKey(schemaId: number, truncate: string, partitions: number, partition: number, delivery: number): Buffer {
  // Each salt hits the partition with probability 1/partitions: a few tries at most in practice.
  for (let salt = 0; salt <= 1_000_000; salt++) {
    const key = encodeWire(schemaId, keyType.toBuffer({ truncate, partitions, partition, salt, delivery }));
    if (partitionForKey(key, partitions) === partition) return key;
  }
  throw new Error(`no truncate key hashes to partition ${partition} of ${partitions}`);
}

/** A copy's key (as truncateKeys makes it) for the same truncate and partition at another delivery. */
export function redelivered(key: Buffer, delivery: number): Buffer {
  const k = keyType.fromBuffer(key.subarray(WIRE_HEADER_LENGTH)) as TruncateKey;
  return truncateKey(decodeWireHeader(key).schemaId, k.truncate, k.partitions, k.partition, delivery);
}

/**
 * The delivery of a session starting at `clockMs` (the source database's clock) after one that
 * used `previous` (0: none in this process): later than it even if the clock stepped back.
 */
export function nextDelivery(clockMs: number, previous: number): number {
  return Math.max(Math.trunc(clockMs), previous + 1);
}

/** The fan-out key of a truncate record, or null for anything else (a null key: an older source). */
export function parseTruncateKey(buf: Buffer | null): ParsedTruncateKey | null {
  if (buf === null || buf.length <= WIRE_HEADER_LENGTH) return null;
  try {
    decodeWireHeader(buf);
  } catch {
    return null;
  }
  const payload = buf.subarray(WIRE_HEADER_LENGTH);
  // The newer layout has one more field: an older key runs out before it, a newer one is too long for the older layout.
  for (const read of [() => keyType.fromBuffer(payload), () => keyType.fromBuffer(payload, olderKeys)]) {
    try {
      const k = read() as TruncateKey;
      return { id: k.truncate, partitions: k.partitions, partition: k.partition, delivery: k.delivery };
    } catch {
      // not this layout
    }
  }
  return null;
}
