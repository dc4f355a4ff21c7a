/**
 * docker-compose.yml cannot run here (no Docker), so this test reads it and checks that it
 * agrees with the code: the example configs load through the real config schemas with the
 * services' environment, every host:port they name is a compose service and a port it
 * listens on, Kafka advertises what the connectors bootstrap from, Prometheus scrapes the
 * configured metrics ports, and the connector commands parse with the real CLI definition.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import YAML from 'yaml';
import { CommanderError, type Command } from 'commander';
import { buildProgram, COMMAND_MODULES, type CommandName } from '../../shared/cli/main.ts';
import { readConfigFile } from '../../shared/config/load.ts';
import { KAFKA_VERSION } from '../../shared/devstack/kafka-jars.ts';
import { renderServerProperties } from '../../shared/devstack/kafka.ts';
import { ShutdownCoordinator } from '../../shared/shutdown.ts';
import { WAL_LEVEL_REMEDY } from '../../source-connector/checks.ts';
import { loadSourceConfig, type SourceConfig } from '../../source-connector/config.ts';
import { loadSinkConfig, type SinkConfig } from '../../sink-connector/config.ts';
import { metricsDefinedInCode, readRepo as read, repoRoot as root } from '../helpers/docs.ts';

/** Labels every series carries besides its own: the registry's default label and Prometheus' target labels. */
const COMMON_LABELS = ['connector', 'job', 'instance'];

// ---------- reading a compose file the way `docker compose` does ----------

type Service = Record<string, any>;

/**
 * Compose variable interpolation: `$$` is a literal `$`; `${VAR}`, `${VAR:-default}`,
 * `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}` and `$VAR`.
 */
function interpolate(text: string, env: Record<string, string | undefined>): string {
  return text.replace(/\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g, (...m: (string | undefined)[]) => {
    const [, dollar, braced, colon, op, arg, bare] = m;
    if (dollar) return '$';
    const name = (braced ?? bare) as string;
    const value = env[name];
    const unset = value === undefined || (colon === ':' && value === '');
    switch (op) {
      case '-':
        return unset ? (arg ?? '') : (value as string);
      case '?':
        if (unset) throw new Error(`compose: required variable ${name} is not set: ${arg}`);
        return value as string;
      case '+':
        return unset ? '' : (arg ?? '');
      default:
        return value ?? '';
    }
  });
}

function interpolateDeep(v: unknown, env: Record<string, string | undefined>): unknown {
  if (typeof v === 'string') return interpolate(v, env);
  if (Array.isArray(v)) return v.map((x) => interpolateDeep(x, env));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, interpolateDeep(x, env)]));
  return v;
}

/** The stack as `docker compose config` would see it with no variables set (the defaults). */
const compose = interpolateDeep(YAML.parse(read('docker-compose.yml')), {}) as { services: Record<string, Service>; volumes?: Record<string, unknown> };
const services = compose.services;

function service(name: string): Service {
  const s = services[name];
  assert.ok(s, `docker-compose.yml has no service "${name}"`);
  return s;
}

function environmentOf(s: Service): Record<string, string> {
  const env = s.environment ?? {};
  if (Array.isArray(env)) {
    return Object.fromEntries(env.map((e: string) => (e.includes('=') ? [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)] : [e, ''])));
  }
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v === null ? '' : String(v)]));
}

/** Port mappings of `ports` (short or long syntax). */
function portMappings(s: Service): { host?: number; container: number }[] {
  return (s.ports ?? []).map((p: string | number | Record<string, unknown>) => {
    if (typeof p === 'object') return { host: p.published === undefined ? undefined : Number(p.published), container: Number(p.target) };
    const parts = String(p).replace(/\/(tcp|udp)$/, '').split(':');
    const container = Number(parts[parts.length - 1]);
    return { host: parts.length > 1 ? Number(parts[parts.length - 2]) : undefined, container };
  });
}

/** Ports the service's containers listen on, as declared by `expose` and `ports`. */
function containerPorts(s: Service): Set<number> {
  return new Set([...(s.expose ?? []).map((p: string | number) => Number(String(p).replace(/\/(tcp|udp)$/, ''))), ...portMappings(s).map((m) => m.container)]);
}

function commandArgs(s: Service): string[] {
  if (s.command === undefined) return [];
  return Array.isArray(s.command) ? s.command.map(String) : String(s.command).trim().split(/\s+/);
}

/** Bind mounts (short syntax `./host:/container[:mode]` or long syntax) with the host path resolved. */
function bindMounts(s: Service): { source: string; target: string }[] {
  const out: { source: string; target: string }[] = [];
  for (const v of s.volumes ?? []) {
    if (typeof v === 'object') {
      if (v.type === 'bind') out.push({ source: path.resolve(root, v.source), target: v.target });
      continue;
    }
    const [source, target] = String(v).split(':');
    if (source.startsWith('.') || source.startsWith('/')) out.push({ source: path.resolve(root, source), target });
  }
  return out;
}

/** The host file mounted at `target` in the service (a file mount, or a file inside a mounted directory). */
function hostPathOf(s: Service, target: string): string {
  for (const m of bindMounts(s)) {
    if (m.target === target) return m.source;
    if (target.startsWith(m.target.replace(/\/?$/, '/'))) return path.join(m.source, target.slice(m.target.replace(/\/?$/, '/').length));
  }
  assert.fail(`nothing is mounted at ${target}`);
}

