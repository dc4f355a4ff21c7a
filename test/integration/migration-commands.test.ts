/**
 * The migration commands end to end on the dev stack, with both connectors running in this
 * process (as the demo does) and the commands called through the CLI's main():
 *  - `status --json` during a run, and during a stall on a missing destination column that is
 *    then fixed (reason and remedy from shardbridge.stalls and the sink's /metrics);
 *  - the invasive schema change runbook: stop both connectors, int → bigint on both sides,
 *    start again: a new schema version, the sink resumes, nothing lost;
 *  - a column dropped at the source, then on the destination: a sink stopped before the drop,
 *    and a replay from offset 0 by a fresh sink (autoEvolve on), apply the records from before
 *    the drop without it;
 *  - `cutover --yes` on a clean run: go, sequences ≥ source + margin (also ones whose names
 *    need quotes: `"odd.seq"`, and one in a mixed-case schema holding a dot), the foreign key
 *    kept aside by `schema copy` created (first cut by a lock_timeout behind an application's
 *    transaction open on the referenced table: a no-go naming it, nothing made);
 *  - `cutover --yes` with sequences at their bounds (held at MAXVALUE with a warning; a source
 *    value beyond the destination's MAXVALUE a no-go), and as a source role that cannot read a
 *    sequence (a no-go naming the GRANT);
 *  - `cutover --verify-only` after a row changed on the destination: no-go naming the table
 *    and the key range;
 *  - `cleanup` refusing (source connector streaming; sink behind and unpublished changes in
 *    the slot), then succeeding with --drop-control-tables --drop-topics.
 * One setup shared by the tests, which run in order.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { main, type CommandContext } from '../../shared/cli/main.ts';
import { run as runStatus } from '../../shared/cli/commands/status.ts';
import type { ShutdownHandler } from '../../shared/shutdown.ts';
import { waitFor } from '../../shared/devstack/ports.ts';
import { createKafka, type Admin } from '../../shared/kafka/client.ts';
import type { CutoverReport } from '../../shared/migration/cutover.ts';
import type { CleanupReport } from '../../shared/migration/cleanup.ts';
import type { StatusReport } from '../../shared/migration/status.ts';
import { sinkConfigSchema, type SinkConfig } from '../../sink-connector/config.ts';
import { startSinkConnector, type SinkConnector } from '../../sink-connector/connector.ts';
import { sourceConfigSchema, type SourceConfig } from '../../source-connector/config.ts';
import { parseLsn } from '../../source-connector/pgoutput-decoder.ts';
import { startSourceConnector, type SourceConnector } from '../../source-connector/run.ts';
import { runCli } from '../helpers/cli.ts';
import { capturingLogger, getTestKafka, testLogger } from '../helpers/kafka.ts';
import { getTestDestination, hasCitus, startTestSource } from '../helpers/postgres.ts';
import { getTestRegistry } from '../helpers/produce-changes.ts';
import { waitApplied } from '../helpers/sink.ts';

const ID = `${process.pid}_${Date.now().toString(36)}`;
const SCHEMA = `sb_mig_${ID}`;
/** A mixed-case schema holding a dot: `schema.name` text of its objects cannot be split. */
const MIX = `Sb.Mix_${ID}`;
const PREFIX = `sbmig${Date.now().toString(36)}`;
const GROUP = `g-mig-${ID}`;
const dir = mkdtempSync(join(tmpdir(), 'sb-mig-'));
const log = testLogger();
const releases: (() => Promise<void>)[] = [];
let src: pg.Client;
let dst: pg.Client;
let admin: Admin;
let registryUrl: string;
let sourceUrlAs: (user: string) => string;
let sourceConfig: SourceConfig;
let sinkConfig: SinkConfig;
let files: string[];
let source: SourceConnector | null = null;
let sink: SinkConnector | null = null;
/** What a trigger remedy starts with on a Citus destination (Citus refuses ALTER TABLE … TRIGGER without it). */
let citusPrefix = '';

const topic = (table: string) => `${PREFIX}.${SCHEMA}.${table}`;

before(async () => {
  const [k, r, d, s] = await Promise.all([getTestKafka(), getTestRegistry(), getTestDestination(), startTestSource({ max_slot_wal_keep_size: '1GB' })]);
  releases.push(k.release, r.release, d.release, () => s.destroy());
  registryUrl = r.url;
  sourceUrlAs = (user) => s.url('postgres', user);
  src = new pg.Client({ connectionString: s.url() });
  dst = new pg.Client({ connectionString: d.url });
  await Promise.all([src.connect(), dst.connect()]);
  if ((await hasCitus(dst))) citusPrefix = 'SET citus.enable_unsafe_triggers = on; ';
  await src.query(`
    CREATE SCHEMA ${SCHEMA};
    CREATE SEQUENCE ${SCHEMA}.ticket_no;
    CREATE SEQUENCE ${SCHEMA}.refund_no INCREMENT BY -1 MAXVALUE -1 START -1;
    CREATE SEQUENCE ${SCHEMA}.invoice_no;
    CREATE SEQUENCE ${SCHEMA}.legacy_no;
    CREATE SEQUENCE ${SCHEMA}."odd.seq";
    CREATE SCHEMA "${MIX}";
    CREATE SEQUENCE "${MIX}"."Tag.No";
    CREATE TABLE ${SCHEMA}.customers (id bigserial PRIMARY KEY, name text NOT NULL, ticket bigint NOT NULL DEFAULT nextval('${SCHEMA}.ticket_no'),
                                      refund bigint NOT NULL DEFAULT nextval('${SCHEMA}.refund_no'), odd bigint NOT NULL DEFAULT nextval('${SCHEMA}."odd.seq"'),
                                      tag bigint NOT NULL DEFAULT nextval('"${MIX}"."Tag.No"'));
    CREATE TABLE ${SCHEMA}.orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL CONSTRAINT orders_customer_fk REFERENCES ${SCHEMA}.customers (id),
                                   amount int NOT NULL, note text, ticket bigint NOT NULL DEFAULT nextval('${SCHEMA}.ticket_no'), legacy text DEFAULT 'l');
    INSERT INTO ${SCHEMA}.customers (name) SELECT 'c' || g FROM generate_series(1, 200) g;
    INSERT INTO ${SCHEMA}.orders (customer_id, amount, note) SELECT 1 + g % 200, g, 'o' || g FROM generate_series(1, 1000) g;
    SELECT nextval('${SCHEMA}.invoice_no') FROM generate_series(1, 30);
    SELECT nextval('${SCHEMA}.legacy_no') FROM generate_series(1, 3);`);
  admin = createKafka({ brokers: [k.bootstrap] }, log).admin();
  const common = { name: 'mig', topicPrefix: PREFIX, kafka: { brokers: [k.bootstrap] }, schemaRegistry: { url: r.url }, metricsPort: 0, logLevel: 'warn' as const };
  sourceConfig = sourceConfigSchema.parse({
    ...common,
    source: { url: s.url() },
    tables: { schemas: [SCHEMA] },
    slotName: `sb_mig_${process.pid}`,
    publicationName: `sb_mig_${process.pid}`,
    topics: { partitions: 2 },
    heartbeatIntervalMs: 1_000,
  });
  sinkConfig = sinkConfigSchema.parse({ ...common, groupId: GROUP, destination: { url: d.url }, stallRetryMs: 300 });
  const sourceFile = join(dir, 'source.json');
  const sinkFile = join(dir, 'sink.json');
  writeFileSync(sourceFile, JSON.stringify(sourceConfig));
  writeFileSync(sinkFile, JSON.stringify(sinkConfig));
  files = ['--source-config', sourceFile, '--sink-config', sinkFile];

  const copy = await cli(['schema', 'copy', '--json']);
  assert.equal(copy.code, 0, copy.stderr + copy.stdout);
  // A sequence the application calls itself, created on the destination as pg_dump --schema-only would (at its start).
  await dst.query(`CREATE SEQUENCE ${SCHEMA}.invoice_no`);
  await startSource();
  await startSink();
});

