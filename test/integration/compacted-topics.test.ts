/**
 * A table topic under `cleanup.policy=compact` (`topics.cleanupPolicy`), compacted for real by
 * the broker within seconds (short segments, any dirty ratio, no lag; the dev broker's cleaner
 * looks every 250 ms): compaction removes a deleted key's delete record (its tombstone stays for
 * `delete.retention.ms`) and every superseded record; truncate copies (one key per partition and
 * delivery) stay. The sink must converge from what is left: lagging behind the compaction, on a
 * replay over its own destination, and on a replay over a destination restored from an older
 * backup (docs/source-connector.md, "Kafka operations").
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import pino from 'pino';
import { waitFor } from '../../shared/devstack/ports.ts';
import { startSourceConnector } from '../../source-connector/run.ts';
import { startSinkConnector } from '../../sink-connector/connector.ts';
import { runCli } from '../helpers/cli.ts';
import { testLogger } from '../helpers/kafka.ts';
import { getTestDestination } from '../helpers/postgres.ts';
import { pipelineCaughtUp, sinkConfig } from '../helpers/sink.ts';
import { RegistryDecoder, caughtUp, readDecoded, startSourceTestEnv, streaming, testSourceConfig, walLsn, type SourceTestEnv } from '../helpers/source.ts';

let env: SourceTestEnv;
let dest: { url: string; release(): Promise<void> } | undefined;
const dir = mkdtempSync(join(tmpdir(), 'sb-compacted-'));

before(async () => {
  env = await startSourceTestEnv('test-compacted-topics');
  dest = await getTestDestination();
});

after(async () => {
  await dest?.release();
  await env?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Every line at debug and above (the gap check speaks at debug). */
function debugLogger(): { logger: pino.Logger; lines: () => Record<string, any>[] } {
  const lines: Record<string, any>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, pino.multistream([{ stream, level: 'debug' }, { stream: process.stderr, level: 'warn' }])), lines: () => lines };
}

