/**
 * The replication stream: pg-logical-replication with our raw pgoutput plugin (auto-ack off,
 * no ack timer), each message run through a MessagePump into stream-messages.ts, which turns
 * it into change events for the publisher. Each source transaction is tracked by the LsnTracker from Begin
 * to Commit; the position confirmed to the server is only ever `tracker.confirmable()` (every
 * second and on keep-alives), or, with nothing pending, the keep-alive's own position, so an
 * idle database does not pin WAL (../shared/README.md: the library's auto-ack trap).
 *
 * Back-pressure: the handler returns the publisher's `whenWritable()` when Kafka is behind;
 * the pump pauses the replication socket until it resolves. The library's own flowControl
 * does the same with an emitAsync, a queue entry and a copy per message; the pump handles a
 * message synchronously unless something has to wait, which on the hot path is most of the
 * connector's per-change overhead saved.
 */
import type pg from 'pg';
import { LogicalReplicationService } from 'pg-logical-replication';
import type { Counter, Gauge } from 'prom-client';
import type { Logger } from '../shared/logger.ts';
import type { Metrics } from '../shared/metrics.ts';
import { RetriableError, ShardBridgeError, SourceError, isRetriable } from '../shared/errors.ts';
import { sourceSessionOptions } from '../shared/pg-types.ts';
import { formatLsn, parseLsn } from './pgoutput-decoder.ts';
import { RawPgoutputPlugin, ackArgument } from './raw-pgoutput-plugin.ts';
import { MessagePump } from './message-pump.ts';
import { StreamMessages, type MessageOptions } from './stream-messages.ts';
import { LOST_SLOT_REMEDY, lostSlotRemedy } from '../shared/migration/remedies.ts';
import { quoteIdent } from '../shared/sql.ts';

export { HEARTBEAT_PREFIX } from './stream-messages.ts';

export interface StreamOptions extends MessageOptions {
  connection: pg.ClientConfig;
  publicationName: string;
  log: Logger;
  metrics?: Metrics;
  /** How often the confirmable position is sent. Default 1000 ms. */
  confirmIntervalMs?: number;
  /** How long stop() / a failure waits for Kafka before closing without a final confirm. Default 10 s. */
  flushTimeoutMs?: number;
}

export class ReplicationStream {
  private readonly log: Logger;
  private service?: LogicalReplicationService;
  private pump?: MessagePump;
  private readonly messages: StreamMessages;
  /** Last position sent to the server. */
  private acked: bigint | null = null;
  private closing = false;
  private failure: Error | null = null;
  private confirmTimer?: NodeJS.Timeout;
  private settle?: { resolve(): void; reject(err: unknown): void };
  private finished?: Promise<void>;
  private ending?: Promise<void>;
  private readonly m?: { transactions: Counter; confirmed: Gauge; changes: Counter; transcoded: Counter };

  constructor(private readonly opts: StreamOptions) {
    this.log = opts.log.child({ component: 'stream', slot: opts.slotName });
    this.messages = new StreamMessages(opts, this.log, {
      closing: () => this.closing,
      fail: (err) => this.fail(err),
      committed: () => this.m?.transactions.inc(),
    });
    if (opts.metrics) {
      this.m = {
        transactions: opts.metrics.counter('transactions_total', 'Source transactions read from the slot'),
        confirmed: opts.metrics.gauge('confirmed_lsn', 'Last LSN confirmed to the source (as a number)'),
        changes: opts.metrics.counter('changes_read_total', 'Row changes read from the replication stream'),
        transcoded: opts.metrics.counter('changes_transcoded_total', 'Row changes written to Avro straight from the message bytes (transcode); also in changes_read_total'),
      };
    }
  }

