/**
 * The bench's run settings: the Kafka warm-up's plan, the connectors' heap cap through
 * NODE_OPTIONS, the command's options and defaults, and the report's setup line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connectorNodeOptions } from '../../shared/bench/children.ts';
import { setupLine } from '../../shared/bench/report.ts';
import { WARMUP, warmupBatches, warmupMessages } from '../../shared/bench/warmup.ts';
import { partitionForKey } from '../../shared/kafka/murmur2.ts';
import { CommanderError } from 'commander';
import { benchSettings, DEFAULT_CONNECTOR_HEAP_MB } from '../../shared/cli/commands/bench.ts';
import { buildProgram } from '../../shared/cli/main.ts';

test('warm-up batches: as many records as fit in the batch bytes, the last batch the rest', () => {
  assert.deepEqual(warmupBatches({ records: 10, keyBytes: 8, valueBytes: 92, batchBytes: 400 }), [4, 4, 2]);
  assert.deepEqual(warmupBatches({ records: 8, keyBytes: 8, valueBytes: 92, batchBytes: 400 }), [4, 4]);
  assert.deepEqual(warmupBatches({ records: 2, keyBytes: 8, valueBytes: 992, batchBytes: 400 }), [1, 1], 'a record bigger than a batch still goes, alone');
  assert.deepEqual(warmupBatches({ records: 0, keyBytes: 8, valueBytes: 92, batchBytes: 400 }), []);
  const plan = warmupBatches(WARMUP);
  assert.equal(plan.reduce((a, b) => a + b, 0), WARMUP.records);
  assert.ok(plan[0] * (WARMUP.keyBytes + WARMUP.valueBytes) <= WARMUP.batchBytes);
  assert.equal(plan.length, 97, 'about a hundred produce requests of ~3,100 records, as the snapshot makes');
});

test('warm-up messages: distinct 8-byte keys spread over every partition, values of the workload size', () => {
  const msgs = warmupMessages(WARMUP, 1_000, 600);
  assert.equal(msgs.length, 600);
  assert.ok(msgs.every((m) => m.topic === WARMUP.topic && m.key!.length === 8 && m.value!.length === 250));
  assert.equal(new Set(msgs.map((m) => m.key!.toString('hex'))).size, 600);
  assert.equal(msgs[0].key!.readBigUInt64BE(), 1_000n);
  assert.equal(msgs[599].value!.readUInt32BE(0), 1_599);
  const partitions = new Set(msgs.map((m) => partitionForKey(m.key!, WARMUP.partitions)));
  assert.equal(partitions.size, WARMUP.partitions);
});

test('connector NODE_OPTIONS: the heap cap replaces any inherited one, other options kept', () => {
  assert.equal(connectorNodeOptions(undefined, 256), '--max-old-space-size=256');
  assert.equal(connectorNodeOptions('', 0), undefined);
  assert.equal(connectorNodeOptions(undefined, undefined), undefined);
  assert.equal(connectorNodeOptions('--enable-source-maps --max-old-space-size=4096', 192), '--enable-source-maps --max-old-space-size=192');
  assert.equal(connectorNodeOptions('--max_old_space_size=4096  --trace-warnings', 0), '--trace-warnings', '0: node\'s default, whatever was inherited');
  assert.equal(connectorNodeOptions('--max-old-space-size 4096 --trace-warnings', 320), '--trace-warnings --max-old-space-size=320', 'the value as a separate token goes too');
});

test('bench settings: warm-up on, no connector heap cap and the compiled connectors unless told otherwise', () => {
  assert.equal(DEFAULT_CONNECTOR_HEAP_MB, 0);
  assert.deepEqual(benchSettings({}), { scale: 1, sourceOnly: false, latencySeconds: 20, warmup: true, connectorHeapMb: 0, fromSources: false });
  assert.deepEqual(benchSettings({ scale: 0.2, warmup: false, connectorHeapMb: 0, sourceOnly: true, latencySeconds: 5 }), {
    scale: 0.2,
    sourceOnly: true,
    latencySeconds: 5,
    warmup: false,
    connectorHeapMb: 0,
    fromSources: false,
  });
  assert.equal(benchSettings({ warmup: true }).warmup, true);
});

test('the report\'s setup line names the heap cap and the warm-up', () => {
  assert.equal(
    setupLine({ connectorHeapMb: 256, warmup: { ms: 9_340, records: 300_000, kafkaCpuS: 8.1 } }),
    'setup: connectors run with NODE_OPTIONS=--max-old-space-size=256; Kafka broker warmed up first (300,000 records, 9.3 s, not timed)',
  );
  assert.equal(setupLine({ connectorHeapMb: 0, warmup: null }), "setup: connectors run with node's default heap limit; Kafka broker not warmed up (--no-warmup)");
  assert.equal(setupLine({}), null, 'results written before these settings existed');
  assert.match(setupLine({ connectorHeapMb: 0, warmup: null, connectorRuntime: 'compiled' })!, /^setup: connectors run compiled \(npm run build, as the image runs them\); /);
  assert.match(setupLine({ connectorHeapMb: 0, warmup: null, connectorRuntime: 'sources' })!, /through tsx \(--from-sources\)/);
});

test('the bench command parses --no-warmup and --connector-heap-mb', async () => {
  const parse = async (...args: string[]) => {
    let opts: Record<string, unknown> | undefined;
    const program = buildProgram(
      async (_name, o) => void (opts = o),
      () => {},
      () => {},
    );
    await program.parseAsync(['node', 'shardbridge', 'bench', ...args], { from: 'node' });
    return benchSettings(opts!);
  };
  assert.deepEqual(await parse(), benchSettings({}));
  const s = await parse('--no-warmup', '--connector-heap-mb', '0', '--scale', '0.2');
  assert.equal(s.warmup, false);
  assert.equal(s.connectorHeapMb, 0);
  assert.equal((await parse('--connector-heap-mb', '320')).connectorHeapMb, 320);
  assert.equal(s.fromSources, false);
  assert.equal((await parse('--from-sources')).fromSources, true);
  await assert.rejects(parse('--connector-heap-mb', 'lots'), CommanderError);
});
