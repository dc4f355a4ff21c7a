import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createMetrics, serveMetrics } from '../../shared/metrics.ts';

test('serves /metrics and /healthz over HTTP from a per-instance registry', async () => {
  const m = createMetrics({ prefix: 'sbtest_', labels: { connector: 'c1' }, defaultMetrics: true });
  const sent = m.counter('records_sent_total', 'Records sent', ['topic']);
  sent.inc({ topic: 't1' }, 3);
  assert.equal(m.counter('records_sent_total', 'Records sent', ['topic']), sent, 'get-or-create returns the same counter');
  assert.throws(() => m.gauge('records_sent_total', 'x'), /already registered as a Counter/);
  m.histogram('batch_seconds', 'Batch time', [], [0.1, 1]).observe(0.5);

  // A second instance is independent (no global registry clash on the same name).
  createMetrics({ prefix: 'sbtest_' }).counter('records_sent_total', 'Records sent').inc();

  let healthy = true;
  const srv = await serveMetrics(m.registry, 0, '127.0.0.1', { health: () => healthy });
  try {
    assert.ok(srv.port > 0);
    const base = `http://127.0.0.1:${srv.port}`;
    const res = await fetch(`${base}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
    const body = await res.text();
    assert.match(body, /# TYPE sbtest_records_sent_total counter/);
    assert.match(body, /sbtest_records_sent_total\{topic="t1",connector="c1"\} 3/);
    assert.match(body, /sbtest_batch_seconds_bucket\{le="1",connector="c1"\} 1/);
    assert.match(body, /sbtest_process_cpu_user_seconds_total/);

    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    healthy = false;
    assert.equal((await fetch(`${base}/healthz`)).status, 503);
    assert.equal((await fetch(`${base}/nope`)).status, 404);
  } finally {
    await srv.close();
  }
  await assert.rejects(fetch(`http://127.0.0.1:${srv.port}/metrics`));
});

test('a taken port is reported, not swallowed', async () => {
  const m = createMetrics();
  const first = await serveMetrics(m.registry, 0, '127.0.0.1');
  try {
    await assert.rejects(serveMetrics(m.registry, first.port, '127.0.0.1'), /EADDRINUSE/);
  } finally {
    await first.close();
  }
});
