import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeWireHeader, encodeWire, peekSchemaId, writeWireHeader, WIRE_HEADER_LENGTH } from '../../shared/registry/wire-format.ts';
import { DecodeError } from '../../shared/errors.ts';

test('encodeWire writes magic byte, big-endian id, then the payload', () => {
  const out = encodeWire(0x01020304, Buffer.from([0xaa, 0xbb]));
  assert.deepEqual([...out], [0, 1, 2, 3, 4, 0xaa, 0xbb]);
});

test('encodeWire with an empty payload is just the header', () => {
  const out = encodeWire(7, Buffer.alloc(0));
  assert.deepEqual([...out], [0, 0, 0, 0, 7]);
});

test('round trip: decodeWireHeader finds the id and the payload offset', () => {
  const payload = Buffer.from('hello avro');
  for (const id of [1, 255, 256, 65_536, 0x7fffffff]) {
    const buf = encodeWire(id, payload);
    const h = decodeWireHeader(buf);
    assert.equal(h.schemaId, id);
    assert.equal(h.payloadOffset, WIRE_HEADER_LENGTH);
    assert.deepEqual(buf.subarray(h.payloadOffset), payload);
  }
});

test('the encoded buffer does not alias the payload', () => {
  const payload = Buffer.from([1, 2, 3]);
  const out = encodeWire(9, payload);
  payload[0] = 99;
  assert.equal(out[5], 1);
});

test('writeWireHeader fills the first five bytes of a caller buffer', () => {
  const buf = Buffer.alloc(8, 0xff);
  writeWireHeader(buf, 300);
  assert.deepEqual([...buf], [0, 0, 0, 1, 44, 0xff, 0xff, 0xff]);
});

test('decodeWireHeader rejects a short buffer with DecodeError', () => {
  for (const len of [0, 1, 4]) {
    assert.throws(
      () => decodeWireHeader(Buffer.alloc(len)),
      (err: unknown) => err instanceof DecodeError && err.retriable === false && err.context.length === len,
    );
  }
});

test('decodeWireHeader rejects a wrong magic byte with DecodeError', () => {
  const buf = encodeWire(5, Buffer.from([1]));
  buf[0] = 1;
  assert.throws(
    () => decodeWireHeader(buf),
    (err: unknown) => err instanceof DecodeError && err.context.magicByte === 1 && /magic byte/.test(err.message),
  );
});

test('encodeWire refuses ids that are not Confluent ids', () => {
  for (const id of [-1, 1.5, 0x80000000, Number.NaN]) {
    assert.throws(() => encodeWire(id, Buffer.alloc(0)), RangeError);
  }
});

test('peekSchemaId reads the id of a header anywhere in a buffer, null without one', () => {
  const buf = Buffer.concat([Buffer.from([9, 9]), encodeWire(513, Buffer.from([1, 2]))]);
  assert.equal(peekSchemaId(buf, 2), 513);
  assert.equal(peekSchemaId(buf, 2, 6), null, 'shorter than a header');
  assert.equal(peekSchemaId(buf), null, 'another magic byte');
  assert.equal(peekSchemaId(encodeWire(7, Buffer.alloc(0))), 7);
});