function dependsOn(s: Service): Record<string, string> {
  const d = s.depends_on ?? {};
  if (Array.isArray(d)) return Object.fromEntries(d.map((n: string) => [n, 'service_started']));
  return Object.fromEntries(Object.entries(d).map(([n, v]) => [n, (v as { condition?: string }).condition ?? 'service_started']));
}

function hostAndPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
}

/** `-c name=value` settings of a postgres command line. */
function postgresSettings(args: string[]): Map<string, string> {
  const out = new Map<string, string>();
  args.forEach((a, i) => {
    const setting = a === '-c' ? args[i + 1] : a.startsWith('--') && a.includes('=') ? a.slice(2) : undefined;
    if (setting?.includes('=')) out.set(setting.slice(0, setting.indexOf('=')).replace(/-/g, '_'), setting.slice(setting.indexOf('=') + 1));
  });
  return out;
}

/** Kafka `NAME://host:port,...` lists → name → {host, port}. */
function listeners(text: string): Map<string, { host: string; port: number }> {
  const out = new Map<string, { host: string; port: number }>();
  for (const l of text.split(',').map((x) => x.trim()).filter(Boolean)) {
    const m = /^([A-Za-z0-9_-]+):\/\/(.*)$/.exec(l);
    assert.ok(m, `not a listener: ${l}`);
    out.set(m[1], hostAndPort(m[2]));
  }
  return out;
}

// ---------- the CLI, as the real program parses it ----------

type Parsed = { kind: 'run'; name: CommandName; opts: Record<string, unknown> } | { kind: 'exit'; exitCode: number; output: string };

async function parseCli(args: string[]): Promise<Parsed> {
  let output = '';
  let ran: Parsed | undefined;
  const dispatch = async (name: CommandName, _opts: Record<string, unknown>, cmd: Command) => {
    ran = { kind: 'run', name, opts: cmd.optsWithGlobals() };
  };
  const program = buildProgram(dispatch, (t) => void (output += t), (t) => void (output += t));
  try {
    await program.parseAsync(['node', 'shardbridge', ...args], { from: 'node' });
  } catch (e) {
    if (e instanceof CommanderError) return { kind: 'exit', exitCode: e.exitCode, output };
    throw e;
  }
  assert.ok(ran, `shardbridge ${args.join(' ')}: no command ran (${output})`);
  return ran;
}

/** The config file a connector service runs with: its `--config` argument, through its mounts. */
async function connectorConfigFile(name: string, subcommand: 'source' | 'sink'): Promise<string> {
  const parsed = await parseCli(commandArgs(service(name)));
  assert.equal(parsed.kind, 'run', `${name}: its command does not parse: ${JSON.stringify(parsed)}`);
  assert.ok(parsed.kind === 'run');
  assert.equal(parsed.name, subcommand, `${name} runs \`shardbridge ${parsed.name}\``);
  assert.equal(typeof parsed.opts.config, 'string', `${name}: no --config`);
  const file = hostPathOf(service(name), parsed.opts.config as string);
  assert.ok(existsSync(file), `${name}: ${file} does not exist`);
  return file;
}

async function sourceConfig(): Promise<SourceConfig> {
  const file = await connectorConfigFile('source-connector', 'source');
  return loadSourceConfig({ file, env: environmentOf(service('source-connector')) });
}

async function sinkConfig(): Promise<SinkConfig> {
  const file = await connectorConfigFile('sink-connector', 'sink');
  return loadSinkConfig({ file, env: environmentOf(service('sink-connector')) });
}

/** Asserts that `host:port` is a compose service listening on that port; returns the service. */
function assertServiceAddress(what: string, host: string, port: number): Service {
  const s = services[host];
  assert.ok(s, `${what}: host "${host}" is not a compose service (${Object.keys(services).join(', ')})`);
  assert.ok(containerPorts(s).has(port), `${what}: service ${host} does not listen on ${port} (${[...containerPorts(s)].join(', ')})`);
  return s;
}

// ---------- the tests ----------

test('the stack has every part and each dependency is a defined, checkable service', () => {
  assert.equal(service('kafka').image, `apache/kafka:${KAFKA_VERSION}`, 'the same Kafka release as the dev stack');
  assert.match(service('schema-registry').image, /^confluentinc\/cp-schema-registry:/);
  // The Citus image's major (citusdata/citus 13 is built FROM postgres:17), one the suite runs on (SHARDBRIDGE_PG_VERSION=17).
  assert.match(service('source-db').image, /^postgres:17(\.|$)/);
  const citus = Object.entries(services).filter(([, s]) => /^citusdata\/citus:/.test(s.image ?? '') && s.entrypoint === undefined);
  assert.deepEqual(citus.map(([n]) => n).sort(), ['citus-coordinator', 'citus-worker-1', 'citus-worker-2']);
  assert.match(service('prometheus').image, /^prom\/prometheus:/);
  assert.match(service('grafana').image, /^grafana\/grafana:/);

  for (const [name, s] of Object.entries(services)) {
    for (const [dep, condition] of Object.entries(dependsOn(s))) {
      const d = services[dep];
      assert.ok(d, `${name} depends on "${dep}", which is not a service`);
      assert.ok(['service_started', 'service_healthy', 'service_completed_successfully'].includes(condition), `${name} → ${dep}: ${condition}`);
      if (condition === 'service_healthy') {
        assert.ok(d.healthcheck?.test && !d.healthcheck.disable, `${name} waits for ${dep} to be healthy, but ${dep} has no healthcheck`);
      }
      if (condition === 'service_completed_successfully') {
        assert.ok(!d.restart || d.restart === 'no', `${dep} is a one-shot job: it must not restart`);
      }
    }
    for (const v of s.volumes ?? []) {
      const source = typeof v === 'object' ? v.source : String(v).split(':')[0];
      if (typeof source === 'string' && !source.startsWith('.') && !source.startsWith('/')) {
        assert.ok(compose.volumes && source in compose.volumes, `${name} uses undeclared volume ${source}`);
      }
    }
    for (const file of bindMounts(s).map((m) => m.source)) assert.ok(existsSync(file), `${name} mounts missing ${path.relative(root, file)}`);
  }

  // The Citus workers are registered with the coordinator before the sink starts.
  const init = service('citus-init');
  const initArgs = [...(Array.isArray(init.entrypoint) ? init.entrypoint : [init.entrypoint]), ...commandArgs(init)].join(' ');
  assert.match(initArgs, /citus_set_coordinator_host\('citus-coordinator', 5432\)/);
  for (const worker of ['citus-worker-1', 'citus-worker-2']) {
    assert.match(initArgs, new RegExp(`citus_add_node\\('${worker}', 5432\\)`));
    assert.equal(dependsOn(init)[worker], 'service_healthy');
  }
  assert.equal(environmentOf(init).PGHOST, 'citus-coordinator');
  assert.equal(dependsOn(service('sink-connector'))['citus-init'], 'service_completed_successfully');
});

