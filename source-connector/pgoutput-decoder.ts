/**
 * Decoder for pgoutput protocol version 1 (PostgreSQL's logical replication output plugin).
 * Pure and stateless: bytes in, one typed message out. Column values stay PostgreSQL's own
 * text output (the value contract in docs/architecture.md); no `pg` type parsers run here.
 *
 * Format: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
 * Tuples carry their own column count, so no relation is needed to decode them; callers
 * map positions to columns with the Relation message they cached by relid.
 */
import { DecodeError } from '../shared/errors.ts';
import type { TextTuple } from '../shared/pg-types.ts';

export interface BeginMessage {
  tag: 'begin';
  /** LSN of the commit record (the transaction's "final LSN"). */
  finalLsn: bigint;
  /** Commit time, microseconds since 2000-01-01 00:00:00 UTC (see pgTimeToUnixMs). */
  commitTime: bigint;
  xid: number;
}

export interface CommitMessage {
  tag: 'commit';
  flags: number;
  /** LSN of the commit record; equals the Begin's finalLsn. */
  commitLsn: bigint;
  /** End of the commit record: the position to confirm once the transaction is durable downstream. */
  endLsn: bigint;
  commitTime: bigint;
}

export interface OriginMessage {
  tag: 'origin';
  /** Commit LSN on the origin server. */
  originLsn: bigint;
  name: string;
}

export interface RelationColumn {
  /** Part of the replica identity key (flags & 1). */
  isKey: boolean;
  name: string;
  typeOid: number;
  /** atttypmod, -1 when none. */
  typmod: number;
}

export type ReplicaIdentity = 'default' | 'nothing' | 'full' | 'index';

export interface RelationMessage {
  tag: 'relation';
  relid: number;
  /** Schema name; pgoutput sends '' for pg_catalog, which we spell out. */
  namespace: string;
  name: string;
  replicaIdentity: ReplicaIdentity;
  columns: RelationColumn[];
}

export interface TypeMessage {
  tag: 'type';
  oid: number;
  namespace: string;
  name: string;
}

export interface InsertMessage {
  tag: 'insert';
  relid: number;
  new: TextTuple;
}

/**
 * Exactly one of `key`/`old` is set when the old row is sent: `key` ('K') when the replica
 * identity key changed (full column count, non-key columns null), `old` ('O') for
 * REPLICA IDENTITY FULL. Both undefined when the key did not change.
 */
export interface UpdateMessage {
  tag: 'update';
  relid: number;
  key: TextTuple | undefined;
  old: TextTuple | undefined;
  new: TextTuple;
}

/** `key` for default/index identity (non-key columns null), `old` for REPLICA IDENTITY FULL. */
export interface DeleteMessage {
  tag: 'delete';
  relid: number;
  key: TextTuple | undefined;
  old: TextTuple | undefined;
}

export interface TruncateMessage {
  tag: 'truncate';
  relids: number[];
  cascade: boolean;
  restartIdentity: boolean;
}

/** pg_logical_emit_message() output (needs START_REPLICATION option messages 'true'). */
export interface LogicalMessage {
  tag: 'message';
  transactional: boolean;
  lsn: bigint;
  prefix: string;
  /** A copy of the content bytes: safe to keep after the input buffer is reused. */
  content: Buffer;
}

/**
 * A message this decoder does not handle: protocol v2+ streaming / two-phase messages
 * (S, E, c, A, b, P, K, r, p) or a future tag. A value, not a crash: the caller decides.
 */
export interface UnsupportedMessage {
  tag: 'unsupported';
  /** The message's first byte, e.g. 0x53 for 'S' (Stream Start). */
  byte: number;
}

export type PgoutputMessage =
  | BeginMessage
  | CommitMessage
  | OriginMessage
  | RelationMessage
  | TypeMessage
  | InsertMessage
  | UpdateMessage
  | DeleteMessage
  | TruncateMessage
  | LogicalMessage
  | UnsupportedMessage;

/** Microseconds between 1970-01-01 and PostgreSQL's epoch 2000-01-01. */
export const PG_EPOCH_UNIX_MICROS = 946_684_800_000_000n;

/** A pgoutput timestamp (µs since 2000-01-01) as Unix epoch milliseconds (floored). */
export function pgTimeToUnixMs(pgMicros: bigint): number {
  const us = pgMicros + PG_EPOCH_UNIX_MICROS;
  // Floor division for pre-1970 values too (bigint division truncates towards zero).
  const ms = us / 1000n;
  return Number(us < 0n && ms * 1000n !== us ? ms - 1n : ms);
}

const LSN_LOW_MASK = 0xffff_ffffn;

