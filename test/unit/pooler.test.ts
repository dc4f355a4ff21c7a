import { test } from 'node:test';
import assert from 'node:assert/strict';
import { optionSettings, poolerRefusedParameter, settingsNotInEffect, sinkSettingsMissing } from '../../shared/checks/pooler.ts';
import { sessionOptions } from '../../sink-connector/config.ts';
import { sinkConfigSchema } from '../../sink-connector/config.ts';
import { pgRemedy } from '../../shared/config/postgres.ts';

test('poolerRefusedParameter: PgBouncer\'s refusal names the parameter; other errors none', () => {
  assert.equal(poolerRefusedParameter(Object.assign(new Error('unsupported startup parameter: options'), { code: '08P01' })), 'options');
  assert.equal(poolerRefusedParameter(new Error('unsupported startup parameter: replication')), 'replication');
  assert.equal(poolerRefusedParameter(new Error('connection refused')), null);
  assert.equal(poolerRefusedParameter(null), null);
});

test("optionSettings: every -c of the sink's options, the last of a name winning", () => {
  const config = sinkConfigSchema.parse({ kafka: { brokers: ['k:9092'] }, schemaRegistry: { url: 'http://r' }, destination: { url: 'postgres://d/db' } });
  const s = optionSettings(`-c synchronous_commit=on --lock-timeout=5s -cwork_mem=1MB ${sessionOptions(config, true)}`);
  assert.equal(s.get('synchronous_commit'), 'off');
  assert.equal(s.get('lock_timeout'), '5s');
  assert.equal(s.get('work_mem'), '1MB');
  assert.equal(s.get('idle_in_transaction_session_timeout'), '30000');
  assert.equal(s.get('citus.max_cached_conns_per_worker'), '16');
});

test('settingsNotInEffect: a differing or unknown setting is named, case aside', () => {
  const wanted = new Map([['synchronous_commit', 'off'], ['lc_monetary', 'C'], ['citus.x', 'on']]);
  assert.deepEqual(settingsNotInEffect(wanted, new Map([['synchronous_commit', 'on'], ['lc_monetary', 'c']])), [
    { name: 'synchronous_commit', wanted: 'off', actual: 'on' },
    { name: 'citus.x', wanted: 'on', actual: null },
  ]);
  const e = sinkSettingsMissing('destination.url', [{ name: 'synchronous_commit', wanted: 'off', actual: 'on' }], true, 'sink"r');
  assert.match(e.message, /^destination\.url leads to PgBouncer .*synchronous_commit is on, not off$/);
  assert.equal(e.remedy, `point destination.url at the PostgreSQL server itself (not the pooler); or make the settings on the sink's role: ALTER ROLE "sink""r" SET synchronous_commit = 'off';`);
});

test("pgRemedy: a pooler's refusal of a startup parameter names the pooler and the side's remedy", () => {
  const refusal = Object.assign(new Error('unsupported startup parameter: options'), { code: '08P01', severity: 'FATAL' });
  assert.match(pgRemedy(refusal, 'source', 'check the host'), /^source\.url leads to PgBouncer or another connection pooler, which refuses the startup parameter "options" .*: point source\.url \(or source\.host and port\) at the PostgreSQL server itself$/);
  const wrapped = new Error('cannot connect', { cause: refusal });
  assert.match(pgRemedy(wrapped, 'destination', 'check the host'), /server itself; or, for the sink, a PgBouncer with pool_mode = session and ignore_startup_parameters = options/);
  assert.equal(pgRemedy(new Error('boom'), 'source', 'check the host'), 'check the host');
});
