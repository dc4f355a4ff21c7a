/**
 * The sink's and `replay`'s start-up failures, through the real CLI: each names the server it
 * could not use (never a password) or the key; a taken metrics port is a config error (exit 2);
 * Kafka down logs one warning naming the brokers, not ERROR lines with stacks; SIGTERM while
 * start-up retries ends it gracefully (143, "sink stopped").
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from '../../shared/devstack/ports.ts';
import { createKafka, type Admin } from '../../shared/kafka/client.ts';
import { BIN, cleanEnv, runCli } from '../helpers/cli.ts';
import { getTestKafka, testLogger, uniqueTopic } from '../helpers/kafka.ts';
import { getTestDestination, hasCitus } from '../helpers/postgres.ts';
import { getTestRegistry } from '../helpers/produce-changes.ts';
import pg from 'pg';
import { capturingLogger } from '../helpers/kafka.ts';
import { loadSinkConfig } from '../../sink-connector/config.ts';
import { startSinkConnector } from '../../sink-connector/connector.ts';
import { openDestination, warnSilentChanges } from '../../sink-connector/destination-start.ts';
import { ConfigError } from '../../shared/errors.ts';

const SECRET = 'St4rtup-S3cret';
const dir = mkdtempSync(join(tmpdir(), 'sb-sink-startup-'));
const releases: (() => Promise<void>)[] = [];
let servers: { kafka: string; registry: string; destination: string };
let admin: Admin;

before(async () => {
  const [k, r, d] = await Promise.all([getTestKafka(), getTestRegistry(), getTestDestination()]);
  releases.push(k.release, r.release, d.release);
  servers = { kafka: k.bootstrap, registry: r.url, destination: d.url };
  admin = createKafka({ brokers: [k.bootstrap] }, testLogger()).admin();
});

after(async () => {
  await admin?.disconnect();
  for (const r of releases.reverse()) await r().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

/** A sink config file for the live servers with `over` replacing some of them. */
function configFile(name: string, over: Partial<typeof servers> = {}, extra: Record<string, unknown> = {}): string {
  const s = { ...servers, ...over };
  const p = join(dir, `${name}.json`);
  const config = { groupId: `g-${name}`, topicPrefix: uniqueTopic('sbstart'), kafka: { brokers: [s.kafka] }, schemaRegistry: { url: s.registry }, destination: { url: s.destination }, metricsPort: 0, ...extra };
  writeFileSync(p, JSON.stringify(config));
  return p;
}

/** The destination URL with another database and a password (ignored under trust auth, and never printed). */
function destinationWith(database: string, port?: number): string {
  const u = new URL(servers.destination);
  u.password = SECRET;
  u.pathname = `/${database}`;
  if (port !== undefined) u.port = String(port);
  return u.href;
}

test('a taken metrics port: exit 2 naming metricsPort', async () => {
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '0.0.0.0', resolve));
  const port = (busy.address() as { port: number }).port;
  try {
    const r = await runCli(['sink', '--config', configFile('metrics', {}, { metricsPort: port })]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`configuration error:\\nconfig: metricsPort: cannot serve metrics on port ${port}: .*EADDRINUSE`));
    assert.match(r.stderr, /remedy: choose a free metricsPort/);
  } finally {
    busy.close();
  }
});

test('a destination database that does not exist: the error names host:port/database, never the password', async () => {
  const url = destinationWith('sb_no_such_db');
  const r = await runCli(['sink', '--config', configFile('nodb', { destination: url })]);
  const u = new URL(url);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`^shardbridge sink: cannot use the destination PostgreSQL at ${u.hostname}:${u.port}/sb_no_such_db: database "sb_no_such_db" does not exist`));
  assert.match(r.stderr, /remedy: check the database name \(the path of destination\.url, or destination\.database\): the server has no database of that name/);
  assert.ok(!r.stderr.includes(SECRET), r.stderr);
});

/** `shardbridge sink` as a child process logging at info, its output kept whole. */
function spawnSink(file: string) {
  const proc = spawn(process.execPath, [BIN, 'sink', '--config', file, '--log-level', 'info'], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null }>((resolve) => proc.on('exit', (code) => resolve({ code })));
  return { proc, output: () => out, exited };
}

