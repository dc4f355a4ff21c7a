import { test } from 'node:test';
import assert from 'node:assert/strict';
import { catalogDriftSql, failOnDriftSql, isDriftFailure, DRIFT_MARK } from '../../sink-connector/catalog-drift.ts';

test('the drift check covers each table with a digest once, its names quoted as identifiers and literals', () => {
  assert.equal(catalogDriftSql([{ schema: 's', name: 't' }]), null, 'no digest: nothing to check');
  assert.equal(failOnDriftSql([]), '');
  const sql = catalogDriftSql([
    { schema: 'S', name: `o'rders`, digest: 'abc' },
    { schema: 'S', name: `o'rders`, digest: 'abc' },
    { schema: 'p', name: 'q', digest: 'def' },
  ])!;
  assert.equal(sql.match(/\('/g)?.length, 2, 'one VALUES row per table');
  assert.match(sql, /\('"S"\."o''rders"', 'S\.o''rders', 'abc'\)/);
  assert.match(sql, /IS DISTINCT FROM v\.digest/);
});

test("the commit's check fails through format(), never through a cast of a constant the planner would fold", () => {
  const sql = failOnDriftSql([{ schema: 's', name: 't', digest: 'x' }]);
  assert.match(sql, /^SELECT format\('%s%s', '[^']+', d\.name\)::int FROM \(SELECT v\.name /);
  assert.ok(sql.endsWith('; '));
  assert.ok(isDriftFailure(`invalid input syntax for type integer: "${DRIFT_MARK}s.t"`));
  assert.ok(!isDriftFailure('invalid input syntax for type integer: "1.5"'));
});
