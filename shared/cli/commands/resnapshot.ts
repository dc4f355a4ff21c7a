/**
 * `shardbridge resnapshot --table T [--table T2 …] [--source-config FILE] [--wait-seconds N] [--json]`:
 * take these tables' snapshots again: a truncate of each into its topic (the sink empties the
 * destination table), then a copy beside the stream while the other tables stream on (a table's
 * own snapshot, docs/source-connector.md); every selected table asked for: a new slot and a
 * whole new snapshot. The repair for a destination table that misses changes (records gone
 * from Kafka before the sink applied them, a table changed on the destination by hand).
 *
 * With the source connector streaming, the request goes through its stream as a logical message
 * (resnapshot-signal.ts) and the command waits until the slot is confirmed past it. Stopped, the
 * command writes a `started` marker marked `requested` for each table to `__snapshot`, which the
 * next start reads. Running but not streaming yet (copying its first snapshot): refused, exit 1.
 */
import type pg from 'pg';
import type { CommandContext } from '../main.ts';
import type { TableInfo } from '../../pg-types.ts';
import { ServiceError, atServer } from '../../errors.ts';
import { quoteIdent, splitQualifiedName } from '../../sql.ts';
import { kafkaRemedy } from '../../kafka/client.ts';
import { resolveTables } from '../../../source-connector/catalog.ts';
import { controlTopicNames, readControlTopic, reduceSnapshotTopic, type SnapshotState } from '../../../source-connector/control-topics.ts';
import { parseLsn } from '../../../source-connector/pgoutput-decoder.ts';
import { topicFor } from '../../../source-connector/table-versions.ts';
import { commandKafka, readSlot } from '../../migration/gather.ts';
import type { SlotFacts } from '../../migration/status.ts';
import { connectSide, sourceWriter } from '../connect.ts';
import { RESNAPSHOT_PREFIX, requestedMarker, signalContent } from '../../../source-connector/resnapshot-signal.ts';
import { sourceSessionName } from '../../../source-connector/source-session.ts';
import type { SourceConfig } from '../../../source-connector/config.ts';
import type { KafkaClient } from '../../kafka/client.ts';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ResnapshotPlan {
  /** Asked for and not selected by the configuration. */
  unknown: string[];
  /** Names several selected tables answer to, with each one's quoted name. */
  ambiguous: { name: string; tables: string[] }[];
  /** Tables whose latest marker is already `started`: the next start takes them anyway. */
  pending: TableInfo[];
  /** Tables to mark. */
  mark: TableInfo[];
  /** Every selected table will be taken again: the next start drops the slot and snapshots all from a new one. */
  all: boolean;
}

const qualified = (t: Pick<TableInfo, 'schema' | 'name'>) => `${t.schema}.${t.name}`;

/**
 * The selected tables `name` may mean: with double quotes, the parts they mark (`"my.schema".orders`);
 * otherwise `schema.table` as printed (two tables when a dot is inside a name), else a name alone. Pure.
 */
function tablesNamed(name: string, selected: readonly TableInfo[]): TableInfo[] {
  if (name.includes('"')) {
    const { schema, table } = splitQualifiedName(name);
    return selected.filter((t) => t.schema === schema && t.name === table);
  }
  const printed = selected.filter((t) => qualified(t) === name);
  return printed.length > 0 ? printed : selected.filter((t) => t.name === name);
}

/** Tables by `schema.table` (parts double-quoted where they hold a dot), or a name alone when exactly one selected table has it. Pure. */
export function planResnapshot(asked: readonly string[], selected: readonly TableInfo[], state: SnapshotState): ResnapshotPlan {
  const unknown: string[] = [];
  const ambiguous: { name: string; tables: string[] }[] = [];
  const found = new Map<string, TableInfo>();
  for (const name of asked) {
    const tables = tablesNamed(name, selected);
    if (tables.length === 1) found.set(qualified(tables[0]), tables[0]);
    else if (tables.length === 0) unknown.push(name);
    else ambiguous.push({ name, tables: tables.map((t) => `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`) });
  }
  const tables = [...found.values()];
  const pending = tables.filter((t) => state.tables.get(qualified(t))?.kind === 'started');
  const mark = tables.filter((t) => !pending.includes(t));
  const marked = new Set([...tables.map(qualified), ...selected.filter((t) => state.tables.get(qualified(t))?.kind === 'started').map(qualified)]);
  return { unknown, ambiguous, pending, mark, all: selected.length > 0 && selected.every((t) => marked.has(qualified(t))) };
}