  /** Streams until stop() (resolves) or a failure (rejects; retriable ones are marked so). */
  run(): Promise<void> {
    if (this.finished) return this.finished;
    const o = this.opts;
    this.acked = o.tracker.confirmable();
    this.finished = new Promise<void>((resolve, reject) => (this.settle = { resolve, reject }));
    const service = new LogicalReplicationService(
      { ...o.connection, options: sourceSessionOptions(o.connection.options), application_name: 'shardbridge-stream' },
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } },
    );
    this.service = service;
    const socket = () => (service as unknown as { _connection?: { stream?: { pause(): void; resume(): void } } | null })._connection?.stream;
    const pump = new MessagePump({
      handle: (raw) => {
        if (this.closing) return;
        return this.messages.take(raw);
      },
      pause: () => socket()?.pause(),
      resume: () => socket()?.resume(),
      fail: (err) => this.fail(this.located(err)),
    });
    this.pump = pump;
    // Without flowControl the library emits each message synchronously, as pg-protocol parses it.
    service.on('data', (_lsn: string, raw: Buffer) => pump.push(raw));
    service.on('heartbeat', (lsn: string, _ts: number, shouldRespond: boolean) => this.onKeepalive(lsn, shouldRespond));
    service.on('error', (err: Error) => this.fail(err));
    service.on('start', () => this.log.info({ from: this.acked === null ? null : formatLsn(this.acked) }, 'replication stream started'));
    this.confirmTimer = setInterval(() => this.confirm(), o.confirmIntervalMs ?? 1000);
    // '0/0': the server starts at the slot's confirmed_flush_lsn, the last position we confirmed.
    service.subscribe(new RawPgoutputPlugin({ publicationNames: [o.publicationName] }), o.slotName, '0/0').then(
      () => {
        if (!this.closing) this.fail(new RetriableError('the replication stream ended', { context: { slot: o.slotName } }));
      },
      (err: unknown) => this.fail(err),
    );
    return this.finished;
  }

  /** Graceful: stop handling messages, wait until Kafka has what was queued, confirm it, close. */
  stop(): Promise<void> {
    if (!this.finished) return Promise.resolve();
    this.closing = true;
    this.ending ??= this.end(null);
    return this.finished;
  }

  /** The last position confirmed to the server. */
  get confirmed(): bigint | null {
    return this.acked;
  }

  /** End the stream with `err` (also used by the connector, e.g. when the slot monitor finds the slot gone). */
  fail(err: unknown): void {
    if (this.failure || this.ending) return;
    this.failure = classify(err, this.opts.slotName);
    this.closing = true;
    this.ending ??= this.end(this.failure);
  }

  /**
   * A handler's failure, placed in the stream: the transaction it belongs to (xid, commit LSN)
   * and the last position confirmed. An unexpected error stops the connector instead of being
   * taken for a lost connection: the retry would meet the same change again, forever.
   */
  private located(err: unknown): unknown {
    const t = this.messages.tx;
    const at = { xid: t?.xid ?? null, commitLsn: t ? formatLsn(t.finalLsn) : null, confirmedLsn: this.acked === null ? null : formatLsn(this.acked) };
    if (err instanceof ShardBridgeError) {
      for (const [k, v] of Object.entries(at)) if (err.context[k] === undefined) err.context[k] = v;
      return err;
    }
    if (isRetriable(err)) return err;
    return new SourceError(`handling a change of the replication stream failed: ${(err as Error)?.message ?? String(err)}`, {
      cause: err,
      context: { slot: this.opts.slotName, ...at },
      remedy: 'nothing is lost: the slot keeps this transaction, and the connector starts again from it; report the error with its stack (debug log) if it repeats',
    });
  }

  private async end(failure: Error | null): Promise<void> {
    const o = this.opts;
    // Everything before the failing message may still be confirmed (a SchemaError stop
    // thereby lets the next start begin right at the transaction that changed the table).
    const flushed = await o.publisher.flush(o.flushTimeoutMs ?? 10_000);
    if (!flushed) this.log.warn('Kafka did not acknowledge everything before the stream closed: the unconfirmed part will be read again');
    this.confirm();
    clearInterval(this.confirmTimer);
    await this.service?.destroy().catch((err: unknown) => this.log.debug({ err }, 'closing the replication connection failed'));
    this.log.info({ confirmed: this.acked === null ? null : formatLsn(this.acked) }, 'replication stream closed');
    if (failure) this.settle?.reject(failure);
    else this.settle?.resolve();
  }

  private confirm(): void {
    // Counted per row in a plain field; the metric is brought up to date once a second.
    const msgs = this.messages;
    if (msgs.changesRead > 0) {
      this.m?.changes.inc(msgs.changesRead);
      msgs.changesRead = 0;
    }
    if (msgs.changesTranscoded > 0) {
      this.m?.transcoded.inc(msgs.changesTranscoded);
      msgs.changesTranscoded = 0;
    }
    if (!this.service) return;
    const c = this.opts.tracker.confirmable();
    if (c !== null && c > 0n && (this.acked === null || c > this.acked)) this.sendAck(c);
    // The pump waits (a table's own snapshot being copied, Kafka behind) with the socket paused:
    // no keep-alive is read, so none is answered. A status update each interval keeps the server
    // from ending the connection (wal_sender_timeout), and a write to a connection gone fails,
    // so the loss shows at once rather than when the wait ends.
    else if (this.acked !== null && this.pump && !this.pump.idle) this.sendAck(this.acked);
  }

  private sendAck(lsn: bigint): void {
    // Before replication started (or after it stopped) the library drops acknowledgements.
    if (!this.service || this.service.isStop()) return;
    this.acked = lsn;
    void this.service.acknowledge(ackArgument(lsn));
    this.m?.confirmed.set(Number(lsn));
  }

  /** Keep-alive: answer when asked; with nothing pending, the server's position is safe to confirm. */
  private onKeepalive(lsnText: string, shouldRespond: boolean): void {
    const tracker = this.opts.tracker;
    let c = tracker.confirmable();
    if (!this.closing && this.pump?.idle) {
      c = tracker.idleConfirm(parseLsn(lsnText)) ?? c;
    }
    if (c === null || c <= 0n) return;
    if (shouldRespond || this.acked === null || c > this.acked) this.sendAck(c);
  }

}

