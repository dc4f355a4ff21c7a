import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chunkOf, hasWork, type Item } from '../../sink-connector/chunk-items.ts';
import { DeadLetterLedger, deadLetterMessages } from '../../sink-connector/dead-letter.ts';
import { DecodeError } from '../../shared/errors.ts';
import { truncateKeys } from '../../source-connector/truncate-fanout.ts';
import type { FastRow } from '../../sink-connector/fast-rows.ts';
import type { DecodedRecord, RawRecord } from '../../sink-connector/decode.ts';

const raw = (offset: string, key: Buffer | null = null): RawRecord => ({ topic: 'shop.public.orders', partition: 2, offset, key, value: Buffer.from([0]) }) as RawRecord;
const decoded = (op: 'c' | 't'): DecodedRecord => ({ change: { op } }) as DecodedRecord;
const fast = (offset: string): FastRow => ({ raw: raw(offset), lines: {} }) as unknown as FastRow;

test('chunkOf: fast rows, decoded changes and control actions apart, offsets from the first and last item (tombstones included)', () => {
  const action = { kind: 'sequence' } as never;
  const run: Item[] = [
    { raw: raw('10'), decoded: null, control: null },
    fast('11'),
    { raw: raw('12'), decoded: decoded('c'), control: null },
    { raw: raw('13'), decoded: null, control: action },
    fast('14'),
  ];
  const { chunk, actions } = chunkOf('shop.public.orders', 2, run, () => assert.fail('no truncate: nothing redecoded'));
  assert.equal(chunk.firstOffset, 10n);
  assert.equal(chunk.nextOffset, 15n);
  assert.deepEqual(chunk.fast?.map((f) => f.raw.offset), ['11', '14']);
  assert.equal(chunk.records.length, 1);
  assert.equal(chunk.truncates, undefined);
  assert.deepEqual(actions, [{ offset: 13n, action }]);
  assert.deepEqual(run.map(hasWork), [false, true, true, true, true]);
});

test('chunkOf: a run with a truncate sent to several partitions decodes its fast rows, so the barrier cuts among decoded records', () => {
  const key = truncateKeys(9, '0/1/0', 3, 1)[2];
  const run: Item[] = [fast('20'), { raw: raw('21', key), decoded: decoded('t'), control: null }, fast('22')];
  const redecoded: string[] = [];
  const { chunk } = chunkOf('shop.public.orders', 2, run, (row) => {
    redecoded.push(row.raw.offset);
    return decoded('c');
  });
  assert.deepEqual(redecoded, ['20', '22']);
  assert.equal(chunk.fast, undefined);
  assert.deepEqual(chunk.records.map((r) => r.change.op), ['c', 't', 'c']);
  assert.deepEqual([...chunk.truncates!.keys()], ['21']);
});

test('dead letters: the original bytes, headers naming the error, remedy and origin; each offset sent once per partition', () => {
  const err = new DecodeError('record value names schema id 99, which cannot be used', { remedy: 'check the registry' });
  const items = [
    { raw: raw('5'), deadLetter: err },
    { raw: raw('8'), deadLetter: err },
  ];
  const [m] = deadLetterMessages('shop.__dlq', items);
  assert.equal(m.topic, 'shop.__dlq');
  assert.equal(m.value, items[0].raw.value);
  assert.deepEqual(m.headers, {
    'shardbridge.error': err.message,
    'shardbridge.error.remedy': 'check the registry',
    'shardbridge.original.topic': 'shop.public.orders',
    'shardbridge.original.partition': '2',
    'shardbridge.original.offset': '5',
  });
  const ledger = new DeadLetterLedger();
  assert.equal(ledger.unsent('shop.public.orders', 2, items).length, 2);
  ledger.markSent('shop.public.orders', 2, '5');
  assert.deepEqual(ledger.unsent('shop.public.orders', 2, items).map((it) => it.raw.offset), ['8']);
  assert.equal(ledger.unsent('shop.public.orders', 3, items).length, 2);
});
