/**
 * initdb once per server build, copy after: a cluster start (every test file starts one or
 * more) spent ~0.5 s in initdb, ~1-2 s on a loaded machine, where copying its result takes
 * ~0.1 s. The template is keyed by everything initdb's output depends on (the server build,
 * its arguments, the time zone it writes into postgresql.conf), kept in the cache directory
 * (SHARDBRIDGE_CACHE, pg-servers.ts) and never started itself.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { PgBinaries } from './pg-process.ts';
import { giveNewSystemIdentifier } from './pg-control.ts';
import { pgCacheRoot } from './pg-servers.ts';
import { copyOfTemplate } from './temp-dirs.ts';

export interface InitdbKey {
  /** The server build: its bin directory and `postgres --version` line. */
  binDir: string;
  version: string;
  /** initdb's arguments, without -D. */
  args: readonly string[];
  /** TZ of the environment: initdb writes the zone it finds into postgresql.conf. */
  tz: string | undefined;
}

/**
 * `shardbridge-initdb-<major>-<hash>`: a name the temp-dir reaper never takes for a dead
 * owner's dir (no `-p<pid>-XXXXXX` tail), equal exactly when every part of the key is.
 */
export function initdbTemplateName(major: number, key: InitdbKey): string {
  const hash = crypto.createHash('sha256').update(JSON.stringify([key.binDir, key.version, key.args, key.tz ?? null])).digest('hex').slice(0, 16);
  return `shardbridge-initdb-${major}-${hash}`;
}

/**
 * Fills the empty `dataDir` (already the postgres user's) with a copy of the template for
 * `key`, made first by `initdb(dir)` when missing. Concurrent starts each initdb into a
 * partial dir of their own; the first rename wins, the others use it.
 */
export async function initFromTemplate(
  bins: PgBinaries,
  key: InitdbKey,
  dataDir: string,
  initdb: (dir: string) => Promise<void>,
  root = pgCacheRoot(bins.runAs !== undefined),
): Promise<void> {
  // Not in TMPDIR: a cache, not a leftover of this process (the demo's tests look for those there).
  fs.mkdirSync(root, { recursive: true, mode: 0o755 });
  const template = path.join(root, initdbTemplateName(bins.major, key));
  const make = async (dir: string) => {
    fs.chmodSync(dir, 0o700);
    if (bins.runAs) fs.chownSync(dir, bins.runAs.uid, bins.runAs.gid);
    await initdb(dir);
  };
  // cp -a keeps owner (as root: the postgres user) and modes (0700: postgres insists).
  await copyOfTemplate(template, 'PG_VERSION', make, dataDir);
  giveNewSystemIdentifier(dataDir);
}
