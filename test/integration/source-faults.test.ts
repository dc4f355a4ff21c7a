/**
 * The source connector under faults: kill -9 of the connector process mid-stream and a
 * restart (every change at least once, in order per key); a restart whose slot replays a
 * truncate (the replayed copies carry a later delivery); its Kafka broker killed and
 * restarted mid-stream (nothing lost, and the slot's confirmed position never passes what
 * Kafka has), then killed again and the source and sink stopped (SIGTERM) without it; a
 * 1,000,000-row transaction streamed by the real CLI with bounded memory.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startKafka } from '../../shared/devstack/kafka.ts';
import { waitFor } from '../../shared/devstack/ports.ts';
import { createKafka, type KafkaClient } from '../../shared/kafka/client.ts';
import { parseLsn } from '../../source-connector/pgoutput-decoder.ts';
import { startSourceConnector } from '../../source-connector/run.ts';
import { parseTruncateKey } from '../../source-connector/truncate-fanout.ts';
import { spawnCli, spawnSourceCli } from '../helpers/cli.ts';
import { testLogger } from '../helpers/kafka.ts';
import { RegistryDecoder, readDecoded, readRaw, startSourceTestEnv, dropSlot, streaming, sumEndOffsets, testSourceConfig, uniquePrefix, walLsn, type SourceTestEnv } from '../helpers/source.ts';

const dir = mkdtempSync(join(tmpdir(), 'sb-source-faults-'));
let env: SourceTestEnv;
let kafka: KafkaClient;
let bootstrap: string;
let registryUrl: string;

before(async () => {
  env = await startSourceTestEnv('test-source-faults');
  ({ kafka, bootstrap, registryUrl } = env);
});

after(async () => {
  await env?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function slotConfirmed(c: pg.Client, slot: string): Promise<bigint | null> {
  const { rows } = await c.query(`SELECT confirmed_flush_lsn::text AS c FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
  return rows[0]?.c ? parseLsn(rows[0].c) : null;
}

/** Counters bumped one by one in their own transactions; `written` holds each key's last value. */
function counterWriter(url: string, keys: number) {
  const written = new Map<number, number>();
  const client = new pg.Client({ connectionString: url });
  let running = true;
  let count = 0;
  const loop = (async () => {
    await client.connect();
    try {
      while (running) {
        const k = 1 + Math.floor(Math.random() * keys);
        const { rows } = await client.query('UPDATE ctr SET n = n + 1 WHERE k = $1 RETURNING n', [k]);
        written.set(k, Number(rows[0].n));
        count++;
      }
    } finally {
      await client.end();
    }
  })();
  return {
    written,
    count: () => count,
    async stop() {
      running = false;
      await loop;
    },
  };
}

/**
 * Per key, the values Kafka holds in partition order must be the snapshot's value, then every
 * later value up to the last one written, first occurrences in order; repeats are allowed
 * only as a replay of a suffix (after a restart).
 */
async function assertCountersComplete(k: KafkaClient, topic: string, written: Map<number, number>, keys: number): Promise<{ duplicates: number }> {
  const records = await readDecoded(k, new RegistryDecoder(registryUrl), topic);
  const seen = new Map<number, { op: string; n: number }[]>();
  for (const r of records) {
    if (!r.afterText) continue;
    const key = Number(r.afterText.k);
    let list = seen.get(key);
    if (!list) seen.set(key, (list = []));
    list.push({ op: r.value!.op, n: Number(r.afterText.n) });
  }
  let duplicates = 0;
  for (let key = 1; key <= keys; key++) {
    const values = seen.get(key) ?? [];
    assert.equal(values[0]?.op, 'r', `key ${key}: the snapshot read comes first`);
    const firsts: number[] = [];
    const had = new Set<number>();
    for (const { n } of values) {
      if (had.has(n)) duplicates++;
      else firsts.push(n);
      had.add(n);
    }
    const from = firsts[0];
    const last = written.get(key) ?? from;
    assert.deepEqual(firsts, Array.from({ length: last - from + 1 }, (_, i) => from + i), `key ${key}: values missing or out of order`);
  }
  return { duplicates };
}

