import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UnseenTopics, unseenMessage } from '../../sink-connector/unseen-topics.ts';

test('unseen topics: a named topic of the prefix missing from the listing is reported once, again only after it was seen; other prefixes ignored', () => {
  const u = new UnseenTopics('p');
  const named = [
    { topic: 'p.public.a', table: 'public.a' },
    { topic: 'p.public.b', table: 'public.b' },
    { topic: 'other.public.a', table: 'public.a' },
  ];
  assert.deepEqual(u.look(named, new Set(['p.public.a'])), { fresh: [named[1]], unseen: 1 });
  assert.deepEqual(u.look(named, new Set(['p.public.a'])), { fresh: [], unseen: 1 }, 'said once');
  assert.deepEqual(u.look(named, new Set(['p.public.a', 'p.public.b'])), { fresh: [], unseen: 0 });
  assert.deepEqual(u.look(named, new Set(['p.public.a'])), { fresh: [named[1]], unseen: 1 }, 'gone again: said again');
  // A prefix that is another's start is not that prefix.
  assert.deepEqual(new UnseenTopics('p.public').look([{ topic: 'p.publicx.a', table: 'publicx.a' }], new Set()), { fresh: [], unseen: 0 });
});

test('unseen topics: the message names topic and table, the Describe ACL and the grant', () => {
  const { msg, remedy } = unseenMessage([{ topic: 'p.public.b', table: 'public.b' }]);
  assert.match(msg, /p\.public\.b \(table public\.b\).*cannot see.*Describe/);
  assert.match(remedy, /kafka-acls\.sh --add .*--operation Read/);
});
