/**
 * A schema registry that stops answering while the connectors run, when a table's schema changes.
 * Sink (a black hole: it accepts the connection and never answers): the partitions whose records
 * name the new schema id wait (paused, not holding the apply slots), the other topics go on,
 * nothing is dead-lettered or skipped, the wait is logged once and shown in /metrics, the records
 * are applied when the registry answers again, and a stop meanwhile is prompt. Source: the new
 * version cannot be registered; the slot is not confirmed past the change, the session retries,
 * and Kafka ends equal to the table once the registry is back; a stop meanwhile is prompt.
 */
import net from 'node:net';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '../../shared/devstack/ports.ts';
import { startSinkConnector, type SinkConnector } from '../../sink-connector/connector.ts';
import { loadSinkConfig } from '../../sink-connector/config.ts';
import { loadSourceConfig } from '../../source-connector/config.ts';
import { checkServices } from '../../shared/checks/services.ts';
import { capturingLogger, readTopic, uniqueTopic } from '../helpers/kafka.ts';
import { sinkTestFile } from '../helpers/sink-env.ts';
import { encodeChanges, registerTable, tableInfo, type ProducedTable } from '../helpers/produce-changes.ts';
import { sinkConfig, waitApplied } from '../helpers/sink.ts';
import { startSourceConnector } from '../../source-connector/run.ts';
import { parseLsn } from '../../source-connector/pgoutput-decoder.ts';
import { RegistryDecoder, assertRowsEqualTable, caughtUp, finalState, readDecoded, startSourceTestEnv, streaming, testSourceConfig, walLsn, type SourceTestEnv } from '../helpers/source.ts';

const f = sinkTestFile('regout');

async function metricValue(sink: SinkConnector, name: string): Promise<number> {
  const m = sink.metrics.getSingleMetric(name);
  if (!m) return 0;
  return (await m.get()).values.reduce((n, v) => n + v.value, 0);
}

const count = async (table: string): Promise<number> => (await f.env().db.query(`SELECT count(*)::int AS n FROM ${f.DST}.${table}`)).rows[0].n;

/** `n` inserts (ids from `from`, on the partitions their keys go to), `extra` values after id and v. */
const inserts = (t: ProducedTable, n: number, from: number, extra: string[] = []) =>
  encodeChanges(
    t,
    Array.from({ length: n }, (_, i) => ({ kind: 'insert' as const, new: [String(from + i), `v${from + i}`, ...extra] })),
  );

