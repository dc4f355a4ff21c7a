/**
 * What the source connector waits out at start and what it does not (source-session.ts
 * `unreachable`), and the gate that ends a Kafka client's sockets and retries at its stop
 * (shared/kafka/client.ts `Gate`).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import { test } from 'node:test';
import type { ConnectionOptions } from 'node:tls';
import { SourceError } from '../../shared/errors.ts';
import { Gate } from '../../shared/kafka/gate.ts';
import { unreachable } from '../../source-connector/source-session.ts';

/** kafkajs passes no TLS options for a plain listener. */
const PLAIN = undefined as unknown as ConnectionOptions;

const sqlState = (code: string, message = 'server says no') => Object.assign(new Error(message), { code, severity: 'FATAL' });

test('a source that cannot be reached yet is waited for; a password, role or database that is wrong is not', () => {
  const waited = [
    Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
    Object.assign(new Error('connect ETIMEDOUT'), { code: 'ETIMEDOUT' }),
    Object.assign(new Error('getaddrinfo EAI_AGAIN db'), { code: 'EAI_AGAIN' }),
    new Error('timeout expired'), // pg's connectionTimeoutMillis
    new Error('Connection terminated unexpectedly'), // the server closed it during start-up
    sqlState('57P03', 'the database system is starting up'),
    sqlState('57P01', 'terminating connection due to administrator command'),
    sqlState('08006'),
    sqlState('53300', 'sorry, too many clients already'),
  ];
  for (const err of waited) assert.equal(unreachable(err), true, err.message);
  const refused = [
    sqlState('28P01', 'password authentication failed for user "replicator"'),
    sqlState('28000', 'role "nobody" does not exist'),
    sqlState('3D000', 'database "nope" does not exist'),
    Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }),
    new Error('The server does not support SSL connections'),
    sqlState('XX000', 'timeout expired'), // a server error that only reads like pg's own
    new SourceError('start-up checks failed on the source'),
  ];
  for (const err of refused) assert.equal(unreachable(err), false, err.message);
});

test("a Kafka client's gate: shut, its open sockets are destroyed, a new one fails at once, and the broker list is empty (kafkajs's non-retriable end)", async () => {
  const accepted: Socket[] = [];
  const server = createServer((s) => accepted.push(s.on('error', () => {})));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  try {
    const gate = new Gate([`127.0.0.1:${port}`]);
    assert.deepEqual(gate.brokerList(), [`127.0.0.1:${port}`]);
    const connected = once(server, 'connection');
    const open = gate.socketFactory({ host: '127.0.0.1', port, ssl: PLAIN, onConnect: () => {} }).on('error', () => {});
    await connected;
    // A disconnect that never ends (kafkajs waits for requests a broker never answers) is cut after its grace.
    const started = Date.now();
    const stuck = new Promise<void>((resolve) => open.once('close', () => resolve()));
    await gate.closeAfter(stuck, 200);
    assert.ok(Date.now() - started < 2_000, `closeAfter took ${Date.now() - started} ms`);
    assert.equal(open.destroyed, true);
    assert.deepEqual(gate.brokerList(), []);
    const late = gate.socketFactory({ host: '127.0.0.1', port, ssl: PLAIN, onConnect: () => assert.fail('a socket connected after the gate was shut') });
    const [err] = (await once(late, 'error')) as [Error];
    assert.match(err.message, /closed/);
    // A disconnect that does not end even then is given up: the stop goes on.
    const hung = Date.now();
    await new Gate([]).closeAfter(new Promise<void>(() => {}), 100);
    assert.ok(Date.now() - hung < 2_000, `a hung disconnect held closeAfter ${Date.now() - hung} ms`);
  } finally {
    for (const s of accepted) s.destroy();
    server.close();
  }
});
