/**
 * Kafka record → SinkChange. Schemas come from the registry by id, once; per schema id the
 * sink compiles an avsc type and a field → destination column → text encoder list
 * (schema-compile.ts) and caches it here, so the per-record work is one avsc decode plus one
 * encoder call per non-null field.
 *
 * `prepare(records)` is the only async step (fetching unseen schema ids); `decode` is
 * synchronous. A keyed tombstone (null value) decodes to a delete of its key: on a compacted
 * topic it may be all that is left of a delete (compaction removes the `d` record the tombstone
 * follows). Its key columns are named through the topic's latest value schema (renames are per
 * table, and a tombstone names no value schema). A keyless one decodes to null. Anything
 * undecodable throws a DecodeError naming topic, partition and offset.
 */
import { DecodeError, SchemaError, ShardBridgeError, isRetriable } from '../shared/errors.ts';
import { settledInParallel } from '../shared/in-parallel.ts';
import { decodeWireHeader, peekSchemaId, WIRE_HEADER_LENGTH } from '../shared/registry/wire-format.ts';
import type { ConsumedMessage } from '../shared/kafka/client.ts';
import type { SinkChange } from './sink-change.ts';
import type { RecordSchemas } from './fast-rows.ts';
import {
  compileKey,
  compileValue,
  describedBy,
  recordSchemas,
  renamedKey,
  type FieldConverter,
  type KeyDecoder,
  type TableVersion,
  type TargetFor,
  type ValueDecoder,
} from './schema-compile.ts';
import { keySpan, newSpan, spanSchemaId, valueSpan } from './record-bytes.ts';

export interface SchemaSource {
  getSchema(id: number): Promise<object>;
  /** The latest id and schema under a subject, null when it has none (for `warm`). */
  latestSchema?(subject: string): Promise<{ id: number; schema: object } | null>;
  /** When the registry last answered anything (0: never): a prepare that takes long on a registry that answers is not waiting on a dead one. */
  answeredAt?(): number;
}

/**
 * A Kafka record as the sink reads it: the consumer's records as they are (their key and
 * value read in place through record-bytes.ts), or one made with Buffers (tests).
 */
export type RawRecord = Pick<
  ConsumedMessage,
  'topic' | 'partition' | 'offset' | 'key' | 'value' | 'bytes' | 'keyStart' | 'keyLength' | 'valueStart' | 'valueLength'
>;

export interface DecodedRecord {
  change: SinkChange;
  table: TableVersion;
  /** Source key columns in destination names (from the key schema); null without a key. */
  keyColumns: readonly string[] | null;
}

interface Envelope {
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  op: string;
  unchanged_toast?: string[];
}

const OPS = new Set(['c', 'u', 'd', 'r', 't']);
/** Registry requests a prepare has in flight at most. */
const SCHEMA_FETCHES_AT_ONCE = 8;
/** Topics whose schemas a warm-up compiles ahead, at most. */
export const WARM_TOPICS_AT_MOST = 64;
export class RecordDecoder {
  private readonly values = new Map<number, ValueDecoder>();
  private readonly keys = new Map<number, KeyDecoder>();
  /** Schema ids the registry refused during the last prepare (retried on the next one). */
  private readonly failed = new Map<number, unknown>();
  /** Per topic, the value decoder of its highest schema id (the registry's ids grow): what a tombstone's key is read with. */
  private readonly latestOf = new Map<string, ValueDecoder>();
  /** Topics whose latest value schema a tombstone asked for and the registry does not have (retried on the next prepare). */
  private readonly noValue = new Map<string, unknown>();
  /** prepare and describe read schema ids in place (record-bytes.ts); both are synchronous per record. */
  private readonly span = newSpan();

  constructor(
    private readonly registry: SchemaSource,
    private readonly targetFor: TargetFor,
    /** Topic prefix, to name the table when a schema lacks `pg.schema` / `pg.table`. */
    private readonly topicPrefix: string,
  ) {}

