/**
 * Failover slots (PostgreSQL 17+, slotFailover): a PostgreSQL 18 primary and a standby that
 * syncs failover slots (hot_standby_feedback, primary_slot_name, the primary's
 * synchronized_standby_slots naming it). The connector streams from the primary through a TCP
 * proxy (as behind HAProxy or a virtual IP under Patroni); the standby's synced copy of the slot
 * appears; the primary crashes, the standby is promoted and the proxy turned to it, and the
 * running connector's next session goes on from the synced slot: the topic ends equal to the
 * new primary, nothing lost, and what came twice is a replay of what was already there.
 * A standby source's session, opened before the promotion, then writes to the promoted standby.
 * First, on the same pair: the standby as the source (PostgreSQL 16+, `primary` set: the slot
 * and the stream on the standby, the connector's and the commands' writes on the primary); a
 * standby slot invalidated for the catalog rows the primary removed; snapshot mode initial_only
 * there; and a synchronized_standby_slots naming a slot that does not exist, judged.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startPostgres, type PgCluster } from '../../shared/devstack/postgres.ts';
import { waitFor } from '../../shared/devstack/ports.ts';
import { createKafka, type KafkaClient } from '../../shared/kafka/client.ts';
import { parseLsn } from '../../source-connector/pgoutput-decoder.ts';
import { startSourceConnector, type SourceConnector } from '../../source-connector/run.ts';
import { resolveTables } from '../../source-connector/catalog.ts';
import { writerFor } from '../../source-connector/standby.ts';
import { openSource, type SourceSession } from '../../source-connector/source-session.ts';
import { createSlotWithSnapshot, type ExportedSlot } from '../../source-connector/slot.ts';
import { ConfigError } from '../../shared/errors.ts';
import { sampleWalRate } from '../../shared/checks/gather.ts';
import { gatherSourceFacts, judgeSourceFacts } from '../../source-connector/checks.ts';
import { runCli } from '../helpers/cli.ts';
import { sinkConfig } from '../helpers/sink.ts';
import { startSinkConnector } from '../../sink-connector/connector.ts';
import { getTestKafka, testLogger } from '../helpers/kafka.ts';
import { getTestRegistry } from '../helpers/produce-changes.ts';
import { assertRowsEqualTable, caughtUp, finalState, readDecoded, RegistryDecoder, stableKey, stopped, streaming, testSourceConfig, uniquePrefix, type DecodedRecord } from '../helpers/source.ts';

const MAJOR = 18;
const SCHEMA = 'fo';
const SLOT = 'sb_failover';
const STANDBY_SLOT = 'sb_failover_standby';
const log = testLogger();
const releases: (() => Promise<void>)[] = [];
let primary: PgCluster;
let standby: PgCluster;
let kafka: KafkaClient;
let bootstrap: string;
let registry: string;

before(async () => {
  const [k, r, p] = await Promise.all([getTestKafka(), getTestRegistry(), startPostgres({ name: 'fo-primary', major: MAJOR, logger: log })]);
  releases.push(k.release, r.release, () => p.destroy());
  primary = p;
  bootstrap = k.bootstrap;
  registry = r.url;
  kafka = createKafka({ brokers: [bootstrap], clientId: 'test-source-failover' }, log);
  await sql(primary.url(), `CREATE SCHEMA ${SCHEMA}; CREATE TABLE ${SCHEMA}.items (id int PRIMARY KEY, v text)`);
  // Slot sync needs hot_standby_feedback and primary_slot_name; pg_sync_replication_slots() runs it when the test wants it.
  standby = await startPostgres({ name: 'fo-standby', major: MAJOR, standbyOf: primary.url(), standbySlot: STANDBY_SLOT, settings: { hot_standby_feedback: 'on' }, logger: log });
  releases.push(() => standby.destroy());
  // The connector is sent nothing the standby has not received.
  await sql(primary.url(), `ALTER SYSTEM SET synchronized_standby_slots = '${STANDBY_SLOT}'`);
  await sql(primary.url(), 'SELECT pg_reload_conf()');
});

after(async () => {
  for (const r of releases.reverse()) await r().catch(() => {});
});

async function sql(url: string, text: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  try {
    return await c.query(text, params);
  } finally {
    await c.end().catch(() => {});
  }
}

test('a PostgreSQL 16+ standby as the source: the slot, the snapshot and the stream on the standby; the publication, the heartbeats and the commands\' writes (resnapshot, cutover, cleanup) on primary; the topic ends equal to the table; initial_only from a temporary slot there', async () => {
  const prefix = uniquePrefix();
  const slot = 'sb_standby_source';
  await sql(primary.url(), `CREATE SCHEMA sbs; CREATE TABLE sbs.items (id int PRIMARY KEY, v text); INSERT INTO sbs.items SELECT g, 'snap ' || g FROM generate_series(1, 40) g; CREATE TABLE public.sbs_noise (n int)`);
  await replayed(await lsnNow(primary.url()));
  const extra = { slotName: slot, publicationName: 'sb_standby_source', tables: { schemas: ['sbs'] }, heartbeatIntervalMs: 200 };
  // Without primary, refused at start-up, naming the key (nothing made).
  await assert.rejects(startSourceConnector(testSourceConfig({ sourceUrl: standby.url(), kafka: bootstrap, registry, prefix, extra }), log), /FAIL +standby +primary +the source server is a standby \(in recovery\) and primary is not set/);
  // primary on another database: the slot would never see what is written there.
  await assert.rejects(startSourceConnector(testSourceConfig({ sourceUrl: standby.url(), kafka: bootstrap, registry, prefix, extra: { ...extra, primary: { url: primary.url('template1') } } }), log), /FAIL +standby +primary +primary connects to database template1, the source to postgres/);
  // A refused publication names primary, where it is made: here read-only by its connection's own options.
  const readOnly = await startSourceConnector(testSourceConfig({ sourceUrl: standby.url(), kafka: bootstrap, registry, prefix, extra: { ...extra, primary: { url: `${primary.url()}?options=-c%20default_transaction_read_only%3Don` } } }), log);
  try {
    const err = await stopped(readOnly);
    assert.match(err.message, /^default_transaction_read_only is on in the primary connection's own options: creating or altering publication "sb_standby_source" was refused/);
    assert.equal(err.remedy, 'remove -c default_transaction_read_only=on from the options of primary.url');
  } finally {
    await readOnly.stop().catch(() => {});
  }
  // The commands write through writerFor (cutover's heartbeat, resnapshot's request): primary for a standby, refused without one, the source itself otherwise.
  const [sc, pc] = [new pg.Client({ connectionString: standby.url() }), new pg.Client({ connectionString: primary.url() })];
  await Promise.all([sc.connect(), pc.connect()]);
  try {
    await assert.rejects(writerFor(sc, false, async () => pc, 'the cut-over position\'s heartbeat'), (e: unknown) => e instanceof ConfigError && /^the source is a standby \(in recovery\): the cut-over position's heartbeat is written into the WAL, which a standby refuses, and primary is not set$/.test(e.message));
    assert.equal(await writerFor(sc, true, async () => pc, 'x'), pc);
    assert.equal(await writerFor(pc, true, async () => sc, 'x'), pc);
    // check's WAL-rate sample reads the standby's replay position (pg_current_wal_lsn() fails in recovery).
    const rate = sampleWalRate(sc, 0.2);
    await pc.query(`SELECT pg_logical_emit_message(false, 'sb-test', 'x')`);
    assert.equal(typeof (await rate), 'number');
    // The publication is made by primary's role: judged for it, not for the source's (a reader on the standby, without CREATE).
    await pc.query(`CREATE ROLE sbs_reader LOGIN REPLICATION; GRANT USAGE ON SCHEMA sbs TO sbs_reader; GRANT SELECT ON sbs.items TO sbs_reader`);
    await replayed(await lsnNow(primary.url()));
    const [rs, rp] = [new pg.Client({ connectionString: standby.url('postgres', 'sbs_reader') }), new pg.Client({ connectionString: primary.url('postgres', 'sbs_reader') })];
    await Promise.all([rs.connect(), rp.connect()]);
    try {
      const publication = async (source: pg.Client, writer: pg.Client) => judgeSourceFacts(await gatherSourceFacts(source, {
        slotName: slot, publicationName: 'sb_standby_source', topicPrefix: prefix, resolved: await resolveTables(source, { schemas: ['sbs'], include: [], exclude: [] }), primary: { client: writer, endpoint: 'primary' }, primaryConfigured: true,
      })).filter((f) => f.check === 'publication').map((f) => `${f.level} ${f.message}`);
      assert.deepEqual(await publication(rs, pc), ['PASS the connector will create it']);
      assert.deepEqual(await publication(sc, rp), ['FAIL role "sbs_reader" cannot create publication sb_standby_source: it lacks CREATE on database postgres', 'FAIL creating publication sb_standby_source FOR TABLE needs ownership of each table; role "sbs_reader" does not own sbs.items']);
    } finally {
      await Promise.all([rs.end(), rp.end()]);
    }
    // A slot's creation on the standby waits for a transaction of the primary: primary is asked for running-transactions
    // records on one connection (not one a half second, on the production primary), closed once the slot exists.
    const holder = new pg.Client({ connectionString: primary.url() });
    await holder.connect();
    let making: Promise<ExportedSlot> | undefined;
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT pg_current_xact_id()');
      making = createSlotWithSnapshot({ connectionString: standby.url() }, 'sb_wait_probe', log, { temporary: true, primary: { connectionString: primary.url(), application_name: 'sb-asker' } });
      const askers = new Set<number>();
      let seen = 0;
      await waitFor('the slot wait\'s connection to primary seen thrice', async () => {
        const { rows } = await pc.query(`SELECT pid FROM pg_stat_activity WHERE application_name = 'sb-asker'`);
        for (const r of rows) askers.add(r.pid);
        return (seen += Math.min(rows.length, 1)) >= 3;
      }, { timeoutMs: 10_000, intervalMs: 100 });
      assert.equal(askers.size, 1, `one connection, not one per ask: ${[...askers]}`);
      await holder.query('COMMIT');
      await (await making).release();
      await waitFor('the slot wait\'s connection to primary closed', async () => (await pc.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'sb-asker'`)).rows.length === 0, { timeoutMs: 5_000, intervalMs: 50 });
    } finally {
      await holder.end();
      await making?.then((x) => x.release(), () => {});
    }
  } finally {
    await Promise.all([sc.end(), pc.end()]);
  }
  const config = testSourceConfig({ sourceUrl: standby.url(), kafka: bootstrap, registry, prefix, extra: { ...extra, primary: { url: primary.url() } } });
  const dir = mkdtempSync(join(tmpdir(), 'sb-standby-'));
  const file = join(dir, 'source.json');
  writeFileSync(file, JSON.stringify(config));
  let conn: SourceConnector | undefined;
  try {
    // check connects to primary too, and judges the pair as the start does.
    const checked = await runCli(['check', '--json', '--sample-seconds', '0', '--source-config', file]);
    const findings = (JSON.parse(checked.stdout).source.findings as { level: string; check: string; object: string }[]).filter((f) => ['reachable', 'standby', 'hot_standby_feedback', 'primary_slot_name'].includes(f.check));
    assert.deepEqual(findings.map((f) => [f.level, f.check, f.object.replace(/ .*/, '')]), [['PASS', 'reachable', 'source'], ['PASS', 'reachable', 'primary'], ['PASS', 'standby', 'primary']], checked.stdout);
    conn = await startSourceConnector(config, log);
    await streaming(conn);
    await sql(primary.url(), `INSERT INTO sbs.items SELECT g, 'streamed ' || g FROM generate_series(41, 60) g; UPDATE sbs.items SET v = 'changed' WHERE id <= 10; DELETE FROM sbs.items WHERE id BETWEEN 11 AND 15`);
    await caughtUp(conn, await lsnNow(primary.url()));
    // resnapshot's request is written on primary, and the running connector takes the table's own snapshot from a temporary slot on the standby.
    const asked = await runCli(['resnapshot', '--table', 'sbs.items', '--json', '--source-config', file]);
    assert.equal(asked.code, 0, asked.stderr);
    assert.deepEqual(JSON.parse(asked.stdout), { requested: ['sbs.items'], alreadyPending: [], next: 'taken now by the running connector' });
    await sql(primary.url(), `UPDATE sbs.items SET v = 'after the request' WHERE id = 20; DELETE FROM sbs.items WHERE id = 21`);
    await streaming(conn);
    await caughtUp(conn, await lsnNow(primary.url()));
    // The slot is the standby's; the primary has none (and the publication the connector made there).
    assert.deepEqual((await sql(standby.url(), `SELECT slot_type, active FROM pg_replication_slots WHERE slot_name = $1`, [slot])).rows, [{ slot_type: 'logical', active: true }]);
    assert.deepEqual((await sql(primary.url(), `SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'logical'`)).rows, []);
    assert.deepEqual((await sql(primary.url(), `SELECT pubname FROM pg_publication WHERE pubname = 'sb_standby_source'`)).rows, [{ pubname: 'sb_standby_source' }]);
    // Idle tables: the heartbeats written on the primary reach the standby's decoding and move the slot on, again and
    // again (three times past the primary's position: the primary's own running-transactions records come every 15 s at most).
    for (let i = 0; i < 3; i++) {
      const at = await lsnNow(primary.url());
      await waitFor(`the standby slot confirmed past ${at}`, async () => {
        const { rows } = await sql(standby.url(), `SELECT confirmed_flush_lsn::text AS c FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
        return parseLsn(rows[0].c) > at;
      }, { timeoutMs: 5_000, intervalMs: 50 });
    }
    // cutover: its position and heartbeats written on primary, the slot and the tables read on the standby; a sink into a database of the primary.
    const sinkCfg = sinkConfig({ kafka: bootstrap, registry, destination: primary.url('sbs_dest'), prefix, groupId: `g-${prefix}` });
    const sinkFile = join(dir, 'sink.json');
    writeFileSync(sinkFile, JSON.stringify(sinkCfg));
    await sql(primary.url(), 'CREATE DATABASE sbs_dest');
    await sql(primary.url('sbs_dest'), 'CREATE SCHEMA sbs; CREATE TABLE sbs.items (id int PRIMARY KEY, v text)');
    const sink = await startSinkConnector(sinkCfg, log, { topicRefreshMs: 300, controlPollMs: 300, metricsPort: 0 });
    try {
      const cutover = await runCli(['cutover', '--yes', '--json', '--timeout', '60', '--source-config', file, '--sink-config', sinkFile]);
      assert.deepEqual(JSON.parse(cutover.stdout).steps.map((s: { step: string; status: string }) => [s.step, s.status]), [
        ['confirm', 'ok'], ['source caught up', 'ok'], ['sink caught up', 'ok'], ['sequences', 'ok'], ['verify', 'ok'], ['writes stopped', 'ok'], ['foreign keys', 'ok'],
      ], cutover.stdout + cutover.stderr);
      assert.equal(cutover.code, 0, cutover.stderr);
    } finally {
      await sink.stop();
    }
    await conn.stop();
    // cleanup drops the slot on the standby and the publication on primary (forced: the sink's stored positions are not all applied here).
    const cleanup = await runCli(['cleanup', '--force', '--json', '--source-config', file, '--sink-config', sinkFile]);
    assert.deepEqual(JSON.parse(cleanup.stdout).results.filter((r: { object: string }) => [slot, 'sb_standby_source'].includes(r.object)).map((r: { action: string; status: string }) => [r.action, r.status]), [['drop replication slot', 'done'], ['drop publication', 'done']], cleanup.stdout + cleanup.stderr);
    assert.deepEqual((await sql(standby.url(), `SELECT slot_name FROM pg_replication_slots WHERE slot_name = $1`, [slot])).rows, []);
    assert.deepEqual((await sql(primary.url(), `SELECT pubname FROM pg_publication WHERE pubname = 'sb_standby_source'`)).rows, []);
  } finally {
    await conn?.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
    // Not left for the failover test below when this one failed before cleanup (its standby is promoted with it).
    await sql(standby.url(), `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, [slot]).catch(() => {});
  }
  // Snapshot mode initial_only on the standby: its temporary slot there (the publication made on primary), the copy, no slot left.
  const once = testSourceConfig({ sourceUrl: standby.url(), kafka: bootstrap, registry, extra: { ...extra, slotName: 'sb_once', publicationName: 'sb_once', snapshot: { mode: 'initial_only' }, primary: { url: primary.url() } } });
  const copied = await startSourceConnector(once, log);
  await copied.done;
  assert.equal(copied.state().phase, 'finished');
  assert.deepEqual((await sql(standby.url(), `SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'logical'`)).rows, []);
  await sql(primary.url(), 'DROP PUBLICATION sb_once');
  const onlyCopy = finalState(await readDecoded(kafka, new RegistryDecoder(registry), `${once.topicPrefix}.sbs.items`));
  const all = await readDecoded(kafka, new RegistryDecoder(registry), `${prefix}.sbs.items`);
  // The snapshot taken again: a truncate, then every row again.
  assert.ok(all.some((r) => r.value?.op === 't'), 'the resnapshot\'s truncate is in the topic');
  const c = new pg.Client({ connectionString: primary.url() });
  await c.connect();
  try {
    await assertRowsEqualTable(c, 'sbs.items', finalState(all).values());
    await assertRowsEqualTable(c, 'sbs.items', onlyCopy.values());
  } finally {
    await c.end();
  }
});

