import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SchemaError } from '../../shared/errors.ts';
import { registryNotFound } from '../../shared/registry/registry-errors.ts';

test("registryNotFound: a 404 is absence only with the registry's own error code for it", () => {
  const answer = (status: number, errorCode?: number) => new SchemaError('x', { context: { status, errorCode } });
  assert.equal(registryNotFound(answer(404, 40401), 40401, 40403), true);
  assert.equal(registryNotFound(answer(404, 40403), 40401, 40403), true);
  // Another registry code (a version, not the subject) is not what the caller asked about.
  assert.equal(registryNotFound(answer(404, 40402), 40401, 40403), false);
  // A path the registry does not serve, or a proxy's page: no code, or the bare status as code.
  assert.equal(registryNotFound(answer(404), 40401), false);
  assert.equal(registryNotFound(answer(404, 404), 40401), false);
  assert.equal(registryNotFound(answer(500, 40401), 40401), false);
  assert.equal(registryNotFound(new Error('404'), 40401), false);
});
