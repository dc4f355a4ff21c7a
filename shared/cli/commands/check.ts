/**
 * `shardbridge check`: the migration guide's checklist before anything is created. Source
 * side: settings, privileges, keys, slot, WAL keep size and the disk rule. Kafka and the
 * registry answer, and both connectors use one topic prefix. Destination side (with a sink
 * config): reachability, Citus, and per table columns, key, distribution, foreign keys and the
 * source replica identity a wider destination key needs. Exit 1 on any FAIL.
 */
import pg from 'pg';
import { ConfigError } from '../../errors.ts';
import { redactUrl } from '../../redact.ts';
import type { CommandContext } from '../main.ts';
import { connectionConfig, pgEndpoint, pgRemedy, type PgConnectionConfig } from '../../config/postgres.ts';
import { commandDestinationOptions, commandSourceOptions } from '../../pg-types.ts';
import { SINK_ENV_PREFIX, type SinkConfig } from '../../../sink-connector/config.ts';
import { sinkSessionsRefusal } from '../../../sink-connector/destination-start.ts';
import { resolveTables } from '../../../source-connector/catalog.ts';
import { gatherSourceFacts, judgeSourceFacts, type Finding } from '../../../source-connector/checks.ts';
import { judgeCapacity } from '../../checks/capacity.ts';
import { judgeDestination, type SourceTableFacts } from '../../checks/destination.ts';
import { databaseSize, gatherDestinationFacts, sampleWalRate, sourceTableFacts } from '../../checks/gather.ts';
import { renderReport, summarize } from '../../checks/report.ts';
import { checkServices } from '../../checks/services.ts';
import { SIGNAL_EXIT_CODES } from '../../shutdown.ts';
import { resetTransactionTimeout } from '../../timeout-reset.ts';

const CONNECT_TIMEOUT_MS = 10_000;

export async function run(opts: Record<string, unknown>, ctx: CommandContext): Promise<number> {
  // A check only reads: stopped, it says so (else Ctrl-C during the WAL sample ends it without a word) and exits at once.
  const unregister = ctx.onShutdown((signal) => {
    ctx.err(`shardbridge check: stopped by ${signal} before its report: nothing was changed\n`);
    process.exit(SIGNAL_EXIT_CODES[signal]);
  });
  try {
    return await checkAll(opts, ctx);
  } finally {
    unregister();
  }
}

async function checkAll(opts: Record<string, unknown>, ctx: CommandContext): Promise<number> {
  const sampleSeconds = typeof opts.sampleSeconds === 'number' ? opts.sampleSeconds : 3;
  const sourceConfig = ctx.sourceConfig();
  const sink = optionalSink(opts, ctx);
  // Their FAIL findings say it all: kafkajs's own connection errors would only repeat them.
  const services = checkServices(sourceConfig, sink, ctx.logger.child({}, { level: 'silent' }));

  const srcConn = connectionConfig(sourceConfig.source, { section: 'source', application_name: 'shardbridge-check' });
  // Not cut by an application's timeouts on the roles (pg-types.ts): the facts of thousands of tables take a while to read.
  srcConn.options = commandSourceOptions(srcConn.options);
  const sourceTarget = pgEndpoint(sourceConfig.source, false);
  const source: Finding[] = [];
  let tables: SourceTableFacts[] | undefined;

  const src = await connect(srcConn, 'source', sourceTarget, source, 'check source.host/port, the firewall or security group, pg_hba.conf and the credentials');
  let destination: Finding[] | null = null;
  let destTarget: string | null = null;
  let capacity: { database: string; bytes: number; keep: string } | undefined;
  try {
    let walRate: Promise<number | null> = Promise.resolve(null);
    if (src) {
      const resolved = await resolveTables(src, sourceConfig.tables);
      tables = await sourceTableFacts(src, resolved.tables);
      // A standby source's primary (source-connector/standby.ts): connected only to judge it, when the source is in recovery.
      const primary = sourceConfig.primary && (await src.query('SELECT pg_is_in_recovery() AS r')).rows[0].r === true ? await primaryOf(sourceConfig.primary, source) : undefined;
      let facts;
      try {
        facts = await gatherSourceFacts(src, { slotName: sourceConfig.slotName, publicationName: sourceConfig.publicationName, topicPrefix: sourceConfig.topicPrefix, resolved, slotFailover: sourceConfig.slotFailover, primary, primaryConfigured: sourceConfig.primary !== undefined });
      } finally {
        await primary?.client.end().catch(() => {});
      }
      // judgeCapacity gives the richer max_slot_wal_keep_size verdict (with a recommended value).
      source.push(...judgeSourceFacts(facts).filter((f) => f.check !== 'max_slot_wal_keep_size'));
      capacity = { ...(await databaseSize(src)), keep: facts.maxSlotWalKeepSize };
      // The WAL sample waits on the server clock; the destination is checked meanwhile (its own connection).
      walRate = sampleWalRate(src, sampleSeconds);
    }
    if (!sink) {
      // Not silent: the guide's first step (schema and keys on the destination) is then unchecked.
      destination = [{ level: 'WARN', check: 'destination', object: 'destination', message: 'destination not checked: give --sink-config (or SHARDBRIDGE_SINK_* variables)' }];
    } else {
      destination = [];
      const dstConn = connectionConfig(sink.destination, { section: 'destination', application_name: 'shardbridge-check' });
      dstConn.options = commandDestinationOptions(dstConn.options);
      destTarget = pgEndpoint(sink.destination, false);
      const dst = await connect(dstConn, 'destination', destTarget, destination, 'check destination.host/port, the network path from here, pg_hba.conf and the credentials');
      if (dst) {
        try {
          let refusedRole = false;
          if (tables) {
            const facts = await gatherDestinationFacts(dst, tables, sink.tables, sink.citus.requireDistributed, sink.sessionReplicationRole);
            refusedRole = facts.replicationRole?.canSet === false;
            destination.push(...judgeDestination(facts));
          } else {
            destination.push({ level: 'WARN', check: 'tables', object: 'destination', message: 'tables not compared: the source could not be read' });
          }
          // What the sink's start refuses of a pooler (its own sessions cannot be opened under a role refused replica: said above).
          if (!refusedRole) destination.push(...(await sinkSessionFindings(sink, dst)));
        } finally {
          await dst.end().catch(() => {});
        }
      }
    }
    if (capacity) {
      source.push(
        ...judgeCapacity({
          database: capacity.database,
          databaseBytes: capacity.bytes,
          walBytesPerSecond: await walRate,
          sampleSeconds,
          maxSlotWalKeepSize: capacity.keep,
        }),
      );
    }
  } finally {
    await src?.end().catch(() => {});
  }

  const kafka = await services;
  const all = [...source, ...kafka, ...(destination ?? [])];
  const summary = summarize(all);
  if (opts.json) {
    ctx.out(
      JSON.stringify(
        {
          ok: summary.ok,
          summary,
          source: { target: sourceTarget, findings: source },
          services: { findings: kafka },
          destination: destination && { target: destTarget, findings: destination },
        },
        null,
        2,
      ) + '\n',
    );
  } else {
    const sections = [{ title: `Source ${sourceTarget}`, findings: source }, { title: 'Kafka and schema registry', findings: kafka }];
    if (destination) sections.push({ title: destTarget ? `Destination ${destTarget}` : 'Destination', findings: destination });
    ctx.out(renderReport(sections, { all: Boolean(opts.all) }));
  }
  return summary.ok ? 0 : 1;
}

