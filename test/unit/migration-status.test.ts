/** The pure status core: snapshot states, catch-up estimate, problems, stall parsing, rendering. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatBytes, formatDuration, renderTable } from '../../shared/migration/format.ts';
import {
  buildStatus, estimateCatchUp, markersNeeded, mergeStalls, parseStalledMetric, sampleOf, splitStallError, tableStatus,
  type PartitionFacts, type SlotFacts, type StallFacts, type StatusFacts,
} from '../../shared/migration/status.ts';
import { stallReasonOf } from '../../shared/migration/gather.ts';
import { renderStatus } from '../../shared/migration/status-render.ts';

const slot = (over: Partial<SlotFacts> = {}): SlotFacts => ({
  name: 'shardbridge_slot',
  plugin: 'pgoutput',
  active: true,
  activePid: 4242,
  confirmedLsn: '0/16B3748',
  restartLsn: '0/16B3000',
  currentLsn: '0/16B4000',
  lagBytes: 2232,
  sentLsn: '0/16B4000',
  unsentBytes: 0,
  walRetainedBytes: 4096,
  walStatus: 'reserved',
  safeWalSizeBytes: null,
  ...over,
});

const part = (topic: string, partition: number, end: number, applied: number | null, kind: 'table' | 'control' = 'table'): PartitionFacts => ({ topic, partition, end, applied, kind });

function facts(over: Partial<StatusFacts> = {}): StatusFacts {
  return {
    atMs: Date.parse('2025-01-01T00:00:10Z'),
    source: { target: 'src:5432', ok: true },
    destination: { target: 'dst:5432', ok: true },
    kafka: { target: 'k:9092', ok: true },
    slotName: 'shardbridge_slot',
    slot: slot(),
    walRetentionWarnBytes: 1 << 30,
    tables: [{ table: 'public.orders', topic: 'sb.public.orders', destination: 'public.orders', sinkState: 'complete', rowsExpected: 10 }],
    partitions: [part('sb.public.orders', 0, 10, 10), part('sb.public.orders', 1, 5, 5), part('sb.__snapshot', 0, 3, 3, 'control')],
    stalls: [],
    sequences: [],
    sinkTables: true,
    sinkMetrics: null,
    slotCreatedMarker: true,
    groupId: 'g',
    ...over,
  };
}

const stall = (over: Partial<StallFacts> = {}): StallFacts => ({
  topic: 'sb.public.orders',
  partition: 1,
  offset: 5,
  table: 'public.orders',
  sqlstate: '42703',
  reason: 'apply',
  message: 'column "extra" of relation "orders" does not exist',
  remedy: 'ALTER TABLE "public"."orders" ADD COLUMN "extra" text; or set autoEvolve: true',
  attempts: 3,
  since: '2025-01-01T00:00:00.000Z',
  seenIn: ['table'],
  ...over,
});

test('snapshot state per table: from the sink row, else the marker and the applied offsets', () => {
  const base = { table: 'public.t', topic: 'sb.public.t', destination: 'public.t' };
  const parts = [part('sb.public.t', 0, 100, 40), part('sb.public.t', 1, 100, 100)];
  assert.equal(tableStatus({ ...base, sinkState: null, marker: null }, parts).state, 'not started');
  assert.equal(tableStatus({ ...base, sinkState: null, marker: { kind: 'started', topic: base.topic, estimatedRows: 90 } }, parts).state, 'snapshotting');
  assert.equal(tableStatus({ ...base, sinkState: 'snapshotting' }, parts).state, 'snapshotting');
  const applying = tableStatus({ ...base, sinkState: 'applying', marker: { kind: 'completed', topic: base.topic, rows: 90, endOffsets: [{ partition: 0, offset: '50' }, { partition: 1, offset: '40' }] } }, parts);
  assert.deepEqual([applying.state, applying.applied, applying.of, applying.rows], ['applying', 80, 90, 90]);
  // Applied past the marker's end offsets: complete even before the sink marks it.
  const done = tableStatus({ ...base, sinkState: null, marker: { kind: 'completed', topic: base.topic, rows: 2, endOffsets: [{ partition: 0, offset: '10' }] } }, parts);
  assert.equal(done.state, 'complete');
  assert.equal(tableStatus({ ...base, sinkState: 'complete', rowsExpected: 7 }, []).rows, 7);
  // The latest marker says a new snapshot started: the sink's complete row is of the one before.
  assert.equal(tableStatus({ ...base, sinkState: 'complete', marker: { kind: 'started', topic: base.topic, estimatedRows: 90 } }, parts).state, 'snapshotting');
  // Asked for by `shardbridge resnapshot`: waiting for the source connector's next start.
  assert.equal(tableStatus({ ...base, sinkState: 'complete', marker: { kind: 'started', requested: true, topic: base.topic, estimatedRows: 90 } }, parts).state, 'requested');
  // ... or completed, its rows not applied yet: applying, not the complete of the one before.
  const again = tableStatus({ ...base, sinkState: 'complete', marker: { kind: 'completed', topic: base.topic, rows: 3, endOffsets: [{ partition: 0, offset: '60' }] } }, parts);
  assert.deepEqual([again.state, again.applied, again.of], ['applying', 40, 60]);
});

test('markers are read unless every table is complete and the sink has applied the __snapshot topic to its end', () => {
  const t = (sinkState: string | null) => ({ table: 'public.t', topic: 'sb.public.t', destination: 'public.t', sinkState });
  const snap = (applied: number | null) => [part('sb.__snapshot', 0, 12, applied), part('sb.public.t', 0, 100, 100)];
  assert.equal(markersNeeded([t('complete')], snap(12), 'sb.__snapshot'), false);
  // A marker the sink has not read (a table's own snapshot started again while it was stopped).
  assert.equal(markersNeeded([t('complete')], snap(11), 'sb.__snapshot'), true);
  assert.equal(markersNeeded([t('complete')], snap(null), 'sb.__snapshot'), true);
  assert.equal(markersNeeded([t('complete'), t('applying')], snap(12), 'sb.__snapshot'), true);
  assert.equal(markersNeeded([], snap(12), 'sb.__snapshot'), true);
});

test('catch-up: caught up, catching up with an ETA, falling behind, not applying, unknown without a second sample', () => {
  const at = (s: number, end: number, applied: number) => ({ atMs: s * 1000, end, applied });
  assert.deepEqual(estimateCatchUp(null, at(0, 10, 10)).state, 'caught up');
  assert.equal(estimateCatchUp(null, at(0, 10, 4)).state, 'unknown');
  const c = estimateCatchUp(at(0, 1000, 0), at(10, 1100, 600));
  assert.equal(c.state, 'catching up');
  assert.equal(c.appliedPerSecond, 60);
  assert.equal(c.producedPerSecond, 10);
  assert.equal(c.lagRecords, 500);
  assert.equal(c.etaSeconds, 10);
  assert.equal(estimateCatchUp(at(0, 1000, 0), at(10, 2000, 500)).state, 'falling behind');
  assert.match(estimateCatchUp(null, at(0, 10, 4)).unknownBecause ?? '', /one sample only/);
  assert.equal(estimateCatchUp(at(0, 1000, 0), at(10, 1000, 0)).state, 'not applying');
  assert.deepEqual(sampleOf([part('a', 0, 10, 20), part('a', 1, 5, null), part('c', 0, 7, 0, 'control')], 1), { atMs: 1, end: 15, applied: 10 });
});

test('a steady writer: a lag the sink applies within two seconds is keeping up, not falling behind, even when the produced rate edges past the applied one', () => {
  const at = (s: number, end: number, applied: number) => ({ atMs: s * 1000, end, applied });
  // As a live run showed: 178/s both ways over 6.3 s, 19 records in flight: 'falling behind' with a WARN.
  const steady = estimateCatchUp(at(0, 1000, 981), at(2, 1356, 1337));
  assert.equal(steady.state, 'keeping up');
  assert.equal(steady.lagRecords, 19);
  assert.ok(steady.etaSeconds !== null && steady.etaSeconds < 1);
  // 15 records in flight at t=10 s; 200 produced and 200 applied over the last 2 s.
  const live = facts({ partitions: [part('sb.public.orders', 0, 1010, 1000), part('sb.public.orders', 1, 505, 500)] });
  const r = buildStatus(live, { atMs: Date.parse('2025-01-01T00:00:08Z'), end: 1315, applied: 1300 });
  assert.deepEqual(r.problems, []);
  assert.match(renderStatus(r), /Catch-up: keeping up, 15 records in flight \(under a second of applying\) \(applying 100\/s, produced 100\/s over 2\.0 s\)/);
  // A lag beyond two seconds of applying that does not shrink is still falling behind.
  assert.equal(estimateCatchUp(at(0, 1000, 500), at(2, 1356, 856)).state, 'falling behind');
});

test('a healthy migration: ok, no problems, totals of the table topics only', () => {
  const r = buildStatus(facts(), { atMs: Date.parse('2025-01-01T00:00:08Z'), end: 15, applied: 15 });
  assert.equal(r.ok, true);
  assert.deepEqual(r.problems, []);
  assert.deepEqual(r.totals, { end: 15, applied: 15, lag: 0 });
  assert.equal(r.catchUp.state, 'caught up');
  assert.equal(r.catchUp.sampleSeconds, 2);
  assert.ok(r.slot.exists && r.slot.activePid === 4242);
});

test('a walsender that neither sends nor has anything confirmed over the sample, with WAL unsent and no new record, is a held but stalled slot', () => {
  const earlier = Date.parse('2025-01-01T00:00:08Z');
  const stuck = slot({ sentLsn: '0/16B3748', unsentBytes: 2232 });
  const previous = (s: SlotFacts | null | undefined, end = 15) => ({ atMs: earlier, end, applied: 15, ...(s === undefined ? {} : { slot: s }) });
  const warned = (r: ReturnType<typeof buildStatus>) => r.problems.filter((p) => /advanced nothing/.test(p.message));

  const r = buildStatus(facts({ slot: stuck }), previous(stuck));
  assert.equal(warned(r).length, 1);
  assert.equal(r.ok, true, 'a warning');
  assert.equal(
    warned(r)[0].message,
    'the source connector holds the slot but advanced nothing in 2 s: 2.2 KiB of WAL wait unsent at 0/16B3748, confirmed stays at 0/16B3748, and no record reached the table topics',
  );
  assert.match(warned(r)[0].remedy!, /source connector's log.*restart resumes from the confirmed position/);

  // Each of these is progress, or not knowing.
  assert.deepEqual(warned(buildStatus(facts({ slot: stuck }), previous({ ...stuck, sentLsn: '0/16B3000' }))), [], 'the walsender sent more');
  assert.deepEqual(warned(buildStatus(facts({ slot: stuck }), previous({ ...stuck, confirmedLsn: '0/16B3000' }))), [], 'the source confirmed more');
  assert.deepEqual(warned(buildStatus(facts({ slot: stuck }), previous(stuck, 14))), [], 'a record reached Kafka');
  assert.deepEqual(warned(buildStatus(facts({ slot: slot() }), previous(slot()))), [], 'nothing unsent: an idle stream');
  assert.deepEqual(warned(buildStatus(facts({ slot: stuck }), previous({ ...stuck, unsentBytes: 0 }))), [], 'nothing unsent at the first sample');
  assert.deepEqual(warned(buildStatus(facts({ slot: stuck }), previous({ ...stuck, activePid: 1 }))), [], 'another walsender: restarted meanwhile');
  assert.deepEqual(warned(buildStatus(facts({ slot: stuck }), previous(undefined))), [], 'no first slot sample');
  assert.deepEqual(warned(buildStatus(facts({ slot: stuck }), null)), [], 'no first sample');
  assert.deepEqual(warned(buildStatus(facts({ slot: stuck, kafka: { target: 'k:9092', ok: false } }), previous(stuck))), [], 'Kafka unread');
  const inactive = slot({ active: false, activePid: null, sentLsn: null, unsentBytes: null });
  assert.deepEqual(warned(buildStatus(facts({ slot: inactive }), previous(inactive))), [], 'no walsender: reported as such');
});

test('slot problems: lost and unreserved fail; missing fails once the migration has begun, else warns', () => {
  const lost = buildStatus(facts({ slot: slot({ walStatus: 'lost', active: false, restartLsn: null, walRetainedBytes: null }) }), null);
  assert.equal(lost.ok, false);
  assert.match(lost.problems[0].message, /invalidated \(wal_status = lost.*changes were lost/);
  assert.match(lost.problems[0].remedy!, /new snapshot/);
  assert.equal(lost.problems.filter((p) => /no walsender/.test(p.message)).length, 0, 'an inactive lost slot is not also reported as idle');

  const unreserved = buildStatus(facts({ slot: slot({ walStatus: 'unreserved', safeWalSizeBytes: 1048576 }) }), null);
  assert.deepEqual([unreserved.ok, unreserved.problems[0].level], [false, 'FAIL']);
  assert.match(unreserved.problems[0].message, /1\.0 MiB left/);

  const gone = buildStatus(facts({ slot: null }), null);
  assert.equal(gone.ok, false);
  assert.match(gone.problems[0].message, /gone although this migration has published from it/);
  const notYet = buildStatus(facts({ slot: null, slotCreatedMarker: false, partitions: [], tables: [] }), null);
  assert.deepEqual([notYet.ok, notYet.problems.map((p) => p.level)], [true, ['WARN']]);
  assert.match(notYet.problems[0].message, /has not started/);

  const idle = buildStatus(facts({ slot: slot({ active: false, walRetainedBytes: 2 * 1024 ** 3 }) }), null);
  assert.equal(idle.ok, true);
  assert.deepEqual(idle.problems.map((p) => p.level), ['WARN', 'WARN']);
  assert.match(idle.problems[1].message, /retains 2\.0 GiB/);

  // A table's own snapshot (or the first one) is copied with no walsender on the slot: said as a maybe, not only "not running".
  const copying = buildStatus(facts({ slot: slot({ active: false }), tables: [{ table: 'public.added', topic: 'sb.public.added', destination: 'public.added', sinkState: 'snapshotting', marker: { kind: 'started', topic: 'sb.public.added', estimatedRows: 5 } }] }), null);
  const said = copying.problems.find((p) => /no walsender/.test(p.message));
  assert.match(said?.message ?? '', /not running, or copying the snapshot of public\.added \(the changes wait in the slot meanwhile\)/);
  assert.match(said?.remedy ?? '', /start the source connector if it is not running/);
});

test('Kafka unreadable: catch-up and totals are unknown, not caught up', () => {
  const r = buildStatus(facts({ kafka: { target: 'k:9092', ok: false, error: 'ECONNREFUSED' }, partitions: [], slotCreatedMarker: null }), null);
  assert.equal(r.ok, false);
  assert.deepEqual(r.catchUp, { state: 'unknown', lagRecords: null, appliedPerSecond: null, producedPerSecond: null, etaSeconds: null, sampleSeconds: null, unknownBecause: 'Kafka could not be read' });
  assert.deepEqual(r.totals, { end: null, applied: null, lag: null });
  assert.match(renderStatus(r), /^Catch-up: unknown \(Kafka could not be read\)$/m);
});

test('destination unreadable: lag and catch-up unknown, no advice to check the sink', () => {
  // The applied offsets read as absent: with an earlier sample, the sink would seem to apply nothing.
  const r = buildStatus(
    facts({ destination: { target: 'dst:5432', ok: false, error: 'password authentication failed' }, sinkTables: false, partitions: [part('sb.public.orders', 0, 10, null), part('sb.public.orders', 1, 5, null)] }),
    { atMs: Date.parse('2025-01-01T00:00:05Z'), end: 15, applied: 15 },
  );
  assert.deepEqual(r.problems.map((p) => [p.level, p.object]), [['FAIL', 'destination dst:5432']]);
  assert.equal(r.catchUp.state, 'unknown');
  assert.equal(r.catchUp.unknownBecause, 'the destination could not be read');
  assert.deepEqual(r.totals, { end: 15, applied: null, lag: null });
  assert.deepEqual(r.partitions.map((p) => p.lag), [null, null]);
  const screen = renderStatus(r);
  assert.match(screen, /table topics: 15 records; how many are applied is unknown \(the destination could not be read\)/);
  assert.match(screen, /^Catch-up: unknown \(the destination could not be read\)$/m);
  assert.doesNotMatch(screen, /sink connector is running/);
});

test('no slot while Kafka or its __snapshot topic cannot be read: unknown whether not started or dropped', () => {
  const down = { kafka: { target: 'k:9092', ok: false, error: 'ECONNREFUSED' }, partitions: [], slotCreatedMarker: null, slot: null, sinkApplied: false };
  const r = buildStatus(facts(down), null);
  const slotProblem = r.problems.find((p) => p.object === 'slot shardbridge_slot')!;
  assert.equal(slotProblem.level, 'WARN');
  assert.match(slotProblem.message, /^no replication slot, and Kafka could not be read: unknown whether the migration has not started yet or its slot was dropped/);
  assert.doesNotMatch(renderStatus(r), /has not started: /);
  // The destination's applied offsets prove the migration began, Kafka or not.
  const applied = buildStatus(facts({ ...down, sinkApplied: true }), null);
  assert.match(applied.problems.find((p) => p.object === 'slot shardbridge_slot')!.message, /gone although this migration has published/);
  const markers = buildStatus(facts({ slot: null, slotCreatedMarker: null, partitions: [part('sb.public.orders', 0, 0, null)], sinkApplied: false }), null);
  assert.match(markers.problems[0].message, /and the __snapshot topic could not be read: unknown whether/);
  // Markers read and none for the slot: not started, even when the destination is unreadable.
  const notYet = buildStatus(facts({ slot: null, slotCreatedMarker: false, partitions: [], tables: [], destination: { target: 'dst:5432', ok: false } }), null);
  assert.match(notYet.problems.find((p) => p.object === 'slot shardbridge_slot')!.message, /^no replication slot yet: the migration has not started$/);
});

test('a stall is a FAIL naming topic, partition, offset, table and SQLSTATE, with the remedy; the partition is flagged', () => {
  const r = buildStatus(facts({ stalls: [stall()] }), null);
  assert.equal(r.ok, false);
  const p = r.problems.find((x) => x.level === 'FAIL')!;
  assert.equal(p.object, 'topic sb.public.orders[1]');
  assert.equal(p.message, 'stalled at offset 5 (table public.orders): column "extra" of relation "orders" does not exist [42703]');
  assert.match(p.remedy!, /ADD COLUMN "extra"/);
  assert.deepEqual(r.partitions.map((x) => x.stalled), [false, true, false]);
});

test('records piling up behind a stall: the stall is the problem, not a sink to scale out', () => {
  const behind = facts({ stalls: [stall()], partitions: [part('sb.public.orders', 0, 1010, 1010), part('sb.public.orders', 1, 900, 5)] });
  const r = buildStatus(behind, { atMs: Date.parse('2025-01-01T00:00:08Z'), end: 1510, applied: 915 });
  assert.equal(r.catchUp.state, 'falling behind');
  assert.deepEqual(r.problems.map((p) => p.level), ['FAIL']);
  assert.ok(!r.problems.some((p) => /more partitions or members/.test(p.remedy ?? '')));
});

test("a stall at offsets Kafka no longer has shows its reason, not as a SQLSTATE", () => {
  assert.deepEqual(['gap', 'past-end', 'decode', '42703', null].map(stallReasonOf), ['gap', 'past-end', 'decode', 'apply', 'apply']);
  const gap = stall({ sqlstate: null, reason: 'gap', message: 'records the sink never applied are gone from Kafka', remedy: 'resnapshot, then replay' });
  const r = buildStatus(facts({ stalls: [gap] }), null);
  assert.equal(r.problems.find((x) => x.level === 'FAIL')!.message, 'stalled at offset 5 (table public.orders): records the sink never applied are gone from Kafka');
  assert.match(renderStatus(r), /sb\.public\.orders\[1\] at offset 5 \(gap\), table public\.orders, 3 attempts/);
});

test('unreachable servers fail; sink metrics unreachable warn only when the URL was given', () => {
  const r = buildStatus(facts({ kafka: { target: 'k:9092', ok: false, error: 'ECONNREFUSED' }, partitions: [] }), null);
  assert.equal(r.ok, false);
  assert.match(r.problems[0].message, /cannot read the kafka: ECONNREFUSED/);
  const implicit = buildStatus(facts({ sinkMetrics: { url: 'http://x/metrics', ok: false, explicit: false, error: 'ECONNREFUSED' } }), null);
  assert.deepEqual(implicit.problems, []);
  const explicit = buildStatus(facts({ sinkMetrics: { url: 'http://x/metrics', ok: false, explicit: true, error: 'ECONNREFUSED' } }), null);
  assert.match(explicit.problems[0].message, /http:\/\/x\/metrics not reachable/);
});

test('snapshot incomplete and a sink that applies nothing are warnings', () => {
  const r = buildStatus(
    facts({ tables: [{ table: 'public.orders', topic: 'sb.public.orders', destination: 'public.orders', sinkState: 'applying' }], partitions: [part('sb.public.orders', 0, 100, 10)] }),
    { atMs: Date.parse('2025-01-01T00:00:05Z'), end: 100, applied: 10 },
  );
  assert.equal(r.ok, true);
  assert.deepEqual(r.problems.map((p) => p.object), ['snapshot', 'sink']);
  assert.match(r.problems[0].message, /public\.orders \(applying\)/);
  assert.match(r.problems[1].message, /applied nothing during the sample while 90 records wait/);
});

test('the stall error text splits into message and remedy; metrics give stalled partitions; both merge', () => {
  assert.deepEqual(splitStallError('boom\ndetail: d\ncolumn: c\nremedy: do this\nand that'), { message: 'boom\ndetail: d\ncolumn: c', remedy: 'do this\nand that' });
  assert.deepEqual(splitStallError('no remedy here'), { message: 'no remedy here', remedy: null });
  const text = [
    '# HELP shardbridge_sink_stalled_partitions 1 while stalled',
    '# TYPE shardbridge_sink_stalled_partitions gauge',
    'shardbridge_sink_stalled_partitions{topic="sb.public.orders",partition="1",reason="apply",connector="x"} 1',
    'shardbridge_sink_stalled_partitions{topic="sb.public.items",partition="0",reason="decode",connector="x"} 1',
    'shardbridge_sink_stalled_partitions{topic="sb.public.old",partition="0",reason="apply",connector="x"} 0',
    'shardbridge_sink_stalls_total{reason="apply",connector="x"} 4',
  ].join('\n');
  const fromMetrics = parseStalledMetric(text);
  assert.deepEqual(fromMetrics, [{ topic: 'sb.public.orders', partition: 1, reason: 'apply' }, { topic: 'sb.public.items', partition: 0, reason: 'decode' }]);
  const merged = mergeStalls([stall()], fromMetrics);
  assert.deepEqual(merged.map((s) => [s.topic, s.partition, s.seenIn]), [['sb.public.items', 0, ['metrics']], ['sb.public.orders', 1, ['table', 'metrics']]]);
  assert.match(merged[0].message, /not recorded it in shardbridge\.stalls yet/);
});

test('the screen shows the slot, tables, partitions, catch-up, stalls with remedy, sequences and problems', () => {
  const r = buildStatus(
    facts({ stalls: [stall()], sequences: [{ sequence: 'public.orders_id_seq', sourceValue: '10', appliedValue: '10', at: '2025-01-01T00:00:09.000Z' }], partitions: [part('sb.public.orders', 0, 10, 10), part('sb.public.orders', 1, 7, 5)] }),
    { atMs: Date.parse('2025-01-01T00:00:00Z'), end: 17, applied: 5 },
  );
  const s = renderStatus(r);
  assert.match(s, /ShardBridge status at 2025-01-01T00:00:10\.000Z {3}PROBLEMS/);
  assert.match(s, /shardbridge_slot\s+yes \(pid 4242\)\s+0\/16B3748\s+0\/16B4000\s+2\.2 KiB\s+4\.0 KiB\s+reserved\s+unlimited/);
  assert.match(s, /public\.orders\s+public\.orders\s+complete\s+10/);
  assert.match(s, /sb\.public\.orders\s+1\s+7\s+5\s+2\s+STALLED/);
  assert.match(s, /table topics: 15 of 17 records applied, 2 to go/);
  assert.match(s, /Catch-up: catching up, about 2 s to go \(applying 1\/s, produced 0\/s over 10\.0 s\)/);
  assert.match(s, /sb\.public\.orders\[1\] at offset 5, table public\.orders, SQLSTATE 42703, 3 attempts/);
  assert.match(s, / {4}remedy: ALTER TABLE "public"\."orders" ADD COLUMN "extra" text/);
  assert.match(s, /Sequences: last sync 2025-01-01T00:00:09\.000Z/);
  assert.match(s, /FAIL {2}topic sb\.public\.orders\[1\]: stalled at offset 5/);
});

test('format helpers: aligned tables with right-aligned numbers, bytes, durations', () => {
  assert.equal(renderTable(['name', 'rows'], [['a', 5], ['long name', 12345]]), '  name         rows\n  a               5\n  long name  12,345');
  assert.equal(renderTable(['x', 'y', 'z'], [[null, 'z', '']]), '  x  y  z\n  -  z');
  assert.deepEqual([formatBytes(512), formatBytes(1536), formatBytes(5 * 1024 ** 3), formatBytes(null)], ['512 B', '1.5 KiB', '5.0 GiB', '-']);
  assert.deepEqual([formatDuration(42), formatDuration(125), formatDuration(7380), formatDuration(null)], ['42 s', '2 min 5 s', '2 h 3 min', '-']);
});

test('2,000 tables (a schema per tenant): complete tables and applied partitions are counted, the rest listed; --all lists every one', () => {
  const n = 2000;
  const name = (i: number) => `t${String(i).padStart(4, '0')}.orders`;
  const tables = Array.from({ length: n }, (_, i) => ({
    table: name(i), topic: `sb.${name(i)}`, destination: name(i), sinkState: i < 3 ? ('applying' as const) : ('complete' as const), rowsExpected: 10,
  }));
  const partitions = [
    ...Array.from({ length: n }, (_, i) => part(`sb.${name(i)}`, 0, 10, i === 7 ? 4 : i < 3 ? 2 : 10)),
    part('sb.__snapshot', 0, 4000, 4000, 'control'),
  ];
  const r = buildStatus(facts({ tables, partitions }), null);
  const screen = renderStatus(r);
  assert.ok(screen.split('\n').length < 60, `${screen.split('\n').length} lines`);
  assert.match(screen, /^ {2}2,000 tables: 3 applying, 1,997 complete; those not complete listed \(each with --all or --json\)$/m);
  for (const i of [0, 1, 2]) assert.match(screen, new RegExp(`^ {2}${name(i).replace('.', '\\.')} .*applying`, 'm'));
  // Behind: the three applying and t0007, furthest behind first; the control topic always.
  assert.match(screen, /^ {2}1,996 of 2,001 partitions applied to their end and not listed \(each with --all or --json\)$/m);
  assert.match(screen, /t0007\.orders +0 +10 +4 +6/);
  assert.match(screen, /sb\.__snapshot .*control/);
  assert.doesNotMatch(screen, /t0100\.orders/);
  const all = renderStatus(r, { all: true });
  assert.ok(all.split('\n').length > 2 * n, 'every table and partition with all');
  // A few tables: listed as before, nothing folded.
  assert.doesNotMatch(renderStatus(buildStatus(facts(), null)), /not listed|tables: /);
});
