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
