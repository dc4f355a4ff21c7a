/**
 * Start-up errors of `shardbridge source` through the real executable: each one exits 2 with
 * a message saying what is wrong and how to fix it, prints no password, and creates nothing
 * on the source (no publication, no slot). Kafka and the registry are never reached: the
 * checks come first, so their addresses here point nowhere.
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { LogicalReplicationService } from 'pg-logical-replication';
import type { PgCluster } from '../../shared/devstack/postgres.ts';
import { freePort, waitFor } from '../../shared/devstack/ports.ts';
import { RawPgoutputPlugin } from '../../source-connector/raw-pgoutput-plugin.ts';
import { startTestSource } from '../helpers/postgres.ts';
import { cleanEnv, spawnCli } from '../helpers/cli.ts';

const EMBEDDED = fileURLToPath(new URL('../helpers/embedded-connector.ts', import.meta.url));

const BIN = fileURLToPath(new URL('../../shared/cli/shardbridge.js', import.meta.url));
const SECRET = 'Pw-n0t-in-0utput';
const dir = mkdtempSync(join(tmpdir(), 'sb-source-startup-'));
let cluster: PgCluster;
let admin: pg.Client;

before(async () => {
  cluster = await startTestSource();
  admin = new pg.Client({ connectionString: cluster.url() });
  await admin.connect();
  await admin.query(`
    CREATE TABLE good (id int PRIMARY KEY, v text);
    CREATE TABLE nokey_a (v text);
    CREATE TABLE nokey_b (id int, v text);
    CREATE SCHEMA other;
    CREATE TABLE other.fine (id int PRIMARY KEY);
    CREATE SCHEMA ident;
    CREATE TABLE ident.silent (id int PRIMARY KEY, v text);
    ALTER TABLE ident.silent REPLICA IDENTITY NOTHING;
    CREATE TABLE ident.by_code (id int PRIMARY KEY, code text NOT NULL);
    CREATE UNIQUE INDEX by_code_code ON ident.by_code (code);
    ALTER TABLE ident.by_code REPLICA IDENTITY USING INDEX by_code_code;
    CREATE TABLE ident.by_pk (id int NOT NULL, v text);
    CREATE UNIQUE INDEX by_pk_id ON ident.by_pk (id);
    ALTER TABLE ident.by_pk ADD PRIMARY KEY USING INDEX by_pk_id;
    ALTER TABLE ident.by_pk REPLICA IDENTITY USING INDEX by_pk_id;
    CREATE SCHEMA clash;
    CREATE TABLE clash."a.b" (id int PRIMARY KEY);
    CREATE TABLE clash.a_b (id int PRIMARY KEY);
    CREATE SCHEMA unl;
    CREATE UNLOGGED TABLE unl.scratch (id int PRIMARY KEY);
    CREATE TABLE unl.events (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
    CREATE TABLE unl.events_2025 PARTITION OF unl.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    CREATE UNLOGGED TABLE unl."Events 2026" PARTITION OF unl.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
    CREATE TABLE unl.logged (id int PRIMARY KEY);`);
});

after(async () => {
  await admin?.end();
  await cluster?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

function config(name: string, source: object, extra: object = {}): string {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({ source, kafka: { brokers: ['127.0.0.1:1'] }, schemaRegistry: { url: 'http://127.0.0.1:1' }, metricsPort: 0, ...extra }));
  return file;
}

function runSource(file: string): Promise<{ code: number; stderr: string; stdout: string }> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SHARDBRIDGE_') && k !== 'LOG_LEVEL'));
  return new Promise((resolve) => {
    execFile(BIN, ['source', '--config', file], { env: { ...env, LOG_LEVEL: 'error' }, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

async function nothingCreated(c: pg.Client, publication = 'shardbridge_pub', slot = 'shardbridge_slot'): Promise<void> {
  const pubs = await c.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [publication]);
  const slots = await c.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot]);
  assert.equal(pubs.rowCount, 0, 'a publication was created');
  assert.equal(slots.rowCount, 0, 'a slot was created');
}

test('a source that refuses the connection for good (no such role, no such database): exit 1 at once, naming host and port, without the password', async () => {
  // The server answers, and says no: not waited for (a source that cannot be reached is: unreachable.test.ts).
  const { port } = cluster;
  const [role, database] = await Promise.all([
    runSource(config('norole', { url: `postgres://nobody:${SECRET}@127.0.0.1:${port}/postgres` })),
    runSource(config('nodb', { url: `postgres://postgres:${SECRET}@127.0.0.1:${port}/nope` })),
  ]);
  for (const [r, code, remedy] of [[role, '28000', /check the user/], [database, '3D000', /check the database name/]] as const) {
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`cannot connect to the source PostgreSQL at 127\\.0\\.0\\.1:${port}: .*\\(${code}\\)`));
    assert.match(r.stderr, remedy);
    assert.ok(!(r.stdout + r.stderr).includes(SECRET), r.stderr);
  }
});

test('a listed table that does not exist: exit 2 naming it', async () => {
  const r = await runSource(config('missing', { url: cluster.url() }, { tables: { include: ['public.good', 'public.nope'] } }));
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /FAIL\s+table exists\s+public\.nope\s+table public\.nope is listed in tables\.include but does not exist/);
  await nothingCreated(admin);
});

test('tables without a primary key: exit 2 listing every one, with the remedy', async () => {
  const r = await runSource(config('nokey', { url: cluster.url() }, { tables: { schemas: ['public', 'other'] } }));
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /table public\.nokey_a has no primary key/);
  assert.match(r.stderr, /table public\.nokey_b has no primary key/);
  assert.match(r.stderr, /ALTER TABLE public\.nokey_a ADD PRIMARY KEY/);
  assert.match(r.stderr, /or add "public\.nokey_b" to tables\.exclude/);
  assert.doesNotMatch(r.stderr, /public\.good has no primary key|other\.fine has no primary key/);
  await nothingCreated(admin);
});

test('a replica identity the stream cannot key by the primary key: exit 2 naming the table and the remedy', async () => {
  const r = await runSource(config('ident', { url: cluster.url() }, { tables: { schemas: ['ident'] } }));
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /FAIL\s+replica identity\s+ident\.silent\s+table ident\.silent has REPLICA IDENTITY NOTHING: once published, the source refuses UPDATE and DELETE on it/);
  assert.match(r.stderr, /table ident\.by_code has REPLICA IDENTITY USING INDEX on \(code\), not its primary key \(id\)/);
  assert.match(r.stderr, /ALTER TABLE "ident"\."by_code" REPLICA IDENTITY DEFAULT/);
  assert.doesNotMatch(r.stderr, /ident\.by_pk/, 'an identity index that is the primary key is fine');
  await nothingCreated(admin);
});

test('an UNLOGGED table, or one with an UNLOGGED partition: exit 2 naming it and the partition, before anything is created', async () => {
  const r = await runSource(config('unlogged', { url: cluster.url() }, { tables: { schemas: ['unl'] } }));
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /FAIL\s+unlogged\s+unl\.scratch\s+table unl\.scratch is UNLOGGED: its changes are not written to the WAL/);
  assert.match(r.stderr, /partition unl\.Events 2026 of unl\.events is UNLOGGED/);
  assert.match(r.stderr, /ALTER TABLE unl\."Events 2026" SET LOGGED; {2}\(rewrites it\) or add "unl\.events" to tables\.exclude/);
  assert.doesNotMatch(r.stderr, /unl\.logged/);
  await nothingCreated(admin);
});

test('500 selected tables and no heapGrowingPercent: the source holds its heap to twice its live data, and says so', async (t) => {
  await admin.query(`CREATE SCHEMA many; DO $$ BEGIN FOR g IN 1..500 LOOP EXECUTE format('CREATE TABLE many.t%s (id int PRIMARY KEY)', g); END LOOP; END $$`);
  t.after(() => admin.query('DROP SCHEMA many CASCADE'));
  const file = config('many', { url: cluster.url() }, { tables: { schemas: ['many'] } });
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SHARDBRIDGE_') && k !== 'LOG_LEVEL'));
  const proc = spawn(BIN, ['source', '--config', file], { env: { ...env, LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => proc.kill('SIGKILL'));
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  // Kafka is unreachable in these configs: the start-up checks pass, then the session retries.
  const line = await waitFor('the heap line', () => out.split('\n').find((l) => l.includes('the heap is held to twice its live data')), { timeoutMs: 60_000 });
  const logged = JSON.parse(line) as { tables: number; heapGrowingPercent: number };
  assert.deepEqual([logged.tables, logged.heapGrowingPercent], [500, 100]);
});

test('two tables whose topics Kafka would take for one: exit 2 naming both, before anything is created', async () => {
  const r = await runSource(config('clash', { url: cluster.url() }, { tables: { schemas: ['clash'] } }));
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /FAIL\s+topic name\s+clash\.a_b\s+tables clash\.a\.b and clash\.a_b would share the topic shardbridge\.clash\.a_b \(or topics Kafka treats as one/);
  await nothingCreated(admin);
});

test('the slot is active in another process: exit 2 saying so', async (t) => {
  await admin.query(`CREATE PUBLICATION holder_pub FOR TABLE good`);
  await admin.query(`SELECT pg_create_logical_replication_slot('held_slot', 'pgoutput')`);
  const holder = new LogicalReplicationService({ connectionString: cluster.url() }, { acknowledge: { auto: false, timeoutSeconds: 0 } });
  holder.on('error', () => {});
  void holder.subscribe(new RawPgoutputPlugin({ publicationNames: ['holder_pub'] }), 'held_slot', '0/0').catch(() => {});
  t.after(async () => {
    await holder.destroy();
    await waitFor('held_slot released', async () => !(await admin.query(`SELECT active FROM pg_replication_slots WHERE slot_name = 'held_slot'`)).rows[0].active);
    await admin.query(`SELECT pg_drop_replication_slot('held_slot'); DROP PUBLICATION holder_pub`);
  });
  await waitFor('held_slot active', async () => (await admin.query(`SELECT active FROM pg_replication_slots WHERE slot_name = 'held_slot'`)).rows[0].active);
  const r = await runSource(config('active', { url: cluster.url() }, { tables: { include: ['public.good'] }, slotName: 'held_slot' }));
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /replication slot "held_slot" is active in another process \(pid \d+\)/);
  assert.match(r.stderr, /remedy: stop the other connector, or use a different slotName/);
  const pubs = await admin.query(`SELECT 1 FROM pg_publication WHERE pubname = 'shardbridge_pub'`);
  assert.equal(pubs.rowCount, 0);
});

test('wal_level replica: exit 2 with the lines to add and that a restart is needed', async (t) => {
  const replica = await startTestSource({ wal_level: 'replica' });
  const c = new pg.Client({ connectionString: replica.url() });
  t.after(async () => {
    await c.end();
    await replica.destroy();
  });
  await c.connect();
  await c.query('CREATE TABLE t (id int PRIMARY KEY)');
  const r = await runSource(config('replica', { url: replica.url() }));
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /wal_level is 'replica', logical replication needs 'logical'/);
  assert.match(r.stderr, /wal_level = logical/);
  assert.match(r.stderr, /max_replication_slots = 5/);
  assert.match(r.stderr, /max_wal_senders = 5/);
  assert.match(r.stderr, /a restart of the source server is required/);
  await nothingCreated(c);
});

test('a role without REPLICATION: exit 2 naming the role and the ALTER ROLE remedy', async () => {
  await admin.query(`CREATE ROLE plain_reader LOGIN; GRANT SELECT ON good TO plain_reader`);
  const r = await runSource(config('noreplication', { url: cluster.url(undefined, 'plain_reader') }, { tables: { include: ['public.good'] } }));
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /role "plain_reader" lacks the REPLICATION attribute/);
  assert.match(r.stderr, /ALTER ROLE "plain_reader" WITH REPLICATION;/);
  await nothingCreated(admin);
});

test("a role that cannot read a selected table's sequence: exit 2 naming the sequence and the GRANT", async () => {
  await admin.query(`CREATE TABLE counted (id bigserial PRIMARY KEY, v text);
    CREATE ROLE seq_blind LOGIN REPLICATION; GRANT SELECT ON counted TO seq_blind`);
  const r = await runSource(config('seqblind', { url: cluster.url(undefined, 'seq_blind') }, { tables: { include: ['public.counted'] } }));
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /FAIL\s+sequence privilege\s+public\.counted_id_seq\s+role "seq_blind" cannot read sequence public\.counted_id_seq/);
  assert.match(r.stderr, /GRANT SELECT ON SEQUENCE public\.counted_id_seq TO "seq_blind";/);
  assert.doesNotMatch(r.stderr, /lacks the REPLICATION attribute/);
  await nothingCreated(admin);
});

test('row-level security that applies to the role: exit 2 naming the table (its snapshot would read only the rows the policies show)', async () => {
  await admin.query(`CREATE TABLE tenants (id int PRIMARY KEY, tenant int); INSERT INTO tenants SELECT g, g % 3 FROM generate_series(1, 9) g;
    ALTER TABLE tenants ENABLE ROW LEVEL SECURITY; CREATE POLICY one ON tenants USING (tenant = 1);
    CREATE ROLE rls_reader LOGIN REPLICATION; GRANT SELECT ON tenants, good TO rls_reader`);
  const r = await runSource(config('rls', { url: cluster.url(undefined, 'rls_reader') }, { tables: { include: ['public.tenants', 'public.good'] } }));
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /FAIL\s+row-level security\s+public\.tenants\s+table public\.tenants has row-level security that applies to role "rls_reader"/);
  assert.match(r.stderr, /ALTER ROLE "rls_reader" BYPASSRLS;/);
  assert.doesNotMatch(r.stderr, /public\.good has row-level/);
  await admin.query(`ALTER ROLE rls_reader BYPASSRLS`);
  assert.doesNotMatch((await runSource(config('rls2', { url: cluster.url(undefined, 'rls_reader') }, { tables: { include: ['public.tenants'] } }))).stderr, /row-level security/);
  await nothingCreated(admin);
});

test('no free replication slot, then no free WAL sender: exit 2 saying which setting to raise', async (t) => {
  const small = await startTestSource({ max_replication_slots: '1', max_wal_senders: '1' });
  const c = new pg.Client({ connectionString: small.url() });
  // A replication connection holds a WAL sender for as long as it is open, streaming or not.
  const walsender = new pg.Client({ connectionString: small.url(), replication: 'database' } as pg.ClientConfig);
  t.after(async () => {
    await walsender.end().catch(() => {});
    await c.end();
    await small.destroy();
  });
  await c.connect();
  await c.query('CREATE TABLE t (id int PRIMARY KEY)');

  await c.query(`SELECT pg_create_logical_replication_slot('someone_elses', 'pgoutput')`);
  let r = await runSource(config('noslot', { url: small.url() }));
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /no free replication slot \(1 of max_replication_slots = 1 in use\)/);
  assert.match(r.stderr, /raise max_replication_slots in postgresql\.conf \(restart required\) or drop an unused slot/);
  await nothingCreated(c);

  await c.query(`SELECT pg_drop_replication_slot('someone_elses')`);
  await walsender.connect();
  await waitFor('the WAL sender shows in pg_stat_replication', async () => (await c.query('SELECT count(*)::int AS n FROM pg_stat_replication')).rows[0].n === 1);
  r = await runSource(config('nosender', { url: small.url() }));
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /no free WAL sender \(1 of max_wal_senders = 1 in use\)/);
  assert.match(r.stderr, /raise max_wal_senders in postgresql\.conf \(restart required\)/);
  await nothingCreated(c);
});

// The parts run at once: each mostly waits on Kafka's retries.
test('Kafka that cannot be reached at start', { concurrency: true }, async (top) => {
  await admin.query('CREATE DATABASE reach_dest');
  await Promise.all([
    top.test('the CLI says it waits for Kafka and the registry, not that it started; SIGTERM ends it at once, nothing created', cliWaitsForKafka),
    top.test('a program embedding the source: stop() returns at once and the process ends by itself (no kafkajs socket, timer or retry left)', embeddedSource),
    top.test('a program embedding the sink: the same after its stop', embeddedSink),
  ]);
});

/** A listener that accepts connections and never writes a byte; `accepted` counts them. */
async function blackHole(t: TestContext): Promise<{ address: string; accepted: () => number }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => sockets.add(s.on('error', () => {})));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { address: `127.0.0.1:${(server.address() as { port: number }).port}`, accepted: () => sockets.size };
}

