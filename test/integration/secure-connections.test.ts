/**
 * The connectors and the commands over secured connections to real servers: PostgreSQL with TLS
 * (verify-full against a test CA) and password (SCRAM) authentication for a replication role,
 * and Kafka through a SASL_SSL listener (SCRAM-SHA-512 and PLAIN, the CA given in the config).
 * Rows flow end to end, every password read from a file (passwordFile): the PostgreSQL one
 * rotated mid-stream is taken by the source's reconnect; neither secret appears in any output,
 * at debug level either; a wrong password or an untrusted server certificate is a clear error
 * naming the server. kafka.sasl.passwordFile is read again at each new broker connection.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chownSync, copyFileSync, chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { createKafka } from '../../shared/kafka/client.ts';
import { waitFor } from '../../shared/devstack/ports.ts';
import type { KafkaBroker } from '../../shared/devstack/kafka.ts';
import type { PgCluster } from '../../shared/devstack/postgres.ts';
import { runCli, spawnCli, type CliChild } from '../helpers/cli.ts';
import { startSecureStack } from '../helpers/secure-stack.ts';
import { uniquePrefix } from '../helpers/source.ts';
import { makeTestCerts, type TestCerts } from '../helpers/tls.ts';

const PG_SECRET = 'Pg-S3cret-9f2c';
const KAFKA_SECRET = 'Kafka-S3cret-77ab';
const ROLE = 'migrator';
const dir = mkdtempSync(join(tmpdir(), 'sb-secure-'));
const releases: (() => Promise<void>)[] = [];
let certs: TestCerts;
let broker: KafkaBroker;
let cluster: PgCluster;
let registryUrl: string;
let admin: pg.Client;

before(async () => {
  certs = makeTestCerts(dir);
  ({ broker, cluster, registryUrl } = await startSecureStack({ keystore: certs.keystoreFile, users: { [ROLE]: KAFKA_SECRET } }, releases));
  const c = cluster;
  await secure(c);
  admin = new pg.Client({ connectionString: c.url() });
  await admin.connect();
  await admin.query(`CREATE ROLE ${ROLE} LOGIN SUPERUSER REPLICATION PASSWORD '${PG_SECRET}'`);
  await admin.query(`CREATE DATABASE dest OWNER ${ROLE}`);
  const dest = new pg.Client({ connectionString: c.url('dest') });
  await dest.connect();
  await dest.query('CREATE SCHEMA sec; CREATE TABLE sec.items (id int PRIMARY KEY, v text, at timestamptz)');
  await dest.end();
  await admin.query(`CREATE SCHEMA sec; CREATE TABLE sec.items (id int PRIMARY KEY, v text, at timestamptz);
    INSERT INTO sec.items SELECT g, 'v' || g, now() FROM generate_series(1, 100) g`);
});

after(async () => {
  await admin?.end().catch(() => {});
  for (const r of releases.reverse()) await r().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

/**
 * TLS on (the server's key owned by the server's OS user, mode 0600, as PostgreSQL demands), and
 * the role may connect only over TLS with its password; the superuser keeps trust for set-up.
 */
async function secure(c: PgCluster): Promise<void> {
  const { uid, gid } = statSync(c.dataDir);
  for (const [from, to] of [[certs.certFile, 'server.crt'], [certs.keyFile, 'server.key']]) {
    copyFileSync(from, join(c.dataDir, to));
    chownSync(join(c.dataDir, to), uid, gid);
    chmodSync(join(c.dataDir, to), 0o600);
  }
  const hba = join(c.dataDir, 'pg_hba.conf');
  const rules = [`hostssl all ${ROLE} 127.0.0.1/32 scram-sha-256`, `hostssl replication ${ROLE} 127.0.0.1/32 scram-sha-256`, `host all ${ROLE} 127.0.0.1/32 reject`, `host replication ${ROLE} 127.0.0.1/32 reject`];
  writeFileSync(hba, rules.join('\n') + '\n' + readFileSync(hba, 'utf8'));
  const su = new pg.Client({ connectionString: c.url() });
  await su.connect();
  await su.query(`ALTER SYSTEM SET ssl = on`);
  await su.query('SELECT pg_reload_conf()');
  await waitFor('TLS on', async () => (await su.query(`SELECT current_setting('ssl') AS s`)).rows[0].s === 'on', { timeoutMs: 10_000, intervalMs: 50 });
  await su.end();
}

