/** shardbridge cutover's foreign key step: the failure of a key whose lock wait the destination role's lock_timeout cut. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { judgeCutover, renderCutover } from '../../shared/migration/cutover.ts';
import { lockTimeoutText, referencedTable, type LockTimeoutCut } from '../../shared/migration/foreign-keys.ts';

test('referencedTable: the referenced table as pg_get_constraintdef writes it, quoted parts kept', () => {
  assert.equal(referencedTable('FOREIGN KEY (customer_id) REFERENCES app.customers(id) ON DELETE CASCADE'), 'app.customers');
  assert.equal(referencedTable('FOREIGN KEY (a, b) REFERENCES "My.Schema"."Odd ""T"""(x, y)'), '"My.Schema"."Odd ""T"""');
  assert.equal(referencedTable('FOREIGN KEY (p) REFERENCES parent(id)'), 'parent');
  assert.equal(referencedTable('CHECK (a > 0)'), null);
});

const cut: LockTimeoutCut = {
  table: '"app"."orders"',
  constraint: 'orders_customer_fk',
  referenced: 'app.customers',
  timeout: '2s',
  setBy: 'user',
  role: 'sb',
  database: 'shop',
  holders: [{ pid: 4242, who: 'billing', state: 'idle in transaction', transactionSeconds: 75, mode: 'RowExclusiveLock', relation: 'app.customers' }],
};

test('lockTimeoutText: the statement, the setting and where it is set, nothing half-made, the holder, what to check and the remedy for our role alone', () => {
  const text = lockTimeoutText(cut);
  assert.match(text, /^ALTER TABLE "app"\."orders" ADD CONSTRAINT "orders_customer_fk" waited longer than lock_timeout \(2s, set in role sb\) for its SHARE ROW EXCLUSIVE locks on "app"\."orders" and app\.customers/);
  assert.match(text, /cancelled \(55P03\): nothing of this foreign key was made \(each is created by a statement of its own; those created before it stand\)/);
  assert.match(text, /pid 4242 \(billing, idle in transaction, in a transaction for 75 s\) holds RowExclusiveLock on app\.customers/);
  assert.match(text, /pg_blocking_pids\(pid\) of its session \(application_name shardbridge-cutover/);
  assert.match(text, /Remedy: run cutover again when the writes to these tables are quiet \(it creates only the keys still missing\), or raise it for ShardBridge's role alone: ALTER ROLE "sb" IN DATABASE "shop" SET lock_timeout = '1min'$/);
});

test('lockTimeoutText: set in the URL, in the role in its database; no holder left', () => {
  const url = lockTimeoutText({ ...cut, setBy: 'client', holders: [] });
  assert.match(url, /set in destination\.url's options\)/);
  assert.match(url, /No session held a lock on them just after/);
  assert.match(url, /or raise lock_timeout in destination\.url's options \(-c lock_timeout=1min\) for the cut-over$/);
  assert.match(lockTimeoutText({ ...cut, setBy: 'database user' }), /set in role sb in database shop\)/);
  assert.match(lockTimeoutText({ ...cut, referenced: null }), /locks on "app"\."orders", which wait/);
});

test('judgeCutover, renderCutover: a failed foreign key is said once, among the problems: not also as its step, nor in the table', () => {
  const r = judgeCutover({
    verifyOnly: false, recordedLsn: '0/1', margin: 0, sequences: [], tables: [],
    steps: [{ step: 'foreign keys', status: 'failed', detail: '0 created, 0 already there, 1 failed', ms: 1 }],
    foreignKeys: [{ table: '"app"."orders"', constraint: 'orders_customer_fk', definition: '', status: 'failed', error: 'cut' }],
  });
  assert.deepEqual(r.problems, ['foreign key orders_customer_fk on "app"."orders": cut']);
  assert.match(renderCutover(r), /orders_customer_fk {2}failed \(see NO-GO\)\n[^]*NO-GO:\n {2}- foreign key orders_customer_fk on "app"\."orders": cut\n$/);
});
