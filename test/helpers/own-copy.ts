/**
 * What the own-snapshot tests share (source-own-copy-race, source-copy-guard): connectors
 * stopped before their database's slot is dropped, a copy held through the `beforeOwnCopy`
 * seam, a logger whose lines a test reads, and Kafka compared with a table.
 */
import type { TestContext } from 'node:test';
import { Writable } from 'node:stream';
import pg from 'pg';
import { pino } from 'pino';
import { waitFor } from '../../shared/devstack/ports.ts';
import type { SourceConfig } from '../../source-connector/config.ts';
import { startSourceConnector, type SourceConnector } from '../../source-connector/run.ts';
import { testLogger } from './kafka.ts';
import { RegistryDecoder, assertRowsEqualTable, caughtUp, finalStateInTopicOrder, readDecoded, streaming, testSourceConfig, walLsn, type SourceTestEnv } from './source.ts';

/**
 * A value stored out of line (TOASTed: 12.8 kB of hex compresses to more than the 2 kB
 * threshold): an update leaving it unchanged is a change that waits for the copy.
 */
export const TOASTED = `(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g)`;

export function capturingLogger(): { logger: pino.Logger; lines: () => string[] } {
  const lines: string[] = [];
  const dest = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, dest), lines: () => lines };
}

export interface HeldStart {
  conn: SourceConnector;
  release: () => void;
  /** How many sessions came to the held copy. */
  holds: () => number;
  lines: () => string[];
}

/** `env` is read when used: a test file sets it in its `before` hook. */
export function ownCopyHarness(env: () => SourceTestEnv) {
  /** Connectors of the running test: stopped before its slot is dropped. */
  const running = new Set<SourceConnector>();

  const start = async (config: SourceConfig, logger = testLogger(), opts: Parameters<typeof startSourceConnector>[2] = {}): Promise<SourceConnector> => {
    const conn = await startSourceConnector(config, logger, opts);
    running.add(conn);
    return conn;
  };

  /**
   * A fresh database whose slot is dropped after the test, once its connectors stopped: the
   * cluster's slots are few. Hooks run in the order registered, so this one stops them itself and
   * uses a client of its own (the database's first ends first).
   */
  const freshDatabase = async (t: TestContext): Promise<{ url: string; client: pg.Client; slot: string }> => {
    const db = await env().freshDatabase(t);
    t.after(async () => {
      for (const c of running) await c.stop().catch(() => {});
      running.clear();
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      try {
        await waitFor(`slot ${db.slot} dropped`, () => c.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, [db.slot]).then(() => true, () => false), { timeoutMs: 10_000, intervalMs: 50 });
      } finally {
        await c.end();
      }
    });
    return db;
  };

  /** A start whose own copy waits until `release()` (every session's, while not released). */
  const startHeld = async (t: TestContext, config: SourceConfig): Promise<HeldStart> => {
    let release!: () => void;
    let holds = 0;
    const hold = new Promise<void>((resolve) => (release = resolve));
    const { logger, lines } = capturingLogger();
    const conn = await start(config, logger, { beforeOwnCopy: () => (holds++, hold) });
    t.after(() => conn.stop());
    t.after(() => release());
    await waitFor('the copy held', () => holds > 0, { timeoutMs: 30_000, intervalMs: 50 }).catch((err: unknown) => {
      console.log(lines().slice(-15).map((l) => l.slice(0, 600)).join('\n'));
      throw err;
    });
    return { conn, release, holds: () => holds, lines };
  };

  /** A database streaming `kept` (5 rows), stopped; then `setup` creates what the next start snapshots on its own. */
  const keptThen = async (t: TestContext, setup: string, extra: Record<string, unknown> = {}): Promise<{ url: string; client: pg.Client; config: SourceConfig }> => {
    const { url, client, slot } = await freshDatabase(t);
    await client.query(`CREATE TABLE kept (id int PRIMARY KEY, v text); INSERT INTO kept SELECT g, 'k' FROM generate_series(1, 5) g`);
    const config = testSourceConfig({ sourceUrl: url, kafka: env().bootstrap, registry: env().registryUrl, extra: { slotName: slot, ...extra } });
    const first = await start(config, testLogger());
    await streaming(first);
    await first.stop();
    await client.query(setup);
    return { url, client, config };
  };

  const assertTopicEqualsTable = async (client: pg.Client, config: SourceConfig, table: string): Promise<void> => {
    const records = await readDecoded(env().kafka, new RegistryDecoder(env().registryUrl), `${config.topicPrefix}.public.${table}`);
    await assertRowsEqualTable(client, table, finalStateInTopicOrder(records).values());
  };

  /** The connector streams and catches up, and Kafka then equals each of `tables`. */
  const streamsEqual = async (conn: SourceConnector, client: pg.Client, config: SourceConfig, tables = ['added', 'kept']): Promise<void> => {
    await streaming(conn);
    await caughtUp(conn, await walLsn(client));
    for (const table of tables) await assertTopicEqualsTable(client, config, table);
  };

  return { start, freshDatabase, startHeld, keptThen, assertTopicEqualsTable, streamsEqual };
}