/** `password: null`: none in the URL (a passwordFile gives it). */
const pgUrl = (db: string, o: { password?: string | null; ca?: boolean } = {}) =>
  `postgres://${ROLE}${o.password === null ? '' : `:${encodeURIComponent(o.password ?? PG_SECRET)}`}@127.0.0.1:${cluster.port}/${db}?sslmode=verify-full${o.ca === false ? '' : `&sslrootcert=${encodeURIComponent(certs.caFile)}`}`;

function kafkaSection(o: { password?: string; passwordFile?: string; mechanism?: string; ca?: boolean } = {}): Record<string, unknown> {
  const secret = o.passwordFile !== undefined ? { passwordFile: o.passwordFile } : { password: o.password ?? KAFKA_SECRET };
  return {
    brokers: [broker.secureBootstrap],
    ssl: o.ca === false ? true : { ca: certs.ca },
    sasl: { mechanism: o.mechanism ?? 'scram-sha-512', username: ROLE, ...secret },
  };
}

/** `source` / `destination`: a URL, or the whole section. */
function writeConfigs(name: string, o: { kafka?: Record<string, unknown>; source?: string | object; destination?: string | object } = {}): { source: string; sink: string; prefix: string } {
  const section = (s: string | object | undefined, db: string) => (typeof s === 'object' ? s : { url: s ?? pgUrl(db) });
  const prefix = uniquePrefix();
  const kafka = o.kafka ?? kafkaSection();
  const source = join(dir, `${name}-source.json`);
  const sink = join(dir, `${name}-sink.json`);
  writeFileSync(source, JSON.stringify({ name, source: section(o.source, 'postgres'), kafka, schemaRegistry: { url: registryUrl }, topicPrefix: prefix, slotName: `sb_${name}`, tables: { schemas: ['sec'] }, metricsPort: 0 }));
  writeFileSync(sink, JSON.stringify({ name, groupId: `g-${name}`, destination: section(o.destination, 'dest'), kafka, schemaRegistry: { url: registryUrl }, topicPrefix: prefix, metricsPort: 0 }));
  return { source, sink, prefix };
}

/** The PostgreSQL password the first test rotates to (then back). */
const ROTATED = `Pg-R0tated-${randomBytes(4).toString('hex')}`;

function assertNoSecret(text: string, what: string): void {
  for (const secret of [PG_SECRET, encodeURIComponent(PG_SECRET), KAFKA_SECRET, ROTATED]) assert.ok(!text.includes(secret), `${what} shows a secret:\n${text.slice(0, 2000)}`);
}

async function stop(child: CliChild): Promise<void> {
  child.proc.kill('SIGTERM');
  await child.exited;
}

