import { test } from 'node:test';
import assert from 'node:assert/strict';
import { COPY_GUARD_KEY_LIMIT, CopyGuard } from '../../source-connector/copy-guard.ts';

const key = (schemaId: number, text: string) => Buffer.concat([Buffer.from([0, 0, 0, 0, schemaId]), Buffer.from(text)]);

test('copy guard: a snapshot row is left out once the stream sent its key, whatever the schema id; other keys and topics pass', () => {
  const g = new CopyGuard(['p.public.added']);
  assert.equal(g.admits('p.public.added', key(1, 'k1')), true, 'before the stream touched it: sent, first in its partition');
  g.touch('p.public.added', key(2, 'k2'));
  g.touch('p.public.other', key(1, 'k3'));
  assert.equal(g.admits('p.public.added', key(1, 'k2')), false);
  assert.equal(g.admits('p.public.added', key(1, 'k4')), true);
  assert.equal(g.admits('p.public.other', key(1, 'k3')), true, 'a topic not guarded is never held back');
  assert.deepEqual([...g.skipped], [['p.public.added', 1]]);
});

test('copy guard: room until the limit of distinct keys; a key touched again takes no more', () => {
  const g = new CopyGuard(['t'], 2);
  g.touch('t', key(1, 'a'));
  g.touch('t', key(1, 'a'));
  assert.equal(g.room, true);
  g.touch('t', key(1, 'b'));
  assert.equal(g.room, false);
});

test('copy guard: long keys run out of room by their bytes, well before the count of keys (500,000 keys of 1 kB would take 519 MB)', () => {
  const g = new CopyGuard(['t']);
  const key = Buffer.alloc(5 + 1000, 0x61);
  let n = 0;
  for (; g.room && n < COPY_GUARD_KEY_LIMIT; n++) {
    key.writeUInt32BE(n, 5);
    g.touch('t', key);
  }
  assert.equal(g.room, false);
  assert.ok(n < 50_000, `room until ${n} keys of 1 kB`);
});