test('the source PostgreSQL runs with wal_level=logical and the guide\'s slot and sender settings', () => {
  const settings = postgresSettings(commandArgs(service('source-db')));
  assert.equal(settings.get('wal_level'), 'logical');
  // Every `name = N` line the source checks print as the remedy is met here.
  const required = [...WAL_LEVEL_REMEDY.matchAll(/^\s*(max_\w+)\s*=\s*(\d+)/gm)].map((m) => [m[1], Number(m[2])] as const);
  assert.deepEqual(required.map(([k]) => k).sort(), ['max_replication_slots', 'max_wal_senders']);
  for (const [name, min] of required) {
    assert.ok(Number(settings.get(name)) >= min, `${name} = ${settings.get(name)}, the guide asks for at least ${min}`);
  }
  // A finite slot WAL limit, so a stalled migration cannot fill the source's disk.
  assert.match(settings.get('max_slot_wal_keep_size') ?? '', /^\d+(MB|GB|TB)$/);
});

test('the source config loads with the service environment and names the source-db service', async () => {
  const file = await connectorConfigFile('source-connector', 'source');
  assert.ok(!/password/i.test(JSON.stringify(readConfigFile(file))), 'passwords come from the environment, not the file');
  const config = await sourceConfig();

  assert.ok(config.source.host && config.source.user && config.source.database);
  const db = assertServiceAddress('source.host', config.source.host, config.source.port);
  assert.equal(db, service('source-db'));
  const dbEnv = environmentOf(db);
  assert.equal(config.source.database, dbEnv.POSTGRES_DB);
  assert.ok(config.source.password, 'SHARDBRIDGE_SOURCE_SOURCE__PASSWORD sets source.password');

  // The init script creates the role with REPLICATION, its password from the same variable
  // the connector gets, and the publication the connector reuses.
  const initSql = readFileSync(hostPathOf(db, '/docker-entrypoint-initdb.d/10-source-init.sql'), 'utf8');
  const getenv = /^\\getenv\s+(\w+)\s+(\w+)/m.exec(initSql);
  assert.ok(getenv, 'the init script reads the role password from the environment');
  assert.equal(dbEnv[getenv[2]], config.source.password, `${getenv[2]} of source-db = the connector's source.password`);
  assert.match(initSql, new RegExp(`CREATE ROLE ${config.source.user}\\b[^;]*\\bREPLICATION\\b[^;]*PASSWORD :'${getenv[1]}'`));
  // As the connector makes it (slot.ts), so that it need not alter it at its start.
  const publication = new RegExp(`CREATE PUBLICATION ${config.publicationName} FOR TABLE ([^;]+) WITH \\(publish_via_partition_root = true\\);`).exec(initSql);
  assert.ok(publication, `the init script creates publication ${config.publicationName}`);
  const published = publication[1].split(',').map((t) => (t.trim().includes('.') ? t.trim() : `public.${t.trim()}`));
  assert.deepEqual(published.sort(), [...config.tables.include].sort(), 'the publication lists exactly tables.include');
  for (const table of config.tables.include) {
    assert.match(initSql, new RegExp(`CREATE TABLE ${table.split('.')[1]} \\(`), `${table} is created`);
  }
});

test('the sink config loads with the service environment and writes to the Citus coordinator', async () => {
  const file = await connectorConfigFile('sink-connector', 'sink');
  assert.ok(!/password/i.test(JSON.stringify(readConfigFile(file))), 'passwords come from the environment, not the file');
  const config = await sinkConfig();

  assert.ok(config.destination.host && config.destination.database);
  const coordinator = assertServiceAddress('destination.host', config.destination.host, config.destination.port);
  assert.equal(coordinator, service('citus-coordinator'));
  const env = environmentOf(coordinator);
  assert.equal(config.destination.database, env.POSTGRES_DB);
  assert.equal(config.destination.user, env.POSTGRES_USER ?? 'postgres');
  assert.equal(config.destination.password, env.POSTGRES_PASSWORD, 'SHARDBRIDGE_SINK_DESTINATION__PASSWORD = the coordinator password');
  // Every Citus node shares the database name and credentials the nodes use between themselves.
  for (const worker of ['citus-worker-1', 'citus-worker-2']) {
    const w = environmentOf(service(worker));
    assert.equal(w.POSTGRES_DB, env.POSTGRES_DB);
    assert.equal(w.PGPASSWORD, env.POSTGRES_PASSWORD);
  }
  assert.equal(config.topicPrefix, (await sourceConfig()).topicPrefix, 'sink topicPrefix = source topicPrefix');
});

