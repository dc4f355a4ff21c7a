import { test } from 'node:test';
import assert from 'node:assert/strict';
import { catchUpProgress, formatReport, passed, progressLine, streamedCount, verdictLine, type DemoOutcome } from '../../shared/demo/report.ts';
import { BURST, DEMO_TABLES, citusLayoutSql, compareSequences, largeTextSql, schemaCopyArgs } from '../../shared/demo/workload.ts';

function outcome(over: Partial<DemoOutcome> = {}): DemoOutcome {
  return {
    destination: 'destination PostgreSQL',
    schemaVia: '`shardbridge schema copy`',
    tables: [
      { table: 'public.customers', sourceRows: 1100, destRows: 1100, match: true, published: { r: 1000, c: 101, u: 110, d: 1 }, problems: [] },
      { table: 'public.orders', sourceRows: 2230, destRows: 2230, match: true, published: { r: 2000, c: 251, u: 122, d: 21 }, problems: [] },
    ],
    applied: { r: 3000, c: 352, u: 232, d: 22 },
    burstTransactions: 10,
    catchUpMs: 1234,
    sequences: [{ sequence: 'public.customers_id_seq', source: '1101', destination: '1101', ok: true, movedBy: 'sink' }],
    phases: [
      { name: 'stack', ms: 4800 },
      { name: 'verify', ms: 120 },
    ],
    totalMs: 8800,
    failures: [],
    ...over,
  };
}

test('a matching run passes and its report ends with the PASS verdict', () => {
  const o = outcome();
  assert.equal(passed(o), true);
  const text = formatReport(o);
  const lines = text.trimEnd().split('\n');
  assert.equal(lines.at(-1), 'verdict: PASS — the destination equals the source (2 tables, 3,330 rows, 1 sequence at or above the source)');
  assert.match(text, /^ {2}public\.customers +1,100 +1,100 +1,000 +212 +yes$/m);
  assert.match(text, /^streamed: +606 changes from 10 source transactions \(352 inserts, 232 updates, 22 deletes\); the sink applied 606 /m);
  assert.match(text, /^lag: +1\.2 s from the last source commit/m);
  assert.match(text, /public\.customers_id_seq 1101 → 1101 \(moved by the sink from the __sequences topic\)/);
  assert.match(text, /^time: +8\.8 s in all \(stack 4\.8 s, verify 0\.1 s\)$/m);
});

test('a differing table, a sequence behind or a failure each make the verdict FAIL, naming why', () => {
  const differing = outcome();
  differing.tables[1] = { ...differing.tables[1], destRows: 2229, match: false, problems: ['id in [1000, 2000): 1000 source rows, 999 destination rows'] };
  assert.equal(passed(differing), false);
  assert.equal(verdictLine(differing), 'verdict: FAIL — public.orders differs');
  assert.match(formatReport(differing), /^ {2}! public\.orders: id in \[1000, 2000\): 1000 source rows, 999 destination rows$/m);
  assert.match(formatReport(differing), /^ {2}public\.orders +2,230 +2,229 .* NO$/m);

  const behind = outcome({ sequences: [{ sequence: 'public.orders_id_seq', source: '2250', destination: '2000', ok: false, movedBy: 'none' }] });
  assert.equal(verdictLine(behind), 'verdict: FAIL — sequence behind: public.orders_id_seq');
  assert.match(formatReport(behind), /2250 → 2000 \(BEHIND\)/);

  const failed = outcome({ tables: [], catchUpMs: null, failures: ['timed out after 90 s waiting for the snapshot to finish'] });
  assert.equal(verdictLine(failed), 'verdict: FAIL — timed out after 90 s waiting for the snapshot to finish');
  assert.match(formatReport(failed), /^lag: +never caught up$/m);
  assert.equal(verdictLine(outcome({ tables: [] })), 'verdict: FAIL — nothing was compared');
});

test('streamed changes count inserts, updates, deletes and truncates, not snapshot reads', () => {
  assert.equal(streamedCount({ r: 100, c: 1, u: 2, d: 3, t: 1 }), 7);
  assert.equal(streamedCount({}), 0);
});

test('progress lines carry the elapsed time; catch-up progress lists only the tables still differing', () => {
  assert.equal(progressLine(12_345, 'hello'), '[  12.3s] hello\n');
  assert.equal(
    catchUpProgress([
      { table: 'public.a', sourceRows: 1500, destRows: 1500, match: true },
      { table: 'public.b', sourceRows: 2000, destRows: 1200, match: false },
      { table: 'public.c', sourceRows: 10, destRows: null, match: false },
    ]),
    'public.b 1,200/2,000, public.c ?/10 (destination/source rows, differing)',
  );
  assert.equal(catchUpProgress([{ table: 'public.a', sourceRows: 1, destRows: 1, match: true }]), 'all tables equal');
});

test('sequences pass when the destination is at or above the source; an unused source sequence needs only to exist', () => {
  const src = new Map<string, string | null>([
    ['public.a_id_seq', '100'],
    ['public.b_id_seq', '9007199254740993'],
    ['public.c_id_seq', null],
  ]);
  const dst = new Map<string, string | null>([
    ['public.a_id_seq', '150'],
    ['public.b_id_seq', '9007199254740992'],
    ['public.c_id_seq', null],
  ]);
  assert.deepEqual(
    compareSequences(src, dst).map((s) => [s.sequence, s.ok]),
    [
      ['public.a_id_seq', true],
      ['public.b_id_seq', false],
      ['public.c_id_seq', true],
    ],
  );
  assert.equal(compareSequences(src, new Map()).every((s) => !s.ok), true);
});

test('the Citus layout distributes orders by key, co-locates order_items with them and makes customers and products reference tables', () => {
  assert.deepEqual(citusLayoutSql(), [
    `SELECT create_reference_table('public.customers')`,
    `SELECT create_reference_table('public.products')`,
    `SELECT create_distributed_table('public.orders', 'id')`,
    `SELECT create_distributed_table('public.order_items', 'order_id', colocate_with => 'public.orders')`,
  ]);
  assert.deepEqual(schemaCopyArgs(), [
    '--reference', 'public.customers',
    '--reference', 'public.products',
    '--distribute', 'public.orders=id',
    '--distribute', 'public.order_items=order_id',
    '--colocate',
  ]);
  assert.deepEqual(schemaCopyArgs(DEMO_TABLES.filter((t) => t.citus === 'reference')), ['--reference', 'public.customers', '--reference', 'public.products']);
});

test('the workload has a large value, a primary-key change, and transactions of several statements', () => {
  assert.match(largeTextSql("'x'", 100_000), /generate_series\(1, 3125\)/);
  assert.match(largeTextSql("'x'", 100_000), /left\(string_agg\(md5\('x' \|\| ':' \|\| i\), '' ORDER BY i\), 100000\)/);
  assert.ok(BURST.some((s) => s.statements.some((q) => /UPDATE public\.orders SET id = id \+/.test(q))));
  assert.ok(BURST.some((s) => s.statements.length > 1));
  assert.ok(BURST.every((s) => s.label.length > 0 && s.statements.length > 0));
});

test('a run that ended before the verification says no table was compared, instead of an empty table', () => {
  const text = formatReport(outcome({ tables: [], catchUpMs: null, failures: ['the Kafka broker died'] }));
  assert.match(text, /^ {2}no table was compared: the demo ended before its verification$/m);
  assert.doesNotMatch(text, /source rows/);
  assert.match(text, /^verdict: FAIL — the Kafka broker died$/m);
});
