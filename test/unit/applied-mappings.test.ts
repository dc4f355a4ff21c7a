import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mappingDrift, mappingDriftError, type TopicMapping } from '../../sink-connector/applied-mappings.ts';

const m = (over: Partial<TopicMapping> = {}): TopicMapping => ({ topic: 'sb.public.t', source: 'public.t', destSchema: 'public', destTable: 't', columns: {}, ...over });

test('a mapping changed on an applied topic drifts; column order does not count; unapplied or unrecorded topics take the new one', () => {
  const recorded = new Map([['sb.public.t', m({ columns: { a: 'x', b: 'y' } })]]);
  const applied = new Map([['sb.public.t', 7n]]);
  assert.deepEqual(mappingDrift([m({ columns: { b: 'y', a: 'x' } })], recorded, applied), []);
  const moved = m({ destTable: 't2', columns: { a: 'x', b: 'y' } });
  assert.deepEqual(mappingDrift([moved], recorded, applied), [{ topic: 'sb.public.t', applied: 7n, recorded: recorded.get('sb.public.t'), now: moved }]);
  assert.equal(mappingDrift([m({ columns: { a: 'x' } })], recorded, applied).length, 1, 'a column mapping dropped');
  assert.deepEqual(mappingDrift([moved], recorded, new Map([['sb.public.t', 0n]])), [], 'nothing applied (replayed to 0)');
  assert.deepEqual(mappingDrift([moved], new Map(), applied), [], 'nothing recorded (an older sink)');
});

test('the refusal names the key, the topic, both targets, the offset and both remedies', () => {
  const e = mappingDriftError([{ topic: 'sb.public.t', applied: 7n, recorded: m(), now: m({ destSchema: 'app', columns: { v: 'w' } }) }], "g'1");
  assert.equal(e.context?.key, 'tables."public.t"');
  assert.match(e.message, /tables\."public\.t": sb\.public\.t was applied into public\.t up to offset 7 \(group g'1\), and is now mapped to app\.t \(columns v → w\)/);
  assert.match(e.remedy ?? '', /replay --sink-config sink\.yaml --topic <topic> --to-offset 0/);
  assert.match(e.remedy ?? '', /WHERE group_id = 'g''1' AND topic IN \('sb\.public\.t'\)/);
  assert.match(e.remedy ?? '', /have the source copy the table again \(`shardbridge resnapshot --source-config source\.yaml --table public\.t`\)/);
});
