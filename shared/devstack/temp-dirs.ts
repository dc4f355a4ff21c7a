/**
 * Temp dirs of the dev stack (cluster data, broker logs, demo configs) carry their owner's
 * pid in their name. Exit hooks remove them, but nothing runs when the owner dies by SIGKILL
 * (or OOM): the next start removes those whose owner is gone, stopping a server still running
 * in one (without setpriv nothing else kills it).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { isAlive, postmasterPid } from './pg-process.ts';

const execFileP = promisify(execFile);

/** `<tmp>/<prefix>-p<pid>-XXXXXX`, e.g. `shardbridge-pg-source-p4242-a1B2c3`. */
export function ownedTempDir(prefix: string, root = os.tmpdir()): string {
  return fs.mkdtempSync(path.join(root, `${prefix}-p${process.pid}-`));
}

const OWNED = /^shardbridge-[A-Za-z0-9_-]*?-p(\d+)-[A-Za-z0-9]{6}$/;

/**
 * `<target>.partial-p<pid>-XXXXXX` beside `target`: a fetch fills it, then renames it to
 * `target`. A fetch stopped by SIGKILL leaves it behind (tens of MB); the next fetch of the
 * same target removes those whose owner is gone, never another live fetch's.
 */
export async function ownedPartialDir(target: string): Promise<string> {
  const dir = path.dirname(target);
  const base = path.basename(target);
  reapStaleTempDirs(dir, new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.partial-p(\\d+)-[A-Za-z0-9]{6}$`));
  return fs.promises.mkdtemp(path.join(dir, `${base}.partial-p${process.pid}-`));
}

/**
 * Copies `template` into `dest` (`cp -a`: owner and modes kept), made first by `make(dir)` when
 * `marker` is missing in it: into a partial dir renamed when complete, so concurrent starts each
 * make their own and the first rename wins; the others use it.
 */
export async function copyOfTemplate(template: string, marker: string, make: (dir: string) => Promise<void>, dest: string): Promise<void> {
  if (!fs.existsSync(path.join(template, marker))) {
    const partial = await ownedPartialDir(template);
    try {
      await make(partial);
      try {
        fs.renameSync(partial, template);
      } catch (err) {
        // Another start made it meanwhile (ENOTEMPTY / EEXIST): use theirs.
        if (!fs.existsSync(path.join(template, marker))) throw err;
      }
    } finally {
      fs.rmSync(partial, { recursive: true, force: true });
    }
  }
  fs.mkdirSync(dest, { recursive: true });
  await execFileP('cp', ['-a', `${template}/.`, dest]);
}

/** Removes the owned temp dirs under `root` whose owner process is gone; returns their paths. */
export function reapStaleTempDirs(root = os.tmpdir(), owned = OWNED): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(root);
  } catch {
    return [];
  }
  const reaped: string[] = [];
  for (const name of names) {
    const owner = Number(owned.exec(name)?.[1]);
    // A zombie owner counts as gone: it uses nothing any more.
    if (!owner || owner === process.pid || isAlive(owner)) continue;
    const dir = path.join(root, name);
    try {
      const server = postmasterPid(dir);
      if (server !== undefined && isAlive(server) && servesDir(server, dir)) process.kill(server, 'SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
      reaped.push(dir);
    } catch {
      // Another user's, or being removed by someone else: not ours to force.
    }
  }
  return reaped;
}

/** Whether `pid` still is the postmaster of `dir` (its pid may belong to another process by now). */
function servesDir(pid: number, dir: string): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(dir);
  } catch {
    return false;
  }
}
