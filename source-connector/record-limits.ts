/**
 * How large a record Kafka takes, per table topic: the topic's `max.message.bytes`, and the
 * brokers' `socket.request.max.bytes` (a produce request above it makes the broker close the
 * connection, which kafkajs takes for a network failure and retries forever). Read once at
 * start-up; the publisher refuses a larger record before sending it, naming table, key and
 * size. Kafka's own refusal (shared/kafka/client.ts, tooLarge) stays the backstop for limits
 * not read or changed since.
 */
import type { Logger } from '../shared/logger.ts';
import type { Admin } from '../shared/kafka/ports.ts';
import { ConfigError } from '../shared/errors.ts';

import { LONE_RECORD_OVERHEAD, suggestedLimit } from '../shared/kafka/client.ts';

export { LONE_RECORD_OVERHEAD, suggestedLimit };
/** A produce request's bytes beside its record batch (headers, client id, topic name, partition), with room to spare. */
const REQUEST_OVERHEAD = 1024 + 255;

export interface RecordLimits {
  /** The topic's `max.message.bytes`, when read. */
  topic?: number;
  /** The smallest `socket.request.max.bytes` of the brokers, when read. */
  request?: number;
}

/** The largest key + value a topic takes in a record of its own; Infinity when no limit is known. Pure. */
export function largestRecord(limits: RecordLimits): number {
  const topic = limits.topic === undefined ? Infinity : limits.topic - LONE_RECORD_OVERHEAD;
  const request = limits.request === undefined ? Infinity : limits.request - REQUEST_OVERHEAD - LONE_RECORD_OVERHEAD;
  return Math.min(topic, request);
}

/**
 * The most bytes one send may carry: Kafka checks a partition's whole record batch against
 * its topic's `max.message.bytes`, so records that each fit can still be refused together.
 * Infinity when no limit is known. Pure.
 */
export function batchBytesFor(limits: Iterable<RecordLimits>): number {
  let min = Infinity;
  for (const l of limits) if (l.topic !== undefined) min = Math.min(min, l.topic - LONE_RECORD_OVERHEAD);
  return Math.max(min, 1);
}


/** A key for a message: its JSON, cut short past `max` characters. Pure. */
export function describeKey(key: unknown, max = 200): string {
  // `this[k]`: the value before its toJSON (a Buffer's is an array of every byte).
  const text = JSON.stringify(key, function (this: Record<string, unknown>, k: string, v: unknown) {
    const raw = this[k];
    return typeof raw === 'bigint' ? raw.toString() : Buffer.isBuffer(raw) ? `<${raw.length} bytes>` : v;
  }) ?? String(key);
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** The stop for a record of `bytes` (key + value) that `topic` cannot take. Pure. */
export function recordTooLarge(o: { table: string; topic: string; key: string; bytes: number; limits: RecordLimits }): ConfigError {
  const { table, topic, key, bytes, limits } = o;
  const byRequest = limits.request !== undefined && bytes > limits.request - REQUEST_OVERHEAD - LONE_RECORD_OVERHEAD;
  const byTopic = limits.topic !== undefined && bytes > limits.topic - LONE_RECORD_OVERHEAD;
  const context = { table, topic, key, bytes, maxMessageBytes: limits.topic, socketRequestMaxBytes: limits.request };
  const restart = 'then start the connector again: nothing past the last confirmed position was lost, and this row is read again';
  const want = suggestedLimit(bytes);
  if (byTopic && !byRequest) {
    const request = limits.request !== undefined && want + REQUEST_OVERHEAD > limits.request
      ? ` and socket.request.max.bytes on every broker (server.properties, a restart) to at least ${want + REQUEST_OVERHEAD}`
      : '';
    return new ConfigError(
      `a row of ${table} (key ${key}) makes a record of ${bytes} bytes, more than topic ${topic} takes (max.message.bytes ${limits.topic})`,
      {
        context,
        remedy:
          `raise the topic's limit, e.g. kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics --entity-name ${topic} --add-config max.message.bytes=${want} ` +
          `(topics.maxMessageBytes for topics the source creates)${request}, ${restart}`,
      },
    );
  }
  return new ConfigError(
    `a row of ${table} (key ${key}) makes a record of ${bytes} bytes, more than the Kafka brokers take in one request (socket.request.max.bytes ${limits.request}): ` +
      'the broker would close the connection and the send be retried without end',
    {
      context,
      remedy: `raise socket.request.max.bytes on every broker to at least ${want + REQUEST_OVERHEAD} (server.properties, a restart)${byTopic ? ` and the topic's max.message.bytes to ${want}` : ''}, ${restart}`,
    },
  );
}

/**
 * The limits of `topics` as Kafka reports them. A cluster that does not let us read them
 * (DescribeConfigs denied) leaves them unknown: Kafka's refusal names the topic then.
 */
export async function readRecordLimits(admin: Admin, topics: string[], log: Logger): Promise<Map<string, RecordLimits>> {
  const out = new Map<string, RecordLimits>(topics.map((t) => [t, {}]));
  const number = (v: string | undefined): number | undefined => (v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined);
  try {
    const { brokers } = await admin.describeCluster();
    const values = await admin.configValues('broker', brokers.map((b) => String(b.nodeId)), 'socket.request.max.bytes');
    const request = Math.min(...[...values.values()].map(number).filter((n) => n !== undefined));
    if (Number.isFinite(request)) for (const l of out.values()) l.request = request;
  } catch (err) {
    log.debug({ err }, "the brokers' socket.request.max.bytes could not be read: records are not checked against it");
  }
  try {
    for (const [topic, v] of await admin.configValues('topic', topics, 'max.message.bytes')) {
      const limit = number(v);
      if (limit !== undefined && out.has(topic)) out.get(topic)!.topic = limit;
    }
  } catch (err) {
    log.debug({ err }, "the topics' max.message.bytes could not be read: Kafka's refusal names a record too large");
  }
  return out;
}
