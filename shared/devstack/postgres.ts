/**
 * Throwaway PostgreSQL (15+) clusters for the dev stack and tests: initdb into a temp dir,
 * listen on 127.0.0.1 on a free port, logical decoding on, durability off (fsync etc.).
 * As root, every server binary runs as the `postgres` OS user, since postgres refuses root.
 *
 * The postmaster is our child, in a process group of its own (a terminal's Ctrl-C reaches
 * only us, and a graceful shutdown stops it in its turn). Clusters are tracked per process
 * and shut down (immediate mode) from an exit / signal hook, with their temp dirs removed, so
 * a failing or interrupted test leaves none behind; the parent-death signal kills the
 * postmaster when we die by SIGKILL, which no hook sees.
 */
import { execFile, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { pino, type Logger } from 'pino';
import { freePort, waitFor } from './ports.ts';
import { isAlive, postmasterPid, processGone, descendants, type PgBinaries } from './pg-process.ts';
import { devstackPgMajor, pgBinariesFor } from './pg-servers.ts';
import { onSignalUnlessHandled } from './signal-hooks.ts';
import { ownedTempDir, reapStaleTempDirs } from './temp-dirs.ts';
import { dropStandbySlot, makeStandby, type StandbyCopy } from './pg-standby.ts';
import { initFromTemplate } from './pg-template.ts';

const execFileP = promisify(execFile);

export interface PgCluster {
  host: '127.0.0.1';
  port: number;
  dataDir: string;
  /** postgres://user@127.0.0.1:port/db (defaults: postgres, postgres). */
  url(db?: string, user?: string): string;
  superuserUrl: string;
  /** pg_ctl stop -m fast. */
  stop(): Promise<void>;
  /** kill -9 the postmaster (and its children): no shutdown checkpoint, recovery on restart. */
  crash(): Promise<void>;
  /** Starts again on the same port and data (stopping first if running); after crash() this runs recovery. */
  restart(): Promise<void>;
  /** Stops and removes the data dir. */
  destroy(): Promise<void>;
  /** The last lines of the server log. */
  logTail(lines?: number): string;
}

export interface StartPostgresOptions {
  /** Part of the temp dir name, to tell clusters apart in `ps` and /tmp. */
  name?: string;
  /** Extra postgresql.conf settings; they override the defaults. */
  settings?: Record<string, string>;
  /** Kept after exit (a temp dir is removed); reused when it already holds a cluster. */
  dataDir?: string;
  /**
   * A streaming standby of the cluster at this URL (a superuser's, on this machine) instead of
   * initdb: pg_basebackup, or the low-level backup API where the installation lacks it (pg-standby.ts).
   */
  standbyOf?: string;
  /** The standby's physical slot on the primary (primary_slot_name), made when missing; unset: one of its own, dropped with it. */
  standbySlot?: string;
  /**
   * The PostgreSQL major to run (fetched when the machine has another: pg-servers.ts); default
   * SHARDBRIDGE_PG_VERSION, else the machine's.
   */
  major?: number;
  logger?: Logger;
}

/**
 * fsync=off and full_page_writes=off survive a process crash (the kernel keeps the
 * writes); only an OS crash would lose data. synchronous_commit stays on: with it off, a
 * commit acknowledged up to ~3 × wal_writer_delay before crash() is lost, which would make
 * crash tests flaky, and with fsync off it costs one write() per commit, not a flush.
 */
export const DEFAULT_PG_SETTINGS: Readonly<Record<string, string>> = {
  wal_level: 'logical',
  max_replication_slots: '10',
  max_wal_senders: '10',
  fsync: 'off',
  synchronous_commit: 'on',
  full_page_writes: 'off',
  shared_buffers: '128MB',
  max_connections: '100',
  // As on Citus, which raises it from 0 itself: tests leave a two-phase transaction behind.
  max_prepared_transactions: '8',
};

const INITDB_ARGS = ['-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C', '--no-instructions'];
const CONF_FILE = 'shardbridge.conf';
const LOG_FILE = 'shardbridge-server.log';
const START_TIMEOUT_S = 60;

interface Tracked {
  dataDir: string;
  ownDir: boolean;
}
const tracked = new Set<Tracked>();
let hooksInstalled = false;

export async function startPostgres(opts: StartPostgresOptions = {}): Promise<PgCluster> {
  const log = (opts.logger ?? pino({ level: 'silent' })).child({ component: 'postgres', cluster: opts.name });
  const bins = await pgBinariesFor(opts.major ?? devstackPgMajor(), (msg) => log.info(msg));
  const ownDir = opts.dataDir === undefined;
  const safeName = (opts.name ?? 'pg').replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 20);
  if (ownDir) reapStaleTempDirs();
  const dataDir = opts.dataDir ? path.resolve(opts.dataDir) : ownedTempDir(`shardbridge-pg-${safeName}`);
  const entry: Tracked = { dataDir, ownDir };
  tracked.add(entry);
  installExitHooks();

  const logFile = path.join(dataDir, LOG_FILE);
  const logTail = (lines = 50): string => {
    try {
      return fs.readFileSync(logFile, 'utf8').split('\n').slice(-lines - 1).join('\n');
    } catch {
      return '(no server log)';
    }
  };
  const fail = (what: string, err: unknown): Error =>
    new Error(`${what} (data dir ${dataDir}): ${(err as Error).message}\n--- server log tail ---\n${logTail(30)}`, { cause: err });

  let standby: StandbyCopy | undefined;
  try {
    fs.mkdirSync(dataDir, { recursive: true });
    if (!fs.existsSync(path.join(dataDir, 'PG_VERSION'))) {
      giveToPgUser(bins, dataDir);
      if (opts.standbyOf) standby = await makeStandby(bins, runAsPg, dataDir, opts.standbyOf, opts.standbySlot);
      else await initFromTemplate(bins, { binDir: bins.binDir, version: bins.version, args: INITDB_ARGS, tz: process.env.TZ }, dataDir, (dir) => runAsPg(bins, bins.initdb, ['-D', dir, ...INITDB_ARGS]));
    }
    // Our settings live in their own file, rewritten on every start (the port may change).
    const mainConf = path.join(dataDir, 'postgresql.conf');
    const includeLine = `include '${CONF_FILE}'`;
    if (!fs.readFileSync(mainConf, 'utf8').includes(includeLine)) {
      fs.appendFileSync(mainConf, `\n# shardbridge devstack: settings below override the defaults above\n${includeLine}\n`);
    }
  } catch (err) {
    tracked.delete(entry);
    if (ownDir) fs.rmSync(dataDir, { recursive: true, force: true });
    if (standby && opts.standbyOf) await dropStandbySlot(opts.standbyOf, standby);
    const hint = bins.runAs ? ` (the ${bins.runAs.user} OS user must be able to reach it: every parent directory needs o+x)` : '';
    throw fail(`${opts.standbyOf ? 'the standby\'s base backup' : 'initdb'} failed${hint}`, err);
  }

  const settings = { ...DEFAULT_PG_SETTINGS, ...opts.settings };
  let port = 0;
  const start = async (): Promise<void> => {
    // Not `pg_ctl start`: it daemonizes the server, which then outlives a SIGKILLed parent.
    const out = fs.openSync(logFile, 'a');
    let exited: string | undefined;
    try {
      const proc = spawn(...postmasterCommand(bins, dataDir), { cwd: os.tmpdir(), stdio: ['ignore', out, out], detached: true });
      proc.once('exit', (code, signal) => (exited = `exited (code ${code}, signal ${signal})`));
      proc.once('error', (err) => (exited = `could not start: ${err.message}`));
      // Like a pg_ctl-started server, it must not keep this process alive: stop() and the hooks end it.
      proc.unref();
    } finally {
      fs.closeSync(out);
    }
    const deadline = Date.now() + START_TIMEOUT_S * 1000;
    let lastError: unknown;
    // Not waitFor(): a server that exits (port taken, bad setting) must fail at once.
    for (;;) {
      if (exited) throw fail(`postgres did not start on port ${port}`, new Error(`postgres ${exited}`));
      if (await canConnect(port).catch((err: unknown) => ((lastError = err), false))) return;
      if (Date.now() > deadline) throw fail('postgres does not accept connections', new Error(`not ready after ${START_TIMEOUT_S} s: ${(lastError as Error)?.message}`));
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  // The free port can be taken between freePort() and bind(): try a few.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    writeConf(bins, dataDir, port, settings);
    try {
      await start();
      break;
    } catch (err) {
      const portClash = /could not bind|Address already in use|could not create any TCP\/IP sockets/i.test(logTail(30));
      if (!portClash || attempt >= 3) {
        stopSync(entry);
        tracked.delete(entry);
        if (ownDir) fs.rmSync(dataDir, { recursive: true, force: true });
        if (standby && opts.standbyOf) await dropStandbySlot(opts.standbyOf, standby);
        throw err;
      }
      log.warn({ port }, 'port taken, trying another');
    }
  }
  log.info({ port, dataDir }, 'postgres started');

  const url = (db = 'postgres', user = 'postgres'): string =>
    `postgres://${encodeURIComponent(user)}@127.0.0.1:${port}/${encodeURIComponent(db)}`;
  let destroyed = false;
  const alive = (): boolean => {
    const pid = postmasterPid(dataDir);
    return pid !== undefined && isAlive(pid);
  };
  const stop = async (): Promise<void> => {
    if (!alive()) return;
    try {
      await runAsPg(bins, bins.pgCtl, ['stop', '-D', dataDir, '-m', 'fast', '-w', '-t', '60', '-s']);
    } catch (err) {
      throw fail('pg_ctl stop failed', err);
    }
    log.info({ port }, 'postgres stopped');
  };

  return {
    host: '127.0.0.1',
    port,
    dataDir,
    url,
    superuserUrl: url(),
    stop,
    async crash() {
      const pid = postmasterPid(dataDir);
      if (pid === undefined || !isAlive(pid)) throw new Error(`crash(): postgres in ${dataDir} is not running`);
      await killHard(pid, dataDir, port);
      log.info({ port, pid }, 'postgres crashed (SIGKILL)');
    },
    async restart() {
      if (destroyed) throw new Error('restart(): cluster was destroyed');
      await stop();
      await start();
      log.info({ port }, 'postgres restarted');
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      try {
        await stop();
      } catch {
        stopSync(entry);
      }
      tracked.delete(entry);
      fs.rmSync(dataDir, { recursive: true, force: true });
      if (standby && opts.standbyOf) await dropStandbySlot(opts.standbyOf, standby);
    },
    logTail,
  };
}

async function canConnect(port: number): Promise<boolean> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 5_000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } finally {
    await client.end().catch(() => {});
  }
}

