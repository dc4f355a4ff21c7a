/**
 * The commands against a real PostgreSQL that wants a password (SCRAM), given a wrong one with
 * URL-special characters: each failure names the server (source or destination, host:port) and
 * a remedy, exits 1, and no output carries the password in any form. And a registry (or a proxy
 * before it) whose 401 answer echoes the credentials it got: the error and the logs mask them.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import pino from 'pino';
import { SchemaError } from '../../shared/errors.ts';
import { redactDeep } from '../../shared/redact.ts';
import { RegistryClient } from '../../shared/registry/registry-client.ts';
import type { PgCluster } from '../../shared/devstack/postgres.ts';
import { runCli } from '../helpers/cli.ts';
import { startTestSource } from '../helpers/postgres.ts';

const PW = 'p@ss:w/rd%20?#S3CRET';
const WRONG = `x${PW}`;
const ROLE = 'auditor';
const dir = mkdtempSync(join(tmpdir(), 'sb-secrets-audit-'));
let cluster: PgCluster;

before(async () => {
  cluster = await startTestSource();
  const hba = join(cluster.dataDir, 'pg_hba.conf');
  writeFileSync(hba, `host all ${ROLE} 127.0.0.1/32 scram-sha-256\n` + readFileSync(hba, 'utf8'));
  const su = new pg.Client({ connectionString: cluster.url() });
  await su.connect();
  try {
    await su.query(`CREATE ROLE ${ROLE} LOGIN SUPERUSER PASSWORD '${PW}'`);
    await su.query('CREATE TABLE public.items (id int PRIMARY KEY, v text)');
    await su.query('SELECT pg_reload_conf()');
  } finally {
    await su.end();
  }
});

after(async () => {
  await cluster?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

/** Source and sink configs: the source by URL (password percent-encoded), the destination by fields. */
function configs(name: string, o: { sourcePw: string; destinationPw: string }): string[] {
  const common = { kafka: { brokers: ['127.0.0.1:9'] }, schemaRegistry: { url: 'http://127.0.0.1:9' } };
  const source = join(dir, `${name}-source.json`);
  const sink = join(dir, `${name}-sink.json`);
  const url = `postgres://${ROLE}:${encodeURIComponent(o.sourcePw)}@127.0.0.1:${cluster.port}/postgres`;
  writeFileSync(source, JSON.stringify({ ...common, source: { url } }));
  writeFileSync(sink, JSON.stringify({ ...common, destination: { host: '127.0.0.1', port: cluster.port, database: 'postgres', user: ROLE, password: o.destinationPw } }));
  return ['--source-config', source, '--sink-config', sink];
}

function assertNoSecret(text: string): void {
  const forms = [PW, encodeURIComponent(PW), 'S3CRET', Buffer.from(PW).toString('base64').slice(0, 16), Buffer.from(`${ROLE}:${PW}`).toString('base64').slice(0, 16)];
  for (const form of forms) assert.ok(!text.includes(form), `output shows the password (${form}):\n${text}`);
}

const endpoint = () => `127.0.0.1:${cluster.port}/postgres`;

test('a wrong source password: schema copy, cleanup and cutover name the source PostgreSQL and a remedy, never the password', async () => {
  const args = configs('bad-source', { sourcePw: WRONG, destinationPw: PW });
  for (const cmd of [['schema', 'copy', '--dry-run'], ['cleanup'], ['cutover', '--verify-only']]) {
    const r = await runCli([...cmd, ...args, '--verbose']);
    const all = r.stdout + r.stderr;
    assert.equal(r.code, 1, `${cmd.join(' ')}: ${all}`);
    assert.match(all, new RegExp(`cannot connect to the source PostgreSQL at ${endpoint()}: password authentication failed for user "${ROLE}"`), cmd.join(' '));
    if (cmd[0] !== 'cutover') assert.match(r.stderr, /remedy: check the password \(source\.password, or the one in source\.url, percent-encoded, or the content of source\.passwordFile\)/, cmd.join(' '));
    assertNoSecret(all);
  }
});

test('a wrong destination password: the same commands name the destination PostgreSQL', async () => {
  const args = configs('bad-destination', { sourcePw: PW, destinationPw: WRONG });
  for (const cmd of [['schema', 'copy', '--dry-run'], ['cleanup', '--drop-topics'], ['cutover', '--verify-only', '--json']]) {
    const r = await runCli([...cmd, ...args, '--verbose']);
    const all = r.stdout + r.stderr;
    assert.equal(r.code, 1, `${cmd.join(' ')}: ${all}`);
    assert.match(all, new RegExp(`cannot connect to the destination PostgreSQL at ${endpoint()}: password authentication failed for user \\\\?"${ROLE}`), cmd.join(' '));
    assertNoSecret(all);
  }
});

test('a registry 401 echoing the Authorization header and the password: errors, causes and debug logs mask them', async (t) => {
  const srv = createServer((req, res) => {
    const echoed = `Unauthorized: ${req.headers.authorization} (user:password ${Buffer.from(String(req.headers.authorization).slice(6), 'base64').toString()})`;
    res.writeHead(401, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error_code: 401, message: echoed }));
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.after(() => srv.close());
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (l: string) => void lines.push(l) });
  const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
  const client = new RegistryClient({ url, username: 'reg', password: PW, logger, retries: 0 });
  const schema = { type: 'record', name: 'r', fields: [{ name: 'id', type: 'int' }] };
  for (const call of [() => client.register('s-value', schema), () => client.subjects(), () => client.getSchema(1)]) {
    const err = await call().then(() => assert.fail('expected a refusal'), (e: unknown) => e);
    assert.ok(err instanceof SchemaError, String(err));
    assert.equal(err.context.status, 401);
    assert.match(err.message, /Unauthorized: Basic \*\*\* \(user:password \*\*\*\)/);
    assertNoSecret(JSON.stringify(redactDeep(err)) + String((err.cause as Error)?.message));
    logger.warn({ err }, 'refused');
  }
  assertNoSecret(lines.join(''));
});
