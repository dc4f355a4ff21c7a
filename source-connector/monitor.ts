/**
 * Periodic work on a normal source connection while the stream runs:
 *  - the heartbeat, `pg_logical_emit_message(false, 'shardbridge-heartbeat', '')`, so the
 *    stream sees WAL progress (and confirms it) even when only other databases write (on a
 *    standby source, written on its primary: write());
 *  - the slot's health and lag: slot lag (current WAL − confirmed_flush_lsn) and WAL retained
 *    (current − restart_lsn) as metrics, a warning past walRetentionWarnBytes (the guide's
 *    stall-fills-the-disk danger), and a vanished or invalidated slot reported as lost changes;
 *  - what the stream cannot see of the selected tables: one gone from the publication, a
 *    partition ATTACHed with rows, a partition without the FULL identity of its parent.
 */
import type pg from 'pg';
import type { Gauge } from 'prom-client';
import type { Logger } from '../shared/logger.ts';
import type { Metrics } from '../shared/metrics.ts';
import { SourceError } from '../shared/errors.ts';
import { quoteIdent } from '../shared/sql.ts';
import { slotStatus, type SlotStatus } from './slot.ts';
import { narrowedOf, publicationNarrowing } from './publication.ts';
import { selectedTableNames, type TableSelection } from './catalog.ts';
import { HEARTBEAT_PREFIX, publicationDroppedError, START_WITHOUT_PUBLICATION } from './stream.ts';
import { LOST_SLOT_REMEDY, invalidatedSlot } from '../shared/migration/remedies.ts';
import { attachedError, identityError, identityMismatches, newlyAttached, readPartitions, unloggedError } from './partitions.ts';

/**
 * The publication gone (`oid` undefined), or dropped and made again since it was first seen
 * (another oid), as the error that stops the connector; null when it is the one seen before. Pure.
 */
export function publicationDropped(oid: number | undefined, seen: number | undefined, publication: string, slot: string): SourceError | null {
  if (oid === undefined) return publicationDroppedError(publication, slot);
  if (seen === undefined || oid === seen) return null;
  return new SourceError(
    `publication "${publication}" was dropped and created again while the connector streamed from slot "${slot}": the changes written while it was gone are not streamed (PostgreSQL 18 skips them without an error)`,
    {
      context: { slot, publication },
      remedy: `take every table's snapshot again: DROP PUBLICATION ${quoteIdent(publication)}; then start the connector: ${START_WITHOUT_PUBLICATION}`,
    },
  );
}

/** A vanished or invalidated slot as the error that stops the connector; null when healthy. Pure. */
export function slotLostError(status: SlotStatus | null, slot: string): SourceError | null {
  if (status === null) {
    return new SourceError(`replication slot "${slot}" vanished after this connector had published from it: changes since its last confirmed position are lost`, {
      context: { slot },
      remedy: LOST_SLOT_REMEDY,
    });
  }
  if (status.walStatus === 'lost') {
    const { message, remedy } = invalidatedSlot(slot, status.invalidationReason);
    return new SourceError(message, { context: { slot, invalidationReason: status.invalidationReason ?? undefined }, remedy });
  }
  return null;
}

export interface SlotMonitorOptions {
  /** The normal (non-replication) source connection, re-opened if it broke. */
  connect(): Promise<pg.ClientBase>;
  /** Where the heartbeat is written: a standby source's primary (its decoding gets it through the WAL); unset: connect(). */
  write?(): Promise<pg.ClientBase>;
  slotName: string;
  heartbeatIntervalMs: number;
  checkIntervalMs?: number;
  walRetentionWarnBytes: number;
  log: Logger;
  metrics?: Metrics;
  /** The publication and the selected tables it must keep listing (by oid: a rename keeps it). */
  publication?: { name: string; tables: { relid: number; name: string }[] };
  /** The selected partitioned tables (oids), whose partitions are watched (partitions.ts). */
  partitionedTables?: number[];
  /** The configured selection: a table it names that this session does not capture (created since the start) is warned about. */
  selection?: TableSelection;
  /** The slot is gone or invalidated, a selected table left the publication, or a partition needs a stop: the stream must stop for good. */
  onFatal(err: SourceError): void;
}

const WARN_EVERY_MS = 60_000;

export class SlotMonitor {
  private readonly log: Logger;
  private timers: NodeJS.Timeout[] = [];
  private lastWarn = 0;
  private heartbeatFailing = false;
  /**
   * The publication's oid the slot streams through: another one later means it was dropped and
   * made again. Set by a session's start when it knows it (publicationChecked), else at the first
   * check, and then kept across the retry loop's sessions (a drop while one retries is found at the next).
   */
  private publicationOid: number | undefined;
  /** ATTACHed partitions whose rows the snapshot has (partitions.ts, attachedToken). */
  private knownAttached: ReadonlySet<string> = new Set();
  private readonly g?: { lag: Gauge; retained: Gauge; active: Gauge; uncaptured: Gauge };
  /** Tables warned about as uncaptured, by relid (once each). */
  private readonly uncapturedWarned = new Set<number>();
  /** When the slot's state was last read (ms since epoch; 0: never). */
  private readAt = 0;

