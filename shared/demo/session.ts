/**
 * What the demo starts and how it stops it: the dev stack, the demo databases, the two
 * connectors (in this process), their configuration (also written to files, for `--keep`).
 * Everything started is registered with a `Resources` stack and stopped newest first, once,
 * whether the demo ends normally, fails or is interrupted.
 */
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { Registry } from 'prom-client';
import type { Logger } from '../logger.ts';
import { startDevStack, type DevStack } from '../devstack/stack.ts';
import { ownedTempDir } from '../devstack/temp-dirs.ts';
import { sourceConfigSchema, type SourceConfig } from '../../source-connector/config.ts';
import { sinkConfigSchema, type SinkConfig } from '../../sink-connector/config.ts';
import { startSourceConnector, type SourceConnector } from '../../source-connector/run.ts';
import { startSinkConnector, type SinkConnector } from '../../sink-connector/connector.ts';
import { DEMO_DATABASE, DEMO_SCHEMA, DEMO_TABLES } from './workload.ts';
import { redactUrl } from '../redact.ts';

export const DEMO_TOPIC_PREFIX = 'shop';
export const DEMO_GROUP_ID = 'shardbridge-demo';

/** How long one stop may take before the next one runs anyway. */
export const STOP_TIMEOUT_MS = 10_000;

/**
 * Stop functions, run newest first, each once; a failing one does not keep the others from
 * running, nor does a hung one for longer than `stopTimeoutMs` (it goes on in the background;
 * the exit hooks end whatever it left).
 */
export class Resources {
  private readonly stops: { what: string; stop: () => Promise<void> }[] = [];
  private stopping?: Promise<void>;

  constructor(
    private readonly log: Logger,
    private readonly stopTimeoutMs = STOP_TIMEOUT_MS,
  ) {}

  /** Register a stop function; after stopAll() has begun, it runs at once (a start that finished late). */
  add(what: string, stop: () => Promise<void>): void {
    if (!this.stopping) {
      this.stops.push({ what, stop });
      return;
    }
    this.stopping = this.stopping.then(() => this.stopOne(what, stop));
  }

  /**
   * Register the stop of something still starting (the dev stack's servers): a stop that comes
   * first waits for the start (within the stop timeout), then stops what it started, in order,
   * rather than leaving it to the exit hooks' SIGKILL. Returns `starting`.
   */
  starting<T>(what: string, starting: Promise<T>, stop: (started: T) => Promise<void>): Promise<T> {
    this.add(what, async () => {
      const started = await starting.then((v) => ({ v }), () => null);
      if (started) await stop(started.v);
    });
    return starting;
  }

  stopAll(): Promise<void> {
    this.stopping ??= (async () => {
      for (const { what, stop } of this.stops.splice(0).reverse()) await this.stopOne(what, stop);
    })();
    return this.stopping;
  }

  private async stopOne(what: string, stop: () => Promise<void>): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), this.stopTimeoutMs)));
    try {
      const r = await Promise.race([stop(), timedOut]);
      if (r === 'timeout') this.log.warn({ timeoutMs: this.stopTimeoutMs }, `stopping ${what} did not finish within ${this.stopTimeoutMs} ms: going on`);
    } catch (err) {
      this.log.warn({ err }, `stopping ${what} failed`);
    } finally {
      clearTimeout(timer);
    }
  }
}

export interface DemoEnv {
  stack: DevStack;
  sourceUrl: string;
  destinationUrl: string;
  sourceConfig: SourceConfig;
  sinkConfig: SinkConfig;
  /** Directory with source.json and sink.json (removed on stop). */
  configDir: string;
}

/** What the demo makes in a destination of the user's (--destination): dropped again when it stops. */
const MADE_IN_DESTINATION = ['shardbridge', 'shardbridge_staging'];

/**
 * A destination of the user's (`--destination`): reachable, and empty of what the demo makes
 * there (its tables in `public`, ShardBridge's schemas), since the demo drops those when it
 * stops. Checked before the dev stack starts. Throws a DemoSetupError naming what is there.
 */
