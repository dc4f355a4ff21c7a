/**
 * Settings an application's role or database carries (ALTER ROLE … SET) that reach our sessions
 * too: statement_timeout, lock_timeout, idle_in_transaction_session_timeout, an empty
 * search_path, default_transaction_isolation = serializable. The source role and the role the
 * commands use on the destination carry them all; the snapshot, `schema copy`, `cutover`
 * (sequences, verify, deferred foreign keys) and `check` must still do their work.
 * The sink runs as the destination's owner: its apply has its own rules for these.
 * Both clusters run the newest PostgreSQL major we fetch (18), whose roles may also carry
 * transaction_timeout (17+), which cannot be reset in the startup options as the others are.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { runCli } from '../helpers/cli.ts';
import { waitFor } from '../../shared/devstack/ports.ts';
import { createKafka, type Admin } from '../../shared/kafka/client.ts';
import type { CutoverReport } from '../../shared/migration/cutover.ts';
import { sinkConfigSchema, type SinkConfig } from '../../sink-connector/config.ts';
import { startSinkConnector, type SinkConnector } from '../../sink-connector/connector.ts';
import { sourceConfigSchema, type SourceConfig } from '../../source-connector/config.ts';
import { startSourceConnector, type SourceConnector } from '../../source-connector/run.ts';
import { getTestKafka, testLogger } from '../helpers/kafka.ts';
import { getTestDestination, hasCitus, startTestSource } from '../helpers/postgres.ts';
import { getTestRegistry } from '../helpers/produce-changes.ts';
import { tableText, waitApplied } from '../helpers/sink.ts';
import { dropSlot, stopped } from '../helpers/source.ts';

const ID = `${process.pid}_${Date.now().toString(36)}`;
const SCHEMA = `sb_set_${ID}`;
const ROLE = `sb_set_${ID}`;
const PREFIX = `sbset${Date.now().toString(36)}`;
const GROUP = `g-set-${ID}`;
const ROWS = 60_000;
/** Short enough that a COPY of the table, a wait for a lock or an idle moment in a transaction outlast it. */
const TIMEOUT = '5ms';
/** The newest major: its settings include every older one's. */
const MAJOR = 18;
const APP_SETTINGS = [
  `transaction_timeout = '${TIMEOUT}'`,
  `statement_timeout = '${TIMEOUT}'`,
  `lock_timeout = '${TIMEOUT}'`,
  `idle_in_transaction_session_timeout = '${TIMEOUT}'`,
  `default_transaction_isolation = 'serializable'`,
];
const dir = mkdtempSync(join(tmpdir(), 'sb-settings-'));
const log = testLogger();
const releases: (() => Promise<void>)[] = [];
let src: pg.Client;
let dst: pg.Client;
let admin: Admin;
let srcUrlAs: (user: string) => string;
let sourceConfig: SourceConfig;
let sinkConfig: SinkConfig;
let files: string[];
let source: Promise<SourceConnector> | null = null;
let sink: SinkConnector | null = null;

