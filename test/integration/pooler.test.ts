/**
 * A real PgBouncer (1.18, as Debian 12 ships) in front of the destination cluster: the sink's and
 * the source's start refuse it with a config error naming the key, the pooler and the remedy
 * where it would break them, and the sink starts behind a session pool whose role carries its
 * settings. Before, the refused startup options were retried for ever as a lost connection, and
 * dropped options, transaction pooling and a source behind the pooler passed the start.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { startPgBouncer, type PgBouncer } from '../../shared/devstack/pgbouncer.ts';
import { ConfigError } from '../../shared/errors.ts';
import { sinkConfigSchema } from '../../sink-connector/config.ts';
import { openDestination } from '../../sink-connector/destination-start.ts';
import { openSource } from '../../source-connector/source-session.ts';
import { sourceConfigSchema } from '../../source-connector/config.ts';
import { gatherSourceFacts, judgeSourceFacts } from '../../source-connector/checks.ts';
import { resolveTables } from '../../source-connector/catalog.ts';
import { getTestDestination, hasCitus } from '../helpers/postgres.ts';
import { capturingLogger, testLogger } from '../helpers/kafka.ts';
import { Gauge } from 'prom-client';
import { waitFor } from '../../shared/devstack/ports.ts';
import { LockWatch } from '../../sink-connector/lock-watch.ts';
import { sinkSessionFindings } from '../../shared/cli/commands/check.ts';

const ROLE = `sb_pooler_${process.pid}`;
const releases: (() => Promise<void>)[] = [];
let admin: pg.Client;
let db: string;
let adminUrl: string;
const bouncers = {} as Record<'refusing' | 'session' | 'transaction', PgBouncer>;

before(async () => {
  const d = await getTestDestination();
  releases.push(d.release);
  const u = new URL(d.url);
  db = u.pathname.slice(1) || 'postgres';
  adminUrl = d.url;
  admin = new pg.Client({ connectionString: d.url });
  await admin.connect();
  releases.push(() => admin.end());
  await admin.query(`CREATE ROLE ${ROLE} LOGIN SUPERUSER`);
  // The sink's settings made on its role, as the remedy says (the defaults' values).
  await admin.query(
    `ALTER ROLE ${ROLE} SET synchronous_commit = off; ALTER ROLE ${ROLE} SET lc_monetary = 'C'; ALTER ROLE ${ROLE} SET array_nulls = on; ` +
      `ALTER ROLE ${ROLE} SET xmloption = content; ALTER ROLE ${ROLE} SET standard_conforming_strings = on; ALTER ROLE ${ROLE} SET idle_in_transaction_session_timeout = 30000`,
  );
  // On a Citus destination the sink's Citus settings too (the remedy names them there).
  if ((await hasCitus(admin))) {
    await admin.query(`ALTER ROLE ${ROLE} SET citus.max_cached_conns_per_worker = 16; ALTER ROLE ${ROLE} SET citus.enable_deadlock_prevention = off`);
  }
  releases.push(async () => {
    await admin.query(`DROP OWNED BY ${ROLE}; DROP ROLE ${ROLE}`);
  });
  const serverPort = Number(u.port);
  const [refusing, session, transaction] = await Promise.all([
    startPgBouncer({ serverPort, poolMode: 'session', users: [ROLE] }),
    startPgBouncer({ serverPort, poolMode: 'session', ignoreStartupParameters: ['options'], users: [ROLE] }),
    startPgBouncer({ serverPort, poolMode: 'transaction', ignoreStartupParameters: ['options'], users: [ROLE] }),
  ]);
  Object.assign(bouncers, { refusing, session, transaction });
  releases.push(() => refusing.stop(), () => session.stop(), () => transaction.stop());
});

after(async () => {
  for (const r of releases.reverse()) await r().catch(() => {});
});

const once = <T>(_what: string, fn: () => Promise<T>): Promise<T> => fn();

function sinkConfig(url: string) {
  return sinkConfigSchema.parse({ kafka: { brokers: ['127.0.0.1:9'] }, schemaRegistry: { url: 'http://127.0.0.1:9' }, destination: { url } });
}

async function sinkStartError(url: string): Promise<ConfigError> {
  const err = await openDestination(sinkConfig(url), 2, testLogger(), once).then(
    async ({ pool }) => {
      await pool.end();
      return null;
    },
    (e: unknown) => e,
  );
  assert.ok(err instanceof ConfigError, `expected a config error, got ${err === null ? 'a started sink' : String(err)}`);
  assert.equal(err.context.key, 'destination.url');
  return err;
}

test('sink: PgBouncer refusing the startup options is a config error naming it, the key and the remedy', async () => {
  const err = await sinkStartError(bouncers.refusing.url(db));
  assert.match(err.message, /destination\.url leads to PgBouncer or another connection pooler, which refuses the startup parameter "options".*synchronous_commit=off/);
  assert.match(err.remedy ?? '', /PostgreSQL server itself.*pool_mode = session and ignore_startup_parameters = options.*ALTER ROLE .* SET synchronous_commit = 'off';/);
});

test('sink: options dropped by the pooler are named as not in effect; with them on its role the sink starts in a session pool, its lock watchdog naming blockers', async () => {
  const err = await sinkStartError(bouncers.session.url(db));
  // A server whose own default is synchronous_commit = off (a test cluster may have it) has that one in effect anyway.
  const serverOff = (await admin.query(`SELECT setting FROM pg_settings WHERE name = 'synchronous_commit'`)).rows[0].setting === 'off';
  assert.match(err.message, new RegExp(`dropped the sink's startup options.*${serverOff ? '' : 'synchronous_commit is on, not off.*'}idle_in_transaction_session_timeout is 0, not 30000`));
  assert.match(err.remedy ?? '', serverOff ? /ALTER ROLE "postgres" SET idle_in_transaction_session_timeout = '30000';/ : /ALTER ROLE "postgres" SET synchronous_commit = 'off';/);

  const { pool } = await openDestination(sinkConfig(bouncers.session.url(db, ROLE)), 2, testLogger(), once);
  const holder = new pg.Client({ connectionString: adminUrl, application_name: 'dba-session' });
  const { logger, lines } = capturingLogger();
  const watch = new LockWatch({ warnMs: 100, lanes: 1, logger, gauge: new Gauge({ name: 'pooler_test_waiting', help: '-', registers: [] }), client: () => new pg.Client({ connectionString: bouncers.session.url(db, ROLE) }) });
  const client = await pool.connect();
  try {
    const { rows } = await client.query(`SELECT current_setting('synchronous_commit') AS sc, current_setting('idle_in_transaction_session_timeout') AS idle`);
    assert.deepEqual(rows[0], { sc: 'off', idle: '30s' });
    // The lock watchdog names who blocks a batch: it finds the batch's session by its server pid, not the pooler's.
    await admin.query(`CREATE TABLE public.${ROLE}_locked (id int)`);
    await holder.connect();
    await holder.query(`BEGIN; LOCK TABLE public.${ROLE}_locked`);
    const holderPid = (await holder.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    const chunk = { topic: 't', partition: 0, records: [], fast: [] } as unknown as Parameters<LockWatch['during']>[1];
    const batch = watch.during(client, chunk, () => client.query(`INSERT INTO public.${ROLE}_locked VALUES (1)`));
    const warned = await waitFor('a warning naming the holder', () => lines().find((l) => l.level === 40 && Array.isArray(l.holders)), { timeoutMs: 10_000 });
    assert.deepEqual(warned.holders.map((h: { pid: number; applicationName: string }) => [h.pid, h.applicationName]), [[holderPid, 'dba-session']]);
    await holder.query('COMMIT');
    await batch;
  } finally {
    client.release();
    await watch.stop();
    await holder.end().catch(() => {});
    await pool.end();
    await admin.query(`DROP TABLE IF EXISTS public.${ROLE}_locked`);
  }
});

test('sink: transaction pooling is refused (its temporary staging tables need a session)', async () => {
  const err = await sinkStartError(bouncers.transaction.url(db, ROLE));
  assert.match(err.message, /transaction \(or statement\) pooling: two of the sink's connections were served by one PostgreSQL session/);
  assert.match(err.remedy ?? '', /pool_mode = session/);
});

test('source: behind PgBouncer, refusing its options or passing them, a config error naming source.url', async () => {
  for (const b of [bouncers.refusing, bouncers.session]) {
    const config = sourceConfigSchema.parse({ source: { url: b.url(db) }, kafka: { brokers: ['127.0.0.1:9'] }, schemaRegistry: { url: 'http://127.0.0.1:9' } });
    const err = await openSource(config, testLogger()).then(
      async (s) => {
        await s.close();
        return null;
      },
      (e: unknown) => e,
    );
    assert.ok(err instanceof ConfigError, `expected a config error, got ${String(err)}`);
    assert.equal(err.context.key, 'source.url');
    assert.match(err.message, /source\.url leads to PgBouncer or another connection pooler .*replication connection/);
    assert.match(err.remedy ?? '', /point source\.url at the PostgreSQL server itself/);
  }
});

test("check's source findings: a FAIL naming the pooler behind PgBouncer, none on the server itself", async () => {
  const findings = async (url: string) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      const resolved = await resolveTables(c, sourceConfigSchema.parse({ source: { url }, kafka: { brokers: ['127.0.0.1:9'] }, schemaRegistry: { url: 'http://127.0.0.1:9' } }).tables);
      const facts = await gatherSourceFacts(c, { slotName: 'sb_pooler', publicationName: 'sb_pooler', topicPrefix: 'sb', resolved });
      return judgeSourceFacts(facts).filter((f) => f.check === 'connection pooler');
    } finally {
      await c.end();
    }
  };
  const [through] = await findings(bouncers.session.url(db));
  assert.equal(through?.level, 'FAIL');
  assert.match(through.message, /^source\.url leads to PgBouncer or another connection pooler/);
  assert.deepEqual(await findings(adminUrl), []);
});

test("check's destination findings: the sink's refusal of a transaction pool is a FAIL, a session pool keeping its settings a PASS, the server itself nothing", async () => {
  const findings = async (url: string) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return await sinkSessionFindings(sinkConfig(url), c);
    } finally {
      await c.end();
    }
  };
  const [transaction] = await findings(bouncers.transaction.url(db, ROLE));
  assert.equal(transaction?.level, 'FAIL');
  assert.equal(transaction.check, 'connection pooler');
  assert.match(transaction.message, /^the sink would refuse to start: destination\.url leads to PgBouncer or another connection pooler in transaction \(or statement\) pooling/);
  assert.match(transaction.remedy ?? '', /pool_mode = session/);
  // Its options dropped (ignore_startup_parameters), the settings not on the role: refused too.
  const [dropped] = await findings(bouncers.session.url(db));
  assert.equal(dropped?.level, 'FAIL');
  assert.match(dropped.message, /dropped the sink's startup options .*: its sessions run with synchronous_commit is on, not off/);
  assert.deepEqual((await findings(bouncers.session.url(db, ROLE))).map((f) => `${f.level} ${f.check}`), ['PASS connection pooler']);
  assert.deepEqual(await findings(adminUrl), []);
});
