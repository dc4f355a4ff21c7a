/**
 * What the sink does with the destination before it consumes: detect Citus and make the sink's
 * own tables (one connection), open the apply pool with the session settings, and read the
 * catalog of every table it knows of, so that a missing or undistributed table is named at
 * start rather than when its first record stalls.
 */
import pg from 'pg';
import { pgEndpoint } from '../shared/config/postgres.ts';
import { ConfigError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import { detectCitus, type CitusInfo } from '../shared/schema/citus-catalog.ts';
import { connectionConfig, sessionOptions, type SinkConfig } from './config.ts';
import { controlTopicKind } from './control.ts';
import { splitQualifiedName } from '../shared/sql.ts';
import { withUserOptions } from '../shared/pg-types.ts';
import { classify, namedPool, withPooledClient } from './destination-errors.ts';
import { canSetReplicationRole, readTriggers, replicationRoleRefusal, triggerWarning } from '../shared/checks/triggers.ts';
import { readRowSecurity } from '../shared/checks/gather.ts';
import { rowSecurityProblem } from '../shared/checks/destination.ts';
import { ensureSinkTables } from './offsets.ts';
import { checkAndRecordMappings, type TopicMapping } from './applied-mappings.ts';
import { destIdOf, tableFromTopic, type TargetFor } from './schema-compile.ts';
import { learnSessionPid, optionSettings, poolerRefusedParameter, probePooler, readSettings, settingsNotInEffect, sinkOptionsRefused, sinkSettingsMissing, sinkSharedSessions } from '../shared/checks/pooler.ts';
import type { TableStates } from './table-state.ts';

/** Retries a start-up step while its failures are transient (the connector's, until it stops). */
export type UntilDone = <T>(what: string, fn: () => Promise<T>) => Promise<T>;

export async function openDestination(
  config: SinkConfig,
  connections: number,
  log: Logger,
  untilDone: UntilDone,
): Promise<{ citus: CitusInfo; pool: pg.Pool }> {
  const conn = connectionConfig(config.destination, { section: 'destination', application_name: `shardbridge-sink-${config.name}` });
  const replica = config.sessionReplicationRole === 'replica';
  const { citus, encoding, refused, pooler } = await untilDone(`prepare the destination ${pgEndpoint(config.destination)}`, async () => {
    // Bounded: a destination that accepts TCP and never answers left the start waiting without a word.
    const client = new pg.Client({ ...conn, connectionTimeoutMillis: conn.connectionTimeoutMillis ?? 15_000 });
    client.on('error', () => {});
    try {
      await client.connect();
      const info = await detectCitus(client);
      const { rows: [r] } = await client.query(`SELECT current_setting('server_encoding') AS encoding, current_user AS role`);
      // Before the sink's tables are made and the pool opened (its sessions would fail to connect, FATAL 42501, retried for ever).
      const refused = replica ? replicationRoleRefusal(info.present, info.present || (await canSetReplicationRole(client)), String(r.role)) : null;
      const pooler = refused ? false : await checkSessions(conn, sessionOptions(config, info.present), client, String(r.role));
      if (!refused) await ensureSinkTables(client);
      return { citus: info, encoding: String(r.encoding), refused, pooler };
    } catch (err) {
      const parameter = poolerRefusedParameter(err);
      if (parameter) throw sinkOptionsRefused('destination.url', parameter, optionSettings(sessionOptions(config, false)), null, err);
      throw classify(err, {});
    } finally {
      await client.end().catch(() => {});
    }
  });
  log.info({ citus: citus.present ? citus.version : false }, citus.present ? `destination is Citus ${citus.version}` : 'destination is PostgreSQL (no Citus)');
  if (refused) throw new ConfigError(refused.message, { context: { key: 'sessionReplicationRole' }, remedy: refused.remedy });
  if (replica) {
    log.info(
      { sessionReplicationRole: 'replica' },
      "the sink's sessions run with session_replication_role = replica: the destination tables' triggers (except ENABLE ALWAYS and ENABLE REPLICA ones) and foreign keys do not fire for the rows it applies",
    );
  }
  const warning = encodingWarning(encoding);
  if (warning) log.warn({ serverEncoding: encoding }, warning);
  const pool = namedPool(new pg.Pool({ ...conn, max: connections, options: withUserOptions(conn.options, sessionOptions(config, citus.present)) }), pgEndpoint(config.destination));
  pool.on('error', (err) => log.debug({ err }, 'idle destination connection failed'));
  // A checked-out connection that dies between queries emits 'error': the next query fails and is retried.
  pool.on('connect', (client) => client.on('error', (err) => log.debug({ err: err.message }, 'destination connection failed')));
  // Through a (session) pooler: the lock watchdog finds a batch's session by its server pid.
  if (pooler) pool.on('connect', (client) => learnSessionPid(client));
  return { citus, pool };
}

/**
 * The sink's sessions as its pool will open them (`conn` with `options`): each its own server
 * session, with the settings the options ask for in effect. A pooler between (shared/checks/pooler.ts)
 * refuses the options, drops them, or shares one server session between connections
 * (transaction pooling: a batch's temporary staging table made in one transaction would be
 * looked for in another client's session): each refused here, naming the key and the remedy.
 * `other` is a connection already open to the same destination. True when through a (session) pooler.
 */
async function checkSessions(conn: pg.ClientConfig, options: string, other: pg.Client, role: string): Promise<boolean> {
  const wanted = optionSettings(options);
  const client = new pg.Client({ ...conn, options: withUserOptions(conn.options, options), connectionTimeoutMillis: conn.connectionTimeoutMillis ?? 15_000 });
  client.on('error', () => {});
  try {
    try {
      await client.connect();
    } catch (err) {
      const parameter = poolerRefusedParameter(err);
      if (parameter) throw sinkOptionsRefused('destination.url', parameter, wanted, role, err);
      throw err;
    }
    const { pooler, sharedSessions } = await probePooler(client, other);
    if (sharedSessions) throw sinkSharedSessions('destination.url');
    const missing = settingsNotInEffect(wanted, await readSettings(client, [...wanted.keys()]));
    if (missing.length > 0) throw sinkSettingsMissing('destination.url', missing, pooler, role);
    return pooler;
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * `check`'s view of what the sink's start refuses of a pooler (checkSessions): its sessions
 * opened as its pool will, beside `other` (check's own connection). The ConfigError the start
 * would throw, null when it would start, and `pooler` whether it goes through a (session) pooler.
 */
export async function sinkSessionsRefusal(config: SinkConfig, other: pg.Client): Promise<{ refusal: ConfigError | null; pooler: boolean }> {
  const conn = connectionConfig(config.destination, { section: 'destination', application_name: 'shardbridge-check' });
  const citus = await detectCitus(other);
  const { rows: [r] } = await other.query('SELECT current_user AS role');
  try {
    return { refusal: null, pooler: await checkSessions(conn, sessionOptions(config, citus.present), other, String(r.role)) };
  } catch (err) {
    if (err instanceof ConfigError) return { refusal: err, pooler: true };
    throw err;
  }
}

/**
 * What a destination database not in UTF8 means, said at start; null for UTF8. The source's text
 * arrives as UTF8 (its records are Avro strings): a LATIN1 (or other single-byte) database refuses
 * a character it has no code for (22P05), which stalls that record's partition; SQL_ASCII stores
 * the bytes unchecked, so the destination's text functions, sorting and checks see bytes. Pure.
 */
export function encodingWarning(encoding: string): string | null {
  if (encoding.toUpperCase() === 'UTF8') return null;
  const then =
    encoding.toUpperCase() === 'SQL_ASCII'
      ? 'SQL_ASCII stores the UTF8 bytes unchecked: length(), ordering and character classes on the destination work on bytes, not characters'
      : `a character ${encoding} has no code for (e.g. most non-Latin scripts and emoji) stalls its partition (SQLSTATE 22P05) until the destination database is UTF8`;
  return `the destination database's encoding is ${encoding}, not UTF8 as the source's text: ${then}; create the destination database with ENCODING 'UTF8'`;
}

/**
 * The source tables the sink knows of at start: mapped under `tables`, or with a topic. A table
 * known by its topic alone carries it: the topic's name may have characters replaced.
 */
export function knownTables(config: Pick<SinkConfig, 'tables' | 'topicPrefix'>, topics: readonly string[]): KnownTable[] {
  const sources = new Map<string, KnownTable>();
  for (const name of Object.keys(config.tables)) {
    const q = splitQualifiedName(name);
    sources.set(destIdOf(q.schema, q.table), q);
  }
  for (const t of topics) {
    if (controlTopicKind(t, config.topicPrefix)) continue;
    const source = tableFromTopic(t, config.topicPrefix);
    const id = destIdOf(source.schema, source.table);
    if (!sources.has(id)) sources.set(id, { ...source, topic: t });
  }
  return [...sources.values()];
}

export interface KnownTable {
  schema: string;
  table: string;
  /** Set when the table is known from this topic's name only. */
  topic?: string;
}

/** A topic's source table as its latest value schema names it; null when it has none. */
export type SourceOfTopic = (topic: string) => Promise<{ schema: string; table: string } | null>;

/**
 * Tables known by topic name only, whose destination table was not found under that name: their
 * real names from the registry (a table "Order Items" has the topic ….Order_Items), where they differ.
 */
async function realNames(candidates: readonly KnownTable[], sourceOf: SourceOfTopic, log: Logger): Promise<Map<KnownTable, KnownTable>> {
  const renamed = new Map<KnownTable, KnownTable>();
  await Promise.all(
    candidates.map(async (s) => {
      const named = await sourceOf(s.topic!).catch((err: unknown) => {
        log.debug({ err: (err as Error).message, topic: s.topic }, 'cannot read the topic\'s schema for its table name');
        return null;
      });
      if (named && (named.schema !== s.schema || named.table !== s.table)) renamed.set(s, named);
    }),
  );
  return renamed;
}

/**
 * Each table topic's mapping as the configuration gives it now. The source table is the one the
 * topic's name gives, or the real name found in the registry for it (`sources`).
 */
export function topicMappings(config: Pick<SinkConfig, 'topicPrefix'>, topics: readonly string[], sources: readonly KnownTable[], targetFor: TargetFor): TopicMapping[] {
  const byTopic = new Map(sources.flatMap((s) => (s.topic === undefined ? [] : [[s.topic, s] as const])));
  return topics.flatMap((topic) => {
    if (controlTopicKind(topic, config.topicPrefix)) return [];
    const s = byTopic.get(topic) ?? tableFromTopic(topic, config.topicPrefix);
    const t = targetFor(s.schema, s.table);
    return [{ topic, source: `${s.schema}.${s.table}`, destSchema: t.schema, destTable: t.table, columns: { ...t.columns } }];
  });
}

function warnMerged(targets: ReturnType<TargetFor>[], log: Logger): void {
  const merged = new Map<readonly string[], string>();
  for (const t of targets) if (t.sources.length > 1) merged.set(t.sources, `${t.schema}.${t.table}`);
  for (const [sources, dest] of merged) {
    log.warn(
      { table: dest, sources },
      `${sources.join(', ')} all go to ${dest}: their keys must not overlap, and a truncate of one of them stalls its partition rather than empty the others' rows (truncate: ignore skips truncates)`,
    );
  }
}

/**
 * Read the destination catalog of every known table: each is reported now (distributed,
 * reference or local), and a missing one named. Under requireDistributed, refuse to start
 * while one is not distributed.
 */
export async function checkTables(
  deps: { config: SinkConfig; pool: pg.Pool; states: TableStates; targetFor: TargetFor; citus: CitusInfo; log: Logger; untilDone: UntilDone; sourceOfTopic?: SourceOfTopic; kafkaCluster: string | null },
  topics: readonly string[],
): Promise<void> {
  const { config, log } = deps;
  const target = (s: KnownTable) => deps.targetFor(s.schema, s.table);
  const destName = (s: KnownTable) => {
    const t = target(s);
    return `${t.schema}.${t.table}`;
  };
  const read = (tables: KnownTable[]) =>
    deps.untilDone('read the destination tables', () =>
      withPooledClient(deps.pool, (client) =>
        deps.states.readAtStart(client, tables.map(target)).catch((err: unknown) => {
          throw classify(err, {});
        }),
      ),
    );
  let sources = knownTables(config, topics);
  let found: { missing: string[]; local: string[] } | null = null;
  try {
    found = await read(sources);
    if (found.missing.length > 0 && deps.sourceOfTopic) {
      const missing = new Set(found.missing);
      const renamed = await realNames(sources.filter((s) => s.topic !== undefined && missing.has(destName(s))), deps.sourceOfTopic, log);
      if (renamed.size > 0) {
        const stale = new Set([...renamed.keys()].map(destName));
        const again = await read([...renamed.values()]);
        found = { missing: [...found.missing.filter((m) => !stale.has(m)), ...again.missing], local: [...found.local, ...again.local] };
        sources = sources.map((s) => {
          const real = renamed.get(s);
          return real ? { ...real, topic: s.topic } : s;
        });
      }
    }
  } catch (err) {
    if (config.citus.requireDistributed) throw err;
    // Only a report then: each table's first batch reads its catalog again, and stalls on what fails.
    log.warn({ err: (err as Error).message }, 'could not read the destination tables at start');
  }
  warnMerged(sources.map(target), log);
  // Before anything is consumed: a mapping changed since its topic was applied is refused here.
  const mappings = topicMappings(config, topics, sources, deps.targetFor);
  await deps.untilDone('check the table mappings against shardbridge.sink_mappings', () =>
    withPooledClient(deps.pool, (client) => checkAndRecordMappings(client, config.groupId, mappings, log, { atStart: true, kafkaCluster: deps.kafkaCluster })),
  );
  if (found === null) return;
  const required = config.citus.requireDistributed;
  const refused = [...found.local, ...found.missing.map((m) => `${m} (missing)`)];
  if (required && refused.length > 0) {
    throw new ConfigError(`citus.requireDistributed is set, but these destination tables are not distributed or reference tables: ${refused.join(', ')}`, {
      context: { key: 'citus.requireDistributed' },
      remedy: deps.citus.present ? "distribute them first: SELECT create_distributed_table('<table>', '<column>')" : 'the destination has no Citus extension',
    });
  }
  await warnSilentChanges(deps, sources.map(target));
  if (found.missing.length > 0) {
    log.warn(
      { tables: found.missing },
      `destination tables missing: ${found.missing.join(', ')}; their partitions stall at their first change until they exist (shardbridge schema copy, or map them under "tables")`,
    );
  }
}

/**
 * A warning per destination table where the sink's writes do not land as the source's: triggers
 * they fire (shared/checks/triggers.ts; PostgreSQL's own logical replication would not fire
 * them), row-level security that makes its updates and deletes of hidden rows change nothing.
 * `check` fails both. Only a report: not read, not said.
 */
export async function warnSilentChanges(deps: { config: SinkConfig; pool: pg.Pool; citus: CitusInfo; log: Logger }, tables: readonly { schema: string; table: string }[]): Promise<void> {
  // Several source tables may go to one destination table: said once.
  const named = [...new Map(tables.map((t) => [JSON.stringify([t.schema, t.table]), { schema: t.schema, name: t.table }])).values()];
  const read = await withPooledClient(deps.pool, async (client) => ({ triggers: await readTriggers(client, named), security: await readRowSecurity(client, named) })).catch((err: unknown) => {
    deps.log.debug({ err: (err as Error).message }, "could not read the destination tables' triggers and row-level security");
    return null;
  });
  if (!read) return;
  named.forEach((t, i) => {
    const w = triggerWarning(t, read.triggers[i], deps.config.sessionReplicationRole, deps.citus.present);
    if (w) deps.log.warn({ table: `${t.schema}.${t.name}`, triggers: read.triggers[i].map((x) => x.name), remedy: w.remedy }, w.message);
    const rls = read.security[i];
    if (rls) {
      const p = rowSecurityProblem(t, rls);
      deps.log.warn({ table: `${t.schema}.${t.name}`, rowSecurity: true, remedy: p.remedy }, p.message);
    }
  });
}
