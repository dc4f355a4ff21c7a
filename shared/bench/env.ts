/**
 * The benchmark's environment: the dev stack (source and destination PostgreSQL 15 with the
 * dev stack's settings — fsync off —, real Kafka, the dev registry), its databases, the
 * connector config files, a Kafka admin client, and the waits the phases share (sink applied
 * to the end of the topic, destination = source).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import type { Logger } from '../logger.ts';
import { startDevStack, type DevStack } from '../devstack/stack.ts';
import { createKafka, type Admin } from '../kafka/client.ts';
import { verifyTables, type VerifyTable } from '../verify/index.ts';
import { withClient, type Resources } from '../demo/session.ts';
import { sourceConfigSchema } from '../../source-connector/config.ts';
import { sinkConfigSchema } from '../../sink-connector/config.ts';
import { ConnectorChild } from './children.ts';
import { appliedToEnd, sumOffsets } from './stats.ts';
import { COLUMNS, TABLE } from './workload.ts';

export const PREFIX = 'bench';
export const TOPIC = `${PREFIX}.public.orders`;
export const GROUP_ID = 'shardbridge-bench';
export const SLOT = 'shardbridge_bench';
export const DB = { source: 'bench', ours: 'bench', native: 'bench_native', dump: 'bench_dump' } as const;

export interface BenchEnv {
  stack: DevStack;
  srcUrl: string;
  /** Destination databases: ours (the sink's), the native subscription's, pg_dump's. */
  dst: { ours: string; native: string; dump: string };
  admin: Admin;
  configDir: string;
  sourceConfigFile: string;
  sinkConfigFile: string;
  tombstones: boolean;
}

export async function startEnv(res: Resources, log: Logger): Promise<BenchEnv> {
  const stack = await startDevStack({ logger: log });
  res.add('the dev stack', () => stack.stop());
  await withClient(stack.source.url('postgres'), (c) => c.query(`CREATE DATABASE ${DB.source}`));
  await withClient(stack.destination.url('postgres'), async (c) => {
    for (const db of new Set([DB.ours, DB.native, DB.dump])) await c.query(`CREATE DATABASE ${db}`);
  });
  const kafka = createKafka({ brokers: [stack.kafka.bootstrap], clientId: 'shardbridge-bench' }, log);
  const admin = kafka.admin();
  await admin.connect();
  res.add('the Kafka admin client', () => admin.disconnect());
  const configDir = mkdtempSync(path.join(os.tmpdir(), 'shardbridge-bench-'));
  res.add('the config files', async () => rmSync(configDir, { recursive: true, force: true }));
  const srcUrl = stack.source.url(DB.source);
  const dst = { ours: stack.destination.url(DB.ours), native: stack.destination.url(DB.native), dump: stack.destination.url(DB.dump) };
  const common = { name: 'bench', topicPrefix: PREFIX, kafka: { brokers: [stack.kafka.bootstrap] }, schemaRegistry: { url: stack.registry.url }, metricsPort: 0, logLevel: 'info' };
  // Everything else at its default: the benchmark measures what a user gets.
  const source = sourceConfigSchema.parse({
    ...common,
    source: { url: srcUrl },
    tables: { schemas: ['public'], include: [`${TABLE.schema}.${TABLE.name}`] },
    slotName: SLOT,
    publicationName: SLOT,
  });
  const sink = sinkConfigSchema.parse({ ...common, groupId: GROUP_ID, destination: { url: dst.ours } });
  const sourceConfigFile = path.join(configDir, 'source.json');
  const sinkConfigFile = path.join(configDir, 'sink.json');
  writeFileSync(sourceConfigFile, JSON.stringify(source, null, 2) + '\n');
  writeFileSync(sinkConfigFile, JSON.stringify(sink, null, 2) + '\n');
  return { stack, srcUrl, dst, admin, configDir, sourceConfigFile, sinkConfigFile, tombstones: source.tombstones };
}

/** Spawn a connector, registered so that it is stopped whatever happens. */
export function spawnConnector(res: Resources, env: BenchEnv, command: 'source' | 'sink', o: { cpuProfDir?: string; heapMb?: number; bin?: string } = {}): ConnectorChild {
  const child = new ConnectorChild({ command, configFile: command === 'source' ? env.sourceConfigFile : env.sinkConfigFile, ...o });
  res.add(`the ${command} connector`, async () => void (await child.stop()));
  return child;
}

