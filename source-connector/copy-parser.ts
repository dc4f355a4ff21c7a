/**
 * Streaming parser for `COPY … TO STDOUT` in TEXT format (the default), as the server writes
 * it: tab between fields, '\n' after each row, `\N` for NULL, backslash escapes for
 * backslash and control characters. Field values are the same text output pgoutput sends.
 *
 * Input is the server's own output: raw LF bytes always end a row (the server escapes data
 * newlines as \n). COPY FROM's input-side `\<LF>` form is never produced, so a row ending
 * in a lone backslash is refused rather than guessed at; `\<TAB>` is a literal tab as in
 * COPY FROM.
 *
 * Chunks may split rows anywhere (inside a UTF-8 sequence, inside an escape): only complete
 * rows are decoded, and neither LF nor TAB bytes occur inside a UTF-8 sequence.
 */
import { DecodeError } from '../shared/errors.ts';
import type { TextTuple } from '../shared/pg-types.ts';

const TAB = 0x09;
const LF = 0x0a;
const BACKSLASH = 0x5c;

export class CopyTextParser {
  /** Copies of the pieces of a row not yet terminated by LF. */
  private pending: Buffer[] = [];
  private pendingLength = 0;
  /** Saw the `\.` end marker: no further rows are allowed. */
  private finished = false;
  /** Unescaped bytes of the current field (slow path only); grows, never shrinks. */
  private scratch = Buffer.allocUnsafe(1024);
  /** Rows parsed so far, for error context. */
  private rowCount = 0;

  /**
   * @param columns when given, every row must have exactly this many fields (a mismatch is a
   *   DecodeError); it also makes an empty line a zero-column row rather than one empty string.
   */
  constructor(private readonly columns?: number) {}

  /** Complete rows ending in this chunk, in order. The chunk is not retained. */
  push(chunk: Buffer): TextTuple[] {
    const rows: TextTuple[] = [];
    this.pushLines(chunk, (b, s, e, bs) => {
      const row = this.decodeRow(b, s, e, bs);
      if (row !== null) rows.push(row);
    });
    return rows;
  }

  /**
   * Each complete row ending in this chunk as its bytes `b[s, e)` (without the LF) and the
   * position of its first backslash (-1: none), in order, for a caller that reads rows
   * without decoding them (row-transcode.ts); it hands rows it does not take to decodeRow.
   * `b` is valid only during the call.
   */
  pushLines(chunk: Buffer, each: (b: Buffer, s: number, e: number, bs: number) => void): void {
    let start = 0;
    let nl = chunk.indexOf(LF);
    if (this.pendingLength > 0) {
      if (nl < 0) {
        this.keep(chunk, 0);
        return;
      }
      this.pending.push(chunk.subarray(0, nl));
      const row = Buffer.concat(this.pending, this.pendingLength + nl);
      this.pending = [];
      this.pendingLength = 0;
      each(row, 0, row.length, row.indexOf(BACKSLASH));
      start = nl + 1;
      nl = chunk.indexOf(LF, start);
    }
    // Next backslash in the chunk, scanned once natively and reused across rows: most rows
    // have none and take the split fast path.
    let bs = chunk.indexOf(BACKSLASH, start);
    while (nl >= 0) {
      if (bs >= 0 && bs < start) bs = chunk.indexOf(BACKSLASH, start);
      each(chunk, start, nl, bs >= 0 && bs < nl ? bs : -1);
      start = nl + 1;
      nl = chunk.indexOf(LF, start);
    }
    if (start < chunk.length) this.keep(chunk, start);
  }

  /** Counts a row read by pushLines' caller without decodeRow (for error positions). */
  counted(): void {
    this.rowCount++;
  }

  /** Call at end of input: throws if a row was left without its terminating newline. */
  end(): void {
    if (this.pendingLength > 0) {
      throw new DecodeError('COPY data ended in the middle of a row', {
        context: { row: this.rowCount + 1, bytes: this.pendingLength },
      });
    }
  }

  /** Whether the `\.` end-of-data marker was seen. */
  get sawEndMarker(): boolean {
    return this.finished;
  }

  private keep(chunk: Buffer, from: number): void {
    // Copy: the caller may reuse the chunk's memory once push() returns.
    const piece = Buffer.from(chunk.subarray(from));
    this.pending.push(piece);
    this.pendingLength += piece.length;
  }

