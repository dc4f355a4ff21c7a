/**
 * `shardbridge check --json` through the CLI's main() in-process, against sources and
 * destinations set up to fail each finding: wal_level=replica, a table without a primary key,
 * a role without REPLICATION, a missing destination table, a column type mismatch, a foreign
 * key on the destination, a destination key wider than the source key, unreachable servers
 * (PostgreSQL, Kafka, the registry), topic prefixes that differ; and ready ones.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import kafkajs from 'kafkajs';
import pg from 'pg';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { main } from '../../shared/cli/main.ts';
import { BIN, cleanEnv } from '../helpers/cli.ts';
import { waitFor } from '../../shared/devstack/ports.ts';
import { freePort } from '../../shared/devstack/ports.ts';
import { startPostgres, type PgCluster } from '../../shared/devstack/postgres.ts';
import type { Finding } from '../../source-connector/checks.ts';
import { getTestDestination, hasCitus, startTestSource } from '../helpers/postgres.ts';
import { getTestKafka, testLogger } from '../helpers/kafka.ts';
import { getTestRegistry } from '../helpers/produce-changes.ts';

const SCHEMA = `sb_check_${process.pid}_${Date.now().toString(36)}`;
const SECRET = 'Chk-S3cret-pw';
const dir = mkdtempSync(join(tmpdir(), 'sb-check-'));
let source: PgCluster;
let replicaSource: PgCluster;
let destUrl: string;
let release: () => Promise<void> = async () => {};
const servicesRelease: (() => Promise<void>)[] = [];
const DOWN = { kafka: '127.0.0.1:9', registry: 'http://127.0.0.1:9' };
/** The real broker and registry, for the checks that must pass. */
let live = DOWN;
let citus = false;

const SOURCE_DDL = `
  CREATE SCHEMA ${SCHEMA};
  CREATE TABLE ${SCHEMA}.good (id bigint PRIMARY KEY, v text);
  CREATE TABLE ${SCHEMA}.nopk (a int, b text);
  CREATE TABLE ${SCHEMA}.missing_dest (id int PRIMARY KEY);
  CREATE TABLE ${SCHEMA}.typed (id int PRIMARY KEY, amount numeric(12,2), doubled numeric GENERATED ALWAYS AS (amount * 2) STORED);
  CREATE TABLE ${SCHEMA}.parent (id int PRIMARY KEY);
  CREATE TABLE ${SCHEMA}.child (id int PRIMARY KEY, parent_id int);
  CREATE TABLE ${SCHEMA}.regional (id bigint PRIMARY KEY, region text NOT NULL, v text);
  CREATE TABLE ${SCHEMA}.docs (id int PRIMARY KEY, body oid, title text COLLATE "C", code text COLLATE "C" UNIQUE);
  INSERT INTO ${SCHEMA}.docs VALUES (1, lo_from_bytea(0, 'a large object'));
  CREATE ROLE app_user LOGIN PASSWORD '${SECRET}';
  GRANT USAGE ON SCHEMA ${SCHEMA} TO app_user;
  GRANT SELECT ON ALL TABLES IN SCHEMA ${SCHEMA} TO app_user;`;

const DEST_DDL = `
  CREATE SCHEMA ${SCHEMA};
  CREATE UNLOGGED TABLE ${SCHEMA}.good (id bigint PRIMARY KEY, v text);
  CREATE TABLE ${SCHEMA}.nopk (a int, b text);
  CREATE TABLE ${SCHEMA}.typed (id int PRIMARY KEY, amount text, doubled numeric);
  CREATE TABLE ${SCHEMA}.parent (id int PRIMARY KEY);
  CREATE TABLE ${SCHEMA}.child (id int PRIMARY KEY, parent_id int CONSTRAINT child_parent_fk REFERENCES ${SCHEMA}.parent (id));
  ALTER TABLE ${SCHEMA}.child ENABLE ROW LEVEL SECURITY;
  CREATE TABLE ${SCHEMA}.regional (id bigint, region text NOT NULL, v text, PRIMARY KEY (id, region));
  CREATE COLLATION ${SCHEMA}.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
  CREATE TABLE ${SCHEMA}.docs (id int PRIMARY KEY, body oid, title text, code text COLLATE ${SCHEMA}.ci UNIQUE);
  CREATE FUNCTION ${SCHEMA}.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
  CREATE TRIGGER parent_touch BEFORE INSERT OR UPDATE ON ${SCHEMA}.parent FOR EACH ROW EXECUTE FUNCTION ${SCHEMA}.touch();
  CREATE TRIGGER parent_audit AFTER INSERT ON ${SCHEMA}.parent FOR EACH ROW EXECUTE FUNCTION ${SCHEMA}.touch();
  ALTER TABLE ${SCHEMA}.parent ENABLE ALWAYS TRIGGER parent_audit;
  CREATE ROLE ${SCHEMA}_sink LOGIN;`;

