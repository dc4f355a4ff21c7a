import { test } from 'node:test';
import assert from 'node:assert/strict';
import avro from 'avsc';
import { decodeWireHeader, encodeWire } from '../../shared/registry/wire-format.ts';
import { partitionForKey } from '../../shared/kafka/murmur2.ts';
import { nextDelivery, parseTruncateKey, redelivered, TRUNCATE_KEY_SCHEMA, truncateKeys } from '../../source-connector/truncate-fanout.ts';
import { judgeBarrier, planBarrierRewind, prunableTruncates, type Arrival, type RecordedArrival } from '../../sink-connector/truncate-barrier.ts';
import { truncateMarks } from '../../sink-connector/chunk-items.ts';

/** The key layout of sources from before the delivery field. */
const OLD_KEY = avro.Type.forSchema({ ...TRUNCATE_KEY_SCHEMA, fields: TRUNCATE_KEY_SCHEMA.fields.filter((f) => f.name !== 'delivery') } as unknown as avro.Schema);

test('truncate keys: one per partition, each hashing to its own partition, in the wire format, naming the truncate and the delivery', () => {
  for (const partitions of [1, 2, 3, 6, 12]) {
    for (const delivery of [0, 1, 1_800_000_000_123]) {
      const keys = truncateKeys(42, '0/16B3748/0', partitions, delivery);
      assert.equal(keys.length, partitions);
      keys.forEach((key, p) => {
        assert.equal(partitionForKey(key, partitions), p);
        assert.equal(decodeWireHeader(key).schemaId, 42);
        assert.deepEqual(parseTruncateKey(key), { id: '0/16B3748/0', partitions, partition: p, delivery });
      });
    }
  }
});

test('truncate keys are deterministic per delivery: a later delivery of the same truncate has other keys, still one per partition', () => {
  assert.deepEqual(truncateKeys(7, '1/0/2', 6, 5), truncateKeys(7, '1/0/2', 6, 5));
  const later = truncateKeys(7, '1/0/2', 6, 6);
  assert.notDeepEqual(later, truncateKeys(7, '1/0/2', 6, 5));
  assert.deepEqual(later.map((k) => partitionForKey(k, 6)), [0, 1, 2, 3, 4, 5]);
});

test('a key of an older source (no delivery field) is read as delivery 0', () => {
  const key = encodeWire(3, OLD_KEY.toBuffer({ truncate: '0/AB/1', partitions: 4, partition: 2, salt: 17 }));
  assert.deepEqual(parseTruncateKey(key), { id: '0/AB/1', partitions: 4, partition: 2, delivery: 0 });
});

test('the schema with delivery reads keys written without it (Avro resolution: a compatible evolution)', () => {
  const resolver = avro.Type.forSchema(TRUNCATE_KEY_SCHEMA as unknown as avro.Schema).createResolver(OLD_KEY);
  assert.ok(resolver);
  const last = TRUNCATE_KEY_SCHEMA.fields[TRUNCATE_KEY_SCHEMA.fields.length - 1];
  assert.deepEqual([last.name, last.type, 'default' in last && last.default], ['delivery', 'long', 0]);
});

test('nextDelivery: the session start, but always after the previous session of the process', () => {
  assert.equal(nextDelivery(1_800_000_000_123.7, 0), 1_800_000_000_123);
  assert.equal(nextDelivery(1_800_000_000_200, 1_800_000_000_123), 1_800_000_000_200);
  // The clock stepped back (or two sessions in one millisecond): still later.
  assert.equal(nextDelivery(1_800_000_000_100, 1_800_000_000_123), 1_800_000_000_124);
});

test('parseTruncateKey: null for a null key (an older source) and for bytes that are not a truncate key', () => {
  assert.equal(parseTruncateKey(null), null);
  assert.equal(parseTruncateKey(Buffer.from('{"id":1}')), null);
  assert.equal(parseTruncateKey(Buffer.from([0, 0, 0, 0, 1])), null);
});

/** Arrivals of one truncate: `delivery: { partition: offsets }`. */
const arrivals = (m: Record<number, Record<number, number[]>>): Arrival[] =>
  Object.entries(m).flatMap(([d, byPartition]) => Object.entries(byPartition).flatMap(([p, offs]) => offs.map((o) => ({ delivery: Number(d), partition: Number(p), offset: BigInt(o) }))));
const me = (delivery: number, partition: number, offset: number): Arrival => ({ delivery, partition, offset: BigInt(offset) });
const done = (m: Record<number, number> = {}) => new Map(Object.entries(m).map(([d, n]) => [Number(d), n]));
const verdict = (...args: Parameters<typeof judgeBarrier>) => {
  const { verdict, round } = judgeBarrier(...args);
  return { verdict, round };
};

