/**
 * The `shardbridge` command line. Commands are implemented elsewhere, each in a module exporting
 * `run(opts, ctx): Promise<number>`, found through COMMAND_MODULES: creating the module at its
 * path wires the command; until then the command reports "not built yet" (exit 2).
 * Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 130/143 on signals.
 */
import { existsSync } from 'node:fs';
import { packageVersion } from '../version.ts';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { ConfigError, ShardBridgeError } from '../errors.ts';
import { createLogger, type Logger } from '../logger.ts';
import { redactUrl } from '../redact.ts';
import { onShutdown, type ShutdownHandler } from '../shutdown.ts';
import { LOG_LEVELS } from '../config/common.ts';
import { parseReplayTime } from './replay-time.ts';
import { loadSourceConfig, type SourceConfig } from '../../source-connector/config.ts';
import { loadSinkConfig, type SinkConfig } from '../../sink-connector/config.ts';

export type CommandName = 'source' | 'sink' | 'check' | 'status' | 'replay' | 'resnapshot' | 'cutover' | 'cleanup' | 'schema copy' | 'devstack' | 'demo' | 'bench';

/** Running the compiled build (dist/, `npm run build`): module files end in .js there. */
const COMPILED = import.meta.url.endsWith('.js');

/** Where each command's implementation lives, relative to this file (as sources; .js when compiled). */
export const COMMAND_MODULES: Record<CommandName, string> = {
  source: '../../source-connector/run.ts',
  sink: '../../sink-connector/run.ts',
  check: './commands/check.ts',
  status: './commands/status.ts',
  replay: './commands/replay.ts',
  resnapshot: './commands/resnapshot.ts',
  cutover: './commands/cutover.ts',
  cleanup: './commands/cleanup.ts',
  'schema copy': './commands/schema-copy.ts',
  devstack: '../devstack/cli.ts',
  demo: './commands/demo.ts',
  bench: './commands/bench.ts',
};

export interface CommandContext {
  command: CommandName;
  /** Created on first use; level from --log-level, else --verbose (debug), else LOG_LEVEL, else the config's logLevel. */
  readonly logger: Logger;
  verbose: boolean;
  /** Command output (stdout); logs go to stderr. */
  out(text: string): void;
  err(text: string): void;
  /** Already loaded and validated for `source`. Other commands: from --source-config and SHARDBRIDGE_SOURCE_*. */
  sourceConfig(): SourceConfig;
  /** Already loaded and validated for `sink`. Other commands: from --sink-config and SHARDBRIDGE_SINK_*. */
  sinkConfig(): SinkConfig;
  /** Register a SIGINT/SIGTERM handler (shared/shutdown.ts) logging through `logger`. */
  onShutdown(handler: ShutdownHandler): () => void;
  /** The environment the configs load from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

export interface CommandModule {
  run(opts: Record<string, unknown>, ctx: CommandContext): Promise<number>;
}

export interface MainIO {
  stdout?: (text: string) => void;
  stderr?: (text: string) => void;
  env?: NodeJS.ProcessEnv;
  /** Replace entries of COMMAND_MODULES (tests); paths or file URLs. */
  modules?: Partial<Record<CommandName, string>>;
}

/** Run the CLI on `argv` (process.argv shape: node, script, args...) and return the exit code. Never throws. */
export async function main(argv: string[], io: MainIO = {}): Promise<number> {
  const out = io.stdout ?? ((t: string) => void process.stdout.write(t));
  const err = io.stderr ?? ((t: string) => void process.stderr.write(t));
  const env = io.env ?? process.env;
  let exitCode = 0;
  let current = '';
  let verbose = false;

  const dispatch = async (name: CommandName, opts: Record<string, unknown>, cmd: Command) => {
    current = name;
    const globals = cmd.optsWithGlobals() as { verbose?: boolean; logLevel?: string; config?: string; sourceConfig?: string; sinkConfig?: string };
    verbose = Boolean(globals.verbose);
    exitCode = await runCommand(name, opts, globals, { out, err, env, verbose, modules: { ...COMMAND_MODULES, ...io.modules } });
  };

  const program = buildProgram(dispatch, out, err);
  try {
    await program.parseAsync(argv, { from: 'node' });
    return exitCode;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    return reportError(e, current, err, verbose || /^(debug|trace)$/i.test(env.LOG_LEVEL ?? ''));
  }
}

