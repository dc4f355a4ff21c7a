/**
 * The value a destination sequence handed out last, read from the sequence itself, and its
 * direction. Both the sink's sequence records and `cutover` move a sequence only past it, in
 * the direction it counts (down for a negative increment: "never lower" would leave a
 * descending sequence handing out values the source already used). Not
 * `pg_sequence_last_value`: that is NULL until the first nextval after CREATE or
 * `ALTER SEQUENCE … RESTART`, and the start value is then no floor (a sequence restarted at
 * 5000 would be moved down to a lower source value).
 */
import type pg from 'pg';

export interface SequenceState {
  /** The last value handed out (one step before the start when never called). */
  last: bigint;
  increment: bigint;
  min: bigint;
  max: bigint;
}

/** `seq`: the server's own text for an existing sequence (regclass output, `pg_get_serial_sequence`), so safe in FROM. */
export async function sequenceState(client: pg.ClientBase, seq: string): Promise<SequenceState> {
  const { rows } = await client.query<{ last_value: string; is_called: boolean; increment: string; min: string; max: string }>(
    `SELECT s.last_value::text, s.is_called, q.seqincrement::text AS increment, q.seqmin::text AS min, q.seqmax::text AS max
       FROM ${seq} s, pg_sequence q WHERE q.seqrelid = $1::regclass`,
    [seq],
  );
  const r = rows[0];
  const increment = BigInt(r.increment);
  // Not called yet: nextval returns last_value itself, so one step before it was the last handed out.
  return { last: r.is_called ? BigInt(r.last_value) : BigInt(r.last_value) - increment, increment, min: BigInt(r.min), max: BigInt(r.max) };
}

/**
 * Why `value` cannot be set on the sequence (beyond its MAXVALUE, or MINVALUE for a descending
 * one), with the statement that widens it; null when it can. `name`: the sequence as SQL. Pure.
 */
export function beyondBound(value: bigint, s: SequenceState, name: string): string | null {
  const down = s.increment < 0n;
  const at = down ? s.min : s.max;
  if (down ? value >= at : value <= at) return null;
  const bound = down ? 'MINVALUE' : 'MAXVALUE';
  return `the source handed out ${value}, beyond the destination's ${bound} ${at}: the destination sequence cannot take its values; widen it (ALTER SEQUENCE ${name} AS bigint ${bound} ${down ? '-9223372036854775808' : '9223372036854775807'})`;
}

/** Whether `value` lies beyond what the sequence handed out, in its direction: only then is it moved there. Pure. */
export function isPast(value: bigint, s: Pick<SequenceState, 'last' | 'increment'>): boolean {
  return s.increment < 0n ? value < s.last : value > s.last;
}