before(async () => {
  const [k, r, d, s] = await Promise.all([getTestKafka(), getTestRegistry(), getTestDestination({ major: MAJOR }), startTestSource(undefined, { major: MAJOR })]);
  releases.push(k.release, r.release, d.release, () => s.destroy());
  srcUrlAs = (user) => s.url('postgres', user);
  src = new pg.Client({ connectionString: s.url() });
  dst = new pg.Client({ connectionString: d.url });
  await Promise.all([src.connect(), dst.connect()]);
  // The application's role settings, on the role ShardBridge uses on each side.
  // transaction_timeout only where the server knows it (SHARDBRIDGE_TEST_DESTINATION may be older).
  const settingsOn = async (c: pg.Client) => (Number((await c.query(`SHOW server_version_num`)).rows[0].server_version_num) >= 170000 ? APP_SETTINGS : APP_SETTINGS.slice(1));
  const [srcSettings, dstSettings] = await Promise.all([settingsOn(src), settingsOn(dst)]);
  assert.ok(srcSettings.includes(APP_SETTINGS[0]), 'the source runs PostgreSQL 17 or newer');
  const role = (settings: string[], path: string) => `CREATE ROLE ${ROLE} LOGIN SUPERUSER REPLICATION; ${[...settings, `search_path = ${path}`].map((x) => `ALTER ROLE ${ROLE} SET ${x};`).join(' ')}`;
  // The application's own schema on the source's path (its types then print unqualified), none on the destination's.
  // On Citus the destination role's settings stay on the coordinator: propagated, they would also reach the
  // sessions Citus opens on the workers, which ShardBridge's session options do not (docs/source-connector.md).
  const citus = (await hasCitus(dst));
  await Promise.all([src.query(role(srcSettings, SCHEMA)), dst.query(`${citus ? 'SET citus.enable_alter_role_set_propagation = off; ' : ''}${role(dstSettings, "''")}`)]);
  await src.query(`
    CREATE SCHEMA ${SCHEMA};
    CREATE TYPE ${SCHEMA}.mood AS ENUM ('calm', 'busy');
    CREATE TABLE ${SCHEMA}.big (id bigserial PRIMARY KEY, mood ${SCHEMA}.mood NOT NULL DEFAULT 'calm', pad text NOT NULL);
    CREATE TABLE ${SCHEMA}.child (id int PRIMARY KEY, big_id bigint NOT NULL REFERENCES ${SCHEMA}.big (id), mood ${SCHEMA}.mood NOT NULL);
    INSERT INTO ${SCHEMA}.big (mood, pad) SELECT CASE WHEN g % 3 = 0 THEN 'busy'::${SCHEMA}.mood ELSE 'calm' END, repeat('x', 40) || g FROM generate_series(1, ${ROWS}) g;
    INSERT INTO ${SCHEMA}.child SELECT g, g, 'busy' FROM generate_series(1, 100) g;
    ANALYZE ${SCHEMA}.big;`);
  admin = createKafka({ brokers: [k.bootstrap] }, log).admin();
  const common = { name: 'set', topicPrefix: PREFIX, kafka: { brokers: [k.bootstrap] }, schemaRegistry: { url: r.url }, metricsPort: 0, logLevel: 'warn' as const };
  sourceConfig = sourceConfigSchema.parse({
    ...common,
    source: { url: srcUrlAs(ROLE) },
    tables: { schemas: [SCHEMA] },
    slotName: `sb_set_${process.pid}`,
    publicationName: `sb_set_${process.pid}`,
    snapshot: { parallelReaders: 2 },
  });
  sinkConfig = sinkConfigSchema.parse({ ...common, groupId: GROUP, destination: { url: d.url }, stallRetryMs: 300 });
  const asRole = new URL(d.url);
  asRole.username = ROLE;
  const sourceFile = join(dir, 'source.json');
  const sinkFile = join(dir, 'sink.json');
  writeFileSync(sourceFile, JSON.stringify(sourceConfig));
  // The commands reach the destination as the role with the application's settings; the sink as the owner.
  writeFileSync(sinkFile, JSON.stringify({ ...sinkConfig, destination: { url: asRole.toString() } }));
  files = ['--source-config', sourceFile, '--sink-config', sinkFile];
});