before(async () => {
  const [s, r, d, k, reg] = await Promise.all([startTestSource(), startTestSource({ wal_level: 'replica' }), getTestDestination(), getTestKafka(), getTestRegistry()]);
  live = { kafka: k.bootstrap, registry: reg.url };
  servicesRelease.push(k.release, reg.release);
  source = s;
  replicaSource = r;
  destUrl = d.url;
  release = d.release;
  const sc = new pg.Client({ connectionString: source.url() });
  const dc = new pg.Client({ connectionString: destUrl });
  await Promise.all([sc.connect(), dc.connect()]);
  try {
    await sc.query(SOURCE_DDL);
    await dc.query(DEST_DDL);
    citus = (await hasCitus(dc));
    // On Citus the wider key is legitimate only when its extra column distributes the table.
    if (citus) await dc.query(`SELECT create_distributed_table('${SCHEMA}.regional', 'region')`);
  } finally {
    await Promise.all([sc.end(), dc.end()]);
  }
});

after(async () => {
  const dc = new pg.Client({ connectionString: destUrl });
  await dc.connect();
  await dc.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE; DROP ROLE IF EXISTS ${SCHEMA}_sink`).finally(() => dc.end());
  await release();
  for (const r of servicesRelease) await r().catch(() => {});
  await Promise.all([source?.destroy(), replicaSource?.destroy()]);
  rmSync(dir, { recursive: true, force: true });
});

function sourceConfig(name: string, url: string, include: string[] = [], extra: string[] = [], services = DOWN): string {
  const p = join(dir, `${name}.source.yaml`);
  writeFileSync(
    p,
    [
      `source: { url: "${url}" }`,
      `tables: { schemas: [${SCHEMA}], include: [${include.map((t) => `${SCHEMA}.${t}`).join(', ')}] }`,
      `kafka: { brokers: ["${services.kafka}"] }`,
      `schemaRegistry: { url: "${services.registry}" }`,
      ...extra,
    ].join('\n'),
  );
  return p;
}

function sinkConfig(name: string, url: string, extra: string[] = [], services = DOWN): string {
  const p = join(dir, `${name}.sink.yaml`);
  writeFileSync(p, [`destination: { url: "${url}" }`, `kafka: { brokers: ["${services.kafka}"] }`, `schemaRegistry: { url: "${services.registry}" }`, ...extra].join('\n'));
  return p;
}

interface CheckOutput {
  ok: boolean;
  summary: { pass: number; warn: number; fail: number };
  source: { target: string; findings: Finding[] };
  services: { findings: Finding[] };
  destination: { target: string; findings: Finding[] } | null;
}

async function check(args: string[]): Promise<{ code: number; out: CheckOutput; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(['node', 'shardbridge', 'check', '--json', '--sample-seconds', '0', ...args], {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
    env: {},
  });
  assert.ok(stdout, `no output; stderr: ${stderr}`);
  return { code, out: JSON.parse(stdout) as CheckOutput, stdout, stderr };
}

const find = (fs: Finding[], check: string, object?: string) => fs.filter((f) => f.check === check && (object === undefined || f.object === object));

test('every failing finding on one source and destination, exit 1', async () => {
  const src = sourceConfig('all', source.url('postgres', 'app_user').replace('app_user@', `app_user:${SECRET}@`));
  const r = await check(['--source-config', src, '--sink-config', sinkConfig('all', destUrl, ['topicPrefix: other'])]);
  assert.equal(r.code, 1);
  assert.equal(r.out.ok, false);
  const s = r.out.source.findings;
  const d = r.out.destination!.findings;

  assert.equal(find(s, 'reachable')[0].level, 'PASS');
  assert.equal(find(s, 'wal_level')[0].level, 'PASS');
  const priv = find(s, 'replication privilege')[0];
  assert.deepEqual([priv.level, priv.object], ['FAIL', 'role app_user']);
  assert.match(priv.remedy!, /ALTER ROLE "app_user" WITH REPLICATION/);
  assert.deepEqual(find(s, 'primary key').map((f) => [f.level, f.object]), [['FAIL', `${SCHEMA}.nopk`]]);
  // Not an owner of the tables, no CREATE on the database: the connector could not make its publication.
  const pubs = find(s, 'publication');
  assert.deepEqual(pubs.map((f) => f.level), ['FAIL', 'FAIL']);
  assert.match(pubs[0].message, /role "app_user" cannot create publication shardbridge_pub: it lacks CREATE on database postgres/);
  assert.match(pubs[1].message, /FOR TABLE needs ownership of each table; role "app_user" does not own /);
  assert.match(pubs[1].remedy!, new RegExp(`CREATE PUBLICATION "shardbridge_pub" FOR TABLE ${SCHEMA}\\.child, .* ALTER PUBLICATION "shardbridge_pub" OWNER TO "app_user";`));
  assert.deepEqual(find(s, 'table privilege'), [], 'app_user may read every table');
  assert.equal(find(s, 'max_slot_wal_keep_size')[0].level, 'WARN');
  assert.match(find(s, 'max_slot_wal_keep_size')[0].remedy!, /80GB/);
  assert.equal(find(s, 'disk space')[0].level, 'WARN');
  assert.match(find(s, 'database size')[0].message, /MB|GB/);

  assert.deepEqual(find(d, 'table exists').map((f) => [f.level, f.object]), [['FAIL', `${SCHEMA}.missing_dest`]]);
  const typed = find(d, 'column type', `${SCHEMA}.typed.amount`)[0];
  assert.equal(typed.level, 'FAIL');
  assert.match(typed.message, /source type numeric\(12,2\), destination text/);
  const generated = find(d, 'column', `${SCHEMA}.typed.doubled`)[0];
  assert.equal(generated.level, 'WARN');
  assert.match(generated.message, /is GENERATED, which logical replication does not send, but destination column doubled is a plain one/);
  const fk = find(d, 'foreign key')[0];
  assert.deepEqual([fk.level, fk.object], ['WARN', `${SCHEMA}.child.child_parent_fk`]);
  assert.match(fk.remedy!, /cut-over/);
  const ri = find(d, 'replica identity', `${SCHEMA}.regional`)[0];
  assert.equal(ri.level, 'WARN');
  assert.match(ri.remedy!, new RegExp(`ALTER TABLE "${SCHEMA}"."regional" REPLICA IDENTITY FULL`));
  assert.match(ri.message, /region/);
  const regionalKey = find(d, 'primary key', `${SCHEMA}.regional`)[0];
  assert.equal(regionalKey.level, citus ? 'PASS' : 'FAIL');
  assert.deepEqual(find(d, 'columns', `${SCHEMA}.good`).map((f) => f.level), ['PASS']);
  assert.deepEqual(find(d, 'primary key', `${SCHEMA}.good`).map((f) => f.level), ['PASS']);
  const unlogged = find(d, 'unlogged');
  assert.deepEqual(unlogged.map((f) => [f.level, f.object]), [['WARN', `${SCHEMA}.good`]], 'an UNLOGGED destination table is named');
  assert.match(unlogged[0].message, /a crash of the destination empties it, while the sink's stored offsets .* stay/);
  // Large objects are not carried: the oid column is named with the objects counted (a warning: the source may start).
  const lo = find(s, 'large objects');
  assert.deepEqual(lo.map((f) => [f.level, f.object]), [['WARN', `${SCHEMA}.docs.body`]]);
  assert.match(lo[0].message, /is oid: if it refers to large objects \(the database has 1 large object\), only the numbers are migrated/);
  assert.match(lo[0].remedy!, /pg_dump --data-only --blobs --exclude-schema='\*'/);
  // Another collation: a warning; a nondeterministic one on a unique column fails (rows the source keeps apart would merge).
  const collations = find(d, 'column collation');
  assert.deepEqual(collations.map((f) => [f.level, f.object]), [['WARN', `${SCHEMA}.docs.title`], ['FAIL', `${SCHEMA}.docs.code`]]);
  assert.match(collations[1].message, /^source collation C, destination ci, which is nondeterministic, on a key column/);
  assert.match(collations[1].remedy!, new RegExp(`ALTER TABLE "${SCHEMA}"."docs" ALTER COLUMN "code" TYPE text COLLATE "C";`));
  // The destination's triggers fire for the sink's rows (native logical replication would not fire them).
  const trig = find(d, 'triggers');
  assert.deepEqual(trig.map((f) => [f.level, f.object]), [['WARN', `${SCHEMA}.parent`]]);
  assert.match(trig[0].message, /^triggers parent_audit, parent_touch on .*\.parent fire for every row the sink applies/);
  // On Citus each ALTER comes after the setting without which Citus refuses it.
  const unsafe = citus ? 'SET citus\\.enable_unsafe_triggers = on; ' : '';
  assert.match(trig[0].remedy!, new RegExp(`DISABLE TRIGGER USER; and at cut-over ${unsafe}ALTER TABLE "${SCHEMA}"."parent" ENABLE TRIGGER USER;`));
  assert.ok(!r.stdout.includes(SECRET) && !r.stderr.includes(SECRET));

  // Kafka and the registry down (the same for both connectors: named once each); the prefixes differ.
  const k = r.out.services.findings;
  assert.deepEqual(k.map((f) => [f.level, f.check, f.object]), [
    ['FAIL', 'reachable', 'kafka 127.0.0.1:9'], ['FAIL', 'reachable', 'registry http://127.0.0.1:9'], ['FAIL', 'topic prefix', 'source and sink'],
  ]);
  assert.match(k[0].message, /cannot reach Kafka \(source configuration\)/);
  assert.match(k[0].remedy!, /advertised\.listeners/);
  assert.match(k[1].message, /cannot use the schema registry \(source configuration\): .*cannot reach the registry/);
  assert.match(k[2].message, /the source writes topics under "shardbridge\." but the sink reads "other\.": it would apply nothing/);
});

test('sessionReplicationRole: replica: a sink role that may not set it fails (as row-level security that applies to it); a superuser passes, the foreign key with it, and only the ENABLE ALWAYS trigger is named', async () => {
  const src = sourceConfig('replica', source.url(), ['parent', 'child']);
  const denied = await check(['--source-config', src, '--sink-config', sinkConfig('replica-denied', destUrl.replace(/\/\/[^@/]*@/, `//${SCHEMA}_sink@`), ['sessionReplicationRole: replica'])]);
  // Row-level security on the destination applies to this role (not its owner, no BYPASSRLS): its deletes would change nothing.
  const rls = find(denied.out.destination!.findings, 'row-level security');
  assert.deepEqual(rls.map((f) => [f.level, f.object]), [['FAIL', `${SCHEMA}.child`]]);
  assert.match(rls[0].message, new RegExp(`applies to the sink's role "${SCHEMA}_sink": updates and deletes of rows its policies hide change nothing, without an error`));
  assert.match(rls[0].remedy!, new RegExp(`ALTER ROLE "${SCHEMA}_sink" BYPASSRLS;`));
  const role = find(denied.out.destination!.findings, 'replication role')[0];
  assert.equal(role.level, 'FAIL');
  assert.match(role.message, citus ? /refused on Citus/ : new RegExp(`role "${SCHEMA}_sink" may not set session_replication_role`));
  const ok = await check(['--source-config', src, '--sink-config', sinkConfig('replica-ok', destUrl, ['sessionReplicationRole: replica'])]);
  const d = ok.out.destination!.findings;
  if (citus) {
    assert.equal(find(d, 'replication role')[0].level, 'FAIL');
    return;
  }
  assert.equal(find(d, 'replication role')[0].level, 'PASS');
  assert.deepEqual(find(d, 'foreign key').map((f) => f.level), ['PASS']);
  const trig = find(d, 'triggers');
  assert.deepEqual(trig.map((f) => f.level), ['WARN']);
  assert.match(trig[0].message, /^trigger parent_audit on .* also under sessionReplicationRole: replica/);
});

