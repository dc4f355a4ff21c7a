/**
 * A child logger's bindings must not repeat a key of its parent's: pino writes both, and a
 * last-wins JSON reader keeps the child's. The clients are pointed at a closed local port so
 * that they log (no server involved).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { freePort } from '../../shared/devstack/ports.ts';
import { createKafka } from '../../shared/kafka/client.ts';
import { RegistryClient } from '../../shared/registry/registry-client.ts';

/** The top-level keys of a JSON object text, in order, duplicates kept. */
export function topLevelKeys(json: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (c === '"') {
      let j = i + 1;
      while (json[j] !== '"') j += json[j] === '\\' ? 2 : 1;
      if (depth === 1 && json[j + 1] === ':') keys.push(JSON.parse(json.slice(i, j + 1)) as string);
      i = j;
    } else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
  }
  return keys;
}

function capture() {
  const lines: string[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => lines.push(line.trim()) }).child({ component: 'sink', connector: 'c' });
  return { log, lines };
}

const duplicates = (line: string) => topLevelKeys(line).filter((k, i, all) => all.indexOf(k) !== i);

test('topLevelKeys finds a repeated key, and only at the top level', () => {
  assert.deepEqual(topLevelKeys('{"a":1,"b":{"a":2},"c":"x\\"y","a":3}'), ['a', 'b', 'c', 'a']);
});

test('kafkajs lines under a logger with a component: one component key', async () => {
  const { log, lines } = capture();
  const admin = createKafka({ brokers: [`127.0.0.1:${await freePort()}`], connectionTimeoutMs: 300, retry: { retries: 0 } }, log).admin();
  await admin.listTopics().catch(() => {});
  await admin.disconnect().catch(() => {});
  assert.ok(lines.some((l) => l.includes('"subcomponent":"kafkajs"')), lines.join('\n'));
  for (const line of lines) assert.deepEqual(duplicates(line), [], line);
});

test('registry client lines under a logger with a component: one component key', async () => {
  const { log, lines } = capture();
  // A server that takes any level (the client logs the level it set).
  const server = http.createServer((_req, res) => res.end('{"compatibility":"NONE"}'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const registry = new RegistryClient({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, logger: log, requestTimeoutMs: 1_000 });
  await registry.setCompatibility('s-value', 'NONE');
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assert.ok(lines.some((l) => l.includes('"subcomponent":"schema-registry"')), lines.join('\n'));
  for (const line of lines) assert.deepEqual(duplicates(line), [], line);
});
