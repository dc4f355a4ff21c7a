/**
 * The source connector when PostgreSQL goes away under it: the walsender killed
 * (pg_terminate_backend) and the whole source cluster restarted mid-stream — the connector
 * reconnects by itself with backoff (and logs it), every change reaches Kafka at least once,
 * in order per key; a slot invalidated by max_slot_wal_keep_size while the connector process
 * is stopped (SIGSTOP) — it stops with an error naming the slot and the remedy, exit code 1;
 * a TRUNCATE on a 3-partition topic — one `t` record on every partition, after that
 * partition's earlier rows and before its later ones.
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import type { PgCluster } from '../../shared/devstack/postgres.ts';
import { waitFor } from '../../shared/devstack/ports.ts';
import type { KafkaClient } from '../../shared/kafka/client.ts';
import { parseLsn } from '../../source-connector/pgoutput-decoder.ts';
import { startSourceConnector, type SourceConnector } from '../../source-connector/run.ts';
import { parseTruncateKey } from '../../source-connector/truncate-fanout.ts';
import { startSinkConnector } from '../../sink-connector/connector.ts';
import { runCli, spawnSourceCli } from '../helpers/cli.ts';
import { getTestDestination, startTestSource } from '../helpers/postgres.ts';
import { sinkConfig, waitApplied } from '../helpers/sink.ts';
import { RegistryDecoder, readDecoded, readRaw, startSourceTestEnv, testSourceConfig, uniquePrefix, walLsn, sumEndOffsets, type SourceTestEnv } from '../helpers/source.ts';

const dir = mkdtempSync(join(tmpdir(), 'sb-source-reconnect-'));
let env: SourceTestEnv;
let kafka: KafkaClient;
/** A second source cluster of this file's own: restarted and given a tiny max_slot_wal_keep_size. */
let own: PgCluster;

before(async () => {
  env = await startSourceTestEnv('test-source-reconnect');
  kafka = env.kafka;
  own = await startTestSource();
});