/** '16/B374D848': upper-case hex of the high and low 32 bits, as PostgreSQL prints pg_lsn. */
export function formatLsn(lsn: bigint): string {
  if (lsn < 0n || lsn > 0xffff_ffff_ffff_ffffn) {
    throw new DecodeError(`LSN out of range: ${lsn}`);
  }
  const hi = Number(lsn >> 32n);
  const lo = Number(lsn & LSN_LOW_MASK);
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`;
}

const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** Inverse of formatLsn; accepts zero-padded halves ('0/0000A0B8') as PostgreSQL does. */
export function parseLsn(text: string): bigint {
  const m = LSN_TEXT.exec(text);
  if (!m) throw new DecodeError(`not an LSN: ${JSON.stringify(text)}`, { context: { lsn: text } });
  return (BigInt(parseInt(m[1], 16)) << 32n) | BigInt(parseInt(m[2], 16));
}

// Cursor shared by the helpers below. decodePgoutput is synchronous and never re-entered,
// so a module-level offset keeps the hot path free of reader objects and tuple returns.
const EMPTY = Buffer.alloc(0);
let buf: Buffer = EMPTY;
let pos = 0;

/** Decode one pgoutput message (the XLogData payload, without the 25-byte 'w' header). */
export function decodePgoutput(message: Buffer): PgoutputMessage {
  if (message.length === 0) throw new DecodeError('empty pgoutput message');
  buf = message;
  pos = 1;
  const tag = message[0];
  try {
    switch (tag) {
      case 0x49 /* I */:
        return decodeInsert();
      case 0x55 /* U */:
        return decodeUpdate();
      case 0x44 /* D */:
        return decodeDelete();
      case 0x42 /* B */:
        return { tag: 'begin', finalLsn: readU64(), commitTime: readI64(), xid: readU32() };
      case 0x43 /* C */:
        return { tag: 'commit', flags: readU8(), commitLsn: readU64(), endLsn: readU64(), commitTime: readI64() };
      case 0x4f /* O */:
        return { tag: 'origin', originLsn: readU64(), name: readCString() };
      case 0x52 /* R */:
        return decodeRelation();
      case 0x59 /* Y */:
        return { tag: 'type', oid: readU32(), namespace: namespaceName(readCString()), name: readCString() };
      case 0x54 /* T */:
        return decodeTruncate();
      case 0x4d /* M */:
        return decodeMessage();
      default:
        return { tag: 'unsupported', byte: tag };
    }
  } catch (err) {
    if (err instanceof DecodeError) throw err;
    // Buffer reads past the end throw RangeError: the message is truncated or corrupt.
    throw new DecodeError(`truncated or corrupt pgoutput message '${String.fromCharCode(tag)}'`, {
      cause: err,
      context: { tag: String.fromCharCode(tag), length: message.length, offset: pos },
    });
  } finally {
    buf = EMPTY; // do not pin the caller's buffer
  }
}

function decodeInsert(): InsertMessage {
  const relid = readU32();
  expectByte(0x4e /* N */, 'insert');
  return { tag: 'insert', relid, new: readTuple() };
}

function decodeUpdate(): UpdateMessage {
  const relid = readU32();
  let key: TextTuple | undefined;
  let old: TextTuple | undefined;
  let kind = readU8();
  if (kind === 0x4b /* K */) {
    key = readTuple();
    kind = readU8();
  } else if (kind === 0x4f /* O */) {
    old = readTuple();
    kind = readU8();
  }
  if (kind !== 0x4e /* N */) throw badSubmessage('update', kind);
  return { tag: 'update', relid, key, old, new: readTuple() };
}

function decodeDelete(): DeleteMessage {
  const relid = readU32();
  const kind = readU8();
  if (kind === 0x4b /* K */) return { tag: 'delete', relid, key: readTuple(), old: undefined };
  if (kind === 0x4f /* O */) return { tag: 'delete', relid, key: undefined, old: readTuple() };
  throw badSubmessage('delete', kind);
}

function decodeRelation(): RelationMessage {
  const relid = readU32();
  const namespace = namespaceName(readCString());
  const name = readCString();
  const ident = readU8();
  const replicaIdentity = REPLICA_IDENTITY[ident];
  if (replicaIdentity === undefined) {
    throw new DecodeError(`unknown replica identity '${String.fromCharCode(ident)}' in Relation message`, {
      context: { relid, table: `${namespace}.${name}` },
    });
  }
  const n = readU16();
  const columns: RelationColumn[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const flags = readU8();
    columns[i] = { isKey: (flags & 1) !== 0, name: readCString(), typeOid: readU32(), typmod: readI32() };
  }
  return { tag: 'relation', relid, namespace, name, replicaIdentity, columns };
}

const REPLICA_IDENTITY: Record<number, ReplicaIdentity> = {
  0x64 /* d */: 'default',
  0x6e /* n */: 'nothing',
  0x66 /* f */: 'full',
  0x69 /* i */: 'index',
};

function decodeTruncate(): TruncateMessage {
  const n = readU32();
  const flags = readU8();
  const relids: number[] = new Array(n);
  for (let i = 0; i < n; i++) relids[i] = readU32();
  return { tag: 'truncate', relids, cascade: (flags & 1) !== 0, restartIdentity: (flags & 2) !== 0 };
}

function decodeMessage(): LogicalMessage {
  const flags = readU8();
  const lsn = readU64();
  const prefix = readCString();
  const len = readU32();
  const end = pos + len;
  if (end > buf.length) throw truncated('message content');
  // Copy: the replication connection may reuse the bytes under a retained view.
  const content = Buffer.from(buf.subarray(pos, end));
  pos = end;
  return { tag: 'message', transactional: (flags & 1) !== 0, lsn, prefix, content };
}

/**
 * Whether an Update message's new tuple leaves an unchanged-TOAST column out ('u'), read from
 * its bytes without decoding the values. A message it cannot read says true: the caller then
 * takes the careful path, and the decoder reports what is wrong.
 */
export function updateLeavesToastOut(raw: Buffer): boolean {
  let p = 5;
  if (raw[p] === 0x4b /* K */ || raw[p] === 0x4f /* O */) {
    p = tupleEnd(raw, p + 1, false);
    if (p < 0) return true;
  }
  return raw[p] !== 0x4e /* N */ || tupleEnd(raw, p + 1, true) < 0;
}

/** The position after the TupleData at `p`: -1 when it runs past the message, or with `stopAtUnchanged` at its first 'u' column. */
function tupleEnd(raw: Buffer, p: number, stopAtUnchanged: boolean): number {
  if (p + 2 > raw.length) return -1;
  const n = raw.readUInt16BE(p);
  p += 2;
  for (let i = 0; i < n; i++) {
    const kind = raw[p++];
    if (kind === 0x74 /* t */ || kind === 0x62 /* b */) {
      if (p + 4 > raw.length) return -1;
      p += 4 + raw.readUInt32BE(p);
    } else if (kind === 0x75 /* u */) {
      if (stopAtUnchanged) return -1;
    } else if (kind !== 0x6e /* n */) return -1;
  }
  return p <= raw.length ? p : -1;
}

/** TupleData: Int16 column count, then per column 'n' | 'u' | 't' Int32 len bytes | 'b' ... */
function readTuple(): TextTuple {
  const b = buf;
  const n = readU16();
  const tuple: TextTuple = new Array(n);
  let p = pos;
  for (let i = 0; i < n; i++) {
    const kind = b[p++];
    if (kind === 0x74 /* t */) {
      const len = b.readUInt32BE(p); // RangeError past the end: reported as truncated
      p += 4;
      const end = p + len;
      if (end > b.length) throw truncated('column value');
      tuple[i] = len === 0 ? '' : b.toString('utf8', p, end);
      p = end;
    } else if (kind === 0x6e /* n */) {
      tuple[i] = null;
    } else if (kind === 0x75 /* u */) {
      tuple[i] = undefined;
    } else if (kind === 0x62 /* b */) {
      throw new DecodeError('pgoutput sent a binary-format column value; ShardBridge only requests text format', {
        context: { column: i },
        remedy: "start replication without the pgoutput option binary 'true'",
      });
    } else if (kind === undefined) {
      throw truncated('tuple data');
    } else {
      throw new DecodeError(`unknown tuple column kind '${String.fromCharCode(kind)}'`, { context: { column: i } });
    }
  }
  pos = p;
  return tuple;
}

function readU8(): number {
  if (pos >= buf.length) throw truncated('byte');
  return buf[pos++];
}

function readU16(): number {
  const v = buf.readUInt16BE(pos);
  pos += 2;
  return v;
}

function readU32(): number {
  const v = buf.readUInt32BE(pos);
  pos += 4;
  return v;
}

function readI32(): number {
  const v = buf.readInt32BE(pos);
  pos += 4;
  return v;
}

function readU64(): bigint {
  const v = buf.readBigUInt64BE(pos);
  pos += 8;
  return v;
}

function readI64(): bigint {
  const v = buf.readBigInt64BE(pos);
  pos += 8;
  return v;
}

function readCString(): string {
  const end = buf.indexOf(0, pos);
  if (end < 0) throw truncated('string');
  const s = buf.toString('utf8', pos, end);
  pos = end + 1;
  return s;
}

function namespaceName(ns: string): string {
  return ns === '' ? 'pg_catalog' : ns;
}

function expectByte(want: number, what: string): void {
  const got = readU8();
  if (got !== want) throw badSubmessage(what, got);
}

function badSubmessage(what: string, got: number): DecodeError {
  return new DecodeError(`unexpected submessage '${String.fromCharCode(got)}' in ${what} message`);
}

function truncated(what: string): DecodeError {
  return new DecodeError(`truncated pgoutput message: ${what} runs past the end`, { context: { offset: pos } });
}
