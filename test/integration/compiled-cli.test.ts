/**
 * The compiled CLI (`npm run build` into dist/, what the image and the benchmark run): it
 * builds, answers --version and --help, refuses a bad configuration naming the key, and its
 * source and sink connectors move a table from a source cluster through Kafka into the
 * destination, row for row (updates leaving a NOT NULL TOASTed column unchanged among them),
 * and stop on SIGTERM with 143 as every command.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { buildCli } from '../../shared/bench/build.ts';
import { waitFor } from '../../shared/devstack/ports.ts';
import { execCli, spawnCli, type CliChild } from '../helpers/cli.ts';
import { getTestDestination } from '../helpers/postgres.ts';
import { sinkConfig, tableText } from '../helpers/sink.ts';
import { RegistryDecoder, readDecoded, startSourceTestEnv, testSourceConfig, uniquePrefix, type SourceTestEnv } from '../helpers/source.ts';

const dir = mkdtempSync(join(tmpdir(), 'sb-compiled-'));
let entry: string;
let env: SourceTestEnv;
let dest: { url: string; release(): Promise<void> };

before(async () => {
  [entry, env, dest] = await Promise.all([buildCli(), startSourceTestEnv('test-compiled-cli'), getTestDestination()]);
});

after(async () => {
  await env?.close();
  await dest?.release();
  rmSync(dir, { recursive: true, force: true });
});

const run = (args: string[]) => execCli(args, { bin: entry });

test('the compiled CLI: --version, --help, and a bad configuration refused naming the key', async () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  assert.equal((await run(['--version'])).stdout.trim(), pkg.version);
  const help = await run(['--help']);
  for (const cmd of ['source', 'sink', 'check', 'replay', 'cutover']) assert.match(help.stdout, new RegExp(`^\\s+${cmd}\\b`, 'm'));
  const file = join(dir, 'bad-sink.yaml');
  writeFileSync(file, 'destination:\n  url: postgres://u:secret@127.0.0.1:1/x\nkafka:\n  brokers: [localhost:9092]\nschemaRegistry:\n  url: http://localhost:8081\nbatch:\n  maxRows: -5\n');
  const bad = await run(['sink', '--config', file]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /batch\.maxRows/);
  assert.doesNotMatch(bad.stderr, /secret/);
});

test('the compiled source and sink connectors move a table through Kafka into the destination', async (t) => {
  const { url, client } = await env.freshDatabase(t);
  // `doc` NOT NULL and, for every 100th row (not deleted below), stored out of line: the updates leave it
  // unchanged, so those rows arrive as unchanged-TOAST updates of a NOT NULL column.
  await client.query(`CREATE TABLE items (id bigint PRIMARY KEY, name text, price numeric(10,2), at timestamptz, doc text NOT NULL)`);
  await client.query(`ALTER TABLE items ALTER COLUMN doc SET STORAGE EXTERNAL`);
  await client.query(
    `INSERT INTO items SELECT g, 'item ' || g, g * 1.25, '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 second',
            CASE WHEN g % 100 = 3 THEN repeat(md5(g::text), 100) ELSE 'short ' || g END FROM generate_series(1, 3000) g`,
  );
  const schema = `compiled_${process.pid}`;
  const db = new pg.Client({ connectionString: dest.url });
  await db.connect();
  t.after(async () => {
    await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
    await db.end();
  });
  await db.query(`CREATE SCHEMA ${schema}; CREATE TABLE ${schema}.items (id bigint PRIMARY KEY, name text, price numeric(10,2), at timestamptz, doc text NOT NULL)`);
  const prefix = uniquePrefix();
  const sourceFile = join(dir, 'source.json');
  const sinkFile = join(dir, 'sink.json');
  writeFileSync(sourceFile, JSON.stringify(testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, prefix })));
  writeFileSync(
    sinkFile,
    JSON.stringify(sinkConfig({ kafka: env.bootstrap, registry: env.registryUrl, destination: dest.url, prefix, groupId: `g-${prefix}` }, { tables: { 'public.items': { schema } } })),
  );
  const children: CliChild[] = [spawnCli('source', sourceFile, { bin: entry })];
  t.after(() => children.forEach((c) => c.proc.kill('SIGKILL')));
  const fail = (err: Error) => {
    throw new Error(`${err.message}\n${children.map((c) => c.output()).join('\n')}`);
  };
  // The sink once the source made its topic: started together, it found none and looked again only after its 10 s topic refresh.
  const admin = env.kafka.admin();
  await waitFor('the source to make its topic', async () => children[0].proc.exitCode !== null || (await admin.listTopics()).includes(`${prefix}.public.items`), { timeoutMs: 60_000, intervalMs: 100 })
    .catch(fail)
    .finally(() => admin.disconnect());
  children.push(spawnCli('sink', sinkFile, { bin: entry }));
  const count = async () => Number((await db.query(`SELECT count(*)::int AS n FROM ${schema}.items`)).rows[0].n);
  await waitFor('the snapshot in the destination', async () => (await count()) === 3000, { timeoutMs: 120_000, intervalMs: 200 }).catch(fail);
  await client.query(`UPDATE items SET price = price * 2 WHERE id % 3 = 0; DELETE FROM items WHERE id % 5 = 0; INSERT INTO items VALUES (5001, 'new', 9.99, now(), 'new doc')`);
  const columns = ['id', 'name', 'price', 'at', 'doc'];
  const want = await tableText(client, 'items', columns, 'id');
  await waitFor('the changes in the destination', async () => JSON.stringify(await tableText(db, `${schema}.items`, columns, 'id')) === JSON.stringify(want), {
    timeoutMs: 60_000,
    intervalMs: 200,
  }).catch(fail);
  // The compiled layout (dist/) has no package.json beside the source connector: its records said "unknown".
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  const records = await readDecoded(env.kafka, new RegistryDecoder(env.registryUrl), `${prefix}.public.items`);
  assert.deepEqual([...new Set(records.flatMap((r) => (r.value ? [r.value.source.version] : [])))], [pkg.version]);
  for (const c of children) c.proc.kill('SIGTERM');
  const exits = await Promise.all(children.map((c) => c.exited));
  assert.deepEqual(exits.map((e) => e.code), [143, 143], children.map((c) => c.output()).join('\n'));
});
