/**
 * `shardbridge resnapshot --table T [--table T2 …] [--source-config FILE] [--json]`: take these
 * tables' snapshots again at the source connector's next start, with the connector stopped
 * (while a walsender streams from its slot: exit 1, nothing written).
 *
 * It writes a `started` marker marked `requested` for each table to `__snapshot`: the next
 * start finds their snapshots not complete, as after a snapshot cut short, and takes them again
 * the way it takes a table's own snapshot (docs/source-connector.md): a truncate of each into its
 * topic first (the sink empties the destination table), then a copy beside the stream while the
 * other tables stream on; every selected table asked for: a new slot and a whole new snapshot.
 * The repair for a destination table that misses changes (records gone from Kafka before the
 * sink applied them, a table changed on the destination by hand).
 */
import type pg from 'pg';
import type { CommandContext } from '../main.ts';
import type { TableInfo } from '../../pg-types.ts';
import { ServiceError, atServer } from '../../errors.ts';
import { pgEndpoint } from '../../config/common.ts';
import { kafkaRemedy } from '../../kafka/client.ts';
import { resolveTables } from '../../../source-connector/catalog.ts';
import { controlTopicNames, readControlTopic, reduceSnapshotTopic, snapshotStarted, type SnapshotState } from '../../../source-connector/control-topics.ts';
import { parseLsn } from '../../../source-connector/pgoutput-decoder.ts';
import { topicFor } from '../../../source-connector/table-versions.ts';
import { commandKafka, connectPg, readSlot } from '../../migration/gather.ts';

export interface ResnapshotPlan {
  /** Asked for and not selected by the configuration (or ambiguous). */
  unknown: string[];
  /** Tables whose latest marker is already `started`: the next start takes them anyway. */
  pending: TableInfo[];
  /** Tables to mark. */
  mark: TableInfo[];
  /** Every selected table will be taken again: the next start drops the slot and snapshots all from a new one. */
  all: boolean;
}

const qualified = (t: Pick<TableInfo, 'schema' | 'name'>) => `${t.schema}.${t.name}`;

