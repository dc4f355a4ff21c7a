/**
 * Dead-letter mode: undecodable records go to the dead-letter topic as they were, with headers
 * naming the error and where they came from, acknowledged by Kafka (acks=all) before the
 * transaction that moves the stored offset past them. A chunk whose apply stalls after its dead
 * letters went out is fetched again at each stall retry: what a partition already sent (or is
 * still sending) is remembered so that they go out once; after a crash, a rebalance or a
 * `replay` they may go out again. Sends are cut under the topic's size limit; a record that
 * cannot go (larger than the limit alone, the topic gone, Kafka not acknowledging) stalls its
 * partition at it. Logged in summary: a flood of bad records is one line a minute per partition.
 */
import { ShardBridgeError, ServiceError, type DecodeError } from '../shared/errors.ts';
import type { MessageHeaders, OutMessage } from '../shared/kafka/client.ts';
import { suggestedLimit } from '../shared/kafka/producer.ts';
import type { RawRecord } from './decode.ts';
import { tpKey } from './offsets.ts';

export interface DeadLetterTarget extends DeadLetterOrigin {
  topic: string;
  send(messages: OutMessage[]): Promise<void>;
}

/** Who set the records aside, named in every dead letter (Kafka Connect's connector name and group). */
export interface DeadLetterOrigin {
  connector?: string;
  groupId?: string;
}

/** `timestamp`, `headers`: the consumer's records carry them (records made in tests may not). */
type SetAside = { raw: RawRecord & { timestamp?: string; headers?: MessageHeaders }; deadLetter?: DecodeError };

/**
 * Bytes of dead letters per send at most: Kafka checks a partition's whole record batch against
 * the topic's max.message.bytes (broker default 1 MiB), and one fetch of small undecodable
 * records (1 MiB per partition) grows past it with the error headers each letter carries.
 */
export const DEAD_LETTER_SEND_BYTES = 512 * 1024;
/**
 * How long a send may go unacknowledged before its partition stalls. The producer retries what
 * Kafka calls retriable (a topic missing, no leader, too few in-sync replicas) without end, so
 * without this a deleted dead-letter topic held its partition back silently. The send goes on
 * meanwhile: the stall's retry waits for it instead of sending again.
 */
export const DEAD_LETTER_ACK_MS = 15_000;
/** One summary line per partition at most this often; the rest at debug (the metric counts all). */
export const DEAD_LETTER_LOG_EVERY_MS = 60_000;

/**
 * Dead letters: the record's key, value and headers as they were, with ours added (Kafka
 * Connect's `__connect.errors.*` in our names: topic, partition, offset, exception class and
 * message, connector and group; see docs/sink-connector.md). Pure.
 */
export function deadLetterMessages(topic: string, items: readonly SetAside[], origin: DeadLetterOrigin = {}): OutMessage[] {
  return items.map(({ raw, deadLetter: err }) => ({
    topic,
    key: raw.key,
    value: raw.value,
    headers: {
      ...originalHeaders(raw.headers),
      'shardbridge.error': err?.message ?? 'undecodable',
      'shardbridge.error.class': err?.constructor.name ?? 'DecodeError',
      'shardbridge.error.remedy': err?.remedy ?? '',
      'shardbridge.original.topic': raw.topic,
      'shardbridge.original.partition': String(raw.partition),
      'shardbridge.original.offset': raw.offset,
      // For `replay --to-time` and for finding the source transaction.
      ...(raw.timestamp !== undefined && { 'shardbridge.original.timestamp': raw.timestamp }),
      ...(origin.connector !== undefined && { 'shardbridge.connector': origin.connector }),
      ...(origin.groupId !== undefined && { 'shardbridge.group.id': origin.groupId }),
    },
  }));
}

/**
 * The record's own headers, repeated keys kept (kafkajs writes an array as one header per
 * value; OutMessage's type has no arrays, hence the cast).
 */
function originalHeaders(headers: MessageHeaders | undefined): Record<string, string | Buffer> {
  const out: Record<string, string | Buffer | (string | Buffer)[]> = {};
  for (const [k, v] of Object.entries(headers ?? {})) if (v !== undefined) out[k] = v;
  return out as Record<string, string | Buffer>;
}

/** A dead letter's bytes as Kafka counts them against max.message.bytes (record overhead included, roughly). Pure. */
export function letterBytes(m: OutMessage): number {
  let n = 70 + (m.key?.length ?? 0) + (m.value?.length ?? 0);
  for (const [k, v] of Object.entries(m.headers ?? {})) {
    for (const x of ([] as (string | Buffer)[]).concat(v)) n += 2 + Buffer.byteLength(k) + (typeof x === 'string' ? Buffer.byteLength(x) : x.length);
  }
  return n;
}

/** How many of `messages` (from the first) go in the next send of at most `maxBytes`: one at least. Pure. */
export function nextSendCount(messages: readonly OutMessage[], maxBytes: number): number {
  let bytes = 0;
  for (let i = 0; i < messages.length; i++) {
    bytes += letterBytes(messages[i]);
    if (bytes > maxBytes && i > 0) return i;
  }
  return messages.length;
}