test('a standby slot invalidated because the primary removed catalog rows it needed (hot_standby_feedback off): check names rows_removed and the standby settings', async () => {
  const slot = 'sb_rows_removed';
  // The slot is made on a session of its own: cancelled by the other if the test fails while it waits.
  const [sc, pc, mk] = [standby.url(), primary.url(), standby.url()].map((url) => new pg.Client({ connectionString: url }));
  await Promise.all([sc.connect(), pc.connect(), mk.connect()]);
  let making: Promise<unknown> | undefined;
  try {
    await sc.query('ALTER SYSTEM SET hot_standby_feedback = off');
    await sc.query('SELECT pg_reload_conf()');
    // The standby's feedback no longer holds the primary's horizon back.
    await waitFor('the physical slot without xmin', async () => (await pc.query(`SELECT xmin FROM pg_replication_slots WHERE slot_name = $1`, [STANDBY_SLOT])).rows[0].xmin === null, { timeoutMs: 10_000, intervalMs: 50 });
    let made = false;
    making = mk.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]).finally(() => (made = true));
    await waitFor('the standby slot made', async () => made || ((await pc.query('SELECT pg_log_standby_snapshot()')), false), { timeoutMs: 30_000, intervalMs: 100 });
    await making;
    await pc.query(`CREATE TABLE sbs_junk (id int); DROP TABLE sbs_junk`);
    await pc.query('VACUUM FULL pg_class');
    await waitFor('the standby slot invalidated', async () => (await sc.query(`SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1`, [slot])).rows[0].wal_status === 'lost', { timeoutMs: 10_000, intervalMs: 50 });
    const facts = await gatherSourceFacts(sc, {
      slotName: slot, publicationName: 'sb_nowhere', topicPrefix: 'sb', resolved: await resolveTables(sc, { schemas: [SCHEMA], include: [], exclude: [] }),
      primary: { client: pc, endpoint: 'the primary' }, primaryConfigured: true,
    });
    const found = judgeSourceFacts(facts).filter((f) => ['slot', 'hot_standby_feedback', 'standby'].includes(f.check));
    assert.deepEqual(found.map((f) => [f.level, f.check]), [['PASS', 'standby'], ['FAIL', 'hot_standby_feedback'], ['FAIL', 'slot']]);
    assert.match(found[2].message, /^replication slot "sb_rows_removed" was invalidated \(invalidation_reason rows_removed: the server removed catalog rows it still needed\): changes were lost/);
    assert.match(found[2].remedy!, /reading from a standby, first set on it hot_standby_feedback = on and primary_slot_name/);
  } finally {
    await sc.query('SELECT pg_cancel_backend($1::int)', [(mk as unknown as { processID: number }).processID]);
    await making?.catch(() => {});
    await sc.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, [slot]).catch(() => {});
    await sc.query('ALTER SYSTEM RESET hot_standby_feedback');
    await sc.query('SELECT pg_reload_conf()');
    // The failover test below syncs slots, which needs it on (the standby's own setting).
    await waitFor('hot_standby_feedback on again', async () => (await sc.query('SHOW hot_standby_feedback')).rows[0].hot_standby_feedback === 'on', { timeoutMs: 10_000, intervalMs: 50 });
    await Promise.all([sc.end(), pc.end(), mk.end()]);
  }
});

