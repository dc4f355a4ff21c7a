/**
 * Crashes: the sink runs as the real executable (`shardbridge sink --config FILE`) in child
 * processes and is killed with SIGKILL mid-stream. Every key carries a version that only
 * grows; a trigger on the destination records any update that does not raise it, so a
 * batch applied twice would be visible. After restart (or takeover by the other member of
 * the group) the destination must hold exactly the last version of every key. A member
 * frozen (SIGSTOP) inside a batch transaction must not hold its partitions back from the
 * member that takes them over, nor change anything once thawed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { waitFor } from '../../shared/devstack/ports.ts';
import { type Admin, type Producer } from '../../shared/kafka/client.ts';
import type { RegistryClient } from '../../shared/registry/registry-client.ts';
import { testLogger, uniqueTopic } from '../helpers/kafka.ts';
import { openSinkTestEnv, type SinkTestEnv } from '../helpers/sink-env.ts';
import { produceChanges, registerTable, tableInfo, type ProducedTable } from '../helpers/produce-changes.ts';
import { sinkConfig, storedOffsets, waitApplied } from '../helpers/sink.ts';
import { ensureSinkTables, setStoredOffsets } from '../../sink-connector/offsets.ts';

const BIN = fileURLToPath(new URL('../../shared/cli/shardbridge.js', import.meta.url));
const ID = `${process.pid}_${Date.now().toString(36)}`;
const SRC = `sb_csrc_${ID}`;
const DST = `sb_cdst_${ID}`;
const KEYS = 300;
const ROUNDS = 60;
const log = testLogger();
const dir = mkdtempSync(join(tmpdir(), 'sb-crash-'));
let env: SinkTestEnv | undefined;
const children: ChildProcess[] = [];
let servers: { kafka: string; registry: string; destination: string };
let db: pg.Client;
let admin: Admin;
let producer: Producer;
let registry: RegistryClient;

before(async () => {
  env = await openSinkTestEnv([SRC, DST], log);
  ({ servers, db, admin, producer, registry } = env);
  await db.query(`CREATE TABLE ${DST}.violations (tbl text, id int, old_v bigint, new_v bigint)`);
  await db.query(`CREATE FUNCTION ${DST}.check_v() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.v <= OLD.v THEN INSERT INTO ${DST}.violations VALUES (TG_TABLE_NAME, OLD.id, OLD.v, NEW.v); END IF;
      RETURN NEW;
    END $$`);
});

after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await env?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Fixture {
  t: ProducedTable;
  name: string;
  groupId: string;
  configFile: string;
}

async function fixture(name: string, batch: object = {}): Promise<Fixture> {
  const prefix = uniqueTopic(`sbcrash${name}`);
  await db.query(`CREATE TABLE ${SRC}.${name} (id int PRIMARY KEY, v bigint)`);
  await db.query(`CREATE TABLE ${DST}.${name} (id int PRIMARY KEY, v bigint)`);
  await db.query(`CREATE TRIGGER check_v BEFORE UPDATE ON ${DST}.${name} FOR EACH ROW EXECUTE FUNCTION ${DST}.check_v()`);
  const topic = `${prefix}.${SRC}.${name}`;
  await admin.ensureTopics([{ topic, partitions: 4, replicationFactor: 1 }]);
  const t = await registerTable(registry, await tableInfo(db, SRC, name), topic);
  const groupId = `g-${ID}-${name}`;
  const configFile = join(dir, `${name}.json`);
  const config = sinkConfig({ ...servers, prefix, groupId }, { tables: { [`${SRC}.${name}`]: { schema: DST } }, batch: { maxRows: 300, ...batch }, logLevel: 'info' });
  writeFileSync(configFile, JSON.stringify(config));
  return { t, name, groupId, configFile };
}

/** Round r sets key k to version r*KEYS+k: versions only grow per key. */
async function produceRounds(f: Fixture, from: number, to: number): Promise<void> {
  for (let r = from; r < to; r++) {
    const kind = r === 0 ? ('insert' as const) : ('update' as const);
    await produceChanges(producer, f.t, Array.from({ length: KEYS }, (_, k) => ({ kind, new: [String(k), String(r * KEYS + k)] })));
  }
}

