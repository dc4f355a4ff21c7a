/** The dev stack's initdb template: one per server build, initdb arguments and time zone; copied into each new cluster. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { PgBinaries } from '../../shared/devstack/pg-process.ts';
import { crc32c, withSystemIdentifier } from '../../shared/devstack/pg-control.ts';
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
    fs.mkdirSync(path.join(dir, 'global'));
    fs.writeFileSync(path.join(dir, 'global', 'pg_control'), fakeControl(7000n + BigInt(runs.length)));
    fs.mkdirSync(path.join(dir, 'pg_wal'));
    fs.writeFileSync(path.join(dir, 'pg_wal', '000000010000000000000001'), fakeSegment(7000n + BigInt(runs.length)));
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
  // Each copy has a system identifier of its own, in pg_control (its CRC made again) and the WAL segment's header.
  const ids = [a, b, c].map((d) => {
    const control = fs.readFileSync(path.join(d, 'global', 'pg_control'));
    assert.equal(control.readUInt32LE(CRC_AT), crc32c(control.subarray(0, CRC_AT)));
    const id = control.readBigUInt64LE(0);
    assert.equal(fs.readFileSync(path.join(d, 'pg_wal', '000000010000000000000001')).readBigUInt64LE(24), id);
    return id;
  });
  assert.equal(new Set([...ids, 7001n]).size, 4);

  await initFromTemplate(bins, { ...key, tz: 'UTC' }, cluster('d'), fakeInitdb, root);
  assert.equal(runs.length, 2);
  assert.ok(runs.every((r) => /\.partial-p\d+-[A-Za-z0-9]{6}$/.test(r)), 'initdb writes into a partial dir, renamed when complete');
  assert.deepEqual(reapStaleTempDirs(root), []);
  assert.deepEqual(fs.readdirSync(root).filter((n) => n.startsWith('shardbridge-initdb-')).sort(), [initdbTemplateName(15, key), initdbTemplateName(15, { ...key, tz: 'UTC' })].sort());
});

// ControlFileData's crc sits after a layout of the major's own; 296 here.
const CRC_AT = 296;

function fakeControl(id: bigint): Buffer {
  const b = Buffer.alloc(8192);
  b.writeBigUInt64LE(id, 0);
  b.writeUInt32LE(1300, 8);
  b.writeUInt32LE(crc32c(b.subarray(0, CRC_AT)), CRC_AT);
  return b;
}

function fakeSegment(id: bigint): Buffer {
  const b = Buffer.alloc(8192);
  b.writeUInt16LE(0xd110, 0);
  b.writeBigUInt64LE(id, 24);
  return b;
}

test('CRC-32C is the Castagnoli CRC; a new system identifier comes with its CRC made again, found wherever the layout puts it', () => {
  assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  for (const at of [200, 296, 340]) {
    const b = Buffer.alloc(8192, 0);
    b.writeBigUInt64LE(7001n, 0);
    b.fill(0x5a, 8, at);
    b.writeUInt32LE(crc32c(b.subarray(0, at)), at);
    const { control, previous } = withSystemIdentifier(b, 0x6a1b2c3d4e5f6071n);
    assert.equal(previous, 7001n);
    assert.equal(control.readBigUInt64LE(0), 0x6a1b2c3d4e5f6071n);
    assert.equal(control.readUInt32LE(at), crc32c(control.subarray(0, at)));
    assert.deepEqual(control.subarray(8, at), b.subarray(8, at));
  }
  assert.throws(() => withSystemIdentifier(Buffer.alloc(8192, 1), 1n), /pg_control: no CRC-32C found/);
});
