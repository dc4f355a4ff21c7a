/** Asserting configuration errors in tests. */
import assert from 'node:assert/strict';
import { ConfigError } from '../../shared/errors.ts';

/** The ConfigError message thrown by `fn` (fails the test if none is thrown). */
export function configErrorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err.message;
  }
  assert.fail('expected a ConfigError');
}
