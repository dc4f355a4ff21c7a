import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CopyTextParser } from '../../source-connector/copy-parser.ts';
import { DecodeError } from '../../shared/errors.ts';
import type { TextTuple } from '../../shared/pg-types.ts';

/** PostgreSQL's CopyAttributeOutText: what the server writes for one value. */
function copyOut(v: string | null | undefined): string {
  if (v === null || v === undefined) return '\\N';
  const map: Record<string, string> = { '\\': '\\\\', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\v': '\\v' };
  let s = '';
  for (const ch of v) s += map[ch] ?? ch;
  return s;
}

function copyText(rows: TextTuple[]): Buffer {
  return Buffer.from(rows.map((r) => r.map(copyOut).join('\t') + '\n').join(''), 'utf8');
}

function parseAll(chunks: Buffer[], columns?: number): TextTuple[] {
  const p = new CopyTextParser(columns);
  const out: TextTuple[] = [];
  for (const c of chunks) out.push(...p.push(c));
  p.end();
  return out;
}

const FIXTURE: TextTuple[] = [
  ['1', 'plain ascii', '2000-01-01 00:00:00.000001+00', null],
  ['2', '', null, ''],
  ['3', 'tab\there', 'new\nline\r\n', 'back\\slash'],
  ['4', '\\N', 'N', '\\'],
  ['5', 'Grüße 東京 🚀 ñ', 'é\\é', '\b\f\v'],
  ['6', '{"a":1,"a":2}', '-0', 'infinity'],
];

test('fixture round trip: what the server writes parses back to the values', () => {
  assert.deepEqual(parseAll([copyText(FIXTURE)]), FIXTURE);
});

test('rows split at every byte boundary (inside UTF-8 sequences and escapes) parse the same', () => {
  const bytes = copyText(FIXTURE);
  const whole = parseAll([bytes]);
  for (let k = 0; k <= bytes.length; k++) {
    assert.deepEqual(parseAll([bytes.subarray(0, k), bytes.subarray(k)]), whole, `split at ${k}`);
  }
});

test('rows split at every pair of boundaries and into single bytes parse the same', () => {
  const bytes = copyText(FIXTURE.slice(2, 5));
  const whole = parseAll([bytes]);
  for (let i = 0; i <= bytes.length; i++) {
    for (let j = i; j <= bytes.length; j++) {
      const got = parseAll([bytes.subarray(0, i), bytes.subarray(i, j), bytes.subarray(j)]);
      assert.deepEqual(got, whole, `split at ${i}, ${j}`);
    }
  }
  const single: Buffer[] = [];
  for (let i = 0; i < bytes.length; i++) single.push(bytes.subarray(i, i + 1));
  assert.deepEqual(parseAll(single), whole);
});

test('push returns exactly the rows completed by that chunk', () => {
  const p = new CopyTextParser();
  assert.deepEqual(p.push(Buffer.from('a\tb')), []);
  assert.deepEqual(p.push(Buffer.from('c\nd\te\nf')), [['a', 'bc'], ['d', 'e']]);
  assert.deepEqual(p.push(Buffer.from('\tg\n')), [['f', 'g']]);
  p.end();
});

test('the partial row is copied: reusing the chunk memory does not corrupt it', () => {
  const p = new CopyTextParser();
  const chunk = Buffer.from('1\tabc');
  assert.deepEqual(p.push(chunk), []);
  chunk.fill(0x7a);
  assert.deepEqual(p.push(Buffer.from('def\n')), [['1', 'abcdef']]);
});

test('NULL is \\N alone; \\\\N is the two-character string \\N; \\N inside a longer field is N', () => {
  const rows = parseAll([Buffer.from('\\N\t\\\\N\tx\\Ny\t\\N\\N\n')]);
  assert.deepEqual(rows, [[null, '\\N', 'xNy', 'NN']]);
});

test('empty strings: empty fields, a one-column empty line, and zero-column rows', () => {
  assert.deepEqual(parseAll([Buffer.from('\t\t\n')]), [['', '', '']]);
  assert.deepEqual(parseAll([Buffer.from('\n\n')]), [[''], ['']]);
  assert.deepEqual(parseAll([Buffer.from('\n\n')], 0), [[], []]);
  assert.deepEqual(parseAll([Buffer.from('\\N\t\t\n')]), [[null, '', '']]);
});

test('escapes: control characters, backslash, other escaped characters stand for themselves', () => {
  const rows = parseAll([Buffer.from('\\b\\f\\n\\r\\t\\v\\\\\t\\a\\.\\"\t\\\ttab\n')]);
  assert.deepEqual(rows, [['\b\f\n\r\t\v\\', 'a."', '\ttab']]);
});

test('octal and hex escapes are bytes, decoded together as UTF-8', () => {
  const rows = parseAll([Buffer.from('\\303\\251\t\\xc3\\xA9\t\\101\\1010\\7\t\\x41\\x4\\xg\\x\t\\400\\0x\n')]);
  assert.deepEqual(rows, [['é', 'é', 'AA0\x07', 'A\x04xgx', '\0\0x']]);
  // a 3-byte character spelled as three octal escapes, split between chunks mid-escape
  const bytes = Buffer.from('\\342\\202\\254\n');
  for (let k = 0; k <= bytes.length; k++) {
    assert.deepEqual(parseAll([bytes.subarray(0, k), bytes.subarray(k)]), [['€']], `split at ${k}`);
  }
});

test('multi-byte characters in fast and slow rows', () => {
  const rows: TextTuple[] = [
    ['ü', '日本語テキスト', '😀😃'],
    ['ü\\', '日本語\tテキスト', '😀\n😃'],
  ];
  assert.deepEqual(parseAll([copyText(rows)]), rows);
});

test('many columns', () => {
  const row: TextTuple = [];
  for (let i = 0; i < 1600; i++) row.push(i % 7 === 0 ? null : i % 5 === 0 ? `v\t${i}` : String(i));
  const bytes = copyText([row, row.map((v) => (v === null ? 'x' : v))]);
  const got = parseAll([bytes.subarray(0, 3000), bytes.subarray(3000)], 1600);
  assert.equal(got.length, 2);
  assert.deepEqual(got[0], row);
  assert.equal(got[1][0], 'x');
  assert.equal(got[1][5], 'v\t5');
});

test('a large value split into many chunks', () => {
  const big = 'αβγ\\'.repeat(50_000);
  const bytes = copyText([['1', big]]);
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += 4093) chunks.push(bytes.subarray(i, i + 4093));
  assert.deepEqual(parseAll(chunks), [['1', big]]);
});

