/**
 * The one module that imports kafkajs (with topic-ids.ts, which reads its internals, and unanswered.ts, which makes its connection error; producer.ts and
 * consumer.ts, its wrappers, take its types only): it implements the interfaces of ports.ts with it. It
 * stays thin and close to kafkajs's own semantics (offsets as decimal strings, `commitOffsets`
 * takes the NEXT offset to read) so that the client can be swapped later without touching the
 * connectors.
 *
 * kafkajs errors pass through unwrapped: they carry `retriable` (and
 * KafkaJSNumberOfRetriesExceeded keeps the retriable original as `cause`), which is what
 * `isRetriable` in shared/errors.ts looks at. The one wrapper (topic creation) keeps the
 * kafkajs error as `cause` and the flag on itself.
 */
import type { ConnectionOptions } from 'node:tls';
import kafkajs from 'kafkajs';
import type {
  Admin as KjsAdmin,
  Consumer as KjsConsumer,
  ICustomPartitioner,
  KafkaConfig,
  Producer as KjsProducer,
  RetryOptions as KjsRetryOptions,
} from 'kafkajs';
import type { Logger } from 'pino';
import { ServiceError, tlsTrustRemedy } from '../errors.ts';
import { partitionForKey } from './murmur2.ts';
import { TopicSpread } from './topic-spread.ts';
import { wrapProducer } from './producer.ts';
import { clusterFactory, fetchApiVersions, fetchBrokerApiVersions, fetchTopicIds } from './topic-ids.ts';
import { asAclError, saslPrincipal, type AclClient, type AclRequest } from './authorization.ts';
import { answered } from './unanswered.ts';
import { DISCONNECT_GRACE_MS, Gate, RECONNECT_BACKOFF_MAX_MS } from './gate.ts';
import { pinoLogEntry, type KafkajsLogEntry } from './kafka-log.ts';
import { wrapConsumer } from './consumer.ts';
import { groupRunning, rethrowCreateTopicsError } from './admin-pure.ts';
import { saslOf } from './sasl.ts';

export { LONE_RECORD_OVERHEAD, suggestedLimit, tooLarge } from './producer.ts';
import type { Admin, KafkaClient, KafkaSettings } from './ports.ts';

const { Kafka, logLevel: LEVELS, ConfigResourceTypes } = kafkajs;

export type * from './ports.ts';

export const KAFKA_REMEDY = "check kafka.brokers, and kafka.ssl / kafka.sasl against the broker's listener (a SASL or TLS listener needs them, a plain one refuses them)";

/** What to do about a Kafka failure: where the CA goes for a broker certificate that did not verify, else `otherwise`. */
export function kafkaRemedy(err: unknown, otherwise: string = KAFKA_REMEDY): string {
  return tlsTrustRemedy(err, 'kafka.ssl.ca (PEM text)') ?? otherwise;
}

