import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chunkEnd, chunkOf, hasWork, type Item } from '../../sink-connector/chunk-items.ts';
import { DeadLetterLedger, deadLetterMessages, letterBytes, nextSendCount, notSent, refusedAsTooLarge } from '../../sink-connector/dead-letter.ts';
import { ConfigError, DecodeError } from '../../shared/errors.ts';
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

test("chunkEnd: a chunk is not cut between a record and its key's tombstone (with its delete, the tombstone adds no delete that Citus cannot prune)", () => {
  const rec = (offset: string, key: string | null, value: boolean): RawRecord =>
    ({ topic: 't', partition: 0, offset, key: key === null ? null : Buffer.from(key), value: value ? Buffer.from([0]) : null }) as RawRecord;
  const log = [rec('0', 'k1', true), rec('1', 'k2', true), rec('2', 'k2', false), rec('3', 'k3', true), rec('4', 'k3', false), rec('5', 'k4', false), rec('6', null, false)];
  assert.equal(chunkEnd(log, 0, 2), 3, "the delete's tombstone joins its chunk");
  assert.equal(chunkEnd(log, 0, 3), 3);
  assert.equal(chunkEnd(log, 0, 1), 1, 'the next record is no tombstone');
  assert.equal(chunkEnd(log, 3, 1), 5);
  assert.equal(chunkEnd(log, 4, 1), 5, 'a tombstone of another key stays in the next chunk');
  assert.equal(chunkEnd(log, 5, 1), 6, 'a keyless tombstone too');
  assert.equal(chunkEnd(log, 3, 100), 7, 'the end of the batch');
  // Keys compared as bytes in place: a longer key that starts with the same bytes is another.
  assert.equal(chunkEnd([rec('0', 'k1', true), rec('1', 'k12', false)], 0, 1), 1);
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
    'shardbridge.error.class': 'DecodeError',
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

test('dead letters: sends cut under the size limit (one at least), a too-large refusal told apart, one summary line a minute per partition', () => {
  const letter = (bytes: number) => ({ topic: 'shop.__dlq', key: null, value: Buffer.alloc(bytes), headers: { 'shardbridge.error': 'x' } });
  const sized = letterBytes(letter(100));
  assert.equal(sized, 70 + 100 + 2 + 'shardbridge.error'.length + 1);
  assert.equal(nextSendCount([letter(100), letter(100), letter(100)], sized * 2), 2);
  assert.equal(nextSendCount([letter(5000), letter(1)], 100), 1, 'a letter over the limit alone still goes alone (Kafka judges it)');
  assert.equal(nextSendCount([letter(1)], 10), 1);
  assert.equal(refusedAsTooLarge(new ConfigError('refused', { cause: Object.assign(new Error('too large'), { type: 'MESSAGE_TOO_LARGE' }) })), true);
  assert.equal(refusedAsTooLarge(Object.assign(new Error('x'), { type: 'UNKNOWN_TOPIC_OR_PARTITION' })), false);

  let now = 0;
  const ledger = new DeadLetterLedger(() => now);
  const sent = (first: string, last: string, records = 1) => ledger.summary('t', 0, { records, first, last, error: `e${first}` });
  assert.deepEqual(sent('0', '9', 10), { records: 10, firstOffset: '0', lastOffset: '9', error: 'e0' });
  now = 30_000;
  assert.equal(sent('10', '19', 10), null);
  assert.notEqual(ledger.summary('t', 1, { records: 1, first: '0', last: '0', error: 'e' }), null, 'per partition');
  now = 60_000;
  assert.deepEqual(sent('20', '29', 10), { records: 20, firstOffset: '10', lastOffset: '29', error: 'e10' }, 'counts everything since the last line');

  const big = notSent('too-large', { topic: 'shop.public.orders', partition: 2, offset: '7', bytes: 3_000_000 }, 'shop.__dlq');
  assert.match(big.message, /shop\.public\.orders\[2\] offset 7 \(3000000 bytes/);
  assert.match(big.remedy!, /--entity-name shop\.__dlq --add-config max\.message\.bytes=4194304/);
  assert.match(notSent('no-ack', { topic: 't', partition: 0, offset: '1', bytes: 1 }, 'shop.__dlq').remedy!, /creates it only at start/);
});

test('dead letters: a send under way is remembered until it settles, and marks its offsets sent only once acknowledged', async () => {
  const ledger = new DeadLetterLedger();
  let ack!: () => void;
  const outcome = ledger.track('t', 0, '9', () => new Promise<void>((resolve) => (ack = resolve)));
  assert.equal(ledger.underWay('t', 0), outcome);
  assert.equal(ledger.unsent('t', 0, [{ raw: raw('9') }]).length, 1, 'not sent before the acknowledgement');
  ack();
  assert.deepEqual(await outcome, {});
  assert.equal(ledger.unsent('t', 0, [{ raw: raw('9') }]).length, 0);
  await Promise.resolve();
  assert.equal(ledger.underWay('t', 0), undefined);
  const refused = await ledger.track('t', 0, '20', () => Promise.reject(new Error('refused')));
  assert.match((refused.error as Error).message, /refused/);
  assert.equal(ledger.unsent('t', 0, [{ raw: raw('20') }]).length, 1);
  ledger.markSent('t', 0, '5');
  assert.equal(ledger.unsent('t', 0, [{ raw: raw('9') }]).length, 0, 'never lowered');
});
