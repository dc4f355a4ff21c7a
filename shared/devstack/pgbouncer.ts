/**
 * A throwaway PgBouncer in front of a test cluster (tests of the start-up's pooler checks): its
 * own ini and userlist in a temp dir, a free port, trust auth, stopped by the caller.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { findPgBinaries } from './pg-process.ts';
import { freePort, waitFor } from './ports.ts';
import { ownedTempDir } from './temp-dirs.ts';

export interface PgBouncer {
  port: number;
  /** postgres://<user>@127.0.0.1:<port>/<db> through the pooler (defaults: postgres, postgres). */
  url(db?: string, user?: string): string;
  stop(): Promise<void>;
}

const INSTALL_HINT = 'install PgBouncer (Debian/Ubuntu: apt-get install pgbouncer)';

/** The pgbouncer binary on PATH or in /usr/sbin; null when it is not installed. */
export function findPgBouncer(): string | null {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), '/usr/sbin', '/usr/local/sbin'];
  for (const d of dirs) {
    const f = path.join(d, 'pgbouncer');
    try {
      fs.accessSync(f, fs.constants.X_OK);
      return f;
    } catch {
      // next
    }
  }
  return null;
}

export async function startPgBouncer(opts: { serverPort: number; poolMode: 'session' | 'transaction'; ignoreStartupParameters?: string[]; users?: string[] }): Promise<PgBouncer> {
  const bin = findPgBouncer();
  if (!bin) throw new Error(`pgbouncer not found on PATH or in /usr/sbin: ${INSTALL_HINT}`);
  // PgBouncer refuses to run as root: as the OS user the test clusters run as.
  const runAs = findPgBinaries().runAs;
  const dir = ownedTempDir('shardbridge-pgbouncer');
  const port = await freePort();
  const ini = [
    '[databases]',
    `* = host=127.0.0.1 port=${opts.serverPort}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    `unix_socket_dir = ${dir}`,
    'auth_type = trust',
    `auth_file = ${path.join(dir, 'userlist.txt')}`,
    `pool_mode = ${opts.poolMode}`,
    ...(opts.ignoreStartupParameters?.length ? [`ignore_startup_parameters = ${opts.ignoreStartupParameters.join(',')}`] : []),
    `logfile = ${path.join(dir, 'pgbouncer.log')}`,
    'default_pool_size = 4',
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'pgbouncer.ini'), `${ini}\n`);
  // trust: no password is asked, but the user must be listed.
  fs.writeFileSync(path.join(dir, 'userlist.txt'), ['postgres', ...(opts.users ?? [])].map((u) => `"${u}" ""\n`).join(''));
  if (runAs) {
    fs.chmodSync(dir, 0o755);
    spawnSync('chown', ['-R', `${runAs.uid}:${runAs.gid}`, dir]);
  }
  const proc: ChildProcess = spawn(bin, [path.join(dir, 'pgbouncer.ini')], {
    stdio: ['ignore', 'ignore', 'pipe'],
    ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
  });
  let stderr = '';
  proc.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
  let exited = false;
  proc.on('exit', () => (exited = true));
  const stop = async (): Promise<void> => {
    if (!exited) {
      const gone = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGINT');
      await gone;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      'pgbouncer to listen',
      () => {
        if (exited) throw new Error(`pgbouncer exited: ${stderr.trim()} ${readLog(dir)}`);
        return canConnect(port);
      },
      { timeoutMs: 10_000, intervalMs: 50 },
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { port, url: (db = 'postgres', user = 'postgres') => `postgres://${user}@127.0.0.1:${port}/${db}`, stop };
}

function readLog(dir: string): string {
  try {
    return fs.readFileSync(path.join(dir, 'pgbouncer.log'), 'utf8').slice(-2000);
  } catch {
    return '';
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
