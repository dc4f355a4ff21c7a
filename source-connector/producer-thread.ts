/**
 * Worker-thread side of the threaded producer (threaded-producer.ts): owns the kafkajs
 * producer (through shared/kafka/client.ts), so that kafkajs's per-record encoding runs
 * beside the replication decoding instead of on the same thread. Receives packed batches,
 * answers with the send result or the error (message, name, retriable).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { createKafka, type KafkaSettings, type Producer } from '../shared/kafka/client.ts';
import { unpackBatch, type ThreadRequest, type ThreadResponse } from './threaded-producer.ts';

const data = workerData as { settings: KafkaSettings; level: string; bindings: Record<string, unknown> };
const log = pino({ level: data.level }, pino.destination({ dest: 2, sync: false })).child(data.bindings);
const producer: Producer = createKafka(data.settings, log).producer();
const port = parentPort!;
let abort = new AbortController();

function reply(r: ThreadResponse): void {
  port.postMessage(r);
}

function describe(err: unknown): { message: string; name: string; retriable: boolean } {
  const e = err as { message?: string; name?: string; retriable?: boolean };
  return { message: e?.message ?? String(err), name: e?.name ?? 'Error', retriable: e?.retriable === true };
}

port.on('message', (req: ThreadRequest) => {
  switch (req.op) {
    case 'connect':
      producer.connect().then(() => reply({ id: req.id, ok: true }), (err: unknown) => reply({ id: req.id, ok: false, error: describe(err) }));
      break;
    case 'send':
      producer
        .sendBatch(unpackBatch(req.topics, req.buffer, req.count), { signal: abort.signal })
        .then((sent) => reply({ id: req.id, ok: true, sent }), (err: unknown) => reply({ id: req.id, ok: false, error: describe(err) }));
      break;
    case 'abort':
      abort.abort();
      abort = new AbortController();
      break;
    case 'disconnect':
      producer.disconnect().then(
        () => reply({ id: req.id, ok: true }),
        (err: unknown) => reply({ id: req.id, ok: false, error: describe(err) }),
      );
      break;
  }
});
