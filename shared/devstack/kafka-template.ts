/**
 * KRaft's format step once per Kafka build and broker settings, copied after: the StorageTool
 * is a JVM of its own (~1-2 s) before every broker start, where copying what it wrote takes
 * milliseconds. Each copy gets a cluster id and log-dir id of its own, as a format would give
 * it. Kept in the cache directory (SHARDBRIDGE_CACHE). Formats that add SCRAM credentials are
 * not cached (kafka.ts runs them each time).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { shardbridgeCacheDir } from './kafka-jars.ts';
import { copyOfTemplate } from './temp-dirs.ts';

export interface FormatKey {
  /** The Kafka release and the jars run. */
  version: string;
  libsDir: string;
  /** server.properties as the format reads it, ports and paths left out (they are not stored). */
  props: string;
}

/** `shardbridge-kafka-format-<hash>`: equal exactly when every part of the key is; never taken for a dead owner's temp dir. */
export function kafkaFormatTemplateName(key: FormatKey): string {
  const hash = crypto.createHash('sha256').update(JSON.stringify([key.version, key.libsDir, key.props])).digest('hex').slice(0, 16);
  return `shardbridge-kafka-format-${hash}`;
}

/** meta.properties with the cluster id and the log dir's id replaced (the lines present stay in their order). Pure. */
export function withFreshIds(meta: string, ids: { clusterId: string; directoryId: string }): string {
  return meta
    .replace(/^cluster\.id=.*$/m, `cluster.id=${ids.clusterId}`)
    .replace(/^directory\.id=.*$/m, `directory.id=${ids.directoryId}`);
}

/**
 * Fills `logDir` with a copy of the formatted log dir for `key`, made first by `format(dir)`
 * when missing (into a partial dir renamed when complete: concurrent starts each make their
 * own, the first rename wins), with fresh ids from `newId`.
 */
export async function formatFromTemplate(
  key: FormatKey,
  logDir: string,
  format: (dir: string) => Promise<void>,
  newId: () => string,
  root = shardbridgeCacheDir(),
): Promise<void> {
  // Not in TMPDIR: a cache, not a leftover of this process (the demo's tests look for those there).
  fs.mkdirSync(root, { recursive: true });
  const template = path.join(root, kafkaFormatTemplateName(key));
  await copyOfTemplate(template, 'meta.properties', format, logDir);
  const meta = path.join(logDir, 'meta.properties');
  fs.writeFileSync(meta, withFreshIds(fs.readFileSync(meta, 'utf8'), { clusterId: newId(), directoryId: newId() }));
}