export function createKafka(settings: KafkaSettings, logger: Logger): KafkaClient {
  // Not `component`: the caller's logger has one (pino would write the key twice).
  const log = logger.child({ subcomponent: 'kafkajs' });
  // One log entry for all: the once-a-minute 'cannot reach Kafka' warning is the client's, not each object's.
  const sasl = saslOf(settings.sasl, (message, context) => logger.warn(context, message));
  const entry = pinoLogEntry(log, sasl?.secrets, { brokers: settings.brokers });
  const gates = new Set<Gate>();
  /**
   * A kafkajs instance of its own for each object, behind a gate that the object's disconnect
   * (after `graceMs`) or the client's close shuts; `shut` wraps the object's disconnect so.
   */
  const gated = () => {
    const gate = new Gate(settings.brokers);
    gates.add(gate);
    const shut = <O extends { disconnect(): Promise<void> }>(o: O, graceMs: number): O => {
      const disconnect = o.disconnect.bind(o);
      o.disconnect = () => gate.closeAfter(disconnect(), graceMs).finally(() => gates.delete(gate));
      return o;
    };
    return { kafka: new Kafka(toKafkaConfig(settings, sasl?.config, entry, gate)), shut };
  };
  const client: AclClient = { principal: saslPrincipal(settings.sasl), brokers: settings.brokers };
  const counted = <C extends KjsProducer | KjsConsumer | KjsAdmin>(client: 'producer' | 'consumer' | 'admin', c: C): C => {
    const onRequest = settings.onRequest;
    const events = c as unknown as { on(event: string, listener: (e: { payload: { apiName: string; size: number } }) => void): unknown; events: { REQUEST: string } };
    if (onRequest) events.on(events.events.REQUEST, (e) => onRequest({ client, api: e.payload.apiName, bytes: e.payload.size }));
    return c;
  };
  return {
    producer: (opts = {}) => {
      const pins = new Map<string, number>();
      const { kafka, shut } = gated();
      const producer = wrapProducer(
        () =>
          counted('producer', kafka.producer({
            idempotent: true,
            maxInFlightRequests: 1,
            allowAutoTopicCreation: false,
            createPartitioner: pinnedPartitioner(pins),
            // Unbounded (the idempotent producer's sequence numbers), each wait at most 1 s: a stop then ends its retry within that.
            retry: { maxRetryTime: RECONNECT_BACKOFF_MAX_MS, ...opts.retry, retries: Number.MAX_SAFE_INTEGER },
          })),
        log,
        { initial: opts.retry?.initialRetryTime ?? 300, max: opts.retry?.maxRetryTime ?? 5000 },
        pins,
        client,
      );
      const connect = producer.connect.bind(producer);
      producer.connect = () => answered(connect(), settings.brokers);
      return shut(producer, DISCONNECT_GRACE_MS);
    },
    consumer: (opts) => {
      const { kafka, shut } = gated();
      const consumer = wrapConsumer(counted('consumer', kafka.consumer({
        groupId: opts.groupId,
        sessionTimeout: opts.sessionTimeoutMs,
        rebalanceTimeout: opts.rebalanceTimeoutMs,
        heartbeatInterval: opts.heartbeatIntervalMs,
        maxBytesPerPartition: opts.maxBytesPerPartition,
        maxBytes: opts.maxBytes,
        minBytes: opts.minBytes,
        maxWaitTimeInMs: opts.maxWaitTimeMs,
        // Our kafkajs patch: the wait of a fetch that follows an empty one.
        ...(opts.idleMaxWaitTimeMs !== undefined && { idleMaxWaitTimeInMs: opts.idleMaxWaitTimeMs }),
        retry: opts.retry,
        allowAutoTopicCreation: false,
      })), opts.groupId, opts.groupPrefix, client);
      // No grace: a consumer's disconnect waits for the batch in hand and leaves the group over its sockets.
      return shut(consumer, Infinity);
    },
    admin: (opts = {}) => {
      const { kafka, shut } = gated();
      const admin = wrapAdmin(
        counted('admin', kafka.admin({ retry: opts.retry })),
        // setGroupOffsets' member, in the group for a moment: killed there, it holds the group (a
        // replay run again is refused, a sink's join waits) until its session ends: the sink's 10 s, not kafkajs's 30 s.
        (groupId) => counted('consumer', kafka.consumer({ groupId, maxWaitTimeInMs: 100, allowAutoTopicCreation: false, sessionTimeout: 10_000 })),
        () => counted('admin', kafka.admin({ retry: opts.retry })),
        () => clusterFactory(kafka)({ allowAutoTopicCreation: false }),
        client,
        log,
      );
      return shut(admin, DISCONNECT_GRACE_MS);
    },
    close: () => {
      for (const g of gates) g.close();
      gates.clear();
    },
  };
}

/** A keyed record by murmur2 over its topic's pinned partition count (Producer.pin), an unkeyed one to partition 0. */
export const pinnedPartitioner = (pins: ReadonlyMap<string, number>): ICustomPartitioner => () => ({ topic, partitionMetadata, message }) => {
  if (message.partition != null) return message.partition;
  const key = message.key;
  if (key == null) return 0;
  const pinned = pins.get(topic);
  const n = pinned !== undefined && pinned < partitionMetadata.length ? pinned : partitionMetadata.length;
  return partitionForKey(Buffer.isBuffer(key) ? key : Buffer.from(String(key)), n);
};

