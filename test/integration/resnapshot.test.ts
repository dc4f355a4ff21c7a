/**
 * `shardbridge resnapshot` end to end: a destination table that lost rows and gained one is
 * repaired (a truncate, then the table's own snapshot beside the stream) while the other table
 * streams on: with the source connector stopped, by its next start; with it streaming, at once
 * through its stream. A table not selected is refused.
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { runCli as cli } from '../helpers/cli.ts';
import type { KafkaClient } from '../../shared/kafka/client.ts';
import type { StatusReport } from '../../shared/migration/status.ts';
import { reduceSnapshotTopic } from '../../source-connector/control-topics.ts';
import { startSourceConnector, type SourceConnector } from '../../source-connector/run.ts';
import { startSinkConnector, type SinkConnector } from '../../sink-connector/connector.ts';
import { testLogger } from '../helpers/kafka.ts';
import { getTestDestination } from '../helpers/postgres.ts';
import { pipelineCaughtUp, sinkConfig } from '../helpers/sink.ts';
import { readRaw, startSourceTestEnv, streaming, testSourceConfig, type SourceTestEnv } from '../helpers/source.ts';

let env: SourceTestEnv;
let kafka: KafkaClient;
const dir = mkdtempSync(join(tmpdir(), 'sb-resnap-'));

before(async () => {
  env = await startSourceTestEnv('test-resnapshot');
  kafka = env.kafka;
});

after(async () => {
  await env?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Setup {
  client: pg.Client;
  dst: pg.Client;
  config: ReturnType<typeof testSourceConfig>;
  fixed: string;
  other: string;
  /** --source-config for resnapshot; `both` adds --sink-config (status). */
  args: string[];
  both: string[];
  startSource(): Promise<SourceConnector>;
  running(): SourceConnector | null;
  stopSource(): Promise<void>;
  caughtUp(source: SourceConnector): Promise<void>;
  assertEqual(): Promise<void>;
}

/** Two tables streaming through both connectors into a destination of the test, caught up. */
async function setup(t: TestContext): Promise<Setup> {
  const { url, client, slot } = await env.freshDatabase(t);
  const dest = await getTestDestination();
  const dst = new pg.Client({ connectionString: dest.url });
  await dst.connect();
  const [fixed, other] = [`r_${Date.now().toString(36)}`, `o_${Date.now().toString(36)}`];
  let sink: SinkConnector | null = null;
  let source: SourceConnector | null = null;
  // One hook, in this order: the connectors before the slot, the sink before its destination.
  t.after(async () => {
    await source?.stop().catch(() => {});
    await sink?.stop().catch(() => {});
    await client.query('SELECT pg_drop_replication_slot($1)', [slot]).catch(() => {});
    await dst.query(`DROP TABLE IF EXISTS public.${fixed}, public.${other}`).catch(() => {});
    await dst.end().catch(() => {});
    await dest.release();
  });
  for (const c of [client, dst]) await c.query(`CREATE TABLE public.${fixed} (id int PRIMARY KEY, v text); CREATE TABLE public.${other} (id int PRIMARY KEY, v text)`);
  await client.query(`INSERT INTO ${fixed} SELECT g, 'f' || g FROM generate_series(1, 60) g; INSERT INTO ${other} SELECT g, 'o' FROM generate_series(1, 10) g`);
  const config = testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, extra: { slotName: slot, topics: { partitions: 3 } } });
  const file = join(dir, `${slot}.json`);
  writeFileSync(file, JSON.stringify(config));
  const topics = [fixed, other].map((x) => `${config.topicPrefix}.public.${x}`);
  const groupId = `g-${config.topicPrefix}`;
  const sinkCfg = sinkConfig({ kafka: env.bootstrap, registry: env.registryUrl, destination: dest.url, prefix: config.topicPrefix, groupId });
  const sinkFile = join(dir, `${slot}-sink.json`);
  writeFileSync(sinkFile, JSON.stringify(sinkCfg));
  // Started before the source makes its topics: a short refresh finds them at once, not up to 10 s later.
  sink = await startSinkConnector(sinkCfg, testLogger(), { topicRefreshMs: 500 });
  const s: Setup = {
    client, dst, config, fixed, other,
    args: ['--source-config', file],
    both: ['--source-config', file, '--sink-config', sinkFile],
    async startSource() {
      source = await startSourceConnector(config, testLogger());
      await streaming(source);
      return source;
    },
    running: () => source,
    async stopSource() {
      await source?.stop();
      source = null;
    },
    caughtUp: (src) => pipelineCaughtUp(kafka, { client, source: src, snapshotTopic: `${config.topicPrefix}.__snapshot` }, { db: dst, groupId, topics }),
    async assertEqual() {
      for (const x of [fixed, other]) {
        const want = (await client.query(`SELECT id, v FROM ${x} ORDER BY id`)).rows;
        assert.deepEqual((await dst.query(`SELECT id, v FROM public.${x} ORDER BY id`)).rows, want, x);
      }
    },
  };
  await s.caughtUp(await s.startSource());
  return s;
}

