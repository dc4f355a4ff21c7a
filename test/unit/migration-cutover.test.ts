/** The pure cut-over core: wait judgements, sequence targets, verification lines, go / no-go. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  describeDifferences, judgeCutover, leftBehindReminders, planSequence, renderCutover, sequenceTarget, sinkRemaining, sourceCaughtUp, verifySummary, waitProgressLine, partitionList, writesAfter,
  type CutoverReport, type SequenceResult, type StepResult, type TableVerdict,
} from '../../shared/migration/cutover.ts';
import { beyondBound, isPast } from '../../shared/migration/sequence-value.ts';
import type { VerifyReport } from '../../shared/verify/index.ts';

const ok = (step: StepResult['step'], detail = 'fine'): StepResult => ({ step, status: 'ok', detail, ms: 1200 });
const ALL_OK = (['confirm', 'source caught up', 'sink caught up', 'sequences', 'verify', 'writes stopped', 'foreign keys'] as const).map((s) => ok(s));
const seq = (over: Partial<SequenceResult> = {}): SequenceResult => ({
  sequence: 'public.orders_id_seq', table: 'public.orders', column: 'id', destination: 'orders_id_seq', sourceValue: '1000', target: '2000', before: '1000', after: '2000', status: 'moved', ...over,
});
const equalTable: TableVerdict = { table: 'public.orders', destination: 'public.orders', sourceRows: 10, destinationRows: 10, match: true, differences: [] };
const base = (over: Partial<Omit<CutoverReport, 'go' | 'problems'>> = {}) => ({
  verifyOnly: false, recordedLsn: '0/3000060', margin: 1000, steps: ALL_OK, sequences: [seq()], tables: [equalTable], foreignKeys: [], ...over,
});

test('the source has caught up once the slot confirmed the recorded position', () => {
  assert.deepEqual(sourceCaughtUp('0/3000060', '0/3000060'), { done: true, behindBytes: 0 });
  assert.deepEqual(sourceCaughtUp('0/3000060', '1/0'), { done: true, behindBytes: 0 });
  assert.deepEqual(sourceCaughtUp('0/3000060', '0/3000000'), { done: false, behindBytes: 0x60 });
  assert.deepEqual(sourceCaughtUp('0/3000060', null), { done: false, behindBytes: null });
});

test('the sink has caught up once every partition is applied to its target; empty partitions never wait', () => {
  const left = sinkRemaining([
    { topic: 't', partition: 0, target: 10, applied: 10 },
    { topic: 't', partition: 1, target: 10, applied: 7 },
    { topic: 't', partition: 2, target: 0, applied: null },
    { topic: 'u', partition: 0, target: 5, applied: null },
  ]);
  assert.deepEqual(left.behind.map((p) => `${p.topic}[${p.partition}]`), ['t[1]', 'u[0]']);
  assert.equal(left.records, 8);
  assert.deepEqual(sinkRemaining([{ topic: 't', partition: 0, target: 3, applied: 4 }]).behind, []);
});

test('sequence target: source value plus margin, in bigint range; none for a sequence the source never used', () => {
  assert.equal(sequenceTarget('1000', 500), '1500');
  assert.equal(sequenceTarget('9223372036854774807', 1000), '9223372036854775807');
  assert.equal(sequenceTarget('-5', 0), '-5');
  assert.equal(sequenceTarget(null, 1000), null);
});

test('sequence target of a descending sequence: the margin below the source value', () => {
  assert.equal(sequenceTarget('-5000', 1000, -1n), '-6000');
  assert.equal(sequenceTarget('-5000', 1000, 1n), '-4000');
  assert.equal(sequenceTarget('-5000', 0, -3n), '-5000');
});

test('sequence plan: the target held at the destination bound in the direction it counts, with a warning; a source value beyond it an error naming both bounds', () => {
  const int4 = { name: 'public.orders_id_seq', min: 1n, max: 2147483647n };
  const big = { min: 1n, max: 9223372036854775807n };
  assert.deepEqual(planSequence('1000', 500, 1n, int4, big), { target: '1500' });
  assert.deepEqual(planSequence(null, 500, 1n, int4, big), { target: null });
  const held = planSequence('2147483000', 1000, 1n, int4, big);
  assert.equal(held.target, '2147483647');
  assert.equal(
    held.warning,
    "the source value 2147483000 + the margin 1000 is beyond the destination's MAXVALUE 2147483647: set to 2147483647, where the destination sequence is exhausted (its next nextval fails); " +
      'widen it before the application writes (ALTER SEQUENCE public.orders_id_seq AS bigint MAXVALUE 9223372036854775807), then run cutover again to move it the full margin',
  );
  assert.equal(held.error, undefined);
  // At the bound exactly: exhausted there, still a target.
  assert.deepEqual(planSequence('2147483647', 0, 1n, int4, big), { target: '2147483647' });
  const beyond = planSequence('3000000000', 1000, 1n, int4, big);
  assert.equal(beyond.target, null);
  assert.equal(
    beyond.error,
    "the source handed out 3000000000, beyond the destination's MAXVALUE 2147483647 (the source's MAXVALUE is 9223372036854775807): the destination cannot take its values; " +
      'widen it on the destination (ALTER SEQUENCE public.orders_id_seq AS bigint MAXVALUE 9223372036854775807), then run cutover again',
  );
  // Descending: MINVALUE is the bound; MAXVALUE does not matter.
  const down = { name: '"S"."refund.no"', min: -1000n, max: -1n };
  assert.deepEqual(planSequence('-100', 500, -1n, down, { min: -9223372036854775808n, max: -1n }), { target: '-600' });
  const downHeld = planSequence('-900', 500, -1n, down, { min: -9223372036854775808n, max: -1n });
  assert.equal(downHeld.target, '-1000');
  assert.match(downHeld.warning!, /^the source value -900 − the margin 500 is beyond the destination's MINVALUE -1000: set to -1000, .*ALTER SEQUENCE "S"\."refund\.no" AS bigint MINVALUE -9223372036854775808/);
  assert.match(planSequence('-2000', 0, -1n, down, { min: -5000n, max: -1n }).error!, /^the source handed out -2000, beyond the destination's MINVALUE -1000 \(the source's MINVALUE is -5000\)/);
});

test('a sequence held at its bound is a warning, not a no-go; one out of range or unreadable on the source is a no-go said once', () => {
  const held = seq({ target: '1000', after: '1000', warning: "… beyond the destination's MAXVALUE 1000 …" });
  const r = judgeCutover(base({ sequences: [held] }));
  assert.equal(r.go, true);
  assert.deepEqual(r.warnings, ["sequence public.orders_id_seq (public.orders.id): … beyond the destination's MAXVALUE 1000 …"]);
  assert.match(renderCutover(r), /moved, held at the bound \(see WARNINGS\)/);
  assert.match(renderCutover(r), /WARNINGS:\n {2}- sequence public\.orders_id_seq .*\nGO: /);
  const failedStep = { step: 'sequences' as const, status: 'failed' as const, detail: '2 sequence(s): 0 moved, 0 already ahead or unused, 2 failed', ms: 1 };
  const no = judgeCutover(base({
    steps: [...ALL_OK.slice(0, 3), failedStep, ...ALL_OK.slice(4)],
    sequences: [seq({ status: 'out of range', error: 'the source handed out 3000000000, …' }), seq({ sequence: 'public.t_seq', status: 'not readable on source', sourceValue: null, target: null, error: 'GRANT …' })],
  }));
  assert.equal(no.go, false);
  assert.deepEqual(no.problems, [
    'sequence public.orders_id_seq (public.orders.id): out of range: the source handed out 3000000000, …',
    'sequence public.t_seq (public.orders.id): not readable on source: GRANT …',
  ]);
  assert.deepEqual(no.warnings, []);
});

test('a sequence moves only past what it handed out, in the direction it counts', () => {
  assert.equal(isPast(2000n, { last: 1000n, increment: 1n }), true);
  assert.equal(isPast(1000n, { last: 1000n, increment: 1n }), false);
  assert.equal(isPast(500n, { last: 1000n, increment: 5n }), false);
  assert.equal(isPast(-6000n, { last: -497n, increment: -1n }), true);
  assert.equal(isPast(-100n, { last: -497n, increment: -1n }), false);
});

test('beyondBound: a source value past the destination sequence\'s bound in its direction, with the statement that widens it', () => {
  const int4 = { last: 10n, increment: 1n, min: 1n, max: 2147483647n };
  assert.equal(beyondBound(2147483647n, int4, 'public.s'), null);
  assert.equal(
    beyondBound(3000000000n, int4, 'public.s'),
    "the source handed out 3000000000, beyond the destination's MAXVALUE 2147483647: the destination sequence cannot take its values; widen it (ALTER SEQUENCE public.s AS bigint MAXVALUE 9223372036854775807)",
  );
  const down = { last: -10n, increment: -1n, min: -2147483648n, max: -1n };
  assert.equal(beyondBound(-2147483648n, down, 'd'), null);
  assert.match(beyondBound(-3000000000n, down, 'd')!, /beyond the destination's MINVALUE -2147483648.*ALTER SEQUENCE d AS bigint MINVALUE -9223372036854775808/);
});

test('a sequence no table uses that is missing on the destination is said, not a no-go', () => {
  const standalone = seq({ sequence: 'public.ticket_seq', table: null, column: null, destination: null, status: 'not on destination', error: 'no table uses it; …' });
  const r = judgeCutover(base({ sequences: [seq(), standalone] }));
  assert.equal(r.go, true);
  assert.match(renderCutover(r), /public\.ticket_seq .*not on destination: no table uses it/);
  const failed = judgeCutover(base({ sequences: [seq({ ...standalone, status: 'failed', error: 'setval: value out of bounds' })] }));
  assert.deepEqual(failed.problems, ['sequence public.ticket_seq: failed: setval: value out of bounds']);
});

test('go: every step ok, sequences moved or already ahead, tables equal', () => {
  const r = judgeCutover(base({ sequences: [seq(), seq({ sequence: 'public.c_id_seq', status: 'already above' }), seq({ sequence: 'public.u_seq', status: 'unused on source', sourceValue: null, target: null })] }));
  assert.equal(r.go, true);
  assert.deepEqual(r.problems, []);
  assert.match(renderCutover(r), /GO: the destination has every change/);
});

test('no-go: a differing range names table, range, counts and sample keys; the verify step is not repeated', () => {
  const differing: TableVerdict = {
    ...equalTable,
    match: false,
    differences: [{ range: 'id in [462, 527)', from: '462', to: '527', sourceRows: 65, destinationRows: 64, sampleKeys: [{ key: { id: '500' }, difference: 'changed' }, { key: { id: '501' }, difference: 'missing on destination' }] }],
  };
  const steps = [...ALL_OK.slice(0, 4), { step: 'verify' as const, status: 'failed' as const, detail: '1 of 1 table(s) differ', ms: 10 }, { step: 'foreign keys' as const, status: 'skipped' as const, detail: 'x', ms: 0 }];
  const r = judgeCutover(base({ steps, tables: [differing] }));
  assert.equal(r.go, false);
  assert.deepEqual(r.problems, ['public.orders: id in [462, 527): 65 source rows, 64 destination rows; keys (id=500) changed, (id=501) missing on destination']);
  const text = renderCutover(r);
  assert.match(text, /public\.orders\s+public\.orders\s+10\s+10\s+1 range\(s\) differ/);
  assert.match(text, /NO-GO:\n {2}- public\.orders: id in \[462, 527\)/);
});

test('no-go: failed waits, failed or missing destination sequences, failed foreign keys, a table that cannot be compared', () => {
  const waitFailed = judgeCutover(base({ steps: [ok('confirm'), { step: 'source caught up', status: 'failed', detail: 'timed out', ms: 5 }, { step: 'sink caught up', status: 'skipped', detail: '', ms: 0 }], sequences: [], tables: [] }));
  assert.deepEqual(waitFailed.problems, ['source caught up: timed out']);
  const seqs = judgeCutover(base({ sequences: [seq({ status: 'failed', error: 'setval: value out of bounds' }), seq({ sequence: 'public.x_seq', status: 'no destination sequence' })] }));
  assert.deepEqual(seqs.problems, ['sequence public.orders_id_seq (public.orders.id): failed: setval: value out of bounds', 'sequence public.x_seq (public.orders.id): no destination sequence']);
  const fk = judgeCutover(base({ foreignKeys: [{ table: '"public"."orders"', constraint: 'fk', definition: 'FOREIGN KEY …', status: 'failed', error: 'violates' }] }));
  assert.deepEqual(fk.problems, ['foreign key fk on "public"."orders": violates']);
  const broken = { ...equalTable, match: false, error: 'relation does not exist' };
  assert.deepEqual(describeDifferences(broken), ['public.orders: could not be compared: relation does not exist']);
  assert.equal(judgeCutover(base({ steps: [], sequences: [], tables: [] })).go, false, 'nothing ran is not a go');
});

test('--verify-only: go on equal tables with only the verify step', () => {
  const r = judgeCutover(base({ verifyOnly: true, recordedLsn: null, steps: [ok('verify')], sequences: [] }));
  assert.equal(r.go, true);
  assert.match(renderCutover(r), /^Cut-over verification\n/);
  assert.match(renderCutover(r), /GO: every table is equal on both sides\./);
});

test('the verify report is summarised per table with its differing ranges', () => {
  const report: VerifyReport = {
    match: false,
    durationMs: 5,
    tables: [{ source: 'public.a', destination: 'other.a', sourceRows: 3, destRows: 2, match: false, split: 'key ranges', ranges: 2, differingRanges: [{ from: null, to: '10', range: 'id in [-∞, 10)', sourceRows: 3, destRows: 2, sampleKeys: [{ key: { id: '1' }, difference: 'missing on destination' }] }] }],
  };
  assert.deepEqual(verifySummary(report), [{
    table: 'public.a', destination: 'other.a', sourceRows: 3, destinationRows: 2, match: false,
    differences: [{ range: 'id in [-∞, 10)', from: null, to: '10', sourceRows: 3, destinationRows: 2, sampleKeys: [{ key: { id: '1' }, difference: 'missing on destination' }] }],
  }]);
});

test('progress lines for the waits', () => {
  assert.equal(waitProgressLine('source', { behindBytes: 2048 }), 'waiting for the source connector to confirm the recorded position: 2.0 KiB behind');
  assert.equal(waitProgressLine('sink', { records: 1234, partitions: 2, stalled: ['t[0] at 5: boom'] }), 'waiting for the sink: 1,234 records on 2 partition(s) to apply; STALLED: t[0] at 5: boom');
});

test('writes after the cut-over position: records the table topics gained since the sink was waited for, per partition', () => {
  const atWait = [{ topic: 'p.public.orders', partition: 0, end: 10 }, { topic: 'p.public.orders', partition: 1, end: 4 }];
  assert.deepEqual(writesAfter(atWait, atWait), { records: 0, partitions: [] });
  assert.deepEqual(writesAfter(atWait, [{ topic: 'p.public.orders', partition: 0, end: 10 }, { topic: 'p.public.orders', partition: 1, end: 7 }]), { records: 3, partitions: ['p.public.orders[1]'] });
  // A partition added since counts from zero.
  assert.deepEqual(writesAfter(atWait, [...atWait, { topic: 'p.public.orders', partition: 2, end: 2 }]), { records: 2, partitions: ['p.public.orders[2]'] });
  // A writer left running reaches every partition: one list per topic, at most five topics named.
  const keys = ['a', 'b', 'c', 'd', 'e', 'f', 'g'].flatMap((t) => [0, 1, 2].map((p) => `p.public.${t}[${p}]`));
  assert.equal(partitionList(keys), 'p.public.a[0, 1, 2], p.public.b[0, 1, 2], p.public.c[0, 1, 2], p.public.d[0, 1, 2], p.public.e[0, 1, 2] and 2 more topic(s)');
  assert.equal(partitionList(['p.public.orders[1]']), 'p.public.orders[1]');
  const late = judgeCutover(base({ steps: [...ALL_OK.slice(0, 5), { step: 'writes stopped', status: 'failed', detail: '3 change(s) reached p.public.orders[1] after the cut-over position', ms: 5 }, { step: 'foreign keys', status: 'skipped', detail: '', ms: 0 }] }));
  assert.equal(late.go, false);
  assert.match(late.problems[0], /^writes stopped: 3 change\(s\) reached p\.public\.orders\[1\]/);
});

test('what logical replication left behind: a materialized view to refresh, large objects the destination lacks; warnings that keep the go', () => {
  assert.deepEqual(leftBehindReminders({ materializedViews: [], largeObjects: { source: 0, destination: 0 } }), []);
  assert.deepEqual(leftBehindReminders({ materializedViews: [], largeObjects: { source: 2, destination: 2 } }), [], 'copied already');
  const r = leftBehindReminders({ materializedViews: ['app.totals'], largeObjects: { source: 3, destination: 1 } });
  assert.match(r[0], /^materialized view app\.totals reads migrated tables .*REFRESH MATERIALIZED VIEW app\.totals;/);
  assert.match(r[1], /^the source has 3 large object\(s\), the destination 1: logical replication does not carry them; copy them now .*pg_dump --data-only --blobs --exclude-schema='\*'/);
  // --verify-only runs while the source still writes: not 'now', not 'the writes have stopped'.
  const early = leftBehindReminders({ materializedViews: [], largeObjects: { source: 3, destination: 1 }, verifyOnly: true });
  assert.match(early[0], /does not carry them; copy them at cut-over, after the source's last write, their OIDs kept: pg_dump/);
  const report = judgeCutover({ ...base({}), reminders: r });
  assert.equal(report.go, true);
  assert.deepEqual(report.warnings, r);
  assert.match(renderCutover(report), /WARNINGS:\n {2}- materialized view app\.totals/);
});