test('check and the start FAIL a failover slot when synchronized_standby_slots names no physical slot of the primary (its WAL sender would wait forever)', async () => {
  const c = new pg.Client({ connectionString: primary.url() });
  await c.connect();
  try {
    const facts = async () => judgeSourceFacts(await gatherSourceFacts(c, { slotName: 'sb_nowhere', publicationName: 'sb_nowhere', topicPrefix: 'sb', resolved: await resolveTables(c, { schemas: [SCHEMA], include: [], exclude: [] }), slotFailover: true }))
      .filter((f) => f.check === 'failover slot');
    assert.deepEqual(await facts(), []);
    await c.query(`ALTER SYSTEM SET synchronized_standby_slots = '${STANDBY_SLOT}, sb_gone'`);
    await c.query('SELECT pg_reload_conf()');
    await waitFor('the setting reloaded', async () => (await c.query('SHOW synchronized_standby_slots')).rows[0].synchronized_standby_slots.includes('sb_gone'), { timeoutMs: 10_000, intervalMs: 20 });
    const [f, ...rest] = await facts();
    assert.deepEqual([f?.level, rest], ['FAIL', []]);
    assert.match(f.message, /^synchronized_standby_slots names "sb_gone", which is no physical slot of the source: the WAL sender of failover slot "sb_nowhere" waits for it forever/);
  } finally {
    await c.query(`ALTER SYSTEM SET synchronized_standby_slots = '${STANDBY_SLOT}'`);
    await c.query('SELECT pg_reload_conf()');
    await c.end();
  }
});