test('Kafka down at start: one warning naming the brokers, no ERROR lines or stacks; SIGTERM ends the start-up retries gracefully', async () => {
  const port = await freePort();
  const sink = spawnSink(configFile('nokafka', { kafka: `127.0.0.1:${port}` }));
  try {
    await waitFor('the connector to retry listing the topics', () => sink.output().includes(`list topics on Kafka at 127.0.0.1:${port} failed, retrying`), { timeoutMs: 60_000 });
  } finally {
    sink.proc.kill('SIGTERM');
  }
  const { code } = await sink.exited;
  const lines = sink.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(code, 143, sink.output());
  assert.deepEqual(lines.filter((l) => (l.level as number) >= 50).map((l) => l.msg), [], 'no ERROR lines');
  assert.ok(!sink.output().includes('"stack"'), 'no stacks');
  const unreachable = lines.filter((l) => String(l.msg).startsWith(`cannot reach Kafka at 127.0.0.1:${port}: `));
  assert.equal(unreachable.length, 1, sink.output());
  assert.ok(lines.some((l) => l.msg === 'SIGTERM received: shutting down'), sink.output());
  assert.ok(lines.some((l) => l.msg === 'sink stopped'), sink.output());
});

test('destination down at start: the retry names it; SIGTERM ends the retries gracefully', async () => {
  const port = await freePort();
  const sink = spawnSink(configFile('nodest', { destination: destinationWith('app', port) }));
  try {
    await waitFor('the connector to retry the destination', () => sink.output().includes(`prepare the destination 127.0.0.1:${port}/app failed, retrying`), { timeoutMs: 60_000 });
  } finally {
    sink.proc.kill('SIGTERM');
  }
  const { code } = await sink.exited;
  assert.equal(code, 143, sink.output());
  assert.match(sink.output(), /"msg":"sink stopped"/);
  assert.ok(!sink.output().includes(SECRET), sink.output());
});

test('replay: a topic or partition that does not exist is a usage error naming it; the destination down names it', async () => {
  const prefix = uniqueTopic('sbstart');
  const topic = `${prefix}.public.t`;
  await admin.ensureTopics([{ topic, partitions: 2, replicationFactor: 1 }]);
  const file = configFile('replay', {}, { topicPrefix: prefix });
  const missing = await runCli(['replay', '--topic', `${topic}x`, '--to-offset', '0', '--sink-config', file]);
  assert.equal(missing.code, 2, missing.stderr);
  assert.equal(missing.stderr, `shardbridge replay: --topic ${topic}x: no such topic on Kafka at ${servers.kafka} (change topics are named <topicPrefix>.<schema>.<table>)\n`);
  const partition = await runCli(['replay', '--topic', topic, '--partition', '2', '--to-offset', '0', '--sink-config', file]);
  assert.equal(partition.code, 2, partition.stderr);
  assert.equal(partition.stderr, `shardbridge replay: --partition 2: topic ${topic} has 2 partition(s), numbered from 0\n`);
  const port = await freePort();
  const down = await runCli(['replay', '--topic', topic, '--to-offset', '0', '--sink-config', configFile('replay-down', { destination: destinationWith('app', port) }, { topicPrefix: prefix })]);
  assert.equal(down.code, 1, down.stderr);
  assert.match(down.stderr, new RegExp(`^shardbridge replay: cannot use the destination PostgreSQL at 127\\.0\\.0\\.1:${port}/app: .*ECONNREFUSED`));
  assert.ok(!down.stderr.includes(SECRET), down.stderr);
});

