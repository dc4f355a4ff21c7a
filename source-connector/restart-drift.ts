/**
 * Configuration edited while the connector was stopped, told from what the slot and the
 * `__snapshot` topic remember (docs/migration-runbook.md, "Changing the configuration"):
 *
 * - `publicationName` changed: pgoutput reads each change through the publication as the
 *   catalog was when the change was written, so the kept slot cannot stream through a
 *   publication created now (PostgreSQL answers `publication "…" does not exist`, which reads
 *   like a lost slot). Refused before the publication is made.
 * - `topicPrefix` changed: the slot exists but this prefix's `__snapshot` topic knows nothing of
 *   it, and none of its table topics existed (when they did, `__snapshot` itself was deleted or
 *   emptied: earlier-snapshots.ts takes the snapshot again after a truncate). Taken on, the slot would be dropped and a first snapshot taken into the new topics with no
 *   truncate before it: rows deleted while the connector was stopped would stay at a destination
 *   that already holds the old topics' rows. Refused (snapshot mode `initial` only: under `never`
 *   the slot streams on into the new topics, losing nothing).
 * - `slotName` changed: every table's snapshot belongs to the old slot, so all are taken again
 *   from a new one, and the old slot, still there, holds back WAL for good. Warned, naming it.
 */
import type pg from 'pg';
import { ConfigError, SourceError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import type { SnapshotState } from './control-topics.ts';
import { snapshotTopicLost } from './earlier-snapshots.ts';
import type { SlotStatus } from './slot.ts';
import { currentLsnSql } from './standby.ts';

const literal = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** Pure: the refusal of a slot this prefix's `__snapshot` topic has no record of; null when it has one. */
export function unknownSlotError(
  state: SnapshotState,
  /** `topicsExisted`: a selected table's topic was there before this process: `__snapshot` was lost (earlier-snapshots.ts), not the prefix changed. */
  args: { slot: string; topicPrefix: string; snapshotTopic: string; mode: string; topicsExisted: boolean },
): ConfigError | null {
  if (args.mode !== 'initial' || args.topicsExisted || state.slots.size > 0 || state.tables.size > 0) return null;
  return new ConfigError(
    `replication slot "${args.slot}" exists, but ${args.snapshotTopic} has no record of it nor of any snapshot: it was made by a connector with another topicPrefix (or by hand). ` +
      `Taken on, it would be dropped and every table copied into new topics without the truncate that empties the destination first`,
    {
      context: { key: 'topicPrefix', slot: args.slot, topicPrefix: args.topicPrefix },
      remedy:
        `set topicPrefix back to the prefix the slot was made with; or, to start over under "${args.topicPrefix}": stop the sink, drop the slot (SELECT pg_drop_replication_slot(${literal(args.slot)})), ` +
        'empty the destination tables (rows deleted while the connector was stopped are in no snapshot), set the sink\'s topicPrefix too, and start both',
    },
  );
}

/**
 * The kept slot's publication does not exist: pgoutput could not stream its changes through one
 * made now. Another publication listing the selected tables means publicationName was changed:
 * refused. None: it was dropped (while the connector streamed, or since): under snapshot mode
 * `initial` said, and every table's snapshot is then taken again from a new slot after a
 * truncate (the caller counts every table as missing from the publication); otherwise refused.
 */
export async function publicationGone(client: pg.ClientBase, args: { slot: string; publication: string; selected: readonly string[]; mode: string }, log: Logger): Promise<void> {
  const { rows } = await client.query<{ pubname: string }>(
    `SELECT p.pubname FROM pg_publication p
      WHERE EXISTS (SELECT 1 FROM pg_publication_tables t WHERE t.pubname = p.pubname AND t.schemaname || '.' || t.tablename = ANY($1::text[]))
      ORDER BY 1`,
    [args.selected],
  );
  const others = rows.map((r) => r.pubname);
  if (others.length > 0) {
    throw new ConfigError(
      `publication "${args.publication}" does not exist, but replication slot "${args.slot}" does: pgoutput reads each change through the publication as it was when the change was written, ` +
        `so the slot cannot stream through a publication made now (PostgreSQL would answer: publication "${args.publication}" does not exist)`,
      {
        context: { key: 'publicationName', slot: args.slot, publication: args.publication },
        remedy:
          `set publicationName back (publications of this database listing the selected tables: ${others.join(', ')}); ` +
          'to change it, drop the old publication first: the next start then takes every table\'s snapshot again from a new slot, after a truncate of its topic',
      },
    );
  }
  everyTableAgain(`publication ${args.publication} was dropped: slot ${args.slot} cannot stream the changes written since`, args, log);
}

/** Changes the kept slot did not stream (`why`): under snapshot mode `initial` said, every table's snapshot then taken again; otherwise refused. */
function everyTableAgain(why: string, args: { slot: string; publication: string; mode: string }, log: Logger): void {
  if (args.mode !== 'initial') {
    throw new SourceError(`${why}, and snapshot.mode ${args.mode} takes no snapshot to cover them`, {
      context: { slot: args.slot, publication: args.publication },
      remedy: 'a new snapshot is needed: see docs/source-connector.md, "Lost slot"',
    });
  }
  log.warn({ slot: args.slot, publication: args.publication }, `${why}, so every table's snapshot is taken again from a new slot, after a truncate of its topic`);
}

/**
 * The kept slot's publication dropped and made again since the slot's marker was written (another
 * oid; absent in a marker written before it was recorded): the changes written while it was gone
 * were not streamed (PostgreSQL 18 skips them without an error; before 18 the stream fails on
 * them). Under snapshot mode `initial` every table's snapshot is then taken again from a new
 * slot (true); otherwise refused. Pure, but for the log line.
 */
export function publicationRemade(markerOid: number | undefined, oid: number | undefined, args: { slot: string; publication: string; mode: string }, log: Logger): boolean {
  if (markerOid === undefined || oid === undefined || markerOid === oid) return false;
  everyTableAgain(`publication ${args.publication} was dropped and made again since slot ${args.slot} was created (oid ${markerOid}, now ${oid}): the slot did not stream the changes written while it was gone`, args, log);
  return true;
}

/** Slots this connector's `__snapshot` topic says it made and published from, other than `slot`, that still exist: warned at each start. */
export async function warnLeftSlots(client: pg.ClientBase, state: SnapshotState, args: { slot: string; snapshotTopic: string }, log: Logger): Promise<void> {
  const others = [...state.slots.keys()].filter((s) => s !== args.slot);
  if (others.length === 0) return;
  const { rows } = await client.query<{ slot_name: string; retained: string | null }>(
    `SELECT slot_name, (${currentLsnSql()} - restart_lsn)::bigint::text AS retained FROM pg_replication_slots
      WHERE slot_name = ANY($1::text[]) AND database = current_database() AND NOT active ORDER BY 1`,
    [others],
  );
  for (const r of rows) {
    log.warn(
      { key: 'slotName', slot: args.slot, leftSlot: r.slot_name, retainedBytes: r.retained === null ? null : Number(r.retained) },
      `replication slot "${r.slot_name}", which this connector made and published from (${args.snapshotTopic}), still exists and holds back WAL (${r.retained ?? '?'} bytes) while slotName is "${args.slot}": ` +
        `the tables' snapshots from it do not count for "${args.slot}". If slotName was changed by mistake, set it back; else drop the old slot once no connector uses it: SELECT pg_drop_replication_slot(${literal(r.slot_name)})`,
    );
  }
}

/**
 * What a start checks of the slot it found (null: none) before judging the snapshot state: a slot
 * of another database or of another prefix refused, slots left by an earlier slotName named, and
 * a `__snapshot` that lost every marker said (earlier-snapshots.ts takes the snapshot again).
 */
export async function checkSlotAtStart(
  client: pg.ClientBase,
  slot: SlotStatus | null,
  state: SnapshotState,
  args: { slot: string; database: string; topicPrefix: string; snapshotTopic: string; mode: string; topicsExisted: boolean },
  log: Logger,
): Promise<void> {
  if (slot && slot.database !== args.database) {
    throw new SourceError(`replication slot "${args.slot}" belongs to database ${slot.database}, not ${args.database}`, {
      context: { slot: args.slot, database: slot.database },
      remedy: 'slot names are shared by every database of the server: give this connector its own slotName',
    });
  }
  const unknown = slot && unknownSlotError(state, args);
  if (unknown) throw unknown;
  await warnLeftSlots(client, state, args, log);
  if (snapshotTopicLost(state, slot !== null)) {
    log.warn(
      { topic: args.snapshotTopic, slot: args.slot },
      `control topic ${args.snapshotTopic} holds no marker although slot ${args.slot} exists: it was deleted or its records removed (retention); the snapshot is taken again, after a truncate of every table topic holding records`,
    );
  }
}
