/**
 * How the sink reads what the destination answers (pure): what is waited for and what it says
 * it waits for, what stalls and its remedy, the retry lines, the stall row on a LATIN1 database,
 * the encoding said at start. test/integration/sink-destination-errors.test.ts provokes each on a server.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { Writable } from 'node:stream';
import { RetriableError, SinkApplyError, isRetriable } from '../../shared/errors.ts';
import { cancelledByUser, classify, inHalves, retriableAtDestination, tooBigForOneGo, waitingFor, wentInHalves } from '../../sink-connector/destination-errors.ts';
import { RETRY_WARN_EVERY_MS, RetryLog, retryLine } from '../../sink-connector/batch-retry.ts';
import { asciiOnly, describeStall, remedyFor } from '../../sink-connector/stall.ts';
import { encodingWarning } from '../../sink-connector/destination-start.ts';

const AT = { topic: 'p.public.orders', partition: 0, offset: '7' };

function pgError(fields: Record<string, string | undefined>): Error {
  return Object.assign(new Error(fields.message ?? 'boom'), { severity: 'ERROR', ...fields });
}

test('25006 (read-only destination, a standby after a failover) is waited for, not stalled on, and says so', () => {
  const ro = classify(pgError({ code: '25006', message: 'cannot execute INSERT in a read-only transaction' }), { table: 's.t' }) as SinkApplyError;
  assert.equal(ro.retriable, true);
  assert.equal(isRetriable(ro), true);
  assert.match(ro.remedy!, /accepts no writes: default_transaction_read_only is on .* or destination points at a standby/);
  assert.equal(retriableAtDestination('25006'), true);
  assert.equal(retriableAtDestination('25P02'), false);
});

test('each transient SQLSTATE says what the sink waits for; one that stalls has none', () => {
  const cases: [string, string, RegExp][] = [
    ['53300', 'sorry, too many clients already', /no connection slot for the sink \(max_connections reached, or the CONNECTION LIMIT/],
    ['53300', 'too many connections for role "sink"', /no connection slot/],
    ['53100', 'could not extend file "base/1/2": No space left on device', /disk is full/],
    ['53200', 'out of memory', /out of memory: lower batch.maxRows/],
    ['55P03', 'canceling statement due to lock timeout', /holds a lock .* lock_timeout of the sink's role: the batch is applied again once the lock is released/],
    ['57014', 'canceling statement due to statement timeout', /statement_timeout of the sink's role or database .* applied in halves/],
    ['57014', 'canceling statement due to user request', /another session cancelled the statement \(pg_cancel_backend.*applied again as it was, not in halves/],
    ['57P01', 'terminating connection due to administrator command', /ended the session .*applied again on a new connection/],
    ['57P03', 'the database system is starting up', /starting up/],
    ['40P01', 'deadlock detected', /deadlock/],
    ['08006', 'connection failure', /connection to the destination was lost/],
  ];
  for (const [code, message, want] of cases) {
    const e = classify(pgError({ code, message }), {}) as SinkApplyError;
    assert.equal(e.retriable, true, code);
    assert.match(e.remedy!, want, `${code} ${message}`);
  }
  for (const code of ['22P05', '54000', '23505', '42703']) {
    const e = classify(pgError({ code }), {}) as SinkApplyError;
    assert.equal(e.retriable, false, code);
    assert.equal(e.remedy, undefined, code);
    assert.equal(waitingFor(code, ''), undefined);
  }
  // A password changed under the running sink: waited for (the pool's connect is retried), with the password file as the way out without a restart.
  assert.match(waitingFor('28P01', 'password authentication failed for user "sink"')!, /refused the sink role's password .*destination\.passwordFile names \(or, .*the pgpass file: PGPASSFILE, else ~\/\.pgpass.*without a restart.*destination\.password.*restart the sink/);
  assert.match(waitingFor('28000', '')!, /pg_hba\.conf/);
  // A connection lost without a SQLSTATE.
  assert.match((classify(new Error('Connection terminated unexpectedly'), {}) as RetriableError).remedy!, /rolled back and is applied again/);
});

test("a DBA's pg_cancel_backend (57014, user request) is retried as it is, saying another session cancelled it; a statement_timeout goes in halves", () => {
  const cancel = classify(pgError({ code: '57014', message: 'canceling statement due to user request' }), { table: 's.t' }) as SinkApplyError;
  assert.equal(cancel.retriable, true, 'retried with backoff, as every transient failure');
  assert.equal(cancelledByUser('57014', cancel.message), true);
  assert.equal(tooBigForOneGo(cancel), false, 'says nothing about the batch size: never halved');
  assert.match(retryLine('apply t[0] 0..9', cancel, 250).text, /canceling statement due to user request \(table s\.t\) \[SQLSTATE 57014\]; retrying in 250 ms — another session cancelled the statement/);
  const timeout = classify(pgError({ code: '57014', message: 'canceling statement due to statement timeout' }), {});
  assert.equal(cancelledByUser('57014', (timeout as Error).message), false);
  assert.equal(tooBigForOneGo(timeout), true);
  // What went in halves is told apart for the sizing (batch-size.ts, TooBigSizes).
  assert.equal(wentInHalves(inHalves(timeout as SinkApplyError)), true);
  assert.equal(wentInHalves(timeout), false);
  // A server answering in another language: taken as a timeout, as before.
  const localized = classify(pgError({ code: '57014', message: 'Anfrage wird abgebrochen wegen Zeitüberschreitung' }), {});
  assert.equal(tooBigForOneGo(localized), true);
  assert.match((localized as SinkApplyError).remedy!, /applied in halves/);
  assert.equal(cancelledByUser('55P03', 'canceling statement due to user request'), false);
});

test('a transaction_timeout (25P04, PostgreSQL 17+, FATAL: the session is ended) is retried, then the batch goes in halves, the role setting named', () => {
  const e = classify(pgError({ code: '25P04', message: 'terminating connection due to transaction timeout' }), { table: 's.t' }) as SinkApplyError;
  assert.equal(e.retriable, true);
  assert.equal(tooBigForOneGo(e), true);
  assert.match(retryLine('apply t[0] 0..9', e, 250).text, /terminating connection due to transaction timeout \(table s\.t\) \[SQLSTATE 25P04\]; retrying in 250 ms — the batch's transaction ran longer than the transaction_timeout of the sink's role or database .*applied in halves; raise transaction_timeout for the sink's role/);
});

test('stall remedies: an encoding the character has no code in (22P05), an index entry too big (54000)', () => {
  const enc = describeStall(
    classify(pgError({ code: '22P05', message: 'character with byte sequence 0xe6 0x97 0xa5 in encoding "UTF8" has no equivalent in encoding "LATIN1"' }), { table: 's.t' }),
    AT,
    'apply',
  );
  assert.match(enc.remedy, /the destination database's encoding cannot store a character of this value: .*ENCODING 'UTF8'/);
  assert.doesNotMatch(enc.remedy, /ALTER COLUMN .* TYPE/, 'not a type to widen');
  assert.match(remedyFor({ sqlstate: '22P05', table: 's.t', column: 'v', reason: 'apply' }), /\(column v\).*or make s\.t\.v bytea/);

  const idx = describeStall(
    classify(pgError({ code: '54000', message: 'index row size 6016 exceeds btree version 4 maximum 2704 for index "idx_v"', table: 't', schema: 's', constraint: 'idx_v' }), {}),
    AT,
    'apply',
  );
  assert.equal(idx.constraint, 'idx_v');
  assert.match(idx.remedy, /an index of s\.t \(idx_v\) cannot hold this row's value .* md5\(<column>\)/);
  assert.match(remedyFor({ sqlstate: '54000', reason: 'apply', message: 'row is too big: size 9000, maximum size 8160' }), /over one of its limits: row is too big/);
});

test('the retry line says what failed, its SQLSTATE and what the sink waits for; the same failure again is at debug, once a minute at warn', () => {
  const err = classify(pgError({ code: '55P03', message: 'canceling statement due to lock timeout' }), { table: 's.t' });
  const line = retryLine('apply t[0] 0..2', err, 500);
  assert.equal(line.sqlstate, '55P03');
  assert.match(line.text, /^apply t\[0\] 0\.\.2 failed: canceling statement due to lock timeout \(table s\.t\) \[SQLSTATE 55P03\]; retrying in 500 ms — another session holds a lock/);

  const out: { level: number; msg: string }[] = [];
  const log = pino({ level: 'debug' }, new Writable({ write: (c, _e, cb) => (out.push(JSON.parse(String(c))), cb()) }));
  let now = 0;
  const said = new RetryLog(() => now);
  said.log(log, 'apply', err, 1, 250);
  now += 1_000;
  said.log(log, 'apply', err, 2, 500);
  const other = classify(pgError({ code: '57P01', message: 'terminating connection due to administrator command' }), {});
  said.log(log, 'apply', other, 3, 1_000);
  said.log(log, 'apply', err, 4, 2_000);
  now += RETRY_WARN_EVERY_MS;
  said.log(log, 'apply', err, 5, 4_000);
  assert.deepEqual(out.map((l) => l.level), [40, 20, 40, 40, 40]);
});

test('a stall row on a database without UTF8: the characters it has no code for escaped', () => {
  assert.equal(asciiOnly('CREATE DATABASE … ENCODING, key 日本 🙂'), 'CREATE DATABASE \\u{2026} ENCODING, key \\u{65e5}\\u{672c} \\u{1f642}');
  assert.equal(asciiOnly('plain'), 'plain');
});

test('a destination database not in UTF8 is said at start, with what it means', () => {
  assert.equal(encodingWarning('UTF8'), null);
  assert.match(encodingWarning('LATIN1')!, /encoding is LATIN1, not UTF8 .* stalls its partition \(SQLSTATE 22P05\).*ENCODING 'UTF8'/);
  assert.match(encodingWarning('SQL_ASCII')!, /stores the UTF8 bytes unchecked/);
});

test('a lost connection says the batch is applied again; a certificate that does not verify is not called a lost connection (the start names the CA setting)', () => {
  const lost = classify(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), { table: 'public.t' });
  assert.ok(lost instanceof RetriableError);
  assert.match(lost.remedy ?? '', /connection to the destination was lost/);
  const untrusted = classify(Object.assign(new Error('unable to verify the first certificate'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }), {});
  assert.equal((untrusted as RetriableError).remedy, undefined);
});

test('a Citus worker down or its connection lost (XX000, 58030 or 08006 from the coordinator) is waited for, not stalled on, and says so', () => {
  // Messages as Citus raises them (adaptive_executor.c, remote_transaction.c, intermediate_results.c,
  // multi_copy.c; remote_commands.c's ReportResultError relays libpq's text without a SQLSTATE as XX000).
  const relayed: [string, string][] = [
    ['XX000', 'execution cannot recover from multiple connection failures. Last node failed 10.0.0.5:5432'],
    ['XX000', 'failure on connection marked as essential: 10.0.0.5:5432'],
    ['XX000', "failed to prepare transaction 'citus_0_4242_7_1' on host 10.0.0.5:5432"],
    ['XX000', 'cannot connect to 10.0.0.5:5432 to fetch intermediate results'],
    ['XX000', 'could not connect to any active placements'],
    ['XX000', 'server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally\n\tbefore or while processing the request.'],
    ['XX000', 'connection not open'],
    ['58030', 'failed to COPY to shard 102008 on 10.0.0.5:5432'],
    ['58030', 'failed to complete COPY on 10.0.0.5:5432'],
  ];
  for (const [code, message] of relayed) {
    const e = classify(pgError({ code, message }), { table: 'public.orders' }) as SinkApplyError;
    assert.equal(e.retriable, true, message);
    assert.equal(e.context.sqlstate, '08006', message);
    assert.equal(e.context.reportedSqlstate, code, message);
    assert.match(e.remedy!, /Citus could not reach a worker node or lost its connection to it .* applied again once the worker answers/, message);
    assert.equal(tooBigForOneGo(e), false, 'a worker down says nothing of the batch size');
  }
  for (const message of [
    'connection to the remote node postgres@10.0.0.5:5432 failed with the following error: Connection refused',
    'connection establishment for node 10.0.0.5:5432 failed',
    'could not establish any connections to the node 10.0.0.5:5432 after 5000 ms',
  ]) {
    const e = classify(pgError({ code: '08006', message }), {}) as SinkApplyError;
    assert.equal(e.retriable, true);
    assert.match(e.remedy!, /Citus could not reach a worker node/, message);
  }
  // A worker refusing the coordinator's credentials (a password rotated for the sink's role): not
  // destination.passwordFile's business, which covers the sink's own sessions to the coordinator.
  for (const message of [
    'connection to the remote node sink@10.0.0.5:5432 failed with the following error: FATAL:  password authentication failed for user "sink"',
    'connection to the remote node sink@10.0.0.5:5432 failed with the following error: fe_sendauth: no password supplied',
  ]) {
    const e = classify(pgError({ code: '08006', message }), {}) as SinkApplyError;
    assert.equal(e.retriable, true, message);
    assert.match(e.remedy!, /^a Citus worker refused the coordinator's connection .* not with destination\.passwordFile: the ~\/\.pgpass .* or pg_dist_authinfo/, message);
  }
  // Other XX000s still stall; PostgreSQL's own lost connection keeps its wording.
  assert.equal((classify(pgError({ code: 'XX000', message: 'could not find shard for partition column value' }), {}) as SinkApplyError).retriable, false);
  assert.match(waitingFor('08006', 'terminating connection due to administrator command')!, /^the connection to the destination was lost/);
});

test('a batch meeting a shard Citus removed as it committed (a shard split or create_distributed_table_concurrently finishing, XX000) is applied again whole, not stalled on', () => {
  const e = classify(pgError({ code: 'XX000', message: 'could not find valid entry for shard 103778' }), { table: 's.t' }) as SinkApplyError;
  assert.equal(e.retriable, true);
  assert.equal(e.context.sqlstate, '40001');
  assert.equal(e.context.reportedSqlstate, 'XX000');
  assert.equal(e.context.table, 's.t');
  assert.match(e.remedy!, /^a Citus operation removed a shard the batch was planned against .*a shard split or create_distributed_table_concurrently.*applied again whole/);
  assert.equal(tooBigForOneGo(e), false, 'not a size problem: never halved');
  // Only that message: a shard placement or a partition value without a shard still stalls, a real serialization failure keeps its wording.
  for (const message of ['could not find valid entry for shard placement 7', 'could not find shard for partition column value']) {
    assert.equal((classify(pgError({ code: 'XX000', message }), {}) as SinkApplyError).retriable, false, message);
  }
  assert.match(waitingFor('40001', 'could not serialize access due to concurrent update')!, /^the destination rolled the batch back for a serialization failure/);
});