test('source and sink over TLS-verified PostgreSQL and SASL_SSL Kafka, passwords from files: rows flow end to end, the PostgreSQL password rotated mid-stream is taken at the source\'s reconnect, and no output carries a secret', async () => {
  // Every password from a file (passwordFile): PostgreSQL's read at each new connection, Kafka's at each broker authentication.
  const pgPwFile = join(dir, 'pg-password');
  const kafkaPwFile = join(dir, 'kafka-password');
  writeFileSync(pgPwFile, `${PG_SECRET}\n`);
  writeFileSync(kafkaPwFile, `${KAFKA_SECRET}\n`);
  const pgSection = (db: string) => ({ url: pgUrl(db, { password: null }), passwordFile: pgPwFile });
  const files = writeConfigs('secure', { kafka: kafkaSection({ passwordFile: kafkaPwFile }), source: pgSection('postgres'), destination: pgSection('dest') });
  const checked = await runCli(['check', '--source-config', files.source, '--sink-config', files.sink]);
  assertNoSecret(checked.stdout + checked.stderr, 'check');
  assert.equal(checked.code, 0, checked.stdout + checked.stderr);

  const dest = new pg.Client({ connectionString: cluster.url('dest') });
  await dest.connect();
  const source = spawnCli('source', files.source, { logLevel: 'debug', tailBytes: 5_000_000 });
  // The sink once the source made its topics: started together, it found none and looked again only after its 10 s topic refresh.
  await waitFor('the source to make its topics', () => source.proc.exitCode !== null || source.output().includes('topics created'), { timeoutMs: 60_000, intervalMs: 100 })
    .catch((err: Error) => {
      source.proc.kill('SIGKILL');
      throw new Error(`${err.message}\n${source.output()}`);
    });
  const sink = spawnCli('sink', files.sink, { logLevel: 'debug', tailBytes: 5_000_000 });
  try {
    const rows = async () => (await dest.query(`SELECT count(*)::int AS n, coalesce(sum(length(v)), 0)::int AS len FROM sec.items`)).rows[0];
    await waitFor('the snapshot in the destination', async () => (await rows()).n === 100, { timeoutMs: 90_000, intervalMs: 100 });
    await admin.query(`INSERT INTO sec.items SELECT g, 'new' || g, now() FROM generate_series(101, 150) g; UPDATE sec.items SET v = v || '!' WHERE id <= 10; DELETE FROM sec.items WHERE id BETWEEN 11 AND 15`);
    const want = (await admin.query(`SELECT count(*)::int AS n, sum(length(v))::int AS len FROM sec.items`)).rows[0];
    await waitFor('the streamed changes in the destination', async () => JSON.stringify(await rows()) === JSON.stringify(want), { timeoutMs: 60_000, intervalMs: 100 });

    // Rotation (docs/configuration.md, "Credentials rotation"): the file rewritten, then the role's
    // password changed; the walsender ended, the source's new session (replication connection and
    // its other clients) must read the file again: the old password would be refused (28P01, a stop).
    const walsender = async () => (await admin.query(`SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = 'sb_secure'`)).rows[0]?.pid as number | null;
    const before = await walsender();
    assert.ok(before, 'a walsender streams from the slot');
    writeFileSync(pgPwFile, `${ROTATED}\n`);
    await admin.query(`ALTER ROLE ${ROLE} PASSWORD '${ROTATED}'`);
    await admin.query('SELECT pg_terminate_backend($1::int)', [before]);
    // A source that stopped (the old password refused) fails here, not at the deadline.
    const stopped = source.exited.then(({ code }) => assert.fail(`the source stopped (exit ${code}): ${source.output().slice(-2000)}`));
    await Promise.race([waitFor('the source streaming again on a new walsender', async () => ![null, undefined, before].includes(await walsender()), { timeoutMs: 60_000, intervalMs: 100 }), stopped]);
    await admin.query(`INSERT INTO sec.items SELECT g, 'rot' || g, now() FROM generate_series(151, 160) g`);
    const rotated = (await admin.query(`SELECT count(*)::int AS n, sum(length(v))::int AS len FROM sec.items`)).rows[0];
    await waitFor('the changes after the rotation in the destination', async () => JSON.stringify(await rows()) === JSON.stringify(rotated), { timeoutMs: 60_000, intervalMs: 100 });
    assert.equal(source.proc.exitCode, null, 'the source still runs');
    assert.match(source.output(), /connector session failed, retrying in \d+ ms/, 'a reconnect, not a first session');
  } finally {
    await Promise.all([stop(source), stop(sink)]);
    await dest.end();
    // The other tests' URLs carry the first password.
    await admin.query(`ALTER ROLE ${ROLE} PASSWORD '${PG_SECRET}'`);
  }
  const logs = source.output() + sink.output();
  assert.match(logs, /"level":20/, 'debug lines were written');
  assertNoSecret(logs, 'the connectors\' logs');
});