after(async () => {
  await own?.destroy();
  await env?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A pino logger that keeps its lines (to prove what was logged) and forwards warnings to stderr. */
function capturingLogger() {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = [];
  const logger = pino({ level: 'info' }, {
    write(s: string) {
      const line = JSON.parse(s);
      lines.push(line);
      if (line.level >= 40 && process.env.SHARDBRIDGE_TEST_LOG) process.stderr.write(s);
    },
  });
  return { logger, lines };
}

/** A client that survives its server going away (no unhandled 'error' event). */
async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  return c;
}

/**
 * Counters bumped one by one in their own transactions, reconnecting when the server goes
 * away. The database, not this writer, is the truth at the end (a commit whose reply was
 * lost still counts).
 */
function counterWriter(url: string, keys: number) {
  let running = true;
  let count = 0;
  let failures = 0;
  const loop = (async () => {
    let client: pg.Client | null = null;
    while (running) {
      try {
        client ??= await connect(url);
        await client.query('UPDATE ctr SET n = n + 1 WHERE k = $1', [1 + Math.floor(Math.random() * keys)]);
        count++;
      } catch {
        failures++;
        await client?.end().catch(() => {});
        client = null;
        await new Promise((r) => setTimeout(r, 100)); // pacing while the server is down, not synchronisation
      }
    }
    await client?.end().catch(() => {});
  })();
  return {
    count: () => count,
    failures: () => failures,
    async stop() {
      running = false;
      await loop;
    },
  };
}

async function slotState(c: pg.ClientBase, slot: string): Promise<{ active_pid: number | null; confirmed: string | null; wal_status: string } | undefined> {
  const { rows } = await c.query(`SELECT active_pid, confirmed_flush_lsn::text AS confirmed, wal_status FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
  return rows[0];
}

/**
 * Per key, the values Kafka holds in partition order: the snapshot's value first, then every
 * value up to the database's final one, first occurrences consecutive and in order (a repeat
 * is a replay after a reconnect: allowed, never a gap).
 */
async function assertCountersComplete(db: pg.ClientBase, topic: string, registryUrl: string): Promise<{ duplicates: number; changes: number }> {
  const final = new Map((await db.query('SELECT k, n FROM ctr')).rows.map((r) => [Number(r.k), Number(r.n)]));
  const records = await readDecoded(kafka, new RegistryDecoder(registryUrl), topic);
  const seen = new Map<number, { op: string; n: number }[]>();
  for (const r of records) {
    if (!r.afterText) continue;
    const key = Number(r.afterText.k);
    let list = seen.get(key);
    if (!list) seen.set(key, (list = []));
    list.push({ op: r.value!.op, n: Number(r.afterText.n) });
  }
  let duplicates = 0;
  let changes = 0;
  for (const [key, last] of final) {
    const values = seen.get(key) ?? [];
    assert.equal(values[0]?.op, 'r', `key ${key}: the snapshot read comes first`);
    const firsts: number[] = [];
    const had = new Set<number>();
    for (const { n } of values) {
      if (had.has(n)) duplicates++;
      else firsts.push(n);
      had.add(n);
    }
    assert.deepEqual(firsts, Array.from({ length: last - firsts[0] + 1 }, (_, i) => firsts[0] + i), `key ${key}: values missing or out of order`);
    changes += firsts.length - 1;
  }
  return { duplicates, changes };
}

async function setupCounters(client: pg.ClientBase, keys: number): Promise<void> {
  await client.query(`CREATE TABLE ctr (k int PRIMARY KEY, n bigint NOT NULL); INSERT INTO ctr SELECT g, 0 FROM generate_series(1, ${keys}) g`);
}

const retryLogged = <T extends { msg: string }>(lines: T[]) => lines.filter((l) => /source connector session failed, retrying in \d+ ms/.test(l.msg));

/** Counter table, the connector streaming it and a writer updating it, until Kafka has a few hundred changes. */
async function startCounting(t: TestContext, client: pg.ClientBase, url: string, slot: string, keys: number) {
  await setupCounters(client, keys);
  const { logger, lines } = capturingLogger();
  const config = testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, extra: { slotName: slot, heartbeatIntervalMs: 500 } });
  const topic = `${config.topicPrefix}.public.ctr`;
  const conn = await startSourceConnector(config, logger);
  t.after(() => conn.stop());
  const writer = counterWriter(url, keys);
  t.after(() => writer.stop());
  await waitFor('changes in Kafka', async () => (await sumEndOffsets(kafka, topic)) > keys + 200, { timeoutMs: 90_000, intervalMs: 100 });
  return { conn, writer, lines, topic };
}

test('the walsender killed twice mid-stream: the connector reconnects with backoff, nothing lost, in order per key', async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  const keys = 30;
  const { conn, writer, lines, topic } = await startCounting(t, client, url, slot, keys);

  for (let round = 1; round <= 2; round++) {
    const pid = (await slotState(client, slot))?.active_pid;
    assert.ok(pid, 'a walsender streams from the slot');
    const { rows } = await client.query(
      `SELECT pg_terminate_backend(r.pid) AS killed FROM pg_stat_replication r WHERE r.pid = $1`,
      [pid],
    );
    assert.deepEqual(rows, [{ killed: true }]);
    const atKill = writer.count();
    await waitFor(`reconnect ${round}: a new walsender on the slot`, async () => {
      const s = await slotState(client, slot);
      return s?.active_pid != null && s.active_pid !== pid && writer.count() > atKill + 100;
    }, { timeoutMs: 60_000, intervalMs: 100 });
    await waitFor(`retry ${round} logged`, () => retryLogged(lines).length >= round, { timeoutMs: 10_000, intervalMs: 50 });
    const published = await sumEndOffsets(kafka, topic);
    await waitFor(`publishing after reconnect ${round}`, async () => (await sumEndOffsets(kafka, topic)) > published + 100, { timeoutMs: 60_000, intervalMs: 100 });
  }
  await writer.stop();
  const end = await walLsn(client);
  await waitFor('the slot confirmed everything', async () => parseLsn((await slotState(client, slot))?.confirmed ?? '0/0') >= end, { timeoutMs: 60_000, intervalMs: 100 });

  const retries = retryLogged(lines);
  assert.ok(retries.every((l) => typeof l.delayMs === 'number' && (l.delayMs as number) > 0), 'each retry logs its backoff delay');
  assert.ok(retries.every((l) => (l.err as { message?: string })?.message?.match(/replication connection lost|terminat/i)), JSON.stringify(retries.map((l) => l.err)));
  assert.equal(conn.state().phase, 'streaming');
  const { duplicates, changes } = await assertCountersComplete(client, topic, env.registryUrl);
  t.diagnostic(`${changes} changes checked, ${duplicates} delivered twice, ${retries.length} retries logged`);
  await conn.stop();
  await conn.done;
});

/** A source connector's gauge value (labels matched exactly; undefined when not set). */
async function gauge(conn: SourceConnector, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const values = (await conn.metrics.registry.getSingleMetric(`shardbridge_source_${name}`)!.get()).values;
  return values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value;
}

test('the source cluster down, then up again mid-stream: phase and the slot gauges\' age say so while it is down; the connector reconnects with backoff, nothing lost, in order per key', async (t) => {
  const db = `t_restart_${Date.now().toString(36)}`;
  const admin = await connect(own.url());
  await admin.query(`CREATE DATABASE ${db}`);
  await admin.end();
  const url = own.url(db);
  const slot = `slot_${db}`;
  let client = await connect(url);
  t.after(() => client.end().catch(() => {}));
  const keys = 30;
  const { conn, writer, lines, topic } = await startCounting(t, client, url, slot, keys);

  assert.equal(await gauge(conn, 'phase', { phase: 'streaming' }), 1);
  await own.stop();
  await waitFor('phase retrying', async () => (await gauge(conn, 'phase', { phase: 'retrying' })) === 1, { timeoutMs: 60_000, intervalMs: 100 });
  assert.equal(await gauge(conn, 'phase', { phase: 'streaming' }), 0);
  const ageDown = (await gauge(conn, 'slot_status_age_seconds'))!;
  assert.ok(ageDown >= 0, `the slot was read before the outage (age ${ageDown})`);
  await waitFor('the slot gauges\' age growing while the source is down', async () => (await gauge(conn, 'slot_status_age_seconds'))! > ageDown + 1, { timeoutMs: 30_000, intervalMs: 200 });
  await own.restart();
  await client.end().catch(() => {});
  client = await connect(url);
  const failuresSeen = writer.failures();
  assert.ok(failuresSeen > 0, 'the writer saw the server go away');
  const atRestart = writer.count();
  await waitFor('writes after the restart', () => writer.count() > atRestart + 200, { timeoutMs: 60_000, intervalMs: 100 });
  await waitFor('retry logged', () => retryLogged(lines).length >= 1, { timeoutMs: 60_000, intervalMs: 50 });
  await waitFor('streaming again', async () => (await slotState(client, slot))?.active_pid != null && conn.state().phase === 'streaming', { timeoutMs: 90_000, intervalMs: 100 });
  assert.deepEqual([await gauge(conn, 'phase', { phase: 'streaming' }), await gauge(conn, 'phase', { phase: 'retrying' })], [1, 0]);
  await waitFor('the slot read again', async () => (await gauge(conn, 'slot_status_age_seconds'))! < ageDown + 1, { timeoutMs: 30_000, intervalMs: 200 });
  await writer.stop();
  const end = await walLsn(client);
  await waitFor('the slot confirmed everything', async () => parseLsn((await slotState(client, slot))?.confirmed ?? '0/0') >= end, { timeoutMs: 90_000, intervalMs: 100 });

  const { duplicates, changes } = await assertCountersComplete(client, topic, env.registryUrl);
  t.diagnostic(`${changes} changes checked, ${duplicates} delivered twice, ${retryLogged(lines).length} retries logged`);
  await conn.stop();
  await conn.done;
});

test('the slot invalidated while the connector is stalled: it stops with an error naming the slot and the remedy, exit code 1', async (t) => {
  const db = `t_lost_${Date.now().toString(36)}`;
  const admin = await connect(own.url());
  t.after(async () => {
    await admin.query(`ALTER SYSTEM RESET max_slot_wal_keep_size`).catch(() => {});
    await admin.query('SELECT pg_reload_conf()').catch(() => {});
    await admin.end();
  });
  await admin.query(`CREATE DATABASE ${db}`);
  const url = own.url(db);
  const slot = `slot_${db}`;
  const client = await connect(url);
  t.after(() => client.end().catch(() => {}));
  await client.query(`CREATE TABLE items (id int PRIMARY KEY, v text)`);
  const prefix = uniquePrefix();
  const file = join(dir, 'lost.json');
  writeFileSync(file, JSON.stringify({ source: { url }, kafka: { brokers: [env.bootstrap] }, schemaRegistry: { url: env.registryUrl }, topicPrefix: prefix, slotName: slot, metricsPort: 0 }));
  const child = spawnSourceCli(file, 40_000);
  t.after(() => {
    child.proc.kill('SIGCONT');
    child.proc.kill('SIGKILL');
  });
  const fail = (err: Error) => {
    throw new Error(`${err.message}\n${child.output()}`);
  };
  await waitFor('the connector streaming', async () => (await slotState(client, slot))?.active_pid != null, { timeoutMs: 90_000, intervalMs: 100 }).catch(fail);
  await client.query(`INSERT INTO items VALUES (1, 'streamed')`);
  await waitFor('the insert in Kafka', async () => (await sumEndOffsets(kafka, `${prefix}.public.items`)) >= 1, { timeoutMs: 60_000, intervalMs: 100 }).catch(fail);

  // Stalled: the process stops reading; the source writes far more WAL than the slot may keep.
  child.proc.kill('SIGSTOP');
  await admin.query(`ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'`);
  await admin.query('SELECT pg_reload_conf()');
  await waitFor('wal_status = lost', async () => {
    await client.query(`INSERT INTO items SELECT g, repeat('x', 200) FROM generate_series(1000, 4000) g ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v || '!'`);
    await client.query('SELECT pg_switch_wal()');
    await client.query('CHECKPOINT');
    return (await slotState(client, slot))?.wal_status === 'lost';
  }, { timeoutMs: 90_000, intervalMs: 10 });

  child.proc.kill('SIGCONT');
  let exited: Awaited<typeof child.exited> | null = null;
  void child.exited.then((e) => (exited = e));
  // Polled, not raced: a race would leave the poll running (and the file waiting) for its whole deadline.
  const exit = await waitFor('the connector exiting', () => exited, { timeoutMs: 90_000, intervalMs: 200 }).catch(fail);
  assert.equal(exit.code, 1, child.output());
  const out = child.output();
  assert.match(out, new RegExp(`replication slot "${slot}" was invalidated \\(wal_status = lost[^\\n]*changes were lost`));
  assert.match(out, /remedy[^\n]*take a new snapshot/i);
  assert.match(out, /cleanup --force --drop-topics --drop-control-tables[^\n]*empty the destination tables/, 'the remedy names the clean-up and the emptied destination');
});

test('a TRUNCATE on a 3-partition topic: one t record on every partition, after its earlier rows and before its later ones', async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  await client.query(`CREATE TABLE items (id int PRIMARY KEY, v text)`);
  const config = testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, extra: { slotName: slot, topics: { partitions: 3 } } });
  const topic = `${config.topicPrefix}.public.items`;
  const conn = await startSourceConnector(config, capturingLogger().logger);
  t.after(() => conn.stop());
  await waitFor('streaming', () => conn.state().phase === 'streaming', { timeoutMs: 60_000, intervalMs: 50 });
  await client.query(`INSERT INTO items SELECT g, 'before' FROM generate_series(1, 60) g`);
  await client.query(`TRUNCATE items`);
  await client.query(`INSERT INTO items SELECT g, 'after' FROM generate_series(31, 90) g`);
  // 60 rows, 3 truncate records, 60 rows.
  await waitFor('everything in Kafka', async () => (await sumEndOffsets(kafka, topic)) >= 123, { timeoutMs: 60_000, intervalMs: 100 });
  await conn.stop();
  await conn.done;

  const raw = await readRaw(kafka, topic);
  const decoded = await readDecoded(kafka, new RegistryDecoder(env.registryUrl), topic);
  assert.equal(raw.length, 123);
  const ids = new Set<string>();
  for (let p = 0; p < 3; p++) {
    const recs = decoded.filter((r) => r.partition === p);
    const raws = raw.filter((r) => r.partition === p);
    const at = recs.findIndex((r) => r.value?.op === 't');
    assert.ok(at >= 0, `partition ${p} has the truncate`);
    assert.equal(recs.filter((r) => r.value?.op === 't').length, 1, `partition ${p}: one truncate record`);
    assert.ok(recs.slice(0, at).every((r) => r.afterText?.v === 'before'), `partition ${p}: the rows before the truncate`);
    assert.ok(recs.slice(at + 1).every((r) => r.afterText?.v === 'after'), `partition ${p}: the rows after it`);
    assert.ok(at > 0 && at < recs.length - 1, `partition ${p} has rows on both sides (60 keys over 3 partitions)`);
    const key = parseTruncateKey(raws[at].key);
    assert.ok(key, `partition ${p}: the truncate's key is the fan-out key`);
    assert.equal(key.partitions, 3);
    assert.equal(key.partition, p);
    ids.add(key.id);
  }
  assert.equal(ids.size, 1, 'the three records name the same truncate');
});

