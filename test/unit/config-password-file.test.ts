import { mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import fs, { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { ConfigError } from '../../shared/errors.ts';
import { connectionConfig, pgRemedy } from '../../shared/config/postgres.ts';
import { passwordOfFile } from '../../shared/config/password-file.ts';
import { loadSourceConfig, sourceConfigSchema } from '../../source-connector/config.ts';
import { loadSinkConfig } from '../../sink-connector/config.ts';
import { configErrorOf } from '../helpers/config-errors.ts';

const SECRET = 'Pa55-w0rd-NEVER-SHOWN';
const dir = mkdtempSync(join(tmpdir(), 'sb-pwfile-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function secretFile(text: string): string {
  const p = join(dir, `pw${n++}`);
  writeFileSync(p, text);
  return p;
}

const sink = (destination: object, env: Record<string, string> = {}) =>
  loadSinkConfig({ env, overrides: { destination, kafka: { brokers: ['k:1'] }, schemaRegistry: { url: 'http://r' } } });
const source = (s: object) => loadSourceConfig({ env: {}, overrides: { source: s, kafka: { brokers: ['k:1'] }, schemaRegistry: { url: 'http://r' } } });

test('passwordFile at start: conflicts with password or a password in the URL name both keys; a missing, unreadable or empty file names the key and the path, never the content', () => {
  const pw = secretFile(`${SECRET}\n`);
  const cases: [object, RegExp][] = [
    [{ url: 'postgres://u@h/d', password: SECRET, passwordFile: pw }, /^config: destination\.passwordFile: conflicts with destination\.password: give the password once/m],
    [{ host: 'h', database: 'd', user: 'u', password: SECRET, passwordFile: pw }, /^config: destination\.passwordFile: conflicts with destination\.password/m],
    [{ url: `postgres://u:${SECRET}@h/d`, passwordFile: pw }, /^config: destination\.passwordFile: conflicts with the password in destination\.url: give the password once/m],
    [{ url: 'postgres://u@h/d', passwordFile: join(dir, 'absent') }, new RegExp(`^config: destination\\.passwordFile: ${dir}/absent: cannot read it: no such file$`, 'm')],
    [{ url: 'postgres://u@h/d', passwordFile: dir }, /^config: destination\.passwordFile: .*: cannot read it: not a file$/m],
    [{ url: 'postgres://u@h/d', passwordFile: secretFile('\n') }, /^config: destination\.passwordFile: .*pw\d+: it is empty/m],
    [{ url: 'postgres://u@h/d', passwordFile: '' }, /^config: destination\.passwordFile: /m],
  ];
  for (const [destination, want] of cases) {
    const m = configErrorOf(() => sink(destination));
    assert.match(m, want);
    assert.ok(!m.includes(SECRET), m);
  }
  // Permissions only bind a user other than root.
  if (process.getuid?.() !== 0) {
    const locked = secretFile(SECRET);
    chmodSync(locked, 0o000);
    assert.match(configErrorOf(() => source({ url: 'postgres://u@h/d', passwordFile: locked })), /^config: source\.passwordFile: .*: cannot read it: permission denied$/m);
  }
  // From the environment too, as every key.
  assert.equal(sink({ url: 'postgres://u@h/d' }, { SHARDBRIDGE_SINK_DESTINATION__PASSWORD_FILE: pw }).destination.passwordFile, pw);
  assert.equal(source({ host: 'h', database: 'd', user: 'u', passwordFile: pw }).source.passwordFile, pw);
});

test('passwordOfFile: the trailing line break of an editor or echo is not part of the password (pure)', () => {
  assert.equal(passwordOfFile('p w \n'), 'p w ');
  assert.equal(passwordOfFile('pw\r\n'), 'pw');
  assert.equal(passwordOfFile('pw\n\n'), 'pw');
  assert.equal(passwordOfFile(' pw'), ' pw');
  assert.equal(passwordOfFile('\n'), '');
});

test('connectionConfig with passwordFile: a password function read at every new connection; an unreadable or empty file fails that connection naming its key (section too) and the path, never the content', async () => {
  const path = join(dir, 'rotating');
  writeFileSync(path, 'first\n');
  const conn = connectionConfig(sourceConfigSchema.shape.source.parse({ host: 'h', database: 'd', user: 'u', passwordFile: path }), { section: 'destination' });
  assert.equal(typeof conn.password, 'function');
  const password = conn.password as () => Promise<string>;
  assert.equal(await password(), 'first');
  writeFileSync(path, `${SECRET}\n`);
  assert.equal(await password(), SECRET, 'read again, not cached');
  // node-postgres keeps it a function (it calls it when the server asks for a password).
  assert.equal(typeof (new pg.Client(conn) as unknown as { password: unknown }).password, 'function');

  writeFileSync(path, '');
  const empty = await password().then(() => assert.fail('resolved'), (err: unknown) => err);
  assert.ok(empty instanceof ConfigError);
  assert.match(empty.message, new RegExp(`^config: destination\\.passwordFile ${path}: it is empty$`));
  rmSync(path);
  const gone = await password().then(() => assert.fail('resolved'), (err: unknown) => err);
  assert.ok(gone instanceof ConfigError);
  assert.match(gone.message, new RegExp(`^config: destination\\.passwordFile ${path}: cannot read it: no such file$`));
  assert.equal(gone.context.path, path);
  assert.equal(gone.context.key, 'destination.passwordFile');
  assert.match(gone.remedy!, /read at every new connection: no restart needed/);
  // The source's connect failure (source-session.ts) takes it as its remedy.
  assert.equal(pgRemedy(gone, 'source', 'fallback'), gone.remedy);
  assert.ok(!gone.describe().includes(SECRET));
  // The source's, from a URL (its fields laid out, the function set last): source.passwordFile.
  const srcPath = secretFile('x');
  const fromUrl = connectionConfig(sourceConfigSchema.shape.source.parse({ url: 'postgres://u@h/d', passwordFile: srcPath }), { section: 'source' });
  rmSync(srcPath);
  const srcGone = await (fromUrl.password as () => Promise<string>)().then(() => assert.fail('resolved'), (err: unknown) => err as ConfigError);
  assert.match(srcGone.message, new RegExp(`^config: source\\.passwordFile ${srcPath}: cannot read it: no such file$`));
});

test('connectionConfig with passwordFile and url: node-postgres gets what it would have taken from the URL (every parameter), the password from the file', () => {
  const ConnectionParameters = createRequire(import.meta.url)('pg/lib/connection-parameters.js') as new (c: object) => Record<string, unknown>;
  const sub = join(dir, 'ca');
  mkdirSync(sub);
  const ca = join(sub, 'ca.pem');
  writeFileSync(ca, '-----BEGIN CERTIFICATE-----\n');
  const pw = secretFile('from-file\n');
  const urls = [
    'postgres://u@h:5433/d',
    'postgres://u@h/d?application_name=x&sslmode=require',
    `postgresql://u@[::1]:5433/d?sslmode=verify-ca&sslrootcert=${ca}&options=-c%20work_mem%3D5MB&client_encoding=UTF8&keepalives=1`,
    'postgres://h/d%20x?fallback_application_name=f&connect_timeout=3',
    'postgres:///d',
  ];
  const fields = ['host', 'port', 'database', 'user', 'options', 'application_name', 'fallback_application_name', 'client_encoding', 'ssl', 'connect_timeout', 'keepalives'];
  for (const url of urls) {
    for (const application_name of [undefined, 'sb']) {
      const before = new ConnectionParameters(connectionConfig(sourceConfigSchema.shape.source.parse({ url }), { section: 'source', application_name }));
      const conn = connectionConfig(sourceConfigSchema.shape.source.parse({ url, passwordFile: pw }), { section: 'source', application_name });
      assert.equal(conn.connectionString, undefined, url);
      assert.equal(typeof conn.password, 'function', url);
      const now = new ConnectionParameters(conn);
      // (verify-ca's checkServerIdentity is a new function each time: compared as a function.)
      const shown = (v: unknown) => (v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, typeof x === 'function' ? 'function' : x])) : v);
      for (const f of fields) assert.deepEqual(shown(now[f]), shown(before[f]), `${url}: ${f}`);
      assert.equal(typeof now.password, 'function', `${url}: the URL's (empty) password does not replace the function`);
    }
  }
});

