import { test } from 'node:test';
import assert from 'node:assert/strict';
import { judgeSourceFacts, type SourceFacts } from '../../source-connector/checks.ts';
import { judgeCapacity } from '../../shared/checks/capacity.ts';
import { topicNameProblems } from '../../source-connector/table-versions.ts';
import { linkTypes, replicaIdentityProblem, splitQualifiedName } from '../../source-connector/catalog.ts';
import { prefixFindings } from '../../shared/checks/services.ts';
import { keyEqualityWhy } from '../../source-connector/key-equality.ts';
import { slotOptions, slotWaitOldest, slotWaitRemedy } from '../../source-connector/slot.ts';
import { alterFailoverError, standbySlotNames } from '../../source-connector/failover-checks.ts';
import { currentLsnSql, type StandbyFacts } from '../../source-connector/standby.ts';
import { isRetriable } from '../../shared/errors.ts';

const healthy: SourceFacts = {
  serverVersionNum: 150004, walLevel: 'logical', serverEncoding: 'UTF8', maxReplicationSlots: 10, usedReplicationSlots: 1, maxWalSenders: 10, usedWalSenders: 0,
  role: 'app', canReplicate: true, slot: null, slotName: 'shardbridge_slot', missingTables: [], tablesWithoutPrimaryKey: [], badReplicaIdentity: [], topicProblems: [], unreadableSequences: [],
  selectedTables: 3, maxSlotWalKeepSize: '10GB', unreadableTables: [], rowSecurityTables: [], unloggedTables: [], keyEquality: [], topicPrefix: 'app', largeObjects: 0, largeObjectColumns: [], preparedTransactions: [], inRecovery: false,
  publication: { name: 'shardbridge_pub', database: 'app', exists: false, allTables: false, owned: false, differs: true, notOwned: [], canCreate: true, tables: [{ name: 'public.orders', sql: 'public.orders' }] },
};

const fails = (f: Partial<SourceFacts>) => judgeSourceFacts({ ...healthy, ...f }).filter((x) => x.level === 'FAIL');

test('a healthy source has no failing finding', () => {
  assert.deepEqual(fails({}), []);
});

test('wal_level replica fails with the lines to add and the restart note', () => {
  const [f] = fails({ walLevel: 'replica' });
  assert.equal(f.check, 'wal_level');
  assert.match(f.remedy!, /wal_level = logical/);
  assert.match(f.remedy!, /max_replication_slots = 5/);
  assert.match(f.remedy!, /restart/);
});

test('each failing condition names its object', () => {
  assert.equal(fails({ usedReplicationSlots: 10 })[0].check, 'replication slots');
  assert.equal(fails({ usedWalSenders: 10 })[0].check, 'wal senders');
  assert.match(fails({ canReplicate: false })[0].remedy!, /ALTER ROLE "app" WITH REPLICATION/);
  assert.equal(fails({ missingTables: ['public.nope'] })[0].object, 'public.nope');
  const pk = fails({ tablesWithoutPrimaryKey: ['public.a', 'public.b'] });
  assert.deepEqual(pk.map((f) => f.object), ['public.a', 'public.b']);
  assert.match(pk[0].remedy!, /ADD PRIMARY KEY|tables\.exclude/);
  const rls = fails({ rowSecurityTables: [{ table: 'public.t', forced: false, owner: 'admin' }, { table: 'public.f', forced: true, owner: 'admin' }] });
  assert.deepEqual(rls.map((f) => [f.check, f.object]), [['row-level security', 'public.t'], ['row-level security', 'public.f']]);
  assert.match(rls[0].message, /^table public\.t has row-level security that applies to role "app": the snapshot would read only the rows its policies show/);
  assert.equal(rls[0].remedy, 'ALTER ROLE "app" BYPASSRLS;  (a superuser can) or connect as its owner "admin"');
  assert.match(rls[1].remedy!, /NO FORCE ROW LEVEL SECURITY and connect as its owner "admin"$/);
  const unlogged = fails({ unloggedTables: [{ table: 'public.t', unlogged: 'public.t', sql: 'public.t' }, { table: 'public.p', unlogged: 'public.p_2024', sql: 'public.p_2024' }] });
  assert.deepEqual(unlogged.map((f) => [f.check, f.object]), [['unlogged', 'public.t'], ['unlogged', 'public.p']]);
  assert.match(unlogged[0].message, /^table public\.t is UNLOGGED: its changes are not written to the WAL/);
  assert.match(unlogged[1].message, /^partition public\.p_2024 of public\.p is UNLOGGED/);
  assert.equal(unlogged[1].remedy, 'ALTER TABLE public.p_2024 SET LOGGED;  (rewrites it) or add "public.p" to tables.exclude');
  assert.match(fails({ slot: { active: true, activePid: 42, walStatus: 'reserved', plugin: 'pgoutput' } })[0].message, /pid 42/);
  assert.match(fails({ slot: { active: false, activePid: null, walStatus: 'lost', plugin: 'pgoutput' } })[0].message, /changes were lost/);
});