/** Runs a connector that is expected to give up by itself; its exit and all it printed. */
async function runToExit(command: 'source' | 'sink', file: string): Promise<{ code: number | null; output: string }> {
  const child = spawnCli(command, file, { logLevel: 'debug', tailBytes: 2_000_000 });
  const deadline = setTimeout(() => child.proc.kill('SIGKILL'), 60_000);
  try {
    const { code } = await child.exited;
    return { code, output: child.output() };
  } finally {
    clearTimeout(deadline);
  }
}

test('a wrong password for Kafka or PostgreSQL: the connector stops, naming the server and the refusal, never a password', async () => {
  const kafkaPw = writeConfigs('wrong_kafka_pw', { kafka: kafkaSection({ password: `wrong-${KAFKA_SECRET}` }) });
  const pgPw = writeConfigs('wrong_pg_pw', { source: pgUrl('postgres', { password: `wrong-${PG_SECRET}` }), destination: pgUrl('dest', { password: `wrong-${PG_SECRET}` }) });
  const runs = await Promise.all([
    runToExit('sink', kafkaPw.sink),
    runToExit('source', kafkaPw.source),
    runToExit('source', pgPw.source),
    runToExit('sink', pgPw.sink),
  ]);
  const [sinkKafka, sourceKafka, sourcePg, sinkPg] = runs;
  for (const r of runs) assertNoSecret(r.output, 'a failed start');
  const refused = `SASL SCRAM SHA512 authentication failed: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512`;
  assert.equal(sinkKafka.code, 1, sinkKafka.output);
  assert.ok(sinkKafka.output.includes(`shardbridge sink: cannot use Kafka at ${broker.secureBootstrap}: ${refused}\n  remedy: check kafka.brokers, and kafka.ssl / kafka.sasl`), sinkKafka.output);
  assert.equal(sourceKafka.code, 1, sourceKafka.output);
  assert.ok(sourceKafka.output.includes(`shardbridge source: cannot use Kafka at ${broker.secureBootstrap}: ${refused}\n  remedy: check kafka.brokers, and kafka.ssl / kafka.sasl`), sourceKafka.output);
  // Exit 1 as the sink's: a server that refused, not a start-up check (exit 2).
  assert.equal(sourcePg.code, 1, sourcePg.output);
  assert.ok(sourcePg.output.includes(`shardbridge source: cannot connect to the source PostgreSQL at 127.0.0.1:${cluster.port}: password authentication failed for user "${ROLE}" (28P01)`), sourcePg.output);
  assert.equal(sinkPg.code, 1, sinkPg.output);
  assert.ok(sinkPg.output.includes(`shardbridge sink: cannot use the destination PostgreSQL at 127.0.0.1:${cluster.port}/dest: password authentication failed for user "${ROLE}"`), sinkPg.output);
});

