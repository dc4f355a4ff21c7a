/**
 * Our Consumer over kafkajs's (client.ts makes it): no auto-commit, refusals named by the ACL
 * they lack, a broker that never answers explained.
 */
import type { Consumer as KjsConsumer } from 'kafkajs';
import { asAclError, type AclClient } from './authorization.ts';
import { answered, explainUnanswered } from './unanswered.ts';
import type { Consumer, EachBatchPayload } from './ports.ts';

export function wrapConsumer(c: KjsConsumer, groupId: string, groupPrefix: string | undefined, client: AclClient): Consumer {
  let topics: string[] = [];
  // A consumer reads its topics and joins, commits through its group: Read on both.
  const denied = (err: unknown, doing: string): unknown =>
    asAclError(err, { ...client, operation: 'Read', resourceType: 'group', names: [groupId], prefix: groupPrefix, doing }, { ...client, operation: 'Read', resourceType: 'topic', names: topics, doing });
  const refused = (doing: string) => (err: unknown) => Promise.reject(denied(err, doing));
  // Named in a crash's line: kafkajs's crash event does not say which member crashed.
  let memberId: string | undefined;
  c.on(c.events.GROUP_JOIN, (e) => void (memberId = e.payload.memberId));
  return {
    connect: () => answered(c.connect(), client.brokers),
    disconnect: () => c.disconnect(),
    stop: () => c.stop(),
    subscribe: (opts) => {
      topics = opts.topics.map(String);
      return c.subscribe({ topics: opts.topics, fromBeginning: opts.fromBeginning }).catch(refused('subscribing to its topics'));
    },
    run: (opts) =>
      c.run({
        autoCommit: false,
        eachBatchAutoResolve: opts.eachBatchAutoResolve ?? true,
        partitionsConsumedConcurrently: opts.partitionsConsumedConcurrently ?? 1,
        // Our kafkajs patch gives every consumed record its topic, partition and place in the fetched bytes.
        eachBatch: (payload) => opts.eachBatch(payload as unknown as EachBatchPayload),
      }).catch((err: unknown) => Promise.reject(explainUnanswered(denied(err, 'starting to consume'), client.brokers))),
    pause: (tps) => c.pause(tps),
    resume: (tps) => c.resume(tps),
    paused: () => c.paused(),
    seek: (tpo) => c.seek(tpo),
    commitOffsets: (offsets) => c.commitOffsets(offsets).catch(refused('committing offsets')),
    onGroupJoin: (cb) => c.on(c.events.GROUP_JOIN, (e) => cb({ ...e.payload.memberAssignment })),
    onCrash: (cb) => c.on(c.events.CRASH, (e) => cb({ error: denied(e.payload.error, 'consuming') as Error, restart: e.payload.restart, groupId, memberId })),
    // numberOfBatches counts the partitions with records under our kafkajs patch (0 in kafkajs itself).
    onFetch: (cb) => c.on(c.events.FETCH, (e) => cb({ durationMs: e.payload.duration, partitionsWithRecords: e.payload.numberOfBatches })),
  };
}
