/**
 * Prometheus metrics: one Registry per connector instance (never prom-client's global one, so
 * that tests and two connectors in one process do not collide) and a tiny HTTP endpoint.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ConfigError } from './errors.ts';

export interface MetricsOptions {
  /** Also collect Node process metrics (CPU, memory, event loop lag, GC). Default false. */
  defaultMetrics?: boolean;
  /** Prefix for every metric name created through the helpers, e.g. `shardbridge_source_`. */
  prefix?: string;
  /** Labels added to every metric of this registry, e.g. `{ connector: 'orders' }`. */
  labels?: Record<string, string>;
}

export interface Metrics {
  registry: Registry;
  /** Get-or-create: asking twice for the same name returns the same metric. */
  counter<L extends string = string>(name: string, help: string, labelNames?: readonly L[]): Counter<L>;
  gauge<L extends string = string>(name: string, help: string, labelNames?: readonly L[]): Gauge<L>;
  histogram<L extends string = string>(name: string, help: string, labelNames?: readonly L[], buckets?: number[]): Histogram<L>;
  /**
   * A gauge read when scraped: for a value that changes with every record (a queue's length),
   * where setting it at each change would be per-row work and setting it now and then leaves it
   * stale while nothing changes it (a stuck send). Asking again for the name replaces `read`.
   */
  sampled(name: string, help: string, read: () => number): Gauge;
}

export function createMetrics(opts: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  if (opts.labels) registry.setDefaultLabels(opts.labels);
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: opts.prefix });
  const prefix = opts.prefix ?? '';

  function getOrCreate<M>(name: string, kind: string, make: (fullName: string) => M): M {
    const fullName = prefix + name;
    const existing = registry.getSingleMetric(fullName);
    if (existing) {
      const existingKind = (existing as unknown as { constructor: { name: string } }).constructor.name;
      if (existingKind !== kind) throw new Error(`metric ${fullName} already registered as a ${existingKind}, not a ${kind}`);
      return existing as unknown as M;
    }
    return make(fullName);
  }

  const readers = new Map<string, () => number>();
  return {
    registry,
    sampled: (name, help, read) => {
      readers.set(prefix + name, read);
      return getOrCreate(name, 'Gauge', (n) =>
        new Gauge({
          name: n,
          help,
          registers: [registry],
          collect() {
            this.set(readers.get(n)!());
          },
        }),
      );
    },
    counter: (name, help, labelNames = []) =>
      getOrCreate(name, 'Counter', (n) => new Counter({ name: n, help, labelNames, registers: [registry] })),
    gauge: (name, help, labelNames = []) =>
      getOrCreate(name, 'Gauge', (n) => new Gauge({ name: n, help, labelNames, registers: [registry] })),
    histogram: (name, help, labelNames = [], buckets) =>
      getOrCreate(name, 'Histogram', (n) => new Histogram({ name: n, help, labelNames, registers: [registry], ...(buckets ? { buckets } : {}) })),
  };
}

export interface MetricsServer {
  /** The bound port (the chosen one when 0 was asked for). */
  port: number;
  close(): Promise<void>;
}

export interface ServeOptions {
  /** Liveness for GET /healthz: false or a thrown error → 503. Default: always healthy. */
  health?: () => boolean | Promise<boolean>;
}

/** Serve GET /metrics (Prometheus text) and GET /healthz on `host:port`; port 0 = any free port. */
export function serveMetrics(registry: Registry, port: number, host = '0.0.0.0', opts: ServeOptions = {}): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    void handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    });
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/metrics') {
      const body = await registry.metrics();
      res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : body);
    } else if (path === '/healthz') {
      const ok = await Promise.resolve(opts.health ? opts.health() : true).catch(() => false);
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'unhealthy\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics or /healthz\n');
    }
  }

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () =>
          new Promise<void>((done, fail) => {
            server.close((err) => (err ? fail(err) : done()));
            // Prometheus keeps connections alive; do not let them hold shutdown up.
            server.closeAllConnections();
          }),
      });
    });
  });
}

/** A metrics port that cannot be served (taken, or privileged): a config error naming the key (exit 2), with its remedy. */
export function metricsPortError(port: number, err: unknown, connector: 'source' | 'sink'): ConfigError {
  return new ConfigError(`config: metricsPort: cannot serve metrics on port ${port}: ${(err as Error).message}`, {
    cause: err,
    context: { key: 'metricsPort' },
    remedy: `choose a free metricsPort (0: any free port), or stop what listens there (another ${connector}?)`,
  });
}
