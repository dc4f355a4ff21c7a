/**
 * The bare read ceiling, run as its own process by the benchmark:
 *   node --import tsx shared/bench/bare-reader.ts '{"url":…,"slot":…,"publication":…,"changes":N}'
 * `pg-logical-replication` with its own PgoutputPlugin reads the slot, decodes every message
 * and discards it, until `changes` row changes and the commit after them have arrived. Prints
 * one JSON line: {changes, transactions, ms, peakRssMb}. Time starts when the replication
 * connection is asked for (node start-up is not counted).
 */
import { readFileSync } from 'node:fs';
import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';

interface Args {
  url: string;
  slot: string;
  publication: string;
  changes: number;
  timeoutMs?: number;
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args;
const service = new LogicalReplicationService({ connectionString: args.url }, { acknowledge: { auto: false, timeoutSeconds: 0 } });
let changes = 0;
let transactions = 0;
let finished = false;
const t0 = performance.now();

const finish = (error?: string): void => {
  if (finished) return;
  finished = true;
  const ms = performance.now() - t0;
  const status = readFileSync('/proc/self/status', 'utf8');
  const hwm = /^VmHWM:\s+(\d+)\s+kB/m.exec(status);
  process.stdout.write(JSON.stringify({ changes, transactions, ms, peakRssMb: hwm ? Number(hwm[1]) / 1024 : null, error }) + '\n');
  void service.destroy().finally(() => process.exit(error ? 1 : 0));
};

service.on('data', (_lsn: string, msg: Pgoutput.Message) => {
  switch (msg.tag) {
    case 'insert':
    case 'update':
    case 'delete':
      changes++;
      break;
    case 'commit':
      transactions++;
      if (changes >= args.changes) finish();
      break;
  }
});
service.on('heartbeat', (lsn: string, _ts: number, shouldRespond: boolean) => {
  if (shouldRespond) void service.acknowledge(lsn);
});
service.on('error', (err: Error) => finish(err.message));
setTimeout(() => finish(`timed out after ${changes} of ${args.changes} changes`), args.timeoutMs ?? 600_000).unref();
service.subscribe(new PgoutputPlugin({ protoVersion: 1, publicationNames: [args.publication] }), args.slot, '0/0').catch((err: unknown) => finish((err as Error).message));