after(async () => {
  await sink?.stop().catch(() => {});
  await source?.stop().catch(() => {});
  await dst?.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE; DROP SCHEMA IF EXISTS "${MIX}" CASCADE`).catch(() => {});
  await dst?.query(`DELETE FROM shardbridge.deferred_foreign_keys WHERE table_name LIKE '"${SCHEMA}".%'`).catch(() => {});
  const topics = (await admin.listTopics().catch(() => [] as string[])).filter((t) => t.startsWith(`${PREFIX}.`));
  await admin.deleteTopics(topics).catch(() => {});
  await admin.disconnect().catch(() => {});
  await Promise.all([src?.end().catch(() => {}), dst?.end().catch(() => {})]);
  for (const r of releases.reverse()) await r().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

/** The command with both config files (test/helpers/cli.ts). */
const cli = (args: string[]) => runCli([...args, ...files]);

async function json<T>(args: string[]): Promise<{ code: number; out: T; stderr: string }> {
  const r = await cli([...args, '--json']);
  assert.ok(r.stdout.trim().startsWith('{'), `no JSON from ${args.join(' ')} (exit ${r.code}): ${r.stderr}${r.stdout}`);
  return { code: r.code, out: JSON.parse(r.stdout) as T, stderr: r.stderr };
}

const status = (extra: string[] = []) => json<StatusReport>(['status', '--sample-seconds', '0', ...extra]);

async function startSource(): Promise<void> {
  const s = await startSourceConnector(sourceConfig, log);
  source = s;
  let failure: unknown;
  s.done.catch((err: unknown) => (failure = err));
  await waitFor('the source connector streaming', () => failure !== undefined || s.state().phase === 'streaming', { timeoutMs: 60_000, intervalMs: 50 });
  if (failure !== undefined) throw new Error(`the source connector failed: ${(failure as Error).message}`, { cause: failure });
}

async function stopSource(): Promise<void> {
  await source?.stop();
  source = null;
}

async function startSink(): Promise<void> {
  sink = await startSinkConnector(sinkConfig, log, { topicRefreshMs: 500, controlPollMs: 300, metricsPort: 0 });
}

async function stopSink(): Promise<void> {
  await sink?.stop();
  sink = null;
}

async function currentLsn(): Promise<bigint> {
  return parseLsn((await src.query('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0].l);
}

/** Until the slot confirmed everything written so far (the source connector put it in Kafka). */
async function sourceConfirmed(): Promise<void> {
  const target = await currentLsn();
  await src.query(`SELECT pg_logical_emit_message(false, 'shardbridge-heartbeat', 'test')`);
  await waitFor('the slot to confirm the current position', async () => {
    const { rows } = await src.query('SELECT confirmed_flush_lsn::text AS c FROM pg_replication_slots WHERE slot_name = $1', [sourceConfig.slotName]);
    return rows[0]?.c && parseLsn(rows[0].c) >= target;
  }, { timeoutMs: 30_000, intervalMs: 100 });
}

async function sinkCaughtUp(): Promise<void> {
  await sourceConfirmed();
  await waitApplied(dst, admin, GROUP, [topic('customers'), topic('orders')], 60_000);
}

test('status --json during a run: slot, snapshot per table, offsets, catch-up, exit 0', async () => {
  await waitFor('both snapshots complete in status', async () => {
    const r = await status();
    return r.out.tables.length === 2 && r.out.tables.every((t) => t.state === 'complete') && r.out.totals.lag === 0;
  }, { timeoutMs: 60_000, intervalMs: 300 });
  await src.query(`INSERT INTO ${SCHEMA}.orders (customer_id, amount, note) SELECT 1, g, 'run' || g FROM generate_series(1, 50) g`);
  await sinkCaughtUp();

  const r = await status(['--sample-seconds', '1']);
  assert.equal(r.code, 0, JSON.stringify(r.out.problems));
  const s = r.out;
  assert.equal(s.ok, true);
  assert.ok(s.slot.exists);
  assert.equal(s.slot.name, sourceConfig.slotName);
  assert.equal(s.slot.active, true);
  assert.match(s.slot.confirmedLsn!, /^[0-9A-F]+\/[0-9A-F]+$/);
  assert.equal(typeof s.slot.lagBytes, 'number');
  assert.equal(typeof s.slot.walRetainedBytes, 'number');
  assert.equal(s.slot.walStatus, 'reserved');
  assert.deepEqual(
    s.tables.map((t) => [t.table, t.destination, t.state, t.rows]),
    [[`${SCHEMA}.customers`, `${SCHEMA}.customers`, 'complete', 200], [`${SCHEMA}.orders`, `${SCHEMA}.orders`, 'complete', 1000]],
  );
  const orders = s.partitions.filter((p) => p.topic === topic('orders'));
  assert.deepEqual(orders.map((p) => p.partition), [0, 1]);
  assert.equal(orders.reduce((n, p) => n + p.end, 0), 1050);
  for (const p of s.partitions.filter((x) => x.kind === 'table')) assert.deepEqual([p.applied, p.lag], [p.end, 0], `${p.topic}[${p.partition}]`);
  assert.ok(s.partitions.some((p) => p.kind === 'control' && p.topic === `${PREFIX}.__snapshot`));
  assert.deepEqual(s.totals, { end: 1250, applied: 1250, lag: 0 });
  assert.equal(s.catchUp.state, 'caught up');
  assert.equal(s.catchUp.etaSeconds, 0);
  assert.ok(s.catchUp.sampleSeconds! >= 1, 'two samples, a second apart');
  assert.deepEqual(s.stalls, []);
  assert.ok(s.sequences.lastSync, 'the sink recorded the sequence values the snapshot published');
  assert.ok(s.sequences.entries.some((e) => e.sequence.endsWith('orders_id_seq') && Number(e.sourceValue) >= 1000), JSON.stringify(s.sequences));
  // A sequence no table owns, called by both tables' defaults, travels too (1,200 rows took a ticket).
  assert.ok(s.sequences.entries.some((e) => e.sequence.endsWith('ticket_no') && Number(e.sourceValue) >= 1200), JSON.stringify(s.sequences));
  // Names that need quotes: the sink found and moved them by their names (as regclass prints them).
  for (const name of [`${SCHEMA}."odd.seq"`, `"${MIX}"."Tag.No"`]) {
    const e = s.sequences.entries.find((x) => x.sequence === name);
    assert.ok(e && Number(e.sourceValue) >= 200 && e.appliedValue === e.sourceValue, `${name} moved by the sink: ${JSON.stringify(s.sequences)}`);
  }
  assert.deepEqual(s.problems.filter((p) => p.level === 'FAIL'), []);

  const text = await cli(['status', '--sample-seconds', '0']);
  assert.equal(text.code, 0);
  assert.match(text.stdout, new RegExp(`${SCHEMA}\\.orders\\s+${SCHEMA}\\.orders\\s+complete\\s+1,000`));
  assert.match(text.stdout, /Catch-up: caught up/);

  // --watch: a frame per interval (JSON lines here) until Ctrl-C; rates from the frames before.
  const frames: string[] = [];
  let interrupt: ShutdownHandler | undefined;
  const ctx: CommandContext = {
    command: 'status',
    logger: log,
    verbose: false,
    out: (t) => {
      frames.push(t);
      if (frames.length === 2) void interrupt?.('SIGINT');
    },
    err: () => {},
    sourceConfig: () => sourceConfig,
    sinkConfig: () => sinkConfig,
    onShutdown: (h) => {
      interrupt = h;
      return () => (interrupt = undefined);
    },
  };
  assert.equal(await runStatus({ watch: true, json: true, interval: 1 }, ctx), 130);
  assert.equal(frames.length, 2);
  const [f1, f2] = frames.map((f) => JSON.parse(f) as StatusReport);
  assert.ok(frames.every((f) => f.endsWith('\n') && f.indexOf('\n') === f.length - 1), 'one JSON object per line');
  assert.equal(f1.catchUp.sampleSeconds, null);
  assert.ok(f2.catchUp.sampleSeconds! >= 1);
  assert.equal(f2.totals.applied, 1250);
});

test('status with Kafka unreachable: exit 1, catch-up unknown (not caught up), the slot still judged', async () => {
  const badSource = join(dir, 'source-no-kafka.json');
  const badSink = join(dir, 'sink-no-kafka.json');
  writeFileSync(badSource, JSON.stringify({ ...sourceConfig, kafka: { ...sourceConfig.kafka, brokers: ['127.0.0.1:1'] } }));
  writeFileSync(badSink, JSON.stringify({ ...sinkConfig, kafka: { ...sinkConfig.kafka, brokers: ['127.0.0.1:1'] } }));
  let stdout = '';
  const code = await main(['node', 'shardbridge', 'status', '--sample-seconds', '0', '--json', '--source-config', badSource, '--sink-config', badSink], { stdout: (t) => (stdout += t), stderr: () => {}, env: {} });
  assert.equal(code, 1);
  const s = JSON.parse(stdout) as StatusReport;
  assert.equal(s.kafka.ok, false);
  assert.deepEqual([s.catchUp.state, s.catchUp.lagRecords, s.catchUp.etaSeconds, s.catchUp.unknownBecause], ['unknown', null, null, 'Kafka could not be read']);
  assert.deepEqual(s.totals, { end: null, applied: null, lag: null });
  assert.ok(s.slot.exists && s.slot.active, 'the source is still read');
});

test('status during a stall on a missing destination column: reason and remedy, exit 1; fixed, exit 0', async () => {
  await src.query(`ALTER TABLE ${SCHEMA}.orders ADD COLUMN extra text`);
  await src.query(`INSERT INTO ${SCHEMA}.orders (customer_id, amount, note, extra) VALUES (2, 7, 'needs extra', 'x')`);
  const metrics = ['--sink-metrics', `http://127.0.0.1:${sink!.metricsPort}/metrics`];
  const stalled = await waitFor('a stall in status', async () => {
    const r = await status(metrics);
    return r.out.stalls.length > 0 && r.out.stalls[0].seenIn.length === 2 ? r : null;
  }, { timeoutMs: 30_000, intervalMs: 300 });
  assert.equal(stalled.code, 1);
  assert.equal(stalled.out.ok, false);
  const [st] = stalled.out.stalls;
  assert.equal(st.topic, topic('orders'));
  assert.equal(st.table, `${SCHEMA}.orders`);
  assert.equal(st.sqlstate, '42703');
  assert.equal(st.reason, 'apply');
  assert.match(st.message, /column "extra" of relation .*orders.* does not exist/);
  assert.match(st.remedy!, /ALTER TABLE .*orders.* ADD COLUMN "?extra"?/);
  assert.deepEqual(st.seenIn.sort(), ['metrics', 'table']);
  const part = stalled.out.partitions.find((p) => p.topic === st.topic && p.partition === st.partition)!;
  assert.equal(part.stalled, true);
  assert.equal(part.applied, st.offset, 'the partition stands at the record it cannot apply');
  assert.ok(part.lag !== null && part.lag >= 1);
  const fail = stalled.out.problems.find((p) => p.level === 'FAIL');
  assert.equal(fail?.object, `topic ${st.topic}[${st.partition}]`);
  assert.match(fail!.remedy!, /ADD COLUMN/);
  const text = await cli(['status', '--sample-seconds', '0', ...metrics]);
  assert.equal(text.code, 1);
  assert.match(text.stdout, /STALLED/);
  assert.match(text.stdout, /remedy: ALTER TABLE/);

  await dst.query(`ALTER TABLE ${SCHEMA}.orders ADD COLUMN extra text`);
  const fixed = await waitFor('the stall gone from status', async () => {
    const r = await status(metrics);
    return r.out.stalls.length === 0 && r.out.totals.lag === 0 ? r : null;
  }, { timeoutMs: 30_000, intervalMs: 300 });
  assert.equal(fixed.code, 0, JSON.stringify(fixed.out.problems));
  assert.equal((await dst.query(`SELECT extra FROM ${SCHEMA}.orders WHERE note = 'needs extra'`)).rows[0]?.extra, 'x');
});

