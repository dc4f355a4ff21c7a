/**
 * The sink's start-up failures in words that name what failed: the server (never credentials),
 * or the key, with a remedy. The connector wraps each start-up step with these (a taken
 * metricsPort: shared/metrics.ts, metricsPortError).
 */
import { pgRemedy } from '../shared/config/postgres.ts';

const DESTINATION_REMEDY =
  'check destination.url (or host, port, database, user, password), that the server accepts connections from here (pg_hba.conf), and that the role may create the schema shardbridge';

/** What to do about a destination failure at start. */
export function destinationRemedy(err: unknown): string {
  return pgRemedy(err, 'destination', DESTINATION_REMEDY);
}