/** Kafka refused the send as too large for the topic (the producer's ConfigError keeps kafkajs's error as cause). */
export function refusedAsTooLarge(err: unknown): boolean {
  for (let e: any = err, depth = 0; e && depth < 8; e = e.cause, depth++) {
    if (e.type === 'MESSAGE_TOO_LARGE' || e.type === 'RECORD_LIST_TOO_LARGE') return true;
  }
  return false;
}

/** Why a dead letter did not go: its partition stalls at the record with this. Pure. */
export function notSent(
  why: 'too-large' | 'no-ack' | 'refused',
  at: { topic: string; partition: number; offset: string; bytes: number },
  deadLetterTopic: string,
  cause?: unknown,
): ShardBridgeError {
  const where = `${at.topic}[${at.partition}] offset ${at.offset}`;
  const context = { topic: at.topic, partition: at.partition, offset: at.offset, deadLetterTopic };
  const retried = 'the partition is retried by itself; nothing after the record is applied meanwhile';
  if (why === 'too-large') {
    return new ServiceError(`the undecodable record at ${where} (${at.bytes} bytes with its dead-letter headers) is larger than the max.message.bytes of the dead-letter topic ${deadLetterTopic}`, {
      cause,
      context: { ...context, bytes: at.bytes },
      remedy: `kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics --entity-name ${deadLetterTopic} --add-config max.message.bytes=${suggestedLimit(at.bytes)}; ${retried}`,
    });
  }
  if (why === 'no-ack') {
    return new ServiceError(`Kafka did not acknowledge the undecodable record at ${where} on the dead-letter topic ${deadLetterTopic} within ${DEAD_LETTER_ACK_MS / 1000} s`, {
      cause,
      context,
      remedy:
        `does ${deadLetterTopic} exist? the sink creates it only at start (kafka-topics.sh --create --topic ${deadLetterTopic}, or restart the sink); ` +
        `otherwise check that its partition has a leader and at least min.insync.replicas in-sync replicas (sent with acks=all); ${retried}`,
    });
  }
  const own = cause instanceof ShardBridgeError ? cause.remedy : undefined;
  return new ServiceError(`the undecodable record at ${where} could not be sent to the dead-letter topic ${deadLetterTopic}: ${(cause as Error)?.message ?? String(cause)}`, {
    cause,
    context,
    remedy: `${own ? `${own}; ` : ''}${retried}`,
  });
}

/** How a send ended: acknowledged, or refused with `error`. Never rejects (a send may outlive whoever waited for it). */
export type SendOutcome = Promise<{ error?: unknown }>;

interface LogState {
  lastAt: number;
  records: number;
  first?: string;
  last?: string;
  error?: string;
}

/** What each partition sent: the highest offset acknowledged, a send under way, and the log summary. */
export class DeadLetterLedger {
  private readonly sent = new Map<string, bigint>();
  private readonly pending = new Map<string, SendOutcome>();
  private readonly logs = new Map<string, LogState>();

  constructor(private readonly now: () => number = Date.now) {}

  /** The items (offset order) of this partition not sent yet. */
  unsent<T extends SetAside>(topic: string, partition: number, items: readonly T[]): T[] {
    const sent = this.sent.get(tpKey(topic, partition)) ?? -1n;
    return items.filter((it) => BigInt(it.raw.offset) > sent);
  }

  markSent(topic: string, partition: number, offset: string): void {
    const k = tpKey(topic, partition);
    const o = BigInt(offset);
    if (o > (this.sent.get(k) ?? -1n)) this.sent.set(k, o);
  }

  /** A send of this partition still under way (an earlier attempt that stalled waiting for it). */
  underWay(topic: string, partition: number): SendOutcome | undefined {
    return this.pending.get(tpKey(topic, partition));
  }

  /** Start a send of records up to `lastOffset`: marked sent once acknowledged, whoever waits for it then. */
  track(topic: string, partition: number, lastOffset: string, send: () => Promise<void>): SendOutcome {
    const k = tpKey(topic, partition);
    const outcome: SendOutcome = send().then(
      () => {
        this.markSent(topic, partition, lastOffset);
        return {};
      },
      (error: unknown) => ({ error }),
    );
    this.pending.set(k, outcome);
    void outcome.then(() => {
      if (this.pending.get(k) === outcome) this.pending.delete(k);
    });
    return outcome;
  }

  /**
   * Records sent: a summary to log now (the first of the partition, then at most one per
   * DEAD_LETTER_LOG_EVERY_MS counting everything since), or null to log at debug only.
   */
  summary(topic: string, partition: number, sent: { records: number; first: string; last: string; error: string }): { records: number; firstOffset: string; lastOffset: string; error: string } | null {
    const k = tpKey(topic, partition);
    const s = this.logs.get(k) ?? { lastAt: -Infinity, records: 0 };
    this.logs.set(k, s);
    s.records += sent.records;
    s.first ??= sent.first;
    s.last = sent.last;
    s.error ??= sent.error;
    const now = this.now();
    if (now - s.lastAt < DEAD_LETTER_LOG_EVERY_MS) return null;
    const out = { records: s.records, firstOffset: s.first, lastOffset: s.last, error: s.error };
    this.logs.set(k, { lastAt: now, records: 0 });
    return out;
  }
}