/** kafkajs's configuration of one gated instance: `entry` logs for it, `gate` owns its sockets and broker list. */
function toKafkaConfig(settings: KafkaSettings, sasl: KafkaConfig['sasl'], entry: (entry: KafkajsLogEntry) => void, gate: Gate): KafkaConfig {
  const { ssl } = settings;
  const tlsOptions: ConnectionOptions | boolean | undefined =
    typeof ssl === 'object' ? { ca: ssl.ca, cert: ssl.cert, key: ssl.key, rejectUnauthorized: ssl.rejectUnauthorized ?? true } : ssl;
  return {
    brokers: gate.brokerList,
    clientId: settings.clientId ?? 'shardbridge',
    ssl: tlsOptions,
    sasl,
    connectionTimeout: settings.connectionTimeoutMs,
    requestTimeout: settings.requestTimeoutMs,
    // kafkajs's default waits up to 30 s between tries: a stop then waited for the one under way.
    retry: { maxRetryTime: RECONNECT_BACKOFF_MAX_MS, ...(settings.retry as KjsRetryOptions | undefined) },
    logLevel: LEVELS[(settings.logLevel ?? 'warn').toUpperCase() as keyof typeof LEVELS],
    logCreator: () => entry,
    socketFactory: gate.socketFactory,
  };
}

