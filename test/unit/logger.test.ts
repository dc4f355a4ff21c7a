import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger, redactUrl, resolveLevel } from '../../shared/logger.ts';
import { urlOrigin } from '../../shared/redact.ts';

const SECRET = 'hunter2-Sup3rSecret';
const URL_WITH_SECRET = `postgres://replicator:${SECRET}@db.internal:5432/app`;

/** A logger whose lines land in an array, synchronously. */
function capture(opts: { pretty?: boolean; level?: string } = {}) {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  const logger = createLogger({ level: opts.level ?? 'info', pretty: opts.pretty ?? false, destination });
  return { logger, lines };
}

test('redactUrl masks the password of postgres URLs and keeps the rest', () => {
  assert.equal(redactUrl('postgres://user:secret@h/db'), 'postgres://user:***@h/db');
  assert.equal(redactUrl('postgresql://u:p%40ss@h:5433/db?sslmode=require'), 'postgresql://u:***@h:5433/db?sslmode=require');
  assert.equal(redactUrl('no password postgres://user@h/db'), 'no password postgres://user@h/db');
  assert.equal(redactUrl('postgres://h:5432/db'), 'postgres://h:5432/db');
  // Unencoded @ and / in the password (a malformed URL an error message would quote).
  assert.equal(redactUrl('bad url postgres://u:a/b@c@h/db here'), 'bad url postgres://u:***@h/db here');
  assert.equal(redactUrl('a postgres://a:x@h1/d and "postgresql://b:y@h2/d"'), 'a postgres://a:***@h1/d and "postgresql://b:***@h2/d"');
  assert.equal(redactUrl('postgres://h/db?user=u&password=s3cret&x=1'), 'postgres://h/db?user=u&password=***&x=1');
  assert.equal(redactUrl("host=h password='se cret' user=u"), 'host=h password=*** user=u');
  assert.equal(redactUrl('https://reg:tok@registry:8081'), 'https://reg:***@registry:8081');
});

test('redactUrl: a password with spaces, #, ? or unencoded @ and / is masked whole; a host:port is not a password', () => {
  const cases: [string, string][] = [
    ['postgres://u:Hunter2 G@h/d', 'postgres://u:***@h/d'],
    ['at "postgres://u:Hun ter2@h/d" now', 'at "postgres://u:***@h/d" now'],
    ['postgres://u:a b@c@h/d', 'postgres://u:***@h/d'],
    ['postgres://u:ab#Hunter2@h/d', 'postgres://u:***@h/d'],
    ['postgres://u:ab?x=Hunter2@h/d', 'postgres://u:***@h/d'],
    ['postgres://u:ab/Hunter2@h/d', 'postgres://u:***@h/d'],
    ["postgres://u:it's@h/d", 'postgres://u:***@h/d'],
  ];
  for (const [text, masked] of cases) assert.equal(redactUrl(text), masked, text);
  assert.equal(redactUrl('http://registry:8081 refused for admin@example.com'), 'http://registry:8081 refused for admin@example.com');
  assert.equal(redactUrl('http://[::1]:8081/x by a@b'), 'http://[::1]:8081/x by a@b');
  assert.equal(redactUrl('postgres://u:pw@h/d\nuser@other'), 'postgres://u:***@h/d\nuser@other');
});

test('urlOrigin: scheme://host:port, never userinfo, path or query', () => {
  assert.equal(urlOrigin('postgres://u:Hunter2 G@db:5433/app?sslmode=require'), 'postgres://db:5433');
  assert.equal(urlOrigin('HTTP://reg'), 'http://reg');
  assert.equal(urlOrigin('http://u:p@ss@[::1]:8081/x'), 'http://[::1]:8081');
  assert.equal(urlOrigin('postgres://u:pw/x'), undefined);
  assert.equal(urlOrigin('not a url'), undefined);
});

test('a connection string password never reaches a log line', () => {
  const { logger, lines } = capture();
  logger.info({ connectionString: URL_WITH_SECRET }, 'as a field');
  logger.info({ source: { pg: { url: URL_WITH_SECRET, password: SECRET } } }, 'nested');
  logger.info(`in the message ${URL_WITH_SECRET}`);
  logger.info('interpolated %s', URL_WITH_SECRET);
  logger.error(new Error(`connect failed for ${URL_WITH_SECRET}`));
  logger.error({ err: new Error('wrapped', { cause: new Error(`cause ${URL_WITH_SECRET}`) }) }, 'with cause');
  logger.warn({ kafka: { sasl: { mechanism: 'plain', username: 'u', password: SECRET } }, items: [{ password: SECRET }] }, 'deep');
  logger.child({ url: URL_WITH_SECRET }).info('child bindings');
  logger.child({ db: { password: SECRET } }).child({ password: SECRET }).info('grandchild bindings');

  assert.equal(lines.length, 9);
  for (const line of lines) {
    assert.ok(!line.includes(SECRET), `secret leaked in: ${line}`);
  }
  const parsed = lines.map((l) => JSON.parse(l));
  assert.equal(parsed[0].connectionString, 'postgres://replicator:***@db.internal:5432/app');
  assert.equal(parsed[1].source.pg.password, '***');
  assert.match(parsed[2].msg, /replicator:\*\*\*@db\.internal/);
  assert.match(parsed[3].msg, /replicator:\*\*\*@db\.internal/);
  assert.match(parsed[4].msg, /connect failed for postgres:\/\/replicator:\*\*\*@/);
  assert.match(parsed[4].err.stack, /replicator:\*\*\*@/);
  assert.equal(parsed[6].kafka.sasl.password, '***');
  assert.equal(parsed[6].kafka.sasl.username, 'u');
  assert.equal(parsed[6].items[0].password, '***');
  assert.equal(parsed[7].url, 'postgres://replicator:***@db.internal:5432/app');
});

test('pretty output is masked too', () => {
  const { logger, lines } = capture({ pretty: true });
  logger.info({ url: URL_WITH_SECRET, password: SECRET }, `pretty ${URL_WITH_SECRET}`);
  assert.ok(lines.length > 0);
  assert.ok(lines.join('\n').includes('pretty postgres://replicator:***@'));
  for (const line of lines) assert.ok(!line.includes(SECRET), line);
});

test('level: explicit, then LOG_LEVEL, then info', () => {
  assert.equal(resolveLevel('debug', {}), 'debug');
  assert.equal(resolveLevel(undefined, { LOG_LEVEL: 'WARN' }), 'warn');
  assert.equal(resolveLevel(undefined, {}), 'info');
  const { logger, lines } = capture({ level: 'warn' });
  logger.info('hidden');
  logger.warn('shown');
  assert.deepEqual(lines.map((l) => JSON.parse(l).msg), ['shown']);
});