test('a ready source and destination for the selected table: exit 0, WAL rate sampled', async () => {
  let stdout = '';
  const code = await main(
    ['node', 'shardbridge', 'check', '--json', '--sample-seconds', '1', '--source-config', sourceConfig('good', source.url(), ['good'], [], live), '--sink-config', sinkConfig('good', destUrl, [], live)],
    { stdout: (t) => (stdout += t), stderr: () => {}, env: {} },
  );
  const out = JSON.parse(stdout) as CheckOutput;
  assert.equal(code, 0, stdout);
  assert.equal(out.summary.fail, 0);
  const disk = find(out.source.findings, 'disk space')[0];
  assert.equal(disk.level, 'PASS');
  assert.match(disk.message, /sampled over 1 s\): a stall of one hour retains about \d+\.\d GB/);
  assert.equal(find(out.source.findings, 'replication privilege')[0].level, 'PASS');
  assert.deepEqual(find(out.source.findings, 'publication').map((f) => [f.level, f.message]), [['PASS', 'the connector will create it']]);
  assert.deepEqual(out.services.findings.map((f) => [f.level, f.check]), [['PASS', 'reachable'], ['PASS', 'topic replicas'], ['PASS', 'reachable'], ['PASS', 'topic prefix']]);
  assert.match(out.services.findings[0].message, /1 broker\(s\)/);
});

