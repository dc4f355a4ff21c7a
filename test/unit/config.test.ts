import { test } from 'node:test';
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../../shared/errors.ts';
import { coerceEnv, envOverrides, formatZodIssues, loadConfig, mergeConfig } from '../../shared/config/load.ts';
import { describeSafe } from '../../shared/config/common.ts';
import { connectionConfig, pgEndpoint, pgUrlProblems } from '../../shared/config/postgres.ts';
import { splitUrlCredentials } from '../../shared/config/registry.ts';
import { envName, envReferenceProblems } from '../../shared/config/env-refs.ts';
import { describeInput, editDistance, formatPath, isSecretPath, suggest } from '../../shared/config/issues.ts';
import { loadSourceConfig, sourceConfigSchema } from '../../source-connector/config.ts';
import { loadSinkConfig, sessionOptions } from '../../sink-connector/config.ts';
import { configErrorOf } from '../helpers/config-errors.ts';

const SECRET = 'Pa55-w0rd-NEVER-SHOWN';

const dir = mkdtempSync(join(tmpdir(), 'sb-config-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function file(text: string, ext = 'yaml'): string {
  const p = join(dir, `c${n++}.${ext}`);
  writeFileSync(p, text);
  return p;
}

const MINIMAL_SOURCE = {
  source: { url: 'postgres://rep@db/app' },
  kafka: { brokers: ['k:9092'] },
  schemaRegistry: { url: 'http://registry:8081' },
};

test('defaults are applied to a minimal source config', () => {
  const c = loadSourceConfig({ env: {}, overrides: MINIMAL_SOURCE });
  assert.equal(c.name, 'shardbridge');
  assert.equal(c.source.port, 5432);
  assert.equal(c.source.sslmode, 'prefer');
  assert.deepEqual(c.tables, { schemas: ['public'], include: [], exclude: [] });
  assert.equal(c.slotName, 'shardbridge_slot');
  assert.equal(c.publicationName, 'shardbridge_pub');
  assert.equal(c.slotFailover, false);
  assert.deepEqual(c.topics, { partitions: 6, cleanupPolicy: 'delete' });
  assert.deepEqual(c.snapshot, { mode: 'initial', chunkSize: 100_000, parallelReaders: 2 });
  assert.deepEqual(c.inFlight, { maxRecords: 100_000, maxBytes: 64 * 1024 * 1024 });
  assert.equal(c.heartbeatIntervalMs, 10_000);
  assert.equal(c.sequencesIntervalMs, 60_000);
  assert.equal(c.tombstones, true);
  assert.equal(c.metricsPort, 9464);
  assert.equal(c.walRetentionWarnBytes, 1024 ** 3);
  assert.equal(c.logLevel, 'info');
  assert.equal(c.heapGrowingPercent, undefined, 'the source decides by its table count (shared/heap.ts)');
});

test('defaults are applied to a minimal sink config', () => {
  const c = loadSinkConfig({
    env: {},
    overrides: { destination: { host: 'coord', database: 'app', user: 'sink' }, kafka: { brokers: ['k:9092'] }, schemaRegistry: { url: 'http://r:8081' } },
  });
  assert.equal(c.groupId, 'shardbridge-sink');
  assert.deepEqual(c.batch, { maxRows: 10_000, maxWaitMs: 50, adaptive: true, directCopy: true, transcode: true, binaryCopy: true, synchronousCommit: 'off', idleInTransactionTimeoutMs: 30_000, lockWaitWarnMs: 10_000 });
  assert.deepEqual(c.citus, { maxCachedConnsPerWorker: 16, enableDeadlockPrevention: false, requireDistributed: false });
  assert.deepEqual(c.consumer, { maxBytesPerPartition: 1024 * 1024, maxBytes: 3 * 1024 * 1024, minBytes: 64 * 1024, idleMaxWaitMs: 500 });
  assert.equal(c.truncate, 'apply');
  assert.equal(c.autoEvolve, false);
  assert.deepEqual(c.deadLetter, { enabled: false });
  assert.deepEqual(c.tables, {});
  assert.equal(c.stallRetryMs, 5_000);
  assert.equal(c.metricsPort, 9465);
  assert.equal(c.heapGrowingPercent, 100);
});

test('heapGrowingPercent: 0 (V8\'s own) up to 1000, named when wrong', () => {
  const sink = { destination: { host: 'coord', database: 'app', user: 'sink' }, kafka: { brokers: ['k:9092'] }, schemaRegistry: { url: 'http://r:8081' } };
  assert.equal(loadSinkConfig({ env: {}, overrides: { ...sink, heapGrowingPercent: 0 } }).heapGrowingPercent, 0);
  assert.equal(loadSourceConfig({ env: {}, overrides: { ...MINIMAL_SOURCE, heapGrowingPercent: 50 } }).heapGrowingPercent, 50);
  assert.match(configErrorOf(() => loadSinkConfig({ env: {}, overrides: { ...sink, heapGrowingPercent: -1 } })), /^config: heapGrowingPercent: /);
  assert.match(configErrorOf(() => loadSourceConfig({ env: {}, overrides: { ...MINIMAL_SOURCE, heapGrowingPercent: 2.5 } })), /^config: heapGrowingPercent: /);
});

test('batch.lockWaitWarnMs: 0 turns the lock watchdog off; a negative or fractional value is named', () => {
  const sink = { destination: { host: 'coord', database: 'app', user: 'sink' }, kafka: { brokers: ['k:9092'] }, schemaRegistry: { url: 'http://r:8081' } };
  assert.equal(loadSinkConfig({ env: {}, overrides: { ...sink, batch: { lockWaitWarnMs: 0 } } }).batch.lockWaitWarnMs, 0);
  assert.equal(loadSinkConfig({ env: { SHARDBRIDGE_SINK_BATCH__LOCK_WAIT_WARN_MS: '2500' }, overrides: sink }).batch.lockWaitWarnMs, 2_500);
  for (const bad of [-1, 2.5]) {
    assert.match(configErrorOf(() => loadSinkConfig({ env: {}, overrides: { ...sink, batch: { lockWaitWarnMs: bad } } })), /^config: batch\.lockWaitWarnMs: /);
  }
});

test('schemaRegistry.requestTimeoutMs: 10 s by default, both connectors, from the file or the environment; out of 100..300000 named', () => {
  const sink = { destination: { host: 'coord', database: 'app', user: 'sink' }, kafka: { brokers: ['k:9092'] }, schemaRegistry: { url: 'http://r:8081' } };
  assert.equal(loadSinkConfig({ env: {}, overrides: sink }).schemaRegistry.requestTimeoutMs, 10_000);
  assert.equal(loadSourceConfig({ env: {}, overrides: MINIMAL_SOURCE }).schemaRegistry.requestTimeoutMs, 10_000);
  const slow = { ...MINIMAL_SOURCE, schemaRegistry: { url: 'http://r:8081', requestTimeoutMs: 45_000 } };
  assert.equal(loadSourceConfig({ env: {}, overrides: slow }).schemaRegistry.requestTimeoutMs, 45_000);
  assert.equal(loadSinkConfig({ env: { SHARDBRIDGE_SINK_SCHEMA_REGISTRY__REQUEST_TIMEOUT_MS: '1500' }, overrides: sink }).schemaRegistry.requestTimeoutMs, 1_500);
  // Credentials moved out of the URL keep the timeout beside them.
  const withUser = { ...sink, schemaRegistry: { url: 'http://u:pw@r:8081', requestTimeoutMs: 2_000 } };
  assert.deepEqual(loadSinkConfig({ env: {}, overrides: withUser }).schemaRegistry, { url: 'http://r:8081', username: 'u', password: 'pw', requestTimeoutMs: 2_000 });
  for (const bad of [0, -1, 99, 2.5, 300_001, '10s']) {
    const msg = configErrorOf(() => loadSinkConfig({ env: {}, overrides: { ...sink, schemaRegistry: { url: 'http://r:8081', requestTimeoutMs: bad } } }));
    assert.equal(msg, `config: schemaRegistry.requestTimeoutMs: expected an integer number of milliseconds from 100 to 300000, got ${JSON.stringify(bad)}`);
  }
  assert.match(
    configErrorOf(() => loadSourceConfig({ env: { SHARDBRIDGE_SOURCE_SCHEMA_REGISTRY__REQUEST_TIMEOUT_MS: '0' }, overrides: MINIMAL_SOURCE })),
    /^config: schemaRegistry\.requestTimeoutMs \(from SHARDBRIDGE_SOURCE_SCHEMA_REGISTRY__REQUEST_TIMEOUT_MS\): expected an integer number of milliseconds from 100 to 300000, got 0$/m,
  );
});

test('slotFailover: a boolean, from the file or SHARDBRIDGE_SOURCE_SLOT_FAILOVER', () => {
  assert.equal(loadSourceConfig({ env: {}, overrides: { ...MINIMAL_SOURCE, slotFailover: true } }).slotFailover, true);
  assert.equal(loadSourceConfig({ env: { SHARDBRIDGE_SOURCE_SLOT_FAILOVER: 'true' }, overrides: MINIMAL_SOURCE }).slotFailover, true);
  assert.match(configErrorOf(() => loadSourceConfig({ env: {}, overrides: { ...MINIMAL_SOURCE, slotFailover: 'yes' } })), /^config: slotFailover: /m);
});

test('primary (a standby source\'s primary): optional, the shape of source, from the file or SHARDBRIDGE_SOURCE_PRIMARY__*, its password masked', () => {
  assert.equal(loadSourceConfig({ env: {}, overrides: MINIMAL_SOURCE }).primary, undefined);
  const c = loadSourceConfig({ env: { SHARDBRIDGE_SOURCE_PRIMARY__URL: `postgres://rep:${SECRET}@db1/app` }, overrides: MINIMAL_SOURCE });
  assert.equal(c.primary?.url, `postgres://rep:${SECRET}@db1/app`);
  assert.equal(c.primary?.sslmode, 'prefer');
  const fields = loadSourceConfig({ env: { SHARDBRIDGE_SOURCE_PRIMARY__PASSWORD: SECRET }, overrides: { ...MINIMAL_SOURCE, primary: { host: 'db1', database: 'app', user: 'rep' } } });
  assert.deepEqual([fields.primary?.host, fields.primary?.port, fields.primary?.password], ['db1', 5432, SECRET]);
  const safe = JSON.stringify(describeSafe(c)) + JSON.stringify(describeSafe(fields));
  assert.ok(!safe.includes(SECRET), safe);
  // Its errors name its own keys.
  assert.match(configErrorOf(() => loadSourceConfig({ env: {}, overrides: { ...MINIMAL_SOURCE, primary: { host: 'db1' } } })), /^config: primary\.database: required \(or give primary\.url instead\)$/m);
});

test('YAML and JSON files are read', () => {
  const y = file(`
source:
  host: db
  database: app
  user: rep
  password: ${SECRET}
kafka:
  brokers: [k1:9092, "[::1]:9093"]
schemaRegistry:
  url: http://r:8081
snapshot:
  chunkSize: 5000
tables:
  include: [public.orders]
`);
  const c = loadSourceConfig({ file: y, env: {} });
  assert.equal(c.source.host, 'db');
  assert.equal(c.snapshot.chunkSize, 5000);
  assert.deepEqual(c.kafka.brokers, ['k1:9092', '[::1]:9093']);
  assert.deepEqual(c.tables.include, ['public.orders']);
  const j = file(JSON.stringify({ ...MINIMAL_SOURCE, topicPrefix: 'cdc' }), 'json');
  assert.equal(loadSourceConfig({ file: j, env: {} }).topicPrefix, 'cdc');
});

test('a ${VAR} reference in a file is never taken literally: named with the variable that sets the key, unless the environment sets it', () => {
  const y = file(`
source:
  url: postgres://rep@db/app
  password: \${PGPASSWORD}
kafka:
  brokers: ["\${KAFKA_HOST:-k}:9092"]
schemaRegistry:
  url: http://registry:8081
snapshot:
  chunkSize: 5000
`);
  const message = configErrorOf(() => loadSourceConfig({ file: y, env: {} }));
  assert.match(message, /^config: source\.password: holds \$\{PGPASSWORD\}, which is not expanded \(config files take no environment references\): set SHARDBRIDGE_SOURCE_SOURCE__PASSWORD instead, or write the value$/m);
  assert.match(message, /^config: kafka\.brokers\[0\]: holds \$\{KAFKA_HOST\}, .*set SHARDBRIDGE_SOURCE_KAFKA__BROKERS instead/m);
  const env = { SHARDBRIDGE_SOURCE_SOURCE__PASSWORD: SECRET, SHARDBRIDGE_SOURCE_KAFKA__BROKERS: 'k:9092' };
  assert.equal(loadSourceConfig({ file: y, env }).source.password, SECRET);
  assert.equal(envName('SHARDBRIDGE_SINK_', ['tables', 'public.orders', 'columns']), 'SHARDBRIDGE_SINK_TABLES__public.orders__COLUMNS');
  assert.equal(envName('SHARDBRIDGE_SOURCE_', ['snapshot', 'chunkSize']), 'SHARDBRIDGE_SOURCE_SNAPSHOT__CHUNK_SIZE');
  assert.deepEqual(envReferenceProblems({ note: 'costs $5 {a}', n: 1 }, 'X_'), []);
});

test('wrong type names the key, the expected form and the value', () => {
  const msg = configErrorOf(() => loadSourceConfig({ env: {}, overrides: { ...MINIMAL_SOURCE, snapshot: { chunkSize: 'abc' } } }));
  assert.equal(msg, 'config: snapshot.chunkSize: expected a positive integer, got "abc"');
  const msg2 = configErrorOf(() => loadSourceConfig({ env: {}, overrides: { ...MINIMAL_SOURCE, kafka: { brokers: ['nohost'] } } }));
  assert.equal(msg2, 'config: kafka.brokers[0]: expected a "host:port" address, got "nohost"');
});

test('missing required keys are named, every one of them', () => {
  const msg = configErrorOf(() => loadSourceConfig({ env: {} }));
  const lines = msg.split('\n');
  assert.ok(lines.some((l) => l.startsWith('config: source.url: required')), msg);
  assert.ok(lines.some((l) => l.startsWith('config: kafka.brokers: required')), msg);
  assert.ok(lines.some((l) => l.startsWith('config: schemaRegistry.url: required')), msg);
  const partial = configErrorOf(() => loadSourceConfig({ env: {}, overrides: { ...MINIMAL_SOURCE, source: { host: 'db' } } }));
  assert.match(partial, /^config: source\.database: required/m);
  assert.match(partial, /^config: source\.user: required/m);
});

test('unknown keys are errors with a suggestion', () => {
  const f = file('tabels: {}\nsource:\n  url: postgres://h/db\n  sslMode: require\nkafka: {brokers: ["k:1"]}\nschemaRegistry: {url: "http://r"}\n');
  const err = (() => {
    try {
      loadSourceConfig({ file: f, env: {} });
    } catch (e) {
      return e as ConfigError;
    }
  })();
  assert.ok(err instanceof ConfigError);
  assert.match(err.message, /^config: tabels: unknown key \(did you mean "tables"\?\)$/m);
  assert.match(err.message, /^config: source\.sslMode: unknown key \(did you mean "sslmode"\?\)$/m);
  assert.equal(err.context.file, f);
  assert.equal(err.context.key, 'source.sslMode', 'the first problem is the context key');
});

test('environment overrides: nesting, case-insensitive keys, coercion, precedence', () => {
  const f = file('source: {url: "postgres://h/db"}\nkafka: {brokers: ["file:9092"]}\nschemaRegistry: {url: "http://r"}\nsnapshot: {chunkSize: 10}\n');
  const c = loadSourceConfig({
    file: f,
    env: {
      SHARDBRIDGE_SOURCE_KAFKA__BROKERS: 'a:9092, b:9092',
      SHARDBRIDGE_SOURCE_SNAPSHOT__CHUNK_SIZE: '250',
      SHARDBRIDGE_SOURCE_TOMBSTONES: 'false',
      SHARDBRIDGE_SOURCE_KAFKA__SSL: 'true',
      SHARDBRIDGE_SOURCE_SOURCE__PASSWORD: SECRET,
      SHARDBRIDGE_SOURCE_TOPICS__RETENTION_MS: '',
      SHARDBRIDGE_SINK_NAME: 'not ours',
    },
    overrides: { snapshot: { parallelReaders: 4, mode: undefined } },
  });
  assert.deepEqual(c.kafka.brokers, ['a:9092', 'b:9092']);
  assert.equal(c.snapshot.chunkSize, 250);
  assert.equal(c.snapshot.parallelReaders, 4);
  assert.equal(c.snapshot.mode, 'initial');
  assert.equal(c.tombstones, false);
  assert.equal(c.kafka.ssl, true);
  assert.equal(c.source.password, SECRET);
  assert.equal(c.topics.retentionMs, undefined);
  assert.equal(c.name, 'shardbridge');
});

test('bad environment values and unknown variables name the variable', () => {
  const msg = configErrorOf(() =>
    loadSourceConfig({ env: { SHARDBRIDGE_SOURCE_SNAPSHOT__CHUNK_SIZE: 'abc', SHARDBRIDGE_SOURCE_TABELS__SCHEMAS: 'x' }, overrides: MINIMAL_SOURCE }),
  );
  assert.match(msg, /^config: snapshot\.chunkSize \(from SHARDBRIDGE_SOURCE_SNAPSHOT__CHUNK_SIZE\): expected a positive integer, got "abc"$/m);
  assert.match(msg, /^config: TABELS \(from SHARDBRIDGE_SOURCE_TABELS__SCHEMAS\): unknown key \(did you mean "tables"\?\)$/m);
});

test('a password never appears in any error message', () => {
  const url = `postgres://rep:${SECRET}@db/app`;
  const messages = [
    configErrorOf(() => loadSourceConfig({ env: {}, overrides: { ...MINIMAL_SOURCE, source: { url: `mysql://rep:${SECRET}@db/app` } } })),
    configErrorOf(() => loadSourceConfig({ env: {}, overrides: { ...MINIMAL_SOURCE, source: { url: `postgres//rep:${SECRET}@db/app` } } })),
    configErrorOf(() => loadSourceConfig({ env: {}, overrides: { ...MINIMAL_SOURCE, source: { url, password: 12345 } } })),
    configErrorOf(() => loadSourceConfig({ env: {}, overrides: { ...MINIMAL_SOURCE, kafka: { brokers: [url], sasl: { mechanism: 'oauth', username: 'u', password: SECRET } } } })),
    configErrorOf(() => loadSourceConfig({ env: {}, overrides: { ...MINIMAL_SOURCE, schemaRegistry: { url: 'http://r', password: { v: SECRET } } } })),
    configErrorOf(() => loadSourceConfig({ env: { SHARDBRIDGE_SOURCE_SOURCE__PASSWORD: SECRET, SHARDBRIDGE_SOURCE_SOURCE__PASWORD: SECRET }, overrides: MINIMAL_SOURCE })),
    configErrorOf(() => loadSourceConfig({ file: file(`source:\n  password: "${SECRET}\n`), env: {} })),
    configErrorOf(() => loadSourceConfig({ file: file(`{"source": {"password": "${SECRET}",, }}`, 'json'), env: {} })),
  ];
  for (const m of messages) {
    assert.ok(m.startsWith('config: '), m);
    assert.ok(!m.includes(SECRET), `leaked: ${m}`);
  }
  assert.match(messages[0], /source\.url: expected a postgres:\/\/ or postgresql:\/\/ URL, got "mysql:\/\/db" \(the rest of the URL not shown\)/);
  assert.match(messages[2], /source\.password: expected a string, got a number \(value hidden\)/);
  assert.match(messages[6], /not valid YAML: .*line 3/);
});

test('a secret inside a section given as a string, a PEM or a malformed URL is never echoed', () => {
  const sink = { destination: { url: 'postgres://c/db' }, kafka: { brokers: ['k:1'] }, schemaRegistry: { url: 'http://r' } };
  const messages = [
    // env JSON with unquoted keys stays a string: kafka.sasl gets "got <the whole thing>".
    configErrorOf(() => loadSinkConfig({ env: { SHARDBRIDGE_SINK_KAFKA__SASL: `{mechanism:"plain",username:"u",password:"${SECRET}"}` }, overrides: sink })),
    configErrorOf(() => loadSinkConfig({ env: {}, overrides: { ...sink, kafka: { brokers: ['k:1'], sasl: `plain:u:${SECRET}` } } })),
    configErrorOf(() => loadSinkConfig({ env: {}, overrides: { ...sink, kafka: { brokers: ['k:1'], ssl: `-----BEGIN PRIVATE KEY-----${SECRET}` } } })),
    configErrorOf(() => loadSinkConfig({ env: {}, overrides: { ...sink, kafka: { brokers: ['k:1'], ssl: { ca: 1, key: `-----BEGIN PRIVATE KEY-----${SECRET}`, cert: 2 } } } })),
    configErrorOf(() => loadSinkConfig({ env: {}, overrides: { ...sink, destination: { url: `postgre://u:${SECRET} G@h/d` } } })),
    configErrorOf(() => loadSinkConfig({ env: {}, overrides: { ...sink, destination: `postgres://u:${SECRET}@h/d` } })),
    configErrorOf(() => loadSinkConfig({ env: {}, overrides: { ...sink, schemaRegistry: { url: `ftp://u:${SECRET}@r/x` } } })),
    configErrorOf(() => loadSinkConfig({ env: {}, overrides: { ...sink, kafka: { brokers: [`u:${SECRET} x@k:1`] } } })),
    configErrorOf(() => loadSourceConfig({ env: {}, overrides: { ...MINIMAL_SOURCE, source: { url: `postgres://u:a b/c${SECRET}@h/d` } } })),
  ];
  for (const m of messages) {
    assert.ok(m.startsWith('config: '), m);
    assert.ok(!m.includes(SECRET), `leaked: ${m}`);
    assert.ok(!m.includes(SECRET.slice(0, 6)), `partly leaked: ${m}`);
  }
  assert.match(messages[0], /^config: kafka\.sasl \(from SHARDBRIDGE_SINK_KAFKA__SASL\): expected a mapping, got a string \(value hidden\)$/);
  assert.match(messages[1], /^config: kafka\.sasl: expected a mapping, got a string \(value hidden\)$/);
  assert.match(messages[4], /^config: destination\.url: expected a postgres:\/\/ or postgresql:\/\/ URL, got "postgre:\/\/h" \(the rest of the URL not shown\)$/);
  assert.match(messages[5], /^config: destination: expected a mapping, got a string \(value hidden\)$/);
});

test('isSecretPath: secret-named keys, and sections holding them (pure)', () => {
  const schema = sourceConfigSchema;
  assert.equal(isSecretPath(['kafka', 'sasl'], schema), true);
  assert.equal(isSecretPath(['kafka', 'ssl'], schema), true);
  assert.equal(isSecretPath(['source'], schema), true, 'the connection section holds a password');
  assert.equal(isSecretPath(['schemaRegistry'], schema), true);
  assert.equal(isSecretPath(['x', 'apiToken']), true);
  assert.equal(isSecretPath(['snapshot', 'chunkSize'], schema), false);
  assert.equal(isSecretPath(['kafka', 'brokers', 0], schema), false);
  assert.equal(isSecretPath(['source', 'sslmode'], schema), false);
});

test('describeInput: a URL shows scheme, host and port only (pure)', () => {
  assert.equal(describeInput('postgres://u:p w@db.internal:5433/app?x=1', false), '"postgres://db.internal:5433" (the rest of the URL not shown)');
  assert.equal(describeInput('http://u:p@ss@[::1]:8081', false), '"http://[::1]:8081" (the rest of the URL not shown)');
  assert.equal(describeInput('postgres://u:pw/x', false), 'a URL (value hidden)');
  assert.equal(describeInput('u:p w@host:9092', false), '"u:***@host:9092"');
  assert.equal(describeInput('plain', true), 'a string (value hidden)');
});

test('a source section with both url and host fields is refused', () => {
  const msg = configErrorOf(() => loadSourceConfig({ env: {}, overrides: { ...MINIMAL_SOURCE, source: { url: 'postgres://h/db', host: 'other' } } }));
  assert.match(msg, /^config: source\.host: conflicts with source\.url/m);
});

test('sink table mappings validate keys and nested keys', () => {
  const msg = configErrorOf(() =>
    loadSinkConfig({
      env: {},
      overrides: {
        destination: { url: 'postgres://c/db' },
        kafka: { brokers: ['k:1'] },
        schemaRegistry: { url: 'http://r' },
        tables: { orders: {}, 'public.items': { colums: {} }, 'public.ok': { table: 'items2', columns: { id: 'item_id' } } },
        truncate: 'drop',
      },
    }),
  );
  assert.match(msg, /^config: tables\.orders: bad key: expected a "schema\.table" name \(double-quote a part holding dots or spaces: "My Schema"\."Order Items"\)$/m);
  assert.match(msg, /^config: tables\["public\.items"\]\.colums: unknown key \(did you mean "columns"\?\)$/m);
  assert.match(msg, /^config: truncate: expected one of "apply", "ignore", got "drop"$/m);
});

test('table names in the config: a part holding dots or spaces is double-quoted; unquoted it is refused', () => {
  const sink = (tables: Record<string, object>) =>
    loadSinkConfig({ env: {}, overrides: { destination: { url: 'postgres://c/db' }, kafka: { brokers: ['k:1'] }, schemaRegistry: { url: 'http://r' }, tables } });
  assert.deepEqual(Object.keys(sink({ '"My Schema"."Order Items"': { table: 'order_items' }, 'sales."a.b"': {}, '"Q""uote".t': {} }).tables), [
    '"My Schema"."Order Items"',
    'sales."a.b"',
    '"Q""uote".t',
  ]);
  assert.match(configErrorOf(() => sink({ 'sales.Order Items': {} })), /tables\["sales\.Order Items"\]: bad key: expected a "schema\.table" name/);
  assert.match(configErrorOf(() => sink({ 'sales.a.b': {} })), /bad key: expected a "schema\.table" name/);
});

test('sink consumer fetch sizes: positive integers, the per-partition one within the total', () => {
  const sink = (consumer: object, env: NodeJS.ProcessEnv = {}) =>
    loadSinkConfig({ env, overrides: { destination: { url: 'postgres://c/db' }, kafka: { brokers: ['k:1'] }, schemaRegistry: { url: 'http://r' }, consumer } });
  assert.deepEqual(sink({ maxBytesPerPartition: 2_097_152, maxBytes: 16_777_216 }).consumer, { maxBytesPerPartition: 2_097_152, maxBytes: 16_777_216, minBytes: 65_536, idleMaxWaitMs: 500 });
  assert.equal(sink({}, { SHARDBRIDGE_SINK_CONSUMER__MAX_BYTES: '33554432' }).consumer.maxBytes, 32 * 1024 * 1024);
  assert.match(configErrorOf(() => sink({ maxBytesPerPartition: 0, maxBytes: 'lots' })), /^config: consumer\.maxBytesPerPartition: expected a positive integer, got 0$/m);
  assert.match(configErrorOf(() => sink({ maxBytes: 'lots' })), /^config: consumer\.maxBytes: expected a positive integer, got "lots"$/m);
  assert.match(
    configErrorOf(() => sink({ maxBytesPerPartition: 8_388_608, maxBytes: 4_194_304 })),
    /^config: consumer\.maxBytesPerPartition: must not exceed consumer\.maxBytes \(4194304\), got 8388608$/m,
  );
  assert.match(configErrorOf(() => sink({ maxBytesPerPartiton: 1 })), /^config: consumer\.maxBytesPerPartiton: unknown key \(did you mean "maxBytesPerPartition"\?\)$/m);
});

test('sink sessions: synchronous_commit from batch.synchronousCommit (off by default), money read in the C form, array NULLs and xml content read whatever the destination defaults, idle-in-transaction sessions ended, Citus settings only on Citus', () => {
  const sink = (batch: object, env: NodeJS.ProcessEnv = {}) =>
    loadSinkConfig({ env, overrides: { destination: { url: 'postgres://c/db' }, kafka: { brokers: ['k:1'] }, schemaRegistry: { url: 'http://r' }, batch } });
  assert.equal(sessionOptions(sink({}), false), '-c synchronous_commit=off -c lc_monetary=C -c array_nulls=on -c xmloption=content -c standard_conforming_strings=on -c idle_in_transaction_session_timeout=30000');
  assert.equal(
    sessionOptions(sink({ synchronousCommit: 'on', idleInTransactionTimeoutMs: 5000 }), true),
    '-c synchronous_commit=on -c lc_monetary=C -c array_nulls=on -c xmloption=content -c standard_conforming_strings=on -c idle_in_transaction_session_timeout=5000 -c citus.max_cached_conns_per_worker=16 -c citus.enable_deadlock_prevention=off -c citus.use_citus_managed_tables=off',
  );
  const prevent = loadSinkConfig({ overrides: { destination: { url: 'postgres://c/db' }, kafka: { brokers: ['k:1'] }, schemaRegistry: { url: 'http://r' }, citus: { enableDeadlockPrevention: true } } });
  assert.doesNotMatch(sessionOptions(prevent, true), /enable_deadlock_prevention/);
  assert.equal(sink({}, { SHARDBRIDGE_SINK_BATCH__SYNCHRONOUS_COMMIT: 'local' }).batch.synchronousCommit, 'local');
  assert.match(configErrorOf(() => sink({ synchronousCommit: 'sometimes' })), /^config: batch\.synchronousCommit: .*"sometimes"/m);
  assert.match(configErrorOf(() => sink({ idleInTransactionTimeoutMs: 0 })), /^config: batch\.idleInTransactionTimeoutMs: expected a positive integer, got 0$/m);
});

test('file problems are ConfigErrors naming the file', () => {
  assert.match(configErrorOf(() => loadSourceConfig({ file: join(dir, 'absent.yaml'), env: {} })), /cannot read .*absent\.yaml: no such file/);
  assert.match(configErrorOf(() => loadSourceConfig({ file: file('a: 1', 'toml'), env: {} })), /unsupported file type "\.toml"/);
  assert.match(configErrorOf(() => loadSourceConfig({ file: file('- a\n- b\n'), env: {} })), /expected a mapping of keys at the top level/);
});

test('formatZodIssues: paths, unions, forms (pure)', () => {
  const schema = z.strictObject({
    a: z.strictObject({ list: z.array(z.number().int().nonnegative()) }),
    u: z.union([z.boolean(), z.strictObject({ ca: z.string() })]),
    e: z.enum(['x', 'y']),
  });
  const r = schema.safeParse({ a: { list: [1, -2] }, u: { ca: 3 }, e: 'z', extra: 1 }, { reportInput: true });
  assert.equal(r.success, false);
  assert.deepEqual(formatZodIssues(r.error!.issues, { schema }), [
    'config: a.list[1]: expected a non-negative integer, got -2',
    'config: u.ca: expected a string, got 3',
    'config: e: expected one of "x", "y", got "z"',
    'config: extra: unknown key (known keys: a, u, e)',
  ]);
  // Without the schema the lines still name the key.
  assert.match(formatZodIssues(r.error!.issues)[0], /^config: a\.list\[1\]: expected /);
  assert.equal(formatPath(['tables', 'public.orders', 'columns', 0]), 'tables["public.orders"].columns[0]');
  assert.equal(suggest('chunk_size', ['chunkSize', 'mode']), 'chunkSize');
  assert.equal(suggest('zzz', ['chunkSize', 'mode']), undefined);
  assert.equal(editDistance('tabels', 'tables'), 1);
});

test('a JSON mapping from the environment for a key that takes a boolean or a mapping (kafka.ssl) is read as the mapping: its bad keys are named', () => {
  const sink = { destination: { url: 'postgres://c/db' }, kafka: { brokers: ['k:1'] }, schemaRegistry: { url: 'http://r' } };
  const msg = configErrorOf(() =>
    loadSinkConfig({ env: { SHARDBRIDGE_SINK_KAFKA__SSL: `{"key":"${SECRET}","rejectUnauthorised":false}` }, overrides: sink }),
  );
  assert.equal(msg, 'config: kafka.ssl.rejectUnauthorised (from SHARDBRIDGE_SINK_KAFKA__SSL): unknown key (did you mean "rejectUnauthorized"?)');
  const union = z.union([z.boolean(), z.strictObject({ a: z.string() })]);
  assert.deepEqual(coerceEnv(union, '{"b":1}'), { b: 1 });
  assert.equal(coerceEnv(union, 'maybe'), 'maybe');
});

test('env helpers (pure): coercion by schema type, deep merge', () => {
  const schema = z.strictObject({ n: z.number(), b: z.boolean(), l: z.array(z.number()), o: z.strictObject({ k: z.string() }), r: z.record(z.string(), z.string()) });
  const { value, problems } = envOverrides(schema, { P_N: '5', P_B: 'yes', P_L: '1,2', P_O: '{"k":"v"}', P_R__Some_Key: 'x', P_NOPE: '1' }, 'P_');
  assert.deepEqual(value, { n: 5, b: true, l: [1, 2], o: { k: 'v' }, r: { Some_Key: 'x' } });
  assert.equal(problems.length, 1);
  assert.match(problems[0], /NOPE \(from P_NOPE\): unknown key/);
  assert.equal(coerceEnv(z.number(), 'x1'), 'x1');
  assert.deepEqual(mergeConfig({ a: { b: 1, c: [1] }, d: 1 }, { a: { c: [2], e: undefined }, d: undefined }), { a: { b: 1, c: [2], e: undefined }, d: 1 });
});

test('loadConfig works with any strict schema and prefix', () => {
  const schema = z.strictObject({ port: z.number().default(1) });
  assert.deepEqual(loadConfig(schema, { envPrefix: 'X_', env: { X_PORT: '7' } }), { port: 7 });
});

test('connectionConfig maps url/fields and sslmode to pg options (pure)', () => {
  const base = sourceConfigSchema.shape.source.parse({ host: 'h', database: 'd', user: 'u', password: 'p' });
  assert.deepEqual(connectionConfig(base, { section: 'source' }), { host: 'h', port: 5432, database: 'd', user: 'u', password: 'p', ssl: false });
  const req = connectionConfig({ ...base, sslmode: 'require' }, { section: 'source' });
  assert.deepEqual(req.ssl, { rejectUnauthorized: false });
  const full = connectionConfig({ ...base, sslmode: 'verify-full', sslrootcert: '/ca.pem' }, { section: 'source', readFile: (p) => `CA(${p})` });
  assert.deepEqual(full.ssl, { rejectUnauthorized: true, ca: 'CA(/ca.pem)' });
  const ca = connectionConfig({ ...base, sslmode: 'verify-ca' }, { section: 'source' });
  assert.equal(typeof ca.ssl === 'object' && typeof ca.ssl.checkServerIdentity, 'function');
  const fromUrl = connectionConfig(
    sourceConfigSchema.shape.source.parse({ url: 'postgres://u@h/d?sslmode=require&application_name=x', password: 'p' }),
    { section: 'source', application_name: 'sb' },
  );
  assert.deepEqual(fromUrl, { connectionString: 'postgres://u@h/d?application_name=x&password=p', application_name: 'sb', ssl: { rejectUnauthorized: false } });
});

test('a password beside url reaches node-postgres (it lays the parsed URL over the fields: password "" before)', () => {
  const ConnectionParameters = createRequire(import.meta.url)('pg/lib/connection-parameters.js') as new (c: object) => { password: unknown; user: string; host: string; database: string };
  const sent = (section: object) => new ConnectionParameters(connectionConfig(sourceConfigSchema.shape.source.parse(section), { section: 'source' }));
  const pw = 'p&w=?#%/@ x';
  for (const url of ['postgres://u@h:5433/d', 'postgres://u@h/d?application_name=x&sslmode=require', 'postgres://h/d']) {
    const p = sent({ url, password: pw });
    assert.equal(p.password, pw, url);
    assert.equal(p.host, 'h');
    assert.equal(p.database, 'd');
  }
  assert.equal(sent({ url: `postgres://u:${encodeURIComponent(pw)}@h/d` }).password, pw);
  assert.equal(sent({ host: 'h', database: 'd', user: 'u', password: pw }).password, pw);
});

test('a registry URL with credentials: they move to schemaRegistry.username/password (fetch refuses such a URL)', () => {
  const sink = (schemaRegistry: object) =>
    loadSinkConfig({ env: {}, overrides: { destination: { url: 'postgres://c/db' }, kafka: { brokers: ['k:1'] }, schemaRegistry } });
  assert.deepEqual(sink({ url: `http://ruser:${encodeURIComponent('p@ss/w')}@reg:8081` }).schemaRegistry, { url: 'http://reg:8081', username: 'ruser', password: 'p@ss/w', requestTimeoutMs: 10_000 });
  assert.deepEqual(sink({ url: 'https://ruser@reg/base/', password: SECRET }).schemaRegistry, { url: 'https://reg/base/', username: 'ruser', password: SECRET, requestTimeoutMs: 10_000 });
  assert.deepEqual(sink({ url: 'http://reg:8081', username: 'a' }).schemaRegistry, { url: 'http://reg:8081', username: 'a', requestTimeoutMs: 10_000 });
  const both = configErrorOf(() => sink({ url: `http://ruser:${SECRET}@reg:8081`, username: 'other' }));
  assert.match(both, /^config: schemaRegistry\.url: carries a user name, and schemaRegistry\.username is set too/m);
  assert.ok(!both.includes(SECRET), both);
  const env = loadSourceConfig({ env: { SHARDBRIDGE_SOURCE_SCHEMA_REGISTRY__URL: `http://u:${SECRET}@r:1` }, overrides: { ...MINIMAL_SOURCE, schemaRegistry: undefined } });
  assert.deepEqual(env.schemaRegistry, { url: 'http://r:1', username: 'u', password: SECRET, requestTimeoutMs: 10_000 });
  assert.deepEqual(splitUrlCredentials('http://r:1/x?y=1'), { url: 'http://r:1/x?y=1' });
});

test('a postgres URL node-postgres would misread, a bad sslmode or an unreadable sslrootcert: a config error naming the key', () => {
  const src = (source: object) => configErrorOf(() => loadSourceConfig({ env: {}, overrides: { ...MINIMAL_SOURCE, source } }));
  const cases: [object, RegExp][] = [
    [{ url: `postgres://u:ab/${SECRET}@host/db` }, /^config: source\.url: not a valid URL: percent-encode special characters .* or give the password as source\.password$/],
    [{ url: `postgres://u:ab#${SECRET}@host/db` }, /^config: source\.url: not a valid URL/],
    [{ url: `postgres://u:12/${SECRET}@host/db` }, /^config: source\.url: not the URL it seems/],
    [{ url: 'postgres://u@host/db?sslmode=bogus' }, /^config: source\.url: its sslmode "bogus" is not one of disable, prefer, require, verify-ca, verify-full$/],
    [{ url: 'postgres://u@host/db?sslmode=verify-full&sslrootcert=/nonexistent/x' }, /^config: source\.url: its sslrootcert \/nonexistent\/x cannot be read: no such file$/],
    [{ host: 'h', database: 'd', user: 'u', sslmode: 'verify-full', sslrootcert: '/nonexistent/ca.pem' }, /^config: source\.sslrootcert: cannot read \/nonexistent\/ca\.pem: no such file$/],
    [{ host: 'h', database: 'd', user: 'u', sslrootcert: dir }, /^config: source\.sslrootcert: cannot read .*: not a file$/],
  ];
  for (const [source, want] of cases) {
    const m = src(source);
    assert.match(m, want);
    assert.ok(!m.includes(SECRET), m);
  }
  // What node-postgres reads fine passes: a space in the password, a socket default host, a readable CA.
  const ca = file('-----BEGIN CERTIFICATE-----\n', 'pem');
  for (const url of ['postgres://u:a b@h/db', 'postgres:///db', `postgresql://u:p%2Fw@[::1]:5433/db?sslmode=verify-ca&sslrootcert=${ca}`]) {
    loadSourceConfig({ env: {}, overrides: { ...MINIMAL_SOURCE, source: { url } } });
  }
  assert.deepEqual(pgUrlProblems('postgres://u@h/db?sslmode=%zz', 'source').problems, ['its sslmode is not one of disable, prefer, require, verify-ca, verify-full']);
});

test('pgEndpoint names host:port/database, never credentials (pure)', () => {
  const parse = (source: object) => sourceConfigSchema.shape.source.parse(source);
  assert.equal(pgEndpoint(parse({ url: `postgres://u:${SECRET} x@db.internal:5433/app?sslmode=require` })), 'db.internal:5433/app');
  assert.equal(pgEndpoint(parse({ url: 'postgres:///app' }), false), 'localhost:5432');
  assert.equal(pgEndpoint(parse({ host: 'h', database: 'd', user: 'u', password: SECRET })), 'h:5432/d');
});

test('describeSafe masks every password, URL password and TLS key', () => {
  const c = loadSourceConfig({
    env: {},
    overrides: {
      ...MINIMAL_SOURCE,
      source: { url: `postgres://rep:${SECRET}@db/app` },
      kafka: { brokers: ['k:1'], ssl: { key: SECRET, ca: 'CA' }, sasl: { mechanism: 'plain', username: 'u', password: SECRET } },
      schemaRegistry: { url: `https://u:${SECRET}@r` },
    },
  });
  // Validation refuses a password both in the URL and as the field; the masking covers both anyway.
  const safe = describeSafe({ ...c, source: { ...c.source, password: SECRET } });
  assert.ok(!JSON.stringify(safe).includes(SECRET), JSON.stringify(safe));
  assert.equal(safe.source.password, '***');
  assert.equal(safe.source.url, 'postgres://rep:***@db/app');
  assert.deepEqual(safe.kafka.ssl, { key: '***', ca: 'CA' });
  assert.equal(safe.kafka.sasl?.username, 'u');
  assert.equal(safe.schemaRegistry.password, '***');
  assert.equal(c.kafka.sasl?.password, SECRET, 'the original is untouched');
});

test("a connection URL's own options are kept, with the connectors' session settings after them (the URL no longer replaces ours)", async () => {
  const pg = (await import('pg')).default;
  const { sourceSessionOptions } = await import('../../shared/pg-types.ts');
  const conn = connectionConfig({ url: 'postgres://u@h:5432/d?options=-c%20statement_timeout%3D5000%20-c%20DateStyle%3DSQL&application_name=x', sslmode: 'prefer' } as never, { section: 'source' });
  assert.equal(conn.options, '-c statement_timeout=5000 -c DateStyle=SQL');
  assert.doesNotMatch(conn.connectionString!, /options=/);
  assert.match(conn.connectionString!, /application_name=x/);
  // What the driver will send: its parameters from the URL override the client's fields.
  const sent = (new pg.Client({ ...conn, options: sourceSessionOptions(conn.options) }) as unknown as { connectionParameters: { options: string } }).connectionParameters.options;
  assert.match(sent, /^-c statement_timeout=0 .*-c statement_timeout=5000 -c DateStyle=SQL -c DateStyle=ISO .*-c TimeZone=UTC/, "ours after theirs: the later DateStyle holds; their statement_timeout after our reset, so it holds");
  assert.equal(sourceSessionOptions(), sourceSessionOptions(undefined));
});

test('sessionReplicationRole: origin by default (nothing set), replica as a startup parameter of every sink session; another value is named', () => {
  const sink = (extra: object) => loadSinkConfig({ overrides: { destination: { url: 'postgres://c/db' }, kafka: { brokers: ['k:1'] }, schemaRegistry: { url: 'http://r' }, ...extra } });
  assert.equal(sink({}).sessionReplicationRole, 'origin');
  assert.doesNotMatch(sessionOptions(sink({}), false), /session_replication_role/);
  assert.match(sessionOptions(sink({ sessionReplicationRole: 'replica' }), false), / -c session_replication_role=replica$/);
  assert.match(configErrorOf(() => sink({ sessionReplicationRole: 'local' })), /^config: sessionReplicationRole: .*"local"/m);
});
