/** The throwaway PostgreSQL cluster harness: settings, crash recovery, cleanup (also after its owner is SIGKILLed). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startTestSource, getTestDestination } from '../helpers/postgres.ts';
import { startPostgres } from '../../shared/devstack/postgres.ts';
import { descendants, processGone } from '../../shared/devstack/pg-process.ts';
import { waitFor } from '../../shared/devstack/ports.ts';

async function query<T = Record<string, unknown>>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as T[];
  } finally {
    await client.end();
  }
}

test('defaults and extra settings are applied; committed data survives crash() + restart()', async (t) => {
  const cluster = await startTestSource({ max_replication_slots: '7', application_name: "it's me" });
  t.after(() => cluster.destroy());
  assert.equal(cluster.host, '127.0.0.1');
  assert.equal(cluster.superuserUrl, `postgres://postgres@127.0.0.1:${cluster.port}/postgres`);
  assert.equal(cluster.url('app', 'bob'), `postgres://bob@127.0.0.1:${cluster.port}/app`);

  const show = async (name: string) => (await query<Record<string, string>>(cluster.superuserUrl, `SHOW ${name}`))[0][name];
  assert.equal(await show('wal_level'), 'logical');
  assert.equal(await show('fsync'), 'off');
  assert.equal(await show('max_replication_slots'), '7');
  assert.equal(await show('application_name'), "it's me");
  assert.equal(await show('unix_socket_directories'), cluster.dataDir);
  assert.match(await show('server_version'), /^(1[5-9]|[2-9]\d)\./);

  await query(cluster.superuserUrl, 'CREATE TABLE t (id int PRIMARY KEY, v text)');
  await query(cluster.superuserUrl, "INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 1000) g");
  const pidBefore = Number(fs.readFileSync(`${cluster.dataDir}/postmaster.pid`, 'utf8').split('\n')[0]);

  await cluster.crash();
  await assert.rejects(query(cluster.superuserUrl, 'SELECT 1'));
  await cluster.restart();

  const [{ n, last }] = await query<{ n: string; last: string }>(cluster.superuserUrl, 'SELECT count(*) AS n, max(v) FILTER (WHERE id = 1000) AS last FROM t');
  assert.equal(n, '1000');
  assert.equal(last, 'row 1000');
  assert.notEqual(Number(fs.readFileSync(`${cluster.dataDir}/postmaster.pid`, 'utf8').split('\n')[0]), pidBefore);
  // The server log shows that the restart ran crash recovery.
  assert.match(cluster.logTail(200), /not properly shut down|automatic recovery/);

  // A plain restart of a running cluster keeps port and data too.
  await cluster.restart();
  assert.equal((await query<{ n: string }>(cluster.superuserUrl, 'SELECT count(*) AS n FROM t'))[0].n, '1000');
});

test('stop() then restart(); destroy() removes the data dir', async () => {
  const cluster = await startTestSource();
  const { dataDir } = cluster;
  assert.ok(fs.existsSync(`${dataDir}/PG_VERSION`));
  await cluster.stop();
  assert.ok(!fs.existsSync(`${dataDir}/postmaster.pid`));
  await cluster.restart();
  assert.equal((await query<{ one: number }>(cluster.url(), 'SELECT 1 AS one'))[0].one, 1);
  await cluster.destroy();
  assert.ok(!fs.existsSync(dataDir));
  await assert.rejects(query(cluster.url(), 'SELECT 1'));
});

test('getTestDestination gives a database tests can create tables in', async (t) => {
  const dest = await getTestDestination();
  t.after(() => dest.release());
  const table = `harness_probe_${process.pid}`;
  await query(dest.url, `CREATE TABLE ${table} (id int)`);
  try {
    await query(dest.url, `INSERT INTO ${table} VALUES (1), (2)`);
    assert.equal((await query<{ n: string }>(dest.url, `SELECT count(*) AS n FROM ${table}`))[0].n, '2');
  } finally {
    await query(dest.url, `DROP TABLE ${table}`);
  }
});

test('an explicit dataDir is kept by stop() and reused by the next startPostgres()', async (t) => {
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'shardbridge-pg-keep-'));
  // As root the server runs as `postgres`, which must be able to reach the data dir.
  fs.chmodSync(parent, 0o755);
  t.after(() => fs.rmSync(parent, { recursive: true, force: true }));
  const dataDir = path.join(parent, 'data');
  const first = await startPostgres({ dataDir, settings: { max_wal_senders: '4' } });
  await query(first.url(), 'CREATE TABLE kept (id int)');
  await query(first.url(), 'INSERT INTO kept VALUES (42)');
  await first.stop();

  const second = await startPostgres({ dataDir });
  t.after(() => second.destroy());
  assert.deepEqual(await query(second.url(), 'SELECT id FROM kept'), [{ id: 42 }]);
  // Settings are those of this start, not the previous one.
  assert.equal((await query<{ max_wal_senders: string }>(second.url(), 'SHOW max_wal_senders'))[0].max_wal_senders, '10');
});

test('an owner killed by SIGKILL (no hook runs) leaves no server running, and the next start removes its data dir', async (t) => {
  // The owner: another process, started here and SIGKILLed below.
  const module = new URL('../../shared/devstack/postgres.ts', import.meta.url).href;
  const script = `const { startPostgres } = await import(${JSON.stringify(module)});
    const c = await startPostgres({ name: 'orphan' });
    process.stdout.write(JSON.stringify({ port: c.port, dataDir: c.dataDir }) + '\\n');
    setInterval(() => {}, 1 << 30);`;
  const owner = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  owner.stdout.on('data', (d) => (out += d));
  const left: { postmaster?: number; dataDir?: string } = {};
  t.after(() => {
    owner.kill('SIGKILL');
    // Before the fix the server outlived its owner: do not leave it to the machine.
    const pm = left.postmaster;
    if (pm && !processGone(pm)) for (const p of [pm, ...descendants(pm)]) process.kill(p, 'SIGKILL');
    if (left.dataDir) fs.rmSync(left.dataDir, { recursive: true, force: true });
  });
  const started = await waitFor('the owner to start its cluster', () => (out.includes('\n') ? (JSON.parse(out) as { port: number; dataDir: string }) : null), { timeoutMs: 60_000 });
  const dataDir = (left.dataDir = started.dataDir);
  const postmaster = (left.postmaster = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]));
  assert.ok(!processGone(postmaster));

  owner.kill('SIGKILL');
  await waitFor('the postmaster to die with its owner', () => processGone(postmaster), { timeoutMs: 15_000, intervalMs: 50 });
  await assert.rejects(query(`postgres://postgres@127.0.0.1:${started.port}/postgres`, 'SELECT 1'));
  await waitFor('the owner to be reaped', () => owner.exitCode !== null || owner.signalCode !== null);

  assert.ok(fs.existsSync(dataDir), 'nothing ran to remove it');
  const next = await startPostgres({ name: 'next' });
  t.after(() => next.destroy());
  assert.ok(!fs.existsSync(dataDir), `${dataDir} removed by the next start`);
});
