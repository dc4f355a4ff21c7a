/**
 * Source-commit-to-destination-visible latency under a steady load. One client writes
 * transactions of inserts, updates and deletes (loadMix) at `rate` changes/s, one every
 * TICK_MS; the last id each transaction inserted is a probe, stamped with the time its
 * COMMIT returned. A second client polls the destination every POLL_MS for the probes not
 * yet seen (`id = ANY(…)`, an index lookup); a probe's latency is the time the poll that
 * first found it was sent, minus its commit time. Both clocks are this process's monotonic
 * clock, so no clock skew enters. A poll finds a row that became visible up to POLL_MS
 * earlier: the figures are high by at most that.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { summarize, type LatencySummary } from './stats.ts';
import { deleteSql, insertSql, loadMix, transactionSql, updateSql } from './workload.ts';

export const TICK_MS = 10;
export const POLL_MS = 10;

export interface LatencyOptions {
  sourceUrl: string;
  destinationUrl: string;
  /** Changes per second. */
  rate: number;
  seconds: number;
  /** Seeded rows (ids 1..rows): updates cycle through ids 10k+3 among them. */
  seededRows: number;
  /** Row number for generated inserts' values (any; ids come from the sequence). */
  firstRowNumber: number;
  /** How long to wait for the last probes after the load stops. */
  drainMs?: number;
  signal?: AbortSignal;
}

export interface LatencyResult {
  targetRate: number;
  achievedRate: number;
  seconds: number;
  changes: number;
  summary: LatencySummary;
  /** Probes never seen at the destination within drainMs. */
  lost: number;
}

export async function measureLatency(o: LatencyOptions): Promise<LatencyResult> {
  const src = new pg.Client({ connectionString: o.sourceUrl, application_name: 'shardbridge-bench-load' });
  const dst = new pg.Client({ connectionString: o.destinationUrl, application_name: 'shardbridge-bench-probe' });
  src.on('error', () => {});
  dst.on('error', () => {});
  await Promise.all([src.connect(), dst.connect()]);
  const pending = new Map<string, number>();
  const latencies: number[] = [];
  let loadDone = false;
  try {
    let pollError: unknown = null;
    const poller = (async () => {
      let drainDeadline = Infinity;
      for (;;) {
        if (o.signal?.aborted) return;
        if (loadDone) {
          if (drainDeadline === Infinity) drainDeadline = performance.now() + (o.drainMs ?? 60_000);
          if (pending.size === 0 || performance.now() > drainDeadline) return;
        }
        if (pending.size > 0) {
          const ids = [...pending.keys()];
          const sentAt = performance.now();
          const { rows } = await dst.query<{ id: string }>('SELECT id FROM public.orders WHERE id = ANY($1::bigint[])', [ids]);
          for (const r of rows) {
            const committedAt = pending.get(r.id);
            if (committedAt === undefined) continue;
            latencies.push(Math.max(0, sentAt - committedAt));
            pending.delete(r.id);
          }
        }
        await sleep(POLL_MS);
      }
    })().catch((err: unknown) => {
      pollError = err;
    });

    const deletable: string[] = [];
    let updateCursor = 0;
    let rowNumber = o.firstRowNumber;
    let sent = 0;
    const t0 = performance.now();
    const endAt = t0 + o.seconds * 1000;
    while (performance.now() < endAt && !o.signal?.aborted && !pollError) {
      const due = Math.floor((o.rate * (performance.now() - t0)) / 1000) - sent;
      // At most a few ticks' worth at once: a stall must not turn into one huge transaction.
      const n = Math.min(due, Math.ceil((o.rate * TICK_MS * 5) / 1000));
      if (n > 0) {
        const mix = loadMix(n);
        const dels = deletable.splice(0, Math.min(mix.deletes, deletable.length));
        const ups: number[] = [];
        for (let i = 0; i < mix.updates + (mix.deletes - dels.length); i++) {
          ups.push(10 * (updateCursor % Math.max(1, Math.floor(o.seededRows / 10))) + 3);
          updateCursor++;
        }
        const statements = [insertSql(rowNumber, rowNumber + mix.inserts - 1, { clockTimestamp: true, returning: true })];
        rowNumber += mix.inserts;
        if (ups.length) statements.push(updateSql(ups));
        if (dels.length) statements.push(deleteSql(dels.map(Number)));
        const results = (await src.query(transactionSql(statements))) as unknown as pg.QueryResult[];
        const committedAt = performance.now();
        const ids = results[1].rows.map((r: { id: string }) => r.id).sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1));
        const probe = ids.pop()!;
        pending.set(probe, committedAt);
        deletable.push(...ids);
        sent += mix.inserts + ups.length + dels.length;
      }
      await sleep(TICK_MS);
    }
    const elapsed = (performance.now() - t0) / 1000;
    loadDone = true;
    await poller;
    if (pollError) throw pollError;
    return { targetRate: o.rate, achievedRate: sent / elapsed, seconds: Math.round(elapsed * 10) / 10, changes: sent, summary: summarize(latencies), lost: pending.size };
  } finally {
    loadDone = true;
    await Promise.allSettled([src.end(), dst.end()]);
  }
}
