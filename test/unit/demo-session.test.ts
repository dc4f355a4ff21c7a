/** The demo's Resources: stops newest first, each once, and neither a failing nor a hung stop keeps the rest from running. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { Resources } from '../../shared/demo/session.ts';

function capture() {
  const lines: { msg: string }[] = [];
  const log = pino({ level: 'warn' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { log, messages: () => lines.map((l) => l.msg) };
}

test('stopAll runs every stop newest first, once, past a failing and a hung one', async () => {
  const { log, messages } = capture();
  const res = new Resources(log, 50);
  const ran: string[] = [];
  res.add('the dev stack', async () => void ran.push('stack'));
  res.add('the config files', async () => void ran.push('configs'));
  res.add('the source connector', () => {
    ran.push('source');
    return new Promise<void>(() => {}); // never settles, like a stop waiting for a broker that is gone
  });
  res.add('the sink connector', async () => {
    ran.push('sink');
    throw new Error('boom');
  });
  await Promise.all([res.stopAll(), res.stopAll()]);
  assert.deepEqual(ran, ['sink', 'source', 'configs', 'stack']);
  assert.deepEqual(messages(), ['stopping the sink connector failed', 'stopping the source connector did not finish within 50 ms: going on']);
  // A start that finished after stopAll() began is stopped at once.
  res.add('late', async () => void ran.push('late'));
  await res.stopAll();
  assert.deepEqual(ran.slice(-1), ['late']);
});