function writeConf(bins: PgBinaries, dataDir: string, port: number, settings: Record<string, string>): void {
  const all: Record<string, string> = {
    ...settings,
    listen_addresses: '127.0.0.1',
    port: String(port),
    // Inside the data dir: no clash with a system cluster's /var/run/postgresql, gone with the dir.
    unix_socket_directories: dataDir,
  };
  const lines = Object.entries(all).map(([k, v]) => {
    if (!/^[A-Za-z_][A-Za-z0-9_.]*$/.test(k)) throw new Error(`invalid postgresql.conf setting name: ${k}`);
    return `${k} = '${String(v).replace(/'/g, "''")}'`;
  });
  const file = path.join(dataDir, CONF_FILE);
  fs.writeFileSync(file, `# written by shardbridge devstack on every start\n${lines.join('\n')}\n`);
  if (bins.runAs) fs.chownSync(file, bins.runAs.uid, bins.runAs.gid);
}

function giveToPgUser(bins: PgBinaries, dir: string): void {
  fs.chmodSync(dir, 0o700);
  if (bins.runAs) fs.chownSync(dir, bins.runAs.uid, bins.runAs.gid);
}

let setprivAvailable: boolean | undefined;

/**
 * `postgres -D dataDir`, through `setpriv --pdeathsig KILL` where util-linux has it (the kernel
 * kills the postmaster when we die, whatever kills us; its backends then exit by themselves).
 * As root setpriv also becomes the postgres user, before it sets the signal (a change of user
 * would clear it). setpriv execs, so the child's pid is the postmaster's.
 */