test('source → Kafka (3 partitions) → sink: truncates amid rows on every key leave the destination equal to the source', async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  const dest = await getTestDestination();
  t.after(() => dest.release());
  const dst = await connect(dest.url);
  t.after(() => dst.end().catch(() => {}));
  const table = `tr_${Date.now().toString(36)}`;
  const ddl = `CREATE TABLE public.${table} (id int PRIMARY KEY, v text)`;
  await client.query(ddl);
  await dst.query(ddl);
  t.after(() => dst.query(`DROP TABLE IF EXISTS public.${table}`).catch(() => {}));
  const config = testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, extra: { slotName: slot, topics: { partitions: 3 } } });
  const topic = `${config.topicPrefix}.public.${table}`;
  const source = await startSourceConnector(config, capturingLogger().logger);
  t.after(() => source.stop());
  const groupId = `g-${config.topicPrefix}`;
  const sink = await startSinkConnector(
    sinkConfig({ kafka: env.bootstrap, registry: env.registryUrl, destination: dest.url, prefix: config.topicPrefix, groupId }, { batch: { maxRows: 7, adaptive: false } }),
    capturingLogger().logger,
    { topicRefreshMs: 500 }, // started before the source makes its topics: found at once, not up to 10 s later
  );
  t.after(() => sink.stop());
  await waitFor('streaming', () => source.state().phase === 'streaming', { timeoutMs: 60_000, intervalMs: 50 });
  // Small sink batches and rows on every partition around each truncate: partitions reach their copies at different times.
  await client.query(`INSERT INTO ${table} SELECT g, 'a' FROM generate_series(1, 200) g`);
  await client.query(`BEGIN; UPDATE ${table} SET v = 'b' WHERE id % 2 = 0; TRUNCATE ${table}; INSERT INTO ${table} SELECT g, 'c' FROM generate_series(150, 260) g; COMMIT`);
  await client.query(`UPDATE ${table} SET v = 'd' WHERE id % 3 = 0`);
  await client.query(`TRUNCATE ${table}`);
  await client.query(`INSERT INTO ${table} SELECT g, 'e' FROM generate_series(1, 90) g`);
  await client.query(`DELETE FROM ${table} WHERE id % 5 = 0`);
  const end = await walLsn(client);
  await waitFor('the source confirmed everything', () => parseLsn(source.state().confirmedLsn ?? '0/0') >= end, { timeoutMs: 60_000, intervalMs: 100 });
  const admin = kafka.admin();
  t.after(() => admin.disconnect());
  await waitApplied(dst, admin, groupId, [topic], 90_000);

  const want = (await client.query(`SELECT id, v FROM ${table} ORDER BY id`)).rows;
  const got = (await dst.query(`SELECT id, v FROM public.${table} ORDER BY id`)).rows;
  assert.equal(got.length, want.length);
  assert.deepEqual(got, want);
  const { rows: done } = await dst.query(`SELECT truncate_id, rounds FROM shardbridge.sink_truncates WHERE group_id = $1 AND topic = $2 ORDER BY truncated_at`, [groupId, topic]);
  assert.deepEqual(done.map((r) => r.rounds), [1, 1], 'each truncate applied once');

  // Replaying across the truncates: one partition alone cannot converge and is refused; the
  // whole topic from zero re-applies both truncates and ends equal to the source again.
  await sink.stop();
  const configFile = join(dir, `${table}-sink.json`);
  writeFileSync(configFile, JSON.stringify({ ...sinkConfig({ kafka: env.bootstrap, registry: env.registryUrl, destination: dest.url, prefix: config.topicPrefix, groupId }, { batch: { maxRows: 7, adaptive: false } }), logLevel: 'warn' }));
  const refused = await runCli(['replay', '--topic', topic, '--partition', '1', '--to-offset', '0', '--sink-config', configFile]);
  assert.equal(refused.code, 2, refused.stderr);
  assert.match(refused.stderr, new RegExp(`the replay crosses truncate \\S+ of ${topic.replace(/\./g, '\\.')}, which partition [02] applied at offset \\d+`));
  assert.match(refused.stderr, /replay every partition of the topic \(no --partition\)/);
  const replayed = await runCli(['replay', '--topic', topic, '--to-offset', '0', '--sink-config', configFile]);
  assert.equal(replayed.code, 0, replayed.stderr);
  assert.equal((replayed.stdout.match(/will be applied again once every partition reaches it/g) ?? []).length, 2, replayed.stdout);
  await dst.query(`INSERT INTO public.${table} VALUES (100000, 'stray row a truncate must remove')`);
  const again = await startSinkConnector(
    sinkConfig({ kafka: env.bootstrap, registry: env.registryUrl, destination: dest.url, prefix: config.topicPrefix, groupId }, { batch: { maxRows: 7, adaptive: false } }),
    capturingLogger().logger,
  );
  t.after(() => again.stop());
  await waitApplied(dst, admin, groupId, [topic], 90_000);
  assert.deepEqual((await dst.query(`SELECT id, v FROM public.${table} ORDER BY id`)).rows, want);
  const { rows: redone } = await dst.query(`SELECT rounds FROM shardbridge.sink_truncates WHERE group_id = $1 AND topic = $2`, [groupId, topic]);
  assert.deepEqual(redone.map((r) => r.rounds), [1, 1], 'each truncate applied again, once');
});
