/**
 * `shardbridge cutover [--yes] [--verify-only] [--sequence-margin N] [--timeout S] [--json]`:
 *  1. ask on the terminal (or with --yes assume) that writes to the source have stopped, and
 *     record the source's WAL position; a heartbeat message is written after it so that an
 *     idle source still gives the slot something to confirm past it;
 *  2. wait, with progress on stderr, until the slot's confirmed_flush_lsn reaches it (the
 *     source connector has everything before it in Kafka), then until the sink has applied
 *     every table topic up to the end offsets of that moment (`shardbridge.sink_offsets`);
 *  3. move every destination sequence a selected table owns or calls in a default to the source value plus
 *     the margin, never lower: `setval(seq, greatest(current, source + margin))`, held at the
 *     destination's bound (a warning); a source value beyond that bound, or a sequence the
 *     source role cannot read, is a no-go;
 *  4. verify every table (verifyTables: counts and checksums per key range; a difference
 *     names the table, the key range and sample keys) — `--verify-only` runs only this;
 *  5. check that the writes stopped: no record reached the table topics since the end offsets
 *     the sink was waited for (a writer still at work would lose its later changes);
 *  6. create the foreign keys `schema copy` kept aside in `shardbridge.deferred_foreign_keys`
 *     (only after a clean verification with the writes stopped), marking them done (`created_at`;
 *     migration/foreign-keys.ts: one cut by the role's lock_timeout is said with who held the lock);
 *  7. print the go / no-go report, with warnings for what logical replication left behind:
 *     destination triggers left disabled, materialized views over the migrated tables to refresh,
 *     large objects the destination lacks. Exit 0 on go, 1 on no-go, 2 when not confirmed on a non-terminal.
 *
 * Every step is idempotent: after a no-go, fix the cause and run it again.
 */
import { createInterface } from 'node:readline/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import type { CommandContext } from '../main.ts';
import { connectSide, sourceWriter } from '../connect.ts';
import type { SinkConfig } from '../../../sink-connector/config.ts';
import type { SourceConfig } from '../../../source-connector/config.ts';
import { quoteIdent, quoteQualified } from '../../../source-connector/catalog.ts';
import { HEARTBEAT_PREFIX } from '../../../source-connector/stream.ts';
import { connectionConfig } from '../../config/postgres.ts';
import { commandDestinationOptions, commandSourceOptions } from '../../pg-types.ts';
import { SIGNAL_EXIT_CODES, type ShutdownSignal } from '../../shutdown.ts';
import { verifyTableFor } from '../../schema/mapping.ts';
import { verifyTables } from '../../verify/index.ts';
import { formatCount } from '../../migration/format.ts';
import { differingTableTriggerHints, disabledTriggerReminders, readTriggers } from '../../checks/triggers.ts';
import { detectCitus, LOCAL_TABLE, readCitusTables, type CitusTable } from '../../schema/citus-catalog.ts';
import { countLargeObjects } from '../../../source-connector/checks.ts';
import { describePrepared, preparedRemedy, readPreparedTransactions } from '../../../source-connector/prepared-xacts.ts';
import {
  judgeCutover, leftBehindReminders, partitionList, renderCutover, sinkRemaining, sourceCaughtUp, verifySummary, waitProgressLine, writesAfter, type EndOffset,
  sequenceOk, type ForeignKeyResult, type PartitionTarget, type SequenceResult, type StepName, type StepResult, type TableVerdict,
} from '../../migration/cutover.ts';
import { fixSequences } from '../../migration/fix-sequences.ts';
import { createDeferredForeignKeys } from '../../migration/foreign-keys.ts';
import {
  commandKafka, endOffsets, errorText, migrationTopics, readApplied, readSlot, readStalls, sinkSessions, sinkTablesPresent, sourceTables, tpKey, type SourceTable,
} from '../../migration/gather.ts';

const POLL_MS = 500;
const PROGRESS_EVERY_MS = 2_000;
const HEARTBEAT_EVERY_MS = 5_000;

class Interrupted extends Error {}