test('the \\. end marker ends the data; rows after it are refused', () => {
  const p = new CopyTextParser();
  assert.deepEqual(p.push(Buffer.from('1\ta\n\\')), [['1', 'a']]);
  assert.equal(p.sawEndMarker, false);
  assert.deepEqual(p.push(Buffer.from('.\n')), []);
  assert.equal(p.sawEndMarker, true);
  p.end();
  assert.throws(() => p.push(Buffer.from('2\tb\n')), DecodeError);
  // '\\.' is data (an escaped backslash and a dot), not the marker
  assert.deepEqual(parseAll([Buffer.from('\\\\.\n')]), [['\\.']]);
});

test('end() throws when a row has no terminating newline', () => {
  const p = new CopyTextParser();
  p.push(Buffer.from('1\tpartial'));
  assert.throws(() => p.end(), (e) => e instanceof DecodeError && /middle of a row/.test(e.message));
  const ok = new CopyTextParser();
  ok.push(Buffer.alloc(0));
  ok.end();
});

test('a row ending in a lone backslash and a wrong field count are DecodeErrors', () => {
  assert.throws(() => parseAll([Buffer.from('a\\\n')]), /lone backslash/);
  assert.throws(() => parseAll([Buffer.from('a\t\\\n')]), /lone backslash/);
  assert.throws(() => parseAll([Buffer.from('a\tb\n')], 3), /2 fields, expected 3/);
  assert.throws(() => parseAll([Buffer.from('a\\\\\tb\n')], 3), /2 fields, expected 3/);
});

test('pushLines hands over each complete row as bytes across chunk splits; decodeRow decodes one as push would', () => {
  const text = 'a\tb\\tc\t\\N\n1\t2\t3\n\\.\n';
  const whole = new CopyTextParser(3).push(Buffer.from(text));
  for (let cut = 0; cut <= text.length; cut++) {
    const parser = new CopyTextParser(3);
    const lines: string[] = [];
    const rows: unknown[] = [];
    const each = (b: Buffer, s: number, e: number, bs: number) => {
      lines.push(b.toString('utf8', s, e));
      const row = parser.decodeRow(b, s, e, bs);
      if (row !== null) rows.push(row);
    };
    parser.pushLines(Buffer.from(text.slice(0, cut)), each);
    parser.pushLines(Buffer.from(text.slice(cut)), each);
    parser.end();
    assert.deepEqual(lines, ['a\tb\\tc\t\\N', '1\t2\t3', '\\.'], `cut at ${cut}`);
    assert.deepEqual(rows, whole);
    assert.equal(parser.sawEndMarker, true);
  }
  assert.throws(() => new CopyTextParser(3).decodeRow(Buffer.from('1\t2'), 0, 3, -1), /2 fields, expected 3/);
});