test('Kafka runs KRaft and advertises exactly what the connectors and the registry bootstrap from', async () => {
  const kafka = service('kafka');
  const env = environmentOf(kafka);
  assert.deepEqual(env.KAFKA_PROCESS_ROLES.split(',').sort(), ['broker', 'controller']);
  const listen = listeners(env.KAFKA_LISTENERS);
  const advertised = listeners(env.KAFKA_ADVERTISED_LISTENERS);
  const protocols = new Map(env.KAFKA_LISTENER_SECURITY_PROTOCOL_MAP.split(',').map((p) => p.split(':') as [string, string]));
  for (const name of listen.keys()) assert.ok(protocols.has(name), `${name} has no security protocol`);

  const controller = env.KAFKA_CONTROLLER_LISTENER_NAMES;
  assert.ok(listen.has(controller) && !advertised.has(controller), 'the controller listener is never handed to clients');
  const voters = env.KAFKA_CONTROLLER_QUORUM_VOTERS.split(',');
  assert.equal(voters.length, 1);
  const [id, voter] = voters[0].split('@');
  assert.equal(id, env.KAFKA_NODE_ID);
  assert.equal(hostAndPort(voter).host, 'kafka');
  assert.equal(hostAndPort(voter).port, listen.get(controller)?.port);
  assert.ok(advertised.has(env.KAFKA_INTER_BROKER_LISTENER_NAME));
  assert.equal(env.KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR, '1', 'one broker: internal topics with replication factor 1');
  // At their default of 3 the broker cannot create its internal topics (group offsets,
  // transactions, share groups) on one broker; the apache/kafka examples set each to 1. The
  // registry would take min(3, live brokers) for _schemas by itself: 1, said outright.
  for (const key of ['KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR', 'KAFKA_TRANSACTION_STATE_LOG_MIN_ISR']) assert.equal(env[key], '1', key);
  for (const [key, value] of Object.entries(env).filter(([k]) => /_(REPLICATION_FACTOR|MIN_ISR)$/.test(k))) assert.equal(value, '1', key);
  assert.equal(environmentOf(service('schema-registry')).SCHEMA_REGISTRY_KAFKASTORE_TOPIC_REPLICATION_FACTOR, '1', 'the _schemas topic on one broker');
  assert.ok(env.CLUSTER_ID && Buffer.from(env.CLUSTER_ID, 'base64url').length === 16, 'CLUSTER_ID is a base64 UUID');
  // As the dev stack's broker (whose heap an idle sink over 2,000 partitions filled at the default).
  const devPurge = /^fetch\.purgatory\.purge\.interval\.requests=(\d+)$/m.exec(renderServerProperties({ port: 1, controllerPort: 2, logDir: '/x' }))?.[1];
  assert.equal(env.KAFKA_FETCH_PURGATORY_PURGE_INTERVAL_REQUESTS, devPurge);

  for (const [name, a] of advertised) {
    assert.equal(a.port, listen.get(name)?.port, `${name} is advertised on the port it listens on`);
    if (a.host === 'localhost' || a.host === '127.0.0.1') {
      assert.ok(portMappings(kafka).some((m) => m.host === a.port && m.container === a.port), `${name} (${a.host}:${a.port}) is published on the host`);
    } else {
      assert.equal(a.host, 'kafka', `${name} advertises the service name`);
      assert.ok(containerPorts(kafka).has(a.port));
    }
  }
  const clientAddresses = new Set([...advertised].filter(([, a]) => a.host === 'kafka').map(([, a]) => `${a.host}:${a.port}`));
  const source = await sourceConfig();
  const sink = await sinkConfig();
  for (const broker of [...source.kafka.brokers, ...sink.kafka.brokers]) {
    assert.ok(clientAddresses.has(broker), `broker ${broker} is an advertised listener (${[...clientAddresses].join(', ')})`);
  }
  const registryStore = environmentOf(service('schema-registry')).SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS;
  for (const b of registryStore.split(',')) {
    assert.ok(clientAddresses.has(b.replace(/^[A-Z_]+:\/\//, '')), `registry bootstrap ${b} is an advertised listener`);
  }
  assert.equal(source.topics.replicationFactor, 1, 'one broker: topics with replication factor 1');
});

test('both connectors reach the Schema Registry service on its listener', async () => {
  const registry = service('schema-registry');
  const env = environmentOf(registry);
  const listener = new URL(env.SCHEMA_REGISTRY_LISTENERS.split(',')[0]);
  assert.equal(env.SCHEMA_REGISTRY_HOST_NAME, 'schema-registry');
  for (const [name, config] of [['source-connector', await sourceConfig()], ['sink-connector', await sinkConfig()]] as const) {
    const url = new URL(config.schemaRegistry.url);
    assert.equal(url.protocol, listener.protocol);
    assertServiceAddress(`${name} schemaRegistry.url`, url.hostname, Number(url.port || (url.protocol === 'https:' ? 443 : 80)));
    assert.equal(services[url.hostname], registry);
    assert.equal(Number(url.port), Number(listener.port));
    assert.equal(dependsOn(service(name))['schema-registry'], 'service_healthy');
    assert.equal(dependsOn(service(name)).kafka, 'service_healthy');
  }
  assert.equal(dependsOn(service('source-connector'))['source-db'], 'service_healthy');
  assert.equal(dependsOn(service('sink-connector'))['citus-coordinator'], 'service_healthy');
});

test('the connector commands are real CLI subcommands and options', async () => {
  const cli = ['source-connector', 'sink-connector', 'shardbridge'];
  for (const name of cli) {
    const s = service(name);
    assert.equal(s.image, 'shardbridge:local');
    assert.ok(s.build === '.' || s.build?.context === '.', `${name} is built from ./Dockerfile`);
    // node as PID 1 ignores the signals it set no handler for: Ctrl-C in `schema copy`, a
    // SIGTERM while the source connector opens the source. docker-init is PID 1 instead.
    assert.equal(s.init, true, `${name} runs node under an init (init: true)`);
  }
  const source = await parseCli(commandArgs(service('source-connector')));
  assert.deepEqual(source.kind === 'run' && [source.name, source.opts.config], ['source', '/config/source.yaml']);
  const sink = await parseCli(commandArgs(service('sink-connector')));
  assert.deepEqual(sink.kind === 'run' && [sink.name, sink.opts.config], ['sink', '/config/sink.yaml']);
  // The tools service's default command prints help and exits 0.
  const tools = await parseCli(commandArgs(service('shardbridge')));
  assert.ok(tools.kind === 'exit' && tools.exitCode === 0 && tools.output.includes('Usage: shardbridge'), JSON.stringify(tools));
  // The commands the tools service is for take both configs, mounted where the docs say.
  for (const args of [['check'], ['status'], ['cutover'], ['cleanup'], ['schema', 'copy']]) {
    const parsed = await parseCli([...args, '--source-config', '/config/source.yaml', '--sink-config', '/config/sink.yaml']);
    assert.ok(parsed.kind === 'run', `${args.join(' ')}: ${JSON.stringify(parsed)}`);
    assert.equal(parsed.name, args.join(' '));
    assert.ok(existsSync(hostPathOf(service('shardbridge'), parsed.opts.sourceConfig as string)));
    assert.ok(existsSync(hostPathOf(service('shardbridge'), parsed.opts.sinkConfig as string)));
  }
  // A misspelt option is refused by the same program (the check above is not vacuous).
  const bad = await parseCli(['source', '--conifg', '/config/source.yaml']);
  assert.ok(bad.kind === 'exit' && bad.exitCode !== 0);
  // The tools service carries both connectors' password variables.
  const toolsEnv = environmentOf(service('shardbridge'));
  assert.equal(toolsEnv.SHARDBRIDGE_SOURCE_SOURCE__PASSWORD, environmentOf(service('source-connector')).SHARDBRIDGE_SOURCE_SOURCE__PASSWORD);
  assert.equal(toolsEnv.SHARDBRIDGE_SINK_DESTINATION__PASSWORD, environmentOf(service('sink-connector')).SHARDBRIDGE_SINK_DESTINATION__PASSWORD);
});

/** A compose duration (`1m30s`, `40s`, `500ms`) in milliseconds. */
function durationMs(text: string): number {
  const units: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001 };
  const parts = [...String(text).matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us)/g)];
  assert.ok(parts.length > 0 && parts.map((p) => p[0]).join('') === String(text), `not a compose duration: ${text}`);
  return parts.reduce((sum, [, n, u]) => sum + Number(n) * units[u], 0);
}