test('registry black-holed at a schema change: that topic waits paused, the others go on, nothing set aside; applied once it answers; a stop meanwhile is prompt', async () => {
  const { servers, producer, kafka, db, admin, registry } = f.env();
  const prefix = uniqueTopic('sbregout');
  // More partitions than the sink applies at once (3): before, their waits held every slot.
  let a = await f.table(prefix, 'a', { partitions: 4 });
  const b = await f.table(prefix, 'b');
  const proxy = await registryProxy(servers.registry);
  const { logger, lines } = capturingLogger();
  const groupId = `g-${f.ID}-out`;
  const sink = await startSinkConnector(
    sinkConfig({ ...servers, registry: proxy.url, prefix, groupId }, { deadLetter: { enabled: true }, tables: { [`${f.SRC}.a`]: { schema: f.DST }, [`${f.SRC}.b`]: { schema: f.DST } } }),
    logger,
    { topicRefreshMs: 500 },
  );
  let stopped = false;
  try {
    await producer.sendBatch([...inserts(a, 4, 1), ...encodeChanges(b, [{ kind: 'insert', new: ['1', 'b1'] }])]);
    await waitApplied(db, admin, groupId, [a.topic, b.topic]);

    proxy.hang();
    await db.query(`ALTER TABLE ${f.SRC}.a ADD COLUMN w int; ALTER TABLE ${f.DST}.a ADD COLUMN w int`);
    a = await registerTable(registry, await tableInfo(db, f.SRC, 'a'), a.topic);
    const sent = await producer.sendBatch(inserts(a, 12, 11, ['7']));
    const PARTS = sent.length;
    assert.ok(PARTS >= 3, `the keys spread over ${PARTS} partitions`);
    await waitFor('the partitions of a wait for the registry', async () => (await metricValue(sink, 'shardbridge_sink_registry_waiting_partitions')) === PARTS, { timeoutMs: 20_000 });
    // Another topic's records flow meanwhile.
    await producer.sendBatch(encodeChanges(b, [{ kind: 'insert', new: ['2', 'b2'] }]));
    await waitFor('b applied while a waits', async () => (await count('b')) === 2, { timeoutMs: 15_000 });
    assert.equal(await count('a'), 4, 'a waits: its new records cannot be decoded yet');
    assert.equal((await db.query('SELECT count(*)::int AS n FROM shardbridge.stalls WHERE group_id = $1', [groupId])).rows[0].n, 0, 'waiting, not stalled');
    assert.equal(await metricValue(sink, 'shardbridge_sink_dead_letter_records_total'), 0);
    const warned = lines().filter((l) => l.level === 40 && /schema registry .* cannot give schema id/.test(l.msg));
    assert.equal(warned.length, PARTS, 'one warning a partition');
    for (const w of warned) {
      assert.equal(w.registry, proxy.url);
      assert.deepEqual(w.schemaIds, [a.valueId]);
      assert.equal(w.topic, a.topic);
      assert.equal(w.offset, sent.find((r) => r.partition === w.partition)!.baseOffset);
    }

    proxy.up();
    await waitApplied(db, admin, groupId, [a.topic, b.topic]);
    assert.deepEqual((await db.query(`SELECT id, w FROM ${f.DST}.a WHERE id > 10 ORDER BY id`)).rows, Array.from({ length: 12 }, (_, i) => ({ id: 11 + i, w: 7 })));
    assert.equal(await metricValue(sink, 'shardbridge_sink_registry_waiting_partitions'), 0);
    assert.equal(lines().filter((l) => /schema registry answered again/.test(l.msg)).length, PARTS);
    assert.deepEqual(await readTopic(kafka, `${prefix}.__dlq`), []);

    // Black-holed again at the next change: the stop does not wait for the registry.
    proxy.hang();
    await db.query(`ALTER TABLE ${f.SRC}.a ADD COLUMN x int; ALTER TABLE ${f.DST}.a ADD COLUMN x int`);
    a = await registerTable(registry, await tableInfo(db, f.SRC, 'a'), a.topic);
    await producer.sendBatch(inserts(a, 1, 31, ['8', '9']));
    await waitFor('a waits again', async () => (await metricValue(sink, 'shardbridge_sink_registry_waiting_partitions')) === 1, { timeoutMs: 20_000 });
    const started = Date.now();
    stopped = true;
    await sink.stop();
    assert.ok(Date.now() - started < 5_000, `stopped in ${Date.now() - started} ms`);
  } finally {
    if (!stopped) await sink.stop();
    await proxy.close();
  }
});

test('schemaRegistry.requestTimeoutMs is what a black-holed registry gets: check gives each configuration its own (1.5 s, 2.5 s), not 10 s', async (t) => {
  const { servers } = f.env();
  const proxy = await registryProxy(servers.registry);
  t.after(() => proxy.close());
  proxy.hang();
  const kafka = { brokers: [servers.kafka] };
  const src = loadSourceConfig({ env: {}, overrides: { source: { url: 'postgres://u@h/db' }, kafka, topicPrefix: f.ID, schemaRegistry: { url: proxy.url, requestTimeoutMs: 1_500 } } });
  // Another URL (the trailing "/"): check asks a registry the sink names apart.
  const sink = loadSinkConfig({ env: {}, overrides: { destination: { url: 'postgres://u@h/db' }, kafka, topicPrefix: f.ID, schemaRegistry: { url: `${proxy.url}/`, requestTimeoutMs: 2_500 } } });
  const { logger } = capturingLogger();
  const started = Date.now();
  const findings = (await checkServices(src, sink, logger)).filter((x) => x.object.startsWith('registry'));
  const took = Date.now() - started;
  assert.deepEqual(findings.map((x) => x.level), ['FAIL', 'FAIL']);
  assert.match(findings[0].message, /\(source configuration\): .*did not answer within 1\.5 s/);
  assert.match(findings[1].message, /\(sink configuration\): .*did not answer within 2\.5 s/);
  assert.ok(proxy.held() >= 2, `${proxy.held()} connections held`);
  assert.ok(took >= 2_400 && took < 9_000, `check took ${took} ms`);
});

