/** The dev stack's initdb template: one per server build, initdb arguments and time zone; copied into each new cluster. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { PgBinaries } from '../../shared/devstack/pg-process.ts';
import { initdbTemplateName, initFromTemplate, type InitdbKey } from '../../shared/devstack/pg-template.ts';
import { reapStaleTempDirs } from '../../shared/devstack/temp-dirs.ts';

const key: InitdbKey = {
  binDir: '/usr/lib/postgresql/15/bin',
  version: 'postgres (PostgreSQL) 15.14 (Debian 15.14-1)',
  args: ['-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C'],
  tz: undefined,
};

test('the template name is the same for the same build, arguments and time zone, and differs when any of them does', () => {
  const name = initdbTemplateName(15, key);
  assert.match(name, /^shardbridge-initdb-15-[0-9a-f]{16}$/);
  assert.equal(initdbTemplateName(15, { ...key, args: [...key.args] }), name);
  const others = [
    initdbTemplateName(16, key),
    initdbTemplateName(15, { ...key, binDir: '/root/.cache/shardbridge/postgresql-15/native/bin' }),
    initdbTemplateName(15, { ...key, version: 'postgres (PostgreSQL) 15.15' }),
    initdbTemplateName(15, { ...key, args: [...key.args, '--data-checksums'] }),
    initdbTemplateName(15, { ...key, args: ['-A', 'trust', '-U', 'postgres', '-E', 'SQL_ASCII', '--locale=C'] }),
    initdbTemplateName(15, { ...key, tz: 'Europe/Paris' }),
  ];
  assert.equal(new Set([name, ...others]).size, others.length + 1);
});

test('initdb runs once per key: later clusters get a copy; a template dir is never reaped as a dead owner\'s temp dir', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-template-'));
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  const bins = { binDir: key.binDir, version: key.version, major: 15 } as PgBinaries;
  const runs: string[] = [];
  const fakeInitdb = async (dir: string) => {
    runs.push(dir);
    fs.writeFileSync(path.join(dir, 'PG_VERSION'), '15\n');
    fs.mkdirSync(path.join(dir, 'base'));
    fs.writeFileSync(path.join(dir, 'base', 'made-by'), String(runs.length));
  };
  const cluster = (n: string) => fs.mkdtempSync(path.join(root, `shardbridge-pg-${n}-p${process.pid}-`));

  const a = cluster('a');
  const b = cluster('b');
  await initFromTemplate(bins, key, a, fakeInitdb, root);
  await initFromTemplate(bins, key, b, fakeInitdb, root);
  assert.equal(runs.length, 1);
  for (const d of [a, b]) assert.equal(fs.readFileSync(path.join(d, 'base', 'made-by'), 'utf8'), '1');
  // The copy is the cluster's own: writing into it leaves the template as initdb made it.
  fs.writeFileSync(path.join(a, 'base', 'made-by'), 'changed');
  const c = cluster('c');
  await initFromTemplate(bins, key, c, fakeInitdb, root);
  assert.equal(fs.readFileSync(path.join(c, 'base', 'made-by'), 'utf8'), '1');

  await initFromTemplate(bins, { ...key, tz: 'UTC' }, cluster('d'), fakeInitdb, root);
  assert.equal(runs.length, 2);
  assert.ok(runs.every((r) => /\.partial-p\d+-[A-Za-z0-9]{6}$/.test(r)), 'initdb writes into a partial dir, renamed when complete');
  assert.deepEqual(reapStaleTempDirs(root), []);
  assert.deepEqual(fs.readdirSync(root).filter((n) => n.startsWith('shardbridge-initdb-')).sort(), [initdbTemplateName(15, key), initdbTemplateName(15, { ...key, tz: 'UTC' })].sort());
});