function postmasterCommand(bins: PgBinaries, dataDir: string): [string, string[]] {
  setprivAvailable ??= process.platform === 'linux' && spawnSync('setpriv', ['--version'], { stdio: 'ignore' }).status === 0;
  const server = [bins.postgres, '-D', dataDir];
  const user = bins.runAs ? [`--reuid=${bins.runAs.user}`, `--regid=${bins.runAs.gid}`, '--init-groups'] : [];
  if (setprivAvailable) return ['setpriv', [...user, '--pdeathsig', 'KILL', ...server]];
  return bins.runAs ? ['runuser', ['-u', bins.runAs.user, '--', ...server]] : [server[0], server.slice(1)];
}

/** Runs a PostgreSQL binary, as the postgres OS user when we are root. */
async function runAsPg(bins: PgBinaries, bin: string, args: string[]): Promise<void> {
  const [file, argv] = bins.runAs ? ['runuser', ['-u', bins.runAs.user, '--', bin, ...args]] : [bin, args];
  try {
    // cwd: the postgres user may not be allowed into ours.
    await execFileP(file, argv, { cwd: os.tmpdir(), timeout: (START_TIMEOUT_S + 30) * 1000 });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${path.basename(bin)} ${args[0]} failed: ${(e.stderr || e.stdout || e.message).trim()}`, { cause: err });
  }
}

/**
 * SIGKILL the postmaster and the processes under it, wait until they are gone, and clear
 * the lock files an unreaped (zombie) postmaster would make the next start refuse.
 */
async function killHard(pid: number, dataDir: string, port: number): Promise<void> {
  const pids = [pid, ...descendants(pid)];
  for (const p of pids) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await waitFor(`postgres processes ${pids.join(',')} to die`, () => pids.every(processGone), { timeoutMs: 10_000, intervalMs: 20 });
  // A reaped postmaster leaves a stale lock the next start recognises and clears itself
  // (freeing the old shared memory segment too); only a zombie's lock must go by hand.
  if (isAlive(pid, { countZombies: true })) {
    fs.rmSync(path.join(dataDir, 'postmaster.pid'), { force: true });
    fs.rmSync(path.join(dataDir, `.s.PGSQL.${port}.lock`), { force: true });
  }
}

/** Synchronous immediate shutdown, for exit hooks: SIGQUIT, a short wait, then SIGKILL. */
function stopSync(entry: Tracked): void {
  const pid = postmasterPid(entry.dataDir);
  if (pid === undefined || !isAlive(pid)) return;
  const pids = [pid, ...descendants(pid)];
  try {
    process.kill(pid, 'SIGQUIT');
  } catch {
    return;
  }
  const deadline = Date.now() + 5_000;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  while (!pids.every(processGone) && Date.now() < deadline) Atomics.wait(pause, 0, 0, 20);
  for (const p of pids) {
    if (!processGone(p)) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  }
}

function cleanupAllSync(): void {
  for (const entry of tracked) {
    try {
      stopSync(entry);
      if (entry.ownDir) fs.rmSync(entry.dataDir, { recursive: true, force: true });
    } catch {
      // best effort while exiting
    }
  }
  tracked.clear();
}

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', cleanupAllSync);
  // With a graceful shutdown registered, the clusters stop in its turn (after the connectors).
  onSignalUnlessHandled(cleanupAllSync);
}

/** For callers that want to check the environment before starting anything. */
export { findPgBinaries } from './pg-process.ts';
