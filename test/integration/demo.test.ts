/**
 * `shardbridge demo` through the real executable, as a user runs it: the whole migration on
 * its own dev stack, then everything it started must be gone — after a normal run, after
 * Ctrl-C in the middle, after a failed run, and after Ctrl-C ends a `--keep` run. Ctrl-C is
 * sent as a terminal sends it, to the whole process group, and must leave no temp dir behind.
 * And `shardbridge devstack` killed by SIGKILL (no hook runs) leaves no server running.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { waitFor } from '../../shared/devstack/ports.ts';
import { reapStaleTempDirs } from '../../shared/devstack/temp-dirs.ts';
import { getTestDestination, hasCitus } from '../helpers/postgres.ts';

const BIN = fileURLToPath(new URL('../../shared/cli/shardbridge.js', import.meta.url));
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const execFileP = promisify(execFile);

/** Environment without our own variables, so the developer's shell cannot change the outcome. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SHARDBRIDGE_') && k !== 'LOG_LEVEL'));
}

/**
 * The demo as a child. With `terminal`, as from a shell: in a process group of its own (which
 * ctrlC() signals whole, like a terminal's Ctrl-C) and with a TMPDIR of its own, to see what
 * it leaves there.
 */
function startDemo(args: string[] = [], terminal?: TestContext) {
  let tmp: string | undefined;
  if (terminal) {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-demo-tmp-'));
    // As root the clusters run as `postgres`, which must reach their dirs in it.
    fs.chmodSync(tmp, 0o755);
  }
  const env = tmp ? { ...cleanEnv(), TMPDIR: tmp } : cleanEnv();
  const proc = spawn(process.execPath, [BIN, 'demo', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: Boolean(terminal) });
  terminal?.after(() => {
    if (proc.exitCode === null && proc.signalCode === null) process.kill(-proc.pid!, 'SIGKILL');
    fs.rmSync(tmp!, { recursive: true, force: true });
  });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d) => (stdout += d));
  proc.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return {
    proc,
    exited,
    stdout: () => stdout,
    stderr: () => stderr,
    output: () => `--- stdout\n${stdout}\n--- stderr\n${stderr}`,
    ctrlC: () => process.kill(-proc.pid!, 'SIGINT'),
    tmp,
    /** What the demo left in its TMPDIR (tsx's cache aside). */
    leftInTmp: () => fs.readdirSync(tmp!).filter((n) => n.startsWith('shardbridge-')),
  };
}

