/**
 * The demo's phases, in order: stack, source data, destination schema, source connector
 * (snapshot), sink connector, a burst of changes, catch-up, sequences, verification. Each
 * phase is timed; a phase that fails ends the run with the failure in the outcome, so the
 * report still says what was reached. The caller (shared/cli/commands/demo.ts) owns the
 * Resources and decides when to stop them.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import type { CommandContext } from '../cli/main.ts';
import { loadCommandModule } from '../cli/main.ts';
import type { Logger } from '../logger.ts';
import { verifyTableFor } from '../schema/mapping.ts';
import { verifyTables, type VerifyReport, type VerifyTable } from '../verify/index.ts';
import { resolveTables } from '../../source-connector/catalog.ts';
import type { SourceConnector } from '../../source-connector/run.ts';
import type { SinkConnector } from '../../sink-connector/connector.ts';
import type { DemoOutcome, OpCounts, SequenceOutcome, TableOutcome } from './report.ts';
import { catchUpProgress } from './report.ts';
import { counterValues, shownDestination, startEnv, startSink, startSource, withClient, type DemoEnv, type Resources } from './session.ts';
import { watchServers } from './watch-stack.ts';
import { ensureKafkaJars } from '../devstack/kafka-jars.ts';
import {
  BURST, DEMO_SCHEMA, DEMO_TABLES, RAISE_SEQUENCE_SQL, SEED_SQL, SEQUENCES_SQL, SOURCE_DDL, TABLE_DDL, citusLayoutSql, compareSequences, schemaCopyArgs,
} from './workload.ts';

export interface DemoDeps {
  resources: Resources;
  log: Logger;
  /** A progress line (stderr). */
  progress(text: string): void;
  /** Aborted on Ctrl-C: waits end early. */
  signal: AbortSignal;
  /** Limits of the waits, in ms. */
  limits?: Partial<typeof DEFAULT_LIMITS>;
  /** A database of the user's (PostgreSQL or a Citus coordinator) instead of the dev stack's destination: `--destination`. */
  destination?: string;
}

export const DEFAULT_LIMITS = { snapshotMs: 90_000, catchUpMs: 90_000, sequencesMs: 15_000 };

/** After this long without a progress line, a "still waiting for …" line: no silent minute. */
export const HEARTBEAT_MS = 10_000;

/** What stays running after the demo (for --keep). */
export interface DemoRunning {
  env?: DemoEnv;
  source?: SourceConnector;
  sink?: SinkConnector;
}

class PhaseFailure extends Error {}
/** A wait that ran out (--wait-seconds): the servers are still up, so what differs can still be shown. */
class TimedOut extends PhaseFailure {}

