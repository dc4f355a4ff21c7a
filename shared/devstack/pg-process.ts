/**
 * Finding the PostgreSQL server binaries and watching server processes through /proc.
 * Used by postgres.ts; synchronous so that exit hooks can use it too.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface PgBinaries {
  binDir: string;
  initdb: string;
  pgCtl: string;
  postgres: string;
  /** Major version, e.g. 15. */
  major: number;
  /** `postgres --version`, e.g. "postgres (PostgreSQL) 15.14 (Debian 15.14-1)". */
  version: string;
  /** Set when we run as root: the server binaries run as this OS user. */
  runAs?: { user: string; uid: number; gid: number };
}

const MIN_MAJOR = 15;
const INSTALL_HINT = `install the PostgreSQL server, version ${MIN_MAJOR} or newer (Debian/Ubuntu: apt-get install postgresql)`;
const cached = new Map<string, PgBinaries>();

/** `binDir`'s, else pg_config --bindir, else the newest /usr/lib/postgresql/<major>/bin, else PATH. */
export function findPgBinaries(binDir?: string): PgBinaries {
  const known = cached.get(binDir ?? '');
  if (known) return known;
  const found = binDir === undefined ? systemBinDir() : binDir;
  if (!['initdb', 'pg_ctl', 'postgres'].every((b) => isExecutable(path.join(found, b)))) {
    throw new Error(`PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in ${found}: ${INSTALL_HINT}`);
  }
  const postgres = path.join(found, 'postgres');
  const version = spawnSync(postgres, ['--version'], { encoding: 'utf8' });
  const major = Number(/\(PostgreSQL\)\s+(\d+)/.exec(version.stdout ?? '')?.[1] ?? NaN);
  if (!(major >= MIN_MAJOR)) {
    throw new Error(`${postgres} reports "${(version.stdout ?? '').trim()}"; ShardBridge needs PostgreSQL ${MIN_MAJOR}+: ${INSTALL_HINT}`);
  }
  const bins = { binDir: found, initdb: path.join(found, 'initdb'), pgCtl: path.join(found, 'pg_ctl'), postgres, major, version: (version.stdout ?? '').trim(), runAs: pgUserIfRoot() };
  cached.set(binDir ?? '', bins);
  return bins;
}

function systemBinDir(): string {
  const candidates: string[] = [];
  const pgConfig = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  if (pgConfig.status === 0) candidates.push(pgConfig.stdout.trim());
  const debianRoot = '/usr/lib/postgresql';
  if (fs.existsSync(debianRoot)) {
    const majors = fs
      .readdirSync(debianRoot)
      .filter((d) => /^\d+$/.test(d))
      .sort((a, b) => Number(b) - Number(a));
    candidates.push(...majors.map((m) => path.join(debianRoot, m, 'bin')));
  }
  candidates.push(...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean));

  const binDir = candidates.find((d) => ['initdb', 'pg_ctl', 'postgres'].every((b) => isExecutable(path.join(d, b))));
  if (!binDir) {
    throw new Error(`PostgreSQL server binaries (initdb, pg_ctl, postgres) not found via pg_config, ${debianRoot}/*/bin or PATH: ${INSTALL_HINT}`);
  }
  return binDir;
}

/** As root: the OS user the server binaries run as (postgres refuses root). */
export function pgUserIfRoot(): PgBinaries['runAs'] {
  if (process.getuid?.() !== 0) return undefined;
  const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) {
    throw new Error('running as root, but there is no `postgres` OS user to run the server as (postgres refuses root): create one (useradd -r postgres) or run as another user');
  }
  return { user: 'postgres', uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** Give a tree (not following links) to `owner`: the postgres OS user the server binaries run as, when we are root. */
export function chownTree(dir: string, owner: { uid: number; gid: number }): void {
  fs.lchownSync(dir, owner.uid, owner.gid);
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) chownTree(p, owner);
    else fs.lchownSync(p, owner.uid, owner.gid);
  }
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** The postmaster's pid from postmaster.pid, if the file is there. */
export function postmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether a process exists. A zombie counts as dead unless `countZombies`: a killed
 * postmaster is reparented to PID 1, which in a container may never reap it.
 */
export function isAlive(pid: number, opts: { countZombies?: boolean } = {}): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return opts.countZombies ? true : procState(pid) !== 'Z';
}

export function processGone(pid: number): boolean {
  return !isAlive(pid);
}

/** All processes below `pid` (Linux /proc; empty elsewhere). */
export function descendants(pid: number): number[] {
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return [];
  }
  const children = new Map<number, number[]>();
  for (const e of entries) {
    const ppid = procStat(Number(e))?.ppid;
    if (ppid === undefined) continue;
    const list = children.get(ppid) ?? [];
    list.push(Number(e));
    children.set(ppid, list);
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    for (const c of children.get(queue.shift()!) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

function procState(pid: number): string | undefined {
  return procStat(pid)?.state;
}

function procStat(pid: number): { state: string; ppid: number } | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0], ppid: Number(rest[1]) };
  } catch {
    return undefined;
  }
}