test('a source older than PostgreSQL 14 fails, naming the version', () => {
  const [f] = fails({ serverVersionNum: 130011 });
  assert.deepEqual([f.check, f.message], ['server version', "PostgreSQL 13: the source connector needs PostgreSQL 14 or newer (pgoutput's logical-message option)"]);
  assert.deepEqual(fails({ serverVersionNum: 140000 }), []);
});

test('an existing slot does not need a free slot', () => {
  assert.deepEqual(fails({ usedReplicationSlots: 10, slot: { active: false, activePid: null, walStatus: 'reserved', plugin: 'pgoutput' } }), []);
});

test('unlimited max_slot_wal_keep_size is a warning whose figure is check\'s (80 % of the free WAL disk, not 20 %)', () => {
  const w = judgeSourceFacts({ ...healthy, maxSlotWalKeepSize: '-1' }).filter((x) => x.level === 'WARN');
  assert.equal(w[0].check, 'max_slot_wal_keep_size');
  const fromCheck = judgeCapacity({ database: 'app', databaseBytes: 0, walBytesPerSecond: null, sampleSeconds: 0, maxSlotWalKeepSize: '-1' }).find((x) => x.check === 'max_slot_wal_keep_size');
  assert.equal(w[0].message, fromCheck?.message);
  assert.match(w[0].remedy ?? '', /about 80 % of the free WAL disk space \(80GB/);
  assert.ok(fromCheck?.remedy?.startsWith('set max_slot_wal_keep_size to about 80 % of the free WAL disk space (80GB'));
});

test('a SQL_ASCII database is a warning (text that is not UTF-8 stops the connector); other encodings convert', () => {
  const warns = (serverEncoding: string) => judgeSourceFacts({ ...healthy, serverEncoding }).filter((x) => x.level === 'WARN').map((x) => x.check);
  assert.deepEqual(warns('SQL_ASCII'), ['encoding']);
  assert.deepEqual(warns('LATIN1'), []);
  assert.deepEqual(warns('UTF8'), []);
});

test('qualified names split with quoting', () => {
  assert.deepEqual(splitQualifiedName('orders'), { schema: 'public', table: 'orders' });
  assert.deepEqual(splitQualifiedName('sales.orders'), { schema: 'sales', table: 'orders' });
  assert.deepEqual(splitQualifiedName('"My.Schema"."Odd ""T"""'), { schema: 'My.Schema', table: 'Odd "T"' });
});

test('linkTypes resolves arrays, domains and ranges', () => {
  const m = linkTypes([
    { oid: 20, schema: 'pg_catalog', name: 'int8', typtype: 'b', category: 'N', elem: 0, base: 0, subtype: null },
    { oid: 1016, schema: 'pg_catalog', name: '_int8', typtype: 'b', category: 'A', elem: 20, base: 0, subtype: null },
    { oid: 5000, schema: 'public', name: 'posint', typtype: 'd', category: 'N', elem: 0, base: 20, subtype: null },
    { oid: 3926, schema: 'pg_catalog', name: 'int8range', typtype: 'r', category: 'R', elem: 0, base: 0, subtype: 20 },
    { oid: 19, schema: 'pg_catalog', name: 'name', typtype: 'b', category: 'S', elem: 18, base: 0, subtype: null },
  ]);
  assert.equal(m.get(1016)!.kind, 'array');
  assert.equal(m.get(1016)!.elem!.name, 'int8');
  assert.equal(m.get(5000)!.base!.name, 'int8');
  assert.equal(m.get(3926)!.subtype!.name, 'int8');
  assert.equal(m.get(19)!.kind, 'base');
});

test('replica identity: NOTHING, or an index other than the primary key, is refused; DEFAULT, FULL and the primary key index are not', () => {
  const t = (replicaIdentity: 'default' | 'full' | 'index' | 'nothing', keyColumns = ['id']) => ({ relid: 1, schema: 'public', name: 'orders', columns: [], keyColumns, replicaIdentity });
  assert.deepEqual(replicaIdentityProblem(t('default'), undefined), []);
  assert.deepEqual(replicaIdentityProblem(t('full'), undefined), []);
  assert.deepEqual(replicaIdentityProblem(t('index'), ['id']), []);
  assert.match(replicaIdentityProblem(t('nothing'), undefined)[0].message, /REPLICA IDENTITY NOTHING: once published, the source refuses UPDATE and DELETE/);
  const [byCode] = replicaIdentityProblem(t('index', ['id', 'region']), ['code']);
  assert.match(byCode.message, /USING INDEX on \(code\), not its primary key \(id, region\)/);
  assert.equal(byCode.remedy, 'ALTER TABLE "public"."orders" REPLICA IDENTITY DEFAULT;  (or FULL)');
  // Without a primary key the primary-key check speaks.
  assert.deepEqual(replicaIdentityProblem(t('nothing', []), undefined), []);
  const [f] = fails({ badReplicaIdentity: [{ table: 'public.orders', message: 'm', remedy: 'r' }] });
  assert.deepEqual([f.check, f.object, f.message, f.remedy], ['replica identity', 'public.orders', 'm', 'r']);
});

test("topic names: over Kafka's 249 characters, or two tables on one topic (also '.' against '_'), each named", () => {
  assert.deepEqual(topicNameProblems('shop', [{ schema: 'public', name: 'orders' }, { schema: 'public', name: 'items' }]), []);
  const clash = topicNameProblems('shop', [{ schema: 'public', name: 'a.b' }, { schema: 'public', name: 'a_b' }, { schema: 'public', name: 'a b' }]);
  assert.deepEqual(clash.map((c) => c.table), ['public.a_b', 'public.a b']);
  assert.match(clash[0].message, /tables public\.a\.b and public\.a_b would share the topic shop\.public\.a_b/);
  const [long] = topicNameProblems('p'.repeat(200), [{ schema: 'public', name: 'x'.repeat(60) }]);
  assert.match(long.message, /has 268 characters \(Kafka allows 249\)/);
  const [f] = fails({ topicProblems: [{ table: 'public.a_b', message: 'm', remedy: 'r' }] });
  assert.deepEqual([f.check, f.object], ['topic name', 'public.a_b']);
});

test('a sequence of a selected table the role cannot read fails, naming it and the GRANT', () => {
  const [f] = fails({ unreadableSequences: ['public.orders_id_seq'] });
  assert.deepEqual([f.check, f.object], ['sequence privilege', 'public.orders_id_seq']);
  assert.match(f.message, /role "app" cannot read sequence public\.orders_id_seq: its value would be published as unknown/);
  assert.equal(f.remedy, 'GRANT SELECT ON SEQUENCE public.orders_id_seq TO "app";  (or GRANT SELECT ON ALL SEQUENCES IN SCHEMA …)');
});

test('publication and table privileges: what CREATE / ALTER PUBLICATION and the snapshot need, with the statements that give it', () => {
  const pub = (p: Partial<SourceFacts['publication']>) => ({ publication: { ...healthy.publication, ...p } });
  const orders = { name: 'public.orders', sql: 'public.orders' };
  const odd = { name: 'My.Items', sql: '"My"."Items"' };
  assert.equal(judgeSourceFacts({ ...healthy }).find((f) => f.check === 'publication')?.message, 'the connector will create it');

  const unreadable = fails({ unreadableTables: ['public.orders'] });
  assert.deepEqual(unreadable.map((f) => [f.check, f.object]), [['table privilege', 'public.orders']]);
  assert.match(unreadable[0].remedy!, /GRANT SELECT ON public\.orders TO "app";/);

  const noCreate = fails(pub({ canCreate: false }));
  assert.match(noCreate[0].message, /role "app" cannot create publication shardbridge_pub: it lacks CREATE on database app/);
  assert.match(noCreate[0].remedy!, /GRANT CREATE ON DATABASE "app" TO "app";/);
  const notOwner = fails(pub({ notOwned: [orders, odd], tables: [orders, odd] }));
  assert.match(notOwner[0].message, /FOR TABLE needs ownership of each table; role "app" does not own public\.orders, My\.Items/);
  assert.match(notOwner[0].remedy!, /CREATE PUBLICATION "shardbridge_pub" FOR TABLE public\.orders, "My"\."Items" WITH \(publish_via_partition_root = true\); ALTER PUBLICATION "shardbridge_pub" OWNER TO "app";/);

  assert.deepEqual(fails(pub({ exists: true, differs: false })), [], 'an existing publication listing every table needs nothing');
  assert.match(fails(pub({ exists: true, differs: true, owned: false }))[0].remedy!, /ALTER PUBLICATION "shardbridge_pub" OWNER TO "app";/);
  assert.match(fails(pub({ exists: true, differs: true, owned: true, notOwned: [odd] }))[0].remedy!, /ALTER PUBLICATION "shardbridge_pub" ADD TABLE "My"\."Items";/);
  assert.deepEqual(fails(pub({ exists: true, differs: true, owned: true })), [], 'its owner may alter it, the tables to add being its own');
  assert.match(fails(pub({ exists: true, allTables: true }))[0].message, /FOR ALL TABLES/);
});

test('topic prefixes: the sink must read what the source writes; without a sink config nothing is said', () => {
  assert.deepEqual(prefixFindings('shardbridge', 'shardbridge').map((f) => f.level), ['PASS']);
  const [f] = prefixFindings('prod', 'shardbridge');
  assert.equal(f.level, 'FAIL');
  assert.match(f.message, /the source writes topics under "prod\." but the sink reads "shardbridge\.": it would apply nothing/);
  assert.deepEqual(prefixFindings('prod', undefined), []);
});

test('key columns whose equal values differ in their bytes, without a canonical key text, warn per table with the one-partition remedy', () => {
  const col = { base: 'text', category: 'S', typmod: -1, nondeterministic: false, collation: 'default', inner_base: null, composite_inner: null };
  assert.match(keyEqualityWhy({ ...col, nondeterministic: true, collation: 'ci' })!, /nondeterministic collation ci/);
  assert.match(keyEqualityWhy({ ...col, base: 'citext' })!, /citext/);
  assert.match(keyEqualityWhy({ ...col, base: 'jsonb' })!, /jsonb/);
  assert.match(keyEqualityWhy({ ...col, base: 'bpchar' })!, /trailing spaces/);
  assert.match(keyEqualityWhy({ ...col, base: '_numeric', category: 'A', inner_base: 'numeric' })!, /1\.0 = 1\.00/);
  assert.match(keyEqualityWhy({ ...col, base: 'numrange', category: 'R', inner_base: 'numeric' })!, /1\.0 = 1\.00/);
  // Canonical key text covers these (shared/type-mapping/key-text.ts); the others compare by bytes.
  for (const base of ['text', 'numeric', 'float8', 'interval', 'int8', 'uuid', 'timestamptz']) assert.equal(keyEqualityWhy({ ...col, base }), null, base);
  assert.equal(keyEqualityWhy({ ...col, base: 'bpchar', typmod: 14 }), null, 'char(10) pads every value alike');
  assert.equal(keyEqualityWhy({ ...col, base: '_int4', category: 'A', inner_base: 'int4' }), null);
  // A composite type (or an array of one) holding such a type, at any depth: its text is not canonical.
  assert.match(keyEqualityWhy({ ...col, base: 'money2', category: 'C', composite_inner: ['numeric'] })!, /^a composite type with numeric inside/);
  assert.match(keyEqualityWhy({ ...col, base: 'tagged', category: 'C', composite_inner: ['collation ci', 'jsonb'] })!, /with collation ci, jsonb inside/);
  assert.equal(keyEqualityWhy({ ...col, base: 'pair', category: 'C', composite_inner: [] }), null);

  const keyEquality = [
    { table: 'public.users', column: 'email', type: 'citext', why: "citext: 'A' = 'a'" },
    { table: 'public.users', column: 'tag', type: 'text COLLATE ci', why: 'nondeterministic collation ci' },
    { table: 'public.docs', column: 'j', type: 'jsonb', why: 'jsonb' },
  ];
  const w = judgeSourceFacts({ ...healthy, keyEquality }).filter((x) => x.check === 'key equality');
  assert.deepEqual(w.map((x) => [x.level, x.object]), [['WARN', 'public.users'], ['WARN', 'public.docs']]);
  assert.match(w[0].message, /email \(citext; citext: 'A' = 'a'\), tag \(text COLLATE ci/);
  assert.match(w[0].message, /the row is then lost at the destination/);
  assert.match(w[0].remedy!, /the source makes the topic app\.public\.users with one partition/);
  assert.equal(fails({ keyEquality }).length, 0, 'a warning, not a refusal');
});

test('large objects: each selected oid / lo column is a warning naming the objects counted, with the remedy; objects alone warn once for the database; none, nothing', () => {
  const lo = (f: Partial<SourceFacts>) => judgeSourceFacts({ ...healthy, ...f }).filter((x) => x.check === 'large objects');
  assert.deepEqual(lo({}), []);
  const cols = lo({ largeObjects: 3, largeObjectColumns: [{ table: 'public.docs', column: 'body', type: 'oid' }, { table: 'public.scans', column: 'image', type: 'lo' }] });
  assert.deepEqual(cols.map((f) => [f.level, f.object]), [['WARN', 'public.docs.body'], ['WARN', 'public.scans.image']]);
  assert.match(cols[0].message, /column body of public\.docs is oid: if it refers to large objects \(the database has 3 large objects\), only the numbers are migrated: logical replication does not carry pg_largeobject/);
  assert.match(cols[1].remedy!, /pg_dump --data-only --blobs --exclude-schema='\*' <source> \| psql <destination>/);
  assert.match(cols[1].remedy!, /lo_import\(path, oid\)|bytea/);
  // An oid column with no object yet still warns: objects written during the migration are not carried either.
  assert.match(lo({ largeObjectColumns: [{ table: 'public.docs', column: 'body', type: 'oid' }] })[0].message, /the database has 0 large objects/);
  const db = lo({ largeObjects: 1 });
  assert.deepEqual(db.map((f) => [f.level, f.object]), [['WARN', 'database']]);
  assert.match(db[0].message, /the database has 1 large object, which logical replication does not carry; no selected table has an oid or lo column/);
  assert.deepEqual(fails({ largeObjects: 5, largeObjectColumns: [{ table: 'public.docs', column: 'body', type: 'oid' }] }), [], 'a warning, never a refusal');
});

test('prepared transactions: check warns (a slot creation waits for them, unseen in pg_stat_activity); the slot wait names them with the remedy', () => {
  const prepared = [
    { gid: "tm-7'a", database: 'shop', owner: 'app', prepared: '2026-12-01 10:00:00+00' },
    { gid: 'tm-8', database: 'shop', owner: 'app', prepared: '2026-12-02 10:00:00+00' },
  ];
  const first = judgeSourceFacts({ ...healthy, slot: null, preparedTransactions: prepared }).filter((x) => x.check === 'prepared transactions');
  assert.equal(first.length, 1);
  assert.equal(first[0].level, 'WARN');
  assert.match(first[0].message, /^2 prepared transaction\(s\), the oldest prepared transaction 'tm-7''a' in database shop \(owner app\) since 2026-12-01 10:00:00\+00: the first start waits, creating the replication slot,/);
  assert.match(first[0].remedy!, /COMMIT PREPARED 'tm-7''a' or ROLLBACK PREPARED 'tm-7''a' \(and so for each\)/);
  const later = judgeSourceFacts({ ...healthy, slot: { active: false, activePid: null, walStatus: 'reserved', plugin: 'pgoutput' }, preparedTransactions: prepared.slice(1) });
  assert.match(later.find((x) => x.check === 'prepared transactions')!.message, /a table's own snapshot \(its temporary slot\) and resnapshot wait/);
  assert.deepEqual(judgeSourceFacts(healthy).filter((x) => x.check === 'prepared transactions'), []);

  const session = { pid: 42, datname: 'shop', state: 'idle in transaction', since: '2026-12-07 10:00:00+00' };
  assert.equal(slotWaitOldest(undefined, []), 'none of them visible to this role (pg_read_all_stats shows them)');
  assert.equal(slotWaitOldest(undefined, prepared.slice(1)), "1 prepared transaction(s), the oldest prepared transaction 'tm-8' in database shop (owner app) since 2026-12-02 10:00:00+00");
  assert.equal(slotWaitOldest(session, prepared.slice(1)), "the oldest: pid 42 in database shop, idle in transaction since 2026-12-07 10:00:00+00; 1 prepared transaction(s), the oldest prepared transaction 'tm-8' in database shop (owner app) since 2026-12-02 10:00:00+00");
  assert.doesNotMatch(slotWaitRemedy([]), /PREPARED/);
  assert.match(slotWaitRemedy(prepared), /; prepared ones: connected to its database, COMMIT PREPARED 'tm-7''a'/);
});

test('a standby source before PostgreSQL 16 fails (in recovery), with the version\'s reason, and names the primary as the remedy', () => {
  const fifteen = judgeSourceFacts({ ...healthy, serverVersionNum: 150004, inRecovery: true, primaryConfigured: true }).filter((x) => x.check === 'standby');
  assert.deepEqual(fifteen.map((x) => [x.level, x.message]), [['FAIL', 'the source server is a standby (in recovery): PostgreSQL 15 cannot decode logical replication on a standby']]);
  assert.match(fifteen[0].remedy!, /point source at the primary/);
  assert.deepEqual(judgeSourceFacts(healthy).filter((x) => x.check === 'standby'), []);
});

test('a PostgreSQL 16+ standby source needs primary, its own primary (same system identifier), hot_standby_feedback and primary_slot_name; primary beside a primary source is warned of', () => {
  const standby: StandbyFacts = { systemIdentifier: '7001', database: 'app', hotStandbyFeedback: true, primarySlotName: 'phys', maxStandbyStreamingDelay: '-1', primary: { systemIdentifier: '7001', inRecovery: false, endpoint: 'db1:5432', database: 'app' } };
  const on = (f: Partial<SourceFacts>, s: Partial<StandbyFacts> = {}) =>
    judgeSourceFacts({ ...healthy, serverVersionNum: 160002, inRecovery: true, primaryConfigured: true, ...f, standby: { ...standby, ...s } })
      .filter((x) => ['standby', 'hot_standby_feedback', 'primary_slot_name', 'slotFailover', 'max_standby_streaming_delay'].includes(x.check))
      .map((x) => [x.level, x.check, x.object]);
  assert.deepEqual(on({}), [['PASS', 'standby', 'primary']]);
  assert.deepEqual(fails({ serverVersionNum: 160002, inRecovery: true, primaryConfigured: true, standby }), []);
  // No primary: FAIL naming the key.
  const none = judgeSourceFacts({ ...healthy, serverVersionNum: 160002, inRecovery: true, standby: { ...standby, primary: null } }).find((x) => x.check === 'standby')!;
  assert.deepEqual([none.level, none.object], ['FAIL', 'primary']);
  assert.match(none.message, /primary is not set: .* which a read-only standby refuses/);
  assert.match(none.remedy!, /^set primary \(url, or host\/database\/user, as source\) to the standby's primary/);
  // Another cluster's primary, or a standby given as primary.
  assert.deepEqual(on({}, { primary: { ...standby.primary!, systemIdentifier: '9999' } }), [['FAIL', 'standby', 'primary']]);
  assert.match(judgeSourceFacts({ ...healthy, serverVersionNum: 170000, inRecovery: true, primaryConfigured: true, standby: { ...standby, primary: { ...standby.primary!, systemIdentifier: '9999' } } }).find((x) => x.check === 'standby')!.message,
    /^primary \(db1:5432\) is not the source standby's primary: its system identifier 9999 is not the standby's 7001/);
  assert.deepEqual(on({}, { primary: { ...standby.primary!, inRecovery: true } }), [['FAIL', 'standby', 'primary']]);
  // Another database of the primary: its publication and messages would never reach the slot.
  const otherDb = judgeSourceFacts({ ...healthy, serverVersionNum: 160002, inRecovery: true, primaryConfigured: true, standby: { ...standby, primary: { ...standby.primary!, database: 'postgres' } } }).filter((x) => x.check === 'standby');
  assert.deepEqual(otherDb.map((x) => x.level), ['FAIL']);
  assert.match(otherDb[0].message, /^primary connects to database postgres, the source to app: the publication made there and the heartbeat, cut-over and resnapshot messages written there would never reach the slot/);
  assert.equal(otherDb[0].remedy, "connect primary to database app (primary.url's path, or primary.database)");
  // The standby's settings that keep the primary from invalidating the slot (rows_removed).
  assert.deepEqual(on({}, { hotStandbyFeedback: false }), [['PASS', 'standby', 'primary'], ['FAIL', 'hot_standby_feedback', 'server']]);
  assert.deepEqual(on({}, { primarySlotName: '' }), [['PASS', 'standby', 'primary'], ['WARN', 'primary_slot_name', 'server']]);
  const feedback = judgeSourceFacts({ ...healthy, serverVersionNum: 160002, inRecovery: true, primaryConfigured: true, standby: { ...standby, hotStandbyFeedback: false } }).find((x) => x.check === 'hot_standby_feedback')!;
  assert.match(feedback.message, /invalidates it \(invalidation_reason rows_removed\)/);
  assert.match(feedback.remedy!, /hot_standby_feedback = on and primary_slot_name = /);
  // A role the primary refuses pg_log_standby_snapshot(): slot creations wait for the primary's own record.
  const refused = judgeSourceFacts({ ...healthy, serverVersionNum: 160002, inRecovery: true, primaryConfigured: true, standby: { ...standby, primary: { ...standby.primary!, role: 'rep', canLogSnapshot: false } } }).filter((x) => x.check === 'standby');
  assert.deepEqual(refused.map((x) => x.level), ['PASS', 'WARN']);
  assert.match(refused[1].message, /^role "rep" may not run pg_log_standby_snapshot\(\) on primary \(superusers only, by default\): creating a slot on the standby/);
  assert.equal(refused[1].remedy, 'as a superuser on the primary: GRANT EXECUTE ON FUNCTION pg_log_standby_snapshot() TO "rep";');
  // The primary's locks replayed cancel a long snapshot read after max_standby_streaming_delay.
  assert.deepEqual(on({}, { maxStandbyStreamingDelay: '30s' }), [['PASS', 'standby', 'primary'], ['WARN', 'max_standby_streaming_delay', 'server']]);
  assert.match(judgeSourceFacts({ ...healthy, serverVersionNum: 160002, inRecovery: true, primaryConfigured: true, standby: { ...standby, maxStandbyStreamingDelay: '30s' } }).find((x) => x.check === 'max_standby_streaming_delay')!.remedy!, /max_standby_streaming_delay = -1/);
  // A standby's slot cannot be a failover slot.
  assert.deepEqual(on({ serverVersionNum: 170002, slotFailover: true }), [['PASS', 'standby', 'primary'], ['FAIL', 'slotFailover', 'slotFailover']]);
  // primary set, the source a primary itself: warned, and primary unused.
  const extra = judgeSourceFacts({ ...healthy, primaryConfigured: true }).filter((x) => x.check === 'standby');
  assert.deepEqual(extra.map((x) => [x.level, x.object]), [['WARN', 'primary']]);
  assert.match(extra[0].message, /the source is not a standby \(not in recovery\): the connector writes to the source and never connects to primary/);
});

test('the WAL position SQL answers on a standby too (pg_last_wal_replay_lsn), decided by the server at each call', () => {
  assert.equal(currentLsnSql(), '(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)');
  assert.match(currentLsnSql('insert'), /ELSE pg_current_wal_insert_lsn\(\) END/);
});

test('a slot invalidated for rows_removed (a standby\'s slot) gets the standby settings in its remedy', () => {
  const lost = judgeSourceFacts({ ...healthy, slot: { active: false, activePid: null, walStatus: 'lost', plugin: 'pgoutput', invalidationReason: 'rows_removed' } }).find((f) => f.check === 'slot')!;
  assert.match(lost.message, /invalidation_reason rows_removed: the server removed catalog rows it still needed/);
  assert.match(lost.remedy!, /^take a new snapshot: .*; reading from a standby, first set on it hot_standby_feedback = on and primary_slot_name/);
});

test('idle_replication_slot_timeout (PostgreSQL 18) above 0 is warned of: a stopped connector would lose its slot; 0 and older servers are not', () => {
  const w = judgeSourceFacts({ ...healthy, serverVersionNum: 180004, idleSlotTimeout: '10min' }).filter((f) => f.check === 'idle_replication_slot_timeout');
  assert.equal(w.length, 1);
  assert.equal(w[0].level, 'WARN');
  assert.match(w[0].message, /^idle_replication_slot_timeout = 10min: a slot no connector streams from for longer .* is invalidated at the next checkpoint/);
  assert.match(w[0].remedy!, /ALTER SYSTEM SET idle_replication_slot_timeout = 0; SELECT pg_reload_conf\(\)/);
  for (const idleSlotTimeout of ['0', null, undefined]) {
    assert.deepEqual(judgeSourceFacts({ ...healthy, idleSlotTimeout }).filter((f) => f.check === 'idle_replication_slot_timeout'), [], String(idleSlotTimeout));
  }
});

test('an invalidated slot is named with its invalidation_reason (17+): the idle timeout gets its own remedy', () => {
  const lost = (invalidationReason?: string | null) => judgeSourceFacts({ ...healthy, slot: { active: false, activePid: null, walStatus: 'lost', plugin: 'pgoutput', invalidationReason } }).find((f) => f.check === 'slot')!;
  assert.match(lost(null).message, /invalidated \(wal_status = lost, max_slot_wal_keep_size exceeded\): changes were lost/);
  assert.match(lost('wal_removed').message, /max_slot_wal_keep_size exceeded/);
  const idle = lost('idle_timeout');
  assert.match(idle.message, /invalidated \(invalidation_reason idle_timeout: inactive longer than idle_replication_slot_timeout\): changes were lost/);
  assert.match(idle.remedy!, /^take a new snapshot: .*; first set idle_replication_slot_timeout = 0 for the migration/);
  assert.doesNotMatch(lost(null).remedy!, /idle_replication_slot_timeout/);
  assert.match(lost('wal_level_insufficient').message, /wal_level was set below logical/);
  assert.match(lost('some_future_reason').message, /invalidation_reason some_future_reason/);
});

test('failover slots (PostgreSQL 17+): slotFailover before 17 fails naming the key; standbys without a failover slot, or a failover slot without synchronized_standby_slots, are warned of', () => {
  const failover = (f: Partial<SourceFacts>) => judgeSourceFacts({ ...healthy, ...f }).filter((x) => x.check === 'slotFailover' || x.check === 'failover slot');
  const sixteen = failover({ serverVersionNum: 160004, slotFailover: true, physicalStandbys: ['physical slot s1'] });
  assert.deepEqual(sixteen.map((x) => [x.level, x.object, x.message]), [['FAIL', 'slotFailover', 'slotFailover is true, but PostgreSQL 16 has no failover slots (PostgreSQL 17 and newer)']]);
  assert.match(sixteen[0].remedy!, /set slotFailover to false/);
  // Before 17 there is nothing to warn of otherwise: no slot can survive a failover.
  assert.deepEqual(failover({ serverVersionNum: 160004, physicalStandbys: ['physical slot s1'] }), []);

  const seventeen = { serverVersionNum: 170002, physicalStandbys: ['physical slot s1', 'WAL sender to walreceiver at 10.0.0.2'], synchronizedStandbySlots: '' };
  const lost = failover({ ...seventeen, slotFailover: false });
  assert.deepEqual(lost.map((x) => [x.level, x.object]), [['WARN', 'slot shardbridge_slot']]);
  assert.match(lost[0].message, /physical standbys \(physical slot s1, WAL sender to walreceiver at 10\.0\.0\.2\) and slot "shardbridge_slot" is not a failover slot: after a failover .* starts over from a new snapshot/);
  assert.match(lost[0].remedy!, /slotFailover: true.*sync_replication_slots = on, hot_standby_feedback = on, primary_slot_name.*synchronized_standby_slots/);
  // Unsaid by the caller: the existing slot's own flag decides.
  assert.equal(failover({ ...seventeen, slot: { active: false, activePid: null, walStatus: 'reserved', plugin: 'pgoutput', failover: false } })[0].message, lost[0].message);
  assert.deepEqual(failover({ ...seventeen, physicalStandbys: [], slotFailover: false }), []);

  const ahead = failover({ ...seventeen, slotFailover: true });
  assert.deepEqual(ahead.map((x) => x.level), ['WARN']);
  assert.match(ahead[0].message, /synchronized_standby_slots is empty: the connector may be sent, and publish, changes no standby has received yet/);
  assert.match(ahead[0].message, /replayed \(duplicates .*\), but the transactions the standby never received are gone from the new primary while their changes stay in Kafka/);
  assert.match(ahead[0].remedy!, /ALTER SYSTEM SET synchronized_standby_slots/);
  assert.deepEqual(failover({ ...seventeen, slotFailover: true, synchronizedStandbySlots: 's1' }), []);
  assert.deepEqual(failover({ ...seventeen, slotFailover: true, physicalStandbys: [] }), []);
  assert.deepEqual(failover({ ...seventeen, slot: { active: false, activePid: null, walStatus: 'reserved', plugin: 'pgoutput', failover: true }, synchronizedStandbySlots: 's1' }), []);
  // A standby source: its own checks (standby.ts); nothing to add about its standbys.
  assert.deepEqual(failover({ ...seventeen, inRecovery: true }), []);
});

test('synchronized_standby_slots naming no physical slot of the source fails a failover slot (17+: its WAL sender waits forever); names read as PostgreSQL reads the list', () => {
  const failover = (f: Partial<SourceFacts>) => judgeSourceFacts({ ...healthy, serverVersionNum: 170002, slotFailover: true, physicalStandbys: ['physical slot s1'], physicalSlots: ['s1', 'My Slot'], ...f }).filter((x) => x.check === 'failover slot');
  const [f, ...rest] = failover({ synchronizedStandbySlots: 's1, S2, "gone"' });
  assert.deepEqual(rest, []);
  assert.deepEqual([f.level, f.object], ['FAIL', 'slot shardbridge_slot']);
  assert.match(f.message, /^synchronized_standby_slots names "s2", "gone", which are no physical slot of the source: the WAL sender of failover slot "shardbridge_slot" waits for them forever/);
  assert.match(f.remedy!, /ALTER SYSTEM SET synchronized_standby_slots = /);
  assert.deepEqual(failover({ synchronizedStandbySlots: 'S1, "My Slot"' }), []);
  // Only failover slots wait; a standby source has its own checks; not asked (physicalSlots unset): nothing said.
  assert.deepEqual(failover({ synchronizedStandbySlots: 'gone', slotFailover: false, physicalStandbys: [] }), []);
  assert.deepEqual(failover({ synchronizedStandbySlots: 'gone', inRecovery: true }), []);
  assert.deepEqual(failover({ synchronizedStandbySlots: 'gone', physicalSlots: undefined }), []);
  assert.deepEqual(standbySlotNames(' a ,"B ""c""", D,,'), ['a', 'B "c"', 'd']);
});

test('the slot is created FAILOVER only when asked, and a temporary slot (a table\'s own snapshot) never: PostgreSQL refuses failover for one', () => {
  assert.equal(slotOptions({}), "SNAPSHOT 'export'");
  assert.equal(slotOptions({ failover: true }), "SNAPSHOT 'export', FAILOVER true");
  assert.equal(slotOptions({ failover: true, temporary: true }), "SNAPSHOT 'export'");
});

test('the failover flag\'s alteration failing: the slot in use or the connection lost is retried (free the slot); a refusal that comes again stops, naming slotFailover', () => {
  const inUse = alterFailoverError(Object.assign(new Error('replication slot "s" is active for PID 12'), { code: '55006' }), 's', true);
  assert.equal(isRetriable(inUse), true);
  assert.match(inUse.remedy!, /needs the slot free/);
  assert.equal(isRetriable(alterFailoverError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), 's', true)), true);
  const synced = alterFailoverError(Object.assign(new Error('cannot alter replication slot "s"'), { code: '0A000' }), 's', false);
  assert.equal(isRetriable(synced), false);
  assert.equal(synced.context?.key, 'slotFailover');
  assert.match(synced.message, /failover flag to false \(slotFailover\) failed: cannot alter replication slot "s"/);
  assert.match(synced.remedy!, /^set slotFailover to true to keep the slot as it is; .*ALTER_REPLICATION_SLOT "s" \(FAILOVER false\)/);
  assert.equal(isRetriable(alterFailoverError(Object.assign(new Error('permission denied to use replication slots'), { code: '42501' }), 's', true)), false);
});
