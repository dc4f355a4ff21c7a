/**
 * Our Producer over kafkajs's (client.ts makes it): one batch in flight at a time, a retriable
 * failure retried with the same batch, or sent again under a new producer id when the caller
 * asks for it (ports.ts, SendOptions.resend).
 */
import type { Producer as KjsProducer } from 'kafkajs';
import type { Logger } from 'pino';
import { ConfigError, isRetriable } from '../errors.ts';
import { asAclError, type AclClient } from './authorization.ts';
import type { OutMessage, Producer, SendOptions, SentRecord } from './ports.ts';

export function wrapProducer(
  make: () => KjsProducer,
  log: Logger,
  backoff: { initial: number; max: number },
  /** Read by the partitioner of every kafkajs producer `make` returns. */
  pins: Map<string, number> = new Map(),
  /** Named in an authorization failure. */
  client: AclClient = { brokers: [] },
): Producer {
  const idempotence = { ...client, operation: 'IdempotentWrite', resourceType: 'cluster' as const, names: [], doing: 'starting the idempotent producer (Write on any topic implies it)' };
  const denied = (err: unknown, names: string[], doing: string): unknown =>
    asAclError(err, { ...client, operation: 'Write', resourceType: 'topic', names: [...new Set(names)], doing }, idempotence);
  let p = make();
  // One batch at a time: a retried batch must get its sequence numbers back before any other.
  let tail: Promise<unknown> = Promise.resolve();
  let closed = false;
  let abandoned: Error | undefined;
  // Topics whose metadata the current kafkajs producer was given at once (again after a renewal).
  let prepared: string[] = [];
  const learn = (topics: string[]): Promise<unknown> =>
    topics.length === 0 ? Promise.resolve() : p.sendBatch({ acks: -1, topicMessages: topics.map((topic) => ({ topic, messages: [] })) });

  const sendWithRetry = async (messages: OutMessage[], opts: SendOptions): Promise<SentRecord[]> => {
    if (abandoned) {
      throw new Error('this producer abandoned a batch whose outcome is unknown; create a new producer', { cause: abandoned });
    }
    let batch = messages;
    let renew = false;
    for (let attempt = 1, delay = backoff.initial; ; attempt++) {
      let sent = false;
      try {
        if (renew) {
          // A new producer id: no partition takes the batch for a duplicate of what the failed attempt left there.
          await p.disconnect().catch(() => {});
          p = make();
          await p.connect();
          await learn(prepared);
          renew = false;
        }
        sent = true;
        const res = await p.sendBatch({ acks: -1, topicMessages: byTopic(batch) });
        return res.map((r) => ({ topic: r.topicName, partition: r.partition, baseOffset: r.baseOffset ?? r.offset ?? '-1' }));
      } catch (err) {
        if (!isRetriable(err)) throw tooLarge(err, batch) ?? denied(err, batch.map((m) => m.topic), 'sending records');
        if (closed || opts.signal?.aborted) {
          abandoned = err as Error;
          throw err;
        }
        log.warn({ err: (err as Error).message, attempt, retryInMs: delay }, opts.resend ? 'send failed; sending the batch again through a new producer id' : 'send failed; retrying the same batch');
        await sleep(delay, opts.signal);
        // Stopped while waiting: the batch is not tried again (through a cluster the stop disconnected).
        if (closed || opts.signal?.aborted) {
          abandoned = err as Error;
          throw err;
        }
        delay = Math.min(delay * 2, backoff.max);
        // A new producer that could not connect sent nothing: its batch goes as it is.
        if (opts.resend && sent) {
          batch = opts.resend();
          renew = true;
        }
      }
    }
  };

  return {
    async connect() {
      closed = false;
      // The idempotent producer's id: Kafka grants it with Write on any topic (3.0+) or IdempotentWrite on the cluster.
      await p.connect().catch((err: unknown) => Promise.reject(asAclError(err, idempotence)));
    },
    async disconnect() {
      closed = true;
      await p.disconnect();
    },
    prepare(topics) {
      // A send without messages: kafkajs refreshes the metadata of all its topics at once, then has nothing to send.
      const result = tail.then(() => {
        prepared = [...new Set([...prepared, ...topics])];
        return learn(topics).catch((err: unknown) => Promise.reject(denied(err, topics, 'reading the metadata of the topics it writes')));
      });
      tail = result.catch(() => {});
      return result.then(() => {});
    },
    pin(counts) {
      for (const [topic, n] of counts) pins.set(topic, n);
    },
    sendBatch(messages, opts = {}) {
      if (messages.length === 0) return Promise.resolve([]);
      const result = tail.then(() => sendWithRetry(messages, opts));
      tail = result.catch(() => {});
      return result;
    },
  };
}

