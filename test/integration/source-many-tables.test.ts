/**
 * The source connector over a database of many tables (150 here; users migrate hundreds to
 * thousands): a snapshot of all of them, a change to each in one transaction, and a restart.
 * What must not grow with the tables: the log at info (no line per table or subject) and the
 * registry requests of a start that finds its schemas registered (one lookup a subject).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startSourceConnector } from '../../source-connector/run.ts';
import { caughtUp, startSourceTestEnv, streaming, testSourceConfig, walLsn, type SourceTestEnv } from '../helpers/source.ts';

const TABLES = 150;
let env: SourceTestEnv;

before(async () => {
  env = await startSourceTestEnv('test-source-many-tables');
});

after(() => env?.close());

/** A proxy in front of the registry that counts the requests through it. */
async function countingProxy(target: string): Promise<{ url: string; requests: string[]; close(): Promise<void> }> {
  const requests: string[] = [];
  const to = new URL(target);
  const server: Server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const up = request({ host: to.hostname, port: to.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function infoLines(): { logger: pino.Logger; lines: () => { msg: string }[] } {
  const lines: { msg: string }[] = [];
  const dest = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, dest), lines: () => lines };
}

test(`${TABLES} tables: snapshot, a change to each, a restart; the log and the registry requests do not grow with the tables`, async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  const ddl = Array.from({ length: TABLES }, (_, i) => {
    const name = `t${String(i).padStart(3, '0')}`;
    const rows = i % 10 === 0 ? 0 : 5 + (i % 20);
    return `CREATE TABLE ${name} (id ${i % 2 ? 'bigint' : 'int'} PRIMARY KEY, note text, at timestamptz DEFAULT now());
            INSERT INTO ${name} (id, note) SELECT g, 'n' || g FROM generate_series(1, ${rows}) g;`;
  });
  await client.query(ddl.join('\n'));
  const proxy = await countingProxy(env.registryUrl);
  t.after(() => proxy.close());
  const config = testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: proxy.url, extra: { slotName: slot, topics: { partitions: 2 } } });

  const first = infoLines();
  const conn = await startSourceConnector(config, first.logger, { serveMetrics: false });
  try {
    await streaming(conn);
    const writes = Array.from({ length: TABLES }, (_, i) => `INSERT INTO t${String(i).padStart(3, '0')} (id, note) VALUES (1000, 'new');`);
    await client.query(`BEGIN; ${writes.join(' ')} COMMIT;`);
    await caughtUp(conn, await walLsn(client));
  } finally {
    await conn.stop();
  }
  const messages = first.lines().map((l) => l.msg);
  assert.ok(messages.length < 30, `${messages.length} lines at info for ${TABLES} tables: ${[...new Set(messages)].join(' | ')}`);

  proxy.requests.length = 0;
  const second = infoLines();
  const again = await startSourceConnector(config, second.logger, { serveMetrics: false });
  try {
    await streaming(again);
  } finally {
    await again.stop();
  }
  assert.ok(proxy.requests.length <= 2 * TABLES + 5, `${proxy.requests.length} registry requests to find the schemas of ${TABLES} tables again`);
  assert.ok(!second.lines().some((l) => /snapshot/.test(l.msg)), 'the restart streams on: every table’s snapshot completed');
});
