/**
 * `shardbridge resnapshot` in the flows around it: two connectors (two slots, disjoint tables)
 * on one database; every selected table asked for while streaming; the operator's repair of
 * records lost to retention (the sink stalled, resnapshot, replay to the log start); a request
 * while a table's own copy runs; a lagging and a killed CLI source.
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import pg from 'pg';
import { waitFor } from '../../shared/devstack/ports.ts';
import { runCli as cli, spawnSourceCli } from '../helpers/cli.ts';
import type { KafkaClient } from '../../shared/kafka/client.ts';
import { reduceSnapshotTopic } from '../../source-connector/control-topics.ts';
import { RESNAPSHOT_PREFIX, signalContent } from '../../source-connector/resnapshot-signal.ts';
import { startSourceConnector, type SourceConnector } from '../../source-connector/run.ts';
import type { StartOptions } from '../../source-connector/connector.ts';
import { startSinkConnector, type SinkConnector } from '../../sink-connector/connector.ts';
import { testLogger } from '../helpers/kafka.ts';
import { getTestDestination } from '../helpers/postgres.ts';
import { pipelineCaughtUp, sinkConfig } from '../helpers/sink.ts';
import { readRaw, startSourceTestEnv, streaming, testSourceConfig, type SourceTestEnv } from '../helpers/source.ts';

const require = createRequire(import.meta.url);
const { Kafka, logLevel } = require('kafkajs') as typeof import('kafkajs');

let env: SourceTestEnv;
let kafka: KafkaClient;
const dir = mkdtempSync(join(tmpdir(), 'sb-resnap-flows-'));

before(async () => {
  env = await startSourceTestEnv('test-resnapshot-flows');
  kafka = env.kafka;
});

after(async () => {
  await env?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Pipe {
  config: ReturnType<typeof testSourceConfig>;
  tables: string[];
  args: string[];
  source: SourceConnector | null;
  sink: SinkConnector | null;
  sinkArgs: string[];
  groupId: string;
  startSink(): Promise<void>;
  start(opts?: StartOptions): Promise<SourceConnector>;
  stop(): Promise<void>;
  caughtUp(): Promise<void>;
  assertEqual(): Promise<void>;
}

/** One source connector (its own slot, publication, prefix) over `tables` of the database, and a sink into the test's destination, caught up. */
async function pipe(t: TestContext, db: { url: string; client: pg.Client; dst: pg.Client; destUrl: string }, slot: string, tables: string[]): Promise<Pipe> {
  const config = testSourceConfig({
    sourceUrl: db.url, kafka: env.bootstrap, registry: env.registryUrl,
    extra: { slotName: slot, publicationName: `pub_${slot}`, tables: { include: tables.map((x) => `public.${x}`) }, topics: { partitions: 3 } },
  });
  const file = join(dir, `${slot}.json`);
  writeFileSync(file, JSON.stringify(config));
  const topics = tables.map((x) => `${config.topicPrefix}.public.${x}`);
  const groupId = `g-${config.topicPrefix}`;
  const sinkCfg = sinkConfig({ kafka: env.bootstrap, registry: env.registryUrl, destination: db.destUrl, prefix: config.topicPrefix, groupId });
  const sinkFile = join(dir, `${slot}-sink.json`);
  writeFileSync(sinkFile, JSON.stringify({ ...sinkCfg, logLevel: 'warn' }));
  const p: Pipe = {
    config, tables, source: null, sink: null, groupId,
    args: ['--source-config', file],
    sinkArgs: ['--sink-config', sinkFile],
    async startSink() {
      p.sink = await startSinkConnector(sinkCfg, testLogger(), { topicRefreshMs: 500 });
    },
    async start(opts) {
      p.source = await startSourceConnector(config, testLogger(), opts);
      if (!opts?.beforeOwnCopy) await streaming(p.source);
      return p.source;
    },
    async stop() {
      await p.source?.stop();
      p.source = null;
    },
    caughtUp: () => pipelineCaughtUp(kafka, { client: db.client, source: p.source!, snapshotTopic: `${config.topicPrefix}.__snapshot` }, { db: db.dst, groupId, topics }),
    async assertEqual() {
      for (const x of tables) {
        const want = (await db.client.query(`SELECT id, v FROM ${x} ORDER BY id`)).rows;
        assert.deepEqual((await db.dst.query(`SELECT id, v FROM public.${x} ORDER BY id`)).rows, want, x);
      }
    },
  };
  t.after(async () => {
    await p.stop().catch(() => {});
    await p.sink?.stop().catch(() => {});
    await db.client.query('SELECT pg_drop_replication_slot($1)', [slot]).catch(() => {});
  });
  await p.startSink();
  await p.start();
  await p.caughtUp();
  return p;
}