test('kafka.sasl.passwordFile and schemaRegistry.passwordFile: read once at load into password (validation and value from one read), the key kept for reading it again; conflicts named, a missing or empty file names the key and the path, never the content', () => {
  const pw = secretFile(`${SECRET}\n`);
  const load = (kafka: object, schemaRegistry: object = { url: 'http://r' }, env: Record<string, string> = {}) =>
    loadSinkConfig({ env, overrides: { destination: { url: 'postgres://u@h/d' }, kafka: { brokers: ['k:1'], ...kafka }, schemaRegistry } });
  const sasl = (o: object) => ({ sasl: { mechanism: 'scram-sha-512', username: 'u', ...o } });

  // Each file read once: the spy sees the module's own `readFileSync` import (syncBuiltinESMExports).
  const registryPw = secretFile(`${SECRET}\n`);
  const reads = mock.method(fs, 'readFileSync');
  syncBuiltinESMExports();
  let loaded: ReturnType<typeof load>;
  try {
    loaded = load(sasl({ passwordFile: pw }), { url: 'http://r', username: 'ru', passwordFile: registryPw });
  } finally {
    reads.mock.restore();
    syncBuiltinESMExports();
  }
  const readsOf = (path: string) => reads.mock.calls.filter((c) => c.arguments[0] === path).length;
  assert.deepEqual([readsOf(pw), readsOf(registryPw)], [1, 1], 'kafka.sasl.passwordFile, schemaRegistry.passwordFile: reads at load');
  assert.deepEqual(loaded.kafka.sasl, { mechanism: 'scram-sha-512', username: 'u', password: SECRET, passwordFile: pw });
  assert.deepEqual(loaded.schemaRegistry, { url: 'http://r', username: 'ru', password: SECRET, passwordFile: registryPw, requestTimeoutMs: 10_000 });
  // The registry's user from the URL; the key from the environment too.
  assert.equal(load({}, { url: 'http://ru@r', passwordFile: pw }).schemaRegistry.password, SECRET);
  assert.equal(load(sasl({}), undefined, { SHARDBRIDGE_SINK_KAFKA__SASL__PASSWORD_FILE: pw }).kafka.sasl?.password, SECRET);
  assert.equal(load(sasl({ password: 'given' })).kafka.sasl?.password, 'given', 'password as before');

  const cases: [() => unknown, RegExp][] = [
    [() => load(sasl({})), /^config: kafka\.sasl\.password: required \(or kafka\.sasl\.passwordFile\)$/m],
    [() => load(sasl({ password: SECRET, passwordFile: pw })), /^config: kafka\.sasl\.passwordFile: conflicts with kafka\.sasl\.password: give the password once/m],
    [() => load(sasl({ passwordFile: join(dir, 'absent') })), new RegExp(`^config: kafka\\.sasl\\.passwordFile: ${dir}/absent: cannot read it: no such file$`, 'm')],
    [() => load(sasl({ passwordFile: secretFile('\r\n') })), /^config: kafka\.sasl\.passwordFile: .*pw\d+: it is empty/m],
    [() => load({}, { url: 'http://r', username: 'ru', password: SECRET, passwordFile: pw }), /^config: schemaRegistry\.passwordFile: conflicts with schemaRegistry\.password: give the password once/m],
    [() => load({}, { url: `http://ru:${SECRET}@r`, passwordFile: pw }), /^config: schemaRegistry\.passwordFile: conflicts with the password in schemaRegistry\.url/m],
    [() => load({}, { url: 'http://r', passwordFile: pw }), /^config: schemaRegistry\.passwordFile: needs schemaRegistry\.username/m],
    [() => load({}, { url: 'http://r', username: 'ru', passwordFile: dir }), /^config: schemaRegistry\.passwordFile: .*: cannot read it: not a file$/m],
  ];
  for (const [fn, want] of cases) {
    const m = configErrorOf(fn);
    assert.match(m, want);
    assert.ok(!m.includes(SECRET), m);
  }
});
