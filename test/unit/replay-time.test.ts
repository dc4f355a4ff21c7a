import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseReplayTime } from '../../shared/cli/replay-time.ts';

const iso = (v: string) => {
  const d = parseReplayTime(v);
  return typeof d === 'string' ? d : d.toISOString();
};

test('replay --to-time: an ISO-8601 time with its zone, or epoch ms; the zone honoured (pure)', () => {
  assert.equal(iso('2026-12-07T10:00:00Z'), '2026-12-07T10:00:00.000Z');
  assert.equal(iso('2026-12-07T10:00:00+02:00'), '2026-12-07T08:00:00.000Z');
  assert.equal(iso('2026-12-07T10:00:00-0530'), '2026-12-07T15:30:00.000Z');
  assert.equal(iso('2026-12-07 10:00+02'), '2026-12-07T08:00:00.000Z');
  assert.equal(iso('2026-12-07T10:00:00.123456Z'), '2026-12-07T10:00:00.123Z');
  assert.equal(iso('2024-02-29T00:00:00Z'), '2024-02-29T00:00:00.000Z');
  assert.equal(iso('1796637600000'), '2026-12-07T10:00:00.000Z');
});

test("replay --to-time: what JavaScript's Date would take as some other time is refused, saying why (pure)", () => {
  // Without a zone Date takes the machine's local one (a date alone: UTC): a replay from a later time skips changes.
  assert.match(iso('2026-12-07T10:00:00'), /^no time zone .*: add it, e\.g\. 2026-12-07T10:00:00Z \(UTC\) or 2026-12-07T10:00:00\+02:00$/);
  assert.match(iso('2026-12-07 10:00'), /e\.g\. 2026-12-07T10:00Z/);
  assert.match(iso('2026-12-07'), /^a date without a time of day/);
  // Date: 2001-12-07, 2001-01-01, 2026-03-02, July 12, 2001-01-05.
  for (const v of ['Dec 7', 'foo 1', '12/07/2026', '1.5', '-1', '']) assert.match(iso(v), /^expected an ISO-8601 time with its zone/, v);
  for (const v of ['2026-02-30T10:00:00Z', '2025-02-29T10:00:00Z', '2026-13-01T10:00:00Z', '2026-12-07T24:00:00Z', '2026-12-07T10:60:00Z']) assert.match(iso(v), /^no such date or time/, v);
  assert.match(iso('2026-12-07T10:00:00+25:00'), /^no such time zone offset \+25:00/);
  assert.match(iso('99999999999999999999'), /^epoch milliseconds out of range/);
});
