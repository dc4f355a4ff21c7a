/**
 * `shardbridge replay --topic T [--partition P] (--to-offset N | --to-time TS) --sink-config FILE`:
 * rewind the sink on a topic, with the sink stopped (while its group has members: exit 1,
 * nothing changed). The destination's stored offsets (what the sink resumes from) and the
 * consumer group's committed offsets (what monitoring shows) are both set; the sink then re-applies the events in order, which converges to
 * the same rows. Only rewinds: a partition already before the target is left alone, except one
 * stored below the first offset Kafka still has, which moves up to it, and one past its copy of a
 * truncate other partitions go back over (widenOverTruncates). Targets are clamped to the offsets
 * Kafka has (its log start to its end). Only topics this sink reads.
 */
import pg from 'pg';
import { ConfigError, ServiceError, atServer } from '../../errors.ts';
import { pgEndpoint } from '../../config/postgres.ts';
import { createKafka, kafkaRemedy } from '../../kafka/client.ts';
import { groupRunning } from '../../kafka/admin-pure.ts';
import { COMMAND_KAFKA_TIMEOUTS } from '../../migration/gather.ts';
import { connectionConfig } from '../../../sink-connector/config.ts';
import { ensureSinkTables, forgetPartitions, forgetStalls, readTopicOffsets, setStoredOffsets } from '../../../sink-connector/offsets.ts';
import { applyBarrierRewind, planBarrierRewind, readArrivals, type BarrierRewind, type RecordedArrival } from '../../../sink-connector/truncate-barrier.ts';
import { isSinkTopic, reopenSnapshot } from '../../../sink-connector/control.ts';
import { keyedPartitions } from '../../../source-connector/control-topics.ts';
import { keyedCount } from '../../../source-connector/partition-pins.ts';
import { destinationRemedy } from '../../../sink-connector/start-errors.ts';
import type { CommandContext } from '../main.ts';

export interface ReplayOptions {
  topic: string;
  partition?: number;
  toOffset?: bigint | string;
  toTime?: Date;
}

export interface ReplayPlanRow {
  partition: number;
  /** Stored next offset now (null: nothing applied yet). */
  stored: bigint | null;
  /** What the partition is set to (null: left alone). */
  next: bigint | null;
  /** Why the target was not taken as given (clamped to what Kafka has). */
  note?: string;
}

/**
 * Pure: per partition, rewind to the target clamped to the offsets Kafka has (its log start to
 * its end), never forward, except a stored offset below the log start, whose records are gone:
 * it moves up to the log start (where the sink stalls at such a gap, sink-connector/offset-gaps.ts).
 */
export function planReplay(
  partitions: number[],
  targets: Map<number, bigint>,
  ends: Map<number, bigint>,
  stored: Map<number, bigint>,
  starts: Map<number, bigint> = new Map(),
): ReplayPlanRow[] {
  return partitions.map((partition) => {
    const end = ends.get(partition) ?? 0n;
    const start = starts.get(partition) ?? 0n;
    const wanted = targets.get(partition) ?? end;
    const target = wanted > end ? end : wanted < start ? start : wanted;
    const current = stored.get(partition) ?? null;
    const row: ReplayPlanRow = { partition, stored: current, next: null };
    // Nothing stored: the sink starts at 0.
    const from = current ?? 0n;
    if (current !== null && target < current) row.next = target;
    else if (from < start) row.next = start;
    if (row.next === null) return row;
    if (row.next > from) {
      row.note = `moved forward to Kafka's first offset ${start}: offsets ${from}..${start - 1n} are gone from Kafka, the destination misses their changes (resnapshot the table)`;
    } else if (wanted < start) row.note = `offsets below ${start} are gone from Kafka (retention or deleteRecords): from ${start}, its first offset`;
    else if (wanted > end) row.note = `the partition ends at ${end}`;
    return row;
  });
}

const movesOf = (plan: readonly ReplayPlanRow[]): Map<number, bigint> => new Map(plan.flatMap((r) => (r.next === null ? [] : [[r.partition, r.next] as const])));

