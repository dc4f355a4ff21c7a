/**
 * A column the source dropped (source-drops.ts): records of the version before the drop carry
 * it, the destination (altered as the source was) lacks it. Which columns are left out, given
 * the destination's columns, the version and the later versions; what asks the registry and
 * how often; collapse writing such rows without the column; the stall's remedy when the
 * registry cannot say.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { Writable } from 'node:stream';
import type { ApplyTable } from '../../sink-connector/sink-change.ts';
import type { TableVersion } from '../../sink-connector/schema-compile.ts';
import { droppedAtSource, SourceDrops, type LaterVersion } from '../../sink-connector/source-drops.ts';
import { missingColumnError, missingColumns } from '../../sink-connector/table-state.ts';
import { collapse, type ApplySegment } from '../../sink-connector/collapse.ts';

const TABLE: ApplyTable = {
  schema: 'public',
  name: 'orders',
  columns: [
    { name: 'id', type: 'bigint' },
    { name: 'amount', type: 'integer' },
  ],
  sourceKey: ['id'],
  destKey: ['id'],
  citus: 'local',
};

/** A version of public.orders; `renamed`: source name → destination name (tables.<t>.columns). */
function version(schemaId: number, sourceColumns: string[], renamed: Record<string, string> = {}, table = 'orders'): TableVersion {
  return {
    schemaId,
    source: { schema: 'public', table },
    dest: { schema: 'public', name: 'orders' },
    destId: 'public\u0000orders',
    columns: sourceColumns.map((source) => ({ name: renamed[source] ?? source, pgType: 'text', source })),
    sources: ['public.orders'],
    unmatchedRenames: [],
  };
}

const later = (schemaId: number, sourceColumns: string[], table: string | null = 'orders'): LaterVersion => ({
  schemaId,
  source: table === null ? null : { schema: 'public', table },
  sourceColumns,
});

test('droppedAtSource: a missing column the newest later version lacks is left out; one it has again, one only an older version lacks, another table\'s versions: not', () => {
  const v1 = version(10, ['id', 'amount', 'legacy']);
  const missing = missingColumns(TABLE, v1);
  assert.deepEqual(missing.map((c) => c.name), ['legacy']);
  assert.deepEqual(droppedAtSource(v1, missing, [later(12, ['id', 'amount'])])?.columns, ['legacy'], 'dropped in a later version');
  assert.equal(droppedAtSource(v1, missing, [later(12, ['id', 'amount']), later(15, ['id', 'amount', 'legacy'])]), null, 'dropped, then added back: the latest has it');
  assert.equal(droppedAtSource(v1, missing, [later(10, ['id', 'amount', 'legacy'])]), null, 'the version itself is the latest: the destination just lacks it');
  assert.equal(droppedAtSource(v1, missing, [later(7, ['id', 'amount'])]), null, 'an earlier version lacking it says the source added it');
  assert.equal(droppedAtSource(v1, missing, []), null, 'nothing known later');
  assert.equal(droppedAtSource(v1, missing, [later(12, ['id', 'amount'], 'orders_eu')]), null, 'another source table merged into the same destination table');
  assert.deepEqual(droppedAtSource(v1, missing, [later(12, ['id', 'amount'], null)])?.columns, ['legacy'], 'a schema naming no table is the topic\'s own');
  const both = droppedAtSource(v1, missing, [later(14, ['id', 'amount']), later(12, ['id', 'amount', 'legacy'])]);
  assert.equal(both?.newest.schemaId, 14, 'the newest decides, in whatever order the versions come');
});

test('droppedAtSource compares source names: a renamed column (tables.<t>.columns) is the same column under its destination name', () => {
  const v1 = version(10, ['id', 'amount', 'Legacy Code'], { 'Legacy Code': 'legacy_code' });
  const missing = missingColumns(TABLE, v1);
  assert.deepEqual(missing.map((c) => c.name), ['legacy_code']);
  assert.deepEqual(droppedAtSource(v1, missing, [later(12, ['id', 'amount'])])?.columns, ['legacy_code']);
  assert.equal(droppedAtSource(v1, missing, [later(12, ['id', 'amount', 'Legacy Code'])]), null, 'the source still has it under its own name');
  assert.deepEqual(droppedAtSource(v1, missing, [later(12, ['id', 'amount', 'legacy_code'])])?.columns, ['legacy_code'], 'a source column named like the destination one is another column');
});