test('barrier: the first partitions to arrive wait, the last one truncates, the waiting ones then pass', () => {
  assert.deepEqual(judgeBarrier(arrivals({ 9: { 0: [10] } }), 3, me(9, 0, 10), done()), { verdict: 'wait', round: 1, arrived: 1 });
  assert.deepEqual(judgeBarrier(arrivals({ 9: { 0: [10], 2: [7] } }), 3, me(9, 2, 7), done()), { verdict: 'wait', round: 1, arrived: 2 });
  assert.deepEqual(judgeBarrier(arrivals({ 9: { 0: [10], 1: [3], 2: [7] } }), 3, me(9, 1, 3), done()), { verdict: 'truncate', round: 1, arrived: 3 });
  // Partition 0 looks again after the truncate: it passes its copy without truncating again.
  assert.deepEqual(verdict(arrivals({ 9: { 0: [10], 1: [3], 2: [7] } }), 3, me(9, 0, 10), done({ 9: 1 })), { verdict: 'pass', round: 1 });
});

test('barrier: one partition truncates at once', () => {
  assert.deepEqual(verdict(arrivals({ 0: { 0: [5] } }), 1, me(0, 0, 5), done()), { verdict: 'truncate', round: 1 });
});

test('barrier, older source (delivery 0 always): a replayed truncate is a second round, truncated again once every partition got its second copy', () => {
  const a = arrivals({ 0: { 0: [10, 50], 1: [3], 2: [7, 40] } });
  assert.deepEqual(verdict(a, 3, me(0, 0, 50), done({ 0: 1 })), { verdict: 'wait', round: 2 });
  const b = arrivals({ 0: { 0: [10, 50], 1: [3, 30], 2: [7, 40] } });
  assert.deepEqual(verdict(b, 3, me(0, 1, 30), done({ 0: 1 })), { verdict: 'truncate', round: 2 });
  // Re-reading the first copy (offsets below the stored one are never re-applied, but the judge is pure): round 1, done.
  assert.deepEqual(verdict(b, 3, me(0, 1, 3), done({ 0: 2 })), { verdict: 'pass', round: 1 });
});

test('barrier: a first delivery that reached only partition 0 is abandoned once a partition arrives at the replayed delivery; that one truncates once', () => {
  // Partition 0 reaches its copy of delivery 100 and waits: the others never got one.
  assert.deepEqual(verdict(arrivals({ 100: { 0: [10] } }), 3, me(100, 0, 10), done()), { verdict: 'wait', round: 1 });
  // Partition 1 reaches the replay's copy (delivery 200): it waits for the others at 200.
  const replayed = arrivals({ 100: { 0: [10] }, 200: { 1: [40] } });
  assert.deepEqual(verdict(replayed, 3, me(200, 1, 40), done()), { verdict: 'wait', round: 1 });
  // Partition 0 looks again: delivery 100 will never complete, it passes its copy without truncating.
  assert.deepEqual(verdict(replayed, 3, me(100, 0, 10), done()), { verdict: 'abandoned', round: 1 });
  // Partitions 0 and 2 reach the replay's copies: the last one truncates, once.
  const all = arrivals({ 100: { 0: [10] }, 200: { 0: [25], 1: [40], 2: [33] } });
  assert.deepEqual(verdict(arrivals({ 100: { 0: [10] }, 200: { 0: [25], 1: [40] } }), 3, me(200, 0, 25), done()), { verdict: 'wait', round: 1 });
  assert.deepEqual(verdict(all, 3, me(200, 2, 33), done()), { verdict: 'truncate', round: 1 });
  assert.deepEqual(verdict(all, 3, me(200, 1, 40), done({ 200: 1 })), { verdict: 'pass', round: 1 });
  // The abandoned copy read again later (a sink restarted there) still passes without truncating.
  assert.deepEqual(verdict(all, 3, me(100, 0, 10), done({ 200: 1 })), { verdict: 'abandoned', round: 1 });
});

test('barrier: a partial copy reached only after the replay arrived elsewhere passes at once', () => {
  // Partitions 0 and 2 got the first delivery; 1 is at the replay already when 2 reaches its first copy.
  assert.deepEqual(verdict(arrivals({ 100: { 0: [10], 2: [8] }, 200: { 1: [40] } }), 3, me(100, 2, 8), done()), { verdict: 'abandoned', round: 1 });
});