test('status while a table\'s own snapshot waits for a stopped sink: applying, not the complete of the snapshot before; the sink back: complete', async () => {
  await waitFor('both snapshots complete in status', async () => (await status()).out.tables.every((t) => t.state === 'complete'), { timeoutMs: 30_000, intervalMs: 200 });
  await stopSink();
  await stopSource();
  // Out of the publication by hand: the next start snapshots this table again, on its own.
  await src.query(`ALTER PUBLICATION ${sourceConfig.publicationName} DROP TABLE ${SCHEMA}.customers`);
  await startSource();
  await sourceConfirmed();
  const r = await status();
  const customers = r.out.tables.find((t) => t.table === `${SCHEMA}.customers`)!;
  assert.equal(customers.state, 'applying', JSON.stringify(customers));
  assert.ok(customers.applied! < customers.of!, JSON.stringify(customers));
  assert.equal(r.out.tables.find((t) => t.table === `${SCHEMA}.orders`)?.state, 'complete');
  await startSink();
  await sinkCaughtUp();
  await waitFor('the table complete again', async () => (await status()).out.tables.every((t) => t.state === 'complete'), { timeoutMs: 30_000, intervalMs: 200 });
  assert.equal((await dst.query(`SELECT count(*)::int AS n FROM ${SCHEMA}.customers`)).rows[0].n, (await src.query(`SELECT count(*)::int AS n FROM ${SCHEMA}.customers`)).rows[0].n);
});