export async function run(opts: Record<string, unknown>, ctx: CommandContext): Promise<number> {
  const config = ctx.sourceConfig();
  const asked = (opts.table as string[] | undefined) ?? [];
  if (config.snapshot.mode !== 'initial') {
    ctx.err(`shardbridge resnapshot: snapshot.mode is ${config.snapshot.mode}: ${config.snapshot.mode === 'never' ? 'the source connector takes no snapshot' : 'every start takes the whole snapshot from a temporary slot'}, so there is nothing to ask for (set snapshot.mode to initial)\n`);
    return 2;
  }
  const kafka = commandKafka(config, ctx.logger, 'shardbridge-resnapshot');
  const brokers = config.kafka.brokers.join(',');
  const onKafka = <T>(p: Promise<T>) => p.catch((err: unknown) => {
    throw atServer(err, `cannot use Kafka at ${brokers}`, kafkaRemedy(err));
  });
  let client: pg.Client | undefined;
  const admin = kafka.admin();
  try {
    client = await connectSide(config.source, 'source', 'shardbridge-resnapshot');
    const { tables } = await resolveTables(client, config.tables);
    const topics = controlTopicNames(config.topicPrefix);
    const state: SnapshotState = (await onKafka(admin.listTopics())).includes(topics.snapshot)
      ? reduceSnapshotTopic(await onKafka(readControlTopic(kafka, topics.snapshot, ctx.logger, 30_000)))
      : { tables: new Map(), slots: new Map(), partitions: new Map() };
    const plan = planResnapshot(asked, tables, state);
    if (plan.unknown.length > 0) {
      const some = tables.slice(0, 10).map(qualified).join(', ');
      ctx.err(`shardbridge resnapshot: --table ${plan.unknown.join(', ')}: not a table the source configuration selects (tables.include / tables.schemas)${tables.length > 0 ? `; selected: ${some}${tables.length > 10 ? `, and ${tables.length - 10} more` : ''}` : ''}\n`);
      return 2;
    }
    if (plan.ambiguous.length > 0) {
      const a = plan.ambiguous.map((x) => `${x.name} names ${x.tables.join(' and ')}`).join('; ');
      ctx.err(`shardbridge resnapshot: --table ${a}: name one as written there (double quotes around a part holding a dot)\n`);
      return 2;
    }
    let slot = await readSlot(client, config.slotName);
    const waitMs = Number(opts.waitSeconds ?? 60) * 1000;
    // Its session open and the slot idle: restarting a session, or copying its first snapshot. Its stream is waited for.
    if (!slot?.active && (await connectorSession(client, config.slotName)) !== null) {
      slot = (await slotWhen(client, config.slotName, (s) => s.active, waitMs)) ?? slot;
      if (!slot?.active) {
        throw new ServiceError(`the source connector runs (${await connectorSession(client, config.slotName) ?? 'its session'}) but does not stream from slot ${config.slotName} yet: it is taking a snapshot`, {
          context: { slot: config.slotName },
          remedy: 'run resnapshot again once it streams (status shows its phase), or stop it first',
        });
      }
    }
    let next: Next;
    if (slot?.active) {
      // Streaming: asked through its stream, in commit order (resnapshot-signal.ts).
      const names = plan.mark.map((t) => qualified(t));
      const c = client;
      // A standby source: the request is written on its primary, whose WAL the standby's slot decodes (source-connector/standby.ts).
      const writer = names.length === 0 ? null : await sourceWriter(c, config.primary, 'shardbridge-resnapshot', 'the resnapshot request');
      let asked;
      try {
        asked = writer === null ? null : await askRunning(writer, config, names);
      } finally {
        if (writer !== c) await writer?.end().catch(() => {});
      }
      const since = asked?.message ?? null;
      // Confirmed at or past the commit: the connector read the request's transaction, and Kafka has what it wrote.
      const confirmed = asked === null || (await slotWhen(client, config.slotName, (s) => s.confirmedLsn !== null && parseLsn(s.confirmedLsn) >= asked.committed, waitMs)) !== null;
      if (since !== null && confirmed) {
        // Confirmed past the request: the connector read it, and its markers (in that transaction) are in Kafka, unless it passed the request over.
        const state = reduceSnapshotTopic(await onKafka(readControlTopic(kafka, topics.snapshot, ctx.logger, 30_000)));
        const missed = names.filter((t) => { const m = state.tables.get(t); return m === undefined || parseLsn(m.consistentPoint) < since; });
        if (missed.length > 0) {
          throw new ServiceError(`the running source connector read the request but did not take ${missed.join(', ')}: it does not select them (created since it started, or another configuration)`, {
            context: { slot: config.slotName },
            remedy: 'a table created since the connector started is snapshotted by its next start: restart it; otherwise run resnapshot with the configuration the connector runs with',
          });
        }
      }
      next = confirmed ? 'taken now by the running connector' : 'taken when the running connector reaches the request';
    } else {
      if (plan.mark.length > 0) await markStopped(kafka, client, config, topics.snapshot, plan.mark, slot?.confirmedLsn ? parseLsn(slot.confirmedLsn) : 0n, onKafka);
      next = plan.all || !slot ? 'whole snapshot from a new slot' : 'these tables copied beside the stream, the slot kept';
    }
    const report = { requested: plan.mark.map(qualified), alreadyPending: plan.pending.map(qualified), next };
    ctx.logger.info({ ...report, slot: config.slotName }, 'resnapshot: asked');
    ctx.out(opts.json ? JSON.stringify(report, null, 2) + '\n' : render(report, config.slotName, slot !== null));
    return 0;
  } finally {
    await Promise.all([client?.end().catch(() => {}), admin.disconnect().catch(() => {})]);
  }
}

