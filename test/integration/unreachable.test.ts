/**
 * What the commands do when a server cannot be reached: a closed port (refused at once) and a
 * black hole (a real socket that accepts TCP and never answers, as a hung server or a firewall
 * holding connections does). A one-shot command must end by itself within a bound, exit 1, and
 * name the server (host:port, never the password) with a remedy; the connectors wait for their
 * servers, saying so, and stop at once on SIGTERM. No live server is needed: every one a
 * command reaches is dead, and each fails at the first it tries.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from '../../shared/devstack/ports.ts';
import { BIN, cleanEnv, spawnCli } from '../helpers/cli.ts';

const SECRET = 'Unreach-Pw-never-printed';
/** Far above what the commands take (10-20 s on a loaded machine); before the fixes some never ended. */
const DEADLINE_MS = 60_000;

const dir = mkdtempSync(join(tmpdir(), 'sb-unreachable-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** A listener that accepts connections and never writes a byte. */
async function blackHole(t: TestContext): Promise<string> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return `127.0.0.1:${(server.address() as { port: number }).port}`;
}

function configs(name: string, at: { source: string; destination: string; kafka: string; registry: string }): { source: string; sink: string } {
  const source = join(dir, `${name}-source.yaml`);
  const sink = join(dir, `${name}-sink.yaml`);
  writeFileSync(source, `source:\n  url: postgres://replicator:${SECRET}@${at.source}/app\n  sslmode: disable\ntables:\n  include: [public.t]\ntopicPrefix: reach\nkafka:\n  brokers: ["${at.kafka}"]\nschemaRegistry:\n  url: http://${at.registry}\nmetricsPort: 0\n`);
  writeFileSync(sink, `topicPrefix: reach\nkafka:\n  brokers: ["${at.kafka}"]\nschemaRegistry:\n  url: http://${at.registry}\ndestination:\n  url: postgres://postgres:${SECRET}@${at.destination}/dest\n  sslmode: disable\nmetricsPort: 0\n`);
  return { source, sink };
}

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  ms: number;
  output: string;
}

