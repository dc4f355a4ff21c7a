/**
 * What the destination answers, provoked on a real server, one sink throughout
 * (docs/sink-connector.md, "Stalls"): the sink's role and database are this file's own (a LATIN1
 * database, a role whose settings and CONNECTION LIMIT the cases change), and each case checks
 * the sink's log line, its metrics, that nothing was lost or applied twice (an AFTER trigger logs
 * every row written, and a batch rolled back takes its lines with it) and that it converges once
 * the cause is gone. In sequence: no connection slot at start (53300), a character LATIN1 has no
 * code for (22P05, stays stalled while the others flow), an index row too big (54000),
 * statement_timeout (57014; a batch too big for it, and the next batches cut under it), a DBA's
 * lock with pg_cancel_backend (57014, user request: retried as it was) and pg_terminate_backend
 * (57P01) of the waiting batch and lock_timeout (55P03), default_transaction_read_only (25006),
 * no connection slot mid-run, and the sink role's password changed under it (28P01), taken from
 * destination.passwordFile without a restart (the file gone a while: waited for, naming it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { waitFor } from '../../shared/devstack/ports.ts';
import { startSinkConnector, type SinkConnector } from '../../sink-connector/connector.ts';
import { capturingLogger, uniqueTopic } from '../helpers/kafka.ts';
import { sinkTestFile } from '../helpers/sink-env.ts';
import { produceChanges, type ProducedTable } from '../helpers/produce-changes.ts';
import { sinkConfig, waitApplied } from '../helpers/sink.ts';

const { ID, SRC, DST, env, table } = sinkTestFile('dsterr');
const ROLE = `sb_dsterr_${ID}`;

const rows = (values: string[], from = 1) => values.map((v, i) => ({ kind: 'insert' as const, new: [String(from + i), v] }));

test('destination errors: transient ones retried with a line saying what the sink waits for, permanent ones stalled with a remedy; nothing lost or applied twice', async (t) => {
  const { db, admin, producer, servers } = env();
  const prefix = uniqueTopic('sbdsterr');
  const names = ['enc', 'idx', 'slow', 'big', 'lk', 'ro', 'conn', 'pw'] as const;
  const topics = {} as Record<(typeof names)[number], ProducedTable>;
  for (const n of names) topics[n] = await table(prefix, n, { destDdl: null });

  // The sink's own role and database: LATIN1, as a destination made without thinking of the encoding.
  await db.query(`CREATE ROLE ${ROLE} LOGIN`);
  await db.query(`CREATE DATABASE ${ROLE} OWNER ${ROLE} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`);
  const url = (user: string) => {
    const u = new URL(servers.destination);
    u.username = user;
    u.pathname = `/${ROLE}`;
    return u.toString();
  };
  // The role's own session (DDL, reads) and a DBA's, both in the sink's database.
  const own = new pg.Client({ connectionString: url(ROLE) });
  const dba = new pg.Client({ connectionString: url('postgres'), application_name: 'dba-session' });
  await own.connect();
  await dba.connect();
  const run: { sink?: SinkConnector } = {};
  t.after(async () => {
    await run.sink?.stop();
    await dba.query('ROLLBACK').catch(() => {});
    await own.end().catch(() => {});
    await dba.end().catch(() => {});
    await db.query(`DROP DATABASE IF EXISTS ${ROLE} WITH (FORCE)`).catch(() => {});
    await db.query(`DROP ROLE IF EXISTS ${ROLE}`).catch(() => {});
  });
  await own.query(`CREATE SCHEMA ${DST}; CREATE TABLE ${DST}.applied (tbl text, id int)`);
  await own.query(`CREATE FUNCTION ${DST}.log_row() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO ${DST}.applied VALUES (TG_TABLE_NAME, NEW.id); RETURN NULL; END $$`);
  await own.query(`CREATE FUNCTION ${DST}.slow_row() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN IF NEW.v = 'slow' THEN PERFORM pg_sleep(1.5); END IF; RETURN NEW; END $$`);
  for (const n of names) {
    await own.query(`CREATE TABLE ${DST}.${n} (id int PRIMARY KEY, v text);
      CREATE TRIGGER logged AFTER INSERT OR UPDATE ON ${DST}.${n} FOR EACH ROW EXECUTE FUNCTION ${DST}.log_row()`);
  }
  await own.query(`CREATE INDEX idx_v ON ${DST}.idx (v); CREATE TRIGGER slow BEFORE INSERT ON ${DST}.slow FOR EACH ROW EXECUTE FUNCTION ${DST}.slow_row()`);
  // A statement writing more than 2 rows of big fails as a statement_timeout would (no timing to depend on).
  await own.query(`CREATE FUNCTION ${DST}.too_many() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF (SELECT count(*) FROM written) > 2 THEN RAISE EXCEPTION 'canceling statement due to statement timeout' USING ERRCODE = '57014'; END IF; RETURN NULL; END $$;
    CREATE TRIGGER too_many AFTER INSERT ON ${DST}.big REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION ${DST}.too_many()`);

  const role = (setting: string) => db.query(`ALTER ROLE ${ROLE} ${setting}`);
  // The sink's sessions end, so that its next ones take the role's settings (and a batch under way rolls back).
  const terminateSink = () => dba.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND application_name LIKE 'shardbridge-sink-%'`, [ROLE]);
  const count = async (n: string) => (await own.query(`SELECT count(*)::int AS n FROM ${DST}.${n}`)).rows[0].n as number;

  const { logger, lines } = capturingLogger();
  const tables = Object.fromEntries(names.map((n) => [`${SRC}.${n}`, { schema: DST }]));
  const groupId = `g-${ID}`;
  // The password as a mounted secret delivers it (read at every new connection; the role needs none until the 28P01 case).
  const secrets = mkdtempSync(join(tmpdir(), 'sb-pwfile-'));
  t.after(() => rmSync(secrets, { recursive: true, force: true }));
  const passwordFile = join(secrets, 'password');
  writeFileSync(passwordFile, 'not-asked-yet\n');
  const config = sinkConfig({ ...servers, destination: url(ROLE), prefix, groupId }, { tables, destination: { url: url(ROLE), passwordFile } });

  // 53300 at start: no connection slot for the role. The start waits, saying why.
  await role('CONNECTION LIMIT 0');
  const starting = startSinkConnector(config, logger, { topicRefreshMs: 500 });
  starting.catch(() => {});
  const startRetry = () => lines().find((l) => l.level === 40 && /^prepare the destination .* failed, retrying/.test(l.msg));
  await waitFor('the start retrying for a connection slot', () => startRetry() !== undefined, { timeoutMs: 10_000 });
  assert.equal(startRetry()!.err.context.sqlstate, '53300');
  assert.match(startRetry()!.err.message, /too many connections for role/);
  assert.match(startRetry()!.err.remedy, /no connection slot for the sink .*CONNECTION LIMIT/);
  await role('CONNECTION LIMIT -1');
  const sink = await starting;
  run.sink = sink;
  const metric = async (name: string, labels: Record<string, string> = {}) =>
    (await sink.metrics.getSingleMetric(`shardbridge_sink_${name}`)!.get()).values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value ?? 0;
  const stalled = (topic: string) => metric('stalled_partitions', { topic, partition: '0' });
  const stallLine = (topic: string, sqlstate: string) => lines().find((l) => l.level === 50 && l.topic === topic && l.sqlstate === sqlstate);
  const retryLines = (topic: string, sqlstate: string) => lines().filter((l) => l.level === 40 && l.topic === topic && l.sqlstate === sqlstate);
  const encodingLine = lines().find((l) => l.serverEncoding === 'LATIN1');
  assert.match(encodingLine?.msg ?? '', /encoding is LATIN1, not UTF8 .*22P05.*ENCODING 'UTF8'/);

  // 22P05: a character LATIN1 has no code for. The record stalls naming the column and the encoding; the one before is applied.
  await produceChanges(producer, topics.enc, rows(['naïve', '日本', 'x']));
  await waitFor('the stall on a character LATIN1 cannot store', () => stallLine(topics.enc.topic, '22P05') !== undefined, { timeoutMs: 15_000 });
  const enc = stallLine(topics.enc.topic, '22P05')!;
  assert.equal(enc.offset, '1');
  assert.equal(enc.column, 'v');
  assert.match(enc.remedy, /encoding cannot store a character .*ENCODING 'UTF8'/);
  assert.equal((await own.query(`SELECT v FROM ${DST}.enc`)).rows[0].v, 'naïve');
  assert.equal(await stalled(topics.enc.topic), 1);
  // Recorded in shardbridge.stalls too, though the remedy's "…" has no LATIN1 code: escaped.
  const recorded = async () => (await own.query('SELECT sqlstate, error FROM shardbridge.stalls WHERE topic = $1', [topics.enc.topic])).rows[0];
  await waitFor('the stall recorded', async () => (await recorded()) !== undefined, { timeoutMs: 5_000 });
  assert.equal((await recorded()).sqlstate, '22P05');
  assert.match((await recorded()).error, /remedy: .*CREATE DATABASE \\u\{2026\} ENCODING 'UTF8'/);

  // 54000: an index entry over a third of a page. Stalled naming the index; dropping it resumes the partition.
  await produceChanges(producer, topics.idx, rows(['a', randomBytes(3000).toString('hex'), 'c']));
  await waitFor('the stall on an index row too big', () => stallLine(topics.idx.topic, '54000') !== undefined, { timeoutMs: 15_000 });
  const idx = stallLine(topics.idx.topic, '54000')!;
  assert.equal(idx.offset, '1');
  assert.equal(idx.constraint, 'idx_v');
  assert.match(idx.remedy, /an index of .*idx \(idx_v\) cannot hold .*md5/);
  await own.query(`DROP INDEX ${DST}.idx_v`);
  await waitApplied(own, admin, groupId, [topics.idx.topic], 15_000);
  assert.equal(await count('idx'), 3);

  // 57014: a record that takes longer than the role's statement_timeout. The batch goes in halves
  // down to it, the records before it applied; it stalls saying what to raise, and resumes once raised.
  await role(`SET statement_timeout = '300ms'`);
  await terminateSink();
  await produceChanges(producer, topics.slow, rows(['a', 'b', 'slow', 'd']));
  await waitFor('the stall on a statement timeout', () => stallLine(topics.slow.topic, '57014') !== undefined, { timeoutMs: 15_000 });
  const slow = stallLine(topics.slow.topic, '57014')!;
  assert.equal(slow.offset, '2');
  assert.match(slow.remedy, /applied in halves; at one record it stalls: raise the sink role's statement_timeout/);
  assert.ok(retryLines(topics.slow.topic, '57014').some((l) => /canceling statement due to statement timeout .*statement_timeout of the sink's role/.test(l.msg)));
  assert.equal(await count('slow'), 2);
  await role('RESET statement_timeout');
  await terminateSink();
  await waitApplied(own, admin, groupId, [topics.slow.topic], 15_000);
  assert.equal(await count('slow'), 4);

  // A batch too big for the timeout (here over 2 rows) goes in halves once; the next batches of the
  // table are cut to what fit then, not timed out again (they were: three timeouts, then halves, each time).
  await produceChanges(producer, topics.big, rows(['a', 'b', 'c', 'd']));
  await waitApplied(own, admin, groupId, [topics.big.topic], 15_000);
  assert.equal(retryLines(topics.big.topic, '57014').length, 1, 'the first batch timed out');
  await produceChanges(producer, topics.big, rows(['e', 'f', 'g', 'h'], 5));
  await waitApplied(own, admin, groupId, [topics.big.topic], 15_000);
  assert.equal(await count('big'), 8);
  assert.equal(retryLines(topics.big.topic, '57014').length, 1, 'the next batch cut under the size that timed out');

  // A DBA's lock: the batch waits on it; its session terminated (57P01) it is applied again and waits
  // again; under a lock_timeout (55P03) it is retried with backoff, saying so; the lock gone, it applies.
  await dba.query(`BEGIN; LOCK TABLE ${DST}.lk IN ACCESS EXCLUSIVE MODE`);
  await produceChanges(producer, topics.lk, rows(['a', 'b', 'c']));
  const waiting = `SELECT pid FROM pg_stat_activity WHERE usename = '${ROLE}' AND wait_event_type = 'Lock'`;
  await waitFor('a batch waiting for the lock', async () => (await db.query(waiting)).rowCount! > 0, { timeoutMs: 10_000 });
  // The DBA cancels it first (57014, user request): applied again as it was, not taken for a timeout.
  await db.query(`SELECT pg_cancel_backend(pid) FROM (${waiting}) w`);
  await waitFor('the cancelled batch retried', () => retryLines(topics.lk.topic, '57014').length > 0, { timeoutMs: 10_000 });
  assert.match(retryLines(topics.lk.topic, '57014')[0].msg, /canceling statement due to user request .*another session cancelled the statement .*applied again as it was, not in halves/);
  await waitFor('the cancelled batch waiting for the lock again', async () => (await db.query(waiting)).rowCount! > 0, { timeoutMs: 10_000 });
  await db.query(`SELECT pg_terminate_backend(pid) FROM (${waiting}) w`);
  await waitFor('the terminated batch retried', () => retryLines(topics.lk.topic, '57P01').length > 0, { timeoutMs: 10_000 });
  assert.match(retryLines(topics.lk.topic, '57P01')[0].msg, /terminating connection due to administrator command .*applied again on a new connection/);
  await waitFor('the batch waiting for the lock again', async () => (await db.query(waiting)).rowCount! > 0, { timeoutMs: 10_000 });
  await role(`SET lock_timeout = '200ms'`);
  await terminateSink();
  const retriesBefore = await metric('apply_retries_total');
  await waitFor('the batch retried past the lock_timeout', () => retryLines(topics.lk.topic, '55P03').length > 0, { timeoutMs: 10_000 });
  assert.match(retryLines(topics.lk.topic, '55P03')[0].msg, /canceling statement due to lock timeout.*\[SQLSTATE 55P03\]; retrying in \d+ ms — another session holds a lock/);
  await waitFor('more tries', async () => (await metric('apply_retries_total')) >= retriesBefore + 2, { timeoutMs: 10_000 });
  assert.equal(await stalled(topics.lk.topic), 0, 'a lock is waited for, not stalled on');
  // (The table itself cannot be read while the lock is held.)
  assert.equal((await own.query(`SELECT count(*)::int AS n FROM ${DST}.applied WHERE tbl = 'lk'`)).rows[0].n, 0);
  await dba.query('COMMIT');
  await role('RESET lock_timeout');
  await waitApplied(own, admin, groupId, [topics.lk.topic], 15_000);
  assert.equal(await count('lk'), 3);

  // 25006: the destination accepts no writes (read-only for maintenance, or a standby after a
  // failover). Waited for, saying so, not stalled; writes accepted again, the batch applies.
  await role('SET default_transaction_read_only = on');
  await terminateSink();
  await produceChanges(producer, topics.ro, rows(['a', 'b', 'c']));
  await waitFor('the read-only destination waited for', () => retryLines(topics.ro.topic, '25006').length > 0, { timeoutMs: 10_000 });
  assert.match(retryLines(topics.ro.topic, '25006')[0].msg, /cannot execute .* in a read-only transaction.*accepts no writes: default_transaction_read_only is on/);
  assert.equal(await stalled(topics.ro.topic), 0);
  await role('RESET default_transaction_read_only');
  await waitApplied(own, admin, groupId, [topics.ro.topic], 15_000);
  assert.equal(await count('ro'), 3);

  // 53300 mid-run: the sink's sessions gone and no slot for new ones. Waited for, then applied.
  await role('CONNECTION LIMIT 0');
  await terminateSink();
  await produceChanges(producer, topics.conn, rows(['a', 'b', 'c']));
  await waitFor('no connection slot waited for', () => retryLines(topics.conn.topic, '53300').length > 0, { timeoutMs: 10_000 });
  assert.match(retryLines(topics.conn.topic, '53300')[0].msg, /cannot connect to the destination at 127\.0\.0\.1:\d+\/sb_dsterr_\w+: too many connections for role .*no connection slot for the sink/);
  await role('CONNECTION LIMIT -1');
  await waitApplied(own, admin, groupId, [topics.conn.topic], 15_000);
  assert.equal(await count('conn'), 3);

  // 28P01: the role's password changed on the server while the sink runs. destination.passwordFile
  // is read at each new connection: the sessions open go on, new ones are refused (waited for,
  // saying what to do, never the password), and the file rewritten, the next try connects: no restart.
  const [oldPw, newPw] = [`old-${randomBytes(6).toString('hex')}`, `new-${randomBytes(6).toString('hex')}`];
  writeFileSync(passwordFile, `${oldPw}\n`);
  // Password authentication for the role (the test cluster trusts everyone): lines before the
  // others, through the server itself (the file may be a shared cluster's), put back afterwards.
  const hbaFile = (await db.query('SHOW hba_file')).rows[0].hba_file as string;
  const hba = (await db.query('SELECT pg_read_file($1) AS t', [hbaFile])).rows[0].t as string;
  const writeHba = async (text: string) => {
    const lo = (await db.query(`SELECT lo_from_bytea(0, convert_to($1, 'UTF8')) AS o`, [text])).rows[0].o as number;
    await db.query('SELECT lo_export($1, $2)', [lo, hbaFile]);
    await db.query('SELECT lo_unlink($1), pg_reload_conf()', [lo]);
  };
  t.after(async () => {
    await writeHba(hba).catch(() => {});
  });
  await role(`PASSWORD '${oldPw}'`);
  await writeHba(`host all ${ROLE} 127.0.0.1/32 scram-sha-256\nhost all ${ROLE} ::1/128 scram-sha-256\n${hba}`);
  await terminateSink();
  await produceChanges(producer, topics.pw, rows(['a', 'b']));
  await waitApplied(own, admin, groupId, [topics.pw.topic], 15_000);
  await role(`PASSWORD '${newPw}'`);
  await terminateSink();
  await produceChanges(producer, topics.pw, rows(['c', 'd'], 3));
  await waitFor('the refused password waited for', () => retryLines(topics.pw.topic, '28P01').length > 0, { timeoutMs: 10_000 });
  const refusedPw = retryLines(topics.pw.topic, '28P01')[0].msg as string;
  assert.match(refusedPw, new RegExp(`cannot connect to the destination at 127\\.0\\.0\\.1:\\d+/${ROLE}: password authentication failed for user "${ROLE}" \\[SQLSTATE 28P01\\]; retrying in \\d+ ms — the destination refused the sink role's password`));
  assert.match(refusedPw, /the file destination\.passwordFile names .*read at every new connection, so the sink takes it at its next try without a restart/);
  assert.equal(await stalled(topics.pw.topic), 0, 'waited for, not stalled on');
  // The file gone meanwhile (a secret volume remounted): the connection fails naming it, waited for too.
  rmSync(passwordFile);
  const missing = () => lines().find((l) => l.level === 40 && l.topic === topics.pw.topic && String(l.msg).includes(`: config: destination.passwordFile ${passwordFile}: cannot read it: no such file`));
  await waitFor('the missing password file waited for', () => missing() !== undefined, { timeoutMs: 15_000 });
  assert.match(missing()!.msg, new RegExp(`cannot connect to the destination at 127\\.0\\.0\\.1:\\d+/${ROLE}: .*; retrying in \\d+ ms — put the password in .* again`));
  assert.equal(await stalled(topics.pw.topic), 0);
  writeFileSync(passwordFile, `${newPw}\n`);
  await waitApplied(own, admin, groupId, [topics.pw.topic], 30_000);
  assert.equal(await count('pw'), 4);
  const logged = JSON.stringify(lines());
  assert.ok(!logged.includes(oldPw) && !logged.includes(newPw), 'no password in the log');

  // Each row written once (a rolled-back try leaves no line), and the encoding stall still there.
  const twice = await own.query(`SELECT tbl, id, count(*)::int AS n FROM ${DST}.applied GROUP BY 1, 2 HAVING count(*) > 1`);
  assert.deepEqual(twice.rows, []);
  const written = await own.query(`SELECT tbl, count(*)::int AS n FROM ${DST}.applied GROUP BY 1 ORDER BY 1`);
  assert.deepEqual(written.rows.map((r) => [r.tbl, r.n]), [['big', 8], ['conn', 3], ['enc', 1], ['idx', 3], ['lk', 3], ['pw', 4], ['ro', 3], ['slow', 4]]);
  assert.equal(await stalled(topics.enc.topic), 1);
});