async function runCommand(
  name: CommandName,
  opts: Record<string, unknown>,
  globals: { logLevel?: string; config?: string; sourceConfig?: string; sinkConfig?: string },
  io: { out: (t: string) => void; err: (t: string) => void; env: NodeJS.ProcessEnv; verbose: boolean; modules: Record<CommandName, string> },
): Promise<number> {
  // Configs load before anything else so that a bad key is reported even for unbuilt commands.
  let source: SourceConfig | undefined;
  let sink: SinkConfig | undefined;
  if (name === 'source') source = fromFile(() => loadSourceConfig({ file: globals.config, env: io.env }), globals.config, '--config', 'SHARDBRIDGE_SOURCE_');
  if (name === 'sink') sink = fromFile(() => loadSinkConfig({ file: globals.config, env: io.env }), globals.config, '--config', 'SHARDBRIDGE_SINK_');

  let logger: Logger | undefined;
  const ctx: CommandContext = {
    command: name,
    get logger() {
      logger ??= createLogger({
        name: 'shardbridge',
        level: globals.logLevel ?? (io.verbose ? 'debug' : undefined) ?? io.env.LOG_LEVEL ?? source?.logLevel ?? sink?.logLevel,
      });
      return logger;
    },
    verbose: io.verbose,
    out: io.out,
    err: io.err,
    sourceConfig: () => (source ??= fromFile(() => loadSourceConfig({ file: globals.sourceConfig, env: io.env }), globals.sourceConfig, '--source-config', 'SHARDBRIDGE_SOURCE_')),
    sinkConfig: () => (sink ??= fromFile(() => loadSinkConfig({ file: globals.sinkConfig, env: io.env }), globals.sinkConfig, '--sink-config', 'SHARDBRIDGE_SINK_')),
    onShutdown: (handler) => onShutdown(handler, ctx.logger),
    env: io.env,
  };

  const mod = await loadCommandModule(name, io.modules);
  if (!mod) {
    io.err(`shardbridge ${name}: not built yet\n`);
    return 2;
  }
  return mod.run(opts, ctx);
}

/**
 * `load()`; its configuration error, when no file was given, says so: "kafka.brokers: required"
 * alone leaves an operator who forgot the flag looking for a key in a file they never passed.
 */
function fromFile<T>(load: () => T, file: string | undefined, flag: string, prefix: string): T {
  try {
    return load();
  } catch (e) {
    if (file !== undefined || !(e instanceof ConfigError) || e.remedy) throw e;
    throw new ConfigError(e.message, { context: e.context, remedy: `no ${flag} <file> was given, so every key comes from ${prefix}* variables: give the config file with ${flag}` });
  }
}

/** The command's module, or undefined when it does not exist yet. */
export async function loadCommandModule(name: CommandName, modules: Record<CommandName, string> = COMMAND_MODULES): Promise<CommandModule | undefined> {
  const url = new URL(COMPILED ? modules[name].replace(/\.ts$/, '.js') : modules[name], import.meta.url);
  // Check the file itself: a module that exists but fails to import is a real error, not "not built".
  if (!existsSync(fileURLToPath(url))) return undefined;
  const mod = (await import(url.href)) as Partial<CommandModule>;
  if (typeof mod.run !== 'function') throw new Error(`${modules[name]} does not export run(opts, ctx)`);
  return mod as CommandModule;
}

function reportError(e: unknown, command: string, err: (t: string) => void, withStack: boolean): number {
  const prefix = command ? `shardbridge ${command}: ` : 'shardbridge: ';
  if (e instanceof ConfigError) {
    const where = typeof e.context.file === 'string' ? ` in ${e.context.file}` : '';
    err(redactUrl(`${prefix}configuration error${where}:\n${e.message}${e.remedy ? `\n  remedy: ${e.remedy}` : ''}`) + '\n');
    return 2;
  }
  const text = e instanceof ShardBridgeError ? e.describe() : e instanceof Error ? e.message : String(e);
  err(redactUrl(prefix + text) + '\n');
  if (withStack && e instanceof Error && e.stack) err(redactUrl(e.stack) + '\n');
  return 1;
}

// ---------- command-line definition ----------

const intArg = (what: string, min: number) => (v: string) => {
  if (!/^\d+$/.test(v) || Number(v) < min) throw new InvalidArgumentError(`expected ${what}`);
  return Number(v);
};

function offsetArg(v: string): bigint {
  if (!/^\d+$/.test(v)) throw new InvalidArgumentError('expected a Kafka offset (a non-negative integer)');
  return BigInt(v);
}

function timeArg(v: string): Date {
  const d = parseReplayTime(v);
  if (typeof d === 'string') throw new InvalidArgumentError(d);
  return d;
}

