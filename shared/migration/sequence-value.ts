/**
 * The value a destination sequence handed out last, read from the sequence itself, and its
 * direction. Both the sink's sequence records and `cutover` move a sequence only past it, in
 * the direction it counts (down for a negative increment: "never lower" would leave a
 * descending sequence handing out values the source already used). Not
 * `pg_sequence_last_value`: that is NULL until the first nextval after CREATE or
 * `ALTER SEQUENCE … RESTART`, and the start value is then no floor (a sequence restarted at
 * 5000 would be moved down to a lower source value). Also the bound a sequence cannot pass,
 * and the `shardbridge.sequence_sync` row both write for what they applied.
 */
import type pg from 'pg';

export interface SequenceState {
  /** The last value handed out (one step before the start when never called). */
  last: bigint;
  /** pg_sequence_last_value as the server reports it: null until the first nextval. */
  reported: string | null;
  increment: bigint;
  min: bigint;
  max: bigint;
}

/**
 * The destination sequence for a source one: the sequence the mapped table's column owns
 * ($1 table, $2 column; NULLs skip it), else the sequence of the source's name ($3), both
 * schema-qualified: a `regclass`'s text drops the schema of a name on the search_path, so
 * `public.doc_no` would be recorded and reported as `doc_no`.
 */
export const DESTINATION_SEQUENCE_SQL = `SELECT COALESCE(
    CASE WHEN $1::text IS NOT NULL AND to_regclass($1::text) IS NOT NULL THEN pg_get_serial_sequence($1::text, $2::text) END,
    (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($3::text))
  ) AS seq`;

/** `seq`: the server's own text for an existing sequence (regclass output, `pg_get_serial_sequence`), so safe in FROM. */
export async function sequenceState(client: pg.ClientBase, seq: string): Promise<SequenceState> {
  const { rows } = await client.query<{ last_value: string; is_called: boolean; reported: string | null; increment: string; min: string; max: string }>(
    `SELECT s.last_value::text, s.is_called, pg_sequence_last_value(q.seqrelid)::text AS reported, q.seqincrement::text AS increment,
            q.seqmin::text AS min, q.seqmax::text AS max
       FROM ${seq} s, pg_sequence q WHERE q.seqrelid = $1::regclass`,
    [seq],
  );
  const r = rows[0];
  const increment = BigInt(r.increment);
  // Not called yet: nextval returns last_value itself, so one step before it was the last handed out.
  return { last: r.is_called ? BigInt(r.last_value) : BigInt(r.last_value) - increment, reported: r.reported, increment, min: BigInt(r.min), max: BigInt(r.max) };
}

const BIGINT_BOUND = { MAXVALUE: 9223372036854775807n, MINVALUE: -9223372036854775808n } as const;

/**
 * The bound a sequence counts towards (MAXVALUE, or MINVALUE for a negative increment), which
 * setval cannot pass, and the statement that widens it. `name`: the sequence as SQL. Pure.
 */
export function sequenceBound(s: Pick<SequenceState, 'increment' | 'min' | 'max'>, name: string): { bound: 'MAXVALUE' | 'MINVALUE'; at: bigint; beyond: (v: bigint) => boolean; widen: string } {
  const down = s.increment < 0n;
  const bound = down ? 'MINVALUE' : 'MAXVALUE';
  const at = down ? s.min : s.max;
  return { bound, at, beyond: (v) => (down ? v < at : v > at), widen: `ALTER SEQUENCE ${name} AS bigint ${bound} ${BIGINT_BOUND[bound]}` };
}

/** Why `value` cannot be set on the sequence, with the statement that widens it; null when it can. Pure. */
export function beyondBound(value: bigint, s: Pick<SequenceState, 'increment' | 'min' | 'max'>, name: string): string | null {
  const b = sequenceBound(s, name);
  if (!b.beyond(value)) return null;
  return `the source handed out ${value}, beyond the destination's ${b.bound} ${b.at}: the destination sequence cannot take its values; widen it (${b.widen})`;
}

/**
 * What was applied for a source sequence value, for status and cutover (`shardbridge.sequence_sync`).
 * With the sequence's `increment`, a source value behind the recorded one in the direction it
 * counts (a replayed `__sequences` record, older than the last one applied) leaves the row as
 * it is: the destination sequence was not lowered for it either, and status would show the old
 * value as the source's, applied just now. Without it (no destination sequence to tell the
 * direction; cutover, which read the source itself) the row takes the value given.
 */
export async function recordSequenceSync(client: pg.ClientBase, sequence: string, source: string | null, applied: string | null, increment: bigint | null = null): Promise<void> {
  await client.query(
    `INSERT INTO shardbridge.sequence_sync AS s (sequence_name, source_value, applied_value, applied_at) VALUES ($1, $2, $3, now())
     ON CONFLICT (sequence_name) DO UPDATE SET source_value = EXCLUDED.source_value, applied_value = EXCLUDED.applied_value, applied_at = now()
      WHERE $4::int IS NULL OR s.source_value IS NULL OR EXCLUDED.source_value IS NULL
         OR CASE WHEN $4::int > 0 THEN EXCLUDED.source_value >= s.source_value ELSE EXCLUDED.source_value <= s.source_value END`,
    [sequence, source, applied, increment === null ? null : increment < 0n ? -1 : 1],
  );
}

/** Whether `value` lies beyond what the sequence handed out, in its direction: only then is it moved there. Pure. */
export function isPast(value: bigint, s: Pick<SequenceState, 'last' | 'increment'>): boolean {
  return s.increment < 0n ? value < s.last : value > s.last;
}
