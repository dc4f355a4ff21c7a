import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KeyChangeGaps, keyChangeGaps } from '../../source-connector/key-change-gaps.ts';
import type { ChangeEvent, Envelope } from '../../source-connector/envelope.ts';

const env = (op: Envelope['op'], unchanged: string[] = []): Envelope => ({ op, before: null, after: null, unchanged_toast: unchanged, source: {} as Envelope['source'], ts_ms: 0 } as Envelope);
const keyChange = (unchanged: string[]): ChangeEvent[] => [{ key: { id: 1 }, value: env('d') }, { key: { id: 1 }, value: null }, { key: { id: 2 }, value: env('c', unchanged) }];

test('only a key change whose new record lacks TOASTed columns has gaps', () => {
  assert.deepEqual(keyChangeGaps(keyChange(['body'])), ['body']);
  assert.deepEqual(keyChangeGaps(keyChange([])), []);
  assert.deepEqual(keyChangeGaps([{ key: { id: 1 }, value: env('u', ['body']) }]), [], 'an ordinary update keeps the destination value');
  assert.deepEqual(keyChangeGaps([{ key: { id: 1 }, value: env('d') }, { key: { id: 1 }, value: null }]), []);
});

test('the warning: once per table, then at most once a minute with the count and columns since, naming REPLICA IDENTITY FULL and resnapshot', () => {
  const lines: { obj: Record<string, unknown>; msg: string }[] = [];
  const log = { warn: (obj: Record<string, unknown>, msg: string) => lines.push({ obj, msg }) } as never;
  let now = 1_000;
  const g = new KeyChangeGaps(log, () => now);
  const docs = { schema: 'public', name: 'docs' };
  g.note(docs, keyChange(['body']));
  g.note(docs, keyChange(['extra']));
  g.note(docs, keyChange([]));
  g.note({ schema: 'public', name: 'other' }, keyChange(['blob']));
  assert.deepEqual(lines.map((l) => l.msg.split(':')[0]), ['a primary-key change of public.docs left TOASTed column(s) body unchanged', 'a primary-key change of public.other left TOASTed column(s) blob unchanged']);
  assert.match(lines[0].msg, /they are NULL at the destination$/);
  assert.equal(lines[0].obj.remedy, 'ALTER TABLE "public"."docs" REPLICA IDENTITY FULL on the source (the old row then supplies them), then take the table\'s snapshot again to repair the rows moved so far: shardbridge resnapshot --source-config source.yaml --table public.docs');
  now += 60_000;
  g.note(docs, keyChange(['body']));
  assert.equal(lines.length, 3);
  assert.match(lines[2].msg, /^2 primary-key changes of public\.docs left TOASTed column\(s\) extra, body unchanged/);
});

test("the remedy of an odd name: the ALTER TABLE quoted, the resnapshot's --table as it splits, as one shell word", () => {
  const lines: { obj: Record<string, unknown> }[] = [];
  const g = new KeyChangeGaps({ warn: (obj: Record<string, unknown>) => lines.push({ obj }) } as never);
  g.note({ schema: 'My App', name: "v1.2 \"docs\" it's" }, keyChange(['body']));
  assert.equal(
    lines[0].obj.remedy,
    `ALTER TABLE "My App"."v1.2 ""docs"" it's" REPLICA IDENTITY FULL on the source (the old row then supplies them), then take the table's snapshot again to repair the rows moved so far: shardbridge resnapshot --source-config source.yaml --table 'My App."v1.2 ""docs"" it'\\''s"'`,
  );
  assert.equal(lines[0].obj.table, 'My App.v1.2 "docs" it\'s');
});