function positiveNumberArg(v: string): number {
  const n = Number(v);
  if (!(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError('expected a positive number');
  return n;
}


const SOURCE_CONFIG_HELP = 'source connector config file (.yaml/.yml/.json); SHARDBRIDGE_SOURCE_* variables override it';
const SINK_CONFIG_HELP = 'sink connector config file (.yaml/.yml/.json); SHARDBRIDGE_SINK_* variables override it';

type Dispatch = (name: CommandName, opts: Record<string, unknown>, cmd: Command) => Promise<void>;

export function buildProgram(dispatch: Dispatch, out: (t: string) => void, err: (t: string) => void): Command {
  const program = new Command('shardbridge')
    .description('Change data capture from PostgreSQL through Kafka into Citus, and the migration around it.')
    .version(packageVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help for a command')
    .addOption(new Option('-v, --verbose', 'print stack traces with errors and log at debug level'))
    .addOption(new Option('--log-level <level>', 'log level (default: LOG_LEVEL, else the config file, else info)').choices(LOG_LEVELS))
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .configureOutput({ writeOut: out, writeErr: err, outputError: (s, write) => write(s) })
    .exitOverride()
    .addHelpText('after', '\nExit codes: 0 ok, 1 failure, 2 usage or configuration error, 130/143 stopped by SIGINT/SIGTERM.\nRun `shardbridge <command> --help` for the options of a command.');

  const withConfigs = (cmd: Command) =>
    cmd.option('--source-config <file>', SOURCE_CONFIG_HELP).option('--sink-config <file>', SINK_CONFIG_HELP);
  const act = (name: CommandName) => (opts: Record<string, unknown>, cmd: Command) => dispatch(name, opts, cmd);

  program
    .command('source')
    .description('run the source connector: snapshot, then stream changes from PostgreSQL into Kafka')
    .option('-c, --config <file>', SOURCE_CONFIG_HELP + ' (without a file, all keys come from the environment)')
    .action(act('source'));

  program
    .command('sink')
    .description('run the sink connector: apply the Kafka change topics to the destination (Citus/PostgreSQL)')
    .option('-c, --config <file>', SINK_CONFIG_HELP + ' (without a file, all keys come from the environment)')
    .action(act('sink'));

  withConfigs(program.command('check'))
    .description('check that source, Kafka, registry and destination are ready (settings, privileges, reachability)')
    .option('--json', 'print the findings as one JSON object on stdout')
    .option('--sample-seconds <n>', 'seconds to sample the source WAL write rate over (default: 3; 0 skips the sample)', intArg('a number of seconds (0 or more)', 0))
    .option('--all', 'a line for every finding (without it, more than 20 alike, e.g. one per table, are folded into one)')
    .action(act('check'));

  withConfigs(program.command('status'))
    .description('show progress: snapshot state, replication slot lag, consumer lag, last applied positions')
    .option('--json', 'print the status as one JSON object on stdout (one line per refresh when watching)')
    .option('--watch', 'refresh in place until Ctrl-C')
    .option('--interval <s>', 'seconds between refreshes with --watch (default: 2)', intArg('a number of seconds (1 or more)', 1))
    .option('--sample-seconds <n>', 'seconds between the two samples of applied offsets the catch-up estimate comes from (default: 2; 0: no estimate)', intArg('a number of seconds (0 or more)', 0))
    .option('--sink-metrics <url>', "the sink's metrics endpoint (default: http://127.0.0.1:<metricsPort>/metrics, skipped when not reachable)")
    .option('--all', 'a line for every table and partition (without it, past 20, complete tables and applied partitions are counted, not listed)')
    .action(act('status'));

  program
    .command('replay')
    .description("rewind the sink's position on a topic so that it re-applies changes from an offset or a time; run it with the sink stopped (while the sink's group has members it refuses, exit 1)")
    .requiredOption('--topic <topic>', 'the change topic to replay')
    .option('--partition <n>', 'only this partition (default: every partition of the topic)', intArg('a partition number (0 or more)', 0))
    .addOption(new Option('--to-offset <n>', 'rewind to this offset (re-apply from it)').argParser(offsetArg).conflicts('toTime'))
    .addOption(new Option('--to-time <ts>', 'rewind to the first offset at or after this time (ISO-8601 with its zone, or epoch ms)').argParser(timeArg))
    .option('--sink-config <file>', SINK_CONFIG_HELP)
    .action(async (opts: Record<string, unknown>, cmd: Command) => {
      if (opts.toOffset === undefined && opts.toTime === undefined) cmd.error('error: give one of --to-offset <n> or --to-time <ts>', { exitCode: 2 });
      await dispatch('replay', opts, cmd);
    });

  const collect = (v: string, prev: string[] = []) => [...prev, v];
  program
    .command('resnapshot')
    .description("take tables' snapshots again (a truncate first, then a copy beside the stream while the other tables stream on): a streaming source connector takes them at once, through its stream; a stopped one at its next start")
    .requiredOption('--table <schema.table>', 'a selected source table to snapshot again (repeatable; a table name alone when only one selected table has it; a part holding a dot double-quoted: \'"my.schema".orders\')', collect)
    .option('--source-config <file>', SOURCE_CONFIG_HELP)
    .option('--wait-seconds <n>', 'how long to wait for a streaming connector to take the request (default: 60; it takes it later all the same)', intArg('a number of seconds (0 or more)', 0))
    .option('--json', 'print what was asked for as one JSON object on stdout')
    .action(act('resnapshot'));

  withConfigs(program.command('cutover'))
    .description('switch writes to the destination: wait for the sink to catch up, move sequences past the source, verify every table, check that the writes stopped, create the foreign keys kept aside; go / no-go')
    .option('--yes', 'do not ask: writes to the source have stopped')
    .option('--verify-only', 'only compare every table (row counts and checksums per key range), at any time')
    .option('--sequence-margin <n>', 'set destination sequences to the source value plus this (default: 1000; never lowers one)', intArg('a non-negative integer', 0))
    .option('--timeout <s>', 'seconds to wait for the connectors to catch up (default: 300)', intArg('a number of seconds (1 or more)', 1))
    .option('--json', 'print the go / no-go report as one JSON object on stdout')
    .action(act('cutover'));

  withConfigs(program.command('cleanup'))
    .description('remove what migration left on the source (replication slot, publication) once it is no longer needed')
    .option('--force', 'drop even while the sink has not applied everything or the source connector still streams, and the control tables or topics even while a sink is connected (a running sink alone does not stop the slot\'s drop); never with an unreachable destination')
    .option('--drop-control-tables', "also drop the connectors' tables on the destination (schema shardbridge, shardbridge_staging)")
    .option('--drop-topics', "also delete the change topics and control topics from Kafka, and the sink's stored positions for them")
    .option('--json', 'print what was checked and dropped as one JSON object on stdout')
    .action(act('cleanup'));

  const schema = program.command('schema').description('table definitions: `schema copy` creates the source tables on the destination');
  withConfigs(schema.command('copy'))
    .description('create the selected source tables, types and indexes on the destination and distribute them with Citus')
    .option('--distribute <table=column>', 'distribute TABLE by COLUMN with create_distributed_table (repeatable)', collect)
    .option('--reference <table>', 'make TABLE a reference table with create_reference_table (repeatable)', collect)
    .option('--colocate', 'colocate every distributed table with the first one given')
    .option('--extend-keys', 'add the distribution column to primary keys and unique constraints that lack it')
    .option('--dry-run', 'print the SQL instead of running it')
    .option('--json', 'print the plan and what was done as one JSON object on stdout')
    .action(act('schema copy'));

  program
    .command('devstack')
    .description('start a local stack (source and destination PostgreSQL, Kafka, a dev schema registry) and print how to reach it; Citus comes with docker-compose.yml')
    .option('--json', 'print the connection details as one JSON object on stdout')
    .option('--kafka-heap-mb <n>', "the broker's JVM heap in MB (default 512; more for thousands of partitions)", positiveNumberArg)
    .action(act('devstack'));

  program
    .command('demo')
    .description('run the whole migration end to end on the local stack and verify the destination matches')
    .option('--keep', 'leave the stack and data running afterwards (default: tear down)')
    .option(
      '--destination <url>',
      "migrate into this PostgreSQL database or Citus coordinator instead of the dev stack's destination: an empty database (the demo refuses one holding its tables or ShardBridge's schemas), where what it made is dropped when it stops",
    )
    .option('--wait-seconds <n>', 'how long to wait for the snapshot, and then for the destination to catch up, before giving up (default: 90 each)', positiveNumberArg)
    .action(act('demo'));

  program
    .command('bench')
    .description('measure ShardBridge end to end against pg_dump and native logical replication on the local stack (docs/benchmark.md)')
    .option('--scale <n>', 'data set size multiplier (default: 1)', positiveNumberArg)
    .option('--out <path>', 'write the results as JSON to this file (default: bench-results.json)')
    .option('--source-only', 'measure only source -> Kafka (snapshot and streaming into Kafka) against the bare pgoutput read rate')
    .option('--cpu-prof [dir]', 'run the connector processes with node --cpu-prof, profiles into DIR (default: bench-profiles), and print their top functions')
    .option('--latency-seconds <n>', 'seconds of steady load for the latency measurement (default: 20)', intArg('a number of seconds (1 or more)', 1))
    .option('--from-sources', 'run the connectors from the TypeScript sources through tsx instead of the compiled build (npm run build) the image runs')
    .option('--no-warmup', "skip warming up the Kafka broker's JIT before the timed phases")
    .option('--connector-heap-mb <n>', "NODE_OPTIONS=--max-old-space-size=N for the connector processes (default: 0, node's default heap; docs/configuration.md, Memory)", intArg('a number of MB (0 or more)', 0))
    .action(act('bench'));

  return program;
}