test('barrier: a delivery that completed, then a replay by the next session, truncates twice (the replayed rows before it come again)', () => {
  const a = arrivals({ 100: { 0: [10], 1: [3] }, 200: { 0: [30] } });
  assert.deepEqual(verdict(a, 2, me(100, 1, 3), done({ 100: 1 })), { verdict: 'pass', round: 1 });
  assert.deepEqual(verdict(a, 2, me(200, 0, 30), done({ 100: 1 })), { verdict: 'wait', round: 1 });
  const b = arrivals({ 100: { 0: [10], 1: [3] }, 200: { 0: [30], 1: [22] } });
  assert.deepEqual(verdict(b, 2, me(200, 1, 22), done({ 100: 1 })), { verdict: 'truncate', round: 1 });
});

test('truncateMarks: only t records whose key names several partitions', () => {
  const key3 = truncateKeys(9, '0/1/0', 3, 7)[1];
  const key1 = truncateKeys(9, '0/2/0', 1, 7)[0];
  const item = (offset: string, op: 'c' | 't', key: Buffer | null) => ({
    raw: { topic: 'x', partition: 1, offset, key, value: Buffer.alloc(0) },
    decoded: { change: { op } } as never,
  });
  const marks = truncateMarks([item('1', 'c', key3), item('2', 't', key3), item('3', 't', key1), item('4', 't', null)]);
  assert.deepEqual([...marks], [['2', { id: '0/1/0', partitions: 3, delivery: 7 }]]);
});

const A = (truncateId: string, partition: number, offset: number, delivery = 0): RecordedArrival => ({ truncateId, partition, offset: BigInt(offset), delivery });
const rounds = (plan: { rounds: Map<string, Map<number, number>> }) => [...plan.rounds].map(([id, byDelivery]) => [id, Object.fromEntries(byDelivery)]);

test("pruning: a truncate is forgotten once Kafka no longer has any of its copies and none of its rounds waits for a partition", () => {
  const starts = (...o: number[]) => new Map(o.map((x, p) => [p, BigInt(x)]));
  const done = [{ truncateId: 'old', delivery: 1, rounds: 1 }, { truncateId: 'now', delivery: 1, rounds: 1 }];
  const old = [A('old', 0, 10, 1), A('old', 1, 7, 1), A('old', 2, 12, 1)];
  const now = [A('now', 0, 30, 1), A('now', 1, 25, 1), A('now', 2, 31, 1)];
  assert.deepEqual(prunableTruncates([...old, ...now], done, starts(11, 8, 13), 'now'), ['old']);
  assert.deepEqual(prunableTruncates([...old, ...now], done, starts(11, 8, 12), 'now'), [], "a copy Kafka still has: a replay may read it again");
  assert.deepEqual(prunableTruncates([...old, ...now], done, starts(11, 8), 'now'), [], "a partition whose start is not known");
  assert.deepEqual(prunableTruncates([...old, ...now], done, starts(99, 99, 99), 'now'), ['old'], 'never the truncate being applied');
  assert.deepEqual(prunableTruncates(old.slice(0, 2), [], starts(99, 99, 99), 'now'), [], 'a round not complete: a partition has yet to arrive');
  // A delivery abandoned for a later one that completed; the later one not complete yet.
  const redelivered = [A('r', 0, 5, 1), A('r', 0, 9, 2), A('r', 1, 8, 2), A('r', 2, 9, 2)];
  assert.deepEqual(prunableTruncates(redelivered, [{ truncateId: 'r', delivery: 2, rounds: 1 }], starts(99, 99, 99), 'now'), ['r']);
  assert.deepEqual(prunableTruncates(redelivered.slice(0, 3), [], starts(99, 99, 99), 'now'), []);
  // An older source's truncate sent twice (delivery 0): both rounds must be done.
  const twice = [A('o', 0, 5), A('o', 1, 5), A('o', 0, 9), A('o', 1, 9)];
  assert.deepEqual(prunableTruncates(twice, [{ truncateId: 'o', delivery: 0, rounds: 1 }], starts(99, 99), 'now'), []);
  assert.deepEqual(prunableTruncates(twice, [{ truncateId: 'o', delivery: 0, rounds: 2 }], starts(99, 99), 'now'), ['o']);
});

test('replay over a truncate: every partition rewound before its copy forgets the arrivals and the round', () => {
  const arrivals = [A('0/1A/1', 0, 10), A('0/1A/1', 1, 7), A('0/1A/1', 2, 12), A('0/2B/1', 0, 30), A('0/2B/1', 1, 25), A('0/2B/1', 2, 31)];
  const plan = planBarrierRewind(arrivals, new Map([[0, 0n], [1, 0n], [2, 0n]]), 3);
  assert.equal(plan.refused, null);
  assert.equal(plan.forget.length, 6);
  assert.deepEqual(rounds(plan), [['0/1A/1', { 0: 0 }], ['0/2B/1', { 0: 0 }]]);
});