test('Ctrl-C during the WAL sample: the check says it stopped before its report, exit 130, nothing printed as a report', async () => {
  const file = sourceConfig('interrupted', source.url(), ['good'], [], live);
  const child = spawn(process.execPath, [BIN, 'check', '--sample-seconds', '60', '--source-config', file], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const sc = new pg.Client({ connectionString: source.url() });
  await sc.connect();
  try {
    // The sample's first reading is the check session's last statement while it waits.
    await waitFor('the check sampling the WAL', async () =>
      (await sc.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'shardbridge-check' AND query LIKE 'SELECT %::text AS lsn, clock_timestamp() AS at'`)).rowCount === 1,
    { timeoutMs: 30_000, intervalMs: 50 });
  } finally {
    await sc.end();
  }
  child.kill('SIGINT');
  assert.equal(await exited, 130, stderr);
  assert.match(stderr, /shardbridge check: stopped by SIGINT before its report: nothing was changed/);
  assert.equal(stdout, '');
});

test('a topic under the prefix whose min.insync.replicas exceeds its replicas fails the check, naming it and the kafka-configs command', async () => {
  const prefix = `sbchk${process.pid}${Date.now().toString(36)}`;
  const topic = `${prefix}.${SCHEMA}.good`;
  const admin = new kafkajs.Kafka({ brokers: [live.kafka], logLevel: kafkajs.logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 1, replicationFactor: 1, configEntries: [{ name: 'min.insync.replicas', value: '2' }] }] });
  } finally {
    await admin.disconnect();
  }
  const r = await check(['--source-config', sourceConfig('strict', source.url(), ['good'], [`topicPrefix: ${prefix}`], live)]);
  const replicas = r.out.services.findings.filter((f) => f.check === 'topic replicas');
  assert.deepEqual(replicas.map((f) => f.level), ['FAIL'], JSON.stringify(replicas));
  assert.match(replicas[0].message, new RegExp(`Kafka refuses every send to ${topic.replace(/\./g, '\\.')} \\(1 replica, min\\.insync\\.replicas 2\\)`));
  assert.match(replicas[0].remedy!, /kafka-configs\.sh .*--add-config min\.insync\.replicas=1/);
  assert.equal(r.code, 1);
});

test('a registry URL with credentials works: they are sent as basic auth, never printed', async () => {
  const withCredentials = { ...live, registry: live.registry.replace('://', `://ruser:${encodeURIComponent(SECRET)}@`) };
  const r = await check(['--source-config', sourceConfig('registry-creds', source.url(), ['good'], [], withCredentials)]);
  const registry = r.out.services.findings.filter((f) => f.object.startsWith('registry '));
  assert.deepEqual(registry.map((f) => [f.level, f.object]), [['PASS', `registry ${live.registry}`]], JSON.stringify(registry));
  assert.ok(!r.stdout.includes(SECRET) && !r.stderr.includes(SECRET));
});

test('schemaRegistry.passwordFile: its content is the basic-auth password sent (a registry that demands it passes, a wrong one is refused), never printed', async (t) => {
  // The test registry asks for no credentials: a front that demands them, forwarding the rest.
  const want = `Basic ${Buffer.from(`ruser:${SECRET}`).toString('base64')}`;
  const front = createServer((req, res) => {
    if (req.headers.authorization !== want) {
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error_code: 401, message: 'Unauthorized' }));
      return;
    }
    fetch(`${live.registry}${req.url}`, { method: req.method }).then(
      async (r) => res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json' }).end(Buffer.from(await r.arrayBuffer())),
      () => res.writeHead(502).end(),
    );
  });
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
  t.after(() => front.close());
  const url = `http://127.0.0.1:${(front.address() as AddressInfo).port}`;
  const passwordFile = join(dir, 'registry-password');
  const run = async (content: string) => {
    writeFileSync(passwordFile, content);
    const p = join(dir, 'registry-file.source.yaml');
    writeFileSync(p, [`source: { url: "${source.url()}" }`, `tables: { schemas: [${SCHEMA}], include: [${SCHEMA}.good] }`, `kafka: { brokers: ["${live.kafka}"] }`, `schemaRegistry: { url: "${url}", username: ruser, passwordFile: "${passwordFile}" }`].join('\n'));
    const r = await check(['--source-config', p]);
    assert.ok(!r.stdout.includes(SECRET) && !r.stderr.includes(SECRET));
    return r.out.services.findings.filter((f) => f.object.startsWith('registry ')).map((f) => [f.level, f.object]);
  };
  assert.deepEqual(await run(`${SECRET}\n`), [['PASS', `registry ${url}`]]);
  assert.deepEqual(await run('wrong\n'), [['FAIL', `registry ${url}`]]);
});

test("a replication role given a publication made by the tables' owner passes; one that cannot read a table fails naming it", async () => {
  const sc = new pg.Client({ connectionString: source.url() });
  await sc.connect();
  try {
    await sc.query(`CREATE ROLE handed LOGIN REPLICATION PASSWORD '${SECRET}'; GRANT USAGE ON SCHEMA ${SCHEMA} TO handed; GRANT SELECT ON ${SCHEMA}.good TO handed;
      CREATE PUBLICATION handed_pub FOR TABLE ${SCHEMA}.good WITH (publish_via_partition_root = true); ALTER PUBLICATION handed_pub OWNER TO handed`);
  } finally {
    await sc.end();
  }
  const url = source.url('postgres', 'handed').replace('handed@', `handed:${SECRET}@`);
  const ready = await check(['--source-config', sourceConfig('handed', url, ['good'], ['publicationName: handed_pub'], live)]);
  assert.deepEqual(find(ready.out.source.findings, 'publication').map((f) => [f.level, f.message]), [['PASS', 'lists every selected table']]);
  assert.deepEqual(ready.out.source.findings.filter((f) => f.level === 'FAIL'), []);
  // Another table: not SELECTable, and not in the publication, which the role cannot add it to.
  const more = await check(['--source-config', sourceConfig('handed2', url, ['good', 'typed'], ['publicationName: handed_pub'])]);
  assert.deepEqual(find(more.out.source.findings, 'table privilege').map((f) => [f.level, f.object]), [['FAIL', `${SCHEMA}.typed`]]);
  const add = find(more.out.source.findings, 'publication')[0];
  assert.equal(add.level, 'FAIL');
  assert.match(add.message, new RegExp(`adding tables to publication handed_pub needs their ownership; role "handed" does not own ${SCHEMA}\\.typed`));
  assert.match(add.remedy!, new RegExp(`ALTER PUBLICATION "handed_pub" ADD TABLE ${SCHEMA}\\.typed;`));
});

test('wal_level=replica fails with the settings to add', async () => {
  const r = await check(['--source-config', sourceConfig('replica', replicaSource.url(), ['good'])]);
  assert.equal(r.code, 1);
  const f = find(r.out.source.findings, 'wal_level')[0];
  assert.equal(f.level, 'FAIL');
  assert.match(f.remedy!, /restart[\s\S]*wal_level = logical[\s\S]*rds\.logical_replication = 1/);
  assert.deepEqual(r.out.destination!.findings.map((f) => [f.level, f.message]), [['WARN', 'destination not checked: give --sink-config (or SHARDBRIDGE_SINK_* variables)']]);
});

test('a standby of the source fails the check (in recovery), naming the primary as the remedy; the WAL sample does not break on it', async () => {
  const standby = await startPostgres({ name: 'standby', standbyOf: source.url(), logger: testLogger() });
  try {
    let stdout = '';
    let stderr = '';
    const code = await main(['node', 'shardbridge', 'check', '--json', '--sample-seconds', '1', '--source-config', sourceConfig('standby', standby.url(), ['good'])], { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), env: {} });
    assert.equal(code, 1, stderr);
    const out = JSON.parse(stdout) as CheckOutput;
    const f = find(out.source.findings, 'standby');
    // SHARDBRIDGE_PG_VERSION may run the clusters on 16+, which decodes on a standby but needs primary for the connector's writes.
    const sc = new pg.Client({ connectionString: standby.url() });
    await sc.connect();
    const major = Math.floor(Number((await sc.query('SHOW server_version_num')).rows[0].server_version_num) / 10000);
    await sc.end();
    const why = major < 16 ? `: PostgreSQL ${major} cannot decode logical replication on a standby` : ' and primary is not set: the connector creates and alters its publication and writes its heartbeat and cut-over messages into the WAL, which a read-only standby refuses';
    assert.deepEqual(f.map((x) => [x.level, x.message]), [['FAIL', `the source server is a standby (in recovery)${why}`]]);
    assert.match(f[0].remedy!, /point source at the primary/);
    // Its own physical slot goes with it: left, it would hold the source's WAL and count as a standby in the failover checks.
    await standby.destroy();
    const pc = new pg.Client({ connectionString: source.url() });
    await pc.connect();
    const { rows } = await pc.query(`SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'physical'`);
    await pc.end();
    assert.deepEqual(rows, []);
  } finally {
    await standby.destroy();
  }
});

