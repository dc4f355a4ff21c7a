/**
 * What `status` says about the source's replication slot: gone, invalidated, idle, retaining
 * too much WAL, or held by a source connector that no longer advances it. Pure.
 */
import { formatBytes } from './format.ts';
import { LOST_SLOT_REMEDY, lostSlotRemedy, slotInvalidatedWhy } from './remedies.ts';
import type { OffsetSample, Problem, StatusFacts } from './status.ts';

export function slotProblems(f: StatusFacts): Problem[] {
  const object = `slot ${f.slotName}`;
  const s = f.slot;
  if (!s) {
    const started = f.slotCreatedMarker === true || f.sinkApplied === true || f.partitions.some((p) => p.kind === 'table' && (p.applied ?? 0) > 0);
    if (started) {
      return [{ level: 'FAIL', object, message: 'the replication slot is gone although this migration has published from it: changes since its last confirmed position are lost', remedy: LOST_SLOT_REMEDY }];
    }
    // The `__snapshot` markers tell a slot never created from a dropped one; without them
    // (and without applied offsets) both look alike.
    const unread = !f.kafka.ok ? 'Kafka' : f.slotCreatedMarker === null ? 'the __snapshot topic' : null;
    if (unread) {
      return [{
        level: 'WARN',
        object,
        message: `no replication slot, and ${unread} could not be read: unknown whether the migration has not started yet or its slot was dropped (then changes were lost)`,
        remedy: `run status again once ${unread} can be read`,
      }];
    }
    return [{ level: 'WARN', object, message: 'no replication slot yet: the migration has not started', remedy: 'start the source connector (it creates the slot and takes the snapshot)' }];
  }
  const out: Problem[] = [];
  if (s.walStatus === 'lost') {
    out.push({ level: 'FAIL', object, message: `the slot was invalidated (${slotInvalidatedWhy(s.invalidationReason)}): changes were lost`, remedy: lostSlotRemedy(s.invalidationReason) });
  } else if (s.walStatus === 'unreserved') {
    out.push({ level: 'FAIL', object, message: `the slot is about to be invalidated (wal_status = unreserved${s.safeWalSizeBytes !== null ? `, ${formatBytes(s.safeWalSizeBytes)} left` : ''})`, remedy: 'get the source connector streaming now, or raise max_slot_wal_keep_size' });
  } else if (s.walStatus === 'extended') {
    out.push({ level: 'WARN', object, message: `the slot retains more WAL than max_wal_size (wal_status = extended${s.safeWalSizeBytes !== null ? `, ${formatBytes(s.safeWalSizeBytes)} left before it is lost` : ''})` });
  }
  if (!s.active && s.walStatus !== 'lost') {
    // A running connector holds no walsender while it copies a snapshot (a table's own included): a stopped one looks the same.
    const copying = f.tables.filter((t) => t.marker?.kind === 'started' || t.sinkState === 'snapshotting').map((t) => t.table);
    out.push(
      copying.length === 0
        ? { level: 'WARN', object, message: 'no walsender streams from the slot: the source connector is not running', remedy: 'start the source connector' }
        : {
            level: 'WARN',
            object,
            message: `no walsender streams from the slot: the source connector is not running, or copying the snapshot of ${copying.slice(0, 5).join(', ')}${copying.length > 5 ? ` and ${copying.length - 5} more` : ''} (the changes wait in the slot meanwhile)`,
            remedy: 'start the source connector if it is not running (its log says which)',
          },
    );
  }
  if (s.walRetainedBytes !== null && s.walRetainedBytes > f.walRetentionWarnBytes) {
    out.push({ level: 'WARN', object, message: `the slot retains ${formatBytes(s.walRetainedBytes)} of WAL on the source (warning threshold ${formatBytes(f.walRetentionWarnBytes)})`, remedy: 'watch the source disk; fix what keeps the source connector or the sink from advancing' });
  }
  return out;
}

/**
 * A walsender streams from the slot, yet over the sample neither it nor the source connector
 * moved: the same sent and confirmed positions, WAL waiting unsent, and no new record in the
 * table topics. A working source reads on (sent advances, also through a huge transaction it
 * is still decoding) or confirms an idle stream's keepalives; a blocked one stops reading, and
 * the walsender stops with it. Unknown (no problem) without both samples of the same walsender.
 */
export function slotProgressProblems(f: StatusFacts, previous: OffsetSample | null, now: OffsetSample): Problem[] {
  const before = previous?.slot;
  const after = now.slot;
  if (!previous || !before || !after || !f.kafka.ok || !before.active || !after.active || before.activePid !== after.activePid) return [];
  // WAL unsent at both ends: a record written just before one read and not yet sent is no stall.
  if ((before.unsentBytes ?? 0) <= 0 || (after.unsentBytes ?? 0) <= 0 || after.sentLsn === null) return [];
  if (before.sentLsn !== after.sentLsn || before.confirmedLsn !== after.confirmedLsn || now.end !== previous.end) return [];
  const seconds = Math.round((now.atMs - previous.atMs) / 100) / 10;
  return [{
    level: 'WARN',
    object: `slot ${f.slotName}`,
    message: `the source connector holds the slot but advanced nothing in ${seconds} s: ${formatBytes(after.unsentBytes!)} of WAL wait unsent at ${after.sentLsn}, confirmed stays at ${after.confirmedLsn ?? 'none'}, and no record reached the table topics`,
    remedy: "see the source connector's log (a retried failure, Kafka refusing its records); a restart resumes from the confirmed position, losing nothing",
  }];
}