type Next = 'whole snapshot from a new slot' | 'these tables copied beside the stream, the slot kept' | 'taken now by the running connector' | 'taken when the running connector reaches the request';

function render(r: { requested: string[]; alreadyPending: string[]; next: Next }, slot: string, slotExists: boolean): string {
  const lines = r.alreadyPending.map((t) => `${t}: already waiting for its snapshot (its latest marker is "started"): unchanged`);
  const how = 'a truncate of its topic first: the sink empties the destination table, then applies the new snapshot';
  switch (r.next) {
    case 'taken now by the running connector':
      lines.unshift(...r.requested.map((t) => `${t}: the running source connector takes its snapshot again now (${how})`));
      if (r.requested.length > 0) lines.push('the connector restarted its session to take them: the other tables stream on while they are copied');
      break;
    case 'taken when the running connector reaches the request':
      lines.unshift(...r.requested.map((t) => `${t}: asked for in the source's WAL; the running source connector takes its snapshot again when its stream reaches the request (${how})`));
      lines.push('the connector has not read the request yet (it is behind, or restarting): `status` shows these tables requested, then snapshotting');
      break;
    default:
      lines.unshift(...r.requested.map((t) => `${t}: its snapshot is taken again at the source connector's next start (${how})`));
      lines.push(
        r.next === 'whole snapshot from a new slot'
          ? `every selected table waits for its snapshot${slotExists ? '' : ` (slot ${slot} does not exist)`}: the next start takes the whole snapshot again from a new slot`
          : `the next start keeps slot ${slot} and copies these tables from a temporary slot while the other tables stream on`,
      );
  }
  return lines.map((l) => l + '\n').join('');
}

/** The connector stopped: the markers written here, read by its next start. */
async function markStopped(kafka: KafkaClient, client: pg.Client, config: SourceConfig, topic: string, tables: TableInfo[], point: bigint, onKafka: <T>(p: Promise<T>) => Promise<T>): Promise<void> {
  const estimates = await estimatedRows(client, tables);
  const producer = kafka.producer();
  await onKafka(producer.connect());
  try {
    const messages = tables.map((t) => {
      const m = requestedMarker(t, topicFor(config.topicPrefix, t.schema, t.name), config.slotName, point, estimates.get(t.relid) ?? 0);
      return { topic, key: m.key, value: m.value };
    });
    await onKafka(producer.sendBatch(messages, { signal: AbortSignal.timeout(60_000) }));
  } finally {
    await producer.disconnect().catch(() => {});
  }
}

/**
 * The connector streaming: the request goes into the WAL as a transactional message. Its
 * position, and one at or past its commit: confirmed past the message alone could be another
 * transaction's commit written between the message and its own.
 */
async function askRunning(client: pg.Client, config: SourceConfig, tables: string[]): Promise<{ message: bigint; committed: bigint }> {
  const { rows } = await client.query<{ lsn: string }>('SELECT pg_logical_emit_message(true, $1, $2)::text AS lsn', [RESNAPSHOT_PREFIX, signalContent({ slot: config.slotName, tables })]);
  const after = await client.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  return { message: parseLsn(rows[0].lsn), committed: parseLsn(after.rows[0].lsn) };
}

/** The slot once `ready` holds for it, read every 200 ms; null when `waitMs` ends first. */
async function slotWhen(client: pg.Client, slot: string, ready: (s: SlotFacts) => boolean, waitMs: number): Promise<SlotFacts | null> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const s = await readSlot(client, slot);
    if (s && ready(s)) return s;
    if (Date.now() >= deadline) return null;
    await sleep(200);
  }
}

/** This connector's own session on the source (named with its slot: source-session.ts), as `application_name (pid)`, or null. */
async function connectorSession(client: pg.Client, slot: string): Promise<string | null> {
  const { rows } = await client.query<{ pid: number; app: string }>(
    'SELECT pid, application_name AS app FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()',
    [sourceSessionName(slot)],
  );
  return rows.length === 0 ? null : `${rows[0].app} (pid ${rows[0].pid})`;
}

async function estimatedRows(client: pg.Client, tables: TableInfo[]): Promise<Map<number, number>> {
  const { rows } = await client.query<{ relid: number; n: string }>('SELECT oid::int8 AS relid, greatest(reltuples, 0)::int8 AS n FROM pg_class WHERE oid = ANY($1::oid[])', [tables.map((t) => t.relid)]);
  return new Map(rows.map((r) => [Number(r.relid), Number(r.n)]));
}
