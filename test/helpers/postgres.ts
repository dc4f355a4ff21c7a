/**
 * PostgreSQL for integration tests. Sources are always clusters of our own (tests crash
 * them, change settings, create slots). The destination is SHARDBRIDGE_TEST_DESTINATION
 * when set — an existing PostgreSQL database or Citus coordinator that tests may create
 * and drop tables in — and otherwise a fresh cluster of this test file's own.
 */
import type { ClientBase } from 'pg';
import { startPostgres, type PgCluster } from '../../shared/devstack/postgres.ts';
import { testLogger } from './kafka.ts';

/** `major`: the PostgreSQL major of the cluster started when SHARDBRIDGE_TEST_DESTINATION is unset (fetched when the machine has another). */
export async function getTestDestination(opts: { major?: number } = {}): Promise<{ url: string; release(): Promise<void> }> {
  const shared = process.env.SHARDBRIDGE_TEST_DESTINATION;
  if (shared) return { url: shared, release: async () => {} };
  const cluster = await startPostgres({ name: 'dest', logger: testLogger(), major: opts.major });
  return { url: cluster.url(), release: () => cluster.destroy() };
}

/** A fresh source cluster (wal_level=logical etc.); `settings` override the defaults. Call destroy() when done. */
export function startTestSource(settings?: Record<string, string>, opts: { major?: number } = {}): Promise<PgCluster> {
  return startPostgres({ name: 'source', settings, logger: testLogger(), major: opts.major });
}

/** Whether the database (a SHARDBRIDGE_TEST_DESTINATION, say) has the citus extension. */
export async function hasCitus(client: ClientBase): Promise<boolean> {
  return (await client.query(`SELECT 1 FROM pg_extension WHERE extname = 'citus'`)).rowCount === 1;
}
