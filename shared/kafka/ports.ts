/**
 * What the connectors ask of a Kafka client, in our own terms and free of kafkajs: the
 * interfaces client.ts implements with kafkajs. Swapping the client means implementing these.
 */

export interface KafkaSettings {
  brokers: string[];
  clientId?: string;
  ssl?: boolean | { ca?: string; cert?: string; key?: string; rejectUnauthorized?: boolean };
  /** `passwordFile`: `password` was read from it at load; it is read again at each broker (re)authentication. */
  sasl?: { mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; username: string; password: string; passwordFile?: string };
  connectionTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** kafkajs's own retry policy for requests (defaults: kafkajs's). */
  retry?: RetryOptions;
  /** kafkajs messages below this level are dropped; its INFO is chatty, so 'warn' by default. */
  logLevel?: 'nothing' | 'error' | 'warn' | 'info' | 'debug';
  /** Told of every request a client of this connection sends, with its response's size (tests count round trips with it). */
  onRequest?: (request: { client: 'producer' | 'consumer' | 'admin'; api: string; bytes: number }) => void;
}

export interface RetryOptions {
  retries?: number;
  initialRetryTime?: number;
  maxRetryTime?: number;
}

/**
 * A record to produce. The partition comes from the key (murmur2, as the Java client). A null
 * key always goes to partition 0, not round-robin: a retried batch must land exactly where
 * the first attempt went (see sendBatch), and a keyless table's changes stay in order.
 */
export interface OutMessage {
  topic: string;
  key: Buffer | null;
  value: Buffer | null;
  headers?: Record<string, string | Buffer>;
}

/** One per topic-partition written by a send: the batch's messages for that partition got baseOffset, baseOffset+1, ... in order. */
export interface SentRecord {
  topic: string;
  partition: number;
  baseOffset: string;
}

export type MessageHeaders = Record<string, Buffer | string | (Buffer | string)[] | undefined>;

export interface ConsumedMessage {
  topic: string;
  partition: number;
  /** A new view of the fetched bytes on each read: the hot path reads `bytes` in place. */
  key: Buffer | null;
  value: Buffer | null;
  offset: string;
  timestamp: string;
  headers?: MessageHeaders;
  /**
   * The fetched bytes the key and value lie in (length -1: null), so that a consumer can read
   * them without a Buffer per record (our kafkajs patch, record/v0/decoder.js). Absent on
   * records of the message formats before Kafka 0.11.
   */
  bytes?: Buffer;
  keyStart?: number;
  keyLength?: number;
  valueStart?: number;
  valueLength?: number;
}

export interface ConsumedBatch {
  topic: string;
  partition: number;
  highWatermark: string;
  messages: ConsumedMessage[];
  isEmpty(): boolean;
  firstOffset(): string | null;
  lastOffset(): string;
  offsetLag(): string;
}

export interface EachBatchPayload {
  batch: ConsumedBatch;
  /** Marks the consumer's in-memory position (not a commit). */
  resolveOffset(offset: string): void;
  heartbeat(): Promise<void>;
  /** Pauses this batch's partition; returns a function that resumes it. */
  pause(): () => void;
  isRunning(): boolean;
  /** True when a rebalance or seek made this batch obsolete: stop processing it. */
  isStale(): boolean;
}

export type EachBatchHandler = (payload: EachBatchPayload) => Promise<void>;
export type TopicPartitions = { topic: string; partitions: number[] };
/** `offset` is the next offset to read, as Kafka stores it (last processed + 1). */
export type PartitionOffset = { topic: string; partition: number; offset: string };
/** topic -> partitions assigned to this member. */
export type Assignment = Record<string, number[]>;

export interface ConsumerOptions {
  groupId: string;
  sessionTimeoutMs?: number;
  rebalanceTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  maxBytesPerPartition?: number;
  maxBytes?: number;
  minBytes?: number;
  maxWaitTimeMs?: number;
  /** A fetch after one that brought nothing waits up to this long and returns at the first record (minBytes 1). */
  idleMaxWaitTimeMs?: number;
  retry?: RetryOptions;
  /** A group named anew each time: its ACL is granted by this prefix, which a refusal's remedy names. */
  groupPrefix?: string;
}

export interface Producer {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  /**
   * Sends with acks=all; resolves once every message is acknowledged. Order is kept per
   * partition; calls are serialised. A retriable failure (broker down, leader moved) is
   * retried with the SAME batch (unless `opts.resend`) until it succeeds: kafkajs rolls a failed batch's sequence
   * numbers back, so a different batch sent next would reuse them and the broker could ack
   * it as a "duplicate" without writing it. Giving up (`signal` aborted, or disconnect())
   * therefore leaves this producer unusable: create a new one.
   */
  sendBatch(messages: OutMessage[], opts?: SendOptions): Promise<SentRecord[]>;
  /**
   * Learn the partitions and leaders of these topics in one metadata request. Without it the
   * first send to each topic refreshes the metadata of every topic sent to so far: a snapshot
   * of n tables asked for the metadata of n(n+1)/2 topics.
   */
  prepare(topics: string[]): Promise<void>;
  /**
   * Keys of each topic go by this partition count from now on, whatever the topic has grown to
   * (source-connector/partition-pins.ts); a topic not pinned, or with fewer partitions, uses all it has.
   */
  pin(counts: ReadonlyMap<string, number>): void;
}

