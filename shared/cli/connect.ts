/**
 * The commands' PostgreSQL connections, failing in words that name the server: the bare driver
 * message ("password authentication failed for user x", "connect ECONNREFUSED ...") never says
 * whether the source or the destination refused, nor where it is.
 */
import type pg from 'pg';
import { pgEndpoint, pgRemedy, type PgConnectionConfig } from '../config/postgres.ts';
import { atServer } from '../errors.ts';
import { connectPg } from '../migration/gather.ts';

/** `primary`: a standby source's primary (source-connector/standby.ts). */
export type PgSide = 'source' | 'destination' | 'primary';

/** `connectPg`, its failure a ServiceError "cannot connect to the <side> PostgreSQL at host:port/db: ..." with a remedy. */
export async function connectSide(section: PgConnectionConfig, side: PgSide, application: string, options?: (user?: string) => string): Promise<pg.Client> {
  try {
    return await connectPg(section, side, application, options);
  } catch (err) {
    throw connectError(err, section, side);
  }
}

/** The error `connectSide` throws, for a client the command connects itself. */
export function connectError(err: unknown, section: PgConnectionConfig, side: PgSide) {
  const remedy = `check ${side}.url (or ${side}.host, port, database, user, password), that the server runs and accepts connections from here (pg_hba.conf), and the credentials`;
  return atServer(err, `cannot connect to the ${side} PostgreSQL at ${pgEndpoint(section)}`, pgRemedy(err, side, remedy));
}
