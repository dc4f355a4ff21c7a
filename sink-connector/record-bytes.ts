/**
 * A record's key or value read where it lies. Records from the consumer carry their place in
 * the fetched bytes (ConsumedMessage.bytes, shared/kafka/client.ts): reading them there makes
 * no Buffer per record, which was a fifth of the sink's allocations. Records made otherwise
 * (tests, dead letters) carry Buffers. A Span is filled in place, one per reader. Pure.
 */
import type { RawRecord } from './decode.ts';
import { peekSchemaId } from '../shared/registry/wire-format.ts';

export interface Span {
  buf: Buffer;
  start: number;
  end: number;
}

const EMPTY = Buffer.alloc(0);

export const newSpan = (): Span => ({ buf: EMPTY, start: 0, end: 0 });

/** Fills `into` with the record's value; false for a null value (a tombstone). */
export function valueSpan(r: RawRecord, into: Span): boolean {
  if (r.bytes !== undefined) return fill(into, r.bytes, r.valueStart!, r.valueLength!);
  const v = r.value;
  return v !== null && fill(into, v, 0, v.length);
}

/** Fills `into` with the record's key; false for a null key. */
export function keySpan(r: RawRecord, into: Span): boolean {
  if (r.bytes !== undefined) return fill(into, r.bytes, r.keyStart!, r.keyLength!);
  const k = r.key;
  return k !== null && fill(into, k, 0, k.length);
}

function fill(into: Span, buf: Buffer, start: number, length: number): boolean {
  if (length < 0) return false;
  into.buf = buf;
  into.start = start;
  into.end = start + length;
  return true;
}

/** The schema id of a Confluent wire header at the span's start; null when there is none. */
export function spanSchemaId(s: Span): number | null {
  return peekSchemaId(s.buf, s.start, s.end);
}