/**
 * The sink config when one is given; without --sink-config and without sink variables, none.
 * A set SHARDBRIDGE_SINK_* variable means one was meant: its errors are reported (exit 2).
 */
function optionalSink(opts: Record<string, unknown>, ctx: CommandContext): SinkConfig | undefined {
  try {
    return ctx.sinkConfig();
  } catch (e) {
    if (e instanceof ConfigError && opts.sinkConfig === undefined && sinkVariables(ctx.env ?? process.env).length === 0) return undefined;
    throw e;
  }
}

/** The SHARDBRIDGE_SINK_* variables that set something (an empty one counts as not set, as in config loading). Pure. */
export function sinkVariables(env: NodeJS.ProcessEnv): string[] {
  return Object.keys(env).filter((k) => k.startsWith(SINK_ENV_PREFIX) && env[k] !== undefined && env[k] !== '');
}

/**
 * The sink's sessions opened as its pool will: a FAIL with the start's own error when it would
 * refuse the destination (a pooler dropping its settings, or in transaction pooling), a PASS
 * through a session pooler that keeps them; nothing when connected to the server itself.
 */
export async function sinkSessionFindings(sink: SinkConfig, dst: pg.Client): Promise<Finding[]> {
  try {
    const { refusal, pooler } = await sinkSessionsRefusal(sink, dst);
    if (refusal) return [{ level: 'FAIL', check: 'connection pooler', object: 'destination', message: `the sink would refuse to start: ${refusal.message}`, remedy: refusal.remedy }];
    return pooler ? [{ level: 'PASS', check: 'connection pooler', object: 'destination', message: "through a session pooler: the sink's sessions are their own, with its settings in effect" }] : [];
  } catch (e) {
    return [{ level: 'WARN', check: 'connection pooler', object: 'destination', message: redactUrl(`cannot open a session as the sink does: ${e instanceof Error ? e.message : String(e)}`) }];
  }
}

/** The `primary` section's server, connected as the source (a FAIL in `findings` when it cannot be). */
async function primaryOf(section: PgConnectionConfig, findings: Finding[]): Promise<{ client: pg.Client; endpoint: string } | undefined> {
  const config = connectionConfig(section, { section: 'primary', application_name: 'shardbridge-check' });
  config.options = commandSourceOptions(config.options);
  const endpoint = pgEndpoint(section, false);
  const client = await connect(config, 'primary', endpoint, findings, "check primary.host/port (the source standby's primary), pg_hba.conf and the credentials");
  return client && { client, endpoint };
}

async function connect(config: pg.ClientConfig, side: string, target: string, findings: Finding[], remedy: string): Promise<pg.Client | undefined> {
  let client: pg.Client | undefined;
  try {
    // Inside the try: pg parses a connection string here, and a bad one is this server's FAIL.
    client = new pg.Client({ ...config, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
    client.on('error', () => {});
    await client.connect();
    await resetTransactionTimeout(client, config.options);
    const { rows: [r] } = await client.query(`SELECT current_setting('server_version') AS v, current_database() AS db, current_user AS u`);
    findings.push({ level: 'PASS', check: 'reachable', object: `${side} ${target}`, message: `PostgreSQL ${r.v}, database ${r.db} as ${r.u}` });
    return client;
  } catch (e) {
    await client?.end().catch(() => {});
    const why = e instanceof Error ? e.message || (e as { code?: string }).code || e.name : String(e);
    findings.push({ level: 'FAIL', check: 'reachable', object: `${side} ${target}`, message: redactUrl(`cannot connect to ${target}: ${why}`), remedy: pgRemedy(e, side, remedy) });
    return undefined;
  }
}
