/**
 * `shardbridge status [--watch] [--json]`: one screen for a running migration — the source slot,
 * per-table snapshot state, per-partition end offset versus applied offset, stalls with reason
 * and remedy, the last sequence sync and an estimated time to catch up (from two samples of
 * the applied offsets). Reads the slot, the destination's `shardbridge.*` tables, Kafka and,
 * when reachable, the sink's /metrics: neither connector needs to run.
 *
 * Without --watch the first sample is taken, then the full picture `--sample-seconds` later
 * (default 2; 0: no rates). --watch redraws every `--interval` seconds (in place on a
 * terminal; with --json one JSON object per line) until Ctrl-C. Exit 1 when the last screen
 * has a FAIL (unreachable server, lost slot, stalled partition), else 0.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { CommandContext } from '../main.ts';
import { urlOrigin } from '../../redact.ts';
import { SIGNAL_EXIT_CODES, type ShutdownSignal } from '../../shutdown.ts';
import type { Admin } from '../../kafka/client.ts';
import { commandKafka, connectPg, endOffsets, gatherStatusFacts, migrationTopics, partitionFacts, readApplied, readSlot, sinkTablesPresent } from '../../migration/gather.ts';
import { buildStatus, sampleOf, type OffsetSample, type SlotFacts } from '../../migration/status.ts';
import { renderStatus } from '../../migration/status-render.ts';

/**
 * Why `url` cannot be the sink's metrics endpoint, or undefined. It takes no credentials: a URL
 * with them was printed whole in the report (and fetch refuses it anyway). Never quotes past the host.
 */
export function sinkMetricsProblem(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'not a valid URL: expected http://host:port/metrics (percent-encode special characters)';
  }
  const shown = `${urlOrigin(url) ?? 'the URL'}/...`;
  if (!/^https?:$/.test(u.protocol)) return `expected an http:// or https:// URL, got ${shown}`;
  if (u.username !== '' || u.password !== '') return `the sink's metrics endpoint takes no credentials: give ${shown} without the user name and password`;
  return undefined;
}

/** Samples older than this are dropped from the --watch rate window. */
const WINDOW_MS = 30_000;

export async function run(opts: Record<string, unknown>, ctx: CommandContext): Promise<number> {
  const source = ctx.sourceConfig();
  const sink = ctx.sinkConfig();
  const json = Boolean(opts.json);
  const watch = Boolean(opts.watch);
  const all = Boolean(opts.all);
  const intervalMs = 1000 * (typeof opts.interval === 'number' ? opts.interval : 2);
  const sampleMs = 1000 * (typeof opts.sampleSeconds === 'number' ? opts.sampleSeconds : 2);
  const explicitMetrics = typeof opts.sinkMetrics === 'string';
  const badMetrics = explicitMetrics ? sinkMetricsProblem(opts.sinkMetrics as string) : undefined;
  if (badMetrics) {
    ctx.err(`shardbridge status: --sink-metrics: ${badMetrics}\n`);
    return 2;
  }
  const metricsUrl = explicitMetrics ? (opts.sinkMetrics as string) : sink.metricsPort > 0 ? `http://127.0.0.1:${sink.metricsPort}/metrics` : null;
  const log = ctx.logger.child({ component: 'status' });
  const kafka = commandKafka(sink, log, 'shardbridge-status');
  const admin = kafka.admin();

  const abort = new AbortController();
  let stoppedBy: ShutdownSignal | null = null;
  const unregister = ctx.onShutdown((signal) => {
    stoppedBy = signal;
    abort.abort();
  });
  const inputs = { source, sink, admin, kafka, log, sinkMetricsUrl: metricsUrl, sinkMetricsExplicit: explicitMetrics };
  try {
    if (!watch) {
      const first = sampleMs > 0 ? await lightSample(admin, ctx, source.topicPrefix, sink.groupId) : null;
      if (first) first.slot = await slotSample(ctx);
      if (first && sampleMs > 0) await sleep(sampleMs, undefined, { signal: abort.signal }).catch(() => {});
      if (stoppedBy) return SIGNAL_EXIT_CODES[stoppedBy];
      const report = buildStatus(await gatherStatusFacts(inputs), first);
      ctx.out(json ? JSON.stringify(report, null, 2) + '\n' : renderStatus(report, { all }));
      return report.ok ? 0 : 1;
    }
    const window: OffsetSample[] = [];
    const tty = !json && process.stdout.isTTY === true;
    let code = 0;
    while (!abort.signal.aborted) {
      const facts = await gatherStatusFacts(inputs);
      const now = sampleOf(facts.partitions, facts.atMs, facts.source.ok ? facts.slot : undefined);
      while (window.length > 1 && now.atMs - window[0].atMs > WINDOW_MS) window.shift();
      const report = buildStatus(facts, window[0] ?? null);
      if (facts.kafka.ok && facts.destination.ok) window.push(now);
      code = report.ok ? 0 : 1;
      if (abort.signal.aborted) break;
      if (json) ctx.out(JSON.stringify(report) + '\n');
      else ctx.out((tty ? '\x1b[H\x1b[2J' : '') + renderStatus(report, { all }) + `\n(refreshing every ${intervalMs / 1000} s; Ctrl-C to stop)\n`);
      await sleep(intervalMs, undefined, { signal: abort.signal }).catch(() => {});
    }
    return stoppedBy ? SIGNAL_EXIT_CODES[stoppedBy] : code;
  } finally {
    unregister();
    await admin.disconnect().catch(() => {});
  }
}

/** The slot's positions for the first sample; undefined when the source cannot be read. */
async function slotSample(ctx: CommandContext): Promise<SlotFacts | null | undefined> {
  const source = ctx.sourceConfig();
  try {
    const client = await connectPg(source.source, 'source', 'shardbridge-status');
    try {
      return await readSlot(client, source.slotName);
    } finally {
      await client.end().catch(() => {});
    }
  } catch {
    return undefined;
  }
}

/** End and applied offsets of the table topics only: the first of the two samples. Null when unreadable. */
async function lightSample(admin: Admin, ctx: CommandContext, prefix: string, groupId: string): Promise<OffsetSample | null> {
  const sink = ctx.sinkConfig();
  try {
    const atMs = Date.now();
    const topics = await migrationTopics(admin, prefix, sink.deadLetter.topic ?? `${sink.topicPrefix}.__dlq`, []);
    const ends = await endOffsets(admin, topics.tables);
    const client = await connectPg(sink.destination, 'destination', 'shardbridge-status');
    try {
      const applied = (await sinkTablesPresent(client)).offsets ? await readApplied(client, groupId) : new Map<string, number>();
      return sampleOf(partitionFacts(ends, applied, new Set()), atMs);
    } finally {
      await client.end().catch(() => {});
    }
  } catch {
    return null;
  }
}
