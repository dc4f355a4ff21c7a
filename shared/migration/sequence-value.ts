/**
 * The value a destination sequence handed out last, read from the sequence itself. Both the
 * sink's sequence records and `cutover` move a sequence only above it. Not
 * `pg_sequence_last_value`: that is NULL until the first nextval after CREATE or
 * `ALTER SEQUENCE … RESTART`, and the start value is then no floor (a sequence restarted at
 * 5000 would be moved down to a lower source value).
 */
import type pg from 'pg';

/** `seq`: the server's own text for an existing sequence (regclass output, `pg_get_serial_sequence`), so safe in FROM. */
export async function lastSequenceValue(client: pg.ClientBase, seq: string): Promise<bigint> {
  const { rows } = await client.query<{ last_value: string; is_called: boolean; increment: string }>(
    `SELECT s.last_value::text, s.is_called, q.seqincrement::text AS increment FROM ${seq} s, pg_sequence q WHERE q.seqrelid = $1::regclass`,
    [seq],
  );
  const r = rows[0];
  // Not called yet: nextval returns last_value itself, so one step before it was the last handed out.
  return r.is_called ? BigInt(r.last_value) : BigInt(r.last_value) - BigInt(r.increment);
}