function memoryLogger(): { logger: pino.Logger; lines: Record<string, any>[] } {
  const lines: Record<string, any>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

test('SourceDrops: the registry is asked once per version and catalog read (not per batch), the drop logged once per table and column; a registry that does not answer: unknown, asked again next time', async () => {
  const { logger, lines } = memoryLogger();
  let asked = 0;
  let down = false;
  const drops = new SourceDrops(async (topic) => {
    asked++;
    assert.equal(topic, 'p.public.orders');
    if (down) throw new Error('ECONNREFUSED');
    return later(12, ['id', 'amount']);
  }, logger);
  const v1 = version(10, ['id', 'amount', 'legacy']);
  const missing = missingColumns(TABLE, v1);
  // A fresh process: it has seen v1 only, the registry knows v2.
  for (let batch = 0; batch < 3; batch++) assert.deepEqual([...((await drops.dropped(TABLE, v1, 'p.public.orders', missing, [v1])) as Set<string>)], ['legacy']);
  assert.equal(asked, 1, 'one request for the version, not one per batch');
  const reread = { ...TABLE };
  assert.deepEqual([...((await drops.dropped(reread, v1, 'p.public.orders', missing, [v1])) as Set<string>)], ['legacy']);
  assert.equal(asked, 2, 'a new catalog read decides again');
  const logged = lines.filter((l) => l.level === 30);
  assert.equal(logged.length, 1, 'logged once per table and column');
  assert.equal(logged[0].column, 'legacy');
  assert.equal(logged[0].schemaId, 10);
  assert.equal(logged[0].laterSchemaId, 12);
  assert.match(logged[0].msg, /the source dropped it in a later version \(schema 12\) and the destination has no such column: its values are not written/);

  down = true;
  assert.equal(await drops.dropped({ ...TABLE }, v1, 'p.public.orders', missing, [v1]), 'unknown');
  down = false;
  assert.deepEqual([...((await drops.dropped({ ...TABLE }, v1, 'p.public.orders', missing, [v1])) as Set<string>)], ['legacy'], 'the retry asks again');

  // The versions this process saw count too: without a registry, a later one seen in-process tells.
  const local = new SourceDrops(undefined, logger);
  assert.deepEqual([...((await local.dropped(TABLE, v1, 'p.public.orders', missing, [v1, version(12, ['id', 'amount'])])) as Set<string>)], ['legacy']);
  assert.equal(((await local.dropped({ ...TABLE }, v1, 'p.public.orders', missing, [v1])) as Set<string>).size, 0, 'only v1 seen: nothing left out');
});

test('collapse writes rows carrying an omitted column without it (upserts, in-place TOAST updates); without the omission it refuses them', () => {
  const change = (op: 'c' | 'u', id: string, after: Record<string, string | null>, unchangedToast: string[] = []) => ({
    op,
    topic: 't',
    partition: 0,
    offset: id,
    key: { id },
    after: { id, ...after },
    before: null,
    unchangedToast,
  });
  const changes = [change('c', '1', { amount: '5', legacy: 'x' }), change('u', '2', { legacy: 'y' }, ['amount'])];
  assert.throws(() => collapse(changes, TABLE), /change carries column legacy that destination public.orders lacks/);
  const [seg] = collapse(changes, TABLE, new Set(['legacy'])) as ApplySegment[];
  assert.deepEqual(
    seg.upserts.map((g) => [g.columns, g.rows, g.inPlace ?? false]),
    [
      [['id', 'amount'], [['1', '5']], false],
      [['id'], [['2']], true],
    ],
  );
});

test('the missing-column remedy when the registry did not answer says a column the source dropped needs nothing added', () => {
  const column = { name: 'legacy', pgType: 'text' };
  const down = missingColumnError(TABLE, column, { table: 'public.orders', history: 'unknown', registryDown: true }).remedy!;
  assert.match(down, /^ALTER TABLE "public"\."orders" ADD COLUMN "legacy" text/);
  assert.match(down, /if the source dropped legacy since \(a later version of public\.orders lacks it\), add nothing: the schema registry did not answer, and once it does the retry applies these records without legacy$/);
  assert.doesNotMatch(missingColumnError(TABLE, column, { table: 'public.orders', history: 'unknown' }).remedy!, /registry/);
});
