/**
 * Topic ids (KIP-516): Kafka gives every topic a UUID at creation, so a topic deleted and created
 * again under the same name has another id. kafkajs 2.2.4 speaks Metadata v0–v6 only, and ids
 * come with v10+: this module sends Metadata v10–v12 itself, over a connection of a kafkajs
 * cluster (so TLS and SASL are kafkajs's), in kafkajs's request shape. It reads kafkajs
 * internals (the pinned 2.2.4, patched: patches/); `test/integration/sink-offset-gaps.test.ts`
 * uses it against the real broker. Brokers older than 2.8 (no v10): no ids (null).
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const Encoder = require('kafkajs/src/protocol/encoder') as any;
const Decoder = require('kafkajs/src/protocol/decoder') as any;

const METADATA = 3;
/** v10 brought topic ids; v11 dropped the cluster's authorized operations, v12 made names nullable: the fields read here are alike in all three. */
export const TOPIC_ID_VERSIONS = { min: 10, max: 12 } as const;

export interface TopicIdentity {
  /** 32 hex digits; absent for a topic that does not exist (or is not authorized). */
  id: string;
  partitions: number;
}

const readInt32Array = (d: any) => d.readUVarIntArray((x: any) => x.readInt32());

/** The Metadata request kafkajs's connection sends, and its response read down to the topics. */
export function topicIdsRequest(topics: readonly string[], version: number): { request: object; response: object } {
  return {
    request: {
      apiKey: METADATA,
      apiVersion: version,
      apiName: 'Metadata',
      // The first byte is the request header's (v2) empty tagged fields, as kafkajs's own flexible requests write it.
      encode: async () =>
        new Encoder()
          .writeUVarIntBytes()
          .writeUVarIntArray(topics.map((t) => new Encoder().writeBuffer(Buffer.alloc(16)).writeUVarIntString(t).writeUVarIntBytes()))
          .writeBoolean(false) // allow_auto_topic_creation
          .writeBoolean(false) // include_topic_authorized_operations
          .writeUVarIntBytes(),
    },
    response: {
      decode: async (raw: Buffer) => {
        const d = new Decoder(raw);
        d.readTaggedFields(); // response header v1
        d.readInt32(); // throttle_time_ms
        d.readUVarIntArray((b: any) => {
          b.readInt32();
          b.readUVarIntString();
          b.readInt32();
          b.readUVarIntString();
          b.readTaggedFields();
        });
        d.readUVarIntString(); // cluster_id
        d.readInt32(); // controller_id
        return d.readUVarIntArray((t: any) => {
          const errorCode = t.readInt16();
          const name = t.readUVarIntString();
          const id = (t.readBytes(16) as Buffer).toString('hex');
          t.readBoolean(); // is_internal
          const partitions = t.readUVarIntArray((p: any) => {
            p.readInt16();
            const index = p.readInt32();
            p.readInt32(); // leader
            p.readInt32(); // leader_epoch
            readInt32Array(p);
            readInt32Array(p);
            readInt32Array(p);
            p.readTaggedFields();
            return index;
          }) as number[];
          t.readInt32(); // topic_authorized_operations
          t.readTaggedFields();
          return { errorCode, name, id, partitions: partitions.length };
        });
      },
      // Per-topic errors (unknown topic) are answers here, not failures: such topics have no id.
      parse: async (x: unknown) => x,
    },
  };
}

/** The answered topics with an id, by name. Pure. */
export function topicIdentities(answer: readonly { errorCode: number; name: string | null; id: string; partitions: number }[]): Map<string, TopicIdentity> {
  const out = new Map<string, TopicIdentity>();
  for (const t of answer) if (t.errorCode === 0 && t.name !== null && !/^0+$/.test(t.id)) out.set(t.name, { id: t.id, partitions: t.partitions });
  return out;
}

/** The highest Metadata version with topic ids both sides speak, or null. Pure. */
export function topicIdVersion(broker: { minVersion: number; maxVersion: number } | undefined): number | null {
  if (!broker || broker.maxVersion < TOPIC_ID_VERSIONS.min) return null;
  return Math.min(broker.maxVersion, TOPIC_ID_VERSIONS.max);
}

/**
 * Ask over a kafkajs cluster made for it (kafkajs's private factory on its client): null when the
 * broker has no topic ids. The cluster is the caller's to disconnect.
 */
export async function fetchTopicIds(cluster: any, topics: readonly string[]): Promise<Map<string, TopicIdentity> | null> {
  await cluster.connect();
  const broker = cluster.brokerPool.seedBroker;
  const version = topicIdVersion(broker.versions?.[METADATA]);
  if (version === null) return null;
  if (topics.length === 0) return new Map();
  return topicIdentities(await broker.connectionPool.send(topicIdsRequest(topics, version)));
}

/**
 * The API versions the seed broker announced (ApiVersions, asked by kafkajs on connect), by API
 * key, over a kafkajs cluster made for it (as fetchTopicIds).
 */
export async function fetchApiVersions(cluster: any): Promise<Map<number, { minVersion: number; maxVersion: number }>> {
  await cluster.connect();
  const versions = (cluster.brokerPool.seedBroker.versions ?? {}) as Record<string, { minVersion: number; maxVersion: number }>;
  return new Map(Object.entries(versions).map(([key, v]) => [Number(key), { minVersion: v.minVersion, maxVersion: v.maxVersion }]));
}

/**
 * Each broker's own API versions (or why it could not be asked), the brokers as the cluster's
 * metadata names them. kafkajs asks the broker it first reaches (its seed) and gives every other
 * broker that answer without asking it: a broker of an older release would pass for the seed's.
 * Each other one is connected (as kafkajs would) and asked ApiVersions here.
 */
export async function fetchBrokerApiVersions(cluster: any): Promise<{ broker: string; versions?: Map<number, { minVersion: number; maxVersion: number }>; problem?: string }[]> {
  await cluster.connect();
  await cluster.refreshMetadata();
  const pool = cluster.brokerPool;
  const asMap = (versions: Record<string, { minVersion: number; maxVersion: number }>) =>
    new Map(Object.entries(versions).map(([key, v]) => [Number(key), { minVersion: v.minVersion, maxVersion: v.maxVersion }]));
  return Promise.all(
    Object.values(pool.brokers as Record<string, any>).map(async (broker) => {
      const at = `${broker.connectionPool.host}:${broker.connectionPool.port}`;
      try {
        if (broker === pool.seedBroker) return { broker: at, versions: asMap(broker.versions ?? {}) };
        await pool.findBroker({ nodeId: broker.nodeId });
        return { broker: at, versions: asMap(await broker.apiVersions()) };
      } catch (err) {
        return { broker: at, problem: (err as Error).message };
      }
    }),
  );
}

/** kafkajs's private cluster factory of a client (kafkajs 2.2.4: a symbol-keyed field). */
export function clusterFactory(kafka: object): (opts: { allowAutoTopicCreation: boolean }) => any {
  const sym = Object.getOwnPropertySymbols(kafka).find((s) => s.description === 'private:Kafka:createCluster');
  if (!sym) throw new Error('kafkajs changed: no private:Kafka:createCluster on its client (shared/kafka/topic-ids.ts)');
  return (kafka as any)[sym];
}