  /**
   * Fetch and compile every schema id these records use that is not cached. A registry
   * failure that may pass (unreachable, 5xx) is thrown for the caller's retry; a refusal
   * (unknown id) is remembered so that `decode` reports the record.
   */
  async prepare(records: readonly RawRecord[]): Promise<void> {
    this.failed.clear();
    const keyIds = new Set<number>();
    // A value schema is compiled with the topic it was first seen on (it names the table when the schema does not).
    const valueTopics = new Map<number, string>();
    // Topics of keyed tombstones with no value schema seen yet (a replay of a compacted topic may start with one).
    const tombstoneTopics = new Set<string>();
    this.noValue.clear();
    const span = this.span;
    for (const r of records) {
      const k = keySpan(r, span) ? spanSchemaId(span) : null;
      if (k !== null && !this.keys.has(k)) keyIds.add(k);
      const v = valueSpan(r, span) ? spanSchemaId(span) : null;
      if (v !== null && !this.values.has(v) && !valueTopics.has(v)) valueTopics.set(v, r.topic);
      else if (v === null && k !== null && !this.latestOf.has(r.topic)) tombstoneTopics.add(r.topic);
    }
    for (const v of valueTopics.values()) tombstoneTopics.delete(v);
    if (tombstoneTopics.size > 0) await this.latestValues([...tombstoneTopics]);
    // Fetched together, a few at a time (a sink starting on many tables would otherwise wait for
    // each schema in turn), then compiled in order.
    const fetched = new Map<number, PromiseSettledResult<object>>();
    const ids = [...new Set([...keyIds, ...valueTopics.keys()])];
    const results = await settledInParallel(ids, SCHEMA_FETCHES_AT_ONCE, (id) => this.registry.getSchema(id));
    ids.forEach((id, k) => fetched.set(id, results[k]));
    let retriable: unknown = null;
    let refused: unknown = null;
    const load = (id: number, compile: (schema: object) => void): void => {
      const got = fetched.get(id)!;
      if (got.status === 'rejected') {
        if (isRetriable(got.reason)) retriable ??= got.reason;
        // Only an id the registry says it does not have belongs to the records that carry it
        // (reported, or dead-lettered); any other refusal (credentials, a wrong URL) is the
        // sink's, and its records are readable once it is fixed: thrown, to stall the partition.
        else if (schemaNotFound(got.reason)) this.failed.set(id, got.reason);
        else refused ??= got.reason;
        return;
      }
      try {
        compile(got.value);
      } catch (err) {
        // A mapping the configuration makes impossible is the sink's: thrown, to stall the partition.
        if (err instanceof SchemaError) refused ??= err;
        else this.failed.set(id, err); // a schema that does not compile: the records that use it are reported
      }
    };
    // A warm-up (below) may have compiled some meanwhile.
    for (const id of keyIds) if (!this.keys.has(id)) load(id, (schema) => this.keys.set(id, compileKey(schema)));
    for (const [id, topic] of valueTopics) if (!this.values.has(id)) load(id, (schema) => this.compiled(topic, compileValue(id, schema, topic, this.targetFor, this.topicPrefix)));
    if (retriable !== null) throw retriable;
    if (refused !== null) throw refused;
  }

  /**
   * Fetch and compile the latest key and value schemas of `topics` (TopicNameStrategy subjects)
   * with their COPY transcoders, before the topics' first records arrive: the connector runs
   * this while its consumer joins the group, so that the first batches do not wait for the
   * registry and the compiler. Best effort, and for the first WARM_TOPICS_AT_MOST topics only
   * (a sink over thousands of tables would otherwise compile them all at start, idle ones
   * included): anything not ready when a record names it is fetched then, as without a warm-up.
   * Resolves to the number of topics whose schemas are ready.
   */
  /** A compiled value decoder, remembered as its topic's latest when its id is the highest seen there. */
  private compiled(topic: string, d: ValueDecoder): void {
    this.values.set(d.version.schemaId, d);
    const known = this.latestOf.get(topic);
    if (!known || known.version.schemaId < d.version.schemaId) this.latestOf.set(topic, d);
  }

  /** The latest value schema of each topic (TopicNameStrategy subject), for tombstones that come before any value of their topic. */
  private async latestValues(topics: string[]): Promise<void> {
    const latest = this.registry.latestSchema?.bind(this.registry);
    if (!latest) return;
    const found = await settledInParallel(topics, SCHEMA_FETCHES_AT_ONCE, (t) => latest(`${t}-value`));
    topics.forEach((topic, i) => {
      const got = found[i];
      if (got.status === 'rejected') {
        if (isRetriable(got.reason)) throw got.reason;
        this.noValue.set(topic, got.reason);
      } else if (got.value === null) {
        this.noValue.set(topic, null);
      } else {
        const { id, schema } = got.value;
        try {
          this.compiled(topic, this.values.get(id) ?? compileValue(id, schema, topic, this.targetFor, this.topicPrefix));
        } catch (err) {
          if (err instanceof SchemaError) throw err;
          this.noValue.set(topic, err);
        }
      }
    });
  }

  /** When the registry last answered a request (any status); 0 when not known. */
  registryAnsweredAt(): number {
    return this.registry.answeredAt?.() ?? 0;
  }