export async function checkOwnDestination(url: string): Promise<void> {
  const shown = redactUrl(url);
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  try {
    await c.connect();
  } catch (err) {
    throw new DemoSetupError(`cannot connect to --destination ${shown}: ${(err as Error).message}`);
  }
  try {
    const { rows } = await c.query<{ name: string }>(
      `SELECT format('%I.%I', n.nspname, t.relname) AS name FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = $1 AND t.relname = ANY($2::text[]) AND t.relkind IN ('r', 'p', 'v', 'm', 'f')
       UNION ALL SELECT quote_ident(nspname) FROM pg_namespace WHERE nspname = ANY($3::text[])`,
      [DEMO_SCHEMA, DEMO_TABLES.map((t) => t.name), MADE_IN_DESTINATION],
    );
    if (rows.length > 0) {
      throw new DemoSetupError(
        `--destination ${shown} already has ${rows.map((r) => r.name).join(', ')}: the demo makes these there and drops them when it stops, so it takes an empty database ` +
          '(CREATE DATABASE shop_demo; on Citus also CREATE EXTENSION citus in it, on the coordinator and every worker, and add the workers in it)',
      );
    }
  } finally {
    await c.end().catch(() => {});
  }
}

/** A setup the demo refuses before it starts anything: the message says what to change. */
export class DemoSetupError extends Error {}

/** Drop what the demo made in a destination of the user's. */
async function dropMadeIn(url: string): Promise<void> {
  await withClient(url, async (c) => {
    const tables = [...DEMO_TABLES].reverse().map((t) => `${DEMO_SCHEMA}.${t.name}`);
    await c.query(`DROP TABLE IF EXISTS ${tables.join(', ')} CASCADE`);
    for (const schema of MADE_IN_DESTINATION) await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  });
}

/**
 * Start the dev stack, create the demo database on both servers (on the source only with
 * `destination`, a database of the user's: checkOwnDestination first), build and write the configs.
 */
export async function startEnv(res: Resources, log: Logger, destination?: string): Promise<DemoEnv> {
  // A bounded slot, as the migration guide asks of a real source (the connector warns otherwise).
  const stack = await res.starting(
    'the dev stack',
    startDevStack({ logger: log, sourceSettings: { max_slot_wal_keep_size: '1GB' }, parts: { destination: destination === undefined } }),
    (s) => s.stop(),
  );
  // Registered before the connectors start, so it runs after they have stopped (newest first).
  if (destination !== undefined) res.add('the demo tables in the destination', () => dropMadeIn(destination));
  for (const cluster of destination === undefined ? [stack.source, stack.destination] : [stack.source]) {
    const c = new pg.Client({ connectionString: cluster.url('postgres') });
    await c.connect();
    try {
      await c.query(`CREATE DATABASE ${DEMO_DATABASE}`);
    } finally {
      await c.end();
    }
  }
  const sourceUrl = stack.source.url(DEMO_DATABASE);
  const destinationUrl = destination ?? stack.destination.url(DEMO_DATABASE);
  const common = { name: 'demo', topicPrefix: DEMO_TOPIC_PREFIX, kafka: { brokers: [stack.kafka.bootstrap] }, schemaRegistry: { url: stack.registry.url }, metricsPort: 0 };
  const sourceConfig = sourceConfigSchema.parse({
    ...common,
    source: { url: sourceUrl },
    tables: { schemas: [DEMO_SCHEMA], include: DEMO_TABLES.map((t) => `${DEMO_SCHEMA}.${t.name}`) },
    slotName: 'shardbridge_demo',
    publicationName: 'shardbridge_demo',
    topics: { partitions: 3 },
    heartbeatIntervalMs: 2_000,
    sequencesIntervalMs: 5_000,
  });
  const sinkConfig = sinkConfigSchema.parse({ ...common, groupId: DEMO_GROUP_ID, destination: { url: destinationUrl }, stallRetryMs: 1_000 });
  const configDir = ownedTempDir('shardbridge-demo');
  // Also on exit: a forced exit (second Ctrl-C, shutdown timeout) skips the stops.
  const removeConfigs = () => rmSync(configDir, { recursive: true, force: true });
  process.on('exit', removeConfigs);
  res.add('the config files', async () => {
    removeConfigs();
    process.off('exit', removeConfigs);
  });
  writeFileSync(path.join(configDir, 'source.json'), JSON.stringify(sourceConfig, null, 2) + '\n');
  writeFileSync(path.join(configDir, 'sink.json'), JSON.stringify(sinkConfig, null, 2) + '\n');
  return { stack, sourceUrl, destinationUrl, sourceConfig, sinkConfig, configDir };
}

