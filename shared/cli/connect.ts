/**
 * The commands' PostgreSQL connections, failing in words that name the server: the bare driver
 * message ("password authentication failed for user x", "connect ECONNREFUSED ...") never says
 * whether the source or the destination refused, nor where it is.
 */
import type pg from 'pg';
import { pgEndpoint, pgRemedy, type PgConnectionConfig } from '../config/postgres.ts';
import { atServer } from '../errors.ts';
import { connectPg } from '../migration/gather.ts';
import { writerFor } from '../../source-connector/standby.ts';

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

/**
 * Where a command writes into the source's WAL (`what`: cutover's heartbeat, resnapshot's
 * request, cleanup's publication drop): on a standby source its `primary`, connected here as
 * `application`, else `src` itself; a standby without `primary` is a ConfigError naming the key
 * (source-connector/standby.ts, writerFor). The caller ends it when it is not `src`.
 */
export function sourceWriter(src: pg.Client, primary: PgConnectionConfig | undefined, application: string, what: string, options?: (user?: string) => string): Promise<pg.Client> {
  return writerFor(src, primary !== undefined, () => connectSide(primary!, 'primary', application, options), what);
}

/** The error `connectSide` throws, for a client the command connects itself. */
export function connectError(err: unknown, section: PgConnectionConfig, side: PgSide) {
  const remedy = `check ${side}.url (or ${side}.host, port, database, user, password), that the server runs and accepts connections from here (pg_hba.conf), and the credentials`;
  return atServer(err, `cannot connect to the ${side} PostgreSQL at ${pgEndpoint(section)}`, pgRemedy(err, side, remedy));
}