test('a broken sink config from SHARDBRIDGE_SINK_* variables alone is reported (exit 2, naming the variable), not taken for "no sink config"', async () => {
  let stdout = '';
  let stderr = '';
  const env = {
    SHARDBRIDGE_SINK_DESTINATION__URL: `postgres://u:${SECRET}@127.0.0.1:9/app`,
    SHARDBRIDGE_SINK_KAFKA__BROKERS: DOWN.kafka,
    SHARDBRIDGE_SINK_SCHEMAREGISTY__URL: DOWN.registry,
  };
  const code = await main(['node', 'shardbridge', 'check', '--sample-seconds', '0', '--source-config', sourceConfig('env-sink', source.url(), ['good'])], {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
    env,
  });
  assert.equal(code, 2, stdout + stderr);
  assert.match(stderr, /config: SCHEMAREGISTY \(from SHARDBRIDGE_SINK_SCHEMAREGISTY__URL\): unknown key \(did you mean "schemaRegistry"\?\)/);
  assert.doesNotMatch(stdout, /ready/);
  assert.ok(!(stdout + stderr).includes(SECRET));
});

test('unreachable servers fail naming host:port, never the password; the human table says why', async () => {
  const port = await freePort();
  const url = `postgres://someone:${SECRET}@127.0.0.1:${port}/app`;
  const r = await check(['--source-config', sourceConfig('down', url), '--sink-config', sinkConfig('down', url)]);
  assert.equal(r.code, 1);
  for (const side of [r.out.source, r.out.destination!]) {
    assert.equal(side.target, `127.0.0.1:${port}`);
    const f = find(side.findings, 'reachable')[0];
    assert.equal(f.level, 'FAIL');
    assert.match(f.message, new RegExp(`cannot connect to 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));
  }
  assert.ok(!r.stdout.includes(SECRET) && !r.stderr.includes(SECRET));

  let text = '';
  const code = await main(['node', 'shardbridge', 'check', '--sample-seconds', '0', '--source-config', sourceConfig('down2', url)], { stdout: (t) => (text += t), stderr: (t) => (text += t), env: {} });
  assert.equal(code, 1);
  assert.match(text, new RegExp(`^Source 127\\.0\\.0\\.1:${port}\\nFAIL  reachable`));
  assert.match(text, /remedy: nothing accepts connections at that address: check the port in source\.url \(or source\.port\), that the server runs/);
  assert.match(text, /NOT ready/);
  assert.match(text, /destination not checked/);
  assert.ok(!text.includes(SECRET));
});