/**
 * Pure: a replay of the whole topic whose targets fall on both sides of a truncate's copies (one
 * offset per partition: `--to-offset N` between them, or `--to-time` between their sends) would
 * be refused, though every partition is being replayed. Each partition left past its copy is
 * taken back to it instead (rewinding further re-applies more, in order: it converges), unless
 * Kafka no longer has the copy. Changes `plan`'s rows; returns the rows it set that were left
 * alone before, and the barrier's plan (still refused when it cannot widen).
 */
export function widenOverTruncates(
  plan: ReplayPlanRow[],
  arrivals: readonly RecordedArrival[],
  copies: number,
  starts: ReadonlyMap<number, bigint>,
): { barrier: BarrierRewind; widened: (ReplayPlanRow & { next: bigint })[] } {
  const widened: (ReplayPlanRow & { next: bigint })[] = [];
  // Each round moves a partition back to a copy below its position: bounded by the copies.
  for (let round = 0; ; round++) {
    const barrier = planBarrierRewind(arrivals, movesOf(plan), copies);
    const r = barrier.refused;
    const row = r && plan.find((x) => x.partition === r.partition);
    if (!r || !row || round > arrivals.length || r.offset < (starts.get(r.partition) ?? 0n)) return { barrier, widened };
    // A partition left alone goes no further forward than it stands (a copy above it: its arrival forgotten).
    const at = row.next ?? row.stored ?? 0n;
    if (row.next === null) widened.push(row as ReplayPlanRow & { next: bigint });
    row.next = r.offset < at ? r.offset : at;
    row.note = `back to its copy of truncate ${r.truncateId}, which the other partitions re-apply: the truncate is applied again once every partition reaches it`;
  }
}

/**
 * Why `--topic`/`--partition` name nothing on Kafka, or nothing this sink reads (a usage error), or
 * undefined when they name something it reads. Pure.
 */
export function argumentProblem(
  opts: Pick<ReplayOptions, 'topic' | 'partition'>,
  topics: readonly string[],
  partitions: number | undefined,
  brokers: string,
  sink?: { prefix: string; deadLetterTopic: string },
): string | undefined {
  if (!topics.includes(opts.topic)) {
    // A table's name given for its topic (public.orders), or the right name in the wrong case.
    const near = topics.filter((t) => t.toLowerCase() === opts.topic.toLowerCase() || t.toLowerCase().endsWith(`.${opts.topic.toLowerCase()}`));
    const hint = near.length > 0 && near.length <= 3 ? `; did you mean ${near.join(' or ')}?` : '';
    return `--topic ${opts.topic}: no such topic on Kafka at ${brokers} (change topics are named <topicPrefix>.<schema>.<table>)${hint}`;
  }
  // Positions stored for a topic the sink never reads would change nothing, under a success message.
  if (sink !== undefined && !isSinkTopic(opts.topic, sink.prefix, sink.deadLetterTopic)) {
    const why = opts.topic === sink.deadLetterTopic ? "it is the sink's dead-letter topic, whose records the sink writes and never applies" : `the sink applies the topics under its topicPrefix ${sink.prefix} (${sink.prefix}.<schema>.<table>)`;
    return `--topic ${opts.topic}: not a topic this sink reads: ${why}; is --sink-config the configuration of the sink that applies it?`;
  }
  if (opts.partition !== undefined && partitions !== undefined && opts.partition >= partitions) {
    return `--partition ${opts.partition}: topic ${opts.topic} has ${partitions} partition(s), numbered from 0`;
  }
  return undefined;
}

/**
 * Replay while the sink's group has members: exit 1, saying to stop the sink first. The members
 * are named (client id and host): which machine runs one, or a process killed moments ago
 * (a sink, or a replay killed while it set the group's offsets), whose member Kafka keeps
 * until its session times out. Pure.
 */
