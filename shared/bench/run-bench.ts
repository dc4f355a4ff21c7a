/**
 * The benchmark's phases, in one run on one dev stack (docs/benchmark.md explains each):
 *   seed → pg_dump peer → native initial sync → ShardBridge snapshot (connectors as child
 *   processes) → connectors and subscription stopped, decode slots created, backlog made →
 *   pg_recvlogical and pg-logical-replication ceilings → native catch-up → ShardBridge
 *   catch-up → the sink alone re-applying the backlog (sink-replay.ts) → latency under
 *   steady load → final verification.
 * `--source-only` keeps the source side: seed, snapshot into Kafka, backlog, ceilings,
 * streaming into Kafka. Phases run one at a time so that they do not compete for the cores.
 */
import os from 'node:os';
import type { Logger } from '../logger.ts';
import { withClient, type Resources } from '../demo/session.ts';
import type { ConnectorChild } from './children.ts';
import { findPid, PhaseMeter, reapedChildrenSeconds, treeSeconds, type CpuMeter } from './cpu.ts';
import { postmasterPid } from '../devstack/pg-process.ts';
import { waitFor } from '../devstack/ports.ts';
import { DB, SLOT, machineInfo, cpuModel, spawnConnector, startEnv, tablesEqual, waitForProgress, type BenchEnv } from './env.ts';
import { measureLatency } from './latency.ts';
import { measureSinkReplay, restorePreBacklog, topicEnds } from './sink-replay.ts';
import { CEILING_PUBLICATION, bareReadPeer, createNativePublication, nativeCatchup, nativeDisable, nativeInitialSync, pgDumpPeer, recvlogicalPeer, waitSlotInactive } from './peers.ts';
import { verificationFailures, type BenchResults } from './report.ts';
import { expectedBacklogRecords, workloadSize } from './stats.ts';
import { BACKLOG_TXN_ROWS, ORDERS_DDL, backlogPlan, insertSql, stepRows, stepSql } from './workload.ts';
import { WARMUP, warmUpBroker } from './warmup.ts';
import { buildCli } from './build.ts';

export interface BenchOptions {
  scale: number;
  sourceOnly: boolean;
  latencySeconds: number;
  /** node --cpu-prof for the connector processes, into this directory. */
  cpuProfDir?: string;
  /** --max-old-space-size of the connector processes (NODE_OPTIONS); 0: node's default. */
  connectorHeapMb: number;
  /** Warm the Kafka broker's JIT before the first timed phase (warmup.ts). */
  warmup: boolean;
  /** Run the connectors from the TypeScript sources through tsx instead of the compiled build (build.ts). */
  fromSources: boolean;
  resources: Resources;
  log: Logger;
  progress(text: string): void;
  signal: AbortSignal;
}

const SEED_CHUNK = 100_000;
const RECV_SLOT = 'bench_recv';
const BARE_SLOT = 'bench_bare';

/** The pids of every connector process started, for finding their CPU profiles. */
export type Spawned = { command: 'source' | 'sink'; pid: number; phase: string }[];

