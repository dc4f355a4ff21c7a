/**
 * The dev stack's broker settings that its tests and demos depend on (shared/devstack/kafka.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderServerProperties } from '../../shared/devstack/kafka.ts';

const props = (text: string) => new Map(text.trim().split('\n').map((l) => l.split('=', 2) as [string, string]));

test('the fetch purgatory is purged every 100 completed fetches, not 1000: an idle sink over 2,000 partitions otherwise fills the 512 MB heap', () => {
  // Measured (jmap -histo:live): each expired idle fetch kept a FetchPartitionStatus per partition
  // it named until a purge; 175 fetches over 2,003 partitions held 349,000 of them, and the broker
  // ran out of heap within 4 minutes at 512 MB (13 at 1 GB). At 100 the count stayed under ~200,000.
  const p = props(renderServerProperties({ port: 9092, controllerPort: 9093, logDir: '/tmp/x' }));
  assert.equal(p.get('fetch.purgatory.purge.interval.requests'), '100');
});