test('Docker gives the connectors longer to stop than their own shutdown limit', () => {
  const limit = new ShutdownCoordinator().timeoutMs;
  for (const name of ['source-connector', 'sink-connector']) {
    const grace = service(name).stop_grace_period;
    // Docker's default is 10 s; a SIGKILL at the limit races the connector's own "did not finish" exit.
    assert.ok(grace !== undefined && durationMs(grace) >= limit + 5000, `${name}: stop_grace_period ${grace} exceeds the ${limit} ms shutdown limit`);
  }
  assert.equal(durationMs('1m30s'), 90_000);
});

test('Prometheus scrapes both connectors on their metricsPort, and their healthchecks use it', async () => {
  const prometheus = service('prometheus');
  const configFlag = commandArgs(prometheus).find((a) => a.startsWith('--config.file='));
  const promFile = hostPathOf(prometheus, configFlag ? configFlag.slice('--config.file='.length) : '/etc/prometheus/prometheus.yml');
  const prom = YAML.parse(readFileSync(promFile, 'utf8')) as { scrape_configs: { job_name: string; metrics_path?: string; static_configs: { targets: string[] }[] }[] };
  const jobs = prom.scrape_configs.filter((j) => j.job_name.startsWith('shardbridge-'));
  const targets = jobs.flatMap((j) => j.static_configs.flatMap((c) => c.targets)).sort();
  const source = await sourceConfig();
  const sink = await sinkConfig();
  assert.deepEqual(targets, [`sink-connector:${sink.metricsPort}`, `source-connector:${source.metricsPort}`]);
  for (const j of jobs) assert.equal(j.metrics_path ?? '/metrics', '/metrics');
  for (const t of targets) assertServiceAddress(`scrape target ${t}`, hostAndPort(t).host, hostAndPort(t).port);

  for (const [name, port] of [['source-connector', source.metricsPort], ['sink-connector', sink.metricsPort]] as const) {
    const check = JSON.stringify(service(name).healthcheck?.test ?? '');
    assert.ok(check.includes(`:${port}/healthz`), `${name}'s healthcheck asks /healthz on ${port}: ${check}`);
  }
});

