/**
 * `shardbridge cleanup [--force] [--drop-control-tables] [--drop-topics] [--json]`: drops the
 * replication slot (a slot left behind keeps WAL forever) and the publication on the source;
 * optionally the connectors' tables on the destination (`shardbridge.*`, `shardbridge_staging`)
 * and the topics (table topics, control topics, dead-letter topic). Says what it dropped.
 *
 * It refuses (nothing dropped, exit 1) while
 *  - the source connector still streams from the slot (stop it first);
 *  - the slot holds row changes after its confirmed position, found by peeking it with pgoutput
 *    (heartbeats, other databases and empty transactions do not count: only inserts, updates,
 *    deletes and truncates of published tables);
 *  - a table topic's end offset is above the sink's applied offset;
 *  - with --drop-control-tables or --drop-topics: a sink is connected;
 * unless --force. `shardbridge.deferred_foreign_keys` is kept while it lists foreign keys not
 * created yet (cutover creates them), even with --force. --drop-topics without
 * --drop-control-tables also deletes the sink's stored positions of those topics: a topic
 * created again under the same name starts at offset 0. Exit 0 when everything asked for is gone.
 */
import type pg from 'pg';
import type { CommandContext } from '../main.ts';
import { connectSide, sourceWriter } from '../connect.ts';
import { quoteIdent } from '../../../source-connector/catalog.ts';
import { controlTopicNames } from '../../../source-connector/control-topics.ts';
import { STAGING_SCHEMA } from '../../../sink-connector/staging-sql.ts';
import type { Admin } from '../../kafka/client.ts';
import { CONTROL_TABLES, cleanupReport, planCleanup, renderCleanup, type ActionResult, type CleanupAction, type CleanupFacts } from '../../migration/cleanup.ts';
import {
  commandKafka, endOffsets, errorText, migrationTopics, partitionFacts, readApplied, readSlot, sinkSessions, sinkTablesPresent, sourceTables,
} from '../../migration/gather.ts';

const PEEK_LIMIT = 100_000;

export async function run(opts: Record<string, unknown>, ctx: CommandContext): Promise<number> {
  const source = ctx.sourceConfig();
  const sink = ctx.sinkConfig();
  const options = { force: Boolean(opts.force), dropControlTables: Boolean(opts.dropControlTables), dropTopics: Boolean(opts.dropTopics) };
  const kafka = commandKafka(sink, ctx.logger, 'shardbridge-cleanup');
  const admin = kafka.admin();
  let src: pg.Client | undefined;
  let dst: pg.Client | undefined;
  let writing: Promise<pg.Client> | undefined;
  try {
    // A failure names the server and its remedy (exit 1, through the CLI's error report).
    src = await connectSide(source.source, 'source', 'shardbridge-cleanup');
    let destinationError: string | undefined;
    try {
      dst = await connectSide(sink.destination, 'destination', 'shardbridge-cleanup');
    } catch (e) {
      // Deleted topics take their stored positions along, on the destination.
      if (options.dropControlTables || options.dropTopics) throw e;
      destinationError = errorText(e);
    }
    const facts = await gather(src, dst, admin, source, sink, destinationError);
    const plan = planCleanup(facts, options);
    // A standby source's publication is dropped on its primary (source-connector/standby.ts), connected only then.
    const s = src;
    const writer = () => (writing ??= sourceWriter(s, source.primary, 'shardbridge-cleanup', 'the publication\'s drop'));
    const results: ActionResult[] = plan.proceed ? await execute(plan.actions, src, writer, dst, admin) : [];
    if (plan.proceed && options.dropTopics && facts.kafkaError) results.push({ action: 'delete topics', object: 'topics', status: 'failed', detail: `Kafka could not be read: ${facts.kafkaError}` });
    const report = cleanupReport(plan, results);
    ctx.out(opts.json ? JSON.stringify(report, null, 2) + '\n' : renderCleanup(report));
    return report.ok ? 0 : 1;
  } finally {
    const w = await writing?.catch(() => undefined);
    await Promise.all([src?.end().catch(() => {}), w !== src && w?.end().catch(() => {}), dst?.end().catch(() => {}), admin.disconnect().catch(() => {})]);
  }
}

