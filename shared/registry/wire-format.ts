/**
 * Confluent wire format: magic byte 0, the schema id as a 4-byte big-endian unsigned
 * integer, then the Avro binary payload. Pure; no registry access here.
 */
import { DecodeError } from '../errors.ts';

export const WIRE_MAGIC_BYTE = 0;
export const WIRE_HEADER_LENGTH = 5;

/**
 * Writes the 5-byte header at the start of `buf`. For callers that encode the Avro body
 * straight into a buffer at offset WIRE_HEADER_LENGTH and want no copy at all.
 */
export function writeWireHeader(buf: Buffer, schemaId: number, at = 0): void {
  checkSchemaId(schemaId);
  buf[at] = WIRE_MAGIC_BYTE;
  buf.writeUInt32BE(schemaId, at + 1);
}

/** Header + payload in one allocation (Buffer.concat would also build a header buffer). */
export function encodeWire(schemaId: number, avroPayload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(WIRE_HEADER_LENGTH + avroPayload.length);
  writeWireHeader(out, schemaId);
  avroPayload.copy(out, WIRE_HEADER_LENGTH);
  return out;
}

/**
 * The schema id of a wire header at `buf[start, end)`, or null when there is none (too short,
 * another magic byte): for hot paths that read ids in place; decodeWireHeader says why not.
 */
export function peekSchemaId(buf: Buffer, start = 0, end = buf.length): number | null {
  if (end - start < WIRE_HEADER_LENGTH || buf[start] !== WIRE_MAGIC_BYTE) return null;
  return buf.readUInt32BE(start + 1);
}

/** Reads the header; the Avro payload is `buf.subarray(payloadOffset)` (no copy). */
export function decodeWireHeader(buf: Buffer): { schemaId: number; payloadOffset: 5 } {
  if (buf.length < WIRE_HEADER_LENGTH) {
    throw new DecodeError(`record value too short for the Confluent wire format: ${buf.length} bytes, need at least ${WIRE_HEADER_LENGTH}`, {
      context: { length: buf.length },
      remedy: 'the topic holds records not written by a Confluent-compatible Avro serializer',
    });
  }
  if (buf[0] !== WIRE_MAGIC_BYTE) {
    throw new DecodeError(`unknown magic byte ${buf[0]} (expected ${WIRE_MAGIC_BYTE}) in Confluent wire format`, {
      context: { magicByte: buf[0], length: buf.length },
      remedy: 'the topic holds records not written by a Confluent-compatible Avro serializer',
    });
  }
  return { schemaId: buf.readUInt32BE(1), payloadOffset: WIRE_HEADER_LENGTH };
}

function checkSchemaId(schemaId: number): void {
  // Confluent ids are Java ints handed out from 1 upwards; anything else is a bug on our side.
  if (!Number.isInteger(schemaId) || schemaId < 0 || schemaId > 0x7fffffff) {
    throw new RangeError(`schema id must be an integer in [0, 2^31-1], got ${schemaId}`);
  }
}
