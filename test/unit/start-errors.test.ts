import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, RetriableError, SchemaError, ServiceError, SinkApplyError, SourceError, atServer, isRetriable } from '../../shared/errors.ts';
import { unreachable } from '../../shared/registry/registry-client.ts';
import { metricsPortError } from '../../shared/metrics.ts';
import { pgRemedy } from '../../shared/config/postgres.ts';
import { argumentProblem, sinkRunning } from '../../shared/cli/commands/replay.ts';

test('atServer: the message names the server; retriable, context and remedy follow the original; a ConfigError passes unchanged', () => {
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
  const down = atServer(refused, 'cannot use the destination PostgreSQL at h:5432/app', 'check destination.url');
  assert.ok(down instanceof ServiceError);
  assert.equal(down.message, 'cannot use the destination PostgreSQL at h:5432/app: connect ECONNREFUSED 127.0.0.1:1');
  assert.equal(down.remedy, 'check destination.url');
  assert.equal(isRetriable(down), true);

  const missing = atServer(new SinkApplyError('database "x" does not exist', { context: { sqlstate: '3D000' } }), 'cannot use it', 'fallback');
  assert.equal(isRetriable(missing), false);
  assert.equal(missing.context.sqlstate, '3D000');
  assert.equal(missing.describe(), 'cannot use it: database "x" does not exist (sqlstate=3D000)\n  remedy: fallback');

  const own = atServer(new RetriableError('x', { remedy: 'its own' }), 'at k', 'fallback');
  assert.equal(own.remedy, 'its own');
  const config = new ConfigError('config: kafka.sasl: ...');
  assert.equal(atServer(config, 'at k'), config);
});

test('a taken metrics port is a ConfigError naming metricsPort', () => {
  const e = metricsPortError(9465, Object.assign(new Error('listen EADDRINUSE: address already in use 0.0.0.0:9465'), { code: 'EADDRINUSE' }), 'sink');
  assert.ok(e instanceof ConfigError);
  assert.equal(e.context.key, 'metricsPort');
  assert.match(e.message, /^config: metricsPort: cannot serve metrics on port 9465: listen EADDRINUSE/);
});

test('replay arguments: an unknown topic or a partition past the last one, named (pure)', () => {
  assert.equal(argumentProblem({ topic: 'p.s.t' }, ['p.s.t'], 3, 'k:9092'), undefined);
  assert.equal(argumentProblem({ topic: 'p.s.t', partition: 2 }, ['p.s.t'], 3, 'k:9092'), undefined);
  assert.equal(argumentProblem({ topic: 'p.s.t', partition: 3 }, ['p.s.t'], 3, 'k:9092'), '--partition 3: topic p.s.t has 3 partition(s), numbered from 0');
  assert.match(argumentProblem({ topic: 'p.s.x' }, ['p.s.t'], undefined, 'k:9092')!, /^--topic p\.s\.x: no such topic on Kafka at k:9092/);
  assert.match(argumentProblem({ topic: 's.t' }, ['p.s.t', 'p.s.tt'], undefined, 'k:9092')!, /<table>\); did you mean p\.s\.t\?$/);
  assert.match(argumentProblem({ topic: 'P.S.T' }, ['p.s.t'], undefined, 'k:9092')!, /; did you mean p\.s\.t\?$/);
  assert.match(argumentProblem({ topic: 'x' }, ['p.s.t'], undefined, 'k:9092')!, /<table>\)$/);
  // Topics on Kafka the sink does not read: stored positions for them would change nothing.
  const sink = { prefix: 'p', deadLetterTopic: 'p.dead' };
  assert.equal(argumentProblem({ topic: 'p.s.t' }, ['p.s.t'], 1, 'k:9092', sink), undefined);
  assert.equal(
    argumentProblem({ topic: 'q.s.t' }, ['q.s.t'], 1, 'k:9092', sink),
    '--topic q.s.t: not a topic this sink reads: the sink applies the topics under its topicPrefix p (p.<schema>.<table>); is --sink-config the configuration of the sink that applies it?',
  );
  assert.match(argumentProblem({ topic: 'p.dead' }, ['p.dead'], 1, 'k:9092', sink)!, /^--topic p\.dead: not a topic this sink reads: it is the sink's dead-letter topic/);
  assert.match(argumentProblem({ topic: 'p.__dlq' }, ['p.__dlq'], 1, 'k:9092', sink)!, /under its topicPrefix p/);
});