async function database(t: TestContext, tables: string[]) {
  const { url, client, slot } = await env.freshDatabase(t);
  const dest = await getTestDestination();
  const dst = new pg.Client({ connectionString: dest.url });
  await dst.connect();
  t.after(async () => {
    await dst.query(`DROP TABLE IF EXISTS ${tables.map((x) => `public.${x}`).join(', ')}`).catch(() => {});
    await dst.end().catch(() => {});
    await dest.release();
  });
  for (const x of tables) {
    for (const c of [client, dst]) await c.query(`CREATE TABLE public.${x} (id int PRIMARY KEY, v text)`);
    await client.query(`INSERT INTO ${x} SELECT g, '${x}' || g FROM generate_series(1, 40) g`);
  }
  return { url, client, dst, destUrl: dest.url, slot };
}

const damage = (dst: pg.Client, table: string) => dst.query(`DELETE FROM ${table} WHERE id <= 5; INSERT INTO ${table} VALUES (1000, 'only at the destination')`);
const snapshotState = async (p: Pipe) => reduceSnapshotTopic(await readRaw(kafka, `${p.config.topicPrefix}.__snapshot`)).tables;
const stamp = () => Date.now().toString(36);

test('two connectors on one database (two slots, disjoint tables): a request for one, stopped, while the other streams; one for one streaming is passed over by the other', async (t) => {
  const [a1, b1] = [`a_${stamp()}`, `b_${stamp()}`];
  const db = await database(t, [a1, b1]);
  const a = await pipe(t, db, `${db.slot}_a`, [a1]);
  const b = await pipe(t, db, `${db.slot}_b`, [b1]);

  await damage(db.dst, b1);
  const asked = await cli(['resnapshot', '--table', b1, '--json', ...b.args]);
  assert.equal(asked.code, 0, asked.stderr);
  assert.equal(JSON.parse(asked.stdout).next, 'taken now by the running connector');
  await b.caughtUp();
  await a.caughtUp();
  await a.assertEqual();
  await b.assertEqual();
  assert.equal((await snapshotState(a)).get(`public.${a1}`)?.kind, 'completed', 'A passed the request over');

  // A stopped while B streams: B's session (another slot) is not A running.
  await a.stop();
  await damage(db.dst, a1);
  const stopped = await cli(['resnapshot', '--table', a1, '--json', ...a.args]);
  assert.equal(stopped.code, 0, stopped.stderr);
  assert.equal(JSON.parse(stopped.stdout).next, 'whole snapshot from a new slot', 'its only table');
  await a.start();
  await a.caughtUp();
  await a.assertEqual();
});

test('every selected table asked for while streaming: the slot is dropped and a whole new snapshot taken; nothing lost, the report says so', async (t) => {
  const [x1, x2] = [`x_${stamp()}`, `y_${stamp()}`];
  const db = await database(t, [x1, x2]);
  const p = await pipe(t, db, db.slot, [x1, x2]);
  await damage(db.dst, x1);
  await damage(db.dst, x2);
  const asked = await cli(['resnapshot', '--table', x1, '--table', x2, '--json', ...p.args]);
  assert.equal(asked.code, 0, asked.stderr);
  assert.deepEqual(JSON.parse(asked.stdout), { requested: [`public.${x1}`, `public.${x2}`], alreadyPending: [], next: 'taken now by the running connector' });
  await db.client.query(`INSERT INTO ${x1} VALUES (2000, 'after'); UPDATE ${x2} SET v = 'after' WHERE id = 3`);
  await streaming(p.source!);
  await p.caughtUp();
  await p.assertEqual();
});

const rawKafka = () => new Kafka({ brokers: [env.bootstrap], clientId: 'test-resnap-flows', logLevel: logLevel.NOTHING });

/** Kafka's records of every partition of `topic` (or of `only`) below its end now removed (as retention would); the log starts. */
async function deleteAllRecords(topic: string, only?: number[]): Promise<Map<number, number>> {
  const a = rawKafka().admin();
  await a.connect();
  try {
    const offsets = (await a.fetchTopicOffsets(topic)).filter((o) => !only || only.includes(o.partition));
    await a.deleteTopicRecords({ topic, partitions: offsets.map((o) => ({ partition: o.partition, offset: o.high })) });
    return new Map(offsets.map((o) => [o.partition, Number(o.high)]));
  } finally {
    await a.disconnect();
  }
}