export async function run(opts: Record<string, unknown>, ctx: CommandContext): Promise<number> {
  const source = ctx.sourceConfig();
  const sink = ctx.sinkConfig();
  const verifyOnly = Boolean(opts.verifyOnly);
  const margin = typeof opts.sequenceMargin === 'number' ? opts.sequenceMargin : 1000;
  const timeoutMs = 1000 * (typeof opts.timeout === 'number' ? opts.timeout : 300);
  const progress = (text: string) => ctx.err(`cutover: ${text}\n`);

  if (!verifyOnly && !opts.yes) {
    if (!process.stdin.isTTY) {
      ctx.err('shardbridge cutover: stop the writes to the source first, then confirm with --yes (stdin is not a terminal to ask on)\n');
      return 2;
    }
    if (!(await askWritesStopped(source))) {
      ctx.err('shardbridge cutover: cancelled: nothing was changed\n');
      return 1;
    }
  }

  const abort = new AbortController();
  let stoppedBy: ShutdownSignal | null = null;
  const unregister = ctx.onShutdown((signal) => {
    stoppedBy = signal;
    abort.abort();
  });
  const steps: StepResult[] = [];
  const step = async (name: StepName, fn: () => Promise<{ ok: boolean; detail: string }>): Promise<boolean> => {
    const t0 = Date.now();
    try {
      const r = await fn();
      steps.push({ step: name, status: r.ok ? 'ok' : 'failed', detail: r.detail, ms: Date.now() - t0 });
      return r.ok;
    } catch (e) {
      if (e instanceof Interrupted) throw e;
      steps.push({ step: name, status: 'failed', detail: errorText(e), ms: Date.now() - t0 });
      return false;
    }
  };
  const skip = (name: StepName, detail: string) => steps.push({ step: name, status: 'skipped', detail, ms: 0 });

  let src: pg.Client | undefined;
  let dst: pg.Client | undefined;
  let writer: pg.Client | undefined;
  let recordedLsn: string | null = null;
  let sequences: SequenceResult[] = [];
  let tables: TableVerdict[] = [];
  let foreignKeys: ForeignKeyResult[] = [];
  /** The table topics' end offsets the sink was waited for. */
  let atWait: EndOffset[] = [];
  let reminders: string[] = [];
  const kafka = commandKafka(sink, ctx.logger, 'shardbridge-cutover');
  const admin = kafka.admin();
  try {
    // Not cut by an application's timeouts on the roles (pg-types.ts): the foreign keys' validation scans whole tables.
    src = await connectSide(source.source, 'source', 'shardbridge-cutover', commandSourceOptions);
    dst = await connectSide(sink.destination, 'destination', 'shardbridge-cutover', commandDestinationOptions);
    // A standby source: the marker and heartbeats are written on its primary (source-connector/standby.ts).
    if (!verifyOnly) writer = await sourceWriter(src, source.primary, 'shardbridge-cutover', 'the cut-over position\'s heartbeat', commandSourceOptions);
    const selected = await sourceTables(src, source, sink);
    const deadline = Date.now() + timeoutMs;

    let caughtUp = true;
    if (!verifyOnly) {
      const s = src;
      const d = dst;
      const w = writer!;
      await step('confirm', async () => {
        recordedLsn = await recordPosition(w);
        return { ok: true, detail: `writes to the source stopped (${opts.yes ? '--yes' : 'confirmed'}); source position ${recordedLsn}` };
      });
      caughtUp =
        (await step('source caught up', () => waitSource(s, w, source, recordedLsn!, deadline, abort.signal, progress))) &&
        (await step('sink caught up', () => waitSink(d, admin, source, sink, selected, deadline, abort.signal, progress, (ends) => (atWait = ends))));
      if (!caughtUp) {
        for (const n of ['source caught up', 'sink caught up'] as const) if (!steps.some((x) => x.step === n)) skip(n, 'an earlier step failed');
        skip('sequences', 'the connectors did not catch up');
      } else {
        await step('sequences', async () => {
          sequences = await fixSequences(s, d, selected, sink, margin);
          const moved = sequences.filter((x) => x.status === 'moved').length;
          const bad = sequences.filter((x) => !sequenceOk(x)).length;
          const held = sequences.filter((x) => x.warning).length;
          return { ok: bad === 0, detail: `${sequences.length} sequence(s): ${moved} moved, ${sequences.length - moved - bad} already ahead or unused${held ? `, ${held} held at the destination's bound` : ''}${bad ? `, ${bad} failed` : ''}` };
        });
      }
    }

    if (!caughtUp) skip('verify', 'the connectors did not catch up: the tables cannot be equal yet');
    else {
      progress(`verifying ${selected.length} table(s)`);
      await step('verify', async () => {
        const report = await verifyTables({
          source: connectionConfig(source.source, { section: 'source', application_name: 'shardbridge-cutover' }),
          destination: connectionConfig(sink.destination, { section: 'destination', application_name: 'shardbridge-cutover' }),
          tables: selected.map((t) => verifyTableFor(t.info, sink.tables)),
          ranges: 16,
          sampleKeys: 5,
        });
        tables = verifySummary(report);
        const bad = tables.filter((t) => !t.match).length;
        return { ok: bad === 0, detail: bad === 0 ? `${tables.length} table(s) equal (${(report.durationMs / 1000).toFixed(1)} s)` : `${bad} of ${tables.length} table(s) differ` };
      });
    }

    if (!verifyOnly) {
      const verified = steps.some((x) => x.step === 'verify' && x.status === 'ok');
      let stopped = false;
      if (!caughtUp) skip('writes stopped', 'the connectors did not catch up');
      else {
        // A write after the recorded position reaches the topics within moments while the
        // source connector runs: its changes would be lost once the application moves. Checked
        // whatever the verification found: a writer at work is also why tables differ.
        const s = src;
        stopped = await step('writes stopped', async () => {
          const late = writesAfter(atWait, await endOffsets(admin, [...new Set(atWait.map((e) => e.topic))]));
          if (late.records > 0) {
            return { ok: false, detail: `${formatCount(late.records)} change(s) reached ${partitionList(late.partitions)} after the cut-over position: writes to the source have not stopped; stop every writer, then run cutover again` };
          }
          // Its writes are in no topic yet: they come at its COMMIT PREPARED, after the application moved.
          const prepared = await readPreparedTransactions(s, { thisDatabase: true });
          return prepared.length === 0
            ? { ok: true, detail: 'no change reached the table topics after the cut-over position' }
            : { ok: false, detail: `${prepared.length} prepared transaction(s) in the source database would write after the cut-over position at their COMMIT PREPARED, the oldest ${describePrepared(prepared[0])}: ${preparedRemedy(prepared)}; then run cutover again` };
        });
      }
      if (!verified || !stopped) skip('foreign keys', 'created only after a clean verification with the writes stopped');
      else {
        const d = dst;
        await step('foreign keys', async () => {
          foreignKeys = await createDeferredForeignKeys(d);
          const failed = foreignKeys.filter((f) => f.status === 'failed').length;
          const created = foreignKeys.filter((f) => f.status === 'created').length;
          return { ok: failed === 0, detail: foreignKeys.length === 0 ? 'none kept aside' : `${created} created, ${foreignKeys.length - created - failed} already there${failed ? `, ${failed} failed` : ''}` };
        });
      }
    }
    const differing = new Set(tables.filter((t) => !t.match && !t.error).map((t) => t.table));
    reminders = await leftBehind(src, dst, selected, { verifyOnly, differing, role: sink.sessionReplicationRole }).catch((e: unknown) => [`what logical replication does not carry (disabled triggers, materialized views, large objects) could not be read: ${errorText(e)}`]);
  } catch (e) {
    if (e instanceof Interrupted || stoppedBy) return SIGNAL_EXIT_CODES[stoppedBy ?? 'SIGINT'];
    steps.push({ step: steps.length === 0 ? (verifyOnly ? 'verify' : 'confirm') : steps[steps.length - 1].step, status: 'failed', detail: errorText(e), ms: 0 });
  } finally {
    unregister();
    await Promise.all([src?.end().catch(() => {}), writer !== src && writer?.end().catch(() => {}), dst?.end().catch(() => {}), admin.disconnect().catch(() => {})]);
  }

  const report = judgeCutover({ verifyOnly, recordedLsn, margin, steps, sequences, tables, foreignKeys, reminders });
  ctx.out(opts.json ? JSON.stringify(report, null, 2) + '\n' : renderCutover(report));
  return report.go ? 0 : 1;
}

async function askWritesStopped(source: SourceConfig): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`Have all writes to the source database (${source.source.database ?? source.source.url ?? 'source'}) stopped? [y/N] `);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

