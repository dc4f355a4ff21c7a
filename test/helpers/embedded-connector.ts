/**
 * A program that embeds a connector (docs "Programmatic API"), run as a child process:
 * `node --import tsx embedded-connector.ts source|sink CONFIG_FILE`. It starts the connector,
 * stops it when its stdin ends, prints `{"stopMs":N}` once stop() returned, and then does
 * nothing: it never calls process.exit, so the process ends only when nothing of the
 * connector is left running (no timer, socket or retry).
 */
import { createLogger } from '../../shared/logger.ts';
import { loadSinkConfig } from '../../sink-connector/config.ts';
import { startSinkConnector } from '../../sink-connector/connector.ts';
import { loadSourceConfig } from '../../source-connector/config.ts';
import { startSourceConnector } from '../../source-connector/run.ts';

const [kind, file] = process.argv.slice(2);
const logger = createLogger({ level: 'warn', name: `embedded-${kind}` });
const signal = new AbortController();
let stop: () => Promise<void>;
if (kind === 'source') {
  const starting = startSourceConnector(loadSourceConfig({ file, env: {} }), logger, { serveMetrics: false, signal: signal.signal });
  starting.catch(() => {});
  stop = async () => {
    signal.abort(new Error('stopped'));
    await starting.then((c) => c.stop(), () => {});
  };
} else {
  // The sink's start retries its servers until they answer: aborting the signal is its stop then.
  const starting = startSinkConnector(loadSinkConfig({ file, env: {} }), logger, { signal: signal.signal, metricsPort: null });
  starting.catch(() => {});
  stop = async () => {
    signal.abort(new Error('stopped'));
    await starting.then((c) => c.stop(), () => {});
  };
}
process.stdin.resume();
process.stdin.on('end', () => {
  const started = Date.now();
  void stop().then(() => process.stdout.write(`${JSON.stringify({ stopMs: Date.now() - started })}\n`));
});