let source: SourceTestEnv;
before(async () => {
  source = await startSourceTestEnv('test-registry-outage');
});
after(() => source?.close());

test('source: a column added while the registry is down waits unconfirmed, retrying; published once it is back, Kafka equal to the table; a stop meanwhile is prompt', async (t) => {
  const { url, client, slot } = await source.freshDatabase(t);
  await client.query('CREATE TABLE t (id int PRIMARY KEY, v text)');
  const proxy = await registryProxy(source.registryUrl);
  t.after(() => proxy.close());
  const config = testSourceConfig({ sourceUrl: url, kafka: source.bootstrap, registry: proxy.url, extra: { slotName: slot } });
  const { logger, lines } = capturingLogger();
  const conn = await startSourceConnector(config, logger);
  t.after(() => conn.stop());
  await streaming(conn);
  await client.query(`INSERT INTO t VALUES (1, 'a'), (2, 'b')`);
  await caughtUp(conn, await walLsn(client));

  proxy.down();
  await client.query('ALTER TABLE t ADD COLUMN w int');
  // The DDL's own transaction carries no change (pgoutput sends the new relation with the next row): may be confirmed.
  const beforeRow = await walLsn(client);
  await client.query(`INSERT INTO t VALUES (3, 'c', 30)`);
  await waitFor('the session retried', () => lines().filter((l) => /session failed, retrying/.test(l.msg)).length >= 2, { timeoutMs: 15_000 });
  const failed = lines().find((l) => /session failed, retrying/.test(l.msg))!;
  assert.match(failed.err.message, new RegExp(`registering a schema under subject ${config.topicPrefix}\\.public\\.t-value|cannot reach the registry at ${proxy.url}`));
  const confirmed = (await client.query('SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1', [slot])).rows[0].l;
  assert.ok(parseLsn(confirmed) <= beforeRow, `the slot confirmed ${confirmed}, past the row of the new version (after ${beforeRow})`);

  proxy.up();
  await caughtUp(conn, await walLsn(client));
  const topic = `${config.topicPrefix}.public.t`;
  await assertRowsEqualTable(client, 't', finalState(await readDecoded(source.kafka, new RegistryDecoder(source.registryUrl), topic)).values());

  // Black-holed at the next change: the stop ends the registration under way.
  proxy.hang();
  await client.query('ALTER TABLE t ADD COLUMN x int');
  await client.query(`INSERT INTO t VALUES (4, 'd', 40, 4)`);
  await waitFor('the registration waits on the black hole', () => proxy.held() > 0, { timeoutMs: 15_000 });
  const started = Date.now();
  await conn.stop();
  assert.ok(Date.now() - started < 5_000, `stopped in ${Date.now() - started} ms`);
});

/** A TCP proxy to the registry that can black-hole it: accept connections and never answer (those open are cut). */
async function registryProxy(target: string): Promise<{ url: string; hang(): void; down(): void; up(): void; held(): number; close(): Promise<void> }> {
  const { hostname, port } = new URL(target);
  const open = new Set<net.Socket>();
  let mode: 'up' | 'hang' | 'down' = 'up';
  let held = 0;
  const server = net.createServer((client) => {
    if (mode === 'down') return client.destroy();
    open.add(client);
    client.on('error', () => {}).on('close', () => open.delete(client));
    if (mode === 'hang') {
      held++;
      return; // read nothing, answer nothing
    }
    const upstream = net.connect(Number(port), hostname);
    open.add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    upstream.on('error', end).on('close', () => {
      open.delete(upstream);
      end();
    });
    client.on('close', end).pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  const cut = () => {
    for (const s of open) s.destroy();
  };
  return {
    url,
    hang() {
      mode = 'hang';
      cut();
    },
    down() {
      mode = 'down';
      cut();
    },
    up() {
      mode = 'up';
      cut();
    },
    held: () => held,
    close: () => {
      cut();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