function wrapAdmin(
  a: KjsAdmin,
  groupMember: (groupId: string) => KjsConsumer,
  another: () => KjsAdmin,
  newCluster: () => { disconnect(): Promise<void> },
  client: AclClient,
  log: Logger,
): Admin {
  const on = (resourceType: 'topic' | 'group', operation: string, names: readonly string[], doing: string): AclRequest => ({ ...client, operation, resourceType, names, doing });
  /** `p`, a refusal of it named: `requests` say what it asked for. */
  const asked = <T>(p: Promise<T>, ...requests: AclRequest[]): Promise<T> => p.catch((err: unknown) => Promise.reject(asAclError(err, ...requests)));
  const describing = (topics: readonly string[]) => on('topic', 'Describe', topics, 'reading topic metadata');
  // Offsets are asked per topic: spread over admins of a few dozen topics each (topic-spread.ts).
  const byTopic = new TopicSpread(another);
  let connecting: Promise<void> | undefined;
  // Connect on first use; a failed connect is forgotten so the next call tries again.
  const ready = (): Promise<void> =>
    (connecting ??= a.connect().catch((err: unknown) => {
      connecting = undefined;
      throw err;
    }));
  const topicMetadata = async (topics: string[]) => (await asked(a.fetchTopicMetadata({ topics }), describing(topics))).topics;
  const offsetRanges = async (topic: string) => {
    const res = await asked((await byTopic.for(topic)).fetchTopicOffsets(topic), describing([topic]));
    return res.map((r) => ({ partition: r.partition, start: r.low, end: r.high })).sort((x, y) => x.partition - y.partition);
  };

  // Topic ids go over a cluster of their own (topic-ids.ts), made on first use.
  let idCluster: ReturnType<typeof newCluster> | undefined;

  const admin: Admin = {
    connect: ready,
    async disconnect() {
      connecting = undefined;
      const c = idCluster;
      idCluster = undefined;
      await Promise.all([a.disconnect(), byTopic.disconnect(), c?.disconnect()]);
    },
    async listTopics() {
      await ready();
      return a.listTopics();
    },
    async partitionCount(topic) {
      await ready();
      const [meta] = await topicMetadata([topic]);
      return meta.partitions.length;
    },
    async partitionCounts(topics) {
      if (topics.length === 0) return new Map();
      await ready();
      return new Map((await topicMetadata(topics)).map((t) => [t.name, t.partitions.length]));
    },
    async replicationFactors(topics) {
      if (topics.length === 0) return new Map();
      await ready();
      return new Map((await topicMetadata(topics)).map((t) => [t.name, Math.min(...t.partitions.map((p) => p.replicas.length))]));
    },
    async ensureTopics(specs) {
      await ready();
      const existing = new Set(await a.listTopics());
      const missing = specs.filter((s) => !existing.has(s.topic));
      const create = async (which: typeof specs): Promise<void> => {
        if (which.length === 0) return;
        // createTopics returns false (and skips waitForLeaders) if any topic already exists,
        // e.g. a concurrent creator: leaders are awaited below in every case.
        await a
          .createTopics({
            waitForLeaders: false,
            topics: which.map((s) => ({
              topic: s.topic,
              numPartitions: s.partitions,
              replicationFactor: s.replicationFactor,
              configEntries: Object.entries(s.configs ?? {}).map(([name, value]) => ({ name, value })),
            })),
          })
          .catch((err: unknown) => rethrowCreateTopicsError(err, client));
      };
      await create(missing);
      await waitUntil(`leaders of ${specs.map((s) => s.topic).join(', ')}`, async () => {
        if (missing.length > 0) {
          // A ZooKeeper-mode broker (Kafka 3.x and older) answers TOPIC_ALREADY_EXISTS for a topic
          // deleted a moment ago whose deletion is still under way, which createTopics takes as
          // done: the topic then never came, and this waited 30 s for its leaders. Ask again
          // while one is not listed (an extra ask of a topic on its way answers the same).
          const listed = new Set(await a.listTopics());
          const absent = missing.filter((s) => !listed.has(s.topic));
          if (absent.length > 0) {
            log.debug({ topics: absent.map((t) => t.topic) }, 'topics not listed after their creation was answered: asking again');
            await create(absent);
            return false;
          }
        }
        const metas = await topicMetadata(specs.map((s) => s.topic));
        return metas.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0));
      });
      return missing.map((s) => s.topic);
    },
    async deleteTopics(topics) {
      await ready();
      const existing = new Set(await a.listTopics());
      const present = topics.filter((t) => existing.has(t));
      if (present.length === 0) return;
      await asked(a.deleteTopics({ topics: present }), on('topic', 'Delete', present, 'deleting topics'));
      // kafkajs forgets deleted topics in the admin that deleted them only; an admin that still
      // asks for one fails every metadata refresh (UNKNOWN_TOPIC_OR_PARTITION): drop the others.
      await byTopic.disconnect();
      await waitUntil(`deletion of ${present.join(', ')}`, async () => {
        const now = new Set(await a.listTopics());
        return present.every((t) => !now.has(t));
      });
    },
    async endOffsets(topic) {
      return (await offsetRanges(topic)).map((r) => ({ partition: r.partition, offset: r.end }));
    },
    offsetRanges,
    async offsetsAtTime(topic, timestampMs) {
      const res = await asked((await byTopic.for(topic)).fetchTopicOffsetsByTimestamp(topic, timestampMs), describing([topic]));
      return res.map((r) => ({ partition: r.partition, offset: r.offset })).sort((x, y) => x.partition - y.partition);
    },
    async describeTopicConfigs(topic) {
      await ready();
      const res = await asked(
        a.describeConfigs({ includeSynonyms: false, resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }] }),
        on('topic', 'DescribeConfigs', [topic], 'reading topic configs'),
      );
      return Object.fromEntries(res.resources[0].configEntries.map((e) => [e.configName, e.configValue]));
    },
    async configValues(kind, names, key) {
      const out = new Map<string, string>();
      if (names.length === 0) return out;
      await ready();
      const type = kind === 'topic' ? ConfigResourceTypes.TOPIC : ConfigResourceTypes.BROKER;
      const res = await a.describeConfigs({ includeSynonyms: false, resources: names.map((name) => ({ type, name, configNames: [key] })) });
      for (const r of res.resources) {
        const entry = r.configEntries.find((e) => e.configName === key);
        if (r.errorCode === 0 && entry?.configValue != null) out.set(r.resourceName, entry.configValue);
      }
      return out;
    },
    async groupState(groupId) {
      return (await admin.groupMembers(groupId)).state;
    },
    async groupMembers(groupId) {
      await ready();
      const [group] = (await asked(a.describeGroups([groupId]), on('group', 'Describe', [groupId], 'reading the state of the consumer group'))).groups;
      return { state: group?.state ?? 'Dead', members: (group?.members ?? []).map((m) => ({ clientId: m.clientId, clientHost: m.clientHost })) };
    },
    async setGroupOffsets(groupId, topic, offsets) {
      const state = await admin.groupState(groupId);
      // Not a configuration error: the group's state refuses it, until its members stop.
      if (groupRunning(state)) {
        throw new ServiceError(`consumer group ${groupId} has running members (state ${state}); its offsets cannot be set`, {
          context: { groupId, state },
          remedy: 'stop every consumer of the group (the sink connector) first',
        });
      }
      // kafkajs's admin.setOffsets joins the group and waits for a full fetch (5 s): join with
      // a paused member of our own instead and commit as soon as the group is joined.
      const member = groupMember(groupId);
      const setting = [on('group', 'Read', [groupId], 'setting the group\'s offsets'), on('topic', 'Read', [topic], 'setting the group\'s offsets')];
      const joined = new Promise<void>((resolve, reject) => {
        member.on(member.events.GROUP_JOIN, () => resolve());
        member.on(member.events.CRASH, (e) => reject(asAclError(e.payload.error, ...setting)));
      });
      joined.catch(() => {}); // awaited below, unless a step before it fails
      await member.connect();
      try {
        await asked(member.subscribe({ topics: [topic], fromBeginning: true }), ...setting);
        await asked(member.run({ autoCommit: false, eachBatch: async () => {} }), ...setting);
        member.pause([{ topic }]);
        await joined;
        await asked(member.commitOffsets(offsets.map((o) => ({ topic, partition: o.partition, offset: o.offset }))), ...setting);
      } finally {
        await member.disconnect();
      }
    },
    async fetchGroupOffsets(groupId, topics) {
      await ready();
      // Not kafkajs's fetchOffsets with the topics: it refreshes the metadata of every topic
      // asked so far for each one (n(n+1)/2 topics' worth; 8 s at 1,500 topics). The group's
      // offsets of all its topics come in one request, the partitions of these in another.
      const [committed, metas] = await Promise.all([
        asked(a.fetchOffsets({ groupId }), on('group', 'Describe', [groupId], "reading the consumer group's offsets")),
        topics.length > 0 ? topicMetadata(topics) : [],
      ]);
      const byTopic = new Map(committed.map((t) => [t.topic, new Map(t.partitions.map((p) => [p.partition, p.offset]))]));
      return metas.map((m) => ({
        topic: m.name,
        partitions: m.partitions
          .map((p) => ({ partition: p.partitionId, offset: byTopic.get(m.name)?.get(p.partitionId) ?? '-1' }))
          .sort((x, y) => x.partition - y.partition),
      }));
    },
    async describeCluster() {
      await ready();
      return a.describeCluster();
    },
    async topicIds(topics) {
      idCluster ??= newCluster();
      return fetchTopicIds(idCluster, topics);
    },
    async apiVersions() {
      idCluster ??= newCluster();
      return fetchApiVersions(idCluster);
    },
    async brokerApiVersions() {
      idCluster ??= newCluster();
      const brokers = await fetchBrokerApiVersions(idCluster);
      for (const b of brokers) if (b.problem !== undefined) log.warn({ broker: b.broker }, `cannot ask the Kafka broker at ${b.broker} its API versions (${b.problem}): not checked`);
      return brokers.map(({ broker, versions }) => ({ broker, versions }));
    },
  };
  // Any call may be the first to meet a broker that never answers (unanswered.ts): explained here, for all of them.
  for (const [name, fn] of Object.entries(admin) as [keyof Admin, (...args: unknown[]) => Promise<unknown>][]) {
    (admin as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => answered(fn(...args), client.brokers);
  }
  return admin;
}

/** Metadata settles within a few hundred ms on a healthy cluster; 30 s means something is wrong. */
async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  // Metadata that has not propagated yet answers UNKNOWN_TOPIC_OR_PARTITION (retriable): keep polling.
  const attempt = () => check().catch((err: { retriable?: boolean }) => (err.retriable ? false : Promise.reject(err)));
  while (!(await attempt())) {
    if (Date.now() > deadline) throw new kafkajs.KafkaJSError(`timed out after ${timeoutMs} ms waiting for ${what}`, { retriable: true });
    await new Promise((r) => setTimeout(r, 100));
  }
}