export const ORDERS_VERIFY: VerifyTable = { source: { ...TABLE }, destination: { ...TABLE }, keyColumns: ['id'], columns: [...COLUMNS], integerKey: true };

/** Destination = source for `orders`: row counts and checksums per key range. */
export async function tablesEqual(srcUrl: string, dstUrl: string): Promise<boolean> {
  const r = await verifyTables({ source: { connectionString: srcUrl }, destination: { connectionString: dstUrl }, tables: [ORDERS_VERIFY], ranges: 4, sampleKeys: 3 });
  return r.match;
}

/** Stored next offsets of the sink for the data topic, by partition. */
async function storedOffsets(db: pg.ClientBase): Promise<Map<number, bigint>> {
  try {
    const { rows } = await db.query('SELECT partition, next_offset FROM shardbridge.sink_offsets WHERE group_id = $1 AND topic = $2', [GROUP_ID, TOPIC]);
    return new Map(rows.map((r) => [Number(r.partition), BigInt(r.next_offset)]));
  } catch (err) {
    if ((err as { code?: string }).code === '42P01') return new Map(); // the sink has not created its tables yet
    throw err;
  }
}

export interface Progress {
  /** When the topic first held `records` records (epoch ms). */
  kafkaAt: number;
  /** When the sink had applied everything (epoch ms); null when only Kafka was watched. */
  appliedAt: number | null;
}

/**
 * Polls until the data topic holds at least `records` records (every 100 ms: a ListOffsets
 * request each time) and, with `sink`, until the sink has applied every partition to its end
 * (and `extra` holds, e.g. the backlog's last row is visible): that is polled every 10 ms, as
 * the native peers are, against the end offsets already read, which are read once more to
 * confirm. Fails as soon as a connector dies.
 */
export async function waitForProgress(
  env: BenchEnv,
  o: { records: number; children: ConnectorChild[]; sink: boolean; deadlineMs: number; signal: AbortSignal; extra?: (db: pg.ClientBase) => Promise<boolean> },
): Promise<Progress> {
  return withClient(env.dst.ours, async (db) => {
    const deadline = Date.now() + o.deadlineMs;
    let kafkaAt: number | null = null;
    let ends: { partition: number; offset: string }[] | null = null;
    const applied = async (e: readonly { partition: number; offset: string }[]) => appliedToEnd(e, await storedOffsets(db)) && (!o.extra || (await o.extra(db)));
    for (;;) {
      if (o.signal.aborted) throw new Error('interrupted');
      for (const c of o.children) {
        const f = c.failure();
        if (f) throw new Error(f);
      }
      // Each time is taken after the check that saw it done: late by at most one poll, never early.
      if (kafkaAt === null) {
        ends = await env.admin.endOffsets(TOPIC).catch(() => null);
        if (ends && sumOffsets(ends) >= o.records) kafkaAt = Date.now();
      }
      if (kafkaAt !== null && !o.sink) return { kafkaAt, appliedAt: null };
      if (kafkaAt !== null && (await applied(ends!))) {
        const at = Date.now();
        const now = await env.admin.endOffsets(TOPIC).catch(() => null);
        if (now && (await applied(now))) return { kafkaAt, appliedAt: at };
        if (now) ends = now; // more than `records` arrived meanwhile: wait for those too
      }
      if (Date.now() > deadline) {
        const have = ends ? sumOffsets(ends) : 0;
        throw new Error(`timed out after ${Math.round(o.deadlineMs / 1000)} s: the topic holds ${have} of ${o.records} records${kafkaAt !== null ? ', the sink has not applied them all' : ''}`);
      }
      await new Promise((r) => setTimeout(r, kafkaAt === null ? 100 : 10));
    }
  });
}

export async function machineInfo(env: BenchEnv): Promise<{ postgres: string; kafka: string }> {
  const postgres = await withClient(env.srcUrl, async (c) => (await c.query(`SELECT current_setting('server_version') AS v`)).rows[0].v as string);
  return { postgres, kafka: env.stack.kafka.version };
}

export function cpuModel(): string {
  return os.cpus()[0]?.model.replace(/\s+/g, ' ').trim() ?? 'unknown';
}
