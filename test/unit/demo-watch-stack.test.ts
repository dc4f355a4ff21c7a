/** The demo's watch of the dev stack's servers, against real listening sockets. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { deadServerMessage, watchServers } from '../../shared/demo/watch-stack.ts';

function listen(): Promise<net.Server> {
  return new Promise((resolve) => {
    const s = net.createServer((c) => c.destroy());
    s.listen(0, '127.0.0.1', () => resolve(s));
  });
}
const portOf = (s: net.Server) => (s.address() as net.AddressInfo).port;

test('a server whose port starts refusing connections is reported once, by name; the live one is not', async () => {
  const [kafka, pg] = await Promise.all([listen(), listen()]);
  const servers = [
    { name: 'Kafka broker', port: portOf(kafka) },
    { name: 'source PostgreSQL', port: portOf(pg) },
  ];
  const reports: string[] = [];
  let reported!: () => void;
  const once = new Promise<void>((resolve) => (reported = resolve));
  const stop = watchServers(servers, (m) => (reports.push(m), reported()), 50);
  try {
    await new Promise<void>((resolve) => pg.close(() => resolve()));
    await once;
    assert.deepEqual(reports, [deadServerMessage(servers[1])]);
    assert.match(reports[0], /^the dev stack's source PostgreSQL \(127\.0\.0\.1:\d+\) died/);
  } finally {
    stop();
    kafka.close();
  }
});