/** The destination table changed by hand, as records lost to retention would leave it. */
async function damage(s: Setup): Promise<void> {
  await s.dst.query(`DELETE FROM ${s.fixed} WHERE id <= 5; INSERT INTO ${s.fixed} VALUES (1000, 'only at the destination'); UPDATE ${s.fixed} SET v = 'wrong' WHERE id = 30`);
}

const snapshotState = async (s: Setup) => reduceSnapshotTopic(await readRaw(kafka, `${s.config.topicPrefix}.__snapshot`)).tables;

test('resnapshot with the source connector stopped: a table not selected refused; the next start truncates and copies the table again, the other streams on', async (t) => {
  const s = await setup(t);
  const unknown = await cli(['resnapshot', '--table', 'public.nope', ...s.args]);
  assert.equal(unknown.code, 2, unknown.stderr);
  assert.match(unknown.stderr, /--table public\.nope: not a table the source configuration selects .*selected: .*public\.o_/);
  assert.equal((await snapshotState(s)).get(`public.${s.fixed}`)?.kind, 'completed', 'nothing written while refused');

  await s.stopSource();
  await damage(s);
  await s.client.query(`UPDATE ${s.fixed} SET v = 'while stopped' WHERE id = 40; UPDATE ${s.other} SET v = 'while stopped' WHERE id = 1`);
  const asked = await cli(['resnapshot', '--table', s.fixed, '--json', ...s.args]);
  assert.equal(asked.code, 0, asked.stderr);
  assert.deepEqual(JSON.parse(asked.stdout), { requested: [`public.${s.fixed}`], alreadyPending: [], next: 'these tables copied beside the stream, the slot kept' });
  const marker = (await snapshotState(s)).get(`public.${s.fixed}`);
  assert.equal(marker?.kind === 'started' && marker.requested, true);
  const status = await cli(['status', '--json', '--sample-seconds', '0', ...s.both]);
  const states = new Map((JSON.parse(status.stdout) as StatusReport).tables.map((x) => [x.table, x.state]));
  assert.deepEqual([states.get(`public.${s.fixed}`), states.get(`public.${s.other}`)], ['requested', 'complete'], status.stdout);
  const again = await cli(['resnapshot', '--table', `public.${s.fixed}`, ...s.args]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /already waiting for its snapshot/);

  const source = await s.startSource();
  await s.client.query(`INSERT INTO ${s.fixed} VALUES (2000, 'after the start'); UPDATE ${s.other} SET v = 'after the start' WHERE id = 2`);
  await s.caughtUp(source);
  await s.assertEqual();
  const after = (await snapshotState(s)).get(`public.${s.fixed}`);
  assert.equal(after?.kind, 'completed');
  assert.equal(after?.slot, s.config.slotName, 'the slot was kept');
});

test('resnapshot with the source connector streaming: taken at once through its stream (a session restart, not a stop) while both tables are written, and the destination ends equal', async (t) => {
  const s = await setup(t);
  const source = s.running()!;
  await damage(s);
  await s.client.query(`UPDATE ${s.fixed} SET v = 'before the request' WHERE id = 40; UPDATE ${s.other} SET v = 'before the request' WHERE id = 1`);
  const asked = await cli(['resnapshot', '--table', `public.${s.fixed}`, '--json', ...s.args]);
  assert.equal(asked.code, 0, asked.stderr);
  assert.deepEqual(JSON.parse(asked.stdout), { requested: [`public.${s.fixed}`], alreadyPending: [], next: 'taken now by the running connector' });
  await s.client.query(`INSERT INTO ${s.fixed} VALUES (2000, 'after the request'); DELETE FROM ${s.fixed} WHERE id = 50; UPDATE ${s.other} SET v = 'after the request' WHERE id = 2`);
  await streaming(source);
  await s.caughtUp(source);
  await s.assertEqual();
  assert.equal(s.running(), source, 'the same connector: its session restarted, it did not stop');
  // A table created since the connector started: selected by the configuration, not by the running connector.
  await s.client.query(`CREATE TABLE later (id int PRIMARY KEY)`);
  const later = await cli(['resnapshot', '--table', 'public.later', ...s.args]);
  assert.equal(later.code, 1, later.stderr);
  assert.match(later.stderr, /the running source connector read the request but did not take public\.later: it does not select them/);

  const after = (await snapshotState(s)).get(`public.${s.fixed}`);
  assert.equal(after?.kind, 'completed');
  assert.equal(after?.slot, s.config.slotName, 'the slot was kept');
});