  /** The schema ids `records` name that are not compiled yet (what a prepare of them fetches), for a log line. */
  missing(records: readonly RawRecord[]): number[] {
    const ids = new Set<number>();
    const span = this.span;
    for (const r of records) {
      const k = keySpan(r, span) ? spanSchemaId(span) : null;
      if (k !== null && !this.keys.has(k)) ids.add(k);
      const v = valueSpan(r, span) ? spanSchemaId(span) : null;
      if (v !== null && !this.values.has(v)) ids.add(v);
    }
    return [...ids].sort((x, y) => x - y);
  }

  async warm(topics: readonly string[]): Promise<number> {
    const latest = this.registry.latestSchema?.bind(this.registry);
    if (!latest) return 0;
    const some = topics.slice(0, WARM_TOPICS_AT_MOST);
    const found = await settledInParallel(some, SCHEMA_FETCHES_AT_ONCE, (t) => Promise.all([latest(`${t}-key`), latest(`${t}-value`)]));
    let ready = 0;
    some.forEach((topic, i) => {
      const got = found[i];
      if (got.status === 'rejected' || got.value[1] === null) return;
      const [key, value] = got.value;
      try {
        if (!this.values.has(value.id)) this.compiled(topic, compileValue(value.id, value.schema, topic, this.targetFor, this.topicPrefix));
        const vd = this.values.get(value.id)!;
        if (key !== null) {
          if (!this.keys.has(key.id)) this.keys.set(key.id, compileKey(key.schema));
          const kd = this.keyDecoderFor(key.id, vd)!;
          describedBy(vd, key.id, kd);
        }
        ready++;
      } catch {
        // left to prepare, which reports it against the record that names it
      }
    });
    return ready;
  }

  /** The change carried by `r`: a delete for a keyed tombstone, null for a keyless one. Throws DecodeError. */
  decode(r: RawRecord): DecodedRecord | null {
    const bytes = r.value; // a new view on each read of a consumed record's value
    if (bytes === null) return r.key === null ? null : this.tombstone(r, r.key);
    const value = this.valueDecoder(bytes, r);
    let env: Envelope;
    try {
      env = value.type.fromBuffer(bytes.subarray(WIRE_HEADER_LENGTH), value.resolver) as Envelope;
    } catch (err) {
      throw new DecodeError(`record value does not decode with schema ${value.version.schemaId}: ${(err as Error).message}`, {
        context: { ...where(r), schemaId: value.version.schemaId },
        cause: err,
        remedy: 'the bytes are corrupt or were not written with the schema their header names',
      });
    }
    const op = env.op;
    if (!OPS.has(op)) throw new DecodeError(`unknown op "${op}"`, { context: { ...where(r), schemaId: value.version.schemaId } });
    let key: Record<string, string> = {};
    let keyColumns: readonly string[] | null = null;
    const keyBytes = op === 't' ? null : r.key;
    if (keyBytes !== null) {
      const kd = this.keyDecoder(keyBytes, value, r);
      keyColumns = kd.columns;
      key = convertKey(kd, keyBytes, r);
    }
    let after: Record<string, string | null> | null = null;
    let before: Record<string, string | null> | null = null;
    try {
      if (env.after) after = convertRow(value.fields, env.after, false);
      // A delete's before-image under default identity has nulls for every non-key column:
      // keep only values, so a null never passes for a known old value (e.g. of a distribution column).
      if (env.before) before = convertRow(value.fields, env.before, op === 'd');
    } catch (err) {
      throw new DecodeError(`a field value has no PostgreSQL text form: ${(err as Error).message}`, {
        context: { ...where(r), schemaId: value.version.schemaId },
        cause: err,
      });
    }
    let unchangedToast: string[] = [];
    const toast = env.unchanged_toast;
    if (toast && toast.length > 0) {
      unchangedToast = toast.map((c) => value.destOf.get(c) ?? c);
      if (after) for (const c of unchangedToast) delete after[c];
    }
    const change: SinkChange = {
      op: op as SinkChange['op'],
      topic: r.topic,
      partition: r.partition,
      offset: r.offset,
      key,
      after,
      before,
      unchangedToast,
    };
    return { change, table: value.version, keyColumns };
  }

  /** A tombstone as a delete of its key, with no before-image (where the row sits is unknown). */
  private tombstone(r: RawRecord, keyBytes: Buffer): DecodedRecord {
    const value = this.latestOf.get(r.topic);
    if (!value) {
      const why = this.noValue.get(r.topic);
      throw new DecodeError(`tombstone on a topic whose value schema is not known: ${why instanceof Error ? why.message : 'the registry has no subject ' + r.topic + '-value'}`, {
        context: where(r),
        cause: why,
        remedy: 'is the sink reading the registry the source wrote to? the key columns of a tombstone are named by its topic\'s value schema',
      });
    }
    const kd = this.keyDecoder(keyBytes, value, r);
    const change: SinkChange = {
      op: 'd',
      topic: r.topic,
      partition: r.partition,
      offset: r.offset,
      key: convertKey(kd, keyBytes, r),
      after: null,
      before: null,
      unchangedToast: [],
      tombstone: true,
    };
    return { change, table: value.version, keyColumns: kd.columns };
  }

