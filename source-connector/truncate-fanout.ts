/**
 * A TRUNCATE goes to every partition of the table's topic: one `t` record per partition,
 * so that each partition's consumer sees it after that partition's earlier rows and before
 * its later ones (a single record on one partition is ordered against nothing else).
 *
 * The producer picks partitions from the key (murmur2, as the Java client), so each copy
 * gets a key that hashes to its partition: a small Avro record in the Confluent wire
 * format (generic Avro consumers can decode it through the registry) naming the truncate,
 * how many partitions got it and which one this is. The sink uses that to apply the
 * truncate once all partitions reached it (sink-connector/truncate-barrier.ts). Pure.
 */
import avro from 'avsc';
import { partitionForKey } from '../shared/kafka/murmur2.ts';
import { WIRE_HEADER_LENGTH, decodeWireHeader, encodeWire } from '../shared/registry/wire-format.ts';

/** Registered under `<topicPrefix>.__truncate-key`; the sink decodes this layout (same fields, same order). */
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
  ],
} as const;

export interface TruncateKey {
  truncate: string;
  partitions: number;
  partition: number;
  salt: number;
}

const keyType = avro.Type.forSchema(TRUNCATE_KEY_SCHEMA as unknown as avro.Schema);


/** One key per partition 0..partitions-1, each hashing to its own partition. */
export function truncateKeys(schemaId: number, truncate: string, partitions: number): Buffer[] {
  const out: Buffer[] = [];
  for (let partition = 0; partition < partitions; partition++) {
    // Each salt hits the partition with probability 1/partitions: a few tries at most in practice.
    for (let salt = 0; ; salt++) {
      const key = encodeWire(schemaId, keyType.toBuffer({ truncate, partitions, partition, salt }));
      if (partitionForKey(key, partitions) === partition) {
        out.push(key);
        break;
      }
      if (salt > 1_000_000) throw new Error(`no truncate key hashes to partition ${partition} of ${partitions}`);
    }
  }
  return out;
}

/** The fan-out key of a truncate record, or null for anything else (a null key: an older source). */
export function parseTruncateKey(buf: Buffer | null): { id: string; partitions: number; partition: number } | null {
  if (buf === null || buf.length <= WIRE_HEADER_LENGTH) return null;
  try {
    decodeWireHeader(buf);
    const k = keyType.fromBuffer(buf.subarray(WIRE_HEADER_LENGTH)) as TruncateKey;
    return { id: k.truncate, partitions: k.partitions, partition: k.partition };
  } catch {
    return null;
  }
}
