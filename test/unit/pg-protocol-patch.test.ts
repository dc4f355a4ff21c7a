/**
 * pg-protocol's parser, as patched (patches/pg-protocol+*.patch): a message spread over many
 * socket reads (a replication message carrying a 60 MB value) is gathered into one buffer of
 * its length, not into buffers doubling from the first read's size.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

test('a large message is gathered into one buffer of its length', (t) => {
  assert.match(readFileSync(require.resolve('pg-protocol/dist/parser.js'), 'utf8'), /shardbridge patch/, 'pg-protocol is patched (npm ci runs patch-package)');
  const { Parser } = require('pg-protocol/dist/parser.js') as { Parser: new () => { parse(b: Buffer, cb: (m: { name: string; chunk?: Buffer }) => void): void } };
  const payload = randomBytes(5_000_000);
  const header = Buffer.alloc(5);
  header[0] = 0x64; // 'd': CopyData
  header.writeUInt32BE(4 + payload.length, 1);
  const next = Buffer.from([0x63, 0, 0, 0, 4]); // 'c': CopyDone
  const wire = Buffer.concat([header, payload, next]);
  const allocUnsafe = Buffer.allocUnsafe;
  let large = 0;
  const spy = t.mock.method(Buffer, 'allocUnsafe', (n: number) => {
    if (n >= 1_000_000) large++;
    return allocUnsafe(n);
  });
  const parser = new Parser();
  const got: { name: string; chunk?: Buffer }[] = [];
  // 64 kB socket reads, each a fresh buffer as net.Socket gives them.
  for (let i = 0; i < wire.length; i += 65_536) parser.parse(Buffer.from(wire.subarray(i, i + 65_536)), (m) => got.push(m.chunk ? { name: m.name, chunk: Buffer.from(m.chunk) } : m));
  spy.mock.restore();
  assert.deepEqual(got.map((m) => m.name), ['copyData', 'copyDone']);
  assert.ok(got[0].chunk!.equals(payload), 'the message bytes');
  assert.equal(large, 1, 'buffers of a megabyte or more');
});

type Parsed = { name: string; chunk?: Buffer };
type PgParser = { buffer: Buffer; parse(b: Buffer, cb: (m: Parsed) => void): void };
const newParser = () => new (require('pg-protocol/dist/parser.js') as { Parser: new () => PgParser }).Parser();
const copyData = (payload: Buffer) => {
  const header = Buffer.alloc(5);
  header[0] = 0x64;
  header.writeUInt32BE(4 + payload.length, 1);
  return Buffer.concat([header, payload]);
};

test('messages cut at every kind of place: read ends inside a length header, exactly at a message end, messages of 64 kB ± 1 and one larger than the doubled buffer', () => {
  const payloads = [1, 0, 65_531, 65_530, 65_532, 2, 131_072, 3_000_000, 7, 65_536 * 3 - 5, 3, 0, 1].map((n, i) => Buffer.alloc(n, i + 1));
  const wire = Buffer.concat(payloads.map(copyData));
  const ends = new Set<number>();
  for (let at = 0, i = 0; i < payloads.length; i++) ends.add((at += 5 + payloads[i].length));
  const cuts: [string, (at: number, i: number) => number][] = [
    ['1 byte', () => 1],
    ['3 bytes', () => 3],
    ['64 kB', () => 65_536],
    ['64 kB - 1', () => 65_535],
    ['64 kB + 5', () => 65_541],
    // each read ends 0..5 bytes into the next message: its length header split
    ['at message ends + k', (at) => { for (const e of ends) if (e > at) return Math.min(e + ((e % 6) as number) - at, 70_000) || 1; return 65_536; }],
    ['varying', (_at, i) => 1 + ((i * 7919) % 90_000)],
  ];
  for (const [name, size] of cuts) {
    const parser = newParser();
    const got: Parsed[] = [];
    for (let at = 0, i = 0; at < wire.length; i++) {
      const n = size(at, i);
      parser.parse(Buffer.from(wire.subarray(at, at + n)), (m) => got.push({ name: m.name, chunk: Buffer.from(m.chunk!) }));
      at += n;
    }
    assert.equal(got.length, payloads.length, `${name}: every message`);
    for (const [i, p] of payloads.entries()) assert.ok(got[i].chunk!.equals(p), `${name}: message ${i} (${p.length} bytes)`);
    assert.equal(parser.buffer.length, 0, `${name}: nothing left over`);
  }
});

test('the buffer grown for a large message is let go at the next reads, though they never end on a message boundary', () => {
  const wire = Buffer.concat([copyData(Buffer.alloc(5_000_000, 1)), ...Array.from({ length: 4000 }, (_, i) => copyData(Buffer.alloc(100 + (i % 37), 2)))]);
  const parser = newParser();
  let messages = 0;
  const held: number[] = [];
  for (let at = 0; at < wire.length; at += 65_536) {
    parser.parse(Buffer.from(wire.subarray(at, at + 65_536)), () => messages++);
    if (at > 5_000_000) held.push(parser.buffer.byteLength);
  }
  assert.equal(messages, 4001);
  // Kept, it is 5 MB held as long as the stream is busy: until a read happens to end where a message does.
  assert.ok(held.slice(2).every((n) => n <= 262_144), `buffer sizes after the large message: ${held.join(', ')}`);
});