test('a server certificate the config does not trust: a stop naming the CA setting, not retried as an unreachable server; check says the same', async () => {
  const untrusted = writeConfigs('untrusted', { kafka: kafkaSection({ ca: false }), source: pgUrl('postgres', { ca: false }), destination: pgUrl('dest', { ca: false }) });
  const [sink, source] = await Promise.all([runToExit('sink', untrusted.sink), runToExit('source', untrusted.source)]);
  assert.equal(sink.code, 1, sink.output);
  assert.match(sink.output, /shardbridge sink: cannot use the destination PostgreSQL at 127\.0\.0\.1:\d+\/dest: [^\n]*unable to verify the first certificate\n {2}remedy: the server's TLS certificate did not verify \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\): give the CA that signed it as sslrootcert \(a PEM file: in destination\.url's query/);
  assert.equal(source.code, 1, source.output);
  assert.match(source.output, /shardbridge source: cannot connect to the source PostgreSQL at [^\n]*unable to verify the first certificate \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)\n {2}remedy: the server's TLS certificate did not verify \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\): give the CA that signed it as sslrootcert \(a PEM file: in source\.url's query/);

  // Kafka alone untrusted: the sink gets past the destination and stops at the broker.
  const kafkaOnly = writeConfigs('untrusted_kafka', { kafka: kafkaSection({ ca: false }) });
  const stopped = await runToExit('sink', kafkaOnly.sink);
  assert.equal(stopped.code, 1, stopped.output);
  assert.match(stopped.output, new RegExp(`shardbridge sink: cannot use Kafka at ${broker.secureBootstrap}: [^\\n]*unable to verify the first certificate\\n  remedy: the server's TLS certificate did not verify \\(UNABLE_TO_VERIFY_LEAF_SIGNATURE\\): give the CA that signed it as kafka\\.ssl\\.ca \\(PEM text\\)`));
  assert.doesNotMatch(stopped.output, /failed, retrying in/, 'not retried as unreachable');

  const checked = await runCli(['check', '--source-config', untrusted.source, '--sink-config', untrusted.sink]);
  assert.equal(checked.code, 1, checked.stdout);
  const remedies = checked.stdout.split('\n').filter((l) => /remedy: the server's TLS certificate did not verify/.test(l));
  assert.deepEqual(remedies.map((l) => /as (sslrootcert \(a PEM file: in (\w+)\.url|kafka\.ssl\.ca)/.exec(l)?.slice(1).filter(Boolean).pop()), ['source', 'kafka.ssl.ca', 'destination']);
});

test('kafka.sasl.passwordFile rotated in place: a new broker connection of a running client sends what the file holds then (a wrong one is refused, the right one back connects); the broker check connects to each broker the metadata names and asks its own API versions', async () => {
  const file = join(dir, 'kafka-rotating');
  writeFileSync(file, `${KAFKA_SECRET}\n`);
  const lines: string[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
  const sasl = { mechanism: 'scram-sha-512' as const, username: ROLE, password: KAFKA_SECRET, passwordFile: file };
  const kafka = createKafka({ brokers: [broker.secureBootstrap!], ssl: { ca: certs.ca }, sasl, retry: { retries: 0 } }, log);
  // Each admin is a kafkajs instance of its own: its first call opens new connections.
  const admins: { disconnect(): Promise<void> }[] = [];
  const describe = () => {
    const a = kafka.admin({ retry: { retries: 0 } });
    admins.push(a);
    return a.describeCluster();
  };
  try {
    assert.equal((await describe()).brokers.length, 1);
    // The start's broker check asks each broker the metadata names (broker-features.ts): bootstrapped
    // over `localhost`, that broker (127.0.0.1) is another than the one kafkajs reached first, and is
    // connected (SASL, TLS) and asked its own ApiVersions.
    const byName = createKafka({ brokers: [broker.secureBootstrap!.replace('127.0.0.1', 'localhost')], ssl: { ca: certs.ca }, sasl, retry: { retries: 0 } }, log).admin();
    admins.push(byName);
    const brokers = await byName.brokerApiVersions();
    assert.deepEqual(brokers.map((b) => b.broker), [broker.secureBootstrap]);
    assert.deepEqual(brokers[0].versions, await byName.apiVersions());
    assert.ok((brokers[0].versions?.get(3)?.maxVersion ?? 0) >= 10, 'Metadata v10+');
    writeFileSync(file, `wrong-${KAFKA_SECRET}\n`);
    await assert.rejects(describe(), /SASL SCRAM SHA512 authentication failed/);
    writeFileSync(file, `${KAFKA_SECRET}\n`);
    assert.equal((await describe()).brokers.length, 1);
  } finally {
    await Promise.all(admins.map((a) => a.disconnect().catch(() => {})));
    kafka.close();
  }
  assertNoSecret(lines.join(''), 'the client\'s log');
  assert.ok(!lines.join('').includes(`wrong-${KAFKA_SECRET}`));
});