/** Ctrl-C, and the exit code: the stop must end well before the 30 s forced exit, with its "stopped" line. */
async function stopsPromptly(d: ReturnType<typeof startDemo>): Promise<number | null> {
  const t0 = Date.now();
  d.ctrlC();
  const code = await d.exited;
  const seconds = (Date.now() - t0) / 1000;
  assert.ok(seconds < 20, `Ctrl-C took ${seconds} s to end the demo\n${d.output()}`);
  assert.match(d.stderr(), /stopped the connectors and the dev stack in [\d.]+ s/, d.output());
  assert.doesNotMatch(d.stderr(), /shutdown did not finish|"level":(50|60)/, d.output());
  // The progress lines say it: no JSON info lines of the CLI's shutdown among them.
  assert.doesNotMatch(d.stderr(), /"level":30/, d.output());
  assert.deepEqual(d.leftInTmp(), [], 'temp dirs left behind');
  return code;
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

test('a destination that never equals the source (a stray row): the report names the table and key, FAIL, exit 1, everything stopped', async () => {
  const d = startDemo(['--wait-seconds', '10']);
  await waitFor('the destination tables', () => d.stderr().includes('destination tables created') || d.proc.exitCode !== null, { timeoutMs: 120_000, intervalMs: 20 });
  const destination = /destination (postgres:\/\/\S+)/.exec(d.stderr());
  assert.ok(destination, d.output());
  const c = new pg.Client({ connectionString: destination[1] });
  await c.connect();
  try {
    await c.query(`INSERT INTO public.customers (id, name, email, created_at) VALUES (999999, 'stray', 'stray@example.com', now())`);
  } finally {
    await c.end();
  }
  assert.equal(await d.exited, 1, d.output());
  const out = d.stdout();
  // It said only that the wait ran out, with no table in the report.
  assert.match(out, /^ {2}public\.customers +1,100 +1,101 +[\d,]+ +[\d,]+ +NO$/m, d.output());
  assert.match(out, /^ {2}! public\.customers: .*e\.g\. keys \{"id":"999999"\} only on destination$/m);
  assert.match(out, /^verdict: FAIL — public\.customers differs; timed out after 10 s waiting for the destination to equal the source \(--wait-seconds\)$/m);
  await assertAllStopped(stackPorts(d.stderr()));
});

test('--destination: a database of the user\'s is migrated into (PASS, its password never printed) and left as it was; one holding the demo\'s tables, or unreachable, is refused before anything starts (exit 2)', async (t) => {
  const dest = await getTestDestination();
  const db = `sb_demo_dest_${process.pid}`;
  const admin = new pg.Client({ connectionString: dest.url });
  await admin.connect();
  t.after(async () => {
    await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`).catch(() => {});
    await admin.end().catch(() => {});
    await dest.release();
  });
  await admin.query(`CREATE DATABASE ${db}`);
  const url = new URL(dest.url);
  url.pathname = `/${db}`;
  url.password = 'pw-not-printed'; // trust authentication in the test clusters: sent, not checked
  const own = new pg.Client({ connectionString: url.toString() });
  own.on('error', () => {}); // ended by the DROP DATABASE … WITH (FORCE) of the cleanup when a step fails
  await own.connect();
  // Citus: the database needs the extension and the workers added, as the refusal's remedy says; plain PostgreSQL here.
  const citus = (await hasCitus(admin));
  if (citus) await own.query('CREATE EXTENSION citus');
  await own.query('CREATE TABLE public.customers (id int PRIMARY KEY)');

  const refused = startDemo(['--destination', url.toString()]);
  assert.equal(await refused.exited, 2, refused.output());
  assert.match(refused.stderr(), /^shardbridge demo: --destination postgres:\/\/postgres:\*\*\*@\S+ already has public\.customers: the demo makes these there and drops them when it stops, so it takes an empty database/m, refused.output());
  assert.doesNotMatch(refused.output(), /dev stack|pw-not-printed/);
  const unreachable = startDemo(['--destination', 'postgres://someone:pw-not-printed@127.0.0.1:9/x']);
  assert.equal(await unreachable.exited, 2, unreachable.output());
  assert.match(unreachable.stderr(), /^shardbridge demo: cannot connect to --destination postgres:\/\/someone:\*\*\*@127\.0\.0\.1:9\/x: /m);
  assert.doesNotMatch(unreachable.output(), /pw-not-printed/);

  await own.query('DROP TABLE public.customers');
  await own.query('CREATE TABLE public.kept (id int PRIMARY KEY)'); // the user's own: left alone
  const d = startDemo(['--destination', url.toString()]);
  assert.equal(await d.exited, 0, d.output());
  assert.match(d.stdout(), /^verdict: PASS — the destination equals the source \(4 tables, [\d,]+ rows, 3 sequences at or above the source\)$/m, d.output());
  assert.match(d.stderr(), /dev stack ready: .*destination postgres:\/\/postgres:\*\*\*@\S+ \(--destination\)$/m);
  assert.doesNotMatch(d.output(), /pw-not-printed/);
  const left = await own.query(
    `SELECT n.nspname || '.' || c.relname AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname IN ('public', 'shardbridge', 'shardbridge_staging') ORDER BY 1`,
  );
  assert.deepEqual(left.rows.map((r) => r.t), ['public.kept'], 'what the demo made is dropped, the rest left');
  await own.end();
  const ports = stackPorts(d.stderr()).filter((p) => p !== Number(url.port));
  await assertAllStopped(ports);
});

test('Ctrl-C while the demo streams stops everything it started, promptly and in order, and exits 130', async (t) => {
  const d = startDemo([], t);
  await waitFor('the sink to start', () => d.stderr().includes('sink connector started') || d.proc.exitCode !== null, { timeoutMs: 120_000, intervalMs: 50 });
  assert.equal(d.proc.exitCode, null, d.output());
  const ports = stackPorts(d.stderr());
  assert.equal(await stopsPromptly(d), 130, d.output());
  assert.match(d.stderr(), /SIGINT: stopping everything the demo started/);
  assert.doesNotMatch(d.stdout(), /verdict:/);
  await assertAllStopped(ports);
});

test('--keep leaves the stack and connectors running, says how to look at them, and Ctrl-C ends it with the verdict\'s exit code', async (t) => {
  const d = startDemo(['--keep'], t);
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
  // The printed commands work as printed: `status` (not `check`, which fails on the running
  // source's slot) and the psql pair that shows a change go through.
  const printed = (label: string) => {
    const m = new RegExp(`^ {2}${label} +(.+)$`, 'm').exec(out);
    assert.ok(m, `no ${label} line\n${out}`);
    return m[1];
  };
  const status = printed('status').split(' ');
  assert.equal(status[0], 'node');
  const st = await execFileP('node', [...status.slice(1), '--sample-seconds', '0'], { cwd: REPO, env: cleanEnv(), timeout: 30_000 });
  assert.match(st.stdout, /^ShardBridge status .* OK$/m, st.stdout);
  const psql = (line: string) => {
    const m = /^psql (\S+) -c "(.*)"$/.exec(line);
    assert.ok(m, line);
    return execFileP('psql', [m[1], '-XAt', '-c', m[2]], { env: cleanEnv(), timeout: 10_000 });
  };
  await psql(printed('try'));
  const look = /^ {15}(psql .*SELECT id, status FROM orders.*)$/m.exec(out);
  assert.ok(look, out);
  await waitFor('the update to reach the destination', async () => (await psql(look[1])).stdout.trim() === '1|returned', { timeoutMs: 30_000, intervalMs: 200 });
  assert.equal(await stopsPromptly(d), 0, d.output());
  await assertAllStopped(ports);
});

test('Kafka killed mid-run: the demo says which server died, within seconds, exits 1 and stops the rest', async (t) => {
  const d = startDemo([], t);
  await waitFor('the stack to be ready', () => d.stderr().includes('dev stack ready') || d.proc.exitCode !== null, { timeoutMs: 120_000, intervalMs: 50 });
  const ports = stackPorts(d.stderr());
  const broker = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).find((p) => {
    try {
      const argv = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      return argv.includes('kafka.Kafka') && argv.some((x) => x.startsWith(d.tmp!));
    } catch {
      return false;
    }
  });
  assert.ok(broker, 'the demo\'s broker process');
  const killedAt = Date.now();
  process.kill(Number(broker), 'SIGKILL');
  assert.equal(await d.exited, 1, d.output());
  // It waited 90 s (the snapshot's limit) without a line, then blamed the snapshot.
  assert.ok(Date.now() - killedAt < 45_000, `took ${(Date.now() - killedAt) / 1000} s\n${d.output()}`);
  assert.match(d.stdout(), new RegExp(`^verdict: FAIL — the dev stack's Kafka broker \\(127\\.0\\.0\\.1:${ports[0]}\\) died`, 'm'), d.output());
  const stamps = [...d.stderr().matchAll(/^\[ *([\d.]+)s\]/gm)].map((m) => Number(m[1]));
  const gaps = stamps.slice(1).map((s, i) => s - stamps[i]);
  assert.ok(Math.max(...gaps) < 20, `a silent stretch of ${Math.max(...gaps)} s\n${d.stderr()}`);
  assert.deepEqual(d.leftInTmp(), [], 'temp dirs left behind');
  await assertAllStopped(ports);
});

test('devstack killed by SIGKILL: no server outlives it, and the next start removes its temp dirs; --kafka-heap-mb sizes the broker', async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-devstack-tmp-'));
  fs.chmodSync(tmp, 0o755);
  const proc = spawn(process.execPath, [BIN, 'devstack', '--json', '--kafka-heap-mb', '640'], { env: { ...cleanEnv(), TMPDIR: tmp }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  proc.stdout.on('data', (d) => (stdout += d));
  t.after(() => {
    proc.kill('SIGKILL');
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  const a = await waitFor('the addresses', () => (stdout.includes('\n') ? (JSON.parse(stdout) as Record<string, string>) : null), { timeoutMs: 120_000 });
  const ports = [a.kafka, a.schemaRegistry, a.source, a.destination].map((u) => Number(/127\.0\.0\.1:(\d+)/.exec(u)![1]));
  const dirs = fs.readdirSync(tmp).filter((n) => n.startsWith('shardbridge-')).sort();
  assert.deepEqual(dirs.map((n) => n.replace(/-p\d+-\w+$/, '')), ['shardbridge-kafka', 'shardbridge-pg-destination', 'shardbridge-pg-source']);
  const brokers = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map((d) => {
    try {
      return fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
    } catch {
      return [];
    }
  }).filter((argv) => argv.includes('kafka.Kafka') && argv.some((x) => x.startsWith(tmp)));
  assert.deepEqual(brokers.map((argv) => argv.filter((x) => x.startsWith('-Xmx'))), [['-Xmx640m']]);

  proc.kill('SIGKILL');
  await assertAllStopped(ports);
  await waitFor('the devstack process to be reaped', () => proc.exitCode !== null || proc.signalCode !== null);
  assert.deepEqual(reapStaleTempDirs(tmp).map((d) => path.basename(d)).sort(), dirs);
  assert.deepEqual(fs.readdirSync(tmp).filter((n) => n.startsWith('shardbridge-')), []);
});
