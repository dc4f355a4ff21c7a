/**
 * Tables as a database with a schema per tenant has them: `tenants` schemas holding the same
 * few table shapes (3–8 columns of common types, int or bigint keys), for the memory-per-table
 * tests of both connectors.
 */
import type { TableInfo } from '../../shared/pg-types.ts';
import { column, pgType } from './pg-fixtures.ts';

const SHAPES: { name: string; columns: [string, string, number?][] }[] = [
  { name: 'users', columns: [['id', 'int4'], ['name', 'text'], ['created_at', 'timestamptz']] },
  { name: 'orders', columns: [['id', 'int8'], ['account_id', 'int4'], ['amount', 'numeric', ((12 << 16) | 2) + 4], ['status', 'varchar', 24], ['note', 'text'], ['updated_at', 'timestamptz']] },
  { name: 'events', columns: [['id', 'int8'], ['user_id', 'int8'], ['payload', 'jsonb'], ['flag', 'bool'], ['score', 'float8'], ['day', 'date'], ['ref', 'uuid'], ['qty', 'int2']] },
  { name: 'settings', columns: [['id', 'int4'], ['code', 'text'], ['value', 'int4'], ['at', 'timestamp']] },
];

/** `tenants` × the shapes: relids from 1, schemas `tenant_0000`…, table names the shapes'. */
export function tenantTables(tenants: number, firstRelid = 1): TableInfo[] {
  const out: TableInfo[] = [];
  for (let s = 0; s < tenants; s++) {
    for (const shape of SHAPES) {
      out.push({
        relid: firstRelid + out.length,
        schema: `tenant_${String(s).padStart(4, '0')}`,
        name: shape.name,
        columns: shape.columns.map(([name, type, typmod], i) => column(name, pgType(type), typmod ?? -1, i === 0)),
        keyColumns: ['id'],
        replicaIdentity: 'default',
      });
    }
  }
  return out;
}
