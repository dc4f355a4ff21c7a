/**
 * A destination table locked by someone else (`LOCK TABLE … IN ACCESS EXCLUSIVE MODE`) while
 * its records arrive: the batches wait, and the lock watchdog (lock-watch.ts) names the holder
 * once per episode, with the statement that would end it; once the lock is released the rows
 * arrive and the end of the wait is logged (docs/sink-connector.md, "Changing the destination
 * while the sink runs").
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { waitFor } from '../../shared/devstack/ports.ts';
import { startSinkConnector, type SinkConnector } from '../../sink-connector/connector.ts';
import { capturingLogger, uniqueTopic } from '../helpers/kafka.ts';
import { sinkTestFile } from '../helpers/sink-env.ts';
import { produceChanges } from '../helpers/produce-changes.ts';
import { sinkConfig, waitApplied } from '../helpers/sink.ts';

const { ID, SRC, DST, env, table: fileTable } = sinkTestFile('lockw');

const table = (prefix: string, name: string, partitions: number, distribute = true) => fileTable(prefix, name, { partitions, distribute });

const rows = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => ({ kind: 'insert' as const, new: [String(from + i), `v${from + i}`] }));

const waitingGauge = async (s: SinkConnector): Promise<number> => (await s.metrics.getSingleMetric('shardbridge_sink_lock_waiting_batches')!.get()).values[0]?.value ?? 0;

test('batches waiting on a table another session locked: the holder is named once per episode, and the end of the wait is logged', async () => {
  const { db, admin, producer } = env();
  const prefix = uniqueTopic('sblockw');
  // As many partitions as apply lanes and one more: the lock takes every lane.
  const locked = await table(prefix, 'locked', 4);
  const other = await table(prefix, 'other', 1);
  const groupId = `g-${ID}`;
  const { logger, lines } = capturingLogger();
  const tables = { [`${SRC}.locked`]: { schema: DST }, [`${SRC}.other`]: { schema: DST } };
  const s = await startSinkConnector(sinkConfig({ ...env().servers, prefix, groupId }, { tables, batch: { lockWaitWarnMs: 500 } }), logger, { topicRefreshMs: 500 });
  const holder = new pg.Client({ connectionString: env().servers.destination, application_name: 'dba-session' });
  await holder.connect();
  try {
    await produceChanges(producer, locked, rows(1, 40));
    await produceChanges(producer, other, rows(1, 5));
    await waitApplied(db, admin, groupId, [locked.topic, other.topic]);

    await holder.query(`BEGIN; LOCK TABLE ${DST}.locked IN ACCESS EXCLUSIVE MODE`);
    const holderPid = (holder as unknown as { processID: number }).processID;
    await produceChanges(producer, locked, rows(41, 80));

    const warnings = () => lines().filter((l) => l.level === 40 && Array.isArray(l.holders));
    // Every lane waits: the warnings of lanes seen at different looks add up to three.
    await waitFor('a warning naming the locked table and its holder, for every lane', () => warnings().some((l) => l.lanesWaiting === 3), { timeoutMs: 20_000 });
    const first = warnings()[0];
    assert.match(first.msg, new RegExp(`batches of ${DST}\\.locked \\(${locked.topic.replace(/\./g, '\\.')}\\[\\d(, \\d)*\\]\\)`));
    assert.match(first.msg, new RegExp(`held by pid ${holderPid} \\(dba-session, idle in transaction, in a transaction for \\d+ s\\): "BEGIN; LOCK TABLE ${DST}\\.locked`));
    assert.match(first.msg, new RegExp(`SELECT pg_terminate_backend\\(${holderPid}\\)`));
    assert.deepEqual(
      first.holders.map((h: { pid: number; applicationName: string }) => [h.pid, h.applicationName]),
      [[holderPid, 'dba-session']],
    );
    assert.ok(warnings().some((l) => /all 3 apply lanes wait, so the other tables wait for a free apply lane meanwhile/.test(l.msg)));
    assert.equal(await waitingGauge(s), 3);
    await produceChanges(producer, other, rows(6, 10));

    // Several more looks of the watchdog (every 125 ms) while the lock is held: no lane is reported again.
    await waitFor(
      'the lanes in their transaction for 2 s',
      async () => (await db.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'shardbridge-sink-test' AND now() - xact_start > interval '2 s'`)).rows[0].n >= 3,
      { timeoutMs: 10_000 },
    );
    const reported = warnings().flatMap((l) => l.waiting.map((w: { topic: string; partition: number }) => `${w.topic}[${w.partition}]`));
    assert.equal(reported.length, 3, `each waiting lane reported once: ${reported.join(', ')}`);
    assert.equal(new Set(reported).size, 3);
    assert.equal((await db.query(`SELECT count(*)::int AS n FROM ${DST}.other`)).rows[0].n, 5, 'the other table waited for a lane');

    await holder.query('COMMIT');
    await waitApplied(db, admin, groupId, [locked.topic, other.topic], 20_000);
    assert.equal((await db.query(`SELECT count(*)::int AS n FROM ${DST}.locked`)).rows[0].n, 80);
    assert.equal((await db.query(`SELECT count(*)::int AS n FROM ${DST}.other`)).rows[0].n, 10);
    const again = lines().filter((l) => l.level === 30 && /applies again after waiting \d+ s for a lock/.test(l.msg));
    assert.ok(again.length >= 3, `an info line per lane that waited: ${again.map((l) => l.msg).join(' | ')}`);
    assert.ok(again.every((l) => l.tables.includes(`${DST}.locked`) && l.waitedSeconds >= 2));
    assert.equal(await waitingGauge(s), 0);
  } finally {
    await holder.end().catch(() => {});
    await s.stop();
  }
});

test('a batch waiting on a row a prepared transaction (two-phase commit) holds: the warning names it, with COMMIT/ROLLBACK PREPARED, not a pid', async () => {
  const { db, admin, producer } = env();
  const prefix = uniqueTopic('sblockp');
  // Local on Citus too: Citus takes no PREPARE TRANSACTION over a distributed table's shards.
  const held = await table(prefix, 'held', 1, false);
  const groupId = `g-${ID}-p`;
  const { logger, lines } = capturingLogger();
  const s = await startSinkConnector(sinkConfig({ ...env().servers, prefix, groupId }, { tables: { [`${SRC}.held`]: { schema: DST } }, batch: { lockWaitWarnMs: 300 } }), logger, { topicRefreshMs: 500 });
  const gid = `left-behind-${ID}`;
  try {
    await produceChanges(producer, held, rows(1, 5));
    await waitApplied(db, admin, groupId, [held.topic]);
    // Prepared, the transaction keeps its row lock with no session behind it: pg_blocking_pids says 0.
    await db.query(`BEGIN; UPDATE ${DST}.held SET v = 'prepared' WHERE id = 1; PREPARE TRANSACTION '${gid}'`);
    await produceChanges(producer, held, [{ kind: 'update', new: ['1', 'streamed'] }]);
    const warning = await waitFor('a warning naming the prepared transaction', () => lines().find((l) => l.level === 40 && Array.isArray(l.holders)), { timeoutMs: 20_000 });
    assert.match(warning.msg, new RegExp(`held by a prepared transaction \\(two-phase commit: no session holds it\\), one of '${gid}'`));
    assert.match(warning.remedy, /COMMIT PREPARED or ROLLBACK PREPARED '<gid>'/);
    assert.doesNotMatch(warning.msg, /pg_terminate_backend\(0\)/);
    await db.query(`ROLLBACK PREPARED '${gid}'`);
    await waitApplied(db, admin, groupId, [held.topic], 20_000);
    assert.equal((await db.query(`SELECT v FROM ${DST}.held WHERE id = 1`)).rows[0].v, 'streamed');
  } finally {
    await db.query(`ROLLBACK PREPARED '${gid}'`).catch(() => {});
    await s.stop();
  }
});