test('Grafana is provisioned with the Prometheus datasource and a dashboard of metrics the connectors define', () => {
  const grafana = service('grafana');
  const datasources = YAML.parse(readFileSync(hostPathOf(grafana, '/etc/grafana/provisioning/datasources/prometheus.yaml'), 'utf8')) as {
    datasources: { uid: string; type: string; url: string }[];
  };
  const ds = datasources.datasources.find((d) => d.type === 'prometheus');
  assert.ok(ds);
  const dsUrl = new URL(ds.url);
  assertServiceAddress('Grafana datasource', dsUrl.hostname, Number(dsUrl.port));
  assert.equal(services[dsUrl.hostname], service('prometheus'));

  const providers = YAML.parse(readFileSync(hostPathOf(grafana, '/etc/grafana/provisioning/dashboards/shardbridge.yaml'), 'utf8')) as {
    providers: { type: string; options: { path: string } }[];
  };
  const dashboardFile = hostPathOf(grafana, path.posix.join(providers.providers[0].options.path, 'shardbridge.json'));
  assert.equal(path.relative(root, dashboardFile), path.join('docker', 'grafana', 'dashboards', 'shardbridge.json'));
  const home = environmentOf(grafana).GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH;
  if (home) assert.equal(hostPathOf(grafana, home), dashboardFile);

  const dashboard = JSON.parse(readFileSync(dashboardFile, 'utf8')) as { uid: string; panels: any[] };
  const panels = dashboard.panels.filter((p) => p.type !== 'row');
  const ids = new Set<number>();
  for (const p of dashboard.panels) {
    assert.ok(!ids.has(p.id), `panel id ${p.id} is unique`);
    ids.add(p.id);
  }
  const defined = metricsDefinedInCode();
  const prom = YAML.parse(readFileSync(hostPathOf(service('prometheus'), '/etc/prometheus/prometheus.yml'), 'utf8')) as { scrape_configs: { job_name: string }[] };
  const used = new Set<string>();
  for (const p of panels) {
    assert.equal(p.datasource?.uid, ds.uid, `panel "${p.title}" uses the provisioned datasource`);
    assert.ok(p.targets?.length > 0, `panel "${p.title}" has a query`);
    for (const t of p.targets) {
      const expr = String(t.expr);
      assert.equal(t.datasource?.uid ?? ds.uid, ds.uid);
      // Every series is one the connectors define (histograms through their _bucket/_sum/_count)...
      const allowed = new Set(COMMON_LABELS);
      let ours = false;
      for (const [name] of expr.matchAll(/\bshardbridge_[a-z0-9_]+/g)) {
        ours = true;
        const suffix = /_(bucket|sum|count)$/.exec(name);
        const def = defined.get(name) ?? (suffix ? defined.get(name.slice(0, -suffix[0].length)) : undefined);
        assert.ok(def && (defined.has(name) || def.kind === 'histogram'), `panel "${p.title}": ${name} is not a metric the connectors define`);
        used.add(defined.has(name) ? name : name.slice(0, -(suffix as RegExpExecArray)[0].length));
        for (const l of def.labels) allowed.add(l);
        if (suffix?.[1] === 'bucket') allowed.add('le');
      }
      // ... and every label it groups, filters or labels the legend by is one those series carry.
      if (ours) {
        const labels = [
          ...[...expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap((m) => m[1].split(',').map((x) => x.trim()).filter(Boolean)),
          ...[...expr.matchAll(/\{([^}]*)\}/g)].flatMap((m) => [...m[1].matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)/g)].map((x) => x[1])),
          ...[...String(t.legendFormat ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1]),
        ];
        for (const l of labels) assert.ok(allowed.has(l), `panel "${p.title}": label "${l}" is not on ${expr}`);
      }
      const job = /job=~"([^"]+)"/.exec(expr);
      if (job) {
        const matched = prom.scrape_configs.map((j) => j.job_name).filter((n) => new RegExp(`^(?:${job[1]})$`).test(n));
        assert.deepEqual(matched.sort(), ['shardbridge-sink', 'shardbridge-source']);
      }
    }
  }
  assert.ok([...used].some((n) => n.startsWith('shardbridge_source_')) && [...used].some((n) => n.startsWith('shardbridge_sink_')));
  const titles = panels.map((p) => String(p.title).toLowerCase()).join(' | ');
  for (const topic of ['slot lag', 'wal retained', 'per table', 'consumer lag', 'stalled', 'snapshot progress']) {
    assert.ok(titles.includes(topic), `a panel about ${topic} (${titles})`);
  }
  // The docs' metric table lists exactly the metrics the dashboard uses.
  const documented = new Set([...read('docs/docker-compose.md').matchAll(/^\s*\| `(shardbridge_[a-z0-9_]+)` \|/gm)].map((m) => m[1]));
  assert.deepEqual([...documented].sort(), [...used].sort(), 'docs/docker-compose.md lists the dashboard metrics');
});

