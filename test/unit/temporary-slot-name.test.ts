/** Temporary slot names beside the connector's slot: within 63 characters, never shared by two slots. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { temporarySlotName } from '../../source-connector/slot.ts';

test('a short slot name takes the suffix as it is', () => {
  assert.equal(temporarySlotName('shardbridge', 'own'), 'shardbridge_own');
  assert.equal(temporarySlotName('a'.repeat(58), 'init'), `${'a'.repeat(58)}_init`);
});

test('long slot names alike in their first 58 characters get different temporary slots of 63 characters', () => {
  const a = `${'s'.repeat(58)}_east`;
  const b = `${'s'.repeat(58)}_west`;
  for (const suffix of ['own', 'init']) {
    const [x, y] = [temporarySlotName(a, suffix), temporarySlotName(b, suffix)];
    assert.notEqual(x, y);
    assert.ok(x.length <= 63 && y.length <= 63, `${x} ${y}`);
    assert.match(x, new RegExp(`^s+_[0-9a-f]{8}_${suffix}$`));
    assert.equal(temporarySlotName(a, suffix), x, 'the same name every time');
  }
});