  constructor(private readonly opts: SlotMonitorOptions) {
    this.log = opts.log.child({ component: 'slot-monitor', slot: opts.slotName });
    if (opts.metrics) {
      this.g = {
        lag: opts.metrics.gauge('slot_lag_bytes', 'pg_current_wal_lsn() - confirmed_flush_lsn of the slot (on a standby source: pg_last_wal_replay_lsn())'),
        retained: opts.metrics.gauge('wal_retained_bytes', 'WAL the slot holds back: pg_current_wal_lsn() - restart_lsn (on a standby source: pg_last_wal_replay_lsn())'),
        active: opts.metrics.gauge('slot_active', '1 while a walsender streams from the slot'),
        uncaptured: opts.metrics.gauge('tables_uncaptured', 'Tables the selection names that this session does not capture (created since it started): captured from the next start'),
      };
      // The slot gauges keep their last reading while the source cannot be read: this says how old it is.
      opts.metrics.sampled('slot_status_age_seconds', 'Seconds since the slot gauges were last read from the source (-1: not yet read)', () =>
        this.readAt === 0 ? -1 : (Date.now() - this.readAt) / 1000,
      );
    }
  }

  /** `knownAttached`: the partitions ATTACHed before this session's stream started (its snapshot has their rows). */
  start(knownAttached: ReadonlySet<string> = new Set()): void {
    this.stop();
    this.knownAttached = knownAttached;
    void this.check().catch(() => {});
    this.timers.push(setInterval(() => void this.heartbeat(), this.opts.heartbeatIntervalMs));
    this.timers.push(setInterval(() => void this.check().catch(() => {}), this.opts.checkIntervalMs ?? 10_000));
  }