test("replay while the sink's group has members: they are named, past five counted; the remedy says a killed process stays a member for its session (pure)", () => {
  const members = Array.from({ length: 7 }, (_, i) => ({ clientId: `shardbridge-sink-s${i}`, clientHost: `/10.0.0.${i}` }));
  const e = sinkRunning('g', 'Stable', 'p.s.t', members);
  assert.equal(
    e.message,
    "the sink is still running: its consumer group g has members shardbridge-sink-s0 (10.0.0.0), shardbridge-sink-s1 (10.0.0.1), shardbridge-sink-s2 (10.0.0.2), shardbridge-sink-s3 (10.0.0.3), shardbridge-sink-s4 (10.0.0.4), 2 more (state Stable); replay sets the sink's positions only while it is stopped",
  );
  assert.match(e.remedy ?? '', /stays a member until its session times out \(10 s\): run replay again then$/);
});

test('describe: context on the first line, without the internal phase or a server the message names; the remedy last', () => {
  const e = new SourceError('start-up checks failed on the source h:5432:\nFAIL  wal_level  replica\n      remedy: set wal_level = logical', {
    context: { phase: 'startup', source: 'h:5432', slot: 's' },
    remedy: 'fix the findings',
  });
  assert.equal(e.describe(), 'start-up checks failed on the source h:5432: (slot=s)\nFAIL  wal_level  replica\n      remedy: set wal_level = logical\n  remedy: fix the findings');
  assert.equal(new SourceError('cannot connect', { context: { phase: 'startup' } }).describe(), 'cannot connect');
});

test("the registry library's network failure (\"status 400\") reads as unreachable and names the URL; other errors pass (pure)", () => {
  const lib = new SchemaError('registering a schema under subject s-value failed: Confluent_Schema_Registry - Error, status 400: connect ECONNREFUSED 127.0.0.1:1', {
    retriable: true,
    context: { subject: 's-value', status: 400 },
    remedy: 'is the schema registry running and its URL right?',
  });
  const e = unreachable(lib, 'http://reg:8081') as SchemaError;
  assert.equal(e.message, 'registering a schema under subject s-value failed: cannot reach the registry at http://reg:8081 (connect ECONNREFUSED 127.0.0.1:1)');
  assert.equal(e.context.status, undefined);
  assert.equal(e.retriable, true);
  const refused = new SchemaError('x failed: Confluent_Schema_Registry - Error, status 409: incompatible', { context: { status: 409 } });
  assert.equal(unreachable(refused, 'http://reg:8081'), refused);
});

test('pgRemedy: the setting a PostgreSQL refusal points at, found down the cause chain; else the fallback (pure)', () => {
  const code = (c: string, msg = c) => Object.assign(new Error(msg), { code: c });
  const remedy = (err: unknown) => pgRemedy(err, 'source', 'fallback');
  assert.match(remedy(code('3D000', 'database "nodb" does not exist')), /^check the database name \(the path of source\.url, or source\.database\)/);
  assert.match(remedy(code('28P01')), /^check the password \(source\.password, or the one in source\.url, percent-encoded, or the content of source\.passwordFile\)/);
  assert.match(remedy(code('28P01')), /with none given, its line in the password file \(PGPASSFILE, else ~\/\.pgpass\)$/);
  assert.match(remedy(code('28000')), /^check the user \(source\.user, or the one in source\.url\) exists, and that pg_hba\.conf/);
  assert.match(remedy(code('ENOTFOUND')), /^the host name does not resolve from here: check the host in source\.url \(or source\.host\)/);
  assert.match(remedy(code('ECONNREFUSED')), /^nothing accepts connections at that address: check the port in source\.url \(or source\.port\)/);
  // Wrapped: the sink's start-up errors keep the SQLSTATE as context, atServer as the cause.
  assert.match(pgRemedy(new SinkApplyError('database "x" does not exist', { context: { sqlstate: '3D000' } }), 'destination', 'fallback'), /destination\.database/);
  assert.match(remedy(atServer(code('28P01'), 'cannot connect')), /source\.password/);
  assert.equal(remedy(code('ETIMEDOUT')), 'fallback');
  assert.equal(remedy(new Error('Connection terminated unexpectedly')), 'fallback');
  assert.match(remedy(code('SELF_SIGNED_CERT_IN_CHAIN')), /sslrootcert/);
});