export async function runBench(o: BenchOptions, spawned: Spawned = []): Promise<BenchResults> {
  const started = Date.now();
  const w = workloadSize(o.scale);
  const full = !o.sourceOnly;
  const r: BenchResults = {
    mode: full ? 'full' : 'source-only',
    workload: { ...w, backlogTxnRows: BACKLOG_TXN_ROWS },
    machine: {
      cores: os.cpus().length,
      cpu: cpuModel(),
      memoryGb: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
      node: process.version,
      postgres: '?',
      kafka: '?',
      platform: `${os.platform()} ${os.release()}`,
      loadAverageStart: loadAvg(),
      loadAverageEnd: [],
    },
    startedAt: new Date(started).toISOString(),
    totalMs: 0,
    ours: { sourcePeakRssMb: null, sinkPeakRssMb: null, rssByPhase: {} },
    connectorHeapMb: o.connectorHeapMb,
    connectorRuntime: o.fromSources ? 'sources' : 'compiled',
    warmup: null,
    peers: {},
    finalVerified: null,
    cpu: [],
    failures: [],
  };
  const { progress, resources: res } = o;
  const n = (x: number) => Math.round(x).toLocaleString('en-US');
  const secs = (ms: number | null) => (ms === null ? '-' : `${(ms / 1000).toFixed(2)} s`);
  const check = () => {
    if (o.signal.aborted) throw new Error('interrupted');
  };
  let meters: Record<string, CpuMeter> = {};
  const meter = (phase: string, units: number) => new PhaseMeter(meters, phase, units, r.cpu);
  // Before each timed phase (untimed): both clusters checkpointed, so that no phase pays for
  // writing out the pages an earlier phase (or the restore before the sink replay) dirtied.
  const settle = async (): Promise<void> => {
    for (const url of [env!.srcUrl, env!.dst.ours]) await withClient(url, (c) => c.query('CHECKPOINT'));
  };
  const spawn = (command: 'source' | 'sink', phase: string, m: PhaseMeter): ConnectorChild => {
    const c = spawnConnector(res, env!, command, { cpuProfDir: o.cpuProfDir, heapMb: o.connectorHeapMb, bin });
    spawned.push({ command, pid: c.pid, phase });
    m.watch(`${command} connector`, c.pid);
    return c;
  };
  const stopAll = async (phase: string, children: ConnectorChild[]) => {
    // A phase's processes may be stopped at different times: merge into its entry.
    const rss = (r.ours.rssByPhase[phase] ??= { source: null, sink: null });
    for (const c of children) rss[c.name as 'source' | 'sink'] = c.peakRssMb();
    await Promise.all(children.map((c) => c.stop()));
    const max = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.max(a, b));
    r.ours.sourcePeakRssMb = max(r.ours.sourcePeakRssMb, rss.source);
    r.ours.sinkPeakRssMb = max(r.ours.sinkPeakRssMb, rss.sink);
  };

  let env: BenchEnv | undefined;
  let bin: string | undefined;
  try {
    if (!o.fromSources) {
      progress('building the CLI (npm run build: tsc into dist/), so the connectors run compiled, as the image runs them');
      bin = await buildCli();
    }
    progress('starting the dev stack: source and destination PostgreSQL (fsync off), Apache Kafka, schema registry');
    env = await startEnv(res, o.log);
    Object.assign(r.machine, await machineInfo(env));
    const e = env;
    meters = cpuMeters(e);
    check();

    if (o.warmup) {
      progress(`warming up the Kafka broker's JIT (not timed): ${n(WARMUP.records)} records of ${WARMUP.valueBytes} bytes produced in ${n(WARMUP.batchBytes / 1000)} kB batches and read back once`);
      // Its own CPU accounting, kept out of the phases' table.
      const wm = new PhaseMeter(meters, 'warm-up', WARMUP.records, []);
      const wu = await warmUpBroker({ bootstrap: e.stack.kafka.bootstrap, log: o.log, signal: o.signal });
      const kafkaS = wm.end().seconds.Kafka ?? null;
      r.warmup = { ms: wu.ms, records: wu.records, kafkaCpuS: kafkaS };
      progress(`  warm-up done in ${secs(wu.ms)}; broker CPU ${kafkaS === null ? '?' : `${kafkaS.toFixed(2)} s`}`);
      check();
    }

    progress(`seeding ${n(w.rows)} rows into the source`);
    const seedMeter = meter('seed', w.rows);
    const seedMs = await timed(() =>
      withClient(e.srcUrl, async (c) => {
        await c.query(ORDERS_DDL);
        for (let g = 1; g <= w.rows; g += SEED_CHUNK) await c.query(insertSql(g, Math.min(g + SEED_CHUNK - 1, w.rows)));
        await c.query('VACUUM (FREEZE, ANALYZE) public.orders');
        await c.query('CHECKPOINT');
      }),
    );
    seedMeter.end();
    progress(`  seeded in ${secs(seedMs)}`);

    if (full) {
      check();
      progress('peer: pg_dump -a -t orders | psql into a fresh database');
      await settle();
      const dumpMeter = meter('pg_dump | psql', w.rows);
      const ms = await pgDumpPeer(e.srcUrl, e.dst.dump);
      dumpMeter.end();
      r.peers.pgDump = { ms, count: w.rows };
      progress(`  ${secs(ms)}: ${n(w.rows / (ms / 1000))} rows/s`);

      check();
      progress('peer: native logical replication, initial table sync (CREATE SUBSCRIPTION in a fresh database)');
      await withClient(e.srcUrl, (c) => createNativePublication(c));
      await settle();
      const syncMeter = meter('native sync', w.rows);
      const syncMs = await nativeInitialSync({ host: '127.0.0.1', port: e.stack.source.port, database: DB.source }, e.dst.native, 600_000);
      syncMeter.end();
      r.peers.nativeSync = { ms: syncMs, count: w.rows, verified: await tablesEqual(e.srcUrl, e.dst.native) };
      progress(`  ${secs(syncMs)}: ${n(w.rows / (syncMs / 1000))} rows/s; destination = source: ${r.peers.nativeSync.verified}`);
    }

    check();
    progress(`ShardBridge snapshot: source${full ? ' and sink' : ''} connector processes started`);
    await withClient(e.dst.ours, (c) => c.query(ORDERS_DDL));
    {
      // The sink starts once the source has created the topics: started earlier, it would find
      // none and look again only after its topic refresh period (10 s), which is not throughput.
      await settle();
      const m = meter('ShardBridge snapshot', w.rows);
      const source = spawn('source', 'snapshot', m);
      const children = [source];
      await source.waitForLog('topics created', 120_000);
      if (full) children.push(spawn('sink', 'snapshot', m));
      startupEnds(m, children, 'replication slot created');
      const slotAt = (await source.waitForLog('replication slot created', 120_000)).time;
      const p = await waitForProgress(e, { records: w.rows, children, sink: full, deadlineMs: 900_000, signal: o.signal });
      m.end();
      const end = p.appliedAt ?? p.kafkaAt;
      r.ours.snapshot = { ms: full ? end - slotAt : null, msInclStartup: end - source.spawnedAt, kafkaMs: p.kafkaAt - slotAt, count: w.rows, verified: full ? await tablesEqual(e.srcUrl, e.dst.ours) : null };
      await stopAll('snapshot', children);
      const s = r.ours.snapshot;
      progress(`  into Kafka ${secs(s.kafkaMs)}${full ? `, in the destination ${secs(s.ms)} (${secs(s.msInclStartup)} from process start)` : ''}; destination = source: ${s.verified ?? '-'}`);
    }

    check();
    progress(`backlog with the connectors${full ? ' and the subscription' : ''} stopped: ${n(w.inserts)} inserts, ${n(w.updates)} updates, ${n(w.deletes)} deletes in transactions of ${BACKLOG_TXN_ROWS}`);
    if (full) await nativeDisable(e.srcUrl, e.dst.native);
    await waitSlotInactive(e.srcUrl, SLOT, 60_000);
    const backlog = await withClient(e.srcUrl, async (c) => {
      await c.query(`CREATE PUBLICATION ${CEILING_PUBLICATION} FOR TABLE public.orders`);
      for (const slot of [RECV_SLOT, BARE_SLOT]) await c.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
      let rows = 0;
      const m = meter('backlog', w.changes);
      const ms = await timed(async () => {
        for (const step of backlogPlan(w)) {
          const results = (await c.query(stepSql(step))) as unknown as { rowCount: number | null }[];
          const got = results[1].rowCount ?? 0;
          if (got !== stepRows(step)) throw new Error(`backlog ${step.kind} changed ${got} rows, expected ${stepRows(step)}`);
          rows += got;
        }
      });
      m.end();
      const fence = (await c.query('SELECT max(id)::text AS id FROM public.orders')).rows[0].id as string;
      const endLsn = (await c.query('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0].lsn as string;
      return { rows, ms, fence, endLsn };
    });
    progress(`  made in ${secs(backlog.ms)}; ends at LSN ${backlog.endLsn}`);

    /** A ceiling reader on its own slot, metered until its walsender has exited. */
    const ceiling = async <T>(name: string, slot: string, read: () => Promise<T>): Promise<T> => {
      const m = meter(name, w.changes);
      const result = await read();
      // The walsender's CPU reaches the postmaster's account once it has exited.
      await waitSlotInactive(e!.srcUrl, slot, 30_000);
      m.end();
      return result;
    };
    check();
    progress('ceiling: pg_recvlogical --start --endpos to /dev/null');
    const recvMs = await ceiling('pg_recvlogical', RECV_SLOT, () => recvlogicalPeer(e!.srcUrl, RECV_SLOT, backlog.endLsn));
    r.peers.recvlogical = { ms: recvMs, count: w.changes };
    progress(`  ${secs(recvMs)}: ${n(w.changes / (recvMs / 1000))} changes/s`);
    check();
    progress('ceiling: pg-logical-replication reading pgoutput, decoding and discarding (its own process)');
    const bare = await ceiling('pg-logical-replication read', BARE_SLOT, () => bareReadPeer(e!.srcUrl, BARE_SLOT, w.changes));
    r.peers.bareRead = { ms: bare.ms, count: w.changes, peakRssMb: bare.peakRssMb };
    progress(`  ${secs(bare.ms)}: ${n(w.changes / (bare.ms / 1000))} changes/s, ${bare.peakRssMb?.toFixed(0)} MB peak RSS`);
    await withClient(e.srcUrl, async (c) => {
      for (const slot of [RECV_SLOT, BARE_SLOT]) await c.query('SELECT pg_drop_replication_slot($1)', [slot]);
    });

    if (full) {
      check();
      progress('peer: native logical replication catch-up (ALTER SUBSCRIPTION … ENABLE)');
      await settle();
      const m = meter('native catch-up', w.changes);
      const ms = await nativeCatchup(e.dst.native, backlog.fence, 900_000);
      m.end();
      r.peers.nativeCatchup = { ms, count: w.changes, verified: await tablesEqual(e.srcUrl, e.dst.native) };
      progress(`  ${secs(ms)}: ${n(w.changes / (ms / 1000))} changes/s; destination = source: ${r.peers.nativeCatchup.verified}`);
      await nativeDisable(e.srcUrl, e.dst.native);
    }

    check();
    // Where the backlog starts in the topic: the sink-only replay rewinds to it.
    const backlogFrom = full ? await topicEnds(e) : null;
    progress(`ShardBridge catch-up: source${full ? ' and sink' : ''} connector processes started`);
    await settle();
    const m = meter('ShardBridge catch-up', w.changes);
    const children = [spawn('source', 'catch-up', m), ...(full ? [spawn('sink', 'catch-up', m)] : [])];
    let sinkPhase = 'catch-up';
    try {
      const source = children[0];
      startupEnds(m, children, 'replication stream started');
      const streamAt = (await source.waitForLog('replication stream started', 120_000)).time;
      const p = await waitForProgress(e, {
        records: w.rows + expectedBacklogRecords(w, e.tombstones),
        children,
        sink: full,
        deadlineMs: 900_000,
        signal: o.signal,
        extra: async (db) => (await db.query('SELECT 1 FROM public.orders WHERE id = $1', [backlog.fence])).rowCount === 1,
      });
      m.end();
      const end = p.appliedAt ?? p.kafkaAt;
      r.ours.catchup = { ms: full ? end - streamAt : null, msInclStartup: end - source.spawnedAt, kafkaMs: p.kafkaAt - streamAt, count: w.changes, verified: full ? await tablesEqual(e.srcUrl, e.dst.ours) : null };
      const c = r.ours.catchup;
      progress(`  into Kafka ${secs(c.kafkaMs)}${full ? `, in the destination ${secs(c.ms)} (${secs(c.msInclStartup)} from process start)` : ''}; destination = source: ${c.verified ?? '-'}`);

      if (full) {
        check();
        progress('sink alone: stopped, rewound to the backlog\'s first offsets (destination and group), started again; the source idle');
        await stopAll('catch-up', children.splice(1));
        await restorePreBacklog(e, w.rows);
        await settle();
        const rm = meter('sink replay', w.changes);
        rm.watch('source connector', children[0].pid);
        const replay = await measureSinkReplay({
          env: e,
          from: backlogFrom!,
          changes: w.changes,
          records: w.rows + expectedBacklogRecords(w, e.tombstones),
          spawnSink: () => {
            const s = spawn('sink', 'sink replay', rm);
            children.push(s);
            sinkPhase = 'sink replay + latency';
            startupEnds(rm, [s], '');
            return s;
          },
          others: [children[0]],
          deadlineMs: 900_000,
          signal: o.signal,
        });
        rm.end();
        const sr = (r.ours.sinkReplay = { ...replay.timed, verified: await tablesEqual(e.srcUrl, e.dst.ours) });
        progress(`  ${replay.records} records re-applied in ${secs(sr.ms)} (${secs(sr.msInclStartup)} from process start): ${n(w.changes / (sr.ms! / 1000))} changes/s; destination = source: ${sr.verified}`);

        check();
        progress(`latency: ${n(w.latencyRate)} changes/s for ${o.latencySeconds} s, probes polled at the destination`);
        const lm = meter('latency load', 0);
        for (const c of children) lm.watch(`${c.name} connector`, c.pid);
        const lat = await measureLatency({
          sourceUrl: e.srcUrl,
          destinationUrl: e.dst.ours,
          rate: w.latencyRate,
          seconds: o.latencySeconds,
          seededRows: w.rows,
          firstRowNumber: w.rows + w.inserts + 1,
          signal: o.signal,
        });
        Object.assign(lm.end(), { units: lat.changes });
        r.ours.latency = { targetRate: lat.targetRate, achievedRate: lat.achievedRate, seconds: lat.seconds, summary: lat.summary, lost: lat.lost };
        progress(`  p50 ${lat.summary.p50?.toFixed(1)} ms, p99 ${lat.summary.p99?.toFixed(1)} ms over ${lat.summary.samples} probes at ${n(lat.achievedRate)} changes/s`);
        progress('final check: destination = source after the load');
        await waitFor('the destination to equal the source after the latency load', () => tablesEqual(e.srcUrl, e.dst.ours), { timeoutMs: 120_000, intervalMs: 1_000 }).then(
          () => (r.finalVerified = true),
          () => (r.finalVerified = false),
        );
      }
    } finally {
      await stopAll('catch-up', children.filter((c) => c.name === 'source'));
      await stopAll(sinkPhase, children.filter((c) => c.name === 'sink'));
    }
  } catch (err) {
    r.failures.push(err instanceof Error ? err.message : String(err));
    o.log.debug({ err }, 'benchmark failed');
  }
  r.failures.push(...verificationFailures(r));
  r.machine.loadAverageEnd = loadAvg();
  r.totalMs = Date.now() - started;
  return r;
}

/** Connector CPU counts from the source's `sourceMilestone` and the sink's first group join on: before that it is start-up. */
function startupEnds(m: PhaseMeter, children: ConnectorChild[], sourceMilestone: string): void {
  for (const c of children) {
    void c.waitForLog(c.name === 'source' ? sourceMilestone : 'group joined: reading stored positions', 300_000).then(
      () => m.rebase(`${c.name} connector`),
      () => {},
    );
  }
}

/** The fixed CPU meters: both PostgreSQL clusters, the Kafka broker, the programs we ran, this process. */
function cpuMeters(e: BenchEnv): Record<string, CpuMeter> {
  const src = postmasterPid(e.stack.source.dataDir) ?? -1;
  const dst = postmasterPid(e.stack.destination.dataDir) ?? -1;
  const kafka = findPid(e.stack.kafka.dataDir);
  return {
    'source PG': (s) => treeSeconds(src, s),
    'destination PG': (s) => treeSeconds(dst, s),
    Kafka: (s) => (kafka === null ? null : (s.get(kafka)?.self ?? null)),
    programs: reapedChildrenSeconds,
    bench: (s) => s.get(process.pid)?.self ?? null,
  };
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

function loadAvg(): number[] {
  return os.loadavg().map((x) => Math.round(x * 100) / 100);
}