/** Destination tables with triggers: an ordinary one that changes the row, an ENABLE ALWAYS one that writes an audit row, and a foreign key. */
const TRIG = `sb_trig_${process.pid}_${Date.now().toString(36)}`;
async function withTriggers(): Promise<{ destination: pg.Client; citus: boolean }> {
  const destination = new pg.Client({ connectionString: servers.destination });
  await destination.connect();
  const citus = (await hasCitus(destination));
  await destination.query(`
    CREATE SCHEMA IF NOT EXISTS ${TRIG};
    CREATE TABLE IF NOT EXISTS ${TRIG}.parent (id int PRIMARY KEY);
    CREATE TABLE IF NOT EXISTS ${TRIG}.orders (id int PRIMARY KEY, parent_id int REFERENCES ${TRIG}.parent (id), updated_at text);
    CREATE TABLE IF NOT EXISTS ${TRIG}.audit (what text);
    CREATE OR REPLACE FUNCTION ${TRIG}.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := 'by the trigger'; RETURN NEW; END $$;
    CREATE OR REPLACE FUNCTION ${TRIG}.audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO ${TRIG}.audit VALUES (TG_OP); RETURN NULL; END $$;
    DROP TRIGGER IF EXISTS orders_touch ON ${TRIG}.orders;
    DROP TRIGGER IF EXISTS orders_audit ON ${TRIG}.orders;
    CREATE TRIGGER orders_touch BEFORE INSERT OR UPDATE ON ${TRIG}.orders FOR EACH ROW EXECUTE FUNCTION ${TRIG}.touch();
    CREATE TRIGGER orders_audit AFTER INSERT ON ${TRIG}.orders FOR EACH ROW EXECUTE FUNCTION ${TRIG}.audit();
    ALTER TABLE ${TRIG}.orders ENABLE ALWAYS TRIGGER orders_audit;
    CREATE TABLE IF NOT EXISTS ${TRIG}.events (id int PRIMARY KEY, updated_at text) PARTITION BY RANGE (id);
    CREATE TABLE IF NOT EXISTS ${TRIG}.events_1 PARTITION OF ${TRIG}.events FOR VALUES FROM (0) TO (100);
    DROP TRIGGER IF EXISTS events_touch ON ${TRIG}.events_1;
    CREATE TRIGGER events_touch BEFORE INSERT ON ${TRIG}.events_1 FOR EACH ROW EXECUTE FUNCTION ${TRIG}.touch();`);
  return { destination, citus };
}

test("sessionReplicationRole: replica: the sink's sessions fire neither the ordinary trigger nor the foreign key, the ENABLE ALWAYS trigger still; refused for a role that may not set it (exit 2, naming the key and the GRANT)", async (t) => {
  const { destination, citus } = await withTriggers();
  const role = `${TRIG}_sink`;
  t.after(async () => {
    await destination.query(`DROP SCHEMA IF EXISTS ${TRIG} CASCADE; DROP ROLE IF EXISTS ${role}`).catch(() => {});
    await destination.end();
  });
  const config = loadSinkConfig({ file: configFile('replica', {}, { sessionReplicationRole: 'replica' }), env: {} });
  const { logger, lines } = capturingLogger();
  const opened = openDestination(config, 1, logger, (_what, fn) => fn());
  if (citus) {
    // Citus keeps the setting on the coordinator and its truncate_trigger would not fire: refused.
    await assert.rejects(opened, (e: unknown) => e instanceof ConfigError && /refused on Citus/.test(e.message));
    return;
  }
  const { pool } = await opened;
  try {
    assert.ok(lines().some((l) => /sessions run with session_replication_role = replica/.test(l.msg)));
    assert.equal((await pool.query('SHOW session_replication_role')).rows[0].session_replication_role, 'replica');
    // Parent 7 does not exist: the foreign key's trigger does not fire either, as on a native subscriber.
    await pool.query(`INSERT INTO ${TRIG}.orders VALUES (1, 7, 'from the source')`);
  } finally {
    await pool.end();
  }
  assert.deepEqual((await destination.query(`SELECT id, parent_id, updated_at FROM ${TRIG}.orders`)).rows, [{ id: 1, parent_id: 7, updated_at: 'from the source' }]);
  assert.deepEqual((await destination.query(`SELECT what FROM ${TRIG}.audit`)).rows, [{ what: 'INSERT' }], 'the ENABLE ALWAYS trigger fired');

  await destination.query(`CREATE ROLE ${role} LOGIN`);
  const u = new URL(servers.destination);
  u.username = role;
  const r = await runCli(['sink', '--config', configFile('replica-denied', { destination: u.href }, { sessionReplicationRole: 'replica' })]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, new RegExp(`sessionReplicationRole: replica, but role "${role}" may not set session_replication_role`));
  assert.match(r.stderr, new RegExp(`GRANT SET ON PARAMETER session_replication_role TO "${role}"`));
});