after(async () => {
  await sink?.stop().catch(() => {});
  await source?.then((s) => s.stop()).catch(() => {});
  await dropSlot(src, sourceConfig.slotName).catch(() => {});
  await dst?.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE; DELETE FROM shardbridge.deferred_foreign_keys WHERE table_name LIKE '"${SCHEMA}".%'`).catch(() => {});
  // To the session's user by name: `TO CURRENT_USER` crashes a Citus 13.2 coordinator (docs/sink-connector.md, "Checked on a real Citus cluster").
  const me = (await dst?.query('SELECT current_user AS u').catch(() => undefined))?.rows[0]?.u as string | undefined;
  if (me) await dst!.query(`REASSIGN OWNED BY ${ROLE} TO ${pg.escapeIdentifier(me)}; DROP OWNED BY ${ROLE}; DROP ROLE ${ROLE}`).catch(() => {});
  const topics = (await admin?.listTopics().catch(() => [] as string[]))?.filter((t) => t.startsWith(`${PREFIX}.`)) ?? [];
  await admin?.deleteTopics(topics).catch(() => {});
  await admin?.disconnect().catch(() => {});
  await Promise.all([src?.end().catch(() => {}), dst?.end().catch(() => {})]);
  for (const r of releases.reverse()) await r().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

const cli = (args: string[]) => runCli([...args, ...files]);

/** The COPY the snapshot runs, as the role in a session of its own: the role's statement_timeout cuts it. */
async function copyAsRole(): Promise<unknown> {
  const c = new pg.Client({ connectionString: srcUrlAs(ROLE) });
  c.on('error', () => {});
  await c.connect();
  try {
    const stream = c.query(copyStreams.to(`COPY (SELECT id, mood, pad FROM ${SCHEMA}.big) TO STDOUT`));
    for await (const _ of stream) void _;
    return null;
  } catch (err) {
    return err;
  } finally {
    await c.end().catch(() => {});
  }
}

test("the source and destination roles' transaction_timeout, statement_timeout, lock_timeout, idle_in_transaction_session_timeout, empty search_path and serializable default: schema copy, the snapshot, cutover and check do their work", async (t) => {
  // The window: a COPY of the table as the role outlasts its statement_timeout.
  const cut = (await copyAsRole()) as { code?: string } | null;
  assert.ok(['57014', '25P04'].includes(cut?.code ?? ''), `a COPY as ${ROLE} was not cut by its statement_timeout or transaction_timeout: ${String(cut?.code)}`);

  const copy = await cli(['schema', 'copy', '--json']);
  assert.equal(copy.code, 0, copy.stderr + copy.stdout);

  // A lock on the table held past the role's lock_timeout while the connector starts: its sessions wait for it.
  const locker = new pg.Client({ connectionString: srcUrlAs('postgres') });
  locker.on('error', () => {});
  t.after(() => locker.end().catch(() => {}));
  await locker.connect();
  await locker.query(`BEGIN; LOCK TABLE ${SCHEMA}.big IN ACCESS EXCLUSIVE MODE`);
  source = startSourceConnector(sourceConfig, log);
  let failure: unknown;
  void source.then((s) => s.done.catch((err: unknown) => (failure = err)), (err: unknown) => (failure = err));
  await waitFor(`a session of ${ROLE} waiting for the lock longer than its lock_timeout`, async () => {
    if (failure !== undefined) throw failure;
    const { rows } = await src.query(
      `SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE a.usename = $1 AND NOT l.granted AND l.relation = $2::regclass AND now() - l.waitstart > interval '100 ms'`,
      [ROLE, `${SCHEMA}.big`],
    );
    return rows.length > 0;
  }, { timeoutMs: 30_000, intervalMs: 50 });
  await locker.query('COMMIT');
  const connector = await source;
  await waitFor('the source connector streaming', () => {
    if (failure !== undefined) throw failure;
    return connector.state().phase === 'streaming';
  }, { timeoutMs: 60_000, intervalMs: 50 });
  sink = await startSinkConnector(sinkConfig, log, { topicRefreshMs: 500, controlPollMs: 300, metricsPort: 0 });
  await waitApplied(dst, admin, GROUP, [`${PREFIX}.${SCHEMA}.big`, `${PREFIX}.${SCHEMA}.child`], 60_000);
  for (const table of ['big', 'child']) {
    const cols = table === 'big' ? ['id', 'mood', 'pad'] : ['id', 'big_id', 'mood'];
    assert.deepEqual(await tableText(dst, `${SCHEMA}.${table}`, cols, 'id'), await tableText(src, `${SCHEMA}.${table}`, cols, 'id'), table);
  }

  const cutover = await cli(['cutover', '--yes', '--json', '--timeout', '60']);
  const report = JSON.parse(cutover.stdout) as CutoverReport;
  assert.equal(cutover.code, 0, cutover.stderr + cutover.stdout);
  assert.ok(report.tables.every((t) => t.match), cutover.stdout);
  // Its validation scans the table as the destination role, under its statement_timeout.
  assert.deepEqual(report.foreignKeys.map((f) => [f.constraint, f.status]), [['child_big_id_fkey', 'created']], cutover.stdout);

  // The connector still streams: its slot is the one FAIL. The enum column's type reads alike on both sides.
  const check = await cli(['check', '--sample-seconds', '0']);
  const out = check.stdout + check.stderr;
  assert.match(out, /PASS\s+reachable\s+source/, out);
  assert.match(out, /PASS\s+reachable\s+destination/, out);
  assert.match(out, /PASS\s+primary key\s+\S+\.big/, out);
  assert.deepEqual(out.match(/^FAIL\s+\S+( \S+)?/gm), ["FAIL  slot"], out);
});

test('default_transaction_read_only on the roles: left on (a write guard); the refused publication and schema copy name the setting, where it is set, and the ALTER ROLE that lifts it for the role alone', async (t) => {
  const RO = `${SCHEMA}_ro`;
  await src.query(`CREATE SCHEMA ${RO}; CREATE TABLE ${RO}.t (id int PRIMARY KEY); ALTER ROLE ${ROLE} IN DATABASE postgres SET default_transaction_read_only = on`);
  await dst.query(`ALTER ROLE ${ROLE} SET default_transaction_read_only = on`);
  t.after(async () => {
    await src.query(`ALTER ROLE ${ROLE} IN DATABASE postgres RESET default_transaction_read_only`);
    await dst.query(`ALTER ROLE ${ROLE} RESET default_transaction_read_only; DROP SCHEMA IF EXISTS ${RO} CASCADE`);
  });
  const config = { ...sourceConfig, tables: { ...sourceConfig.tables, schemas: [RO] }, slotName: `${sourceConfig.slotName}_ro`, publicationName: `${sourceConfig.publicationName}_ro` };
  const file = join(dir, 'source-ro.json');
  writeFileSync(file, JSON.stringify(config));
  const { code, stderr } = await runCli(['schema', 'copy', '--source-config', file, '--sink-config', files[3]]);
  assert.equal(code, 1, stderr);
  assert.match(stderr, new RegExp(`default_transaction_read_only is on for role ${ROLE} on the destination: creating the tables was refused`));
  assert.match(stderr, new RegExp(`remedy: for ShardBridge's role alone: ALTER ROLE "${ROLE}" IN DATABASE "postgres" SET default_transaction_read_only = off`));

  const connector = await startSourceConnector(config, log);
  t.after(() => connector.stop().catch(() => {}));
  const err = await stopped(connector);
  assert.match(err.message, new RegExp(`default_transaction_read_only is on for role ${ROLE} in database postgres on the source: creating or altering publication "${config.publicationName}" was refused`));
  assert.match(err.remedy ?? '', new RegExp(`ALTER ROLE "${ROLE}" IN DATABASE "postgres" SET default_transaction_read_only = off`));
});