/** Before: 'source checks passed', then Kafka's retries; a stop during them waited for kafkajs (10 s and more). */
async function cliWaitsForKafka(t: TestContext): Promise<void> {
  const kafka = `127.0.0.1:${await freePort()}`;
  const file = config('kafka-down', { url: cluster.url() }, { kafka: { brokers: [kafka] }, tables: { include: ['public.good'] }, slotName: 'reach_slot', publicationName: 'reach_pub' });
  const source = spawnCli('source', file, { logLevel: 'info' });
  t.after(() => source.proc.kill('SIGKILL'));
  const retried = new RegExp(`session failed, retrying in \\d+ ms \\(not started yet: waiting for Kafka at ${kafka.replace(/\./g, '\\.')} and the schema registry at http://127\\.0\\.0\\.1:1\\)`);
  await waitFor('the source to retry Kafka', () => retried.test(source.output()) || source.proc.exitCode !== null, { timeoutMs: 45_000 });
  assert.equal(source.proc.exitCode, null, source.output());
  assert.match(source.output(), new RegExp(`waiting for Kafka at ${kafka.replace(/\./g, '\\.')} and the schema registry at http://127\\.0\\.0\\.1:1: topics and schemas next`));
  assert.doesNotMatch(source.output(), /source connector started/);
  const stoppedAt = Date.now();
  source.proc.kill('SIGTERM');
  const { code } = await source.exited;
  const ms = Date.now() - stoppedAt;
  t.diagnostic(`SIGTERM to exit: ${ms} ms`);
  assert.equal(code, 143, source.output());
  assert.ok(ms < 3_000, `SIGTERM took ${ms} ms`);
  await nothingCreated(admin, 'reach_pub', 'reach_slot');
}

