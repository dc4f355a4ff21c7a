/**
 * The replication stream's messages (stream.ts reads them and confirms): each pgoutput message
 * decoded (or, for a plain insert, update or delete, transcoded straight from its bytes), turned
 * into change events per source transaction and handed to the publisher, with the transaction's
 * BEGIN and END records; the changes skip-points.ts leaves out left out, and those that wait for
 * a table's own snapshot's copy held back. Synchronous unless something has to wait: then a
 * promise, which the pump waits for before the next message.
 */
import type { Logger } from '../shared/logger.ts';
import { SourceError } from '../shared/errors.ts';
import { changeToEvents, truncateRecords, type ChangeContext, type DecodedChange, type TruncateFanout } from './envelope.ts';
import type { LsnTracker, TrackedTx } from './lsn-tracker.ts';
import { decodePgoutput, formatLsn, pgTimeToUnixMs, updateLeavesToastOut, type PgoutputMessage } from './pgoutput-decoder.ts';
import type { Publisher } from './publisher.ts';
import { transcoderFor, TupleRef, type TranscodedOp } from './row-transcode.ts';
import type { TableVersion, TableVersions } from './table-versions.ts';
import { transactionBegin, transactionEnd } from './control-topics.ts';
import { SkipFilter, type SkipPoints } from './skip-points.ts';
import { RESNAPSHOT_PREFIX, SessionRestart } from './resnapshot-signal.ts';
import { KeyChangeGaps } from './key-change-gaps.ts';

/** Prefix of our pg_logical_emit_message() heartbeats. */
export const HEARTBEAT_PREFIX = 'shardbridge-heartbeat';

export interface MessageOptions {
  slotName: string;
  versions: TableVersions;
  publisher: Publisher;
  tracker: LsnTracker;
  /** `<prefix>.__transactions`. */
  transactionsTopic: string;
  /** Database name for `source.db`. */
  db: string;
  tombstones: boolean;
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

/** What the messages need of the stream reading them. */
export interface StreamHooks {
  /** The stream is closing: a message that waited is not handled any more. */
  closing(): boolean;
  /** End the stream (a resnapshot's session restart, once its transaction is read). */
  fail(err: unknown): void;
  /** A source transaction was read to its commit. */
  committed(): void;
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

export interface TxState {
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

export class StreamMessages {
  private readonly tuple = new TupleRef();
  /** Row changes read since the stream last counted them (stream.ts brings the metrics up to date). */
  changesRead = 0;
  changesTranscoded = 0;
  /** The transaction being read. */
  tx: TxState | null = null;
  private readonly skip: SkipFilter;
  /** Tables whose changes waited for their own snapshot's copy: said once each. */
  private readonly waitSaid = new Set<string>();
  private readonly keyChangeGaps: KeyChangeGaps;

  constructor(
    private readonly opts: MessageOptions,
    private readonly log: Logger,
    private readonly hooks: StreamHooks,
  ) {
    this.skip = new SkipFilter(opts.skip ?? { tables: new Map(), unselectedBefore: null }, log);
    this.keyChangeGaps = new KeyChangeGaps(log);
  }

  /** A message from the pump, in stream order. */
  take(raw: Buffer): void | Promise<void> {
    if (this.skip.copyPending) {
      const waits = this.waitForCopy(raw);
      if (waits) return waits;
    }
    return this.handleRaw(raw);
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
    return this.skip.copied.then(() => (this.hooks.closing() ? undefined : this.handleRaw(copy)));
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
        this.hooks.committed();
        // Ended after the transaction: its markers are flushed and it is confirmed before the next session reads the markers.
        if (t.restart) this.hooks.fail(new SessionRestart(t.restart, { context: { slot: o.slotName } }));
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
    if (change.kind === 'update') this.keyChangeGaps.note(e.v.table, events);
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