test('a compacted table topic: a lagging sink, a replay over its own destination and a replay over a restored older backup all end equal to the source', async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  const name = `comp_${slot.slice(-8)}`;
  await client.query(`CREATE TABLE ${name} (id int PRIMARY KEY, v text); INSERT INTO ${name} SELECT g, 'snapshot' FROM generate_series(1, 40) g`);
  const config = testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, extra: { slotName: slot, topics: { partitions: 2, cleanupPolicy: 'compact' } } });
  const topic = `${config.topicPrefix}.public.${name}`;
  // What an operator sets to compact within seconds; the source keeps an existing topic's settings.
  const admin = env.kafka.admin();
  try {
    await admin.ensureTopics([{
      topic, partitions: 2, replicationFactor: 1,
      configs: { 'cleanup.policy': 'compact', 'segment.ms': '100', 'min.cleanable.dirty.ratio': '0.01', 'min.compaction.lag.ms': '0', 'delete.retention.ms': '3600000' },
    }]);
  } finally {
    await admin.disconnect();
  }
  const source = await startSourceConnector(config, testLogger());
  t.after(() => source.stop());
  await streaming(source);

  const dst = new pg.Client({ connectionString: dest!.url });
  await dst.connect();
  await dst.query(`CREATE TABLE public.${name} (id int PRIMARY KEY, v text)`);
  t.after(() => dst.query(`DROP TABLE IF EXISTS public.${name}`).finally(() => dst.end()));
  const groupId = `g-${config.topicPrefix}`;
  const sinkCfg = sinkConfig({ kafka: env.bootstrap, registry: env.registryUrl, destination: dest!.url, prefix: config.topicPrefix, groupId });
  const configFile = join(dir, `${name}.json`);
  writeFileSync(configFile, JSON.stringify(sinkCfg));
  const sinkTo = { db: dst, groupId, topics: [topic] };
  const want = async () => (await client.query(`SELECT id, v FROM ${name} ORDER BY id`)).rows;
  const have = async () => (await dst.query(`SELECT id, v FROM public.${name} ORDER BY id`)).rows;

  // The sink applies the snapshot, updates, deletes, a truncate and rows after it, then stops (a lagging sink).
  await client.query(`UPDATE ${name} SET v = 'u1' WHERE id <= 30`);
  await client.query(`DELETE FROM ${name} WHERE id <= 5`);
  await client.query(`TRUNCATE ${name}`);
  await client.query(`INSERT INTO ${name} SELECT g, 'after' FROM generate_series(1, 30) g`);
  await client.query(`UPDATE ${name} SET v = 'u2' WHERE id % 2 = 0`);
  let sink = await startSinkConnector(sinkCfg, testLogger());
  await pipelineCaughtUp(env.kafka, { client, source }, sinkTo);
  await sink.stop();
  assert.deepEqual(await have(), await want());

  // While it is stopped: deletes and a key change (a delete of the old key, its tombstone, a create).
  await client.query(`DELETE FROM ${name} WHERE id BETWEEN 21 AND 25`);
  await client.query(`UPDATE ${name} SET id = 126 WHERE id = 26`);
  await caughtUp(source, await walLsn(client));

  // Compaction: a later write rolls each partition's segment (segment.ms), the cleaner then
  // compacts it. Done once the deletes of 21..26 are gone and their tombstones remain.
  const decoder = new RegistryDecoder(env.registryUrl);
  const deleted = new Set([21, 22, 23, 24, 25, 26]);
  let records: Awaited<ReturnType<typeof readDecoded>> = [];
  await waitFor('the topic compacted', async () => {
    await client.query(`UPDATE ${name} SET v = v WHERE id <= 10`);
    records = await readDecoded(env.kafka, decoder, topic);
    return !records.some((r) => r.value?.op === 'd' && deleted.has(Number(r.key?.id)));
  }, { timeoutMs: 60_000, intervalMs: 500 });
  const tombstones = records.filter((r) => r.value === null && deleted.has(Number(r.key?.id)));
  assert.equal(tombstones.length, 6, 'the tombstones of the deleted keys stay (delete.retention.ms)');
  assert.equal(records.filter((r) => r.value?.op === 't').length, 2, 'both truncate copies stay');
  const admin2 = env.kafka.admin();
  const ends = await admin2.endOffsets(topic).finally(() => admin2.disconnect());
  const total = ends.reduce((n, e) => n + Number(e.offset), 0);
  assert.ok(records.length < total, `offsets without records: ${records.length} records below end offsets summing to ${total}`);

  // (c) The lagging sink starts: the delete records it never applied are gone, their tombstones remain.
  const lagging = debugLogger();
  sink = await startSinkConnector(sinkCfg, lagging.logger);
  await pipelineCaughtUp(env.kafka, { client, source }, sinkTo);
  await sink.stop();
  const wrong: string[] = [];
  const compare = async (what: string) => {
    const h = await have();
    const w = await want();
    if (JSON.stringify(h) !== JSON.stringify(w)) {
      const extra = h.filter((x) => !w.some((y) => y.id === x.id)).map((x) => x.id);
      wrong.push(`${what}: rows the source does not have: ${extra.join(',')}`);
      if (extra.length > 0) await dst.query(`DELETE FROM public.${name} WHERE id = ANY($1)`, [extra]); // the next step starts equal
    }
  };
  await compare('a sink behind the compaction');

  // (a) A replay from 0 over the sink's own destination.
  let r = await runCli(['replay', '--topic', topic, '--to-offset', '0', '--sink-config', configFile]);
  assert.equal(r.code, 0, r.stderr);
  const replaying = debugLogger();
  sink = await startSinkConnector(sinkCfg, replaying.logger);
  await pipelineCaughtUp(env.kafka, { client, source }, sinkTo);
  // The snapshot's records are compacted, its completion marker's end offsets still passed (checked every few seconds).
  const state = async () => (await dst.query('SELECT state FROM shardbridge.snapshot_status WHERE topic = $1', [topic])).rows[0]?.state;
  await waitFor('the snapshot complete again after the replay', async () => (await state()) === 'complete', { timeoutMs: 30_000, intervalMs: 200 });
  await sink.stop();
  await compare('a replay over its own destination');
  const gaps = replaying.lines().filter((l) => /^offsets without records before the batch/.test(l.msg));
  assert.ok(gaps.length > 0, 'compacted offsets are seen as offsets without records');
  assert.ok(!replaying.lines().some((l) => l.reason === 'gap' || /records the sink never applied are gone/.test(l.msg ?? '')), 'and never as lost records');
  // (b) The destination restored from an older backup: rows the source deleted since are back.
  await dst.query(`INSERT INTO public.${name} SELECT g, 'backup' FROM generate_series(21, 26) g`);
  r = await runCli(['replay', '--topic', topic, '--to-offset', '0', '--sink-config', configFile]);
  assert.equal(r.code, 0, r.stderr);
  sink = await startSinkConnector(sinkCfg, testLogger());
  t.after(() => sink.stop());
  await pipelineCaughtUp(env.kafka, { client, source }, sinkTo);
  await compare('a replay over a restored older backup');
  assert.deepEqual(wrong, []);
});
