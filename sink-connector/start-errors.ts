/**
 * The sink's start-up failures in words that name what failed: the server (never credentials),
 * or the key, with a remedy. The connector wraps each start-up step with these.
 */
import { pgRemedy } from '../shared/config/common.ts';
import { ConfigError } from '../shared/errors.ts';

const DESTINATION_REMEDY =
  'check destination.url (or host, port, database, user, password), that the server accepts connections from here (pg_hba.conf), and that the role may create the schema shardbridge';

/** What to do about a destination failure at start. */
export function destinationRemedy(err: unknown): string {
  return pgRemedy(err, 'destination', DESTINATION_REMEDY);
}

/** A taken metrics port: a config error naming the key (exit 2), as the source's. */
export function metricsPortError(port: number, err: unknown): ConfigError {
  return new ConfigError(`config: metricsPort: cannot serve metrics on port ${port}: ${(err as Error).message}`, {
    cause: err,
    context: { key: 'metricsPort' },
    remedy: 'choose a free metricsPort (0: any free port), or stop what listens there (another sink?)',
  });
}