export async function runDemo(deps: DemoDeps, running: DemoRunning = {}): Promise<DemoOutcome> {
  const limits = { ...DEFAULT_LIMITS, ...deps.limits };
  const started = Date.now();
  const outcome: DemoOutcome = {
    destination: 'destination PostgreSQL',
    schemaVia: '(not copied)',
    tables: [],
    applied: {},
    burstTransactions: 0,
    catchUpMs: null,
    sequences: [],
    phases: [],
    totalMs: 0,
    failures: [],
  };
  const phase = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = Date.now();
    try {
      return await guard(fn());
    } finally {
      outcome.phases.push({ name, ms: Date.now() - t0 });
    }
  };
  const { log, resources: res } = deps;
  let lastLineAt = Date.now();
  const progress = (text: string) => {
    lastLineAt = Date.now();
    deps.progress(text);
  };
  let waitingFor = 'the dev stack to start';
  let waitingSince = Date.now();
  const waiting = (what: string) => {
    if (what !== waitingFor) waitingSince = Date.now();
    waitingFor = what;
  };
  const heartbeat = setInterval(() => {
    if (Date.now() - lastLineAt >= HEARTBEAT_MS) progress(`  still waiting for ${waitingFor} (${Math.round((Date.now() - waitingSince) / 1000)} s)`);
  }, 1_000);
  heartbeat.unref();

  // The first failure of a connector or of a dev stack server: it ends whichever phase runs,
  // also one awaiting a call that retries for ever (a connector's start while Kafka is gone).
  let died: string | null = null;
  let dieNow!: (err: PhaseFailure) => void;
  const dead = new Promise<never>((_, reject) => (dieNow = reject));
  dead.catch(() => {});
  const fail = (message: string) => {
    if (died) return;
    died = message;
    dieNow(new PhaseFailure(message));
  };
  const guard = <T>(p: Promise<T>): Promise<T> => Promise.race([p, dead]);
  const watch = (what: string, done: Promise<void>) =>
    done.catch((err: unknown) => fail(`the ${what} connector failed: ${err instanceof Error ? err.message : String(err)}`));
  const alive = () => {
    if (deps.signal.aborted) throw new PhaseFailure('interrupted');
    if (died) throw new PhaseFailure(died);
  };
  let unwatchStack = () => {};

  try {
    // Checked by the command before anything starts (checkOwnDestination).
    const own = deps.destination;
    progress(`starting the dev stack: source${own === undefined ? ' and destination' : ''} PostgreSQL, Apache Kafka (KRaft), schema registry`);
    const env = await phase('stack', async () => {
      // First run only: mvn fetches the broker's jars, which can take minutes; say so.
      await ensureKafkaJars({ log: (m) => progress(m) });
      return startEnv(res, log, own);
    });
    running.env = env;
    unwatchStack = watchServers(
      [
        { name: 'Kafka broker', port: env.stack.kafka.port },
        { name: 'schema registry', port: env.stack.registry.port },
        { name: 'source PostgreSQL', port: env.stack.source.port },
        ...(own === undefined ? [{ name: 'destination PostgreSQL', port: env.stack.destination.port }] : []),
      ],
      fail,
    );
    alive();
    const a = env.stack.addresses();
    progress(`dev stack ready: kafka ${a.kafka}, registry ${a.schemaRegistry}, source ${env.sourceUrl}, destination ${shownDestination(env)}${own === undefined ? '' : ' (--destination)'}`);

    waiting('the source data');
    const seeded = await phase('seed', () => withClient(env.sourceUrl, (c) => seedSource(c)));
    progress(`source schema created and filled: ${Object.entries(seeded).map(([t, n]) => `${t} ${n.toLocaleString('en-US')}`).join(', ')} rows`);

    const citus = await guard(withClient(env.destinationUrl, async (c) => (await c.query(`SELECT extversion FROM pg_extension WHERE extname = 'citus'`)).rows[0]?.extversion as string | undefined));
    outcome.destination = citus ? `Citus ${citus}` : 'destination PostgreSQL (no Citus: tables stay local)';
    waiting('the destination schema');
    const via = await phase('schema', () => copySchema(env, Boolean(citus), log));
    outcome.schemaVia = via.how;
    progress(`destination tables created with ${via.how}${citus ? ', distributed with Citus' : ''}${via.detail ? `: ${via.detail}` : ''}`);

    waiting('the source connector to start');
    const source = await phase('snapshot', async () => {
      const s = await startSource(res, env, log);
      running.source = s;
      watch('source', s.done);
      progress(`source connector started (metrics http://127.0.0.1:${s.metricsPort}/metrics): taking the snapshot`);
      const total = Object.values(seeded).reduce((a, n) => a + n, 0);
      await until(limits.snapshotMs, 'the snapshot to finish', deps.signal, alive, async () => {
        const rows = (await counterValues(s.metrics.registry, 'shardbridge_source_changes_published_total', 'op')).r ?? 0;
        waiting(`the snapshot (${rows.toLocaleString('en-US')} of ${total.toLocaleString('en-US')} rows published)`);
        return s.state().phase === 'streaming';
      });
      return s;
    });
    const snapshotRows = await counterValues(source.metrics.registry, 'shardbridge_source_changes_published_total', 'op');
    progress(`snapshot published: ${(snapshotRows.r ?? 0).toLocaleString('en-US')} rows; the source connector is streaming`);

    waiting('the sink connector to start');
    const sink = await guard(startSink(res, env, log));
    running.sink = sink;
    watch('sink', sink.done);
    progress(`sink connector started (metrics http://127.0.0.1:${sink.metricsPort}/metrics)`);

    const burstEnd = await phase('burst', () =>
      withClient(env.sourceUrl, async (c) => {
        for (const step of BURST) {
          alive();
          await c.query('BEGIN');
          let rows = 0;
          for (const sql of step.statements) rows += (await c.query(sql)).rowCount ?? 0;
          await c.query('COMMIT');
          outcome.burstTransactions++;
          progress(`  source: ${step.label} (${rows.toLocaleString('en-US')} row${rows === 1 ? '' : 's'})`);
        }
        return Date.now();
      }),
    );

    const tables = await guard(
      withClient(env.sourceUrl, async (c) => {
        const r = await resolveTables(c, env.sourceConfig.tables);
        return r.tables.map((t) => verifyTableFor(t, env.sinkConfig.tables));
      }),
    );
    const verifyOpts = { source: { connectionString: env.sourceUrl }, destination: { connectionString: env.destinationUrl }, tables };

    // A destination that never catches up still gets the final verification: the report then
    // names the differing tables and keys, not only that the wait ran out.
    const caughtUp = await phase('catch-up', async () => {
      waiting('the destination to catch up');
      let shown = '';
      let shownAt = 0;
      await until(limits.catchUpMs, 'the destination to equal the source', deps.signal, alive, async () => {
        const r = await verifyTables({ ...verifyOpts, ranges: 4, sampleKeys: 0 });
        const text = catchUpProgress(r.tables.map(tableView));
        if (!r.match && (text !== shown || Date.now() - shownAt > 5_000)) {
          progress(`  waiting: ${text}`);
          shown = text;
          shownAt = Date.now();
        }
        return r.match;
      });
      outcome.catchUpMs = Date.now() - burstEnd;
      return true;
    }).catch((err: unknown) => {
      if (!(err instanceof TimedOut)) throw err;
      outcome.failures.push(err.message);
      progress(`  ${err.message}: verifying what differs`);
      return false;
    });
    if (caughtUp) {
      progress(`destination caught up ${(outcome.catchUpMs! / 1000).toFixed(1)} s after the last source commit`);
      waiting('the destination sequences');
      outcome.sequences = await phase('sequences', () => fixSequences(env, source, limits.sequencesMs, deps));
      const behind = outcome.sequences.filter((s) => !s.ok).length;
      progress(`sequences: ${outcome.sequences.length - behind} of ${outcome.sequences.length} at or above the source`);
    }

    waiting('the verification');
    const final = await phase('verify', () => verifyTables({ ...verifyOpts, ranges: 16, sampleKeys: 5 }));
    outcome.tables = await tableOutcomes(final, tables, source);
    outcome.applied = (await counterValues(sink.metrics, 'shardbridge_sink_events_applied_total', 'op')) as OpCounts;
    progress(`verified ${final.tables.length} tables in ${(final.durationMs / 1000).toFixed(1)} s: ${final.match ? 'all equal' : 'DIFFERENCES FOUND'}`);
  } catch (err) {
    outcome.failures.push(err instanceof PhaseFailure ? err.message : describe(err));
    if (!(err instanceof PhaseFailure)) log.debug({ err }, 'demo failed');
  }
  clearInterval(heartbeat);
  unwatchStack();
  if (died && !outcome.failures.includes(died)) outcome.failures.push(died);
  outcome.totalMs = Date.now() - started;
  return outcome;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function until(ms: number, what: string, signal: AbortSignal, alive: () => void, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    alive();
    if (await check()) return;
    if (Date.now() > deadline) throw new TimedOut(`timed out after ${ms >= 10_000 ? Math.round(ms / 1000) : ms / 1000} s waiting for ${what} (--wait-seconds)`);
    await sleep(250, undefined, { signal }).catch(() => {});
  }
}

