import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { COMMAND_MODULES, main, type CommandName } from '../../shared/cli/main.ts';
import { execCli } from '../helpers/cli.ts';

const SECRET = 'S3cr3t-Pw-do-not-print';

const dir = mkdtempSync(join(tmpdir(), 'sb-cli-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** The real executable (shebang + tsx) as a child process. */
const run = (args: string[]) => execCli(args);

/** Run main() in-process, capturing its output. */
async function runMain(args: string[], modules?: Partial<Record<CommandName, string>>, env: NodeJS.ProcessEnv = {}) {
  let stdout = '';
  let stderr = '';
  const code = await main(['node', 'shardbridge', ...args], { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), env, modules });
  return { code, stdout, stderr };
}

function configFile(name: string, yaml: string): string {
  const p = join(dir, name);
  writeFileSync(p, yaml);
  return p;
}

const VALID_SOURCE = `
source:
  url: postgres://replicator:${SECRET}@db.internal:5432/app
kafka:
  brokers: ["k1:9092"]
  sasl: { mechanism: plain, username: u, password: ${SECRET} }
schemaRegistry:
  url: http://registry:8081
`;

test('--help lists every subcommand with a description', async () => {
  const r = await run(['--help']);
  assert.equal(r.code, 0, r.stderr);
  for (const cmd of ['source', 'sink', 'check', 'status', 'replay', 'resnapshot', 'cutover', 'cleanup', 'schema', 'devstack', 'demo', 'bench']) {
    assert.match(r.stdout, new RegExp(`^  ${cmd}\\b.*\\S+\\s{2,}\\S`, 'm'), `${cmd} missing or undescribed in:\n${r.stdout}`);
  }
  assert.match(r.stdout, /schema copy/);
  assert.match(r.stdout, /Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 130\/143 stopped by SIGINT\/SIGTERM\./);
});

test('source --help explains its options', async () => {
  const r = await run(['source', '--help']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Usage: shardbridge source/);
  assert.match(r.stdout, /-c, --config <file>\s+source connector config file/);
  assert.match(r.stdout, /SHARDBRIDGE_SOURCE_/);
  assert.match(r.stdout, /--verbose\s+print stack traces/);
});

test('every command help describes every option', async () => {
  const commands = [['source'], ['sink'], ['check'], ['status'], ['replay'], ['resnapshot'], ['cutover'], ['cleanup'], ['schema', 'copy'], ['devstack'], ['demo'], ['bench']];
  const expectedOptions: Record<string, string[]> = {
    replay: ['--topic <topic>', '--partition <n>', '--to-offset <n>', '--to-time <ts>', '--sink-config <file>'],
    resnapshot: ['--table <schema.table>', '--source-config <file>', '--wait-seconds <n>', '--json'],
    devstack: ['--json'],
    demo: ['--keep'],
    bench: ['--scale <n>', '--out <path>'],
    check: ['--source-config <file>', '--sink-config <file>'],
  };
  for (const cmd of commands) {
    const r = await runMain([...cmd, '--help']);
    assert.equal(r.code, 0, `${cmd.join(' ')}: ${r.stderr}`);
    const optionLines = r.stdout.split('\n').filter((l) => /^\s+(-\w, )?--[\w-]+/.test(l));
    assert.ok(optionLines.length >= 4, r.stdout);
    for (const line of optionLines) assert.match(line, /^\s+\S.*?\s{2,}\S/, `undescribed option in ${cmd.join(' ')}: ${line}`);
    for (const opt of expectedOptions[cmd[0]] ?? []) assert.ok(r.stdout.includes(opt), `${cmd.join(' ')} lacks ${opt}`);
  }
});

test('a wrong type in the config file: exit 2 naming the key, password never printed', async () => {
  const f = configFile('wrong-type.yaml', `${VALID_SOURCE}snapshot:\n  chunkSize: lots\n`);
  const r = await run(['source', '--config', f]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /config: snapshot\.chunkSize: expected a positive integer, got "lots"/);
  assert.ok(!(r.stdout + r.stderr).includes(SECRET), r.stderr);
});

test('a missing required key: exit 2 naming the key', async () => {
  const f = configFile('missing.yaml', VALID_SOURCE.replace('schemaRegistry:\n  url: http://registry:8081\n', ''));
  const r = await run(['source', '--config', f]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /config: schemaRegistry\.url: required/);
  assert.ok(!(r.stdout + r.stderr).includes(SECRET), r.stderr);
});

test('an unknown key: exit 2 naming the key', async () => {
  const f = configFile('unknown.yaml', `${VALID_SOURCE}tabels:\n  schemas: [public]\n`);
  const r = await run(['source', '--config', f]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /config: tabels: unknown key \(did you mean "tables"\?\)/);
  assert.match(r.stderr, new RegExp(`configuration error in ${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  assert.ok(!(r.stdout + r.stderr).includes(SECRET), r.stderr);
});

test('a secret inside a section given as a string, or in a URL with a space: exit 2, never printed', async () => {
  const f = configFile('sink-secret.yaml', `destination: { url: "postgre://u:${SECRET} x@h/d" }\nkafka: { brokers: ["k1:9092"] }\nschemaRegistry: { url: "http://r:8081" }\n`);
  const env = { SHARDBRIDGE_SINK_KAFKA__SASL: `{mechanism:"plain",username:"u",password:"${SECRET}"}` };
  const r = await runMain(['sink', '--config', f], undefined, env);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /config: kafka\.sasl \(from SHARDBRIDGE_SINK_KAFKA__SASL\): expected a mapping, got a string \(value hidden\)/);
  assert.match(r.stderr, /config: destination\.url: .*got "postgre:\/\/h" \(the rest of the URL not shown\)/);
  assert.ok(!(r.stdout + r.stderr).includes(SECRET.slice(0, 6)), r.stderr);
});

test('a postgres URL node-postgres would misread, a bad sslmode, a missing CA file: exit 2 naming the key, for every command', async () => {
  const rest = 'kafka: { brokers: ["k1:9092"] }\nschemaRegistry: { url: "http://r:8081" }\n';
  const cases: [string, RegExp][] = [
    [`source: { url: "postgres://u:ab/${SECRET}@h/db" }`, /config: source\.url: not a valid URL: percent-encode/],
    ['source: { url: "postgres://u@h/db?sslmode=bogus" }', /config: source\.url: its sslmode "bogus" is not one of/],
    ['source: { url: "postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/x" }', /config: source\.url: its sslrootcert \/nonexistent\/x cannot be read: no such file/],
  ];
  for (const [section, want] of cases) {
    const f = configFile('bad-url.yaml', `${section}\n${rest}`);
    for (const args of [['source', '--config', f], ['check', '--source-config', f]]) {
      const r = await runMain(args);
      assert.equal(r.code, 2, `${args[0]}: ${r.stderr}`);
      assert.match(r.stderr, want);
      assert.ok(!(r.stdout + r.stderr).includes(SECRET), r.stderr);
    }
  }
});

test('usage errors exit 2', async () => {
  assert.equal((await runMain(['replay', '--topic', 't'])).code, 2);
  assert.equal((await runMain(['replay', '--topic', 't', '--to-offset', '1', '--to-time', '2024-01-01T00:00:00Z'])).code, 2);
  assert.equal((await runMain(['bench', '--scale', '-1'])).code, 2);
  assert.equal((await runMain(['nope'])).code, 2);
});

test('an unbuilt command says so and exits 2, after validating its config', async () => {
  const missing = { source: './commands/__not-there__.ts', status: './commands/__not-there__.ts' };
  const s = await runMain(['status'], missing);
  assert.equal(s.code, 2);
  assert.equal(s.stderr, 'shardbridge status: not built yet\n');
  const ok = configFile('valid.yaml', VALID_SOURCE);
  const src = await runMain(['source', '--config', ok], missing);
  assert.equal(src.stderr, 'shardbridge source: not built yet\n');
  assert.equal(src.code, 2);
  assert.ok(COMMAND_MODULES['schema copy'].endsWith('.ts'));
});

test('a built command gets its options and context; errors are masked and exit 1', async () => {
  const mod = join(dir, 'fake-command.ts');
  writeFileSync(
    mod,
    `export async function run(opts, ctx) {
       const cfg = ctx.command === 'source' ? ctx.sourceConfig() : undefined;
       ctx.out(JSON.stringify({ opts: { ...opts, toOffset: String(opts.toOffset) }, command: ctx.command, slot: cfg?.slotName, level: ctx.logger.level }) + '\\n');
       if (opts.topic === 'boom') throw new Error('cannot reach postgres://u:${SECRET}@h/db');
       return 0;
     }\n`,
  );
  const url = pathToFileURL(mod).href;
  const r = await runMain(['replay', '--topic', 'orders', '--partition', '3', '--to-offset', '42', '--log-level', 'warn'], { replay: url });
  assert.equal(r.code, 0, r.stderr);
  const printed = JSON.parse(r.stdout);
  assert.deepEqual(printed, { opts: { topic: 'orders', partition: 3, toOffset: '42' }, command: 'replay', level: 'warn' });

  const src = await runMain(['source', '--config', configFile('v2.yaml', VALID_SOURCE)], { source: url }, { SHARDBRIDGE_SOURCE_SLOT_NAME: 'from_env' });
  assert.equal(src.code, 0, src.stderr);
  assert.equal(JSON.parse(src.stdout).slot, 'from_env');

  const boom = await runMain(['replay', '--topic', 'boom', '--to-time', '2024-05-01T00:00:00Z'], { replay: url });
  assert.equal(boom.code, 1);
  assert.match(boom.stderr, /^shardbridge replay: cannot reach postgres:\/\/u:\*\*\*@h\/db\n$/);
  const verbose = await runMain(['replay', '--topic', 'boom', '--to-time', '1700000000000', '--verbose'], { replay: url });
  assert.equal(verbose.code, 1);
  assert.match(verbose.stderr, /\n\s+at /, 'stack with --verbose');
  assert.ok(!(boom.stderr + verbose.stderr).includes(SECRET));
});

test('source: a taken metrics port is a config error naming metricsPort with its remedy, said before connecting to the source', async () => {
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '0.0.0.0', resolve));
  const port = (busy.address() as { port: number }).port;
  try {
    // The source is unreachable: the port must be the one error, found first.
    const f = configFile('source-port.yaml', `${VALID_SOURCE.replace('db.internal:5432', '127.0.0.1:1')}metricsPort: ${port}\nlogLevel: silent\n`);
    const r = await runMain(['source', '--config', f]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`configuration error:\\nconfig: metricsPort: cannot serve metrics on port ${port}: .*EADDRINUSE`));
    assert.match(r.stderr, /remedy: choose a free metricsPort \(0: any free port\), or stop what listens there \(another source\?\)/);
    assert.doesNotMatch(r.stderr, /ECONNREFUSED/);
    assert.ok(!(r.stdout + r.stderr).includes(SECRET), r.stderr);
  } finally {
    busy.close();
  }
});

test('no config file given: the configuration error says which flag was left out', async () => {
  const replay = await runMain(['replay', '--topic', 't', '--to-offset', '0']);
  assert.equal(replay.code, 2);
  assert.match(replay.stderr, /config: kafka\.brokers: required/);
  assert.match(replay.stderr, /\n {2}remedy: no --sink-config <file> was given, so every key comes from SHARDBRIDGE_SINK_\* variables: give the config file with --sink-config\n$/);
  const sink = await runMain(['sink']);
  assert.equal(sink.code, 2);
  assert.match(sink.stderr, /remedy: no --config <file> was given, so every key comes from SHARDBRIDGE_SINK_\* variables/);
  // A file given: its own errors, no such remedy.
  const f = configFile('given.yaml', VALID_SOURCE.replace('schemaRegistry:\n  url: http://registry:8081\n', ''));
  const source = await runMain(['source', '--config', f]);
  assert.equal(source.code, 2);
  assert.doesNotMatch(source.stderr, /remedy:/);
});