for (const gapped of ['every partition', 'partition 0 only'] as const) {
  test(`the operator flow (${gapped} lost records): records the stopped sink never applied removed from Kafka, the sink stalls; resnapshot while streaming, replay to the log start, the destination ends equal`, async (t) => {
    const [g1, o1] = [`g_${stamp()}`, `o_${stamp()}`];
    const db = await database(t, [g1, o1]);
    const p = await pipe(t, db, db.slot, [g1, o1]);
    const topic = `${p.config.topicPrefix}.public.${g1}`;
    await p.sink!.stop();
    // Lost: these deletes and updates never reach the destination.
    await db.client.query(`DELETE FROM ${g1} WHERE id <= 10; UPDATE ${g1} SET v = 'lost update' WHERE id BETWEEN 11 AND 20; INSERT INTO ${g1} VALUES (500, 'lost insert')`);
    await db.client.query(`UPDATE ${o1} SET v = 'kept' WHERE id <= 3`);
    await waitFor('the source confirmed the changes', async () => {
      const { rows } = await db.client.query<{ ok: boolean }>('SELECT confirmed_flush_lsn >= pg_current_wal_lsn() AS ok FROM pg_replication_slots WHERE slot_name = $1', [db.slot]);
      return rows[0]?.ok === true;
    }, { timeoutMs: 30_000 });
    const starts = await deleteAllRecords(topic, gapped === 'every partition' ? undefined : [0]);
    await db.client.query(`UPDATE ${g1} SET v = 'after the gap' WHERE id BETWEEN 15 AND 25; INSERT INTO ${g1} VALUES (600, 'after the gap')`);
    await p.startSink();
    const stalls = async () => (await db.dst.query<{ partition: number }>('SELECT partition FROM shardbridge.stalls WHERE group_id = $1 AND topic = $2', [p.groupId, topic])).rows;
    await waitFor('the gap stalls', async () => (await stalls()).length > 0, { timeoutMs: 30_000 });

    const asked = await cli(['resnapshot', '--table', g1, '--json', ...p.args]);
    assert.equal(asked.code, 0, asked.stderr);
    assert.equal(JSON.parse(asked.stdout).next, 'taken now by the running connector');
    await db.client.query(`UPDATE ${g1} SET v = 'after the request' WHERE id BETWEEN 30 AND 35; DELETE FROM ${g1} WHERE id = 40`);
    await streaming(p.source!);
    // The other partitions pass the truncate's barrier point and wait there, partition 0 stalled below it.
    await waitFor('the copy completed', async () => (await snapshotState(p)).get(`public.${g1}`)?.kind === 'completed', { timeoutMs: 30_000 });
    await p.sink!.stop();
    for (const { partition } of await stalls()) {
      const r = await cli(['replay', '--topic', topic, '--partition', String(partition), '--to-offset', String(starts.get(partition)), ...p.sinkArgs]);
      assert.equal(r.code, 0, r.stderr);
    }
    await p.startSink();
    await p.caughtUp();
    await p.assertEqual();
    assert.deepEqual(await stalls(), []);
  });
}

test('resnapshot while a table\'s own copy runs (held): of the same table "already waiting"; of another, the session restarts and aborts the copy: both end copied and equal', async (t) => {
  const [a1, b1, c1] = [`a_${stamp()}`, `b_${stamp()}`, `c_${stamp()}`];
  const db = await database(t, [a1, b1, c1]);
  const p = await pipe(t, db, db.slot, [a1, b1, c1]);
  await p.stop();
  await damage(db.dst, a1);
  await damage(db.dst, b1);
  assert.equal((await cli(['resnapshot', '--table', a1, ...p.args])).code, 0);
  let release!: () => void;
  const hold = new Promise<void>((resolve) => (release = resolve));
  let holds = 0;
  await p.start({ beforeOwnCopy: () => (holds++, hold) });
  await waitFor('the copy held', () => holds > 0, { timeoutMs: 30_000, intervalMs: 50 });
  const same = await cli(['resnapshot', '--table', a1, '--json', '--wait-seconds', '5', ...p.args]);
  assert.equal(same.code, 0, same.stderr);
  assert.deepEqual(JSON.parse(same.stdout), { requested: [], alreadyPending: [`public.${a1}`], next: 'taken now by the running connector' });
  const other = await cli(['resnapshot', '--table', b1, '--json', '--wait-seconds', '20', ...p.args]);
  assert.equal(other.code, 0, other.stderr);
  await db.client.query(`UPDATE ${a1} SET v = 'while held' WHERE id = 30; UPDATE ${b1} SET v = 'while held' WHERE id = 31`);
  release();
  await waitFor('the connector streaming', () => p.source!.state().phase === 'streaming', { timeoutMs: 30_000 });
  await p.caughtUp();
  await p.assertEqual();
  const state = await snapshotState(p);
  assert.deepEqual([a1, b1, c1].map((x) => state.get(`public.${x}`)?.kind), ['completed', 'completed', 'completed']);
  assert.ok(holds >= 2, 'the held copy was aborted and started again');
});