export interface SendOptions {
  signal?: AbortSignal;
  /**
   * For a batch that must not reach a partition twice as it is (a truncate's copies): after a
   * retriable failure, whose outcome is unknown (the batch may be on some partitions and not
   * others), the batch goes again as `resend()` returns it, through a new producer id, so that
   * every partition gets all of it after whatever part of the earlier attempt it holds. Without
   * it, the same batch is retried: partitions that had it ignore it as a duplicate, except on
   * brokers that had acknowledged their part, whose partitions get it twice.
   */
  resend?: () => OutMessage[];
}

/** A consumer's crash: the error, whether kafkajs restarts the consumer, its group and member (the last one joined as). */
export interface ConsumerCrash {
  error: Error;
  restart: boolean;
  groupId: string;
  memberId?: string;
}

export interface Consumer {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  stop(): Promise<void>;
  subscribe(opts: { topics: (string | RegExp)[]; fromBeginning: boolean }): Promise<void>;
  run(opts: { eachBatch: EachBatchHandler; autoCommit: false; partitionsConsumedConcurrently?: number; eachBatchAutoResolve?: boolean }): Promise<void>;
  pause(tps: TopicPartitions[]): void;
  resume(tps: TopicPartitions[]): void;
  paused(): TopicPartitions[];
  seek(tpo: PartitionOffset): void;
  commitOffsets(offsets: PartitionOffset[]): Promise<void>;
  /** Called after every join/rebalance with this member's assignment; returns an unsubscribe function. */
  onGroupJoin(cb: (assignment: Assignment) => void): () => void;
  /** Called when kafkajs gives up on the run loop (`restart` tells whether it restarts it). */
  onCrash(cb: (event: ConsumerCrash) => void): () => void;
  /** Called after each fetch: how long it took and how many partitions it brought records of. */
  onFetch(cb: (event: { durationMs: number; partitionsWithRecords: number }) => void): () => void;
}

export interface TopicSpec {
  topic: string;
  partitions: number;
  replicationFactor: number;
  configs?: Record<string, string>;
}

export interface Admin {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  /** Creates the topics that do not exist and waits for their leaders; returns the names it created. */
  ensureTopics(specs: TopicSpec[]): Promise<string[]>;
  /** Deletes the topics that exist and waits until metadata no longer lists them. */
  deleteTopics(topics: string[]): Promise<void>;
  listTopics(): Promise<string[]>;
  partitionCount(topic: string): Promise<number>;
  /** The partition count of each topic, from one metadata request. */
  partitionCounts(topics: string[]): Promise<Map<string, number>>;
  /** The fewest replicas any partition of each topic has, from one metadata request. */
  replicationFactors(topics: string[]): Promise<Map<string, number>>;
  /** High watermarks: the offset the next produced message of each partition will get. */
  endOffsets(topic: string): Promise<{ partition: number; offset: string }[]>;
  /**
   * Per partition, the first offset Kafka still has (its log start: retention and deleteRecords
   * move it) and the end offset (high watermark). One request per topic.
   */
  offsetRanges(topic: string): Promise<{ partition: number; start: string; end: string }[]>;
  /** Earliest offset whose timestamp is >= timestampMs, per partition (the end offset when none). */
  offsetsAtTime(topic: string, timestampMs: number): Promise<{ partition: number; offset: string }[]>;
  describeTopicConfigs(topic: string): Promise<Record<string, string>>;
  /** One config's value for each named topic or broker (a broker by its node id), in one request; names Kafka reports no value for are absent. */
  configValues(kind: 'topic' | 'broker', names: string[], key: string): Promise<Map<string, string>>;
  /** The group's state as Kafka reports it; `Empty` or `Dead` when no member runs (groupRunning). */
  groupState(groupId: string): Promise<string>;
  /** The group's state and its members' client ids and hosts (which processes a refusal names). */
  groupMembers(groupId: string): Promise<{ state: string; members: { clientId: string; clientHost: string }[] }>;
  /** The group must have no active members (Kafka refuses otherwise). */
  setGroupOffsets(groupId: string, topic: string, offsets: { partition: number; offset: string }[]): Promise<void>;
  /** Committed offsets; '-1' for a partition without a commit. Two requests, however many topics. */
  fetchGroupOffsets(groupId: string, topics: string[]): Promise<{ topic: string; partitions: { partition: number; offset: string }[] }[]>;
  describeCluster(): Promise<{ brokers: { nodeId: number; host: string; port: number }[]; controller: number | null; clusterId: string }>;
  /**
   * Each existing topic's id (KIP-516: a topic deleted and created again has another) and
   * partition count, in one request; null when the broker has no topic ids (before Kafka 2.8).
   */
  topicIds(topics: string[]): Promise<Map<string, { id: string; partitions: number }> | null>;
  /** The API versions a broker announced (ApiVersions), by API key: what broker-features.ts checks at start. */
  apiVersions(): Promise<Map<number, { minVersion: number; maxVersion: number }>>;
  /**
   * Each broker's own API versions (ApiVersions asked of each broker the cluster's metadata names),
   * by its address; `versions` undefined for a broker that could not be asked (a warning says why).
   */
  brokerApiVersions(): Promise<{ broker: string; versions?: Map<number, { minVersion: number; maxVersion: number }> }[]>;
}

export interface KafkaClient {
  /** Idempotent, acks=all, one request in flight. `retry` only tunes the backoff: retries are unbounded (see sendBatch). */
  producer(opts?: { retry?: Omit<RetryOptions, 'retries'> }): Producer;
  consumer(opts: ConsumerOptions): Consumer;
  admin(opts?: { retry?: RetryOptions }): Admin;
  /**
   * Ends what is left of every producer, consumer and admin it made: their sockets, and
   * kafkajs's retries under way (each ends at its next try, within about a second). Each one's
   * disconnect does this for itself; close() is for the ones a caller stopped waiting for.
   */
  close(): void;
}