test('replay between two truncates: only the later one is applied again', () => {
  const arrivals = [A('first', 0, 10), A('first', 1, 7), A('second', 0, 30), A('second', 1, 25)];
  const plan = planBarrierRewind(arrivals, new Map([[0, 11n], [1, 8n]]), 2);
  assert.equal(plan.refused, null);
  assert.deepEqual(plan.forget, [A('second', 0, 30), A('second', 1, 25)]);
  assert.deepEqual(rounds(plan), [['second', { 0: 0 }]]);
});

test('replay to the copy itself re-applies it; to just after it does not', () => {
  const arrivals = [A('t', 0, 10), A('t', 1, 7)];
  assert.deepEqual(planBarrierRewind(arrivals, new Map([[0, 10n], [1, 7n]]), 2).forget.length, 2);
  const after = planBarrierRewind(arrivals, new Map([[0, 11n], [1, 8n]]), 2);
  assert.deepEqual([after.forget, after.refused, after.rounds.size], [[], null, 0]);
});

test('replay of one partition across a truncate that another partition passed: refused, naming that copy', () => {
  const arrivals = [A('t', 0, 10), A('t', 1, 7), A('t', 2, 12)];
  const plan = planBarrierRewind(arrivals, new Map([[1, 0n]]), 3);
  assert.deepEqual(plan.refused, A('t', 0, 10));
  // The same with every partition moved, but one only to after its copy.
  assert.deepEqual(planBarrierRewind(arrivals, new Map([[0, 11n], [1, 0n], [2, 0n]]), 3).refused, A('t', 0, 10));
});

test('replay over a second round keeps the first one done', () => {
  // Delivered twice (a source replay): offsets 10 and 40 on partition 0, 7 and 35 on partition 1.
  const arrivals = [A('t', 0, 10), A('t', 1, 7), A('t', 0, 40), A('t', 1, 35)];
  const plan = planBarrierRewind(arrivals, new Map([[0, 20n], [1, 20n]]), 2);
  assert.equal(plan.refused, null);
  assert.deepEqual(rounds(plan), [['t', { 0: 1 }]]);
});

test('replay over a partial delivery and its replay: every partition rewound forgets both, per delivery', () => {
  // Partition 0 got delivery 100 (abandoned) and 200; partition 1 only 200.
  const arrivals = [A('t', 0, 10, 100), A('t', 0, 30, 200), A('t', 1, 25, 200)];
  const plan = planBarrierRewind(arrivals, new Map([[0, 0n], [1, 0n]]), 2);
  assert.equal(plan.refused, null);
  assert.equal(plan.forget.length, 3);
  assert.deepEqual(rounds(plan), [['t', { 100: 0, 200: 0 }]]);
});

test('replay of one partition back over a replayed delivery that another partition passed: refused, naming that copy', () => {
  const arrivals = [A('t', 0, 10, 100), A('t', 0, 30, 200), A('t', 1, 25, 200)];
  // Partition 0 alone to before its abandoned copy: partition 1 passed the truncate at 25.
  assert.deepEqual(planBarrierRewind(arrivals, new Map([[0, 0n]]), 2).refused, A('t', 1, 25, 200));
  // Partition 1 alone to before its copy: partition 0 passed it at 30.
  assert.deepEqual(planBarrierRewind(arrivals, new Map([[1, 0n]]), 2).refused, A('t', 0, 30, 200));
  // Both to after the abandoned copy, before the replayed one: delivery 200 again, 100 untouched.
  const plan = planBarrierRewind(arrivals, new Map([[0, 11n], [1, 0n]]), 2);
  assert.equal(plan.refused, null);
  assert.deepEqual(rounds(plan), [['t', { 100: 0, 200: 0 }]]);
  assert.deepEqual(plan.forget, [A('t', 0, 30, 200), A('t', 1, 25, 200)]);
});

test('a copy redelivered: the same truncate and partition, hashing to it, at the new delivery', () => {
  for (const partitions of [1, 3, 12]) {
    truncateKeys(42, '0/16B3748/0', partitions, 1_700_000_000_000).forEach((key, p) => {
      const again = redelivered(key, 1_700_000_000_001);
      assert.deepEqual(parseTruncateKey(again), { id: '0/16B3748/0', partitions, partition: p, delivery: 1_700_000_000_001 });
      assert.equal(partitionForKey(again, partitions), p);
      assert.equal(decodeWireHeader(again).schemaId, 42);
      assert.deepEqual(again, truncateKeys(42, '0/16B3748/0', partitions, 1_700_000_000_001)[p]);
    });
  }
});
