/**
 * Findings of the secrets audit (a password with URL-special characters through every
 * output): each case here leaked, or was unclear, before its fix.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeInput } from '../../shared/config/issues.ts';
import { redactKnown, redactUrl } from '../../shared/redact.ts';
import { main } from '../../shared/cli/main.ts';
import { sinkMetricsProblem } from '../../shared/cli/commands/status.ts';
import { loadSourceConfig } from '../../source-connector/config.ts';
import { configErrorOf } from '../helpers/config-errors.ts';

const PW = 'p@ss:w/rd%20?#S3CRET';

test('describeInput: a scheme-less user:password@host hides the password up to its last "@" (pure)', () => {
  assert.equal(describeInput(`u:${PW}@127.0.0.1:9092`, false), '"u:***@127.0.0.1:9092"');
  assert.equal(describeInput(`auditor:${PW}@db:5432/app`, false), '"auditor:***@db:5432/app"');
  assert.equal(describeInput('u:p w@host:9092', false), '"u:***@host:9092"');
  assert.equal(describeInput('k1:9092', false), '"k1:9092"');
});

test('a broker given as user:password@host:port: the error names the key, never the password', () => {
  const msg = configErrorOf(() =>
    loadSourceConfig({ env: {}, overrides: { source: { url: 'postgres://h/db' }, kafka: { brokers: [`u:${PW}@k1:9092`] }, schemaRegistry: { url: 'http://r:8081' } } }),
  );
  assert.match(msg, /kafka\.brokers\[0\]: expected a "host:port" address/);
  assert.doesNotMatch(msg, /S3CRET|ss:w/);
});

test('a password both in source.url and in source.password is refused: node-postgres would silently use the URL one', () => {
  const msg = configErrorOf(() =>
    loadSourceConfig({
      env: { SHARDBRIDGE_SOURCE_SOURCE__PASSWORD: 'rotated-S3CRET' },
      overrides: { source: { url: `postgres://u:${encodeURIComponent(PW)}@h/db` }, kafka: { brokers: ['k1:9092'] }, schemaRegistry: { url: 'http://r:8081' } },
    }),
  );
  assert.match(msg, /^config: source\.password \(from SHARDBRIDGE_SOURCE_SOURCE__PASSWORD\): conflicts with the password in source\.url/m);
  assert.doesNotMatch(msg, /S3CRET|p%40ss/);
  // A URL without a password takes the field, as documented.
  loadSourceConfig({ env: { SHARDBRIDGE_SOURCE_SOURCE__PASSWORD: 'x' }, overrides: { source: { url: 'postgres://u@h/db' }, kafka: { brokers: ['k1:9092'] }, schemaRegistry: { url: 'http://r:8081' } } });
});

test('a registry password both in schemaRegistry.url and in schemaRegistry.password is refused (the URL one would win)', () => {
  const msg = configErrorOf(() =>
    loadSourceConfig({
      env: { SHARDBRIDGE_SOURCE_SCHEMA_REGISTRY__PASSWORD: 'rotated-S3CRET' },
      overrides: { source: { url: 'postgres://h/db' }, kafka: { brokers: ['k1:9092'] }, schemaRegistry: { url: `http://reg:${encodeURIComponent(PW)}@r:8081` } },
    }),
  );
  assert.match(msg, /^config: schemaRegistry\.password \(from SHARDBRIDGE_SOURCE_SCHEMA_REGISTRY__PASSWORD\): conflicts with the password in schemaRegistry\.url/m);
  assert.doesNotMatch(msg, /S3CRET|p%40ss/);
});

test('redactUrl masks HTTP auth tokens a server echoes (Basic, Bearer) (pure)', () => {
  const basic = Buffer.from(`reg:${PW}`).toString('base64');
  assert.equal(redactUrl(`401 Unauthorized: Basic ${basic} for /subjects`), '401 Unauthorized: Basic *** for /subjects');
  assert.equal(redactUrl('authorization: Bearer eyJhbGciOi.eyJzdWIi.sig-_x'), 'authorization: Bearer ***');
  assert.equal(redactUrl('Basic authentication failed'), 'Basic authentication failed');
});

test('redactKnown masks a client\'s own credentials in every form, longest first; short ones left alone (pure)', () => {
  const token = Buffer.from(`reg:${PW}`).toString('base64');
  const secrets = [token, `reg:${PW}`, PW, encodeURIComponent(PW), 'abc', undefined];
  assert.equal(redactKnown(`got ${token}, user reg:${PW}, pw ${encodeURIComponent(PW)}; abc`, secrets), 'got ***, user ***, pw ***; abc');
});

test('status --sink-metrics with credentials or not a URL: exit 2, the URL never printed past its host', async () => {
  assert.equal(sinkMetricsProblem('http://127.0.0.1:9465/metrics'), undefined);
  assert.match(sinkMetricsProblem('ftp://h:1/x')!, /^expected an http:\/\/ or https:\/\/ URL, got ftp:\/\/h:1\/\.\.\.$/);
  const env = {
    SHARDBRIDGE_SOURCE_SOURCE__URL: 'postgres://h:1/db', SHARDBRIDGE_SOURCE_KAFKA__BROKERS: '127.0.0.1:9', SHARDBRIDGE_SOURCE_SCHEMA_REGISTRY__URL: 'http://r:1',
    SHARDBRIDGE_SINK_DESTINATION__URL: 'postgres://h:1/db', SHARDBRIDGE_SINK_KAFKA__BROKERS: '127.0.0.1:9', SHARDBRIDGE_SINK_SCHEMA_REGISTRY__URL: 'http://r:1',
  };
  for (const [url, says] of [
    [`http://u:${encodeURIComponent(PW)}@127.0.0.1:9465/metrics`, /takes no credentials: give http:\/\/127\.0\.0\.1:9465\/\.\.\. without/],
    [`http://u:${PW}@127.0.0.1:9465/metrics`, /not a valid URL/],
  ] as const) {
    let out = '';
    const code = await main(['node', 'shardbridge', 'status', '--sink-metrics', url], { stdout: (t) => (out += t), stderr: (t) => (out += t), env });
    assert.equal(code, 2, out);
    assert.match(out, says);
    assert.doesNotMatch(out, /S3CRET|p%40ss|p@ss/);
  }
});

test("redactUrl masks SQL's PASSWORD '…' (a session's statement the lock watchdog quotes), doubled quotes included (pure)", () => {
  assert.equal(redactUrl(`ALTER ROLE app ENCRYPTED PASSWORD 'se''cr et' VALID UNTIL 'infinity'`), `ALTER ROLE app ENCRYPTED PASSWORD '***' VALID UNTIL 'infinity'`);
  assert.equal(redactUrl(`create user u with password 'x1'`), `create user u with password '***'`);
  assert.equal(redactUrl(`LOCK TABLE orders IN ACCESS EXCLUSIVE MODE`), `LOCK TABLE orders IN ACCESS EXCLUSIVE MODE`);
});
