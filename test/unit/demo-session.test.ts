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

test('a stop that comes while its thing is still starting waits for the start, then stops it; a failed start has nothing to stop', async () => {
  const { log } = capture();
  const res = new Resources(log, 5_000);
  const ran: string[] = [];
  let finishStart!: (v: string) => void;
  const starting = res.starting('the dev stack', new Promise<string>((resolve) => (finishStart = resolve)), async (v) => void ran.push(`stop ${v}`));
  res.starting('a failed start', Promise.reject(new Error('initdb failed')), async () => void ran.push('stop failed'));
  const stopping = res.stopAll();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(ran, [], 'nothing to stop before the start has finished');
  finishStart('stack');
  await stopping;
  assert.equal(await starting, 'stack');
  assert.deepEqual(ran, ['stop stack']);
});