export async function startSource(res: Resources, env: DemoEnv, log: Logger): Promise<SourceConnector> {
  const source = await startSourceConnector(env.sourceConfig, log);
  res.add('the source connector', () => source.stop());
  return source;
}

export async function startSink(res: Resources, env: DemoEnv, log: Logger): Promise<SinkConnector> {
  // Short refresh and poll periods: the demo's topics all exist before the sink starts, but
  // snapshot completion is reported sooner.
  const sink = await startSinkConnector(env.sinkConfig, log, { topicRefreshMs: 2_000, controlPollMs: 500 });
  res.add('the sink connector', () => sink.stop());
  return sink;
}

/** Run `fn` with a client of `url`, closed afterwards. */
export async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url, application_name: 'shardbridge-demo' });
  c.on('error', () => {});
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}

/** Sum of a counter's values per label value of `by` (e.g. per `op`), optionally only where `where` matches. */
export async function counterValues(
  registry: Registry,
  name: string,
  by: string,
  where: Record<string, string> = {},
): Promise<Record<string, number>> {
  const metric = registry.getSingleMetric(name);
  const out: Record<string, number> = {};
  if (!metric) return out;
  for (const v of (await metric.get()).values as { labels: Record<string, string | number | undefined>; value: number }[]) {
    if (!Object.entries(where).every(([k, want]) => String(v.labels[k]) === want)) continue;
    const key = String(v.labels[by]);
    out[key] = (out[key] ?? 0) + v.value;
  }
  return out;
}

const BIN = fileURLToPath(new URL('../cli/shardbridge.js', import.meta.url));

/** The destination's URL fit to print: a --destination of the user's may hold a password. */
export const shownDestination = (env: DemoEnv): string => redactUrl(env.destinationUrl);

/** How to look at a kept demo: topics, metrics, databases, the configs. */
export function lookAroundText(env: DemoEnv, ports: { source: number | null; sink: number | null }): string {
  const a = env.stack.addresses();
  const topics = DEMO_TABLES.map((t) => `${DEMO_TOPIC_PREFIX}.${DEMO_SCHEMA}.${t.name}`);
  const cli = `node ${path.relative(process.cwd(), BIN) || BIN}`;
  const src = path.join(env.configDir, 'source.json');
  const snk = path.join(env.configDir, 'sink.json');
  return [
    '',
    'The stack and both connectors keep running (--keep). To look at them:',
    `  topics       ${topics.join(', ')}`,
    `               and ${DEMO_TOPIC_PREFIX}.__snapshot, ${DEMO_TOPIC_PREFIX}.__sequences, ${DEMO_TOPIC_PREFIX}.__transactions`,
    // Debian's and Ubuntu's kcat has no Avro support (`-s value=avro` fails): show what it can do.
    `  list         kcat -b ${a.kafka} -L                       (kcat: apt-get install kcat)`,
    `  read         kcat -b ${a.kafka} -C -t ${topics[2]} -e -o -3 -f '%p/%o key %K B value %S B\\n'`,
    `               (values are Avro; a kcat with Avro support, e.g. the edenhill/kcat image, decodes them: add -s value=avro -r ${a.schemaRegistry})`,
    `  schemas      curl ${a.schemaRegistry}/subjects`,
    `  metrics      source http://127.0.0.1:${ports.source ?? '?'}/metrics   sink http://127.0.0.1:${ports.sink ?? '?'}/metrics`,
    `  source db    psql ${env.sourceUrl}`,
    `  destination  psql ${shownDestination(env)}`,
    `  try          psql ${env.sourceUrl} -c "UPDATE orders SET status = 'returned' WHERE id = 1"`,
    `               psql ${shownDestination(env)} -c "SELECT id, status FROM orders WHERE id = 1"`,
    `  sink state   psql ${shownDestination(env)} -c "SELECT * FROM shardbridge.sink_offsets"`,
    `  configs      ${src}  ${snk}`,
    // Not `check`: it is the pre-flight, and fails on the slot the running source holds.
    `  status       ${cli} status --source-config ${src} --sink-config ${snk}`,
    `Ctrl-C stops everything (from another terminal: kill -INT ${process.pid}).`,
    '',
  ].join('\n');
}
