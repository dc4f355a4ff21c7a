import { test } from 'node:test';
import assert from 'node:assert/strict';
import { judgeDestination, type TableComparison } from '../../shared/checks/destination.ts';
import { differingTableTriggerHints, disabledTriggerReminders, firingTriggers, replicationRoleRefusal, triggerWarning, type DestinationTrigger } from '../../shared/checks/triggers.ts';
import { mapTable } from '../../shared/schema/mapping.ts';

const orders = { schema: 'public', name: 'orders' };
const trg = (name: string, enabled: DestinationTrigger['enabled']): DestinationTrigger => ({ name, enabled });

test('triggers: which fire for the sink: origin fires O and A, replica fires A and R, D never', () => {
  const all = [trg('o', 'O'), trg('a', 'A'), trg('r', 'R'), trg('d', 'D')];
  assert.deepEqual(firingTriggers(all, 'origin').map((t) => t.name), ['o', 'a']);
  assert.deepEqual(firingTriggers(all, 'replica').map((t) => t.name), ['a', 'r']);
});

test('triggers: a warning names the firing triggers, why they matter and the remedy; none firing, nothing', () => {
  assert.equal(triggerWarning(orders, [], 'origin', false), null);
  assert.equal(triggerWarning(orders, [trg('off', 'D'), trg('rep', 'R')], 'origin', false), null);
  const w = triggerWarning(orders, [trg('touch', 'O'), trg('audit', 'A')], 'origin', false)!;
  assert.match(w.message, /^triggers touch, audit on public\.orders fire for every row the sink applies \(PostgreSQL's own logical replication would not fire them\): .*updated_at = now\(\).*cutover's verification.*audit table/);
  assert.match(w.remedy, /^until cut-over: ALTER TABLE "public"\."orders" DISABLE TRIGGER USER; and at cut-over ALTER TABLE "public"\."orders" ENABLE TRIGGER USER;/);
  assert.match(w.remedy, /or set sessionReplicationRole: replica in the sink's configuration, which does not stop audit \(ENABLE ALWAYS\)$/);
  const one = triggerWarning(orders, [trg('touch', 'O')], 'origin', false)!;
  assert.match(one.message, /^trigger touch on public\.orders fires for every row/);
  // On Citus, replica is refused: the remedy says so, and that Citus passes DISABLE TRIGGER to the shards.
  const citus = triggerWarning(orders, [trg('touch', 'O')], 'origin', true)!;
  assert.match(citus.remedy, /Citus passes it to the shards; sessionReplicationRole: replica is refused on Citus/);
  // Citus refuses ALTER TABLE … TRIGGER on a distributed or reference table unless the session sets citus.enable_unsafe_triggers.
  assert.match(
    citus.remedy,
    /^until cut-over: SET citus\.enable_unsafe_triggers = on; ALTER TABLE "public"\."orders" DISABLE TRIGGER USER; and at cut-over SET citus\.enable_unsafe_triggers = on; ALTER TABLE "public"\."orders" ENABLE TRIGGER USER;.*"triggers are not supported on distributed tables"/,
  );
  assert.doesNotMatch(w.remedy + one.remedy, /citus/i, 'plain PostgreSQL: no Citus setting');
  // Under replica only ENABLE ALWAYS / ENABLE REPLICA fire, each named in its own statement.
  assert.equal(triggerWarning(orders, [trg('touch', 'O')], 'replica', false), null);
  const rep = triggerWarning(orders, [trg('touch', 'O'), trg('audit', 'A')], 'replica', false)!;
  assert.match(rep.message, /^trigger audit on public\.orders fires for every row the sink applies, also under sessionReplicationRole: replica/);
  assert.match(rep.remedy, /^ALTER TABLE "public"\."orders" DISABLE TRIGGER "audit"; until cut-over/);
});

test('sessionReplicationRole: replica refused on Citus (shards and truncate_trigger) and for a role that may not set it', () => {
  assert.equal(replicationRoleRefusal(false, true, 'sink'), null);
  const citus = replicationRoleRefusal(true, true, 'sink')!;
  assert.match(citus.message, /refused on Citus: the setting does not reach the workers' shard sessions .*truncate_trigger/);
  assert.match(citus.remedy, /SET citus\.enable_unsafe_triggers = on; ALTER TABLE … DISABLE TRIGGER USER/);
  const role = replicationRoleRefusal(false, false, 'sink')!;
  assert.match(role.message, /role "sink" may not set session_replication_role/);
  assert.match(role.remedy, /GRANT SET ON PARAMETER session_replication_role TO "sink";/);
});

test('cutover reminder: user triggers left disabled are named with the statements that enable them', () => {
  assert.deepEqual(disabledTriggerReminders([{ table: orders, triggers: [trg('touch', 'O')] }]), []);
  assert.deepEqual(disabledTriggerReminders([{ table: orders, triggers: [trg('touch', 'D'), trg('audit', 'D'), trg('x', 'A')] }]), [
    'triggers touch, audit on public.orders are disabled: if disabled for the migration, enable them before the application writes: ALTER TABLE "public"."orders" ENABLE TRIGGER "touch"; ALTER TABLE "public"."orders" ENABLE TRIGGER "audit";',
  ]);
  assert.match(disabledTriggerReminders([{ table: orders, triggers: [trg('touch', 'D')] }], true)[0], /before the application writes: SET citus\.enable_unsafe_triggers = on; ALTER TABLE "public"\."orders" ENABLE TRIGGER "touch";$/);
});

const comparison = (triggers: DestinationTrigger[], foreignKeys: { name: string; definition: string }[] = []): TableComparison => ({
  source: { name: 'public.orders', schema: 'public', table: 'orders', keyColumns: ['id'], replicaIdentity: 'default', columns: [{ name: 'id', type: 'bigint' }] },
  mapped: mapTable(orders),
  destination: { schema: 'public', name: 'orders', exists: true, columns: [{ name: 'id', type: 'bigint', notNull: true }], primaryKey: ['id'], uniqueKeys: [['id']], citus: 'local', distributionColumn: null, foreignKeys },
  triggers,
});
const plainPg = { present: false, version: null };

test('check: a destination trigger warns; under replica the foreign keys pass and the role is judged', () => {
  const fk = [{ name: 'orders_customer_fk', definition: 'FOREIGN KEY (customer_id) REFERENCES customers(id)' }];
  const origin = judgeDestination({ citus: plainPg, requireDistributed: false, tables: [comparison([trg('touch', 'O')], fk)] });
  assert.deepEqual(origin.filter((f) => f.check === 'triggers').map((f) => [f.level, f.object]), [['WARN', 'public.orders']]);
  assert.match(origin.find((f) => f.check === 'foreign key')!.remedy!, /or set sessionReplicationRole: replica/);
  const replica = judgeDestination({ citus: plainPg, requireDistributed: false, replicationRole: { role: 'replica', canSet: true, user: 'sink' }, tables: [comparison([trg('touch', 'O')], fk)] });
  assert.deepEqual(replica.filter((f) => ['triggers', 'foreign key', 'replication role'].includes(f.check)).map((f) => `${f.level} ${f.check}`), ['PASS replication role', 'PASS foreign key']);
  assert.match(replica.find((f) => f.check === 'foreign key')!.message, /not enforced on the sink's sessions .* truncate of the table it references still stalls/);
  const refused = judgeDestination({ citus: plainPg, requireDistributed: false, replicationRole: { role: 'replica', canSet: false, user: 'sink' }, tables: [comparison([trg('touch', 'O')], fk)] });
  assert.deepEqual(refused.filter((f) => f.level !== 'PASS').map((f) => `${f.level} ${f.check}`), ['FAIL replication role', 'WARN foreign key', 'WARN triggers']);
  const citus = judgeDestination({ citus: { present: true, version: '13.2' }, requireDistributed: false, replicationRole: { role: 'replica', canSet: false, user: 'sink' }, tables: [] });
  assert.match(citus.find((f) => f.check === 'replication role')!.message, /refused on Citus/);
});

test("triggers: a partition's own trigger is named with its partition, and disabled / enabled on it", () => {
  const own: DestinationTrigger = { name: 'touch', enabled: 'O', partition: { schema: 'public', name: 'orders_2025' } };
  const w = triggerWarning(orders, [trg('audit', 'O'), own], 'origin', false)!;
  assert.match(w.message, /^triggers audit, touch \(of partition public\.orders_2025\) on public\.orders fire/);
  assert.match(w.remedy, /DISABLE TRIGGER USER; ALTER TABLE "public"\."orders_2025" DISABLE TRIGGER "touch"; \(a partition's own trigger\) and at cut-over/);
  assert.match(triggerWarning(orders, [{ ...own, enabled: 'A' }], 'replica', false)!.remedy, /^ALTER TABLE "public"\."orders_2025" DISABLE TRIGGER "touch";/);
  assert.deepEqual(disabledTriggerReminders([{ table: orders, triggers: [{ ...own, enabled: 'D' }] }]), [
    'trigger touch (of partition public.orders_2025) on public.orders is disabled: if disabled for the migration, enable it before the application writes: ALTER TABLE "public"."orders_2025" ENABLE TRIGGER "touch";',
  ]);
});

test("cutover: a table that differs and whose triggers fire for the sink's rows is named with them as the likely cause, how to stop them and the resnapshot; none when nothing fires", () => {
  const [hint] = differingTableTriggerHints([{ table: orders, source: 'app.orders', triggers: [trg('orders_touch', 'O'), trg('orders_old', 'D')] }], 'origin');
  assert.match(hint, /^public\.orders differs from the source, and trigger orders_touch fires for the rows the sink applies there: a likely cause\./);
  assert.match(hint, /DISABLE TRIGGER USER/);
  assert.match(hint, /then take the table's snapshot again: shardbridge resnapshot --source-config source\.yaml --table app\.orders$/);
  assert.deepEqual(differingTableTriggerHints([{ table: orders, source: 'app.orders', triggers: [trg('orders_touch', 'O')] }], 'replica'), [], 'replica: an ordinary trigger does not fire');
  assert.deepEqual(differingTableTriggerHints([{ table: orders, source: 'app.orders', triggers: [trg('orders_old', 'D')] }], 'origin'), []);
});