function writeConfig(name: string, config: object): string {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(config));
  return file;
}

test('kill -9 of the connector mid-stream, then a restart: every change at least once, in order per key', async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  const keys = 40;
  await client.query(`CREATE TABLE ctr (k int PRIMARY KEY, n bigint NOT NULL); INSERT INTO ctr SELECT g, 0 FROM generate_series(1, ${keys}) g`);
  const prefix = uniquePrefix();
  const topic = `${prefix}.public.ctr`;
  const file = writeConfig('kill', { source: { url }, kafka: { brokers: [bootstrap] }, schemaRegistry: { url: registryUrl }, topicPrefix: prefix, slotName: slot, metricsPort: 0, heartbeatIntervalMs: 1000 });
  const writer = counterWriter(url, keys);
  t.after(() => writer.stop());

  const first = spawnSourceCli(file);
  t.after(() => first.proc.kill('SIGKILL'));
  await waitFor('changes in Kafka from the first process', async () => (await sumEndOffsets(kafka, topic)) > keys + 300, { timeoutMs: 90_000, intervalMs: 100 }).catch((err: Error) => {
    throw new Error(`${err.message}\n${first.output()}`);
  });
  first.proc.kill('SIGKILL');
  assert.equal((await first.exited).signal, 'SIGKILL');
  const atKill = writer.count();
  await waitFor('writes while the connector is down', () => writer.count() >= atKill + 200);

  const second = spawnSourceCli(file);
  t.after(() => second.proc.kill('SIGKILL'));
  const before = await sumEndOffsets(kafka, topic);
  await waitFor('the restarted process publishing', async () => (await sumEndOffsets(kafka, topic)) > before + 300, { timeoutMs: 90_000, intervalMs: 100 }).catch((err: Error) => {
    throw new Error(`${err.message}\n${second.output()}`);
  });
  await writer.stop();
  const end = await walLsn(client);
  await waitFor('the slot confirmed everything', async () => ((await slotConfirmed(client, slot)) ?? 0n) >= end, { timeoutMs: 60_000, intervalMs: 100 });
  second.proc.kill('SIGTERM');
  const exit = await second.exited;
  assert.equal(exit.code, 143, second.output());

  const { duplicates } = await assertCountersComplete(kafka, topic, writer.written, keys);
  t.diagnostic(`${writer.count()} changes written, ${duplicates} delivered twice after the kill`);
});