test('a lagging CLI source (SIGSTOP) reads the request late; one killed (kill -9) before it read it: the next start reads it from the slot and converges', async (t) => {
  const [a1, b1] = [`a_${stamp()}`, `b_${stamp()}`];
  const db = await database(t, [a1, b1]);
  const p = await pipe(t, db, db.slot, [a1, b1]);
  await p.stop();
  const slotActive = async () => (await db.client.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [db.slot])).rows[0]?.active === true;
  const equal = () => waitFor('the destination equal to the source', () => p.assertEqual().then(() => true, () => false), { timeoutMs: 40_000, intervalMs: 300 });
  let child = spawnSourceCli(p.args[1]);
  t.after(() => { child.proc.kill('SIGKILL'); });
  await waitFor('the CLI source streaming', slotActive, { timeoutMs: 30_000 });

  await damage(db.dst, a1);
  child.proc.kill('SIGSTOP');
  const late = await cli(['resnapshot', '--table', a1, '--json', '--wait-seconds', '1', ...p.args]);
  assert.equal(late.code, 0, late.stderr);
  assert.equal(JSON.parse(late.stdout).next, 'taken when the running connector reaches the request');
  child.proc.kill('SIGCONT');
  await db.client.query(`UPDATE ${a1} SET v = 'after SIGCONT' WHERE id = 20`);
  await equal();
  assert.equal((await snapshotState(p)).get(`public.${a1}`)?.kind, 'completed');

  await damage(db.dst, b1);
  child.proc.kill('SIGSTOP');
  const lost = await cli(['resnapshot', '--table', b1, '--json', '--wait-seconds', '1', ...p.args]);
  assert.equal(lost.code, 0, lost.stderr);
  child.proc.kill('SIGKILL');
  await child.exited;
  await waitFor('the slot released', async () => !(await slotActive()), { timeoutMs: 30_000 });
  child = spawnSourceCli(p.args[1]);
  await db.client.query(`UPDATE ${b1} SET v = 'after the crash' WHERE id = 20`);
  await equal();
  const state = await snapshotState(p);
  assert.deepEqual([a1, b1].map((x) => state.get(`public.${x}`)?.kind), ['completed', 'completed'], child.output());
  child.proc.kill('SIGTERM');
  await child.exited;
});

test('two requests in one transaction (two tables), then one more: each table copied again, the third untouched, the destination equal', async (t) => {
  const [a1, b1, c1] = [`a_${stamp()}`, `b_${stamp()}`, `c_${stamp()}`];
  const db = await database(t, [a1, b1, c1]);
  const p = await pipe(t, db, db.slot, [a1, b1, c1]);
  const before = (await snapshotState(p)).get(`public.${c1}`);
  await damage(db.dst, a1);
  await damage(db.dst, b1);
  const ask = (tables: string[]) => `SELECT pg_logical_emit_message(true, '${RESNAPSHOT_PREFIX}', '${signalContent({ slot: db.slot, tables })}')`;
  await db.client.query(`BEGIN; ${ask([`public.${a1}`])}; UPDATE ${a1} SET v = 'in the request' WHERE id = 20; ${ask([`public.${b1}`])}; COMMIT`);
  // Asked once the connector streams again: while its session restarts (the slot idle, its sessions
  // on the database) the command refuses, exit 1, "runs but does not stream yet".
  const copied = async (tables: string[]) => {
    const state = await snapshotState(p);
    const { rows } = await db.client.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [db.slot]);
    return rows[0]?.active === true && tables.every((x) => state.get(`public.${x}`)?.kind === 'completed');
  };
  await waitFor('both copied, the stream back', () => copied([a1, b1]), { timeoutMs: 30_000 });
  const again = await cli(['resnapshot', '--table', b1, '--json', ...p.args]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(JSON.parse(again.stdout).next, 'taken now by the running connector');
  await waitFor('copied again, the stream back', () => copied([b1]), { timeoutMs: 30_000 });
  await p.caughtUp();
  await p.assertEqual();
  const state = await snapshotState(p);
  assert.deepEqual([a1, b1].map((x) => state.get(`public.${x}`)?.kind), ['completed', 'completed']);
  assert.deepEqual(state.get(`public.${c1}`), before, 'the third table was not taken again');
});
