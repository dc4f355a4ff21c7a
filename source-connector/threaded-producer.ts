/**
 * A Producer (shared/kafka/client.ts's interface) whose kafkajs producer lives in a worker
 * thread. kafkajs spends ~10 µs per record encoding produce requests; on the connector's own
 * thread that halves the rate at which the replication stream can be decoded and encoded.
 * Batches cross the thread boundary packed into one transferred ArrayBuffer (no per-record
 * structured clone); semantics are the wrapped producer's: acks=all, idempotent, one batch
 * at a time, retriable failures retried inside, errors come back with their `retriable` flag.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from '../shared/logger.ts';
import type { KafkaSettings, OutMessage, Producer, SentRecord } from '../shared/kafka/client.ts';

export type ThreadRequest =
  | { op: 'connect' | 'disconnect'; id: number }
  | { op: 'send'; id: number; topics: string[]; buffer: ArrayBuffer; count: number }
  | { op: 'abort' };

export type ThreadResponse =
  | { id: number; ok: true; sent?: SentRecord[] }
  | { id: number; ok: false; error: { message: string; name: string; retriable: boolean } };

const HEADER = 10; // u16 topic index, i32 key length (-1: null), i32 value length (-1: null)

/** Pack messages into one buffer: per record its header, then key and value bytes. Pure. */
export function packBatch(messages: OutMessage[]): { topics: string[]; buffer: ArrayBuffer; count: number } {
  const topics: string[] = [];
  const index = new Map<string, number>();
  let size = 0;
  for (const m of messages) size += HEADER + (m.key?.length ?? 0) + (m.value?.length ?? 0);
  const ab = new ArrayBuffer(size);
  const buf = Buffer.from(ab);
  let p = 0;
  for (const m of messages) {
    let t = index.get(m.topic);
    if (t === undefined) {
      t = topics.length;
      index.set(m.topic, t);
      topics.push(m.topic);
    }
    buf.writeUInt16BE(t, p);
    buf.writeInt32BE(m.key ? m.key.length : -1, p + 2);
    buf.writeInt32BE(m.value ? m.value.length : -1, p + 6);
    p += HEADER;
    if (m.key) p += m.key.copy(buf, p);
    if (m.value) p += m.value.copy(buf, p);
  }
  return { topics, buffer: ab, count: messages.length };
}

/** Inverse of packBatch; keys and values are views into `buffer` (no copy). Pure. */
export function unpackBatch(topics: string[], buffer: ArrayBuffer, count: number): OutMessage[] {
  const buf = Buffer.from(buffer);
  const out: OutMessage[] = new Array(count);
  let p = 0;
  for (let i = 0; i < count; i++) {
    const topic = topics[buf.readUInt16BE(p)];
    const kl = buf.readInt32BE(p + 2);
    const vl = buf.readInt32BE(p + 6);
    p += HEADER;
    const key = kl < 0 ? null : buf.subarray(p, p + kl);
    p += Math.max(kl, 0);
    const value = vl < 0 ? null : buf.subarray(p, p + vl);
    p += Math.max(vl, 0);
    out[i] = { topic, key, value };
  }
  return out;
}

class ThreadError extends Error {
  readonly retriable: boolean;
  constructor(e: { message: string; name: string; retriable: boolean }) {
    super(e.message);
    this.name = e.name;
    this.retriable = e.retriable;
  }
}

export class ThreadedProducer implements Producer {
  private worker?: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(r: ThreadResponse): void; reject(err: unknown): void }>();

  constructor(
    private readonly settings: KafkaSettings,
    private readonly log: Logger,
  ) {}

  async connect(): Promise<void> {
    if (!this.worker) this.start();
    await this.call({ op: 'connect', id: this.nextId++ });
  }

  async disconnect(): Promise<void> {
    const w = this.worker;
    if (!w) return;
    try {
      await this.call({ op: 'disconnect', id: this.nextId++ });
    } finally {
      this.worker = undefined;
      await w.terminate();
    }
  }

  async sendBatch(messages: OutMessage[], opts: { signal?: AbortSignal } = {}): Promise<SentRecord[]> {
    if (messages.length === 0) return [];
    if (!this.worker) throw new Error('producer is not connected');
    const { topics, buffer, count } = packBatch(messages);
    const onAbort = () => this.worker?.postMessage({ op: 'abort' } satisfies ThreadRequest);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const r = await this.call({ op: 'send', id: this.nextId++, topics, buffer, count }, [buffer]);
      return (r.ok && r.sent) || [];
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  private start(): void {
    const w = new Worker(new URL('./producer-thread-entry.js', import.meta.url), {
      workerData: { settings: this.settings, level: this.log.level, bindings: { ...this.log.bindings(), component: 'kafkajs' } },
    });
    w.on('message', (r: ThreadResponse) => {
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      if (r.ok) p.resolve(r);
      else p.reject(new ThreadError(r.error));
    });
    const fail = (err: Error) => {
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    w.on('error', (err) => {
      this.log.error({ err }, 'producer thread failed');
      fail(err);
    });
    w.on('exit', (code) => fail(new Error(`producer thread exited (code ${code})`)));
    this.worker = w;
  }

  private call(req: Exclude<ThreadRequest, { op: 'abort' }>, transfer: ArrayBuffer[] = []): Promise<ThreadResponse> {
    const w = this.worker;
    if (!w) return Promise.reject(new Error('producer is not connected'));
    return new Promise<ThreadResponse>((resolve, reject) => {
      this.pending.set(req.id, { resolve, reject });
      w.postMessage(req, transfer);
    });
  }
}
