/**
 * The lock watchdog (lock-watch.ts): which looks report an episode, the warning's words, and the
 * watchdog over a fake destination connection (one query per look, a line per episode, the end
 * of a wait logged, the gauge).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import type { Gauge } from 'prom-client';
import type { Logger } from '../../shared/logger.ts';
import type { Chunk } from '../../sink-connector/apply.ts';
import { CITUS_OPERATION_NOTE, citusOperation } from '../../sink-connector/citus-holders.ts';
import { blockedWarning, chunkTables, CITUS_PREPARED_REMEDY, isCitusGid, LockWatch, nextEpisode, REPEAT_MS, type BlockingSession } from '../../sink-connector/lock-watch.ts';

test('an episode is reported when it begins, when its holders change, every minute while it lasts, and when it ends', () => {
  let r = nextEpisode(undefined, null, 0);
  assert.deepEqual(r, { episode: undefined, report: null });
  r = nextEpisode(undefined, '42', 1_000);
  assert.equal(r.report, 'blocked');
  const begun = r.episode!;
  assert.deepEqual(nextEpisode(begun, '42', 2_000), { episode: begun, report: null }, 'the same holders a moment later: nothing');
  r = nextEpisode(begun, '42', 1_000 + REPEAT_MS);
  assert.equal(r.report, 'still');
  assert.equal(r.episode!.since, 1_000, 'the episode keeps its start');
  assert.equal(nextEpisode(r.episode, '42', 2_000 + REPEAT_MS).report, null, 'reported again a minute after the last report, not each look');
  r = nextEpisode(begun, '42,77', 3_000);
  assert.equal(r.report, 'changed');
  assert.deepEqual(nextEpisode(r.episode, null, 4_000), { episode: undefined, report: 'cleared' });
  assert.deepEqual(nextEpisode(r.episode, '', 4_000), { episode: undefined, report: 'cleared' });
});

const dba: BlockingSession = { pid: 4242, applicationName: 'psql', state: 'idle in transaction', waitEvent: 'ClientRead', transactionSeconds: 31, query: 'LOCK TABLE app.orders IN ACCESS EXCLUSIVE MODE' };
const frozen: BlockingSession = { pid: 99, applicationName: 'shardbridge-sink-a', state: 'active', waitEvent: 'ClientRead', transactionSeconds: 40, query: 'COPY x FROM STDIN' };

test('the warning names the tables, partitions, wait, each holder with its statement, the remedy and what the other tables meet', () => {
  const lane = (partition: number, waitedMs: number) => ({ topic: 't.app.orders', partition, tables: ['app.orders'], relations: ['app.orders'], waitedMs });
  const all = blockedWarning('blocked', [lane(2, 11_400), lane(0, 12_200), lane(1, 10_000)], [dba], { total: 3, waiting: 3 });
  assert.equal(
    all.msg,
    'batches of app.orders (t.app.orders[0, 1, 2]) have waited 12 s for a lock on app.orders held by pid 4242 (psql, idle in transaction, in a transaction for 31 s): ' +
      '"LOCK TABLE app.orders IN ACCESS EXCLUSIVE MODE": the sink goes on by itself once it is released; end that session if stuck: SELECT pg_terminate_backend(4242). ' +
      'all 3 apply lanes wait, so the other tables wait for a free apply lane meanwhile',
  );
  assert.equal(all.fields.remedy, 'end that session if stuck: SELECT pg_terminate_backend(4242)');
  assert.deepEqual(all.fields.holders, [dba]);
  assert.equal((all.fields.waiting as unknown[]).length, 3);

  const some = blockedWarning('still', [lane(1, 75_000)], [dba], { total: 3, waiting: 1 });
  assert.match(some.msg, /\(t\.app\.orders\[1\]\) still wait, for 75 s now, for a lock/);
  assert.match(some.msg, /1 of 3 apply lanes wait; the others go on/);

  // A sink's own session (a frozen member) is named, not offered for ending: lock-holder.ts and the idle timeout end it.
  const sink = blockedWarning('changed', [{ topic: 't', partition: 0, tables: ['app.t'], relations: [], waitedMs: 5_000 }], [frozen], { total: 3, waiting: 1 });
  assert.match(sink.msg, /now wait \(for 5 s in all\) for a lock held by pid 99 \(shardbridge-sink-a, active, in a transaction for 40 s, a sink's session: a member frozen or cut off inside a batch is ended by the sink after batch\.idleInTransactionTimeoutMs\)/);
  assert.doesNotMatch(sink.msg, /pg_terminate_backend/);
  assert.equal(sink.fields.remedy, undefined);

  const both = blockedWarning('blocked', [lane(0, 1_000)], [dba, frozen], { total: 3, waiting: 1 });
  assert.match(both.msg, /end that session if stuck: SELECT pg_terminate_backend\(4242\)\./);
});

test("Citus's own holders (a block_writes shard move, the rebalancer's task executor, a table distributed anew) are named as Citus at work and never offered for ending", () => {
  // As pg_stat_activity showed them on Citus 13.2 while the sink waited.
  const move: BlockingSession = { pid: 5872, applicationName: '', state: 'active', waitEvent: null, transactionSeconds: 2, query: "SELECT citus_move_shard_placement($1, '127.0.0.1', $2, '127.0.0.1', $3, shard_transfer_mode => $4)", backendType: 'client backend' };
  const task: BlockingSession = { pid: 6652, applicationName: '', state: '', waitEvent: null, transactionSeconds: 0, query: '', backendType: 'Citus Background Task Queue Executor: sb/postgres for (3/6)' };
  const alter: BlockingSession = { pid: 7001, applicationName: 'psql', state: 'active', waitEvent: null, transactionSeconds: 3, query: "SELECT alter_distributed_table('app.orders', shard_count => 4)" };
  const lane = [{ topic: 't.app.orders', partition: 0, tables: ['app.orders'], relations: [], waitedMs: 2_000 }];
  for (const h of [move, task, alter]) {
    const w = blockedWarning('blocked', lane, [h], { total: 3, waiting: 1 });
    assert.doesNotMatch(w.msg, /pg_terminate_backend/, w.msg);
    assert.match(w.msg, new RegExp(`pid ${h.pid}, (a Citus|Citus's)`), w.msg);
    assert.equal(w.fields.remedy, CITUS_OPERATION_NOTE);
  }
  assert.match(blockedWarning('blocked', lane, [move], { total: 3, waiting: 1 }).msg, /pid 5872, a Citus citus_move_shard_placement \(no application_name, in a transaction for 2 s\)/);
  assert.match(blockedWarning('blocked', lane, [task], { total: 3, waiting: 1 }).msg, /pid 6652, Citus's rebalancer \(a background task of citus_rebalance_start.*\(Citus Background Task Queue Executor: sb\/postgres for \(3\/6\), in a transaction for 0 s\)/);
  // Beside a DBA's session: only that one is offered for ending.
  const both = blockedWarning('blocked', lane, [dba, move], { total: 3, waiting: 1 });
  assert.equal(both.fields.remedy, `end that session if stuck: SELECT pg_terminate_backend(4242); ${CITUS_OPERATION_NOTE}`);
  assert.equal(citusOperation({ applicationName: 'citus_rebalancer gpid=10000012345', query: 'SELECT 1' }), "Citus's rebalancer");
  assert.equal(citusOperation({ applicationName: 'psql', query: 'SELECT my_create_distributed_table_wrapper()' }), null, 'a word boundary: not a Citus function');
  assert.equal(citusOperation(dba), null);
});

const table = (schema: string, name: string) => ({ dest: { schema, name } }) as never;

test("a chunk's destination tables, from its decoded records and its fast rows", () => {
  const chunk = { records: [{ table: table('app', 'a') }, { table: table('app', 'a') }], fast: [{ table: table('app', 'b') }] } as unknown as Chunk;
  assert.deepEqual(chunkTables(chunk), ['app.a', 'app.b']);
  assert.deepEqual(chunkTables({ records: [] }), []);
});

/** A LockWatch over a fake connection whose pg_blocking_pids answer the test sets; a clock the test moves. */
function harness() {
  let now = 0;
  const blocked = new Map<number, BlockingSession[]>();
  const queries: number[][] = [];
  let connects = 0;
  const logs: { level: string; fields: Record<string, any>; msg: string }[] = [];
  const log = (level: string) => (fields: Record<string, unknown>, msg: string) => void logs.push({ level, fields, msg });
  const logger = { warn: log('warn'), info: log('info'), debug: log('debug') } as unknown as Logger;
  let gauge = -1;
  const fakeClient = {
    on: () => {},
    connect: async () => void connects++,
    end: async () => {},
    query: async (_sql: string, [pids]: [number[]]) => {
      queries.push(pids);
      return { rows: pids.flatMap((w) => (blocked.get(w) ?? []).map((h) => ({ waiter: w, relations: ['app.orders'], pid: h.pid, blocker: h.pid, app: h.applicationName, state: h.state, wait_event: h.waitEvent, secs: h.transactionSeconds, query: h.query }))) };
    },
  };
  const watch = new LockWatch({
    warnMs: 1_000,
    lanes: 3,
    logger,
    gauge: { set: (v: number) => void (gauge = v) } as unknown as Gauge<string>,
    client: () => fakeClient as unknown as pg.Client,
    now: () => now,
    lookEveryMs: 3_600_000, // looks are the test's own
  });
  /** A batch on backend `pid` that runs until `finish` is called. */
  const batch = (pid: number, partition: number) => {
    let finish!: (ok: boolean) => void;
    const done = watch.during({ processID: pid } as unknown as pg.ClientBase, { topic: 't.app.orders', partition, records: [{ table: table('app', 'orders') }] } as unknown as Chunk, () =>
      new Promise<void>((resolve, reject) => (finish = (ok) => (ok ? resolve() : reject(new Error('failed'))))),
    );
    done.catch(() => {});
    return { finish: (ok = true) => finish(ok), done };
  };
  return { watch, blocked, queries, logs, batch, connects: () => connects, gauge: () => gauge, at: (t: number) => void (now = t) };
}