interface Embedded {
  stopped: Promise<{ stopMs: number; exitedMs: number; code: number | null; output: string }>;
  stop(): void;
  output(): string;
}

/** test/helpers/embedded-connector.ts as a child; killed after 60 s (reported as not ending by itself). */
function embedded(t: TestContext, kind: 'source' | 'sink', file: string): Embedded {
  const proc = spawn(process.execPath, ['--import', 'tsx', EMBEDDED, kind, file], { env: cleanEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d));
  proc.stderr.on('data', (d: Buffer) => (out += d));
  const kill = setTimeout(() => proc.kill('SIGKILL'), 60_000);
  t.after(() => {
    clearTimeout(kill);
    proc.kill('SIGKILL');
  });
  let returnedAt = 0;
  const stopped = new Promise<{ stopMs: number; exitedMs: number; code: number | null; output: string }>((resolve) => {
    proc.on('exit', (code) => {
      const line = /\{"stopMs":(\d+)\}/.exec(out);
      resolve({ stopMs: line ? Number(line[1]) : NaN, exitedMs: returnedAt ? Date.now() - returnedAt : NaN, code, output: out });
    });
  });
  proc.stdout.on('data', () => {
    if (!returnedAt && out.includes('"stopMs"')) returnedAt = Date.now();
  });
  return { stopped, stop: () => proc.stdin.end(), output: () => out };
}