/** `schema.table` as printed, or a table name alone when exactly one selected table has it. Pure. */
export function planResnapshot(asked: readonly string[], selected: readonly TableInfo[], state: SnapshotState): ResnapshotPlan {
  const unknown: string[] = [];
  const found = new Map<string, TableInfo>();
  for (const name of asked) {
    const exact = selected.find((t) => qualified(t) === name);
    const byName = selected.filter((t) => t.name === name);
    const table = exact ?? (byName.length === 1 ? byName[0] : undefined);
    if (table) found.set(qualified(table), table);
    else unknown.push(name);
  }
  const tables = [...found.values()];
  const pending = tables.filter((t) => state.tables.get(qualified(t))?.kind === 'started');
  const mark = tables.filter((t) => !pending.includes(t));
  const marked = new Set([...tables.map(qualified), ...selected.filter((t) => state.tables.get(qualified(t))?.kind === 'started').map(qualified)]);
  return { unknown, pending, mark, all: selected.length > 0 && selected.every((t) => marked.has(qualified(t))) };
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
    client = await connectPg(config.source, 'shardbridge-resnapshot').catch((err: unknown) => {
      throw atServer(err, `cannot connect to the source PostgreSQL at ${pgEndpoint(config.source)}`, 'check source.url (or host, port, user, password, database) and that the server accepts connections from here');
    });
    const { tables } = await resolveTables(client, config.tables);
    const topics = controlTopicNames(config.topicPrefix);
    const state: SnapshotState = (await onKafka(admin.listTopics())).includes(topics.snapshot)
      ? reduceSnapshotTopic(await onKafka(readControlTopic(kafka, topics.snapshot, ctx.logger, 30_000)))
      : { tables: new Map(), slots: new Map() };
    const plan = planResnapshot(asked, tables, state);
    if (plan.unknown.length > 0) {
      const some = tables.slice(0, 10).map(qualified).join(', ');
      ctx.err(`shardbridge resnapshot: --table ${plan.unknown.join(', ')}: not a table the source configuration selects (tables.include / tables.schemas)${tables.length > 0 ? `; selected: ${some}${tables.length > 10 ? `, and ${tables.length - 10} more` : ''}` : ''}\n`);
      return 2;
    }
    const slot = await readSlot(client, config.slotName);
    // A running connector's markers would overwrite ours (a snapshot it is taking completes the
    // table), and it holds no walsender while it copies one: its sessions tell.
    const running = slot?.active ? [`a walsender (pid ${slot.activePid}) streams from slot ${config.slotName}`] : await connectorSessions(client);
    if (running.length > 0) {
      throw new ServiceError(`the source connector is still running: ${running.join('; ')}; resnapshot asks for a snapshot only while it is stopped`, {
        context: { slot: config.slotName },
        remedy: 'stop the source connector first, then run resnapshot again',
      });
    }
    if (plan.mark.length > 0) {
      const producer = kafka.producer();
      await onKafka(producer.connect());
      try {
        const estimates = await estimatedRows(client, plan.mark);
        const messages = plan.mark.map((t) => {
          const m = snapshotStarted({
            table: qualified(t), tableSchema: t.schema, tableName: t.name, topic: topicFor(config.topicPrefix, t.schema, t.name), slot: config.slotName,
            consistentPoint: slot?.confirmedLsn ? parseLsn(slot.confirmedLsn) : 0n, estimatedRows: estimates.get(t.relid) ?? 0, requested: true,
          });
          return { topic: topics.snapshot, key: m.key, value: m.value };
        });
        await onKafka(producer.sendBatch(messages, { signal: AbortSignal.timeout(60_000) }));
      } finally {
        await producer.disconnect().catch(() => {});
      }
    }
    const report = {
      requested: plan.mark.map(qualified),
      alreadyPending: plan.pending.map(qualified),
      next: plan.all || !slot ? 'whole snapshot from a new slot' : 'these tables copied beside the stream, the slot kept',
    };
    ctx.logger.info({ ...report, slot: config.slotName }, 'resnapshot: marked');
    if (opts.json) {
      ctx.out(JSON.stringify(report, null, 2) + '\n');
      return 0;
    }
    for (const t of plan.mark) ctx.out(`${qualified(t)}: its snapshot is taken again at the source connector's next start (a truncate of its topic first: the sink empties the destination table, then applies the new snapshot)\n`);
    for (const t of plan.pending) ctx.out(`${qualified(t)}: already waiting for its snapshot (its latest marker is "started"): unchanged\n`);
    ctx.out(
      plan.all || !slot
        ? `every selected table waits for its snapshot${slot ? '' : ` (slot ${config.slotName} does not exist)`}: the next start takes the whole snapshot again from a new slot\n`
        : `the next start keeps slot ${config.slotName}, copies these tables from a temporary slot while the other tables stream on, and holds their later changes until the copy is done\n`,
    );
    return 0;
  } finally {
    await Promise.all([client?.end().catch(() => {}), admin.disconnect().catch(() => {})]);
  }
}

/** Sessions of a source connector on this database (its own session, stream or snapshot readers). */
async function connectorSessions(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query<{ pid: number; app: string }>(
    `SELECT pid, application_name AS app FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid()
        AND (application_name IN ('shardbridge-source', 'shardbridge-stream') OR application_name LIKE 'shardbridge-snapshot-%')`,
  );
  return rows.map((r) => `session ${r.app} (pid ${r.pid})`);
}

async function estimatedRows(client: pg.Client, tables: TableInfo[]): Promise<Map<number, number>> {
  const { rows } = await client.query<{ relid: number; n: string }>('SELECT oid::int8 AS relid, greatest(reltuples, 0)::int8 AS n FROM pg_class WHERE oid = ANY($1::oid[])', [tables.map((t) => t.relid)]);
  return new Map(rows.map((r) => [Number(r.relid), Number(r.n)]));
}
