/**
 * The peers ShardBridge is measured against, on the same clusters and data:
 *  - `pg_dump -a -t orders | psql` into a fresh destination database (snapshot peer);
 *  - native logical replication: a publication on the source, a subscription in a fresh
 *    destination database (initial sync, then catch-up of the backlog after DISABLE/ENABLE);
 *  - the decode ceilings on slots created before the backlog: `pg_recvlogical --start
 *    --endpos` to /dev/null, and `pg-logical-replication` decoding and discarding
 *    (bare-reader.ts, its own process).
 * Each returns the measured milliseconds; correctness is checked by the caller (verify).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { findPgBinaries } from '../devstack/pg-process.ts';
import { waitFor } from '../devstack/ports.ts';
import { withClient } from '../demo/session.ts';
import { ORDERS_DDL } from './workload.ts';

export const NATIVE = { publication: 'bench_native', subscription: 'bench_native', database: 'bench_native' } as const;
/** The publication the decode ceilings read (created in both modes, before their slots). */
export const CEILING_PUBLICATION = 'bench_ceiling';

function tool(name: string): string {
  return path.join(findPgBinaries().binDir, name);
}

/** Runs a program to its end; rejects on a non-zero exit with its stderr. */
export function runProgram(file: string, args: string[], opts: { stdin?: NodeJS.ReadableStream; timeoutMs?: number } = {}): Promise<{ stdout: string; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    if (opts.stdin) opts.stdin.pipe(child.stdin!);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 600_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve({ stdout, ms: performance.now() - t0 });
      else reject(new Error(`${path.basename(file)} exited with ${code ?? signal}: ${stderr.trim()}`));
    });
  });
}

/** `pg_dump -a -t public.orders SRC | psql DST`, DST's table created first. */
export async function pgDumpPeer(srcUrl: string, dstUrl: string): Promise<number> {
  await withClient(dstUrl, (c) => c.query(ORDERS_DDL));
  const t0 = performance.now();
  const dump = spawn(tool('pg_dump'), ['-a', '-t', 'public.orders', '-d', srcUrl], { stdio: ['ignore', 'pipe', 'pipe'] });
  let dumpErr = '';
  dump.stderr!.setEncoding('utf8').on('data', (d: string) => (dumpErr += d));
  const dumped = new Promise<void>((resolve, reject) =>
    dump.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`pg_dump exited with ${code}: ${dumpErr.trim()}`)))),
  );
  await Promise.all([runProgram(tool('psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', dstUrl], { stdin: dump.stdout! }), dumped]);
  return performance.now() - t0;
}

/** Source side: the publication the native subscription and the decode ceilings read. */
export async function createNativePublication(src: pg.ClientBase): Promise<void> {
  await src.query(`CREATE PUBLICATION ${NATIVE.publication} FOR TABLE public.orders`);
}

/**
 * CREATE SUBSCRIPTION (copy_data) in a fresh database and time it until the table's initial
 * copy has committed (pg_subscription_rel state f/s/r: the copy and the state change commit
 * together).
 */
export async function nativeInitialSync(src: { host: string; port: number; database: string }, dstUrl: string, deadlineMs: number): Promise<number> {
  return withClient(dstUrl, async (c) => {
    await c.query(ORDERS_DDL);
    const conninfo = `host=${src.host} port=${src.port} dbname=${src.database} user=postgres`;
    const t0 = performance.now();
    await c.query(`CREATE SUBSCRIPTION ${NATIVE.subscription} CONNECTION '${conninfo}' PUBLICATION ${NATIVE.publication}`);
    await waitFor(
      'the native initial sync',
      async () => {
        const { rows } = await c.query(`SELECT count(*)::int AS n, count(*) FILTER (WHERE srsubstate NOT IN ('f', 's', 'r'))::int AS pending FROM pg_subscription_rel`);
        return rows[0].n > 0 && rows[0].pending === 0;
      },
      { timeoutMs: deadlineMs, intervalMs: 20 },
    );
    return performance.now() - t0;
  });
}

/** DISABLE the subscription and wait until its walsender has let go of the slot. */
export async function nativeDisable(srcUrl: string, dstUrl: string): Promise<void> {
  await withClient(dstUrl, (c) => c.query(`ALTER SUBSCRIPTION ${NATIVE.subscription} DISABLE`));
  await waitSlotInactive(srcUrl, NATIVE.subscription, 60_000);
}

/**
 * ENABLE the subscription and time it until the backlog's last transaction (an insert of row
 * `fenceId`) is visible: the apply worker applies in commit order, so everything before it is too.
 */
export async function nativeCatchup(dstUrl: string, fenceId: string, deadlineMs: number): Promise<number> {
  return withClient(dstUrl, async (c) => {
    const t0 = performance.now();
    await c.query(`ALTER SUBSCRIPTION ${NATIVE.subscription} ENABLE`);
    await waitFor('the native catch-up', async () => (await c.query('SELECT 1 FROM public.orders WHERE id = $1', [fenceId])).rowCount === 1, { timeoutMs: deadlineMs, intervalMs: 10 });
    return performance.now() - t0;
  });
}

export async function waitSlotInactive(srcUrl: string, slot: string, deadlineMs: number): Promise<void> {
  await withClient(srcUrl, (c) =>
    waitFor(
      `slot ${slot} to be released`,
      async () => {
        const { rows } = await c.query('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [slot]);
        return rows.length === 0 || rows[0].active === false;
      },
      { timeoutMs: deadlineMs, intervalMs: 50 },
    ),
  );
}

/** `pg_recvlogical --start --endpos` to /dev/null: the raw pgoutput decode rate. */
export async function recvlogicalPeer(srcUrl: string, slot: string, endLsn: string): Promise<number> {
  const args = ['-d', srcUrl, '-S', slot, '--start', '-E', endLsn, '-n', '-F', '0', '-o', 'proto_version=1', '-o', `publication_names=${CEILING_PUBLICATION}`, '-f', '/dev/null'];
  return (await runProgram(tool('pg_recvlogical'), args)).ms;
}

const BARE_READER = fileURLToPath(new URL('./bare-reader.ts', import.meta.url));

/** The bare `pg-logical-replication` reader in its own process; its own timing and peak RSS. */
export async function bareReadPeer(srcUrl: string, slot: string, changes: number): Promise<{ ms: number; changes: number; peakRssMb: number | null }> {
  const arg = JSON.stringify({ url: srcUrl, slot, publication: CEILING_PUBLICATION, changes });
  const { stdout } = await runProgram(process.execPath, ['--import', 'tsx', BARE_READER, arg]);
  const r = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as { ms: number; changes: number; peakRssMb: number | null; error?: string };
  if (r.error) throw new Error(`bare reader: ${r.error}`);
  return r;
}