async function seedSource(c: pg.Client): Promise<Record<string, number>> {
  await c.query('BEGIN');
  for (const sql of SOURCE_DDL) await c.query(sql);
  for (const sql of SEED_SQL) await c.query(sql);
  await c.query('COMMIT');
  await c.query('ANALYZE');
  const counts: Record<string, number> = {};
  for (const t of DEMO_TABLES) counts[t.name] = Number((await c.query(`SELECT count(*) AS n FROM ${DEMO_SCHEMA}.${t.name}`)).rows[0].n);
  return counts;
}

/**
 * The destination tables: through `schema copy` (its command module, called in-process with
 * the demo's configs), or, when that command is not there, from the demo's own DDL without
 * foreign keys. On Citus, distributed as DEMO_TABLES says.
 */
async function copySchema(env: DemoEnv, citus: boolean, log: Logger): Promise<{ how: string; detail?: string }> {
  const mod = await loadCommandModule('schema copy');
  if (mod) {
    let out = '';
    let err = '';
    const ctx: CommandContext = {
      command: 'schema copy',
      logger: log,
      verbose: false,
      out: (t) => void (out += t),
      err: (t) => void (err += t),
      sourceConfig: () => env.sourceConfig,
      sinkConfig: () => env.sinkConfig,
      onShutdown: () => () => {},
    };
    const opts: Record<string, unknown> = { json: true };
    if (citus) {
      const args = schemaCopyArgs();
      opts.distribute = args.flatMap((a, i) => (args[i - 1] === '--distribute' ? [a] : []));
      opts.reference = args.flatMap((a, i) => (args[i - 1] === '--reference' ? [a] : []));
      opts.colocate = args.includes('--colocate');
    }
    const code = await mod.run(opts, ctx);
    if (code !== 0) throw new PhaseFailure(`schema copy failed (exit ${code}): ${(err || out).trim()}`);
    let detail: string | undefined;
    try {
      const plan = JSON.parse(out) as { steps?: unknown[]; notes?: string[] };
      detail = `${plan.steps?.length ?? 0} steps${plan.notes?.length ? `; ${plan.notes.join('; ')}` : ''}`;
    } catch {
      detail = undefined;
    }
    return { how: '`shardbridge schema copy`', detail };
  }
  await withClient(env.destinationUrl, async (c) => {
    await c.query('BEGIN');
    for (const sql of TABLE_DDL) await c.query(sql);
    await c.query('COMMIT');
    if (citus) for (const sql of citusLayoutSql()) await c.query(sql);
  });
  return { how: "the demo's DDL (schema copy is not available)", detail: 'foreign keys left out' };
}

