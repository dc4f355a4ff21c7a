/**
 * The `options` our sessions send (pg-types.ts): an application's role or database settings
 * (statement_timeout, lock_timeout, idle_in_transaction_session_timeout, search_path) do not
 * reach them, a setting in ShardBridge's own connection URL does, and the settings the text
 * output depends on hold whatever the URL says. A setting given twice takes the later value.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { commandDestinationOptions, commandSourceOptions, settingsOptions, sourceSessionOptions } from '../../shared/pg-types.ts';
import { isReadOnlyRefusal, readOnlyExplained } from '../../source-connector/read-only-default.ts';
import { transactionTimeoutReset } from '../../shared/timeout-reset.ts';

/** The value the server ends with for each setting: the last `-c name=value` wins. */
function effective(options: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of options.matchAll(/-c ([a-z_]+)=((?:\\.|[^ \\])*)/gi)) out.set(m[1], m[2].replace(/\\(.)/g, '$1'));
  return out;
}

test("source sessions: the role's timeouts reset, search_path empty, the text settings ours", () => {
  const s = effective(sourceSessionOptions());
  for (const k of ['statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout']) assert.equal(s.get(k), '0', k);
  assert.equal(s.get('search_path'), '');
  assert.equal(s.get('DateStyle'), 'ISO');
});

test("source sessions: a timeout in ShardBridge's own URL holds; its search_path or DateStyle does not", () => {
  const s = effective(sourceSessionOptions('-c statement_timeout=1h -c search_path=app -c DateStyle=SQL'));
  assert.equal(s.get('statement_timeout'), '1h');
  assert.equal(s.get('lock_timeout'), '0');
  assert.equal(s.get('search_path'), '');
  assert.equal(s.get('DateStyle'), 'ISO');
});

test("the commands' destination sessions keep the role's lock_timeout (their DDL holds up writers while it waits); their source sessions reset it", () => {
  const d = effective(commandDestinationOptions());
  assert.equal(d.get('statement_timeout'), '0');
  assert.equal(d.get('idle_in_transaction_session_timeout'), '0');
  assert.equal(d.has('lock_timeout'), false);
  assert.equal(d.get('search_path'), '');
  assert.equal(d.has('DateStyle'), false, 'the text settings are verify’s and the connector’s');
  const s = effective(commandSourceOptions('-c lock_timeout=5s -c search_path=app'));
  assert.equal(s.get('lock_timeout'), '5s', 'the URL’s own holds');
  assert.equal(s.get('statement_timeout'), '0');
  assert.equal(s.get('search_path'), '');
  assert.equal(effective(commandDestinationOptions('-c statement_timeout=10min')).get('statement_timeout'), '10min');
});

test('settingsOptions escapes spaces and backslashes in values, and an empty value stays empty', () => {
  assert.equal(settingsOptions({ a: 'x y', b: 'c\\d', search_path: '' }), '-c a=x\\ y -c b=c\\\\d -c search_path=');
  assert.deepEqual([...effective(settingsOptions({ a: 'x y', b: 'c\\d' }))], [['a', 'x y'], ['b', 'c\\d']]);
});

test('default_transaction_read_only refused: where it was set is named, the remedy sets it off for the role in the database (above the role, database and server settings)', () => {
  const at = (setBy: string | null) => readOnlyExplained({ role: 'sb', database: 'app', setBy, inRecovery: false }, 'source', 'creating publication "p"')!;
  assert.match(at('user').message, /^default_transaction_read_only is on for role sb on the source: creating publication "p" was refused/);
  assert.match(at('database').message, /for database app on the source/);
  assert.match(at('database user').message, /for role sb in database app on the source/);
  assert.match(at('configuration file').message, /for the server \(configuration file\)/);
  assert.match(at(null).message, /for role sb or database app/);
  assert.equal(at('user').remedy, `for ShardBridge's role alone: ALTER ROLE "sb" IN DATABASE "app" SET default_transaction_read_only = off; then run it again`);
  assert.match(at('client').remedy, /remove -c default_transaction_read_only=on from the options of source\.url/);
  // Not the setting: a standby, or the server's default (off) with a read-only transaction of another making.
  assert.equal(readOnlyExplained({ role: 'sb', database: 'app', setBy: 'user', inRecovery: true }, 'destination', 'x'), null);
  assert.equal(readOnlyExplained({ role: 'sb', database: 'app', setBy: 'default', inRecovery: false }, 'destination', 'x'), null);
  assert.equal(isReadOnlyRefusal({ code: '25006' }), true);
  assert.equal(isReadOnlyRefusal({ code: '57014' }), false);
  assert.equal(isReadOnlyRefusal(null), false);
});

test('transaction_timeout (17+) is reset after connecting by a statement that is a no-op before 17, unless the URL sets it', () => {
  const sql = transactionTimeoutReset(undefined);
  assert.equal(sql, `SELECT set_config('transaction_timeout', '0', false) WHERE current_setting('server_version_num')::int >= 170000`);
  assert.equal(transactionTimeoutReset('-c statement_timeout=5s'), sql);
  // Not a prefix match on a longer name, nor on the value of another setting.
  assert.equal(transactionTimeoutReset('-c application_name=transaction_timeout=1'), sql);
  assert.equal(transactionTimeoutReset('-c transaction_timeout=1h'), undefined);
  assert.equal(transactionTimeoutReset('-c lock_timeout=1s --transaction_timeout=10min'), undefined);
  assert.equal(transactionTimeoutReset('-ctransaction_timeout=10min'), undefined);
});
