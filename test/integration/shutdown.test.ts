import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../../shared/devstack/ports.ts';

const SHUTDOWN = new URL('../../shared/shutdown.ts', import.meta.url).href;
const dir = mkdtempSync(join(tmpdir(), 'sb-shutdown-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** A child process that registers two handlers, keeps itself alive, and prints what happens. */
function child(handlerBody: string) {
  const script = join(dir, `child-${Math.random().toString(36).slice(2)}.ts`);
  writeFileSync(
    script,
    `import { onShutdown } from ${JSON.stringify(SHUTDOWN)};
     const keepAlive = setInterval(() => {}, 1000);
     onShutdown(async (sig) => { console.log('first-registered ' + sig); clearInterval(keepAlive); }, undefined, { timeoutMs: 10000 });
     onShutdown(async (sig) => { ${handlerBody} });
     console.log('ready');\n`,
  );
  const proc = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (out += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return { proc, output: () => out, exited };
}

test('SIGTERM runs the handlers newest first and lets the process end', async () => {
  const c = child(`console.log('last-registered ' + sig);`);
  await waitFor('child ready', () => c.output().includes('ready'), { timeoutMs: 30_000, intervalMs: 20 });
  c.proc.kill('SIGTERM');
  const { code } = await c.exited;
  assert.equal(code, 0, c.output());
  const lines = c.output().trim().split('\n');
  assert.deepEqual(lines, ['ready', 'last-registered SIGTERM', 'first-registered SIGTERM']);
});

test('a second SIGINT while a handler hangs forces exit 130', async () => {
  const c = child(`console.log('stuck'); await new Promise(() => {});`);
  await waitFor('child ready', () => c.output().includes('ready'), { timeoutMs: 30_000, intervalMs: 20 });
  c.proc.kill('SIGINT');
  await waitFor('handler running', () => c.output().includes('stuck'), { timeoutMs: 10_000, intervalMs: 20 });
  c.proc.kill('SIGINT');
  const { code } = await c.exited;
  assert.equal(code, 130, c.output());
  assert.ok(!c.output().includes('first-registered'), 'the forced exit did not wait for the other handler');
});