async function readSequences(url: string): Promise<Map<string, string | null>> {
  return withClient(url, async (c) => new Map((await c.query(SEQUENCES_SQL)).rows.map((r) => [r.sequence as string, r.last_value as string | null])));
}

/**
 * The sink moves destination sequences from the source's `__sequences` records: publish the
 * current values now and wait for them. If they do not arrive in time, the demo moves the
 * laggards itself (setval, never lower), says so, and checks again.
 */
async function fixSequences(env: DemoEnv, source: SourceConnector, ms: number, deps: DemoDeps): Promise<SequenceOutcome[]> {
  await source.publishSequences();
  const src = await readSequences(env.sourceUrl);
  let cmp = compareSequences(src, await readSequences(env.destinationUrl));
  const deadline = Date.now() + ms;
  while (cmp.some((s) => !s.ok) && Date.now() < deadline && !deps.signal.aborted) {
    await sleep(250, undefined, { signal: deps.signal }).catch(() => {});
    cmp = compareSequences(src, await readSequences(env.destinationUrl));
  }
  const late = new Set(cmp.filter((s) => !s.ok).map((s) => s.sequence));
  if (late.size > 0) {
    deps.progress(`  the sink did not move ${[...late].join(', ')} within ${Math.round(ms / 1000)} s: moving them with setval`);
    await withClient(env.destinationUrl, async (c) => {
      for (const s of cmp) if (late.has(s.sequence) && s.source !== null) await c.query(RAISE_SEQUENCE_SQL, [s.sequence, s.source]);
    });
    cmp = compareSequences(src, await readSequences(env.destinationUrl));
  }
  return cmp.map((s) => ({ ...s, movedBy: late.has(s.sequence) ? 'demo' : s.source === null ? 'none' : 'sink' }));
}

const tableView = (t: VerifyReport['tables'][number]) => ({ table: t.destination, sourceRows: t.sourceRows, destRows: t.destRows, match: t.match });

async function tableOutcomes(report: VerifyReport, tables: VerifyTable[], source: SourceConnector): Promise<TableOutcome[]> {
  return Promise.all(
    report.tables.map(async (t, i) => {
      const name = `${tables[i].source.schema}.${tables[i].source.name}`;
      const published = (await counterValues(source.metrics.registry, 'shardbridge_source_changes_published_total', 'op', { table: name })) as OpCounts;
      const problems: string[] = [];
      if (t.error) problems.push(t.error);
      for (const r of t.differingRanges) {
        const keys = r.sampleKeys.map((k) => `${JSON.stringify(k.key)} ${k.difference}`).join(', ');
        problems.push(`${r.range}: ${r.sourceRows} source rows, ${r.destRows} destination rows${keys ? `; e.g. keys ${keys}` : ''}`);
      }
      return { table: name, sourceRows: t.sourceRows, destRows: t.destRows, match: t.match, published, problems };
    }),
  );
}