/** kafkajs's sendBatch takes messages grouped by topic. */
function byTopic(messages: readonly OutMessage[]): { topic: string; messages: { key: Buffer | null; value: Buffer | null; headers?: Record<string, string | Buffer> }[] }[] {
  const out = new Map<string, { key: Buffer | null; value: Buffer | null; headers?: Record<string, string | Buffer> }[]>();
  for (const m of messages) {
    let list = out.get(m.topic);
    if (!list) out.set(m.topic, (list = []));
    list.push({ key: m.key, value: m.value, headers: m.headers });
  }
  return [...out].map(([topic, msgs]) => ({ topic, messages: msgs }));
}

/** Bytes a record batch holding one record adds to its key and value: the v2 batch header (61) and the record's own fields (at most 21). */
export const LONE_RECORD_OVERHEAD = 82;

/** `max.message.bytes` that lets a record of `bytes` (key + value) through, with a quarter to spare: a power of two. Pure. */
export const suggestedLimit = (bytes: number): number => 2 ** Math.ceil(Math.log2(Math.max(bytes + LONE_RECORD_OVERHEAD, 1) * 1.25));

/**
 * A record above the topic's `max.message.bytes` fails its whole send with MESSAGE_TOO_LARGE,
 * which names neither the record nor the limit: name the largest record's topic and size,
 * and the setting that lets it through. Kafka checks a partition's whole record batch against
 * that limit, so a send of records that each fit is refused too when the limit was lowered
 * after the source read it at start: then the restart is the remedy, and a limit is suggested
 * for the whole send, never one for its largest record (lower than the topic's, maybe).
 */
export function tooLarge(err: unknown, messages: readonly OutMessage[]): ConfigError | undefined {
  const type = (err as { type?: string }).type;
  if (type !== 'MESSAGE_TOO_LARGE' && type !== 'RECORD_LIST_TOO_LARGE') return undefined;
  let biggest = messages[0];
  let bytes = 0;
  for (const m of messages) {
    const n = (m.key?.length ?? 0) + (m.value?.length ?? 0);
    if (n >= bytes) [biggest, bytes] = [m, n];
  }
  const topic = biggest.topic;
  const same = messages.filter((m) => m.topic === topic);
  const total = same.reduce((n, m) => n + (m.key?.length ?? 0) + (m.value?.length ?? 0), 0);
  const raise = (limit: number) =>
    `kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics --entity-name ${topic} --add-config max.message.bytes=${limit} (topics.maxMessageBytes for topics the source creates)`;
  if (same.length > 1) {
    return new ConfigError(
      `Kafka refused a send of ${same.length} records (${total} bytes in all, the largest ${bytes} bytes) to ${topic} (${type}): ` +
        "a partition's records go in one batch, checked whole against the topic's max.message.bytes, which was likely lowered since the connector started",
      {
        cause: err,
        context: { topic, records: same.length, bytes: total, largest: bytes },
        remedy:
          "start the connector again: it reads each topic's max.message.bytes at start and sends batches under it (a row too large alone then stops it, naming table and key); " +
          `or raise the topic's limit, e.g. ${raise(suggestedLimit(total))}; nothing past the last confirmed position was lost`,
      },
    );
  }
  return new ConfigError(`Kafka refused a record of ${bytes} bytes for ${topic} (${type}): it is larger than the topic's max.message.bytes`, {
    cause: err,
    context: { topic, bytes },
    remedy: `raise the topic's limit, e.g. ${raise(suggestedLimit(bytes))}, then start again: nothing past the last confirmed position was lost`,
  });
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}