function assertEndedByItself(what: string, r: Awaited<Embedded['stopped']>): void {
  assert.equal(r.code, 0, `${what}:\n${r.output}`);
  assert.ok(r.stopMs < 3_000, `${what}: stop() took ${r.stopMs} ms\n${r.output}`);
  // Before: kafkajs's retries of the Kafka that was gone (and its sockets) kept the process for 10 s and more.
  assert.ok(r.exitedMs < 4_000, `${what}: the process ended ${r.exitedMs} ms after stop() returned\n${r.output}`);
}

/** A broker that accepts the connection and never answers: kafkajs's first request is under way at the stop. */
async function embeddedSource(t: TestContext): Promise<void> {
  const hole = await blackHole(t);
  const file = config('embedded-source', { url: cluster.url() }, { kafka: { brokers: [hole.address] }, tables: { include: ['public.good'] }, slotName: 'reach_slot2', publicationName: 'reach_pub2' });
  const child = embedded(t, 'source', file);
  await waitFor('the source to connect to Kafka', () => hole.accepted() > 0, { timeoutMs: 45_000 }).catch((err: Error) => {
    throw new Error(`${err.message}\n${child.output()}`);
  });
  child.stop();
  const r = await child.stopped;
  t.diagnostic(`stop() ${r.stopMs} ms, process ended ${r.exitedMs} ms after`);
  assertEndedByItself('the embedded source', r);
}

