/**
 * The topic list under the prefix, re-read every `topicRefreshMs`: kafkajs resolves a
 * subscription once, so a table topic that appears has its table mapping recorded and the
 * consumer restarted on the new list. Table topics the source's snapshot markers name that the
 * listing leaves out are reported meanwhile (unseen-topics.ts).
 */
import type pg from 'pg';
import type { Gauge } from 'prom-client';
import type { Logger } from '../shared/logger.ts';
import { checkAndRecordMappings } from './applied-mappings.ts';
import type { SinkConfig } from './config.ts';
import { snapshotStatuses } from './control.ts';
import { topicMappings } from './destination-start.ts';
import { withPooledClient } from './destination-errors.ts';
import type { TargetFor } from './schema-compile.ts';
import { UnseenTopics, unseenMessage, type NamedTopic } from './unseen-topics.ts';

export interface TopicRefreshOptions {
  config: SinkConfig;
  pool: pg.Pool;
  log: Logger;
  targetFor: TargetFor;
  /** The cluster the stored positions are read against (applied-mappings.ts); null: not compared. */
  kafkaCluster: string | null;
  /** `topics_unseen`. */
  topicsUnseen: Gauge<string>;
  /** The sink's topics Kafka lists now. */
  list(): Promise<string[]>;
  /** The topics the consumer is subscribed to. */
  subscribed(): ReadonlySet<string>;
  /** The source table a topic's latest value schema names, when it names one. */
  sourceOfTopic(topic: string): Promise<{ schema: string; table: string } | null | undefined>;
  /** Replace the consumer with one subscribed to `topics`. */
  restartConsumer(topics: string[]): Promise<void>;
  /** Says where the new topics' destination tables do not take the sink's rows as the source's (destination-start.ts, warnSilentChanges). */
  warnSilentChanges(tables: { schema: string; table: string }[]): Promise<void>;
}

export class TopicRefresh {
  private readonly unseen: UnseenTopics;

  constructor(private readonly o: TopicRefreshOptions) {
    this.unseen = new UnseenTopics(o.config.topicPrefix);
  }

  /** One look: run every `topicRefreshMs`. */
  async refresh(): Promise<void> {
    const { config, pool, log, targetFor, kafkaCluster } = this.o;
    const named = await withPooledClient(pool, (client) => snapshotStatuses(client)).catch(() => null);
    const topics = await this.o.list();
    if (named) this.reportUnseen(named, topics);
    const subscribed = this.o.subscribed();
    if (topics.some((t) => !subscribed.has(t))) {
      const added = topics.filter((t) => !subscribed.has(t));
      log.info({ topics: added }, 'new topics under the prefix: re-subscribing');
      // Recorded now, so that a mapping changed before the next start is compared with this one.
      const named = await Promise.all(added.map(async (topic) => ({ ...(await this.o.sourceOfTopic(topic).catch(() => null)), topic })));
      const sources = named.flatMap((n) => (n.schema === undefined || n.table === undefined ? [] : [{ schema: n.schema, table: n.table, topic: n.topic }]));
      // A topic whose schema is not registered yet (the source makes its topics first) is named by
      // its topic, as at start: the registry is asked only for names the topic cannot carry.
      const mappings = topicMappings(config, added, sources, targetFor);
      await withPooledClient(pool, (client) => checkAndRecordMappings(client, config.groupId, mappings, log, { atStart: false, kafkaCluster })).catch(
        (err: unknown) => log.warn({ err }, 'could not record the table mappings of the new topics'),
      );
      // As at start: a sink started before the source made its topics (as its own log invites) said nothing of them.
      await this.o.warnSilentChanges(mappings.map((m) => ({ schema: m.destSchema, table: m.destTable })));
      await this.o.restartConsumer(topics);
    }
  }

  private reportUnseen(named: readonly NamedTopic[], listed: readonly string[]): void {
    const { fresh, unseen: count } = this.unseen.look(named, new Set(listed));
    this.o.topicsUnseen.set(count);
    if (fresh.length === 0) return;
    const { msg, remedy } = unseenMessage(fresh);
    this.o.log.error({ topics: fresh.map((n) => n.topic), remedy }, `${msg} — remedy: ${remedy}`);
  }
}
