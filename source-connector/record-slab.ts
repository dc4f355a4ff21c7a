/**
 * Where the source's records are written: header + Avro body straight into the current slab,
 * each record a view of it, not a copy. A full slab is left to the records in it (it is freed
 * with the last of them) and a new one started.
 */
import type avro from 'avsc';
import { WIRE_HEADER_LENGTH, writeWireHeader } from '../shared/registry/wire-format.ts';
import { NOT_HERE, type RowTranscoder, type TranscodedOp, type TupleRef } from './row-transcode.ts';

const SLAB_BYTES = 256 * 1024;

export class RecordSlab {
  private slab = Buffer.allocUnsafe(SLAB_BYTES);
  private pos = 0;
  /** What the last successful `transcode` wrote (fields, not a returned pair: it runs per row). */
  key: Buffer = this.slab.subarray(0, 0);
  value: Buffer = this.key;

  encode(type: avro.Type, schemaId: number, value: unknown): Buffer {
    for (;;) {
      const start = this.pos;
      const end = type.encode(value, this.slab, start + WIRE_HEADER_LENGTH);
      if (end >= 0) {
        writeWireHeader(this.slab, schemaId, start);
        this.pos = end;
        return this.slab.subarray(start, end);
      }
      // -end more bytes were needed.
      this.fresh(this.slab.length - start - end);
    }
  }

  /**
   * A change's key and envelope written by the row transcoder from the pgoutput tuple into
   * `key` and `value`; false when the transcoder does not take it (nothing written).
   */
  transcode(tc: RowTranscoder, keySchemaId: number, valueSchemaId: number, op: TranscodedOp, src: Buffer, tuple: TupleRef, source: Buffer, tsMs: number): boolean {
    let room = 0;
    for (;;) {
      const slab = this.slab;
      const start = this.pos;
      const keyEnd = tc.writeKey(slab, start + WIRE_HEADER_LENGTH, src, tuple);
      if (keyEnd === NOT_HERE) return false;
      const valueEnd = keyEnd < 0 ? keyEnd : tc.writeEnvelope(slab, keyEnd + WIRE_HEADER_LENGTH, op, src, tuple, source, tsMs);
      if (valueEnd === NOT_HERE) return false;
      if (valueEnd >= 0) {
        writeWireHeader(slab, keySchemaId, start);
        writeWireHeader(slab, valueSchemaId, keyEnd);
        this.pos = valueEnd;
        this.key = slab.subarray(start, keyEnd);
        this.value = slab.subarray(keyEnd, valueEnd);
        return true;
      }
      // Sized for the record at once: its values take about their text in the message at most
      // (bytea half of it), then twice that. Doubling from what was left wrote a 30 MB bytea
      // eight times, each time decoding 60 MB of hex.
      room = room === 0 ? src.length + source.length + 256 : 2 * room;
      this.fresh(room);
    }
  }

  /** A new slab for a record that did not fit: room for its `needed` bytes, and for small records after it. */
  private fresh(needed: number): void {
    this.slab = Buffer.allocUnsafe(needed <= SLAB_BYTES / 2 ? SLAB_BYTES : needed + SLAB_BYTES / 2);
    this.pos = 0;
  }
}