/** Kafka refused: its stop comes while kafkajs's connection retries are under way (the destination was just prepared). */
async function embeddedSink(t: TestContext): Promise<void> {
  const kafka = `127.0.0.1:${await freePort()}`;
  const file = join(dir, 'embedded-sink.json');
  writeFileSync(file, JSON.stringify({ topicPrefix: 'reach', kafka: { brokers: [kafka] }, schemaRegistry: { url: 'http://127.0.0.1:1' }, destination: { url: cluster.url('reach_dest') }, metricsPort: 0 }));
  const child = embedded(t, 'sink', file);
  const dest = new pg.Client({ connectionString: cluster.url('reach_dest') });
  await dest.connect();
  t.after(() => dest.end());
  await waitFor('the sink to prepare the destination (then it reaches for Kafka)', async () => (await dest.query(`SELECT to_regclass('shardbridge.sink_offsets') IS NOT NULL AS made`)).rows[0].made, { timeoutMs: 45_000, intervalMs: 20 }).catch((err: Error) => {
    throw new Error(`${err.message}\n${child.output()}`);
  });
  child.stop();
  const r = await child.stopped;
  t.diagnostic(`stop() ${r.stopMs} ms, process ended ${r.exitedMs} ms after`);
  assertEndedByItself('the embedded sink', r);
}
