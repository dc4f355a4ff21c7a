/**
 * The replication stream: pg-logical-replication with our raw pgoutput plugin (auto-ack off,
 * no ack timer), each message run through a MessagePump into decodePgoutput, turned into
 * change events and handed to the publisher. Each source transaction is tracked by the LsnTracker from Begin
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
import { changeToEvents, truncateRecords, type ChangeContext, type DecodedChange, type TruncateFanout } from './envelope.ts';
import type { LsnTracker, TrackedTx } from './lsn-tracker.ts';
import { decodePgoutput, formatLsn, parseLsn, pgTimeToUnixMs, updateLeavesToastOut, type PgoutputMessage } from './pgoutput-decoder.ts';
import type { Publisher } from './publisher.ts';
import { RawPgoutputPlugin, ackArgument } from './raw-pgoutput-plugin.ts';
import { MessagePump } from './message-pump.ts';
import { transcoderFor, TupleRef, type TranscodedOp } from './row-transcode.ts';
import type { TableVersion, TableVersions } from './table-versions.ts';
import { transactionBegin, transactionEnd } from './control-topics.ts';
import { SkipFilter, type SkipPoints } from './skip-points.ts';
import { RESNAPSHOT_PREFIX, SessionRestart } from './resnapshot-signal.ts';

/** Prefix of our pg_logical_emit_message() heartbeats. */
export const HEARTBEAT_PREFIX = 'shardbridge-heartbeat';

export interface StreamOptions {
  connection: pg.ClientConfig;
  slotName: string;
  publicationName: string;
  versions: TableVersions;
  publisher: Publisher;
  tracker: LsnTracker;
  /** `<prefix>.__transactions`. */
  transactionsTopic: string;
  /** Database name for `source.db`. */
  db: string;
  tombstones: boolean;
  log: Logger;
  metrics?: Metrics;
  /** How often the confirmable position is sent. Default 1000 ms. */
  confirmIntervalMs?: number;
  /** How long stop() / a failure waits for Kafka before closing without a final confirm. Default 10 s. */
  flushTimeoutMs?: number;
  /** Where a table's truncate goes: the truncate key schema's id and the topic's partition count (truncate-fanout.ts). */
  truncateFanout(topic: string): TruncateFanout;
  /** Inserts, updates and deletes by key written straight from the message bytes (row-transcode.ts). Default true. */
  transcode?: boolean;
  /** Changes left out by their commit position (skip-points.ts has why). */
  skip?: SkipPoints;
  /**
   * A `shardbridge resnapshot` message in transaction `tx` (resnapshot-signal.ts): the reason to
   * restart the session once that transaction is read, or null when it asks nothing of this one.
   */
  onResnapshot?(content: Buffer, tx: TrackedTx, commitLsn: bigint): string | null;
}

/** fastChange's answer when the message is not for it. */
const NOT_TAKEN = Symbol('not taken');

interface TableInTx {
  v: TableVersion;
  ctx: ChangeContext;
  count: number;
  /** The `source` block's bytes, written once for the transaction's transcoded records. */
  sourceBytes?: Buffer;
}

interface TxState {
  tx: TrackedTx;
  xid: number;
  finalLsn: bigint;
  commitMs: number;
  tables: Map<number, TableInTx>;
  /** Versions replaced within the transaction: their counts still go into END. */
  retired: TableInTx[];
  /** Truncates so far: numbers each one within the transaction. */
  truncates: number;
  /** Set by a resnapshot message: the session restarts once the transaction is read. */
  restart?: string;
}

export class ReplicationStream {
  private readonly log: Logger;
  private service?: LogicalReplicationService;
  private pump?: MessagePump;
  private readonly tuple = new TupleRef();
  private changesRead = 0;
  private tx: TxState | null = null;
  /** Last position sent to the server. */
  private acked: bigint | null = null;
  private closing = false;
  private failure: Error | null = null;
  private confirmTimer?: NodeJS.Timeout;
  private settle?: { resolve(): void; reject(err: unknown): void };
  private finished?: Promise<void>;
  private ending?: Promise<void>;
  private readonly m?: { transactions: Counter; confirmed: Gauge; changes: Counter; transcoded: Counter };
  private changesTranscoded = 0;
  private readonly skip: SkipFilter;
  /** Tables whose changes waited for their own snapshot's copy: said once each. */
  private readonly waitSaid = new Set<string>();