test('the watchdog asks once per look for all batches past the threshold, warns once per episode, and logs the end of the wait', async () => {
  const h = harness();
  try {
    const a = h.batch(101, 0);
    const b = h.batch(102, 1);
    const quick = h.batch(103, 2);
    h.at(500);
    await h.watch.look();
    assert.equal(h.connects(), 0, 'no connection while no batch is past the threshold');
    quick.finish();
    await quick.done;
    h.blocked.set(101, [dba]);
    h.blocked.set(102, [dba]);
    h.at(1_200);
    await h.watch.look();
    assert.deepEqual(h.queries, [[101, 102]], 'one query for both');
    assert.equal(h.connects(), 1);
    const warns = () => h.logs.filter((l) => l.level === 'warn');
    assert.equal(warns().length, 1, 'lanes blocked by the same holder: one line');
    assert.match(warns()[0].msg, /t\.app\.orders\[0, 1\].*held by pid 4242.*2 of 3 apply lanes wait/);
    assert.equal(h.gauge(), 2);

    for (const t of [1_500, 2_000, 30_000]) {
      h.at(t);
      await h.watch.look();
    }
    assert.equal(warns().length, 1, 'not again while the same holder keeps it');
    h.at(1_200 + REPEAT_MS);
    await h.watch.look();
    assert.equal(warns().length, 2);
    assert.match(warns()[1].msg, /still wait, for 61 s now/);

    // One batch is seen unblocked at a look (its wait ended, its transaction goes on); the other ends while still seen blocked.
    h.blocked.delete(102);
    h.at(62_000);
    await h.watch.look();
    assert.equal(h.gauge(), 1);
    a.finish();
    await a.done;
    assert.deepEqual(
      h.logs.filter((l) => l.level === 'info').map((l) => l.msg),
      ['t.app.orders[1] applies again after waiting 62 s for a lock', 't.app.orders[0] applies again after waiting 62 s for a lock'],
    );
    assert.equal(h.gauge(), 0);
    b.finish();
    await b.done;
    assert.equal(h.logs.filter((l) => l.level === 'info').length, 2, 'a batch whose episode ended is not cleared again when it ends');

    // A batch that ends while blocked, by failing.
    const c = h.batch(104, 0);
    h.blocked.set(104, [dba]);
    h.at(64_000);
    await h.watch.look();
    c.finish(false);
    await assert.rejects(c.done);
    assert.match(h.logs.at(-1)!.msg, /t\.app\.orders\[0\] no longer waits \(its transaction failed: retried or stalled, logged apart\) after waiting 2 s for a lock/);
  } finally {
    await h.watch.stop();
  }
});