  /**
   * The oid this session's start found the slot streams through (slot-decision.ts: a slot made now,
   * or one whose marker recorded it): a publication made again meanwhile was dealt with there (every
   * table's snapshot taken again), so it is no drop to stop for. Undefined: not known, the one seen before stays.
   */
  publicationChecked(oid: number | undefined): void {
    if (oid !== undefined) this.publicationOid = oid;
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  /** Emit one heartbeat message. Failures are logged, not thrown: the next tick tries again. */
  async heartbeat(): Promise<void> {
    try {
      const client = await (this.opts.write ?? this.opts.connect)();
      await client.query(`SELECT pg_logical_emit_message(false, $1, '')`, [HEARTBEAT_PREFIX]);
      if (this.heartbeatFailing) this.log.info('heartbeat works again');
      this.heartbeatFailing = false;
    } catch (err) {
      if (!this.heartbeatFailing) this.log.warn({ err }, 'heartbeat (pg_logical_emit_message) failed');
      this.heartbeatFailing = true;
    }
  }

  /**
   * A selected table dropped while the connector runs leaves the publication, and one created
   * again under its name is not in it: its changes would not be streamed, silently. Stop, so
   * that the next start adds it back and snapshots it again (slot-decision.ts).
   */
  private async checkPublication(): Promise<void> {
    const p = this.opts.publication;
    if (!p || p.tables.length === 0) return;
    const client = await this.opts.connect();
    const { rows: [pub] } = await client.query(
      `SELECT p.oid::int AS oid, ARRAY(SELECT r.prrelid::int FROM pg_publication_rel r WHERE r.prpubid = p.oid) AS relids FROM pg_publication p WHERE p.pubname = $1`,
      [p.name],
    );
    const dropped = publicationDropped(pub?.oid, this.publicationOid, p.name, this.opts.slotName);
    if (dropped) {
      this.log.error({ err: dropped }, dropped.message);
      return this.opts.onFatal(dropped);
    }
    this.publicationOid = pub.oid;
    const listed = new Set(pub.relids as number[]);
    const gone = p.tables.filter((t) => !listed.has(t.relid)).map((t) => t.name);
    if (gone.length === 0) return this.checkNarrowed(p, client);
    const err = new SourceError(
      `selected table(s) ${gone.join(', ')} left publication ${p.name} while the connector ran (dropped, or dropped and created again): their changes are not streamed`,
      {
        context: { publication: p.name, tables: gone.join(', ') },
        remedy: 'start the source connector again: it puts a table created again back into the publication and takes its snapshot again (that table alone); a table dropped for good leaves a schema selection (remove it from tables.include)',
      },
    );
    this.log.error({ err }, err.message);
    this.opts.onFatal(err);
  }

  /** The publication changed by hand to leave out some changes (a row filter, a column list, the publish option): stop, and the next start mends it and snapshots those tables again. */
  private async checkNarrowed(p: NonNullable<SlotMonitorOptions['publication']>, client: pg.ClientBase): Promise<void> {
    // Every selected table is listed (checkPublication): only what the publication leaves out of them is read.
    const narrowing = await publicationNarrowing(client, p.name);
    const narrowed = narrowing ? narrowedOf(p.tables.map((t) => t.name), narrowing) : [];
    if (narrowed.length === 0) return;
    const err = new SourceError(
      `publication ${p.name} was changed to leave out changes of ${narrowed.join(', ')} while the connector ran (a row filter, a column list, or a publish option without some operation): those changes are not streamed`,
      {
        context: { publication: p.name, tables: narrowed.join(', ') },
        remedy: 'start the source connector again: it publishes every change of the selected tables again and takes the snapshot of those tables again (those alone)',
      },
    );
    this.log.error({ err }, err.message);
    this.opts.onFatal(err);
  }

  /**
   * A table created in a selected schema (or listed) since the start is not in the publication:
   * its changes are not streamed until the next start, which snapshots it (alone: the other
   * tables keep theirs, docs/source-connector.md "Slot"). Not a stop (the restart is the
   * operator's to schedule), but said once per table and in a gauge, so that it is not found at cut-over.
   */
  private async checkUncaptured(): Promise<void> {
    const sel = this.opts.selection;
    if (!sel) return;
    const captured = new Set((this.opts.publication?.tables ?? []).map((t) => t.relid));
    const named = await selectedTableNames(await this.opts.connect(), sel);
    const uncaptured = [...named].filter(([relid]) => !captured.has(relid));
    this.g?.uncaptured.set(uncaptured.length);
    const fresh = uncaptured.filter(([relid]) => !this.uncapturedWarned.has(relid));
    if (fresh.length === 0) return;
    for (const [relid] of fresh) this.uncapturedWarned.add(relid);
    this.log.warn(
      { tables: fresh.map(([, name]) => name), remedy: 'restart the source connector: it adds the tables to the publication and snapshots them alone (the other tables keep their snapshots; their changes wait in the slot meanwhile); or list the tables in tables.exclude' },
      `table(s) ${fresh.map(([, name]) => name).join(', ')} created since the connector started are selected by its configuration but not captured: their changes are not streamed until the next start`,
    );
  }

  /**
   * A partition ATTACHed while streaming brings rows that were never streamed (the next start
   * snapshots its table again: slot-decision.ts); one created by PARTITION OF streams as it is. A
   * partition without FULL under a FULL parent (new partitions start at DEFAULT) logs only its
   * key as the old row: stop, so that it is set now rather than found at the next start. An
   * UNLOGGED partition streams nothing: stop.
   */
  private async checkPartitions(): Promise<void> {
    const roots = this.opts.partitionedTables ?? [];
    if (roots.length === 0) return;
    const parts = await readPartitions(await this.opts.connect(), roots);
    const attached = newlyAttached(parts, this.knownAttached);
    const mismatched = identityMismatches(parts);
    const unlogged = parts.filter((p) => p.unlogged);
    const err = attached.length > 0 ? attachedError(attached) : unlogged.length > 0 ? unloggedError(unlogged) : mismatched.length > 0 ? identityError(mismatched) : null;
    if (!err) return;
    this.log.error({ err }, err.message);
    this.opts.onFatal(err);
  }

  /** Read the slot's state once: metrics, retention warning, lost-slot detection, the publication's tables and partitions. */
  async check(): Promise<SlotStatus | null> {
    let status: SlotStatus | null;
    try {
      status = await slotStatus(await this.opts.connect(), this.opts.slotName);
    } catch (err) {
      this.log.debug({ err }, 'slot status query failed');
      throw err;
    }
    const lost = slotLostError(status, this.opts.slotName);
    if (lost) {
      this.log.error({ err: lost }, lost.message);
      this.opts.onFatal(lost);
      return status;
    }
    await this.checkPublication();
    await this.checkPartitions();
    await this.checkUncaptured();
    const s = status!;
    const lag = s.confirmedFlushLsn === null ? 0n : s.currentLsn - s.confirmedFlushLsn;
    const retained = s.restartLsn === null ? 0n : s.currentLsn - s.restartLsn;
    this.g?.lag.set(Number(lag > 0n ? lag : 0n));
    this.g?.retained.set(Number(retained > 0n ? retained : 0n));
    this.g?.active.set(s.active ? 1 : 0);
    this.readAt = Date.now();
    if (retained > BigInt(this.opts.walRetentionWarnBytes) && Date.now() - this.lastWarn > WARN_EVERY_MS) {
      this.lastWarn = Date.now();
      this.log.warn(
        { retainedBytes: Number(retained), lagBytes: Number(lag), walStatus: s.walStatus, thresholdBytes: this.opts.walRetentionWarnBytes },
        `the slot retains ${Math.round(Number(retained) / 1048576)} MiB of WAL: if the stream stays stalled, the source disk can fill up`,
      );
    }
    return status;
  }
}
