/**
 * Kafka sends for the source connector: change events are encoded here (Confluent wire
 * format, the table version's avsc types built once, into shared slabs), checked against their
 * topic's record limits and the copy guard, and queued on the send queue this extends
 * (send-queue.ts: batches, one in flight, acknowledgements to the LsnTracker, back-pressure).
 */
import type avro from 'avsc';
import { SchemaError } from '../shared/errors.ts';
import { WIRE_HEADER_LENGTH } from '../shared/registry/wire-format.ts';
import type { ChangeEvent, Envelope } from './envelope.ts';
import type { TrackedTx } from './lsn-tracker.ts';
import type { RowTranscoder, TranscodedOp, TupleRef } from './row-transcode.ts';
import { RecordSlab } from './record-slab.ts';
import { describeKey, largestRecord, recordTooLarge, type RecordLimits } from './record-limits.ts';
import type { CopyGuard } from './copy-guard.ts';
import { SendQueue, type SendQueueOptions } from './send-queue.ts';

/** What publish() needs of a table version. */
export interface PublishTarget {
  topic: string;
  /** `schema.table`: metric label and error context. */
  qualified: string;
  keySchemaId: number | null;
  valueSchemaId: number;
  schemas: { keyType: avro.Type | null; envelopeType: avro.Type };
}

export interface PublisherOptions extends SendQueueOptions {
  /**
   * What a table topic takes (record-limits.ts): a record above it stops the connector here,
   * naming table, key and size, instead of after Kafka's refusal or, past the brokers' request
   * limit, a send retried without end.
   */
  limits?: (topic: string) => RecordLimits | undefined;
}

export class Publisher extends SendQueue {
  private readonly limits?: (topic: string) => RecordLimits | undefined;
  /** The largest record of the last target's topic: records come in runs of one table. */
  private sized: PublishTarget | null = null;
  private sizeLimit = Infinity;
  private readonly slab = new RecordSlab();

  constructor(opts: PublisherOptions) {
    super(opts);
    this.limits = opts.limits;
  }

  /** Encode and queue change events of one table version; `tx` is the source transaction (null: snapshot). */
  publish(target: PublishTarget, events: ChangeEvent[], tx: TrackedTx | null): void {
    if (this.failure) throw this.failure;
    for (let i = 0; i < events.length; i++) {
      const ev = events[i];
      let key: Buffer | null = null;
      let value: Buffer | null = null;
      try {
        if (ev.key !== null) key = this.slab.encode(target.schemas.keyType!, target.keySchemaId!, ev.key);
        if (ev.value !== null) value = this.slab.encode(target.schemas.envelopeType, target.valueSchemaId, ev.value);
      } catch (err) {
        throw new SchemaError(`cannot encode a record of ${target.qualified}`, { cause: err, context: { table: target.qualified, topic: target.topic } });
      }
      if (tx === null && key !== null && this.guard !== null && !this.guard.admits(target.topic, key)) continue;
      this.checkSize(target, key, value, () => ev.key);
      this.push(target.topic, key, value, tx, this.counter(target.qualified, ev.value === null ? 'tombstone' : ev.value.op));
    }
  }

  /**
   * A change whose key and envelope the row transcoder writes straight into the slab from the
   * pgoutput tuple (row-transcode.ts), plus its tombstone for a delete when `tombstone`.
   * False when the transcoder does not take it: nothing was queued, the caller takes the
   * general path.
   */
  publishTranscoded(target: PublishTarget, tc: RowTranscoder, op: TranscodedOp, src: Buffer, tuple: TupleRef, source: Buffer, tsMs: number, tx: TrackedTx | null, tombstone: boolean): boolean {
    if (this.failure) throw this.failure;
    const slab = this.slab;
    if (!slab.transcode(tc, target.keySchemaId!, target.valueSchemaId, op, src, tuple, source, tsMs)) return false;
    const { key, value } = slab;
    if (tx === null && this.guard !== null && !this.guard.admits(target.topic, key)) return true;
    this.checkSize(target, key, value, () => target.schemas.keyType!.fromBuffer(key.subarray(WIRE_HEADER_LENGTH)));
    this.push(target.topic, key, value, tx, this.counter(target.qualified, op));
    if (tombstone) this.push(target.topic, key, null, tx, this.counter(target.qualified, 'tombstone'));
    return true;
  }

  /**
   * One event sent once per key, value encoded once: a truncate's copies for every partition
   * (each key hashes to its own partition, see truncate-fanout.ts).
   */
  publishFanout(target: PublishTarget, value: Envelope, keys: Buffer[], tx: TrackedTx | null): void {
    if (this.failure) throw this.failure;
    let bytes: Buffer;
    try {
      bytes = this.slab.encode(target.schemas.envelopeType, target.valueSchemaId, value);
    } catch (err) {
      throw new SchemaError(`cannot encode a record of ${target.qualified}`, { cause: err, context: { table: target.qualified, topic: target.topic } });
    }
    const counter = this.counter(target.qualified, value.op);
    for (const key of keys) {
      const batch = this.push(target.topic, key, bytes, tx, counter);
      (batch.fanouts ??= []).push(batch.messages.length - 1);
    }
  }

  /** Queue a record that is already bytes (control topics). */
  publishRaw(topic: string, key: Buffer | null, value: Buffer | null, tx: TrackedTx | null = null): void {
    if (this.failure) throw this.failure;
    this.push(topic, key, value, tx, null);
  }

  /** Note the keys of stream records (and leave out snapshot rows of those keys) until the returned release is called. */
  guardKeys(guard: CopyGuard): () => void {
    this.guard = guard;
    return () => {
      if (this.guard === guard) this.guard = null;
    };
  }

  /** A guarded table's change may be sent now rather than wait for the copy (copy-guard.ts). */
  get guardRoom(): boolean {
    return this.guard?.room ?? false;
  }

  /** A record larger than its topic takes stops the connector before it is queued (its transaction is then never confirmed). */
  private checkSize(target: PublishTarget, key: Buffer | null, value: Buffer | null, keyOf: () => unknown): void {
    if (!this.limits) return;
    if (target !== this.sized) {
      this.sized = target;
      this.sizeLimit = largestRecord(this.limits(target.topic) ?? {});
    }
    const bytes = (key?.length ?? 0) + (value?.length ?? 0);
    if (bytes <= this.sizeLimit) return;
    let text: string;
    try {
      text = describeKey(keyOf());
    } catch {
      text = '(undecodable)';
    }
    throw recordTooLarge({ table: target.qualified, topic: target.topic, key: text, bytes, limits: this.limits(target.topic) ?? {} });
  }
}
