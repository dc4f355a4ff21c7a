import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deadLetterMessages, letterBytes } from '../../sink-connector/dead-letter.ts';
import { DEAD_LETTER_HEADER_ROOM, deadLetterLimit } from '../../sink-connector/dead-letter-topic.ts';
import { DecodeError } from '../../shared/errors.ts';
import type { RawRecord } from '../../sink-connector/decode.ts';

test('dead letters keep the record\'s key, value and own headers (repeated keys too) and name the connector, group and error class', () => {
  const raw = { topic: 'shop.public.orders', partition: 1, offset: '7', key: Buffer.from('k'), value: Buffer.from('v'), headers: { trace: Buffer.from('t1'), multi: ['a', 'b'] } } as unknown as RawRecord;
  const [m] = deadLetterMessages('shop.__dlq', [{ raw, deadLetter: new DecodeError('bad schema id') }], { connector: 'sink-a', groupId: 'g1' });
  assert.equal(m.key, raw.key);
  assert.equal(m.value, raw.value);
  const h = m.headers as Record<string, unknown>;
  assert.deepEqual(h.trace, Buffer.from('t1'));
  assert.deepEqual(h.multi, ['a', 'b']);
  assert.equal(h['shardbridge.error.class'], 'DecodeError');
  assert.equal(h['shardbridge.connector'], 'sink-a');
  assert.equal(h['shardbridge.group.id'], 'g1');
  assert.equal(h['shardbridge.original.offset'], '7');
  const without = letterBytes({ ...m, headers: { ...m.headers, multi: 'a' } });
  assert.equal(letterBytes(m), without + 2 + 'multi'.length + 1, 'each value of a repeated header counted');
});

test('the dead-letter topic\'s max.message.bytes: the largest of the topics read, with room for the headers; unknown without any', () => {
  assert.equal(deadLetterLimit(['1048588', '8388608', 'x']), 8388608 + DEAD_LETTER_HEADER_ROOM);
  assert.equal(deadLetterLimit([]), null);
});
