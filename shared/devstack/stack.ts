/**
 * The dev stack: source and destination PostgreSQL clusters, a real Kafka broker and the
 * development schema registry, started together and stopped together. Tests, the demo
 * and the benchmark all use it; production uses real servers (see docker-compose.yml).
 */
import type { Logger } from 'pino';
import { startKafka, type KafkaBroker } from './kafka.ts';
import { startPostgres, type PgCluster } from './postgres.ts';
import { startSchemaRegistry } from './schema-registry-server.ts';

export interface DevStack {
  kafka: KafkaBroker;
  registry: { url: string; port: number; stop(): Promise<void> };
  source: PgCluster;
  destination: PgCluster;
  /** The addresses, as printed by `shardbridge devstack --json`. */
  addresses(): { kafka: string; schemaRegistry: string; source: string; destination: string };
  stop(): Promise<void>;
}

export interface DevStackOptions {
  logger?: Logger;
  /** Which parts to start; all by default. */
  parts?: { kafka?: boolean; registry?: boolean; source?: boolean; destination?: boolean };
  sourceSettings?: Record<string, string>;
  destinationSettings?: Record<string, string>;
  kafkaHeapMb?: number;
}

/** Starts what was asked for in parallel; if any part fails, stops the others before rethrowing. */
export async function startDevStack(opts: DevStackOptions = {}): Promise<DevStack> {
  const want = { kafka: true, registry: true, source: true, destination: true, ...opts.parts };
  const started: { stop(): Promise<void> }[] = [];
  const track = <T extends { stop(): Promise<void> }>(p: Promise<T>): Promise<T> =>
    p.then((v) => {
      started.push(v);
      return v;
    });
  const results = await Promise.allSettled([
    want.kafka ? track(startKafka({ logger: opts.logger, heapMb: opts.kafkaHeapMb })) : Promise.resolve(undefined),
    want.registry ? track(startSchemaRegistry({ logger: opts.logger })) : Promise.resolve(undefined),
    want.source ? track(startPostgres({ name: 'source', settings: opts.sourceSettings, logger: opts.logger })) : Promise.resolve(undefined),
    want.destination
      ? track(startPostgres({ name: 'destination', settings: opts.destinationSettings, logger: opts.logger }))
      : Promise.resolve(undefined),
  ]);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.allSettled(started.map((s) => s.stop()));
    throw failed.reason;
  }
  const [kafka, registry, source, destination] = results.map((r) => (r as PromiseFulfilledResult<any>).value);
  let stopped = false;
  return {
    kafka,
    registry,
    source,
    destination,
    addresses: () => ({
      kafka: kafka?.bootstrap ?? '',
      schemaRegistry: registry?.url ?? '',
      source: source?.url('postgres') ?? '',
      destination: destination?.url('postgres') ?? '',
    }),
    async stop() {
      if (stopped) return;
      stopped = true;
      // The reverse of the data's path (PostgreSQL → Kafka → PostgreSQL): a connector whose stop
      // timed out loses Kafka first and stops moving data, rather than failing on a database.
      await Promise.allSettled([kafka?.stop(), registry?.stop()].filter(Boolean));
      await Promise.allSettled([source?.destroy(), destination?.destroy()].filter(Boolean));
    },
  };
}