  /**
   * The row at `b[s, e)` as pushLines gave it (`bs`: its first backslash or -1): its values,
   * or null for the end marker. Throws DecodeError.
   */
  decodeRow(b: Buffer, s: number, e: number, bs: number): TextTuple | null {
    if (this.finished) {
      throw new DecodeError('COPY data continues after the \\. end marker', { context: { row: this.rowCount + 1 } });
    }
    let fields: TextTuple;
    if (bs < 0) {
      fields = s === e && this.columns === 0 ? [] : b.toString('utf8', s, e).split('\t');
    } else if (e - s === 2 && bs === s && b[s + 1] === 0x2e /* . */) {
      this.finished = true;
      return null;
    } else {
      fields = this.slowRow(b, s, e);
    }
    this.rowCount++;
    if (this.columns !== undefined && fields.length !== this.columns) {
      throw new DecodeError(`COPY row has ${fields.length} fields, expected ${this.columns}`, {
        context: { row: this.rowCount },
      });
    }
    return fields;
  }

  /** A row with at least one backslash: one pass over its bytes, unescaping only fields that need it. */
  private slowRow(b: Buffer, s: number, e: number): TextTuple {
    const fields: TextTuple = [];
    let f = s;
    let escaped = false;
    for (let i = s; i <= e; i++) {
      const c = i < e ? b[i] : TAB;
      if (c === BACKSLASH) {
        escaped = true;
        // The escaped byte is data, never a separator; a backslash ending the row is left
        // for unescape() to refuse.
        if (i + 1 < e) i++;
      } else if (c === TAB) {
        if (!escaped) fields.push(f === i ? '' : b.toString('utf8', f, i));
        else if (i - f === 2 && b[f] === BACKSLASH && b[f + 1] === 0x4e /* N */) fields.push(null);
        else fields.push(this.unescape(b, f, i));
        f = i + 1;
        escaped = false;
      }
    }
    return fields;
  }

  /** Decodes escapes in bytes [s, e) to bytes, then the bytes as UTF-8 (octal/hex escapes are bytes). */
  private unescape(b: Buffer, s: number, e: number): string {
    if (this.scratch.length < e - s) this.scratch = Buffer.allocUnsafe(Math.max(e - s, this.scratch.length * 2));
    const out = this.scratch;
    let n = 0;
    let i = s;
    while (i < e) {
      const c = b[i++];
      if (c !== BACKSLASH) {
        out[n++] = c;
        continue;
      }
      if (i >= e) {
        throw new DecodeError('COPY field ends in a lone backslash (input not from COPY TO?)', {
          context: { row: this.rowCount + 1 },
        });
      }
      const d = b[i++];
      switch (d) {
        case 0x62 /* b */:
          out[n++] = 0x08;
          break;
        case 0x66 /* f */:
          out[n++] = 0x0c;
          break;
        case 0x6e /* n */:
          out[n++] = 0x0a;
          break;
        case 0x72 /* r */:
          out[n++] = 0x0d;
          break;
        case 0x74 /* t */:
          out[n++] = 0x09;
          break;
        case 0x76 /* v */:
          out[n++] = 0x0b;
          break;
        case 0x78 /* x */: {
          // \xh or \xhh; without a hex digit it is a literal 'x', as in PostgreSQL.
          let v = i < e ? hexValue(b[i]) : -1;
          if (v < 0) {
            out[n++] = d;
            break;
          }
          i++;
          const v2 = i < e ? hexValue(b[i]) : -1;
          if (v2 >= 0) {
            v = (v << 4) | v2;
            i++;
          }
          out[n++] = v;
          break;
        }
        default:
          if (d >= 0x30 && d <= 0x37) {
            // \d, \dd or \ddd octal; the value is taken modulo 256 like PostgreSQL does.
            let v = d - 0x30;
            for (let k = 0; k < 2 && i < e && b[i] >= 0x30 && b[i] <= 0x37; k++) v = (v << 3) | (b[i++] - 0x30);
            out[n++] = v & 0xff;
          } else {
            // \\ and any other escaped character stand for themselves.
            out[n++] = d;
          }
      }
    }
    return out.toString('utf8', 0, n);
  }
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  if (l >= 0x61 && l <= 0x66) return l - 0x61 + 10;
  return -1;
}