test('a restart whose slot replays a truncate: the replayed copies name the same truncate with a later delivery, on every partition', async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  await client.query(`CREATE TABLE items (id int PRIMARY KEY, v text)`);
  const config = testSourceConfig({ sourceUrl: url, kafka: bootstrap, registry: registryUrl, extra: { slotName: slot, topics: { partitions: 3 }, heartbeatIntervalMs: 500 } });
  const topic = `${config.topicPrefix}.public.items`;
  const first = await startSourceConnector(config, testLogger());
  t.after(() => first.stop());
  await streaming(first);
  await client.query(`INSERT INTO items SELECT g, 'before' FROM generate_series(1, 30) g`);
  const beforeTruncate = await walLsn(client);
  await waitFor('the slot confirmed the rows before the truncate', async () => ((await slotConfirmed(client, slot)) ?? 0n) >= beforeTruncate, { timeoutMs: 60_000, intervalMs: 100 });
  // The slot as a connector killed before it confirmed the truncate leaves it: a copy taken now, put back after the stop.
  await client.query(`SELECT pg_copy_logical_replication_slot($1, $2)`, [slot, `${slot}_kept`]);
  t.after(() => client.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, [`${slot}_kept`]).catch(() => {}));
  await client.query(`TRUNCATE items`);
  await client.query(`INSERT INTO items SELECT g, 'after' FROM generate_series(21, 40) g`);
  // 30 rows, 3 truncate copies, 20 rows.
  await waitFor('the first session published everything', async () => (await sumEndOffsets(kafka, topic)) >= 53, { timeoutMs: 60_000, intervalMs: 100 });
  await first.stop();
  await first.done;
  await dropSlot(client, slot);
  await client.query(`SELECT pg_copy_logical_replication_slot($1, $2)`, [`${slot}_kept`, slot]);
  await client.query(`SELECT pg_drop_replication_slot($1)`, [`${slot}_kept`]);

  const second = await startSourceConnector(config, testLogger());
  t.after(() => second.stop());
  await waitFor('the replay published', async () => (await sumEndOffsets(kafka, topic)) >= 76, { timeoutMs: 60_000, intervalMs: 100 });
  await second.stop();
  await second.done;

  const copies = (await readRaw(kafka, topic)).flatMap((r) => {
    const key = parseTruncateKey(r.key);
    return key ? [{ ...key, at: r.partition, offset: r.offset }] : [];
  });
  assert.equal(copies.length, 6, 'one copy per partition from each session');
  for (let p = 0; p < 3; p++) {
    const [sent, replayed, ...more] = copies.filter((c) => c.at === p);
    assert.deepEqual(more, [], `partition ${p}: two copies`);
    assert.equal(sent.partition, p);
    assert.equal(replayed.partition, p);
    assert.equal(replayed.id, sent.id, `partition ${p}: the replay names the same truncate`);
    assert.ok(sent.delivery > 0, `partition ${p}: the first session's delivery is set`);
    assert.ok(replayed.delivery > sent.delivery, `partition ${p}: the replayed copy's delivery ${replayed.delivery} is later than ${sent.delivery}`);
  }
  assert.equal(new Set(copies.map((c) => c.delivery)).size, 2, 'one delivery per session, the same on all its copies');
});