export function sinkRunning(groupId: string, state: string, topic: string, members: readonly { clientId: string; clientHost: string }[] = []): ServiceError {
  const named = members.map((m) => `${m.clientId} (${m.clientHost.replace(/^\//, '')})`);
  const shown = named.length > 5 ? [...named.slice(0, 5), `${named.length - 5} more`] : named;
  return new ServiceError(
    `the sink is still running: its consumer group ${groupId} has ${members.length > 0 ? `members ${shown.join(', ')}` : 'members'} (state ${state}); replay sets the sink's positions only while it is stopped`,
    {
      context: { groupId, state, topic },
      remedy:
        `stop the sink connector (every member of group ${groupId}) first, then run replay again; ` +
        "a process killed moments ago (a sink, or a replay) stays a member until its session times out (10 s): run replay again then",
    },
  );
}

export async function run(opts: ReplayOptions, ctx: CommandContext): Promise<number> {
  const config = ctx.sinkConfig();
  const log = ctx.logger;
  const kafka = createKafka(
    // A command's settings (commandKafka's): a broker that does not answer is reported in seconds, not minutes.
    { ...COMMAND_KAFKA_TIMEOUTS, brokers: config.kafka.brokers, clientId: config.kafka.clientId ?? `shardbridge-replay-${config.name}`, ssl: config.kafka.ssl, sasl: config.kafka.sasl },
    log,
  );
  const admin = kafka.admin();
  const brokers = config.kafka.brokers.join(',');
  // Every failure names its server: kafkajs's and pg's own messages do not.
  const onKafka = <T>(p: Promise<T>) => p.catch((err: unknown) => {
    throw atServer(err, `cannot use Kafka at ${brokers}`, kafkaRemedy(err));
  });
  const onDestination = <T>(p: Promise<T>) => p.catch((err: unknown) => {
    throw atServer(err, `cannot use the destination PostgreSQL at ${pgEndpoint(config.destination)}`, destinationRemedy(err));
  });
  const client = new pg.Client({ ...connectionConfig(config.destination, { section: 'destination', application_name: 'shardbridge-replay' }), connectionTimeoutMillis: 10_000 });
  client.on('error', () => {});
  try {
    const topics = await onKafka(admin.listTopics());
    const count = topics.includes(opts.topic) ? await onKafka(admin.partitionCount(opts.topic)) : undefined;
    const problem = argumentProblem(opts, topics, count, brokers, { prefix: config.topicPrefix, deadLetterTopic: config.deadLetter.topic ?? `${config.topicPrefix}.__dlq` });
    if (problem !== undefined || count === undefined) {
      ctx.err(`shardbridge replay: ${problem}\n`);
      return 2;
    }
    // Before the destination is touched: a running sink would apply on from its own positions
    // (and Kafka refuses to set a group's offsets while it has members). Not a usage error.
    const group = await onKafka(admin.groupMembers(config.groupId));
    if (groupRunning(group.state)) throw sinkRunning(config.groupId, group.state, opts.topic, group.members);
    const partitions = opts.partition !== undefined ? [opts.partition] : Array.from({ length: count }, (_, i) => i);
    const ranges = await onKafka(admin.offsetRanges(opts.topic));
    const ends = new Map(ranges.map((e) => [e.partition, BigInt(e.end)]));
    const starts = new Map(ranges.map((e) => [e.partition, BigInt(e.start)]));
    const targets = new Map<number, bigint>();
    if (opts.toTime !== undefined) {
      // Kafka reads a negative time as a position (-1 latest, -2 earliest, -3 the largest
      // timestamp): a time before 1970 rewound nothing. No record is older than 0.
      const at = Math.max(0, opts.toTime.getTime());
      for (const o of await onKafka(admin.offsetsAtTime(opts.topic, at))) targets.set(o.partition, BigInt(o.offset));
    } else {
      for (const p of partitions) targets.set(p, BigInt(opts.toOffset ?? 0));
    }
    await onDestination(client.connect().then(() => ensureSinkTables(client)));
    const stored = await readTopicOffsets(client, config.groupId, opts.topic);
    const plan = planReplay(partitions, targets, ends, stored, starts);
    const moves = plan.filter((r): r is ReplayPlanRow & { next: bigint } => r.next !== null);
    // A truncate reached a partition as one copy per partition (sink-connector/truncate-barrier.ts):
    // re-applying it needs every partition that passed it rewound before it.
    // Its copies went to the partitions the topic's keys go to (source-connector/partition-pins.ts), not to any added since.
    const arrivals = await readArrivals(client, config.groupId, opts.topic);
    const snapshotTopic = `${config.topicPrefix}.__snapshot`;
    const keyed = arrivals.length > 0 && topics.includes(snapshotTopic) ? await onKafka(keyedPartitions(kafka, snapshotTopic, opts.topic, log)) : undefined;
    const copies = keyedCount(count, keyed);
    const { barrier, widened } = opts.partition === undefined ? widenOverTruncates(plan, arrivals, copies, starts) : { barrier: planBarrierRewind(arrivals, movesOf(plan), copies), widened: [] };
    moves.push(...widened);
    if (barrier.refused) {
      const r = barrier.refused;
      throw new ConfigError(
        `the replay crosses truncate ${r.truncateId} of ${opts.topic}, which partition ${r.partition} applied at offset ${r.offset} and would not re-apply: the table would not converge`,
        { context: { topic: opts.topic, partition: r.partition, offset: r.offset.toString() }, remedy:
            opts.partition !== undefined
              ? 'replay every partition of the topic (no --partition): the partitions past the truncate are taken back to their copy of it; or replay only after it'
              : `${r.offset < (starts.get(r.partition) ?? 0n) ? `Kafka no longer has partition ${r.partition}'s copy of it (its first offset is above ${r.offset}): ` : ''}replay only after the truncate, or resnapshot the table` },
      );
    }
    // Offsets stored in partitions the topic no longer has (it was created again with fewer): a replay of the whole topic forgets them.
    const vanished = opts.partition === undefined ? [...stored.keys()].filter((p) => p >= count).sort((a, b) => a - b) : [];
    let reopened = false;
    if (moves.length > 0 || vanished.length > 0) {
      // The group first: Kafka refuses while the sink runs, before the destination is touched.
      if (moves.length > 0) await admin.setGroupOffsets(config.groupId, opts.topic, moves.map((m) => ({ partition: m.partition, offset: m.next.toString() })));
      await client.query('BEGIN');
      try {
        await setStoredOffsets(client, config.groupId, opts.topic, moves.map((m) => ({ partition: m.partition, offset: m.next })));
        await forgetPartitions(client, config.groupId, opts.topic, vanished);
        await forgetStalls(client, config.groupId, opts.topic, [...moves.map((m) => m.partition), ...vanished]);
        await applyBarrierRewind(client, config.groupId, opts.topic, barrier);
        reopened = await reopenSnapshot(client, opts.topic, moves.map((m) => ({ partition: m.partition, offset: m.next })));
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      }
    }
    // The instant the time was read as, in UTC: the records' timestamps are compared with it.
    if (opts.toTime !== undefined) ctx.out(`--to-time ${opts.toTime.toISOString()}: each partition's first offset at or after it\n`);
    for (const r of plan) {
      const now = r.stored === null ? 'nothing applied' : `next offset ${r.stored}`;
      ctx.out(
        r.next === null
          ? `${opts.topic}[${r.partition}]: ${now}, already at or before the target: unchanged\n`
          : `${opts.topic}[${r.partition}]: ${now} -> ${r.next} (destination and group ${config.groupId})${r.note ? `: ${r.note}` : ''}\n`,
      );
    }
    for (const p of vanished) ctx.out(`${opts.topic}[${p}]: next offset ${stored.get(p)} forgotten: the topic has ${count} partition${count === 1 ? '' : 's'} now\n`);
    if (reopened) ctx.out(`${opts.topic}: its snapshot is applied again: shardbridge.snapshot_status says complete once the sink is back past its completion marker\n`);
    for (const id of barrier.rounds.keys()) ctx.out(`${opts.topic}: truncate ${id} will be applied again once every partition reaches it\n`);
    log.info({ topic: opts.topic, partitions: moves.map((m) => m.partition), groupId: config.groupId }, 'replay set: start the sink to re-apply');
    return 0;
  } finally {
    await client.end().catch(() => {});
    await admin.disconnect().catch(() => {});
  }
}