test('invasive schema change runbook: stop both, int -> bigint on both sides, start: new schema version, nothing lost', async () => {
  const subject = `${topic('orders')}-value`;
  const versions = async () => (await (await fetch(`${registryUrl}/subjects/${subject}/versions`)).json()) as number[];
  const before = await versions();
  await src.query(`INSERT INTO ${SCHEMA}.orders (customer_id, amount, note) VALUES (3, 11, 'before the stop')`);
  await sinkCaughtUp();
  await stopSink();
  await stopSource();

  // The application keeps writing until its own change: these rows are in the slot with the old type.
  await src.query(`INSERT INTO ${SCHEMA}.orders (customer_id, amount, note) VALUES (4, 12, 'while stopped')`);
  await src.query(`ALTER TABLE ${SCHEMA}.orders ALTER COLUMN amount TYPE bigint`);
  await dst.query(`ALTER TABLE ${SCHEMA}.orders ALTER COLUMN amount TYPE bigint`);
  await src.query(`INSERT INTO ${SCHEMA}.orders (customer_id, amount, note) VALUES (4, 5000000000, 'after the change')`);
  await src.query(`UPDATE ${SCHEMA}.orders SET amount = 6000000000 WHERE id = 10`);

  // Changes written before the type change replay with the old type; the change itself is the
  // one the catalog showed at start-up, so one start carries on through it.
  await startSource();
  await startSink();
  await sinkCaughtUp();
  const after = await versions();
  assert.equal(after.length, before.length + 1, 'the source registered one new value schema version');
  const latest = (await (await fetch(`${registryUrl}/subjects/${subject}/versions/latest`)).json()) as { schema: string };
  assert.match(latest.schema, /"name":"amount"[^}]*"long"/);
  const { rows } = await dst.query(`SELECT note, amount::text FROM ${SCHEMA}.orders WHERE note IN ('while stopped', 'after the change') OR id = 10 ORDER BY id`);
  assert.deepEqual(rows.map((r) => [r.note, r.amount]), [['o10', '6000000000'], ['while stopped', '12'], ['after the change', '5000000000']]);
  const r = await status();
  assert.equal(r.code, 0, JSON.stringify(r.out.problems));
  assert.equal(r.out.totals.lag, 0);
});

test('a column dropped at the source, then on the destination: a sink that was stopped before the drop, and then a fresh sink replaying from offset 0 with autoEvolve, apply the older records without it: no stall, not added back, destination = source', async () => {
  const subject = `${topic('orders')}-value`;
  const versions = async () => (await (await fetch(`${registryUrl}/subjects/${subject}/versions`)).json()) as number[];
  const before = await versions();
  const columnsSql = `SELECT attname FROM pg_attribute WHERE attrelid = '${SCHEMA}.orders'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`;
  const columns = async (db: pg.Client) => (await db.query(columnsSql)).rows.map((r) => r.attname as string);
  /** No stall, legacy not on the destination, both sides' columns and rows equal; the drop said once at info. */
  const converged = async (lines: () => Record<string, any>[], what: string) => {
    await sinkCaughtUp();
    assert.equal((await dst.query('SELECT count(*)::int AS n FROM shardbridge.stalls WHERE group_id = $1', [GROUP])).rows[0].n, 0, `${what}: no stall`);
    const [sourceColumns, destColumns] = await Promise.all([columns(src), columns(dst)]);
    assert.ok(!destColumns.includes('legacy'), `${what}: legacy not added back`);
    assert.deepEqual(destColumns, sourceColumns);
    const rows = `SELECT ${sourceColumns.map((c) => `${c}::text`).join(', ')} FROM ${SCHEMA}.orders ORDER BY id`;
    const [s, d] = await Promise.all([src.query(rows), dst.query(rows)]);
    assert.ok(s.rows.length > 1000);
    assert.deepEqual(d.rows, s.rows, `${what}: destination = source`);
    const said = lines().filter((l) => l.column === 'legacy' && /the source dropped it in a later version .* its values are not written/.test(l.msg));
    assert.equal(said.length, 1, `${what}: said once`);
    assert.equal(said[0].level, 30);
    assert.equal(lines().filter((l) => /autoEvolve/.test(l.msg)).length, 0, `${what}: nothing added`);
  };

  // The sink stopped (lagging) while the source drops the column and the destination follows.
  await stopSink();
  await src.query(`UPDATE ${SCHEMA}.orders SET legacy = 'changed ' || id WHERE id <= 20`);
  await src.query(`ALTER TABLE ${SCHEMA}.orders DROP COLUMN legacy`);
  await src.query(`INSERT INTO ${SCHEMA}.orders (customer_id, amount, note) VALUES (5, 13, 'after the drop')`);
  await src.query(`UPDATE ${SCHEMA}.orders SET amount = amount + 1 WHERE id <= 10`);
  await sourceConfirmed();
  assert.equal((await versions()).length, before.length + 1, 'the drop registered a new value schema version');
  await dst.query(`ALTER TABLE ${SCHEMA}.orders DROP COLUMN legacy`);
  const lagging = capturingLogger();
  sink = await startSinkConnector(sinkConfig, lagging.logger, { topicRefreshMs: 500, controlPollMs: 300, metricsPort: 0 });
  await converged(lagging.lines, 'the sink behind the drop');
  await stopSink();

  // A replay from offset 0 by a fresh process, which has not seen the version without the column: the registry tells it.
  const cfg = join(dir, 'sink-evolve.json');
  writeFileSync(cfg, JSON.stringify({ ...sinkConfig, autoEvolve: true }));
  let out = '';
  const code = await main(['node', 'shardbridge', 'replay', '--sink-config', cfg, '--topic', topic('orders'), '--to-offset', '0', '--log-level', 'warn'], { stdout: (x) => (out += x), stderr: (x) => (out += x), env: {} });
  assert.equal(code, 0, out);
  const fresh = capturingLogger();
  sink = await startSinkConnector({ ...sinkConfig, autoEvolve: true }, fresh.logger, { topicRefreshMs: 500, controlPollMs: 300, metricsPort: 0 });
  try {
    await converged(fresh.lines, 'the replay from 0 with autoEvolve');
  } finally {
    await stopSink();
    await startSink();
  }
});