test('the broker killed and restarted mid-stream: both connectors go on without a restart, nothing lost, the slot never confirms past what Kafka has; killed again, SIGTERM: both end promptly, the slot keeps what Kafka does not have', async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  // The sink's destination: another database of the source cluster (no cluster of its own to start).
  const { url: destUrl, client: dest } = await env.freshDatabase(t);
  const keys = 40;
  await client.query(`CREATE TABLE ctr (k int PRIMARY KEY, n bigint NOT NULL); INSERT INTO ctr SELECT g, 0 FROM generate_series(1, ${keys}) g`);
  await dest.query(`CREATE TABLE ctr (k int PRIMARY KEY, n bigint NOT NULL)`);
  const brokerDir = mkdtempSync(join(tmpdir(), 'sb-source-broker-'));
  const broker = await startKafka({ dataDir: brokerDir, logger: testLogger() });
  t.after(async () => {
    await broker.stop();
    rmSync(brokerDir, { recursive: true, force: true });
  });
  const own = createKafka({ brokers: [broker.bootstrap], clientId: 'test-source-broker' }, testLogger());
  const prefix = uniquePrefix();
  const topic = `${prefix}.public.ctr`;
  const kafkaAt = { brokers: [broker.bootstrap] };
  // CLI processes: the stop is the SIGTERM an operator sends, their warnings are in output().
  const source = spawnSourceCli(writeConfig('broker', { source: { url }, kafka: kafkaAt, schemaRegistry: { url: registryUrl }, topicPrefix: prefix, slotName: slot, metricsPort: 0, heartbeatIntervalMs: 500 }));
  const sink = spawnCli('sink', writeConfig('broker-sink', { groupId: `${prefix}-sink`, topicPrefix: prefix, kafka: kafkaAt, schemaRegistry: { url: registryUrl }, destination: { url: destUrl }, metricsPort: 0 }));
  t.after(() => {
    source.proc.kill('SIGKILL');
    sink.proc.kill('SIGKILL');
  });
  const writer = counterWriter(url, keys);
  t.after(() => writer.stop());
  await waitFor('changes in Kafka', async () => (await sumEndOffsets(own, topic)) > keys + 300, { timeoutMs: 90_000, intervalMs: 100 }).catch((err: Error) => {
    throw new Error(`${err.message}\n${source.output()}`);
  });

  await broker.crash();
  const atCrash = await walLsn(client);
  const written = writer.count();
  // While Kafka is down, nothing written after the crash can be acknowledged: the slot must stay at or before it.
  const samples: bigint[] = [];
  await waitFor('writes and confirm ticks during the outage', async () => {
    samples.push((await slotConfirmed(client, slot)) ?? 0n);
    return writer.count() >= written + 300 && samples.length >= 20;
  }, { timeoutMs: 60_000, intervalMs: 100 });
  const beyond = samples.filter((c) => c > atCrash);
  assert.deepEqual(beyond, [], `the slot confirmed past the crash position ${atCrash} while the broker was down`);

  await broker.restart();
  const before = await sumEndOffsets(own, topic);
  await waitFor('publishing after the restart', async () => (await sumEndOffsets(own, topic)) > before + 300, { timeoutMs: 90_000, intervalMs: 200 });
  await writer.stop();
  const end = await walLsn(client);
  await waitFor('the slot confirmed everything', async () => ((await slotConfirmed(client, slot)) ?? 0n) >= end, { timeoutMs: 60_000, intervalMs: 100 });
  await assertCountersComplete(own, topic, writer.written, keys);
  const expected = Array.from({ length: keys }, (_, i) => ({ k: i + 1, n: writer.written.get(i + 1) ?? 0 }));
  const applied = async () => (await dest.query('SELECT k, n::int AS n FROM ctr ORDER BY k')).rows;
  await waitFor('the sink applied every change', async () => JSON.stringify(await applied()) === JSON.stringify(expected), { timeoutMs: 90_000, intervalMs: 200 }).catch((err: Error) => {
    throw new Error(`${err.message}\n${sink.output()}`);
  });

  // Killed again with everything before it in Kafka (confirmed above) and changes written after it in flight, then SIGTERM to both.
  await broker.crash();
  const more = counterWriter(url, keys);
  t.after(() => more.stop());
  await waitFor('changes written while Kafka is gone', () => more.count() >= 100, { timeoutMs: 30_000 });
  const stopping = Date.now();
  source.proc.kill('SIGTERM');
  sink.proc.kill('SIGTERM');
  const [sourceExit, sinkExit] = await Promise.all([source.exited, sink.exited].map((p) => p.then((e) => ({ ...e, ms: Date.now() - stopping }))));
  await more.stop();
  t.diagnostic(`stopped with the broker dead: the source in ${sourceExit.ms} ms, the sink in ${sinkExit.ms} ms`);
  assert.equal(sourceExit.code, 143, source.output());
  assert.equal(sinkExit.code, 143, sink.output());
  // The source gives its flush up after 1.5 s without an answer; the sink's stop does not wait for Kafka: 10 s is a wide margin.
  assert.ok(sourceExit.ms < 10_000, `the source took ${sourceExit.ms} ms to stop`);
  assert.ok(sinkExit.ms < 10_000, `the sink took ${sinkExit.ms} ms to stop`);
  assert.match(source.output(), /Kafka did not acknowledge everything before the stream closed: the unconfirmed part will be read again/);
  // Kafka holds every change before the second crash and none after it: what the slot would send from
  // its confirmed position (peeked through a copy of it) must be every change written since.
  const peek = `${slot}_peek`;
  await client.query(`SELECT pg_copy_logical_replication_slot($1, $2, true, 'test_decoding')`, [slot, peek]);
  const { rows: [kept] } = await client.query(`SELECT count(*)::int AS n FROM pg_logical_slot_peek_changes($1, NULL, NULL) WHERE data LIKE 'table public.ctr: UPDATE:%'`, [peek]);
  await client.query(`SELECT pg_drop_replication_slot($1)`, [peek]);
  assert.equal(kept.n, more.count(), `the slot keeps ${kept.n} of the ${more.count()} changes written after Kafka went away`);
  assert.deepEqual(await applied(), expected, 'the sink applied nothing more (there was nothing more in Kafka)');
});

