/**
 * A `pg-logical-replication` output plugin that starts pgoutput and hands each message
 * over as raw bytes. The library's own PgoutputPlugin runs `pg`'s global type parsers
 * (lossy: microseconds, -0, duplicate JSON keys, infinity); our decoder
 * (pgoutput-decoder.ts) runs in our pipeline instead.
 */
import { quoteIdent as sqlQuoteIdent, quoteLiteral } from '../shared/sql.ts';
import type { Client } from 'pg';
import type { AbstractPlugin } from 'pg-logical-replication/dist/output-plugins/abstract.plugin.js';
import { ConfigError } from '../shared/errors.ts';
import { formatLsn, parseLsn } from './pgoutput-decoder.ts';

export interface RawPgoutputOptions {
  /** Publications to stream; each is quoted as an identifier (case and commas kept). */
  publicationNames: string[];
  /** Ask for pg_logical_emit_message() output ('M' messages). Default true. */
  messages?: boolean;
}

/** Duck-types the library's AbstractPlugin (which its index does not export). */
export class RawPgoutputPlugin implements AbstractPlugin<RawPgoutputOptions> {
  readonly options: RawPgoutputOptions;

  constructor(options: RawPgoutputOptions) {
    if (options.publicationNames.length === 0) {
      throw new ConfigError('at least one publication name is required', { context: { key: 'publicationNames' } });
    }
    this.options = options;
  }

  get name(): string {
    return 'pgoutput';
  }

  /**
   * The message bytes as they are: a view into pg-protocol's read buffer, valid until the
   * next socket read. The stream handles each message before that or copies it
   * (message-pump.ts); the library's own flowControl queue would need a copy here.
   */
  parse(buffer: Buffer): Buffer {
    return buffer;
  }

  start(client: Client, slotName: string, lastLsn: string): Promise<any> {
    return client.query(startReplicationSql(slotName, lastLsn, this.options));
  }
}

/**
 * `START_REPLICATION SLOT "slot" LOGICAL 16/B374D848 (proto_version '1', publication_names '"a","b"', messages 'true')`.
 * Protocol version 1 only: v2 streaming prefixes messages with an xid our decoder does not expect.
 */
export function startReplicationSql(slotName: string, lastLsn: string, options: RawPgoutputOptions): string {
  // Re-format the LSN so that nothing but hex digits and '/' reaches the command.
  const lsn = formatLsn(parseLsn(lastLsn));
  const publications = options.publicationNames.map(quoteIdent).join(',');
  const opts = [
    `proto_version '1'`,
    `publication_names ${quoteLiteral(publications)}`,
    `messages '${options.messages ?? true}'`,
  ];
  return `START_REPLICATION SLOT ${quoteIdent(slotName)} LOGICAL ${lsn} (${opts.join(', ')})`;
}

/**
 * The argument for the library's `acknowledge(lsn)` that confirms exactly `lsn`. The library
 * reports `lsn + 1` as flushed; confirming one byte past a commit's end LSN skips a
 * transaction whose commit record starts right there (on restart decoding starts at the
 * confirmed position), so we subtract the byte it adds.
 */
export function ackArgument(lsn: bigint): string {
  if (lsn <= 0n) throw new RangeError(`cannot acknowledge LSN ${lsn}`);
  return formatLsn(lsn - 1n);
}

/** "name" with embedded double quotes doubled (replication grammar and publication_names list). */
export function quoteIdent(name: string): string {
  if (name.length === 0 || name.includes('\0')) {
    throw new ConfigError(`invalid identifier ${JSON.stringify(name)}`, { context: { identifier: name } });
  }
  return sqlQuoteIdent(name);
}
