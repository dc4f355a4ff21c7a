/**
 * `shardbridge demo` through the real executable, as a user runs it: the whole migration on
 * its own dev stack, then everything it started must be gone — after a normal run, after
 * Ctrl-C in the middle, after a failed run, and after Ctrl-C ends a `--keep` run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../shared/devstack/ports.ts';

const BIN = fileURLToPath(new URL('../../shared/cli/shardbridge.js', import.meta.url));

/** Environment without our own variables, so the developer's shell cannot change the outcome. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SHARDBRIDGE_') && k !== 'LOG_LEVEL'));
}

function startDemo(args: string[] = []) {
  const proc = spawn(process.execPath, [BIN, 'demo', ...args], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d) => (stdout += d));
  proc.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, exited, stdout: () => stdout, stderr: () => stderr, output: () => `--- stdout\n${stdout}\n--- stderr\n${stderr}` };
}

/** The four ports of the stack, from the "dev stack ready" progress line. */
function stackPorts(stderr: string): number[] {
  const line = stderr.split('\n').find((l) => l.includes('dev stack ready'));
  assert.ok(line, 'no "dev stack ready" line');
  const ports = [...line.matchAll(/127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1]));
  assert.equal(ports.length, 4, line);
  return ports;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function assertAllStopped(ports: number[]): Promise<void> {
  await waitFor(`ports ${ports.join(', ')} to close`, async () => (await Promise.all(ports.map(accepts))).every((open) => !open), {
    timeoutMs: 30_000,
    intervalMs: 200,
  });
}

test('npm run demo: the destination equals the source, the report says PASS, and everything is stopped', async () => {
  const started = Date.now();
  const d = startDemo();
  const code = await d.exited;
  const seconds = (Date.now() - started) / 1000;
  assert.equal(code, 0, d.output());
  const out = d.stdout();
  assert.match(out, /^verdict: PASS — the destination equals the source \(4 tables, [\d,]+ rows, 3 sequences at or above the source\)$/m, d.output());
  for (const table of ['customers', 'products', 'orders', 'order_items']) {
    assert.match(out, new RegExp(`^ {2}public\\.${table} +[\\d,]+ +[\\d,]+ +[\\d,]+ +[\\d,]+ +yes$`, 'm'), `row of ${table}\n${out}`);
  }
  // Changes were streamed (not only snapshotted), and the sink applied as many as were published.
  const streamed = /^streamed: +([\d,]+) changes from 10 source transactions .*; the sink applied ([\d,]+) /m.exec(out);
  assert.ok(streamed, out);
  assert.ok(Number(streamed[1].replace(/,/g, '')) > 1000, streamed[0]);
  assert.equal(streamed[2], streamed[1]);
  assert.match(out, /^sequences: .*public\.orders_id_seq 2250 → \d+/m);
  assert.match(d.stderr(), /destination caught up [\d.]+ s after the last source commit/);
  assert.ok(seconds < 120, `the demo took ${seconds} s`);
  await assertAllStopped(stackPorts(d.stderr()));
});

test('a demo that fails (here: the snapshot not done within --wait-seconds) reports FAIL with the reason, exits 1 and stops everything', async () => {
  const d = startDemo(['--wait-seconds', '0.001']);
  assert.equal(await d.exited, 1, d.output());
  assert.match(d.stdout(), /^failure: +timed out after 0\.001 s waiting for the snapshot to finish \(--wait-seconds\)$/m, d.output());
  assert.match(d.stdout(), /^verdict: FAIL — timed out after 0\.001 s waiting for the snapshot to finish/m);
  await assertAllStopped(stackPorts(d.stderr()));
});

test('Ctrl-C while the demo streams stops everything it started and exits 130', async () => {
  const d = startDemo();
  await waitFor('the sink to start', () => d.stderr().includes('sink connector started') || d.proc.exitCode !== null, { timeoutMs: 120_000, intervalMs: 50 });
  assert.equal(d.proc.exitCode, null, d.output());
  const ports = stackPorts(d.stderr());
  d.proc.kill('SIGINT');
  assert.equal(await d.exited, 130, d.output());
  assert.match(d.stderr(), /SIGINT: stopping everything the demo started/);
  assert.doesNotMatch(d.stdout(), /verdict:/);
  await assertAllStopped(ports);
});

test('--keep leaves the stack and connectors running, says how to look at them, and Ctrl-C ends it', async () => {
  const d = startDemo(['--keep']);
  await waitFor('the --keep instructions', () => d.stdout().includes('Ctrl-C stops everything') || d.proc.exitCode !== null, { timeoutMs: 120_000, intervalMs: 100 });
  assert.equal(d.proc.exitCode, null, d.output());
  const out = d.stdout();
  assert.match(out, /^verdict: PASS/m, d.output());
  const ports = stackPorts(d.stderr());
  assert.deepEqual(await Promise.all(ports.map(accepts)), [true, true, true, true], 'the stack is still up');
  const metrics = /metrics +source (http:\/\/\S+) +sink (http:\/\/\S+)/.exec(out);
  assert.ok(metrics, out);
  for (const url of [metrics[1], metrics[2]]) {
    const res = await fetch(url);
    assert.equal(res.status, 200, url);
    assert.match(await res.text(), /shardbridge_(source|sink)_/);
  }
  assert.match(out, /^ {2}destination +psql postgres:\/\/postgres@127\.0\.0\.1:\d+\/shop$/m);
  assert.match(out, /kcat -b 127\.0\.0\.1:\d+ -L/);
  d.proc.kill('SIGINT');
  assert.equal(await d.exited, 0, d.output());
  await assertAllStopped(ports);
});