test('a failover slot survives the primary failing over: the running connector goes on from the promoted standby\'s synced slot, nothing lost; the kept slot follows slotFailover; a standby source\'s session then writes to the promoted standby', async () => {
  const prefix = uniquePrefix();
  const configFor = (sourceUrl: string, slotFailover = true) =>
    testSourceConfig({ sourceUrl, kafka: bootstrap, registry, prefix, extra: { slotName: SLOT, publicationName: 'sb_failover', slotFailover, tables: { schemas: [SCHEMA] }, heartbeatIntervalMs: 200 } });
  const topic = `${prefix}.${SCHEMA}.items`;
  const proxy = await tcpProxy(primary.port);
  await sql(primary.url(), `INSERT INTO ${SCHEMA}.items SELECT g, 'snap ' || g FROM generate_series(1, 50) g`);
  const conn = await startSourceConnector(configFor(`postgres://postgres@127.0.0.1:${proxy.port}/postgres`), log);
  let before: DecodedRecord[];
  const decoder = new RegistryDecoder(registry);
  let reader: SourceSession | undefined;
  try {
    await streaming(conn);
    assert.deepEqual((await sql(primary.url(), `SELECT failover FROM pg_replication_slots WHERE slot_name = $1`, [SLOT])).rows, [{ failover: true }]);
    await sql(primary.url(), `INSERT INTO ${SCHEMA}.items SELECT g, 'streamed ' || g FROM generate_series(51, 80) g; UPDATE ${SCHEMA}.items SET v = 'changed' WHERE id <= 10; DELETE FROM ${SCHEMA}.items WHERE id BETWEEN 11 AND 15`);
    await caughtUp(conn, await lsnNow(primary.url()));
    // The standby's copy, made persistent: a synced slot stays temporary until the primary's has moved past where the copy began.
    await waitFor('the standby\'s synced copy of the slot', async () => {
      await sql(standby.url(), 'SELECT pg_sync_replication_slots()');
      // A running-transactions record now, not in up to 15 s: the primary's slot moves its restart_lsn on as the connector confirms.
      await sql(primary.url(), 'SELECT pg_log_standby_snapshot()');
      const { rows } = await sql(standby.url(), `SELECT synced, temporary, failover FROM pg_replication_slots WHERE slot_name = $1`, [SLOT]);
      return rows.length === 1 && rows[0].synced && !rows[0].temporary && rows[0].failover;
    }, { timeoutMs: 30_000, intervalMs: 200 });
    // Changes after the last sync: the promoted standby's slot is behind them, they come again.
    await sql(primary.url(), `INSERT INTO ${SCHEMA}.items SELECT g, 'after sync ' || g FROM generate_series(81, 90) g; UPDATE ${SCHEMA}.items SET v = 'changed again' WHERE id BETWEEN 20 AND 25`);
    await caughtUp(conn, await lsnNow(primary.url()));
    before = await readDecoded(kafka, decoder, topic);
    // A session with the standby as its source (primary set): its writes go to primary, until the standby is promoted.
    reader = await openSource(testSourceConfig({ sourceUrl: standby.url(), kafka: bootstrap, registry, prefix, extra: { slotName: 'sb_promoted_reader', publicationName: 'sb_promoted_reader', tables: { schemas: [SCHEMA] }, primary: { url: primary.url() } } }), log);
    assert.equal(await writesTo(reader), String(primary.port));

    await primary.crash();
    assert.deepEqual((await sql(standby.url(), 'SELECT pg_promote(true, 30) AS promoted')).rows, [{ promoted: true }]);
    // Promoted under the session: its heartbeats go to the source itself now (before: to the crashed primary, failing, or nowhere the slot sees).
    assert.equal(await writesTo(reader), String(standby.port));
    assert.equal(reader.primaryConnection, undefined);
    await reader.replayed('a write on the promoted source');
    // synchronized_standby_slots: the connector got nothing the standby had not, so it has every change the connector published.
    assert.deepEqual((await sql(standby.url(), `SELECT count(*)::int AS n FROM ${SCHEMA}.items`)).rows, [{ n: 85 }]);
    proxy.target = standby.port;
    // The connector's next session streams from the new primary's slot (the old session's position is no longer the one to wait for).
    await waitFor('the connector streaming from the promoted standby', async () => {
      const { rows } = await sql(standby.url(), `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, [SLOT]);
      return rows[0]?.active === true && conn.state().phase === 'streaming';
    }, { timeoutMs: 30_000, intervalMs: 100 });
    await sql(standby.url(), `INSERT INTO ${SCHEMA}.items SELECT g, 'new primary ' || g FROM generate_series(91, 100) g; UPDATE ${SCHEMA}.items SET v = 'after failover' WHERE id BETWEEN 1 AND 5; DELETE FROM ${SCHEMA}.items WHERE id = 50`);
    await caughtUp(conn, await lsnNow(standby.url()));
  } finally {
    await reader?.close().catch(() => {});
    await conn.stop().catch(() => {});
    await proxy.close();
  }
  const all = await readDecoded(kafka, decoder, topic);
  const c = new pg.Client({ connectionString: standby.url() });
  await c.connect();
  try {
    await assertRowsEqualTable(c, `${SCHEMA}.items`, finalState(all).values());
  } finally {
    await c.end();
  }
  // At least once: records the new primary's stream sent at positions streamed before repeat records there were.
  const seen = new Set(before.map(id));
  const maxBefore = before.reduce((m, r) => (lsnOf(r) > m ? lsnOf(r) : m), 0n);
  const later = all.filter((r) => !before.some((b) => b.partition === r.partition && b.offset === r.offset));
  // Tombstones carry no position: their deletes are compared.
  const repeats = later.filter((r) => r.value !== null && lsnOf(r) <= maxBefore);
  assert.ok(repeats.length > 0, 'the promoted standby\'s synced slot was behind the last changes: they came again');
  for (const r of repeats) assert.ok(seen.has(id(r)), `a record at ${lsnOf(r)} after the failover repeats one from before: ${id(r)}`);

  // The kept slot follows slotFailover: off here (the new primary has no standby yet), the synced slot is altered at start.
  const off = await startSourceConnector(configFor(standby.url(), false), log);
  try {
    await streaming(off);
    assert.deepEqual((await sql(standby.url(), `SELECT failover, synced FROM pg_replication_slots WHERE slot_name = $1`, [SLOT])).rows, [{ failover: false, synced: true }]);
  } finally {
    await off.stop().catch(() => {});
  }
});

/** Connections to 127.0.0.1:`target`, which can be turned to another port (what a VIP or HAProxy does at a failover). */
async function tcpProxy(target: number): Promise<{ port: number; target: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(proxy.target, '127.0.0.1');
    for (const [a, b] of [[client, upstream], [upstream, client]]) {
      sockets.add(a);
      a.pipe(b);
      a.on('error', () => b.destroy());
      a.on('close', () => (sockets.delete(a), b.destroy()));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxy = {
    port: (server.address() as net.AddressInfo).port,
    target,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return proxy;
}

/** The port of the server `session` writes to (a heartbeat written there first). */
async function writesTo(session: SourceSession): Promise<string> {
  const c = await session.write();
  await c.query(`SELECT pg_logical_emit_message(false, 'shardbridge-test', '')`);
  return (await c.query('SHOW port')).rows[0].port;
}

/** Until the standby has replayed `lsn` of the primary. */
async function replayed(lsn: bigint): Promise<void> {
  await waitFor('the standby replayed the primary', async () => parseLsn((await sql(standby.url(), 'SELECT pg_last_wal_replay_lsn()::text AS l')).rows[0].l) >= lsn, { timeoutMs: 30_000, intervalMs: 50 });
}

async function lsnNow(url: string): Promise<bigint> {
  return parseLsn((await sql(url, 'SELECT pg_current_wal_lsn()::text AS l')).rows[0].l);
}

function lsnOf(r: DecodedRecord): bigint {
  return (r.value?.source.lsn as bigint | undefined) ?? 0n;
}

function id(r: DecodedRecord): string {
  return stableKey([r.key, r.value?.op, lsnOf(r), r.afterText]);
}