interface Sink {
  proc: ChildProcess;
  /** Parsed JSON log lines so far. */
  lines(): Record<string, any>[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function spawnSink(f: Fixture): Sink {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SHARDBRIDGE_') && k !== 'LOG_LEVEL'));
  const proc = spawn(BIN, ['sink', '--config', f.configFile], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  proc.stdout!.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const lines = () =>
    err
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, any>);
  return { proc, lines, exited };
}

async function appliedRecords(f: Fixture): Promise<bigint> {
  let sum = 0n;
  for (const [k, v] of await storedOffsets(db, f.groupId)) if (k.startsWith(f.t.topic + ':')) sum += v;
  return sum;
}

async function assertExact(f: Fixture): Promise<void> {
  const { rows } = await db.query(`SELECT count(*)::int AS n, count(*) FILTER (WHERE v = ${ROUNDS - 1} * ${KEYS} + id)::int AS last FROM ${DST}.${f.name}`);
  assert.deepEqual(rows[0], { n: KEYS, last: KEYS }, 'every key at its last version');
  const v = await db.query(`SELECT * FROM ${DST}.violations WHERE tbl = $1 LIMIT 5`, [f.name]);
  assert.deepEqual(v.rows, [], 'no update that failed to raise a version: nothing applied twice');
}

async function stopGracefully(s: Sink): Promise<void> {
  s.proc.kill('SIGTERM');
  const { code } = await s.exited;
  assert.equal(code, 143, JSON.stringify(s.lines().filter((l) => l.level >= 50))); // SIGTERM's exit code, as every command
}

test('kill -9 of the sink mid-stream, then restart: nothing lost, nothing applied twice', async () => {
  const f = await fixture('single');
  await produceRounds(f, 0, ROUNDS / 2);
  const first = spawnSink(f);
  await waitFor('part of the stream applied', async () => (await appliedRecords(f)) >= BigInt((KEYS * ROUNDS) / 8), { timeoutMs: 60_000, intervalMs: 20 });
  first.proc.kill('SIGKILL');
  assert.equal((await first.exited).signal, 'SIGKILL');
  const atCrash = await appliedRecords(f);
  assert.ok(atCrash < BigInt((KEYS * ROUNDS) / 2), 'killed before the end of what was produced');
  // The worst case: the crash came before any group offset commit (those are for monitoring
  // only). Once the dead member's session expires, rewind the group to the start: the sink
  // must still resume from the destination's stored offsets.
  await waitFor('the dead member to leave the group, then the group offsets reset', async () => {
    await admin.setGroupOffsets(f.groupId, f.t.topic, [0, 1, 2, 3].map((partition) => ({ partition, offset: '0' })));
    return true;
  }, { timeoutMs: 60_000, intervalMs: 500 });
  await produceRounds(f, ROUNDS / 2, ROUNDS);
  const second = spawnSink(f);
  await waitApplied(db, admin, f.groupId, [f.t.topic], 90_000);
  await assertExact(f);
  await stopGracefully(second);
});

test('two sinks in one group; one killed mid-stream, the other takes its partitions over', async () => {
  const f = await fixture('pair');
  await produceRounds(f, 0, ROUNDS / 2);
  const a = spawnSink(f);
  const b = spawnSink(f);
  const joinedWith = (s: Sink) => s.lines().filter((l) => l.msg?.startsWith('group joined')).at(-1)?.partitions ?? 0;
  await waitFor('both members own partitions', () => joinedWith(a) > 0 && joinedWith(b) > 0 && joinedWith(a) + joinedWith(b) === 4, {
    timeoutMs: 60_000,
  });
  await waitFor('part of the stream applied', async () => (await appliedRecords(f)) >= BigInt((KEYS * ROUNDS) / 8), { timeoutMs: 60_000, intervalMs: 20 });
  a.proc.kill('SIGKILL');
  await a.exited;
  await produceRounds(f, ROUNDS / 2, ROUNDS);
  await waitApplied(db, admin, f.groupId, [f.t.topic], 90_000);
  assert.equal(joinedWith(b), 4, 'the survivor owns every partition');
  await assertExact(f);
  await stopGracefully(b);
});

/** Whether one of `s`'s destination sessions is inside a transaction (its sockets, by `ss`, matched to pg_stat_activity's client ports). */
async function inTransaction(s: Sink): Promise<boolean> {
  const port = new URL(servers.destination).port;
  const ours = [...execFileSync('ss', ['-tnpH', `dport = :${port}`]).toString().matchAll(/:(\d+)\s+\S+:\d+\s+users:\(\("[^"]*",pid=(\d+)/g)]
    .filter((m) => Number(m[2]) === s.proc.pid)
    .map((m) => Number(m[1]));
  const { rowCount } = await db.query(`SELECT 1 FROM pg_stat_activity WHERE client_port = ANY($1) AND xact_start IS NOT NULL`, [ours]);
  return (rowCount ?? 0) > 0;
}

test('a member frozen (SIGSTOP) inside a batch transaction: the other takes its partitions over and applies on; thawed, its late batch changes nothing', async () => {
  const f = await fixture('zombie', { idleInTransactionTimeoutMs: 2000 });
  // Slow updates (while slow() sleeps) keep a batch transaction open long enough to freeze a member inside it.
  await db.query(`CREATE FUNCTION ${DST}.slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.002); RETURN NEW; END $$`);
  await db.query(`CREATE TRIGGER slow BEFORE UPDATE ON ${DST}.${f.name} FOR EACH ROW EXECUTE FUNCTION ${DST}.slow()`);
  const a = spawnSink(f);
  const b = spawnSink(f);
  const joinedWith = (s: Sink) => s.lines().filter((l) => l.msg?.startsWith('group joined')).at(-1)?.partitions ?? 0;
  await waitFor('both members own partitions', () => joinedWith(a) > 0 && joinedWith(b) > 0 && joinedWith(a) + joinedWith(b) === 4, { timeoutMs: 60_000 });
  const firstHalf = produceRounds(f, 0, ROUNDS / 2);
  try {
    await waitFor('a inside a batch transaction, then frozen', async () => (await inTransaction(a)) && a.proc.kill('SIGSTOP'), { timeoutMs: 60_000, intervalMs: 5 });
    // Replacing the function takes no lock on the table the frozen transaction writes.
    await db.query(`CREATE OR REPLACE FUNCTION ${DST}.slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$`);
    await firstHalf;
    await produceRounds(f, ROUNDS / 2, ROUNDS);
    // Without an end to the frozen session, b waits on its lock for as long as a stays frozen.
    await waitApplied(db, admin, f.groupId, [f.t.topic], 60_000);
    assert.equal(joinedWith(b), 4, 'the survivor owns every partition');
    await assertExact(f);
  } finally {
    a.proc.kill('SIGCONT');
  }
  await waitFor('the thawed member back in the group', () => a.lines().filter((l) => l.msg?.startsWith('group joined')).length >= 2, { timeoutMs: 60_000 });
  await waitApplied(db, admin, f.groupId, [f.t.topic], 60_000);
  await assertExact(f);
  await stopGracefully(a);
  await stopGracefully(b);
});

/** A session holding partition `partition`'s offsets row as a batch does, stopped inside a COPY that gets no data: no idle timeout ends it. */
async function holdInCopy(f: Fixture, partition: number, applicationName: string): Promise<{ client: pg.Client; pid: number; ended: Promise<Error> }> {
  const client = new pg.Client({ connectionString: servers.destination, application_name: applicationName });
  await client.connect();
  const ended = new Promise<Error>((resolve) => client.on('error', resolve));
  const pid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
  await client.query(`BEGIN; INSERT INTO shardbridge.sink_offsets AS o (group_id, topic, partition, next_offset) VALUES ($$${f.groupId}$$, $$${f.t.topic}$$, ${partition}, 0)
    ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = o.next_offset`);
  client.query(copyFrom(`COPY ${DST}.${f.name} FROM STDIN`)).on('error', () => {}); // never written to
  await waitFor('the holder inside its COPY', async () => (await db.query(`SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND query LIKE 'COPY%' AND wait_event = 'ClientRead'`, [pid])).rowCount === 1);
  return { client, pid, ended };
}

test('a member frozen in the middle of a COPY (where no idle timeout applies) is ended by the owner of its partition; a session that is not a sink is named, not ended', async () => {
  const f = await fixture('incopy', { idleInTransactionTimeoutMs: 1500 });
  // Rows the members' earlier batches left (a row not committed yet names no holder).
  await ensureSinkTables(db);
  await setStoredOffsets(db, f.groupId, f.t.topic, [0, 1, 2, 3].map((partition) => ({ partition, offset: 0n })));
  const frozen = await holdInCopy(f, 0, 'shardbridge-sink-test');
  const foreign = await holdInCopy(f, 1, 'report-job');
  await produceRounds(f, 0, ROUNDS);
  const s = spawnSink(f);
  try {
    let endedBy: Error | undefined;
    void frozen.ended.then((e) => (endedBy = e));
    const err = await waitFor('the frozen sink session ended by the member owning its partition', () => endedBy, { timeoutMs: 60_000 });
    assert.match(err.message, /terminat/, 'its connection ended');
    await waitFor('its backend gone', async () => (await db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [frozen.pid])).rowCount === 0);
    const ended = await waitFor('the ending logged', () => s.lines().find((l) => /^ended the destination session of a sink member/.test(l.msg)));
    assert.deepEqual([ended.topic, ended.partition, ended.pid], [f.t.topic, 0, frozen.pid]);
    const named = await waitFor('the other holder named', () => s.lines().find((l) => /not a sink's holds the offsets row of /.test(l.msg)));
    assert.deepEqual([named.partition, named.pid, named.applicationName, named.remedy], [1, foreign.pid, 'report-job', `end that session if it is stuck: SELECT pg_terminate_backend(${foreign.pid})`]);
    const ends = new Map((await admin.endOffsets(f.t.topic)).map((e) => [e.partition, BigInt(e.offset)]));
    await waitFor('partitions 0, 2 and 3 applied', async () => {
      const stored = await storedOffsets(db, f.groupId);
      return [0, 2, 3].every((p) => stored.get(`${f.t.topic}:${p}`) === ends.get(p));
    }, { timeoutMs: 60_000, intervalMs: 100 });
    assert.equal((await db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [foreign.pid])).rowCount, 1, 'the foreign session left alone');
    assert.equal((await storedOffsets(db, f.groupId)).get(`${f.t.topic}:1`), 0n, 'its partition waits for it');
    await db.query('SELECT pg_terminate_backend($1::int)', [foreign.pid]);
    await waitApplied(db, admin, f.groupId, [f.t.topic], 60_000);
    await assertExact(f);
  } finally {
    await Promise.allSettled([frozen.client.end(), foreign.client.end()]);
  }
  await stopGracefully(s);
});