test('a 1,000,000-row transaction streams through the CLI with bounded memory', async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  await client.query(`CREATE TABLE bulk (id int PRIMARY KEY, v text, amount numeric(12,2))`);
  const prefix = uniquePrefix();
  const topic = `${prefix}.public.bulk`;
  const file = writeConfig('bulk', { source: { url }, kafka: { brokers: [bootstrap] }, schemaRegistry: { url: registryUrl }, topicPrefix: prefix, slotName: slot, metricsPort: 0 });
  const child = spawnSourceCli(file);
  t.after(() => child.proc.kill('SIGKILL'));
  await waitFor('the slot streaming', async () => {
    const { rows } = await client.query(`SELECT active FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
    return rows[0]?.active === true;
  }, { timeoutMs: 60_000, intervalMs: 100 }).catch((err: Error) => {
    throw new Error(`${err.message}\n${child.output()}`);
  });

  let peakRss = 0;
  const sampleRss = () => {
    try {
      const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.proc.pid}/status`, 'utf8'))?.[1] ?? 0);
      peakRss = Math.max(peakRss, kb * 1024);
    } catch {
      // exited
    }
  };
  sampleRss();
  const idleRss = peakRss;
  const sampler = setInterval(sampleRss, 100);
  t.after(() => clearInterval(sampler));
  const started = Date.now();
  await client.query(`INSERT INTO bulk SELECT g, md5(g::text), g / 100.0 FROM generate_series(1, 1000000) g`);
  const inserted = Date.now();
  await waitFor('1,000,000 records in Kafka', async () => (await sumEndOffsets(kafka, topic)) >= 1_000_000, { timeoutMs: 170_000, intervalMs: 250 }).catch((err: Error) => {
    throw new Error(`${err.message}\n${child.output()}`);
  });
  const published = Date.now();
  clearInterval(sampler);
  sampleRss();
  child.proc.kill('SIGTERM');
  assert.equal((await child.exited).code, 143, child.output());
  const secs = (published - inserted) / 1000;
  t.diagnostic(`insert ${(inserted - started) / 1000} s, streamed in ${secs} s after the commit (${Math.round(1_000_000 / secs)} rows/s), RSS ${Math.round(idleRss / 1048576)} MB idle, ${Math.round(peakRss / 1048576)} MB peak`);
  assert.equal(await sumEndOffsets(kafka, topic), 1_000_000, 'one record per row');
  assert.ok(peakRss > 0, 'RSS was sampled');
  assert.ok(peakRss < 300 * 1048576, `peak RSS ${Math.round(peakRss / 1048576)} MB`);
});

test('text that is not valid UTF-8 (a SQL_ASCII database) stops the snapshot naming the table, the SQLSTATE and the remedy', async () => {
  const name = `ascii_${process.pid}_${Date.now().toString(36)}`;
  const admin = new pg.Client({ connectionString: env.source.url() });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`);
  const client = new pg.Client({ connectionString: env.source.url(name) });
  await client.connect();
  try {
    await client.query(`CREATE TABLE latin (id int PRIMARY KEY, v text); INSERT INTO latin VALUES (1, 'plain'), (2, E'caf\\374')`);
    const conn = await startSourceConnector(testSourceConfig({ sourceUrl: env.source.url(name), kafka: bootstrap, registry: registryUrl, extra: { slotName: `slot_${name}` } }), testLogger());
    const err = await conn.done.then(() => null, (e: unknown) => e as Error & { context?: Record<string, unknown>; remedy?: string });
    assert.ok(err, 'the connector stopped');
    assert.match(err.message, /^reading the snapshot of public\.latin failed: invalid byte sequence for encoding "UTF8"/);
    assert.deepEqual([err.context?.table, err.context?.sqlstate], ['public.latin', '22021']);
    assert.match(err.remedy ?? '', /not valid UTF-8 \(a SQL_ASCII database\)/);
  } finally {
    await client.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, [`slot_${name}`]).catch(() => {});
    await client.end();
    await admin.query(`DROP DATABASE ${name}`).catch(() => {});
    await admin.end();
  }
});