  constructor(private readonly opts: StreamOptions) {
    this.log = opts.log.child({ component: 'stream', slot: opts.slotName });
    this.skip = new SkipFilter(opts.skip ?? { tables: new Map(), unselectedBefore: null }, this.log);
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
        if (this.skip.copyPending) {
          const waits = this.waitForCopy(raw);
          if (waits) return waits;
        }
        return this.handleRaw(raw);
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
    const t = this.tx;
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
    if (this.changesRead > 0) {
      this.m?.changes.inc(this.changesRead);
      this.changesRead = 0;
    }
    if (this.changesTranscoded > 0) {
      this.m?.transcoded.inc(this.changesTranscoded);
      this.changesTranscoded = 0;
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

  private handleRaw(raw: Buffer): void | Promise<void> {
    const fast = this.fastChange(raw);
    return fast === NOT_TAKEN ? this.handle(decodePgoutput(raw)) : fast;
  }

  /**
   * A message of a table whose own snapshot is still being copied, committed at or past its
   * point. An insert, a delete, or an update carrying its whole new row is sent at once: the
   * publisher notes its key and the copy leaves out that key's older snapshot row
   * (copy-guard.ts). A truncate, an update leaving an unchanged-TOAST column out, or one past the
   * guard's room waits (and with it the stream) until the copy is done, so that it comes after
   * the snapshot's records in the table's topic. Other tables' changes stream meanwhile.
   */
  private waitForCopy(raw: Buffer): Promise<void> | undefined {
    const t = this.tx;
    if (!t || raw.length < 5) return;
    const tag = raw[0];
    const copying = (name: string | undefined) => name !== undefined && this.skip.waitsForCopy(name, t.finalLsn);
    let table: string | undefined;
    let why: string;
    if (tag === 0x49 /* I */ || tag === 0x55 /* U */ || tag === 0x44 /* D */) {
      table = this.opts.versions.nameOf(raw.readUInt32BE(1));
      if (!copying(table)) return;
      if (!this.opts.publisher.guardRoom) why = 'more changed keys than the copy can set apart';
      else if (tag === 0x55 && updateLeavesToastOut(raw)) why = 'an update leaving an unchanged-TOAST column out';
      else return;
    } else if (tag === 0x54 /* T */) {
      const msg = decodePgoutput(raw);
      if (msg.tag !== 'truncate') return;
      table = msg.relids.map((r) => this.opts.versions.nameOf(r)).find(copying);
      why = 'a truncate';
    } else return;
    if (table === undefined) return;
    if (!this.waitSaid.has(table)) {
      this.waitSaid.add(table);
      this.log.info({ table, commitLsn: formatLsn(t.finalLsn) }, `the stream waits for the own snapshot of ${table} to be copied: ${why} of it, and the changes after it, come after the snapshot`);
    }
    const copy = Buffer.from(raw);
    return this.skip.copied.then(() => (this.closing ? undefined : this.handleRaw(copy)));
  }

  /** Synchronous unless it has to wait (then the pump holds the next messages back). */
  private handle(msg: PgoutputMessage): void | Promise<void> {
    const o = this.opts;
    switch (msg.tag) {
      case 'begin': {
        if (this.tx) throw new SourceError('Begin inside a transaction', { context: { xid: msg.xid } });
        const tx = o.tracker.begin(msg.finalLsn);
        if (this.skip.active) this.skip.pass(msg.finalLsn);
        const commitMs = pgTimeToUnixMs(msg.commitTime);
        this.tx = { tx, xid: msg.xid, finalLsn: msg.finalLsn, commitMs, tables: new Map(), retired: [], truncates: 0 };
        const r = transactionBegin(msg.xid, msg.finalLsn, commitMs);
        o.publisher.publishRaw(o.transactionsTopic, r.key, r.value, tx);
        return;
      }
      case 'commit': {
        const t = this.requireTx('Commit');
        const counts = new Map<string, { table: string; topic: string; count: number }>();
        for (const e of [...t.retired, ...t.tables.values()]) {
          const c = counts.get(e.v.qualified);
          if (c) c.count += e.count;
          else counts.set(e.v.qualified, { table: e.v.qualified, topic: e.v.topic, count: e.count });
        }
        const r = transactionEnd(t.xid, t.finalLsn, msg.endLsn, t.commitMs, [...counts.values()]);
        o.publisher.publishRaw(o.transactionsTopic, r.key, r.value, t.tx);
        t.tx.seal(msg.endLsn);
        this.tx = null;
        this.m?.transactions.inc();
        // Ended after the transaction: its markers are flushed and it is confirmed before the next session reads the markers.
        if (t.restart) this.fail(new SessionRestart(t.restart, { context: { slot: o.slotName } }));
        break;
      }
      case 'relation':
        return this.relation(msg);
      case 'insert':
        return this.change(msg.relid, { kind: 'insert', new: msg.new });
      case 'update':
        return this.change(msg.relid, { kind: 'update', key: msg.key, old: msg.old, new: msg.new });
      case 'delete':
        return this.change(msg.relid, { kind: 'delete', key: msg.key, old: msg.old });
      case 'truncate':
        return this.truncates(msg.relids);
      case 'message':
        // Our heartbeat is non-transactional: with nothing pending its position is confirmable.
        if (msg.prefix === HEARTBEAT_PREFIX && !msg.transactional && !this.tx) o.tracker.idleConfirm(msg.lsn);
        else if (msg.prefix === RESNAPSHOT_PREFIX && msg.transactional && this.tx && o.onResnapshot) {
          this.tx.restart = o.onResnapshot(msg.content, this.tx.tx, this.tx.finalLsn) ?? this.tx.restart;
        }
        return;
      case 'type':
      case 'origin':
        return;
      case 'unsupported':
        throw new SourceError(`unsupported pgoutput message '${String.fromCharCode(msg.byte)}'`, { context: { byte: msg.byte } });
    }
    return this.writable();
  }

  /**
   * An insert, an update with its key unchanged or a delete by key, under default replica
   * identity: key and envelope written from the message bytes without decoding the values.
   * NOT_TAKEN for anything else, and whenever the transcoder declines (the general path then
   * produces the same records, or the error).
   */
  private fastChange(raw: Buffer): void | Promise<void> | typeof NOT_TAKEN {
    const t = this.tx;
    if (!t || this.opts.transcode === false || raw.length < 6) return NOT_TAKEN;
    const tag = raw[0];
    let op: TranscodedOp;
    if (tag === 0x49 /* I */ && raw[5] === 0x4e /* N */) op = 'c';
    else if (tag === 0x55 /* U */ && raw[5] === 0x4e /* N: neither K nor O before it */) op = 'u';
    else if (tag === 0x44 /* D */ && raw[5] === 0x4b /* K */) op = 'd';
    else return NOT_TAKEN;
    const relid = raw.readUInt32BE(1);
    const v = this.opts.versions.get(relid);
    const tc = v ? transcoderFor(v.schemas) : null;
    if (!v || !tc || this.tuple.scan(raw, 6) !== raw.length) return NOT_TAKEN;
    const e = this.tableInTx(t, relid);
    if (!e) return;
    const ts = (e.ctx.tsMs = Date.now());
    const tombstone = op === 'd' && this.opts.tombstones;
    e.sourceBytes ??= tc.sourceBytes(e.ctx.source);
    if (!this.opts.publisher.publishTranscoded(v, tc, op, raw, this.tuple, e.sourceBytes, ts, t.tx, tombstone)) return NOT_TAKEN;
    e.count += tombstone ? 2 : 1;
    this.changesRead++;
    this.changesTranscoded++;
    return this.writable();
  }

  private async relation(msg: Extract<PgoutputMessage, { tag: 'relation' }>): Promise<void> {
    const t = this.tx;
    // A selected table's Relation where its own snapshot holds its changes: it keeps the version that snapshot was read with (skip-points.ts).
    if (t && this.skip.ownPending && this.opts.versions.get(msg.relid) && this.skip.heldBySnapshot(this.opts.versions.nameOf(msg.relid)!, t.finalLsn)) return;
    const v = await this.opts.versions.onRelation(msg, t?.finalLsn ?? null);
    const e = this.tx?.tables.get(msg.relid);
    if (v && e && e.v !== v) {
      this.tx!.retired.push(e);
      this.tx!.tables.delete(msg.relid);
    }
  }

  private change(relid: number, change: DecodedChange): void | Promise<void> {
    const t = this.requireTx('a change');
    const e = this.tableInTx(t, relid);
    if (!e) return;
    e.ctx.tsMs = Date.now();
    const events = changeToEvents(change, e.ctx);
    this.opts.publisher.publish(e.v, events, t.tx);
    e.count += events.length;
    this.changesRead++;
    return this.writable();
  }

  private async truncates(relids: readonly number[]): Promise<void> {
    for (const relid of relids) await this.truncate(relid);
  }

  /** One `t` record per partition of the table's topic, so each partition orders it against its own rows. */
  private truncate(relid: number): void | Promise<void> {
    const t = this.requireTx('a truncate');
    const e = this.tableInTx(t, relid);
    if (!e) return;
    e.ctx.tsMs = Date.now();
    // Commit LSN + its number in the transaction: unique per truncate.
    const { value, keys } = truncateRecords(e.ctx, this.opts.truncateFanout(e.v.topic), `${formatLsn(t.finalLsn)}/${t.truncates++}`);
    this.opts.publisher.publishFanout(e.v, value, keys, t.tx);
    e.count += keys.length;
    this.changesRead++;
    return this.writable();
  }

  /** Null: the change is left out (skip-points.ts). */
  private tableInTx(t: TxState, relid: number): TableInTx | null {
    let e = t.tables.get(relid);
    if (!e) {
      const v = this.opts.versions.get(relid);
      // Asked for a selected table only while an own-snapshot point is ahead; for a relation
      // without a version (an error unless left out) always.
      if ((this.skip.ownPending || !v) && this.skip.leavesOut(this.opts.versions.nameOf(relid), v !== undefined, t.finalLsn, t.xid)) return null;
      if (!v) throw this.opts.versions.unknownRelation(relid);
      const source = v.schemas.sourceFor({ db: this.opts.db, tsMs: t.commitMs, txId: t.xid, lsn: t.finalLsn });
      e = { v, ctx: { schemas: v.schemas, source, tsMs: 0, tombstones: this.opts.tombstones }, count: 0 };
      t.tables.set(relid, e);
    }
    return e;
  }

  /** Nothing while Kafka keeps up; else a promise the pump waits for before the next message. */
  private writable(): void | Promise<void> {
    if (!this.opts.publisher.writable) return this.opts.publisher.whenWritable();
  }

  private requireTx(what: string): TxState {
    if (!this.tx) throw new SourceError(`${what} outside a transaction in the replication stream`);
    return this.tx;
  }
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
  if (publication) {
    // pgoutput reads each change through the publication as it was when the change was written:
    // one made again afterwards does not cover what was written while it was gone.
    return new SourceError(
      `publication "${publication[1]}" was dropped while the connector streamed from slot "${slot}": the slot cannot stream the changes written since, even through a publication made again`,
      {
        cause: err,
        context: { slot, publication: publication[1] },
        remedy: "start the connector again: finding the publication gone, it takes every table's snapshot again from a new slot, after a truncate of its topic",
      },
    );
  }
  if (e?.code === '42704') {
    return new SourceError(`replication slot "${slot}" does not exist any more: changes since the last confirmed position are lost`, {
      cause: err,
      context: { slot },
      remedy: 'a new snapshot is needed: see docs/source-connector.md, "Lost slot"',
    });
  }
  if (e?.code === '55000' && /can no longer get changes|invalidated/i.test(message)) {
    return new SourceError(`replication slot "${slot}" was invalidated (wal_status lost): changes were lost`, {
      cause: err,
      context: { slot },
      remedy: 'a new snapshot is needed: see docs/source-connector.md, "Lost slot"',
    });
  }
  if (typeof e?.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) && !isRetriable(err)) {
    return new SourceError(`replication stream failed: ${message}`, { cause: err, context: { slot, sqlstate: e.code } });
  }
  return new RetriableError(`replication connection lost: ${message}`, { cause: err, context: { slot } });
}