/**
 * The position every change made so far ends before: the WAL insert position (≥ pg_current_wal_lsn(),
 * which is the write position and may lag behind asynchronous commits). A non-transactional
 * heartbeat written after it lets an idle source connector confirm past it. `client`: the
 * primary (a standby source's is the one every change is written on).
 */
async function recordPosition(client: pg.ClientBase): Promise<string> {
  const { rows } = await client.query(`SELECT pg_current_wal_insert_lsn()::text AS lsn`);
  await heartbeat(client);
  return rows[0].lsn;
}

async function heartbeat(client: pg.ClientBase): Promise<void> {
  await client.query(`SELECT pg_logical_emit_message(false, $1, 'cutover')`, [HEARTBEAT_PREFIX]);
}

function checkAborted(signal: AbortSignal): void {
  if (signal.aborted) throw new Interrupted('interrupted');
}

async function waitSource(
  client: pg.ClientBase,
  /** Where the heartbeats go: `client`, or a standby source's primary. */
  writer: pg.ClientBase,
  source: SourceConfig,
  target: string,
  deadline: number,
  signal: AbortSignal,
  progress: (t: string) => void,
): Promise<{ ok: boolean; detail: string }> {
  let shown = 0;
  let beat = Date.now();
  for (;;) {
    checkAborted(signal);
    const slot = await readSlot(client, source.slotName);
    if (!slot) return { ok: false, detail: `replication slot ${source.slotName} does not exist on the source` };
    if (slot.walStatus === 'lost') return { ok: false, detail: `replication slot ${source.slotName} was invalidated (wal_status = lost): changes were lost, a new snapshot is needed` };
    const s = sourceCaughtUp(target, slot.confirmedLsn);
    if (s.done) return { ok: true, detail: `slot confirmed ${slot.confirmedLsn} ≥ ${target}` };
    if (Date.now() > deadline) {
      const why = slot.active ? 'the source connector streams but has not confirmed it' : 'no source connector streams from the slot: start it';
      return { ok: false, detail: `timed out: the slot confirmed ${slot.confirmedLsn ?? 'nothing'}, short of ${target} (${why})` };
    }
    if (Date.now() - shown > PROGRESS_EVERY_MS) {
      progress(waitProgressLine('source', { behindBytes: s.behindBytes }) + (slot.active ? '' : ' (no source connector streams from the slot)'));
      shown = Date.now();
    }
    if (Date.now() - beat > HEARTBEAT_EVERY_MS) {
      await heartbeat(writer);
      beat = Date.now();
    }
    await sleep(POLL_MS, undefined, { signal }).catch(() => {});
  }
}