test('the watchdog off (0) watches nothing', async () => {
  const watch = new LockWatch({ warnMs: 0, lanes: 3, logger: {} as Logger, gauge: {} as Gauge<string>, client: () => assert.fail('no connection') });
  assert.equal(await watch.during({ processID: 1 } as unknown as pg.ClientBase, {} as Chunk, async () => 7), 7);
  await watch.look();
  await watch.stop();
});

test('a prepared transaction (pg_blocking_pids 0) is named as one, with COMMIT/ROLLBACK PREPARED, never pg_terminate_backend(0)', () => {
  const prepared: BlockingSession = { pid: 0, applicationName: '', state: '', waitEvent: null, transactionSeconds: 0, query: '', prepared: ["tm-1'x", 'tm-2'] };
  const w = blockedWarning('blocked', [{ topic: 't', partition: 0, tables: ['app.t'], relations: [], waitedMs: 3_000 }], [prepared, dba], { total: 3, waiting: 1 });
  assert.match(w.msg, /held by a prepared transaction \(two-phase commit: no session holds it\), one of 'tm-1''x', 'tm-2'; pid 4242 \(psql/);
  assert.equal(
    w.fields.remedy,
    "end that session if stuck: SELECT pg_terminate_backend(4242); end a prepared transaction its transaction manager lost with COMMIT PREPARED or ROLLBACK PREPARED '<gid>' (SELECT gid, prepared, owner FROM pg_prepared_xacts lists them)",
  );
  assert.doesNotMatch(w.msg, /pg_terminate_backend\(0\)/);
});

test("on Citus, a prepared transaction of Citus's own two-phase commit (citus_<group>_…) is told apart: its recovery ends it, never COMMIT/ROLLBACK PREPARED by hand", () => {
  assert.ok(isCitusGid('citus_0_12345_7_1'));
  assert.ok(!isCitusGid('citus_manual'));
  assert.ok(!isCitusGid('tm-1'));
  const lane = [{ topic: 't', partition: 0, tables: ['app.t'], relations: [], waitedMs: 3_000 }];
  const held = (gids: string[]): BlockingSession => ({ pid: 0, applicationName: '', state: '', waitEvent: null, transactionSeconds: 0, query: '', prepared: gids });
  const onlyCitus = blockedWarning('blocked', lane, [held(['citus_0_4711_12_3'])], { total: 3, waiting: 1 });
  assert.match(onlyCitus.msg, /held by a prepared transaction \(two-phase commit: no session holds it\), Citus's own 'citus_0_4711_12_3':/);
  assert.equal(onlyCitus.fields.remedy, CITUS_PREPARED_REMEDY);
  assert.doesNotMatch(onlyCitus.msg, /COMMIT PREPARED or ROLLBACK PREPARED/);
  assert.match(CITUS_PREPARED_REMEDY, /SELECT recover_prepared_transactions\(\).*never end those by hand/);
  const both = blockedWarning('blocked', lane, [held(['tm-1', 'citus_0_4711_12_3'])], { total: 3, waiting: 1 });
  assert.match(both.msg, /, one of 'tm-1', or Citus's own 'citus_0_4711_12_3':/);
  assert.equal(
    both.fields.remedy,
    `end a prepared transaction its transaction manager lost with COMMIT PREPARED or ROLLBACK PREPARED '<gid>' (SELECT gid, prepared, owner FROM pg_prepared_xacts lists them); ${CITUS_PREPARED_REMEDY}`,
  );
});
