/**
 * `shardbridge devstack`: start the dev stack (source and destination PostgreSQL, real
 * Kafka, the development registry), print where they are, and stop everything on
 * Ctrl-C / SIGTERM. `--json` prints one line with the addresses once all are ready.
 */
import type { CommandContext } from '../cli/main.ts';
import { startDevStack } from './stack.ts';

export async function run(opts: { json?: boolean; kafkaHeapMb?: number }, ctx: CommandContext): Promise<number> {
  if (!opts.json) ctx.err('starting the dev stack: PostgreSQL (source, destination), Apache Kafka, schema registry...\n');
  const stack = await startDevStack({ logger: ctx.logger, kafkaHeapMb: opts.kafkaHeapMb });
  const stopped = new Promise<void>((resolve) => {
    ctx.onShutdown(async () => {
      await stack.stop();
      resolve();
    });
  });
  const a = stack.addresses();
  if (opts.json) {
    ctx.out(JSON.stringify(a) + '\n');
  } else {
    ctx.out(
      [
        'dev stack ready (development only: production uses real Kafka, Schema Registry and Citus):',
        `  kafka            ${a.kafka}`,
        `  schema registry  ${a.schemaRegistry}`,
        `  source           ${a.source}`,
        `  destination      ${a.destination}`,
        'Ctrl-C stops everything.',
        '',
      ].join('\n'),
    );
  }
  await stopped;
  return 0;
}