/** A writer updating a source row every 20 ms without changing a value, until the returned stop. */
async function keepWriting(): Promise<() => Promise<void>> {
  const writer = new pg.Client({ connectionString: sourceConfig.source.url });
  await writer.connect();
  let writing = true;
  const writes = (async () => {
    while (writing) {
      await writer.query(`UPDATE ${SCHEMA}.orders SET note = note WHERE id = 1`);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return async () => {
    writing = false;
    await writes;
    await writer.end();
  };
}

test('cutover --yes while a writer still writes to the source: NO-GO from the topics, even when the tables compare equal', async () => {
  // Updates that change no value: every table stays equal to the source, so only the
  // changes reaching the topics after the cut-over position can tell.
  const stopWriting = await keepWriting();
  try {
    const r = await json<CutoverReport>(['cutover', '--yes', '--sequence-margin', '0', '--timeout', '60']);
    assert.equal(r.code, 1);
    assert.equal(r.out.go, false);
    assert.deepEqual(r.out.steps.map((s) => [s.step, s.status]), [
      ['confirm', 'ok'], ['source caught up', 'ok'], ['sink caught up', 'ok'], ['sequences', 'ok'], ['verify', 'ok'], ['writes stopped', 'failed'], ['foreign keys', 'skipped'],
    ]);
    assert.match(r.out.problems[0], new RegExp(`^writes stopped: \\d+ change\\(s\\) reached ${PREFIX}\\.${SCHEMA}\\.orders\\[\\d\\] after the cut-over position: writes to the source have not stopped`));
  } finally {
    await stopWriting();
  }
  await waitFor('the sink caught up with the writer', async () => (await status()).out.totals.lag === 0, { timeoutMs: 60_000, intervalMs: 200 });
});

test('cutover --yes while a writer still writes and a table differs: the writes that did not stop are said first, no foreign key created', async () => {
  const { rows: [orig] } = await dst.query(`SELECT note FROM ${SCHEMA}.orders WHERE id = 500`);
  await dst.query(`UPDATE ${SCHEMA}.orders SET note = 'changed on the destination' WHERE id = 500`);
  const stopWriting = await keepWriting();
  try {
    const r = await json<CutoverReport>(['cutover', '--yes', '--sequence-margin', '0', '--timeout', '60']);
    assert.equal(r.code, 1);
    assert.deepEqual(r.out.steps.map((s) => [s.step, s.status]), [
      ['confirm', 'ok'], ['source caught up', 'ok'], ['sink caught up', 'ok'], ['sequences', 'ok'], ['verify', 'failed'], ['writes stopped', 'failed'], ['foreign keys', 'skipped'],
    ]);
    assert.match(r.out.problems[0], new RegExp(`^writes stopped: \\d+ change\\(s\\) reached ${PREFIX}\\.${SCHEMA}\\.orders\\[\\d\\] after the cut-over position: writes to the source have not stopped`));
    assert.ok(r.out.problems.some((p) => p.startsWith(`${SCHEMA}.orders: id in [`) && p.includes('(id=500) changed')), r.out.problems.join('\n'));
    assert.equal((await dst.query(`SELECT 1 FROM pg_constraint WHERE conname = 'orders_customer_fk'`)).rowCount, 0);
  } finally {
    await stopWriting();
    await dst.query(`UPDATE ${SCHEMA}.orders SET note = $1 WHERE id = 500`, [orig.note]);
  }
  await waitFor('the sink caught up with the writer', async () => (await status()).out.totals.lag === 0, { timeoutMs: 60_000, intervalMs: 200 });
});

test('cutover --yes with a prepared transaction (two-phase commit) open on the source: NO-GO naming it, as its writes would come at COMMIT PREPARED, after the cut-over', async () => {
  // Prepared, the transaction leaves the session: src goes on with other statements.
  try {
    await src.query(`BEGIN; UPDATE ${SCHEMA}.orders SET note = 'prepared' WHERE id = 501; PREPARE TRANSACTION 'cutover-held'`);
    const r = await json<CutoverReport>(['cutover', '--yes', '--sequence-margin', '0', '--timeout', '60']);
    assert.equal(r.code, 1);
    assert.deepEqual(r.out.steps.map((s) => [s.step, s.status]), [
      ['confirm', 'ok'], ['source caught up', 'ok'], ['sink caught up', 'ok'], ['sequences', 'ok'], ['verify', 'ok'], ['writes stopped', 'failed'], ['foreign keys', 'skipped'],
    ]);
    assert.match(r.out.problems[0], /^writes stopped: 1 prepared transaction\(s\) in the source database would write after the cut-over position at their COMMIT PREPARED, the oldest prepared transaction 'cutover-held' in database \S+ \(owner \S+\) since .*ROLLBACK PREPARED 'cutover-held'/);
  } finally {
    await src.query(`ROLLBACK PREPARED 'cutover-held'`).catch(() => {});
  }
});

test('cutover --yes on a clean run: go, sequences at least source + margin, deferred foreign key created', async () => {
  await src.query(`INSERT INTO ${SCHEMA}.customers (name) VALUES ('late')`);
  await src.query(`INSERT INTO ${SCHEMA}.orders (customer_id, amount, note) VALUES (201, 1, 'late')`);
  const unconfirmed = await cli(['cutover']);
  assert.equal(unconfirmed.code, 2);
  assert.match(unconfirmed.stderr, /stop the writes to the source first, then confirm with --yes/);
  const fkBefore = await dst.query(`SELECT 1 FROM pg_constraint WHERE conname = 'orders_customer_fk' AND conrelid = '${SCHEMA}.orders'::regclass`);
  assert.equal(fkBefore.rowCount, 0, 'schema copy kept the foreign key aside');

  // A lock_timeout for cutover's destination session (kept: ADD FOREIGN KEY holds up the
  // table's writers while it waits; here in the URL's options, as the role's would be) cuts the
  // wait behind an application's transaction open on the referenced table: the key is not made,
  // and the failure says why, who held the lock, and what to do.
  const url = sinkConfig.destination.url!;
  const shortFile = join(dir, 'sink-lock-timeout.json');
  writeFileSync(shortFile, JSON.stringify({ ...sinkConfig, destination: { url: `${url}${url.includes('?') ? '&' : '?'}options=${encodeURIComponent('-c lock_timeout=200')}` } }));
  const writer = new pg.Client({ connectionString: sinkConfig.destination.url, application_name: 'app-writer' });
  await writer.connect();
  try {
    await writer.query(`BEGIN; LOCK TABLE ${SCHEMA}.customers IN ROW EXCLUSIVE MODE`);
    const cut = await runCli(['cutover', '--yes', '--json', '--sequence-margin', '0', '--timeout', '60', '--source-config', files[1], '--sink-config', shortFile]);
    const out = JSON.parse(cut.stdout) as CutoverReport;
    assert.equal(cut.code, 1, cut.stdout + cut.stderr);
    assert.deepEqual(out.steps.filter((s) => s.status !== 'ok').map((s) => [s.step, s.status]), [['foreign keys', 'failed']], JSON.stringify(out.steps));
    assert.deepEqual(out.foreignKeys.map((f) => [f.constraint, f.status]), [['orders_customer_fk', 'failed']]);
    assert.equal(out.problems.length, 1, JSON.stringify(out.problems));
    assert.equal((await dst.query(`SELECT 1 FROM pg_constraint WHERE conname = 'orders_customer_fk' AND conrelid = '${SCHEMA}.orders'::regclass`)).rowCount, 0, 'no half-made key');
    const why = out.problems[0];
    assert.match(why, new RegExp(`^foreign key orders_customer_fk on "${SCHEMA}"\\."orders": ALTER TABLE "${SCHEMA}"\\."orders" ADD CONSTRAINT "orders_customer_fk" waited longer than lock_timeout \\(200ms, set in destination\\.url's options\\)`));
    assert.match(why, /cancelled \(55P03\): nothing of this foreign key was made/);
    assert.match(why, new RegExp(`pid ${(await writer.query('SELECT pg_backend_pid() AS p')).rows[0].p} \\(app-writer, idle in transaction, in a transaction for \\d+ s\\) holds RowExclusiveLock on ${SCHEMA}\\.customers`));
    assert.match(why, /run cutover again when the writes to these tables are quiet .*or raise lock_timeout in destination\.url's options/);
  } finally {
    await writer.end();
  }

  const r = await json<CutoverReport>(['cutover', '--yes', '--sequence-margin', '500', '--timeout', '60']);
  assert.equal(r.code, 0, JSON.stringify(r.out.problems) + r.stderr);
  assert.equal(r.out.go, true);
  assert.match(r.out.recordedLsn!, /^[0-9A-F]+\/[0-9A-F]+$/);
  assert.deepEqual(r.out.steps.map((s) => [s.step, s.status]), [
    ['confirm', 'ok'], ['source caught up', 'ok'], ['sink caught up', 'ok'], ['sequences', 'ok'], ['verify', 'ok'], ['writes stopped', 'ok'], ['foreign keys', 'ok'],
  ]);
  const srcSeq = new Map((await src.query(`SELECT sequencename AS s, last_value::text AS v FROM pg_sequences WHERE schemaname = $1`, [SCHEMA])).rows.map((x) => [x.s, BigInt(x.v)]));
  const dstSeq = new Map((await dst.query(`SELECT sequencename AS s, last_value::text AS v FROM pg_sequences WHERE schemaname = $1`, [SCHEMA])).rows.map((x) => [x.s, BigInt(x.v)]));
  // ticket_no: owned by no table, called by both tables' defaults; refund_no counts down;
  // invoice_no and legacy_no: no table uses them (the application calls them), legacy_no is not on the destination.
  assert.deepEqual([...srcSeq.keys()].sort(), ['customers_id_seq', 'invoice_no', 'legacy_no', 'odd.seq', 'orders_id_seq', 'refund_no', 'ticket_no']);
  for (const name of ['customers_id_seq', 'invoice_no', 'odd.seq', 'orders_id_seq', 'ticket_no']) {
    assert.ok(dstSeq.get(name)! >= srcSeq.get(name)! + 500n, `${name}: destination ${dstSeq.get(name)} >= source ${srcSeq.get(name)} + 500`);
  }
  assert.ok(dstSeq.get('refund_no')! <= srcSeq.get('refund_no')! - 500n, `refund_no counts down: destination ${dstSeq.get('refund_no')} <= source ${srcSeq.get('refund_no')} - 500`);
  assert.equal(dstSeq.has('legacy_no'), false);
  const tagValue = async (c: pg.Client) => BigInt((await c.query(`SELECT last_value::text AS v FROM "${MIX}"."Tag.No"`)).rows[0].v);
  assert.ok((await tagValue(dst)) >= (await tagValue(src)) + 500n, 'the sequence of the mixed-case schema holding a dot moved too');
  assert.deepEqual(r.out.sequences.map((s) => [s.sequence, s.status]).sort(), [
    [`"${MIX}"."Tag.No"`, 'moved'], [`${SCHEMA}."odd.seq"`, 'moved'], [`${SCHEMA}.customers_id_seq`, 'moved'], [`${SCHEMA}.invoice_no`, 'moved'], [`${SCHEMA}.legacy_no`, 'not on destination'],
    [`${SCHEMA}.orders_id_seq`, 'moved'], [`${SCHEMA}.refund_no`, 'moved'], [`${SCHEMA}.ticket_no`, 'moved'],
  ]);
  const legacy = r.out.sequences.find((s) => s.sequence === `${SCHEMA}.legacy_no`)!;
  assert.deepEqual([legacy.table, legacy.column], [null, null]);
  assert.match(legacy.error ?? '', new RegExp(`the source handed out up to 3: if the application calls it, CREATE SEQUENCE "${SCHEMA}"\\."legacy_no" START WITH 503 on the destination`));
  assert.deepEqual(r.out.tables.map((t) => [t.table, t.match]), [[`${SCHEMA}.customers`, true], [`${SCHEMA}.orders`, true]]);
  assert.deepEqual(r.out.foreignKeys.map((f) => [f.table, f.constraint, f.status]), [[`"${SCHEMA}"."orders"`, 'orders_customer_fk', 'created']]);
  const fk = await dst.query(`SELECT pg_get_constraintdef(oid) AS d FROM pg_constraint WHERE conname = 'orders_customer_fk' AND conrelid = '${SCHEMA}.orders'::regclass`);
  assert.match(fk.rows[0]?.d ?? '', /FOREIGN KEY \(customer_id\) REFERENCES .*customers\(id\)/);
  const mark = await dst.query(`SELECT created_at FROM shardbridge.deferred_foreign_keys WHERE table_name = $1`, [`"${SCHEMA}"."orders"`]);
  assert.ok(mark.rows[0]?.created_at instanceof Date, 'marked done');

  // Again: idempotent, nothing lowered (also a sequence restarted higher and not called since,
  // whose pg_sequence_last_value is NULL), the foreign key already there.
  await dst.query(`ALTER SEQUENCE ${SCHEMA}.customers_id_seq RESTART WITH 1000000`);
  const again = await json<CutoverReport>(['cutover', '--yes', '--sequence-margin', '0', '--timeout', '60']);
  assert.equal(again.code, 0, JSON.stringify(again.out.problems));
  assert.deepEqual(again.out.sequences.map((s) => s.status).sort(), [...Array(7).fill('already above'), 'not on destination']);
  assert.equal((await dst.query(`SELECT nextval('${SCHEMA}.customers_id_seq')::text AS n`)).rows[0].n, '1000000');
  assert.deepEqual(again.out.foreignKeys.map((f) => f.status), ['already there']);
});

test('cutover --yes with sequences at their bounds: past MAXVALUE held there with a warning; a source value beyond the destination\'s MAXVALUE a no-go naming both bounds', async () => {
  // Sequences the application calls itself, on the destination as pg_dump --schema-only makes them
  // (voucher_no as on the source; coupon_no narrower there).
  await src.query(`CREATE SEQUENCE ${SCHEMA}.voucher_no MAXVALUE 1000; SELECT setval('${SCHEMA}.voucher_no', 900);
                   CREATE SEQUENCE ${SCHEMA}.coupon_no; SELECT setval('${SCHEMA}.coupon_no', 3000000000)`);
  await dst.query(`CREATE SEQUENCE ${SCHEMA}.voucher_no MAXVALUE 1000; CREATE SEQUENCE ${SCHEMA}.coupon_no AS integer`);
  const r = await json<CutoverReport>(['cutover', '--yes', '--timeout', '60']);
  assert.equal(r.code, 1);
  assert.deepEqual(r.out.steps.map((s) => [s.step, s.status]), [
    ['confirm', 'ok'], ['source caught up', 'ok'], ['sink caught up', 'ok'], ['sequences', 'failed'], ['verify', 'ok'], ['writes stopped', 'ok'], ['foreign keys', 'ok'],
  ]);
  assert.deepEqual(r.out.problems, [
    `sequence ${SCHEMA}.coupon_no: out of range: the source handed out 3000000000, beyond the destination's MAXVALUE 2147483647 (the source's MAXVALUE is 9223372036854775807): ` +
      `the destination cannot take its values; widen it on the destination (ALTER SEQUENCE ${SCHEMA}.coupon_no AS bigint MAXVALUE 9223372036854775807), then run cutover again`,
  ]);
  const voucher = r.out.sequences.find((s) => s.sequence === `${SCHEMA}.voucher_no`)!;
  assert.deepEqual([voucher.status, voucher.sourceValue, voucher.target, voucher.after], ['moved', '900', '1000', '1000']);
  assert.deepEqual(r.out.warnings, [
    `sequence ${SCHEMA}.voucher_no: the source value 900 + the margin 1000 is beyond the destination's MAXVALUE 1000: set to 1000, where the destination sequence is exhausted (its next nextval fails); ` +
      `widen it before the application writes (ALTER SEQUENCE ${SCHEMA}.voucher_no AS bigint MAXVALUE 9223372036854775807), then run cutover again to move it the full margin`,
  ]);
  await assert.rejects(dst.query(`SELECT nextval('${SCHEMA}.voucher_no')`), /reached maximum value/);
  assert.equal((await dst.query(`SELECT last_value::text AS v FROM ${SCHEMA}.coupon_no`)).rows[0].v, '1', 'coupon_no left alone');

  // Widened as the messages say: go, both the full margin past the source.
  await dst.query(`ALTER SEQUENCE ${SCHEMA}.voucher_no AS bigint MAXVALUE 9223372036854775807; ALTER SEQUENCE ${SCHEMA}.coupon_no AS bigint MAXVALUE 9223372036854775807`);
  const widened = await json<CutoverReport>(['cutover', '--yes', '--timeout', '60']);
  assert.equal(widened.code, 0, JSON.stringify(widened.out.problems));
  assert.deepEqual(widened.out.warnings, []);
  const after = (name: string) => widened.out.sequences.find((s) => s.sequence === `${SCHEMA}.${name}`)?.after;
  assert.deepEqual([after('voucher_no'), after('coupon_no')], ['1900', '3000001000']);
});

test('cutover --yes as a source role that cannot read a sequence: no-go naming the sequence and the GRANT, not "unused on source"', async () => {
  const role = `sb_mig_ro_${process.pid}`;
  // What the commands need on the source (and the connector: REPLICATION, the tables), every sequence but ticket_no.
  await src.query(`CREATE ROLE ${role} LOGIN REPLICATION;
    GRANT USAGE ON SCHEMA ${SCHEMA}, "${MIX}" TO ${role}; GRANT SELECT ON ALL TABLES IN SCHEMA ${SCHEMA} TO ${role};
    GRANT SELECT ON ALL SEQUENCES IN SCHEMA ${SCHEMA}, "${MIX}" TO ${role}; REVOKE SELECT ON SEQUENCE ${SCHEMA}.ticket_no FROM ${role}`);
  const restricted = join(dir, 'source-restricted.json');
  writeFileSync(restricted, JSON.stringify({ ...sourceConfig, source: { url: sourceUrlAs(role) } }));
  let stdout = '';
  const code = await main(['node', 'shardbridge', 'cutover', '--yes', '--json', '--timeout', '60', '--source-config', restricted, '--sink-config', files[3]], {
    stdout: (t) => (stdout += t),
    stderr: () => {},
    env: {},
  });
  const r = JSON.parse(stdout) as CutoverReport;
  assert.equal(code, 1, stdout);
  assert.deepEqual(r.steps.filter((s) => s.status !== 'ok').map((s) => s.step), ['sequences']);
  const ticket = r.sequences.find((s) => s.sequence === `${SCHEMA}.ticket_no`)!;
  assert.deepEqual([ticket.status, ticket.sourceValue, ticket.target], ['not readable on source', null, null]);
  assert.deepEqual(r.problems, [
    `sequence ${SCHEMA}.ticket_no (${SCHEMA}.customers.ticket): not readable on source: role "${role}" may neither SELECT nor USE it on the source, so the value it handed out is unknown: ` +
      `GRANT SELECT ON SEQUENCE ${SCHEMA}.ticket_no TO "${role}" (or USAGE) on the source, then run cutover again`,
  ]);
  assert.ok(r.sequences.filter((s) => s !== ticket).every((s) => s.status === 'already above' || s.status === 'not on destination'), JSON.stringify(r.sequences));
});

test('cutover --verify-only after a row changed on the destination: no-go naming the table and key range', async () => {
  const { rows: [orig] } = await dst.query(`SELECT note FROM ${SCHEMA}.orders WHERE id = 500`);
  await dst.query(`UPDATE ${SCHEMA}.orders SET note = 'changed on the destination' WHERE id = 500`);
  try {
    const r = await json<CutoverReport>(['cutover', '--verify-only']);
    assert.equal(r.code, 1);
    assert.equal(r.out.go, false);
    assert.deepEqual(r.out.steps.map((s) => [s.step, s.status]), [['verify', 'failed']]);
    const orders = r.out.tables.find((t) => t.table === `${SCHEMA}.orders`)!;
    assert.equal(orders.match, false);
    assert.equal(orders.differences.length, 1);
    const d = orders.differences[0];
    assert.match(d.range, /^id in \[/);
    assert.ok(BigInt(d.from ?? '-1') <= 500n && (d.to === null || BigInt(d.to) > 500n), `${d.range} holds id 500`);
    assert.deepEqual(d.sampleKeys, [{ key: { id: '500' }, difference: 'changed' }]);
    assert.equal(r.out.tables.find((t) => t.table === `${SCHEMA}.customers`)!.match, true);
    assert.ok(r.out.problems.some((p) => p.startsWith(`${SCHEMA}.orders: id in [`) && p.includes('(id=500) changed')), r.out.problems.join('\n'));

    const text = await cli(['cutover', '--verify-only']);
    assert.equal(text.code, 1);
    assert.match(text.stdout, new RegExp(`NO-GO:\\n  - ${SCHEMA}\\.orders: id in \\[\\d+, \\d+\\): \\d+ source rows, \\d+ destination rows; keys \\(id=500\\) changed\\n`));
  } finally {
    await dst.query(`UPDATE ${SCHEMA}.orders SET note = $1 WHERE id = 500`, [orig.note]);
  }
  // What logical replication does not carry is said as warnings, without stopping the go: a
  // trigger left disabled for the migration, a materialized view over a migrated table, a large object.
  await dst.query(`
    CREATE FUNCTION ${SCHEMA}.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
    CREATE TRIGGER orders_touch BEFORE UPDATE ON ${SCHEMA}.orders FOR EACH ROW EXECUTE FUNCTION ${SCHEMA}.touch();
    ALTER TABLE ${SCHEMA}.orders DISABLE TRIGGER USER;
    CREATE MATERIALIZED VIEW ${SCHEMA}.order_totals AS SELECT customer_id, sum(amount) AS total FROM ${SCHEMA}.orders GROUP BY customer_id WITH NO DATA;`);
  const { rows: [lo] } = await src.query(`SELECT lo_from_bytea(0, 'not carried') AS oid`);
  // An identity column GENERATED ALWAYS outside the key: schema copy makes it BY DEFAULT (the sink's upserts set it), cutover reminds to set it back.
  await src.query(`CREATE TABLE ${SCHEMA}.idents (id int PRIMARY KEY, serial_no bigint GENERATED ALWAYS AS IDENTITY)`);
  try {
    const copied = await cli(['schema', 'copy', '--json']);
    assert.equal(copied.code, 0, copied.stderr + copied.stdout);
    assert.ok(
      (JSON.parse(copied.stdout) as { notes: string[] }).notes.includes(
        `${SCHEMA}.idents.serial_no is GENERATED ALWAYS AS IDENTITY on the source: created GENERATED BY DEFAULT, so that the sink can write the source's values (ALWAYS refuses them); after cut-over, ALTER TABLE "${SCHEMA}"."idents" ALTER COLUMN "serial_no" SET GENERATED ALWAYS (cutover reminds you)`,
      ),
      copied.stdout,
    );
    assert.equal((await dst.query(`SELECT attidentity FROM pg_attribute WHERE attrelid = '${SCHEMA}.idents'::regclass AND attname = 'serial_no'`)).rows[0].attidentity, 'd');
    // On Citus a distributed table keeps BY DEFAULT: Citus refuses SET GENERATED ALWAYS on its tables.
    if (citusPrefix) await dst.query(`SELECT create_distributed_table('${SCHEMA}.idents', 'id')`);
    const ok = await json<CutoverReport>(['cutover', '--verify-only']);
    assert.equal(ok.code, 0, JSON.stringify(ok.out.problems));
    assert.deepEqual(ok.out.warnings, [
      `trigger orders_touch on ${SCHEMA}.orders is disabled: if disabled for the migration, enable it before the application writes: ${citusPrefix}ALTER TABLE "${SCHEMA}"."orders" ENABLE TRIGGER "orders_touch";`,
      `materialized view ${SCHEMA}.order_totals reads migrated tables and holds what it held at its last refresh (or nothing): REFRESH MATERIALIZED VIEW ${SCHEMA}.order_totals; before the application reads it`,
      `the source has 1 large object(s), the destination 0: logical replication does not carry them; copy them at cut-over, after the source's last write, their OIDs kept: pg_dump --data-only --blobs --exclude-schema='*' <source> | psql <destination>`,
      citusPrefix
        ? `${SCHEMA}.idents.serial_no is GENERATED BY DEFAULT AS IDENTITY on the destination and ALWAYS on the source (schema copy made it so for the sink's writes), and stays so: Citus refuses ALTER TABLE … SET GENERATED ALWAYS on its tables, so an insert that gives its own serial_no is taken there (the others still get the sequence's values)`
        : `${SCHEMA}.idents.serial_no is GENERATED BY DEFAULT AS IDENTITY on the destination and ALWAYS on the source (schema copy made it so for the sink's writes): once the sink is stopped, ALTER TABLE "${SCHEMA}"."idents" ALTER COLUMN "serial_no" SET GENERATED ALWAYS`,
    ]);
  } finally {
    await dst.query(`DROP MATERIALIZED VIEW ${SCHEMA}.order_totals; DROP TRIGGER orders_touch ON ${SCHEMA}.orders; DROP FUNCTION ${SCHEMA}.touch(); DROP TABLE IF EXISTS ${SCHEMA}.idents`);
    await src.query(`DROP TABLE ${SCHEMA}.idents`);
    await src.query(`SELECT lo_unlink($1)`, [lo.oid]);
  }
});

test('cleanup refuses while the source connector streams, the sink is behind or the slot holds changes; then drops everything', async () => {
  const slotExists = async () => (await src.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [sourceConfig.slotName])).rowCount === 1;

  const streaming = await json<CleanupReport>(['cleanup']);
  assert.equal(streaming.code, 1);
  assert.equal(streaming.out.refused, true);
  assert.match(streaming.out.blockers.map((b) => b.message).join('\n'), /the source connector still streams from the slot/);
  assert.deepEqual(streaming.out.results, []);
  assert.ok(await slotExists());

  // The sink stops; the source publishes more; then the source stops and one more change waits in the slot.
  await stopSink();
  await src.query(`INSERT INTO ${SCHEMA}.orders (customer_id, amount, note) SELECT 5, g, 'unapplied' || g FROM generate_series(1, 20) g`);
  await sourceConfirmed();
  // cutover with the sink stopped: the wait says that no sink is there, not only that records wait.
  await waitFor('the sink sessions gone', async () => (await dst.query(`SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'shardbridge-sink-%'`)).rowCount === 0);
  const noSink = await json<CutoverReport>(['cutover', '--yes', '--timeout', '1']);
  assert.equal(noSink.code, 1);
  assert.match(noSink.out.problems[0], /^sink caught up: timed out: 20 record\(s\) on .* not applied \(no sink connector is connected to the destination: start it\)$/);
  await stopSource();
  await src.query(`UPDATE ${SCHEMA}.orders SET note = 'unpublished' WHERE id = 1`);
  const behind = await json<CleanupReport>(['cleanup', '--drop-control-tables', '--drop-topics']);
  assert.equal(behind.code, 1);
  const why = behind.out.blockers.map((b) => `${b.object}: ${b.message}`).join('\n');
  assert.match(why, new RegExp(`slot ${sourceConfig.slotName}: the slot holds 1 row change\\(s\\) after its confirmed position`));
  assert.match(why, /sink: the sink has not applied 20 record\(s\) on /);
  assert.ok(await slotExists(), 'nothing dropped');
  const text = await cli(['cleanup']);
  assert.equal(text.code, 1);
  assert.match(text.stdout, /cleanup refused: nothing was dropped/);

  // Catch up, stop both, clean up everything.
  await startSource();
  await sourceConfirmed();
  await stopSource();
  await startSink();
  await waitApplied(dst, admin, GROUP, [topic('customers'), topic('orders')], 60_000);
  await stopSink();
  await waitFor('the sink sessions gone', async () => (await dst.query(`SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'shardbridge-sink-%'`)).rowCount === 0);
  const done = await json<CleanupReport>(['cleanup', '--drop-control-tables', '--drop-topics']);
  assert.equal(done.code, 0, JSON.stringify(done.out));
  assert.equal(done.out.ok, true);
  const results = new Map(done.out.results.map((x) => [`${x.action} ${x.object}`, x.status]));
  assert.equal(results.get(`drop replication slot ${sourceConfig.slotName}`), 'done');
  assert.equal(results.get(`drop publication ${sourceConfig.publicationName}`), 'done');
  assert.equal(results.get('drop table shardbridge.sink_offsets'), 'done');
  assert.equal(results.get('drop table shardbridge.deferred_foreign_keys'), 'done');
  assert.equal(done.out.results.find((x) => x.action === 'delete topics')?.status, 'done');
  assert.equal(await slotExists(), false);
  assert.equal((await src.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [sourceConfig.publicationName])).rowCount, 0);
  assert.equal((await dst.query(`SELECT to_regclass('shardbridge.sink_offsets') AS t`)).rows[0].t, null);
  // Every table the sink made goes (the truncate barrier's too), and the schema with them.
  assert.equal((await dst.query(`SELECT to_regnamespace('shardbridge') AS s`)).rows[0].s, null, JSON.stringify(done.out.results));
  const left = (await admin.listTopics()).filter((t) => t.startsWith(`${PREFIX}.`));
  assert.deepEqual(left, []);

  // A second run finds nothing to drop and says so.
  const again = await json<CleanupReport>(['cleanup']);
  assert.equal(again.code, 0, JSON.stringify(again.out));
  assert.deepEqual(again.out.results.map((x) => x.status), ['absent', 'absent']);
});