/** What the next start does without the publication (restart-drift.ts, publicationGone): the remedies of a dropped one end with it. */
export const START_WITHOUT_PUBLICATION = "finding the publication gone, it takes every table's snapshot again from a new slot, after a truncate of its topic";

/**
 * The publication dropped under a streaming connector: PostgreSQL before 18 fails the stream
 * (42704, classify), 18 skips the changes with a warning (the monitor finds it gone).
 * pgoutput reads each change through the publication as it was when the change was written:
 * one made again afterwards does not cover what was written while it was gone.
 */
export function publicationDroppedError(publication: string, slot: string, cause?: unknown): SourceError {
  return new SourceError(
    `publication "${publication}" was dropped while the connector streamed from slot "${slot}": the slot cannot stream the changes written since, even through a publication made again`,
    {
      cause,
      context: { slot, publication },
      remedy: `start the connector again (if the publication was made again by hand meanwhile, DROP PUBLICATION ${quoteIdent(publication)} first): ${START_WITHOUT_PUBLICATION}`,
    },
  );
}

/**
 * Stream failures for the connector's retry loop: connection-level ones are retriable (the
 * stream resumes from the slot); a vanished or invalidated slot is not.
 */
export function classify(err: unknown, slot: string): Error {
  if (err instanceof ShardBridgeError) return err;
  const e = err as { code?: string; message?: string };
  const message = e?.message ?? String(err);
  const publication = e?.code === '42704' ? /publication "((?:[^"]|"")*)" does not exist/.exec(message) : null;
  if (publication) return publicationDroppedError(publication[1].replaceAll('""', '"'), slot, err);
  if (e?.code === '42704') {
    return new SourceError(`replication slot "${slot}" does not exist any more: changes since the last confirmed position are lost`, {
      cause: err,
      context: { slot },
      remedy: LOST_SLOT_REMEDY,
    });
  }
  if (e?.code === '55000' && /can no longer get changes|invalidated/i.test(message)) {
    // The server's DETAIL (17+) says why: "… inactive longer than … idle_replication_slot_timeout".
    const detail = (err as { detail?: string }).detail;
    const idle = /idle_replication_slot_timeout/.test(`${message} ${detail ?? ''}`);
    return new SourceError(`replication slot "${slot}" was invalidated: changes were lost (${detail ?? message})`, {
      cause: err,
      context: { slot },
      remedy: lostSlotRemedy(idle ? 'idle_timeout' : null),
    });
  }
  if (typeof e?.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) && !isRetriable(err)) {
    return new SourceError(`replication stream failed: ${message}`, { cause: err, context: { slot, sqlstate: e.code } });
  }
  return new RetriableError(`replication connection lost: ${message}`, { cause: err, context: { slot } });
}