async function waitSink(
  dst: pg.ClientBase,
  admin: ReturnType<ReturnType<typeof commandKafka>['admin']>,
  source: SourceConfig,
  sink: SinkConfig,
  selected: SourceTable[],
  deadline: number,
  signal: AbortSignal,
  progress: (t: string) => void,
  waitingFor: (ends: EndOffset[]) => void,
): Promise<{ ok: boolean; detail: string }> {
  const topics = await migrationTopics(admin, source.topicPrefix, sink.deadLetter.topic ?? `${sink.topicPrefix}.__dlq`, selected.map((t) => t.topic));
  const ends = await endOffsets(admin, topics.tables);
  waitingFor(ends);
  const total = ends.reduce((n, e) => n + e.end, 0);
  let shown = 0;
  for (;;) {
    checkAborted(signal);
    const present = await sinkTablesPresent(dst);
    const applied = present.offsets ? await readApplied(dst, sink.groupId) : new Map<string, number>();
    const parts: PartitionTarget[] = ends.map((e) => ({ topic: e.topic, partition: e.partition, target: e.end, applied: applied.get(tpKey(e.topic, e.partition)) ?? null }));
    const left = sinkRemaining(parts);
    if (left.behind.length === 0) return { ok: true, detail: `${topics.tables.length} topic(s) applied up to their end offsets (${formatCount(total)} records)` };
    const stalls = present.stalls ? (await readStalls(dst, sink.groupId)).filter((s) => left.behind.some((b) => b.topic === s.topic && b.partition === s.partition)) : [];
    const stalled = stalls.map((s) => `${s.topic}[${s.partition}] at ${s.offset}: ${s.message.split('\n')[0]}${s.remedy ? ` — remedy: ${s.remedy}` : ''}`);
    if (Date.now() > deadline) {
      // Like the source's wait: say whether a sink is there to wait for at all.
      const why = stalled.length ? `; stalled: ${stalled.join('; ')}` : (await sinkSessions(dst)) === 0 ? ' (no sink connector is connected to the destination: start it)' : present.offsets ? '' : ' (the sink has applied nothing yet)';
      return { ok: false, detail: `timed out: ${formatCount(left.records)} record(s) on ${left.behind.map((b) => `${b.topic}[${b.partition}]`).join(', ')} not applied${why}` };
    }
    if (Date.now() - shown > PROGRESS_EVERY_MS) {
      progress(waitProgressLine('sink', { records: left.records, partitions: left.behind.length, stalled }));
      shown = Date.now();
    }
    await sleep(POLL_MS, undefined, { signal }).catch(() => {});
  }
}

/**
 * The destination's user triggers left disabled on the migrated tables (disabled for the
 * migration, they must be enabled before the application writes), its materialized views
 * that read those tables, and the large objects of each side.
 */
