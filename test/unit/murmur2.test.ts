import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { murmur2, partitionForKey } from '../../shared/kafka/murmur2.ts';

test("murmur2 gives Kafka's own values (the Java client's UtilsTest cases)", () => {
  const cases: [string | number[], number][] = [
    ['21', -973932308],
    ['foobar', -790332482],
    ['a-little-bit-long-string', -985981536],
    ['a-little-bit-longer-string', -1486304829],
    ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
    [[0x61, 0x62, 0x63], 479470107],
  ];
  for (const [input, expected] of cases) assert.equal(murmur2(Buffer.from(input as string)), expected, String(input));
});

test('murmur2 and the partition agree with kafkajs for every length and random bytes', () => {
  const require = createRequire(import.meta.url);
  const kjsMurmur2 = require('kafkajs/src/producer/partitioners/default/murmur2.js') as (b: Buffer) => number;
  for (let len = 0; len < 300; len++) {
    for (let i = 0; i < 5; i++) {
      const key = randomBytes(len);
      assert.equal(murmur2(key), kjsMurmur2(key), key.toString('hex'));
      for (const partitions of [1, 3, 4, 12]) assert.equal(partitionForKey(key, partitions), (kjsMurmur2(key) & 0x7fffffff) % partitions);
    }
  }
});