test("the destination tables' triggers that fire for the sink's rows are named at start, with the remedy", async (t) => {
  const { destination } = await withTriggers();
  t.after(async () => {
    await destination.query(`DROP SCHEMA IF EXISTS ${TRIG} CASCADE`).catch(() => {});
    await destination.end();
  });
  const { logger, lines } = capturingLogger();
  const stop = new AbortController();
  const tables = { [`${TRIG}.orders`]: {}, [`${TRIG}.events`]: {} };
  const sink = await startSinkConnector(loadSinkConfig({ file: configFile('triggers', {}, { tables }), env: {} }), logger, { signal: stop.signal, metricsPort: null });
  await sink.stop();
  const warned = (table: string) => lines().filter((l) => l.table === `${TRIG}.${table}` && l.level === 40 && l.triggers);
  assert.equal(warned('orders').length, 1, JSON.stringify(lines()));
  assert.match(warned('orders')[0].msg, new RegExp(`^triggers orders_audit, orders_touch on ${TRIG}\\.orders fire for every row the sink applies`));
  assert.match(warned('orders')[0].remedy, /DISABLE TRIGGER USER/);
  // A partition's own trigger fires for rows written through its table, and the table's DISABLE TRIGGER USER does not reach it.
  const events = warned('events');
  assert.equal(events.length, 1, JSON.stringify(lines()));
  assert.match(events[0].msg, new RegExp(`^trigger events_touch \\(of partition ${TRIG}\\.events_1\\) on ${TRIG}\\.events fires`));
  assert.match(events[0].remedy, new RegExp(`ALTER TABLE "${TRIG}"."events_1" DISABLE TRIGGER "events_touch"; \\(a partition's own trigger\\)`));
  // Row-level security that applies to the sink's role (not the owner, no BYPASSRLS): its deletes of hidden rows would change nothing.
  const rlsRole = `${TRIG}_rls`;
  await destination.query(`CREATE ROLE ${rlsRole} LOGIN; ALTER TABLE ${TRIG}.orders ENABLE ROW LEVEL SECURITY`);
  const asRole = new URL(servers.destination);
  asRole.username = rlsRole;
  const pool = new pg.Pool({ connectionString: asRole.href, max: 1 });
  const rls = capturingLogger();
  try {
    await warnSilentChanges({ config: loadSinkConfig({ file: configFile('rls'), env: {} }), pool, citus: { present: false, version: null }, log: rls.logger }, [{ schema: TRIG, table: 'orders' }]);
  } finally {
    await pool.end();
    await destination.query(`ALTER TABLE ${TRIG}.orders DISABLE ROW LEVEL SECURITY; DROP ROLE ${rlsRole}`);
  }
  const secured = rls.lines().filter((l) => l.rowSecurity);
  assert.equal(secured.length, 1, JSON.stringify(rls.lines()));
  assert.match(secured[0].msg, new RegExp(`^destination table ${TRIG}\\.orders has row-level security that applies to the sink's role "${rlsRole}": updates and deletes of rows its policies hide change nothing`));
  assert.match(secured[0].remedy, /BYPASSRLS/);

  // A sink started before the source made its topics (as its log invites) names them when the topic appears.
  const late = capturingLogger();
  const file = configFile('triggers-late');
  const lateSink = await startSinkConnector(loadSinkConfig({ file, env: {} }), late.logger, { signal: stop.signal, metricsPort: null, topicRefreshMs: 200 });
  try {
    const topic = `${JSON.parse(readFileSync(file, 'utf8')).topicPrefix}.${TRIG}.orders`;
    // The topic alone, no schema registered for it yet (the source makes its topics first): named by its topic.
    await admin.ensureTopics([{ topic, partitions: 1, replicationFactor: 1 }]);
    await waitFor('the trigger warning for the new topic', async () => late.lines().some((l) => l.table === `${TRIG}.orders` && l.level === 40 && l.triggers), { timeoutMs: 15_000 });
  } finally {
    await lateSink.stop();
  }
});