/** The CLI as a child process; killed at the deadline, which the assertions then report as a hang. */
function runCli(args: string[]): Promise<Ended> {
  const started = Date.now();
  const proc = spawn(process.execPath, [BIN, ...args, '--log-level', 'warn'], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout.on('data', (d: Buffer) => (output += d));
  proc.stderr.on('data', (d: Buffer) => (output += d));
  const kill = setTimeout(() => proc.kill('SIGKILL'), DEADLINE_MS);
  return new Promise((resolve) =>
    proc.on('exit', (code, signal) => {
      clearTimeout(kill);
      resolve({ code, signal, ms: Date.now() - started, output });
    }),
  );
}

function assertFailedNaming(what: string, r: Ended, server: string, message: RegExp): void {
  assert.equal(r.signal, null, `${what} did not end by itself within ${DEADLINE_MS} ms:\n${r.output}`);
  assert.equal(r.code, 1, `${what}:\n${r.output}`);
  assert.ok(r.output.includes(server), `${what} does not name ${server}:\n${r.output}`);
  assert.match(r.output, message, what);
  assert.match(r.output, /remedy: /, `${what} gives no remedy:\n${r.output}`);
  assert.ok(!r.output.includes(SECRET), `${what} printed the password:\n${r.output}`);
}

// The subtests run at once: each mostly waits on a timeout.
test('servers that cannot be reached', { concurrency: true }, async (top) => {
  await Promise.all([
    top.test('one-shot commands end by themselves, exit 1, naming the server that does not answer', oneShotCommands),
    top.test('the sink with a destination that never answers: a warning naming it, retried, steps_retrying 1; SIGTERM ends it at once', sinkRetries),
    top.test('the source with its database refusing connections: a warning per attempt naming it and since when, retried, phase retrying 1; SIGTERM ends it at once', sourceWaits),
  ]);
});

async function oneShotCommands(t: TestContext): Promise<void> {
  const [hole, closed] = [await blackHole(t), `127.0.0.1:${await freePort()}`];
  const kafkaHole = configs('kafka-hole', { source: closed, destination: closed, kafka: hole, registry: closed });
  const pgHole = configs('pg-hole', { source: hole, destination: hole, kafka: closed, registry: closed });
  const [check, replay, schemaCopy, status] = await Promise.all([
    // It printed its verdict, then kafkajs's reconnects to the black hole kept it alive for minutes.
    runCli(['check', '--source-config', kafkaHole.source, '--sink-config', kafkaHole.sink, '--sample-seconds', '0']),
    // "Broker not connected" (kafkajs's words for a broker that never answered) after 40 s.
    runCli(['replay', '--topic', 'reach.public.t', '--to-offset', '0', '--sink-config', kafkaHole.sink]),
    // Its connections had no connect timeout: it waited for good, without a word.
    runCli(['schema', 'copy', '--source-config', pgHole.source, '--sink-config', pgHole.sink, '--dry-run']),
    runCli(['status', '--source-config', kafkaHole.source, '--sink-config', kafkaHole.sink, '--sample-seconds', '0']),
  ]);
  t.diagnostic(`check ${check.ms} ms, replay ${replay.ms} ms, schema copy ${schemaCopy.ms} ms, status ${status.ms} ms`);
  assertFailedNaming('check', check, `kafka ${hole}`, /cannot reach Kafka \(source configuration\): (no answer in 10 s|Kafka at \S+ accepted the connection but did not answer)/);
  assertFailedNaming('replay', replay, `Kafka at ${hole}`, /accepted the connection but did not answer/);
  // kafkajs's timeout of the first request is a warning naming the broker, not an ERROR line per attempt.
  assert.ok(!replay.output.includes('"level":50'), replay.output);
  assertFailedNaming('schema copy', schemaCopy, `source PostgreSQL at ${hole}`, /cannot connect to the source PostgreSQL at [^\n]*timeout/i);
  assertFailedNaming('status', status, closed, /cannot/);
}

/** It exited 1 at once, while the sink waits for its destination (a database restarted, or started after the connector). */
async function sourceWaits(t: TestContext): Promise<void> {
  const closed = `127.0.0.1:${await freePort()}`;
  const c = configs('source-closed', { source: closed, destination: closed, kafka: closed, registry: closed });
  const metricsPort = await freePort();
  writeFileSync(c.source, readFileSync(c.source, 'utf8').replace('metricsPort: 0', `metricsPort: ${metricsPort}`));
  const source = spawnCli('source', c.source);
  t.after(() => source.proc.kill('SIGKILL'));
  const warned = () => (source.output().match(new RegExp(`cannot reach the source PostgreSQL at ${closed} since \\S+ \\(\\d+ s\\): connect ECONNREFUSED [^;]*; retrying in \\d+ ms`, 'g')) ?? []).length;
  await waitFor('the source to warn twice about its database', () => warned() >= 2 || source.proc.exitCode !== null, { timeoutMs: 30_000 });
  assert.equal(source.proc.exitCode, null, `the source stopped instead of waiting:\n${source.output()}`);
  assert.match(source.output(), /"remedy":"nothing accepts connections at that address/);
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  assert.match(metrics, /^shardbridge_source_phase\{phase="retrying"[^}]*\} 1$/m, metrics.split('\n').filter((l) => l.includes('_phase')).join('\n'));
  assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).status, 200);
  assert.ok(!source.output().includes(SECRET), source.output());
  const stoppedAt = Date.now();
  source.proc.kill('SIGTERM');
  const { code } = await source.exited;
  assert.equal(code, 143, source.output());
  assert.ok(Date.now() - stoppedAt < 3_000, `SIGTERM took ${Date.now() - stoppedAt} ms`);
}

/** Its start-up connection had no connect timeout: it waited without a word, and SIGTERM took the 30 s shutdown limit. */
async function sinkRetries(t: TestContext): Promise<void> {
  const [hole, closed] = [await blackHole(t), `127.0.0.1:${await freePort()}`];
  const c = configs('sink-hole', { source: closed, destination: hole, kafka: closed, registry: closed });
  const metricsPort = await freePort();
  writeFileSync(c.sink, readFileSync(c.sink, 'utf8').replace('metricsPort: 0', `metricsPort: ${metricsPort}`));
  const sink = spawnCli('sink', c.sink);
  t.after(() => sink.proc.kill('SIGKILL'));
  await waitFor('the sink to warn about the destination', () => sink.output().includes(`prepare the destination ${hole}/dest failed, retrying`) || sink.proc.exitCode !== null, { timeoutMs: 45_000 });
  assert.equal(sink.proc.exitCode, null, `the sink stopped instead of retrying:\n${sink.output()}`);
  assert.match(sink.output(), /destination connection failed: timeout expired/);
  // Scraped, it says a step is retrying; /healthz (liveness) stays 200: the process works and retries.
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  assert.match(metrics, /^shardbridge_sink_steps_retrying\{[^}]*\} 1$/m, metrics.split('\n').filter((l) => l.includes('steps_retrying')).join('\n'));
  assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).status, 200);
  assert.ok(!sink.output().includes(SECRET), sink.output());
  const stoppedAt = Date.now();
  sink.proc.kill('SIGTERM');
  const { code } = await sink.exited;
  assert.equal(code, 143, sink.output());
  assert.ok(Date.now() - stoppedAt < 10_000, `SIGTERM took ${Date.now() - stoppedAt} ms`);
}
