/**
 * A slot held by a source connector that no longer reads (SIGSTOP): `status` warns that it
 * advances nothing; once it reads again, the warning goes.
 *
 * The invalidated-slot stop: a source whose slot falls further behind than
 * max_slot_wal_keep_size while the source connector is stopped. `status` reports the lost slot
 * as a FAIL; starting the source connector stops with a clear error (changes were lost, a new
 * snapshot is needed) and never creates a new slot silently; `cleanup --force --drop-topics`
 * removes the dead slot and the topics, and the next start takes a new snapshot from a new slot.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { waitFor } from '../../shared/devstack/ports.ts';
import { createKafka, type KafkaClient } from '../../shared/kafka/client.ts';
import type { CleanupReport } from '../../shared/migration/cleanup.ts';
import type { StatusReport } from '../../shared/migration/status.ts';
import { parseLsn } from '../../source-connector/pgoutput-decoder.ts';
import { startSourceConnector } from '../../source-connector/run.ts';
import { ensureSinkTables } from '../../sink-connector/offsets.ts';
import { getTestKafka, testLogger } from '../helpers/kafka.ts';
import { startTestSource } from '../helpers/postgres.ts';
import { getTestRegistry } from '../helpers/produce-changes.ts';
import { readJson, testSourceConfig, uniquePrefix } from '../helpers/source.ts';
import { runCli, spawnCli, spawnSourceCli } from '../helpers/cli.ts';

const SCHEMA = `sb_slot_${process.pid}`;
const dir = mkdtempSync(join(tmpdir(), 'sb-slot-'));
const log = testLogger();
const releases: (() => Promise<void>)[] = [];
let db: pg.Client;
let kafka: KafkaClient;
let sourceFile: string;
let sinkFile: string;
let config: ReturnType<typeof testSourceConfig>;

before(async () => {
  const [k, r, s] = await Promise.all([getTestKafka(), getTestRegistry(), startTestSource()]);
  releases.push(k.release, r.release, () => s.destroy());
  db = new pg.Client({ connectionString: s.url() });
  await db.connect();
  await db.query(`CREATE SCHEMA ${SCHEMA}; CREATE TABLE ${SCHEMA}.items (id int PRIMARY KEY, v text); INSERT INTO ${SCHEMA}.items SELECT g, 'v' || g FROM generate_series(1, 100) g`);
  kafka = createKafka({ brokers: [k.bootstrap] }, log);
  config = testSourceConfig({ sourceUrl: s.url(), kafka: k.bootstrap, registry: r.url, extra: { tables: { schemas: [SCHEMA] }, heartbeatIntervalMs: 1_000 } });
  sourceFile = join(dir, 'source.json');
  sinkFile = join(dir, 'sink.json');
  writeFileSync(sourceFile, JSON.stringify(config));
  // No sink runs here: its destination is a database of the source cluster, holding the position
  // a sink stored for the table topic.
  writeFileSync(sinkFile, JSON.stringify({ topicPrefix: config.topicPrefix, groupId: 'g-slot', destination: { url: s.url() }, kafka: config.kafka, schemaRegistry: config.schemaRegistry, metricsPort: 0 }));
});

after(async () => {
  const admin = kafka.admin();
  const topics = (await admin.listTopics().catch(() => [] as string[])).filter((t) => t.startsWith(`${config.topicPrefix}.`));
  await admin.deleteTopics(topics).catch(() => {});
  await admin.disconnect().catch(() => {});
  await db?.end().catch(() => {});
  for (const r of releases.reverse()) await r().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

const slotRows = async () => (await db.query(`SELECT slot_name, wal_status FROM pg_replication_slots`)).rows as { slot_name: string; wal_status: string }[];

test('a slot invalidated by max_slot_wal_keep_size: status fails, the source connector stops with lost changes and creates no slot', async () => {
  const first = await startSourceConnector(config, log);
  try {
    await waitFor('streaming', () => first.state().phase === 'streaming', { timeoutMs: 60_000, intervalMs: 50 });
    await db.query(`INSERT INTO ${SCHEMA}.items VALUES (101, 'streamed')`);
    const lsn = parseLsn((await db.query('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0].l);
    await waitFor('the insert confirmed', () => {
      const c = first.state().confirmedLsn;
      return c !== null && parseLsn(c) >= lsn;
    }, { timeoutMs: 30_000, intervalMs: 50 });
  } finally {
    await first.stop();
  }

  // While the connector is stopped, the source writes more WAL than the slot may keep.
  await db.query(`ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'`);
  await db.query('SELECT pg_reload_conf()');
  await waitFor('wal_status = lost', async () => {
    await db.query(`INSERT INTO ${SCHEMA}.items SELECT g, repeat('x', 200) FROM generate_series(1000, 3000) g ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v || '!'`);
    await db.query('SELECT pg_switch_wal()');
    await db.query('CHECKPOINT');
    return (await slotRows()).find((s) => s.slot_name === config.slotName)?.wal_status === 'lost';
  }, { timeoutMs: 60_000, intervalMs: 10 });

  const st = await runCli(['status', '--json', '--sample-seconds', '0', '--source-config', sourceFile, '--sink-config', sinkFile]);
  assert.equal(st.code, 1, st.stderr);
  const report = JSON.parse(st.stdout) as StatusReport;
  assert.ok(report.slot.exists && report.slot.walStatus === 'lost');
  const lost = report.problems.find((p) => p.object === `slot ${config.slotName}`);
  assert.equal(lost?.level, 'FAIL');
  assert.match(lost!.message, /invalidated \(wal_status = lost.*changes were lost/);
  assert.match(lost!.remedy!, /new snapshot/);

  // Starting the source connector again (through the CLI, as an operator would): a clear stop.
  const run = await runCli(['source', '--config', sourceFile]);
  assert.notEqual(run.code, 0);
  assert.match(run.stderr, new RegExp(`replication slot "${config.slotName}" was invalidated \\(wal_status = lost[^)]*\\)[^\\n]*changes were lost`));
  assert.match(run.stderr, /new snapshot/);
  // No new slot: the lost one is still there, still lost, and the topic names one slot creation.
  assert.deepEqual(await slotRows(), [{ slot_name: config.slotName, wal_status: 'lost' }]);
  const created = (await readJson(kafka, `${config.topicPrefix}.__snapshot`)).filter((r) => r.value?.kind === 'slot-created');
  assert.equal(created.length, 1);

  // The way out: remove the dead slot and the topics (the __snapshot topic remembers the old
  // slot), then start again: a new slot and a new snapshot.
  await ensureSinkTables(db);
  await db.query(`INSERT INTO shardbridge.sink_offsets (group_id, topic, partition, next_offset) VALUES ('g-slot', $1, 0, 40)`, [`${config.topicPrefix}.${SCHEMA}.items`]);
  const refused = await runCli(['cleanup', '--json', '--drop-topics', '--source-config', sourceFile, '--sink-config', sinkFile]);
  assert.equal(refused.code, 1, 'the topics hold records no sink applied');
  const forced = await runCli(['cleanup', '--json', '--force', '--drop-topics', '--source-config', sourceFile, '--sink-config', sinkFile]);
  assert.equal(forced.code, 0, forced.stdout + forced.stderr);
  const out = JSON.parse(forced.stdout) as CleanupReport;
  assert.ok(out.notes.some((n) => n.includes('already invalidated')), out.notes.join('\n'));
  assert.deepEqual(out.results.map((r) => [r.action, r.status]), [['drop replication slot', 'done'], ['drop publication', 'done'], ['delete topics', 'done'], ['forget stored positions', 'done']]);
  // The topics start again at offset 0: a position kept for them would make a sink skip their records.
  assert.deepEqual((await db.query('SELECT topic FROM shardbridge.sink_offsets')).rows, []);
  assert.deepEqual(await slotRows(), []);

  const again = await startSourceConnector(config, log);
  try {
    await waitFor('streaming from a new slot', () => again.state().phase === 'streaming', { timeoutMs: 60_000, intervalMs: 50 });
  } finally {
    await again.stop();
  }
  assert.deepEqual(await slotRows(), [{ slot_name: config.slotName, wal_status: 'reserved' }]);
  const redone = (await readJson(kafka, `${config.topicPrefix}.__snapshot`)).map((r) => r.value);
  assert.deepEqual(redone.filter((m) => m?.kind === 'completed').map((m) => [m.table, m.rows]), [[`${SCHEMA}.items`, 2102]]);
});

test('a source connector that holds the slot but stopped reading: status warns that it advances nothing; reading again clears it', async () => {
  const held = testSourceConfig({ sourceUrl: config.source.url!, kafka: config.kafka.brokers[0], registry: config.schemaRegistry.url, prefix: uniquePrefix(), extra: { tables: { schemas: [SCHEMA] }, slotName: `sb_held_${process.pid}`, heartbeatIntervalMs: 1_000 } });
  const heldFile = join(dir, 'held-source.json');
  const heldSink = join(dir, 'held-sink.json');
  writeFileSync(heldFile, JSON.stringify(held));
  writeFileSync(heldSink, JSON.stringify({ topicPrefix: held.topicPrefix, groupId: 'g-held', destination: { url: config.source.url }, kafka: held.kafka, schemaRegistry: held.schemaRegistry, metricsPort: 0 }));
  const status = async () => {
    const r = await runCli(['status', '--json', '--sample-seconds', '1', '--source-config', heldFile, '--sink-config', heldSink]);
    return (JSON.parse(r.stdout) as StatusReport).problems.filter((p) => /advanced nothing/.test(p.message));
  };
  const child = spawnSourceCli(heldFile);
  try {
    await waitFor('the source connector streaming from its slot', async () => (await db.query('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [held.slotName])).rows[0]?.active === true, { timeoutMs: 60_000, intervalMs: 100 });
    assert.deepEqual(await status(), [], 'a live connector on a quiet database');
    child.proc.kill('SIGSTOP');
    // The walsender sends until the stopped client's socket buffers are full, then waits on it.
    const warned = await waitFor('status to see the held slot not advancing', async () => {
      await db.query(`INSERT INTO ${SCHEMA}.items SELECT g, repeat('h', 500) FROM generate_series(100000, 120000) g ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v || '!'`);
      const found = await status();
      return found.length > 0 ? found : null;
    }, { timeoutMs: 90_000, intervalMs: 10 });
    assert.equal(warned[0].level, 'WARN');
    assert.equal(warned[0].object, `slot ${held.slotName}`);
    assert.match(warned[0].message, /^the source connector holds the slot but advanced nothing in \d+(\.\d)? s: .* of WAL wait unsent at \d+\/[0-9A-F]+, confirmed stays at/);
    child.proc.kill('SIGCONT');
    await waitFor('status without the warning once the connector reads again', async () => (await status()).length === 0, { timeoutMs: 90_000, intervalMs: 100 });
  } finally {
    child.proc.kill('SIGCONT');
    child.proc.kill('SIGTERM');
    await child.exited;
    await db.query('SELECT pg_drop_replication_slot($1)', [held.slotName]).catch(() => {});
  }
});

test('the slot dropped under a streaming source connector: it stops (exit 1) saying the changes since its last confirmed position are lost', async () => {
  const gone = testSourceConfig({ sourceUrl: config.source.url!, kafka: config.kafka.brokers[0], registry: config.schemaRegistry.url, prefix: uniquePrefix(), extra: { tables: { schemas: [SCHEMA] }, slotName: `sb_gone_${process.pid}` } });
  const file = join(dir, 'gone-source.json');
  writeFileSync(file, JSON.stringify(gone));
  // At info: the slot is active from its snapshot's export on, and ended then it fails the snapshot, not the stream.
  const child = spawnCli('source', file, { logLevel: 'info', tailBytes: 200_000 });
  try {
    await waitFor('the source connector streaming', () => child.output().includes('replication stream started') || child.proc.exitCode !== null, { timeoutMs: 60_000, intervalMs: 50 });
    const active = async () => (await db.query('SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1 AND active', [gone.slotName])).rows[0]?.active_pid as number | undefined;
    const pid = await waitFor('the source connector streaming from its slot', active, { timeoutMs: 60_000, intervalMs: 100 });
    await db.query('SELECT pg_terminate_backend($1::int)', [pid]);
    await waitFor('the slot dropped', () => db.query('SELECT pg_drop_replication_slot($1)', [gone.slotName]).then(() => true, () => false), { timeoutMs: 10_000, intervalMs: 20 });
    const { code } = await child.exited;
    assert.equal(code, 1, child.output());
    assert.match(child.output(), /shardbridge source: replication slot "sb_gone_\d+" vanished after this connector had published from it: changes since its last confirmed position are lost/);
  } finally {
    child.proc.kill('SIGTERM');
    await child.exited;
    await db.query('SELECT pg_drop_replication_slot($1)', [gone.slotName]).catch(() => {});
  }
});