  private valueDecoder(buf: Buffer, at: At): ValueDecoder {
    const id = schemaIdOf(buf, at, 'value');
    const d = this.values.get(id);
    if (d) return d;
    throw unknownSchema(id, this.failed.get(id), at, 'value');
  }

  private keyDecoder(buf: Buffer, value: ValueDecoder, at: At): KeyDecoder {
    const id = schemaIdOf(buf, at, 'key');
    const d = this.keyDecoderFor(id, value);
    if (d) return d;
    throw unknownSchema(id, this.failed.get(id), at, 'key');
  }

  /** The key decoder of key schema `id` with this value schema's column renames; null when the id is not known. */
  private keyDecoderFor(id: number, value: ValueDecoder): KeyDecoder | null {
    let d = value.keys.get(id);
    if (d) return d;
    const raw = this.keys.get(id);
    if (!raw) return null;
    d = renamedKey(raw, value);
    value.keys.set(id, d);
    return d;
  }

  /**
   * The schemas of a record for the fast-row plan (fast-rows.ts), without decoding it; null
   * when they are not known (the general decode then reports why). A tombstone's are its
   * topic's latest value schema with its key schema, as `decode` reads it: its table.
   */
  describe(r: RawRecord): RecordSchemas | null {
    const span = this.span;
    let value: ValueDecoder | undefined;
    if (valueSpan(r, span)) {
      const vid = spanSchemaId(span);
      value = vid === null ? undefined : this.values.get(vid);
    } else value = this.latestOf.get(r.topic);
    if (!value) return null;
    // Keyless (a truncate from another producer): never a fast row, but its op matters to the plan.
    if (!keySpan(r, span)) return (value.keyless ??= recordSchemas(value, -1, [], []));
    const kid = spanSchemaId(span);
    const kd = kid === null ? null : this.keyDecoderFor(kid, value);
    if (!kd) return null;
    return describedBy(value, kid!, kd);
  }

}

function convertRow(fields: FieldConverter[], row: Record<string, unknown>, dropNulls: boolean): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i];
    const v = row[f.field];
    if (v === null || v === undefined) {
      if (!dropNulls) out[f.column] = null;
    } else {
      out[f.column] = f.encode(v);
    }
  }
  return out;
}

function convertKey(kd: KeyDecoder, buf: Buffer, at: At): Record<string, string> {
  let k: Record<string, unknown>;
  try {
    k = kd.type.fromBuffer(buf.subarray(WIRE_HEADER_LENGTH)) as Record<string, unknown>;
  } catch (err) {
    throw new DecodeError(`record key does not decode: ${(err as Error).message}`, { context: where(at), cause: err });
  }
  const out: Record<string, string> = {};
  for (const f of kd.fields) {
    const v = k[f.field];
    if (v === null || v === undefined) throw new DecodeError(`record key lacks a value for ${f.column}`, { context: { ...where(at), column: f.column } });
    out[f.column] = f.encode(v);
  }
  return out;
}

function schemaIdOf(buf: Buffer, at: At, what: string): number {
  const id = peekSchemaId(buf);
  if (id !== null) return id;
  try {
    return decodeWireHeader(buf).schemaId;
  } catch (err) {
    const e = err as ShardBridgeError;
    throw new DecodeError(`record ${what}: ${e.message}`, { context: { ...where(at), ...e.context }, cause: err, remedy: e.remedy });
  }
}

/** Where a record is, for error context (built only when there is an error: decode is per record). */
type At = Pick<RawRecord, 'topic' | 'partition' | 'offset'>;
const where = (r: At) => ({ topic: r.topic, partition: r.partition, offset: r.offset });

function unknownSchema(id: number, cause: unknown, at: At, what: string): DecodeError {
  const why = cause instanceof Error ? cause.message : 'not fetched';
  return new DecodeError(`record ${what} names schema id ${id}, which cannot be used: ${why}`, {
    context: { ...where(at), schemaId: id },
    cause,
    remedy: 'is the sink reading the registry the source wrote to? an unknown id means another registry or a corrupt header',
  });
}



/** The registry's "schema not found" (error code 40403), as opposed to a refusal of the caller. */
function schemaNotFound(err: unknown): boolean {
  return err instanceof ShardBridgeError && err.context.errorCode === 40403;
}