test('the Dockerfile builds the CLI image the compose services run', () => {
  const dockerfile = read('Dockerfile');
  const pkg = JSON.parse(read('package.json')) as { bin: Record<string, string>; dependencies: Record<string, string>; scripts: Record<string, string> };
  // Two stages: `build` compiles with the dev dependencies, the image keeps dist/ and the production ones.
  const stages = dockerfile.split(/^(?=FROM )/m).filter((s) => s.startsWith('FROM '));
  assert.equal(stages.length, 2, 'a build stage and the image');
  const [build, image] = stages;
  assert.match(build, /^FROM node:20-slim AS build$/m);
  assert.match(image, /^FROM node:20-slim$/m);
  assert.match(build, /^RUN npm ci\b(?!.*--omit=dev)/m, 'the build stage installs the dev dependencies (typescript)');
  assert.match(build, /^RUN npm run build$/m);
  assert.match(pkg.scripts.build, /^tsc -p tsconfig\.build\.json$/);
  assert.match(image, /^RUN npm ci --omit=dev\b/m);
  assert.match(image, /^COPY --from=build \/app\/dist \.\/dist$/m);
  for (const stage of [build, image]) {
    assert.match(stage, /^COPY package\.json package-lock\.json \.\/$/m);
    // The postinstall step patches node_modules from patches/: it must be there before npm ci.
    if (pkg.scripts.postinstall?.includes('patch-package')) {
      assert.ok(pkg.dependencies['patch-package'], 'patch-package is a runtime dependency (npm ci --omit=dev keeps it)');
      assert.ok(stage.indexOf('COPY patches ./patches') >= 0 && stage.indexOf('COPY patches ./patches') < stage.indexOf('RUN npm ci'), 'patches/ is copied before npm ci');
    }
  }
  const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(image);
  assert.ok(entrypoint);
  assert.deepEqual(JSON.parse(entrypoint[1]), ['node', '--enable-source-maps', 'dist/shared/cli/entry.js']);

  // Everything the build compiles is copied into the build stage and not excluded by .dockerignore.
  const copied = new Set([...build.matchAll(/^COPY (?!--from)(\S+) \.\/\1$/gm)].map((m) => m[1]));
  const ignored = read('.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const copiedFiles = [...build.matchAll(/^COPY (?!--from)(.+) \.\/\S*$/gm)].flatMap((m) => m[1].split(/\s+/));
  for (const f of ['tsconfig.json', 'tsconfig.build.json']) assert.ok(copiedFiles.includes(f), `the build stage copies ${f}`);
  for (const f of copiedFiles) assert.ok(!ignored.includes(f), `.dockerignore keeps ${f}, which the build stage copies`);
  const cliDir = path.join(root, 'shared', 'cli');
  const included = (JSON.parse(read('tsconfig.build.json')) as { include: string[] }).include.map((g) => g.split('/')[0]);
  const needed = new Set([...included, ...Object.values(COMMAND_MODULES).map((m) => path.relative(root, path.resolve(cliDir, m)))].map((p) => p.split(/[\\/]/)[0]));
  for (const dir of needed) {
    assert.ok(copied.has(dir), `the Dockerfile copies ${dir}/`);
    assert.ok(!ignored.includes(dir) && !ignored.includes(`${dir}/`), `.dockerignore keeps ${dir}/`);
  }
  for (const dir of ['test', 'node_modules', '.git', 'dist']) assert.ok(ignored.includes(dir), `.dockerignore leaves out ${dir}`);
});

/** The old-space cap (MB) a NODE_OPTIONS value sets, or null. */
function maxOldSpaceMb(nodeOptions: string | undefined): number | null {
  const m = /(?:^|\s)--max[-_]old[-_]space[-_]size=(\d+)(?:\s|$)/.exec(nodeOptions ?? '');
  return m ? Number(m[1]) : null;
}

test('a V8 heap cap, when the image or a connector service sets one, is a valid old-space size; the docs say how', () => {
  const dockerfile = read('Dockerfile');
  const image = /^ENV NODE_OPTIONS=(.+)$/m.exec(dockerfile)?.[1];
  for (const [where, value] of [['Dockerfile', image], ...['source-connector', 'sink-connector'].map((n) => [n, environmentOf(service(n)).NODE_OPTIONS])]) {
    if (value === undefined || !/max[-_]old[-_]space/.test(value)) continue;
    const cap = maxOldSpaceMb(value);
    assert.ok(cap !== null && cap >= 128, `${where}: --max-old-space-size=<MB>, at least 128 (${value})`);
  }
  const doc = read('docs/configuration.md');
  assert.match(doc, /NODE_OPTIONS=--max-old-space-size=N/, 'docs/configuration.md says how to set a cap');
  assert.match(doc, /`consumer\.maxBytesPerPartition` \/\s+`consumer\.maxBytes`/, 'and what bounds memory without one');
});

test('docs/docker-compose.md names real commands and services', async () => {
  const doc = read('docs/docker-compose.md');
  const runs = [...doc.matchAll(/docker compose run --rm shardbridge (schema copy|[a-z][a-z-]*)/g)].map((m) => m[1]);
  assert.ok(runs.length >= 5, 'the walkthrough runs the migration commands through the tools service');
  for (const name of ['check', 'schema copy', 'status', 'cutover', 'cleanup']) assert.ok(runs.includes(name), `the walkthrough runs \`${name}\``);
  for (const name of new Set(runs)) {
    const parsed = await parseCli([...name.split(' '), '--help']);
    assert.ok(parsed.kind === 'exit' && parsed.exitCode === 0 && parsed.output.includes(`Usage: shardbridge ${name}`), `\`shardbridge ${name}\` is a command`);
  }
  // Invocations of commands that are built must parse as written (options included); the
  // others' options are their intended interface until their module exists.
  const configs = /^CONFIGS="([^"]*)"$/m.exec(doc);
  assert.ok(configs, 'the docs define $CONFIGS');
  let parsedInvocations = 0;
  let statusRuns = 0;
  const sink = await sinkConfig();
  for (const m of doc.matchAll(/docker compose run --rm shardbridge ((?:[^\n\\`]|\\\n)*)/g)) {
    const args: string[] = m[1].replace(/\\\n\s*/g, ' ').replaceAll('$CONFIGS', configs[1]).trim().split(/\s+/);
    const name = (args[0] === 'schema' ? 'schema copy' : args[0]) as CommandName;
    if (!existsSync(fileURLToPath(new URL(COMMAND_MODULES[name], pathToFileURL(path.join(root, 'shared/cli/main.ts')))))) continue;
    const parsed: Parsed = await parseCli(args);
    assert.ok(parsed.kind === 'run' && parsed.name === name, `docs: \`shardbridge ${args.join(' ')}\` does not parse: ${JSON.stringify(parsed)}`);
    parsedInvocations++;
    if (name === 'status') {
      // In the tools container the default (127.0.0.1:<metricsPort>) is that container itself.
      statusRuns++;
      const url = parsed.opts.sinkMetrics;
      assert.equal(typeof url, 'string', `docs: \`shardbridge ${args.join(' ')}\` needs --sink-metrics naming the sink's service`);
      const u = new URL(url as string);
      assert.equal(u.pathname, '/metrics');
      const target = assertServiceAddress(`--sink-metrics ${url}`, u.hostname, Number(u.port));
      assert.equal(target, service('sink-connector'), `--sink-metrics ${url} is the sink connector`);
      assert.equal(Number(u.port), sink.metricsPort);
    }
  }
  assert.ok(parsedInvocations > 0, 'at least one documented invocation of a built command was parsed');
  assert.ok(statusRuns > 0, 'the walkthrough runs status');
  // `docker compose exec SERVICE …` and `docker compose up -d|stop|start|restart|logs [-f] SERVICE…`.
  const named: string[] = [...doc.matchAll(/docker compose exec (?:-T )?([a-z][a-z0-9-]*)/g)].map((m) => m[1]);
  for (const m of doc.matchAll(/docker compose (?:up -d|stop|start|restart|logs(?: -f)?) ([^\n`]*)/g)) {
    for (const word of m[1].split(' ')) {
      if (!/^[a-z][a-z0-9-]*$/.test(word)) break;
      named.push(word);
    }
  }
  assert.ok(named.length > 0);
  for (const name of named) assert.ok(services[name], `the docs name service "${name}", which docker-compose.yml does not define`);
  // Removing source-db for an own source: the docs name every service that depends on it.
  const drop = /If you remove the service, drop `source-db` from the\s+`depends_on` of ([^(]*)\(/.exec(doc);
  assert.ok(drop, 'the docs say what depends on source-db');
  const dependents = Object.keys(services).filter((n) => dependsOn(services[n])['source-db']);
  assert.deepEqual([...drop[1].matchAll(/`([a-z0-9-]+)`/g)].map((m) => m[1]).sort(), dependents.sort());
  // The host addresses the docs give are the ones the stack publishes.
  for (const m of doc.matchAll(/localhost:(\d+)/g)) {
    const port = Number(m[1]);
    assert.ok(Object.values(services).some((s) => portMappings(s).some((p) => p.host === port)), `localhost:${port} is published by a service`);
  }
});

test('docs/docker-compose.md: a type change stops the source, drains the sink, then stops it, as the runbook', () => {
  const doc = read('docs/docker-compose.md');
  const section = /^### Invasive schema changes[^\n]*\n([\s\S]*?)^##/m.exec(doc)?.[1];
  assert.ok(section, 'the walkthrough has the invasive schema change section');
  const steps = [...section.matchAll(/^docker compose (.+)$/gm)].map((m) => m[1]);
  const at = (re: RegExp) => steps.findIndex((x) => re.test(x));
  const stopSource = at(/^stop\b.*\bsource-connector\b/);
  const status = at(/^run --rm shardbridge status\b/);
  const stopSink = at(/^stop\b.*\bsink-connector\b/);
  const alter = at(/ALTER TABLE/);
  // A key column's new type moves the key's later records to another partition: they must not
  // overtake earlier ones the sink has not applied yet (docs/migration-runbook.md, step 1).
  assert.ok(stopSource >= 0 && !/sink-connector/.test(steps[stopSource]), `the source connector is stopped alone first: ${steps[stopSource]}`);
  assert.ok(stopSource < status && status < stopSink, `then status (lag 0), then the sink is stopped: ${steps.join(' | ')}`);
  assert.ok(stopSink < alter, 'both are stopped before the tables are altered');
});

test('compose interpolation as used above: defaults, $$ and required variables', () => {
  assert.equal(interpolate('${A:-x}/${B-y}/$$c/${A}', { A: 'a' }), 'a/y/$c/a');
  assert.equal(interpolate('${A:-x}|${A-x}', { A: '' }), 'x|');
  assert.throws(() => interpolate('${NEEDED:?set it}', {}), /NEEDED/);
});
