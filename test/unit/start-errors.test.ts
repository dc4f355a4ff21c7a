import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, RetriableError, ServiceError, SinkApplyError, atServer, isRetriable } from '../../shared/errors.ts';
import { metricsPortError } from '../../sink-connector/start-errors.ts';
import { argumentProblem } from '../../shared/cli/commands/replay.ts';

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
  assert.equal(missing.describe(), 'cannot use it: database "x" does not exist (sqlstate=3D000) \n  remedy: fallback');

  const own = atServer(new RetriableError('x', { remedy: 'its own' }), 'at k', 'fallback');
  assert.equal(own.remedy, 'its own');
  const config = new ConfigError('config: kafka.sasl: ...');
  assert.equal(atServer(config, 'at k'), config);
});

test('a taken metrics port is a ConfigError naming metricsPort', () => {
  const e = metricsPortError(9465, Object.assign(new Error('listen EADDRINUSE: address already in use 0.0.0.0:9465'), { code: 'EADDRINUSE' }));
  assert.ok(e instanceof ConfigError);
  assert.equal(e.context.key, 'metricsPort');
  assert.match(e.message, /^config: metricsPort: cannot serve metrics on port 9465: listen EADDRINUSE/);
});

test('replay arguments: an unknown topic or a partition past the last one, named (pure)', () => {
  assert.equal(argumentProblem({ topic: 'p.s.t' }, ['p.s.t'], 3, 'k:9092'), undefined);
  assert.equal(argumentProblem({ topic: 'p.s.t', partition: 2 }, ['p.s.t'], 3, 'k:9092'), undefined);
  assert.equal(argumentProblem({ topic: 'p.s.t', partition: 3 }, ['p.s.t'], 3, 'k:9092'), '--partition 3: topic p.s.t has 3 partition(s), numbered from 0');
  assert.match(argumentProblem({ topic: 'p.s.x' }, ['p.s.t'], undefined, 'k:9092')!, /^--topic p\.s\.x: no such topic on Kafka at k:9092/);
});
