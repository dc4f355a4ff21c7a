/**
 * `shardbridge resnapshot` end to end: refused while the source connector runs and for a table
 * not selected; with the connector stopped, a destination table that lost rows and gained one
 * is repaired by the next start (a truncate, then the table's own snapshot beside the stream)
 * while the other table streams on.
 */
import { after, before, test } from 'node:test';
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

test('resnapshot: refused while the source runs and for a table not selected; then the next start truncates and copies the table again, the other streams on', async (t) => {
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
  sink = await startSinkConnector(sinkCfg, testLogger());
  source = await startSourceConnector(config, testLogger());
  await streaming(source);
  await pipelineCaughtUp(kafka, { client, source }, { db: dst, groupId, topics });

  const running = await cli(['resnapshot', '--table', `public.${fixed}`, '--source-config', file]);
  assert.equal(running.code, 1, running.stderr);
  assert.match(running.stderr, /the source connector is still running: a walsender \(pid \d+\) streams from slot/);
  const unknown = await cli(['resnapshot', '--table', 'public.nope', '--source-config', file]);
  assert.equal(unknown.code, 2, unknown.stderr);
  assert.match(unknown.stderr, /--table public\.nope: not a table the source configuration selects .*selected: .*public\.o_/);
  const snapshotTopic = `${config.topicPrefix}.__snapshot`;
  assert.equal(reduceSnapshotTopic(await readRaw(kafka, snapshotTopic)).tables.get(`public.${fixed}`)?.kind, 'completed', 'nothing written while refused');

  await source.stop();
  source = null;
  // The destination table damaged by hand (as records lost to retention would leave it), the source changed meanwhile.
  await dst.query(`DELETE FROM ${fixed} WHERE id <= 5; INSERT INTO ${fixed} VALUES (1000, 'only at the destination'); UPDATE ${fixed} SET v = 'wrong' WHERE id = 30`);
  await client.query(`UPDATE ${fixed} SET v = 'while stopped' WHERE id = 40; UPDATE ${other} SET v = 'while stopped' WHERE id = 1`);

  const asked = await cli(['resnapshot', '--table', fixed, '--source-config', file, '--json']);
  assert.equal(asked.code, 0, asked.stderr);
  assert.deepEqual(JSON.parse(asked.stdout), { requested: [`public.${fixed}`], alreadyPending: [], next: 'these tables copied beside the stream, the slot kept' });
  const marker = reduceSnapshotTopic(await readRaw(kafka, snapshotTopic)).tables.get(`public.${fixed}`);
  assert.equal(marker?.kind, 'started');
  assert.equal(marker.kind === 'started' && marker.requested, true);
  const status = await cli(['status', '--json', '--sample-seconds', '0', '--source-config', file, '--sink-config', sinkFile]);
  const states = new Map((JSON.parse(status.stdout) as StatusReport).tables.map((x) => [x.table, x.state]));
  assert.deepEqual([states.get(`public.${fixed}`), states.get(`public.${other}`)], ['requested', 'complete'], status.stdout);
  const again = await cli(['resnapshot', '--table', `public.${fixed}`, '--source-config', file]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /already waiting for its snapshot/);

  source = await startSourceConnector(config, testLogger());
  await streaming(source);
  await client.query(`INSERT INTO ${fixed} VALUES (2000, 'after the start'); UPDATE ${other} SET v = 'after the start' WHERE id = 2`);
  await pipelineCaughtUp(kafka, { client, source }, { db: dst, groupId, topics });
  for (const x of [fixed, other]) {
    const want = (await client.query(`SELECT id, v FROM ${x} ORDER BY id`)).rows;
    assert.deepEqual((await dst.query(`SELECT id, v FROM public.${x} ORDER BY id`)).rows, want, x);
  }
  const after = reduceSnapshotTopic(await readRaw(kafka, snapshotTopic)).tables;
  assert.equal(after.get(`public.${fixed}`)?.kind, 'completed');
  assert.equal(after.get(`public.${fixed}`)?.slot, slot, 'the slot was kept');
});
