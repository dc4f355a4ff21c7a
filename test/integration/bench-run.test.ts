/**
 * `shardbridge bench` end to end on a tiny workload: every phase runs against its real peer
 * (pg_dump | psql, a native subscription, pg_recvlogical, the bare reader, the compiled
 * connectors through Kafka, the sink replay, the latency load), every phase ends with the
 * destination equal to the source, and the JSON carries the keys issue 5 names. The figures
 * themselves mean nothing at this scale; the benchmark is run by hand (docs/benchmark.md).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, cleanEnv } from '../helpers/cli.ts';

test('bench --scale 0.005: every phase runs, verifies destination = source, and writes the JSON issue 5 asks for', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sb-bench-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'results.json');
  const run = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const args = ['bench', '--scale', '0.005', '--latency-seconds', '2', '--no-warmup', '--out', out];
    execFile(BIN, args, { env: cleanEnv(), timeout: 300_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
    });
  });
  assert.equal(run.code, 0, `${run.stdout}\n${run.stderr.slice(-4000)}`);
  assert.match(run.stdout, /destination = source \(counts and checksums\): snapshot yes, catch-up yes, sink replay yes, native sync yes, native catch-up yes, final yes/);
  assert.doesNotMatch(run.stdout, /FAILED/);

  const json = JSON.parse(readFileSync(out, 'utf8')) as Record<string, unknown>;
  for (const key of ['snapshot_rows_per_s', 'native_sync_rows_per_s', 'catchup_changes_per_s', 'native_catchup_changes_per_s', 'sink_apply_changes_per_s', 'pg_dump_rows_per_s', 'recvlogical_changes_per_s', 'bare_read_changes_per_s', 'latency_p99_ms', 'source_peak_rss_mb', 'sink_peak_rss_mb']) {
    assert.equal(typeof json[key], 'number', `${key}: ${json[key]}`);
    assert.ok((json[key] as number) > 0, `${key} > 0`);
  }
  assert.deepEqual(json.verified, { snapshot: true, catchup: true, sink_replay: true, native_sync: true, native_catchup: true, final: true });
  assert.deepEqual(json.failures, []);
  assert.equal(json.scale, 0.005);
  // Each timed phase has its CPU row.
  const phases = (json.cpu_by_phase as { phase: string }[]).map((p) => p.phase);
  for (const p of ['pg_dump | psql', 'native sync', 'ShardBridge snapshot', 'native catch-up', 'ShardBridge catch-up', 'sink replay', 'latency load']) assert.ok(phases.includes(p), `${p} in ${phases.join(', ')}`);
});