async function gather(
  src: pg.Client,
  dst: pg.Client | undefined,
  admin: Admin,
  source: ReturnType<CommandContext['sourceConfig']>,
  sink: ReturnType<CommandContext['sinkConfig']>,
  destinationError: string | undefined,
): Promise<CleanupFacts> {
  const slot = await readSlot(src, source.slotName);
  const { rows: pubs } = await src.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [source.publicationName]);
  const facts: CleanupFacts = {
    slotName: source.slotName,
    publicationName: source.publicationName,
    slot: slot && { active: slot.active, activePid: slot.activePid, walStatus: slot.walStatus, confirmedLsn: slot.confirmedLsn, currentLsn: slot.currentLsn },
    publicationExists: pubs.length > 0,
    pending: null,
    partitions: null,
    sinkOffsetsExist: null,
    destinationError,
    sinkSessions: 0,
    pendingForeignKeys: [],
    controlObjects: [],
    topics: [],
  };
  if (slot && !slot.active && slot.walStatus !== 'lost') {
    facts.pending = pubs.length > 0 ? await pendingChanges(src, source.slotName, source.publicationName) : { changes: null, error: `publication ${source.publicationName} does not exist, so the slot cannot be decoded` };
  }

  let applied = new Map<string, number>();
  if (dst) {
    const present = await sinkTablesPresent(dst);
    facts.sinkOffsetsExist = present.offsets;
    if (present.offsets) applied = await readApplied(dst, sink.groupId);
    facts.sinkSessions = await sinkSessions(dst);
    if (present.deferred) {
      const { rows } = await dst.query(
        `SELECT d.table_name || '.' || d.constraint_name AS fk FROM shardbridge.deferred_foreign_keys d
          WHERE NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conrelid = to_regclass(d.table_name) AND c.conname = d.constraint_name AND c.contype = 'f')
          ORDER BY 1`,
      );
      facts.pendingForeignKeys = rows.map((r) => r.fk as string);
    }
    const { rows: objs } = await dst.query(
      `SELECT t AS name, to_regclass('shardbridge.' || t) IS NOT NULL AS present FROM unnest($1::text[]) WITH ORDINALITY AS u(t, i) ORDER BY i`,
      [CONTROL_TABLES],
    );
    facts.controlObjects = objs.filter((r) => r.present).map((r) => ({ kind: 'table' as const, name: `shardbridge.${r.name}` }));
    const { rows: schemas } = await dst.query(`SELECT nspname FROM pg_namespace WHERE nspname = ANY($1::text[]) ORDER BY nspname = 'shardbridge'`, [[STAGING_SCHEMA, 'shardbridge']]);
    facts.controlObjects.push(...schemas.map((r) => ({ kind: 'schema' as const, name: r.nspname as string })));
  }

  try {
    const expected = (await sourceTables(src, source, sink)).map((t) => t.topic);
    const deadLetter = sink.deadLetter.topic ?? `${sink.topicPrefix}.__dlq`;
    const topics = await migrationTopics(admin, source.topicPrefix, deadLetter, expected);
    facts.partitions = partitionFacts(await endOffsets(admin, topics.tables), applied, new Set());
    const names = controlTopicNames(source.topicPrefix);
    facts.topics = [...topics.tables, ...[names.snapshot, names.sequences, names.transactions, deadLetter].filter((t) => topics.existing.has(t))];
  } catch (e) {
    facts.kafkaError = errorText(e);
  }
  return facts;
}

/** Row changes after the slot's confirmed position: peeked, not consumed. */
async function pendingChanges(src: pg.ClientBase, slot: string, publication: string): Promise<{ changes: number | null; error?: string }> {
  try {
    await src.query(`SET statement_timeout = '60s'`);
    const { rows } = await src.query(
      `SELECT count(*) FILTER (WHERE get_byte(data, 0) IN (73, 85, 68, 84))::int AS changes, count(*)::int AS messages
         FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, 'proto_version', '1', 'publication_names', $3)`,
      [slot, PEEK_LIMIT, quoteIdent(publication)],
    );
    if (rows[0].changes === 0 && rows[0].messages >= PEEK_LIMIT) return { changes: null, error: `more than ${PEEK_LIMIT} messages to decode in the slot` };
    return { changes: rows[0].changes };
  } catch (e) {
    return { changes: null, error: errorText(e) };
  } finally {
    await src.query('RESET statement_timeout').catch(() => {});
  }
}

/** `writer`: where the publication is dropped (a standby source's primary). */
async function execute(actions: CleanupAction[], src: pg.ClientBase, writer: () => Promise<pg.ClientBase>, dst: pg.ClientBase | undefined, admin: Admin): Promise<ActionResult[]> {
  const out: ActionResult[] = [];
  for (const a of actions) {
    const r: ActionResult = { action: a.kind, object: a.object, status: 'done' };
    out.push(r);
    try {
      switch (a.kind) {
        case 'terminate walsender':
          await src.query('SELECT pg_terminate_backend($1::int)', [a.pid]);
          r.detail = `pid ${a.pid}`;
          break;
        case 'drop replication slot':
          r.status = (await dropSlot(src, a.object)) ? 'done' : 'absent';
          break;
        case 'drop publication': {
          const { rows } = await src.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [a.object]);
          if (rows.length === 0) r.status = 'absent';
          else await (await writer()).query(`DROP PUBLICATION ${quoteIdent(a.object)}`);
          break;
        }
        case 'drop table':
          await dst!.query(`DROP TABLE IF EXISTS ${a.object.split('.').map(quoteIdent).join('.')}`);
          break;
        case 'drop schema':
          if (a.object === 'shardbridge') {
            const { rows } = await dst!.query(`SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'shardbridge'`);
            if (rows[0].n > 0) {
              r.status = 'kept';
              r.detail = `it holds ${rows[0].n} other object(s)`;
              break;
            }
            await dst!.query('DROP SCHEMA IF EXISTS shardbridge');
          } else {
            await dst!.query(`DROP SCHEMA IF EXISTS ${quoteIdent(a.object)} CASCADE`);
          }
          break;
        case 'delete topics':
          await admin.deleteTopics(a.topics);
          r.detail = a.topics.join(', ');
          break;
        case 'forget stored positions': {
          if (out.some((x) => x.action === 'delete topics' && x.status === 'failed')) {
            r.status = 'kept';
            r.detail = 'the topics were not deleted';
            break;
          }
          let rows = 0;
          for (const t of a.tables) rows += (await dst!.query(`DELETE FROM ${t} WHERE topic = ANY($1::text[])`, [a.topics])).rowCount ?? 0;
          r.detail = `${rows} row(s)`;
          break;
        }
      }
    } catch (e) {
      r.status = 'failed';
      r.detail = errorText(e);
    }
  }
  return out;
}

/** Drop the slot; a walsender that was just terminated may hold it for a moment. Returns false when it did not exist. */
async function dropSlot(src: pg.ClientBase, slot: string): Promise<boolean> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      const { rows } = await src.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slot]);
      return rows.length > 0;
    } catch (e) {
      // 55006: object in use (the slot is still active).
      if ((e as { code?: string }).code !== '55006' || Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