async function leftBehind(
  src: pg.ClientBase,
  dst: pg.ClientBase,
  selected: readonly SourceTable[],
  o: { verifyOnly: boolean; differing: ReadonlySet<string>; role: SinkConfig['sessionReplicationRole'] },
): Promise<string[]> {
  const { verifyOnly } = o;
  const tables = selected.map((t) => t.destination);
  const triggers = await readTriggers(dst, tables);
  const { rows: views } = await dst.query<{ view: string }>(
    `SELECT DISTINCT m.oid::regclass::text AS view
       FROM unnest($1::text[], $2::text[]) AS x(s, n)
       JOIN pg_namespace ns ON ns.nspname = x.s JOIN pg_class c ON c.relnamespace = ns.oid AND c.relname = x.n
       JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid AND d.classid = 'pg_rewrite'::regclass
       JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class m ON m.oid = r.ev_class AND m.relkind = 'm'
      ORDER BY 1`,
    [tables.map((t) => t.schema), tables.map((t) => t.name)],
  );
  const citus = (await detectCitus(dst)).present;
  const identity = await identityToRestore(src, dst, selected, citus);
  const differing = selected.flatMap((t, i) => (o.differing.has(t.table) ? [{ table: t.destination, source: t.table, triggers: triggers[i] }] : []));
  return [
    ...differingTableTriggerHints(differing, o.role, citus),
    ...disabledTriggerReminders(tables.map((table, i) => ({ table, triggers: triggers[i] })), citus),
    ...leftBehindReminders({ materializedViews: views.map((v) => v.view), largeObjects: { source: await countLargeObjects(src), destination: await countLargeObjects(dst) }, verifyOnly }),
    ...identity.map((x) =>
      x.citusTable
        ? // Checked on Citus 13.2: "alter table command is currently unsupported" (plan-notes.ts says so at schema copy).
          `${x.table}.${x.column} is GENERATED BY DEFAULT AS IDENTITY on the destination and ALWAYS on the source (schema copy made it so for the sink's writes), and stays so: Citus refuses ALTER TABLE … SET GENERATED ALWAYS on its tables, so an insert that gives its own ${x.column} is taken there (the others still get the sequence's values)`
        : `${x.table}.${x.column} is GENERATED BY DEFAULT AS IDENTITY on the destination and ALWAYS on the source (schema copy made it so for the sink's writes): once the sink is stopped, ALTER TABLE ${x.sql} ALTER COLUMN ${quoteIdent(x.column)} SET GENERATED ALWAYS`,
    ),
  ];
}

/**
 * Identity columns ALWAYS on the source and BY DEFAULT on the destination (same name): schema copy
 * makes them so outside the key (generate.ts identityDeferred), and they are to be set back.
 */
async function identityToRestore(
  src: pg.ClientBase,
  dst: pg.ClientBase,
  selected: readonly SourceTable[],
  citus: boolean,
): Promise<{ table: string; sql: string; column: string; citusTable: boolean }[]> {
  const { rows: always } = await src.query<{ i: number; column: string }>(
    `SELECT x.i::int AS i, a.attname AS column FROM unnest($1::text[]) WITH ORDINALITY AS x(t, i)
       JOIN pg_attribute a ON a.attrelid = to_regclass(x.t) AND a.attidentity = 'a' AND NOT a.attisdropped ORDER BY 1, 2`,
    [selected.map((t) => quoteQualified(t.info))],
  );
  if (always.length === 0) return [];
  const wanted = always.map((r) => ({ t: selected[r.i - 1].destination, column: r.column }));
  const { rows } = await dst.query<{ i: number; oid: number }>(
    `SELECT x.i::int AS i, c.oid::int AS oid FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS x(s, n, c, i)
       JOIN pg_namespace ns ON ns.nspname = x.s JOIN pg_class c ON c.relnamespace = ns.oid AND c.relname = x.n
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = x.c AND a.attidentity = 'd' ORDER BY 1`,
    [wanted.map((w) => w.t.schema), wanted.map((w) => w.t.name), wanted.map((w) => w.column)],
  );
  // A Citus table (distributed, reference, single-shard; not a Citus local one) keeps BY DEFAULT.
  const kinds = citus && rows.length > 0 ? await readCitusTables(dst, rows.map((r) => r.oid)) : new Map<number, CitusTable>();
  return rows.map((r) => {
    const w = wanted[r.i - 1];
    return { table: `${w.t.schema}.${w.t.name}`, sql: quoteQualified(w.t), column: w.column, citusTable: (kinds.get(r.oid) ?? LOCAL_TABLE).kind !== 'local' };
  });
}
