/**
 * The test command: starts ONE real Kafka broker and ONE registry server for the whole
 * run (unless SHARDBRIDGE_TEST_KAFKA / SHARDBRIDGE_TEST_SCHEMA_REGISTRY point at real
 * ones), hands them to every test file through those variables, runs node's test runner
 * over test/**\/*.test.ts (or the files given), and stops what it started, whatever happens.
 */
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { startKafka } from '../shared/devstack/kafka.ts';
import { startSchemaRegistry } from '../shared/devstack/schema-registry-server.ts';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

function findTests(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (name.endsWith('.test.ts')) out.push(path.relative(root, p));
  }
  return out;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const files = args.length ? args : [...findTests(path.join(root, 'test/unit')), ...findTests(path.join(root, 'test/integration'))];
  const logger = pino({ level: process.env.LOG_LEVEL ?? 'warn' });
  const needsServers = files.some((f) => !f.includes(`test${path.sep}unit${path.sep}`) && !f.startsWith('test/unit/'));
  const stops: (() => Promise<void>)[] = [];
  const env = { ...process.env };
  const stopAll = async () => {
    for (const stop of stops.splice(0).reverse()) await stop().catch(() => {});
  };
  process.once('SIGINT', () => void stopAll().then(() => process.exit(130)));
  process.once('SIGTERM', () => void stopAll().then(() => process.exit(143)));
  try {
    if (needsServers && !env.SHARDBRIDGE_TEST_KAFKA) {
      const t0 = Date.now();
      const broker = await startKafka({ logger });
      stops.push(() => broker.stop());
      env.SHARDBRIDGE_TEST_KAFKA = broker.bootstrap;
      console.log(`test run: Kafka ${broker.version} broker ${broker.bootstrap} ready in ${Date.now() - t0} ms`);
    }
    if (needsServers && !env.SHARDBRIDGE_TEST_SCHEMA_REGISTRY) {
      const registry = await startSchemaRegistry({ logger });
      stops.push(() => registry.stop());
      env.SHARDBRIDGE_TEST_SCHEMA_REGISTRY = registry.url;
    }
    const code = await new Promise<number>((resolve) => {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=spec', '--test-timeout=600000', ...files],
        { cwd: root, env, stdio: 'inherit' },
      );
      child.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0)));
    });
    return code;
  } finally {
    await stopAll();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error('test run failed to start:', err instanceof Error ? err.message : err);
    process.exit(1);
  },
);
