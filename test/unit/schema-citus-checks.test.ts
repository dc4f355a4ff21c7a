/**
 * What schema copy's plan says of definitions a real Citus 13.2 coordinator refused or would
 * make fail later: user functions the tables call (missing on the destination: a bare
 * "function … does not exist" at the DDL before), a nullable distribution column (Citus refuses
 * a row with NULL there), a unique expression index named with its expression.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ColumnDef, FunctionUse, SchemaModel, TableDef } from '../../shared/schema/model.ts';
import { planSchemaCopy, type DestinationState } from '../../shared/schema/plan.ts';
import { missingFunctionProblems } from '../../shared/schema/plan-functions.ts';
import { keyErrorText, unenforcedCitusKeyText } from '../../shared/migration/foreign-keys.ts';

const col = (name: string, type: string, over: Partial<ColumnDef> = {}): ColumnDef => ({
  name, type, notNull: false, default: null, identity: '', generated: null, collation: null, ...over,
});

const things: TableDef = {
  schema: 'app', name: 'things', printed: 'app.things', kind: 'r', unlogged: false,
  columns: [col('id', 'bigint', { notNull: true }), col('tenant_id', 'integer'), col('name', 'text')],
  constraints: [{ name: 'things_pkey', type: 'p', definition: 'PRIMARY KEY (id)', columns: ['id'] }],
  indexes: [],
};

const norm: FunctionUse = {
  schema: 'app', name: 'norm', signature: 'app.norm(text)', extension: null,
  usedBy: ['check constraint things_name_check of app.things', 'index app.things_norm'], owners: ['app.things'],
};
const uuid: FunctionUse = {
  schema: 'public', name: 'uuid_generate_v4', signature: 'public.uuid_generate_v4()', extension: 'uuid-ossp',
  usedBy: ['default of app.things.ref'], owners: ['app.things'],
};

const dest = (over: Partial<DestinationState> = {}): DestinationState => ({
  citus: true, schemas: new Set(['public']), types: new Set(), sequences: new Set(), tables: new Map(), deferredTableExists: false, deferred: new Set(), ...over,
});
const opts = { distribute: [] as { table: string; column: string }[], reference: [] as string[], colocate: false, extendKeys: false };

test('a user function a table calls, missing on the destination, stops the copy naming its callers and the remedy; an extension function names CREATE EXTENSION', () => {
  const m: SchemaModel = { tables: [things], types: [], sequences: [], functions: [norm, uuid] };
  const plan = planSchemaCopy(m, dest({ functions: new Set() }), opts);
  assert.deepEqual(plan.problems, [
    'function app.norm(text) is missing on the destination (called by check constraint things_name_check of app.things, index app.things_norm), and schema copy creates no function: create it on the destination first (pg_dump --schema-only of the source prints its CREATE FUNCTION; on Citus, create it through the coordinator, which passes it to the workers), then run schema copy again',
    'function public.uuid_generate_v4() is missing on the destination (called by default of app.things.ref), and schema copy creates no function: it belongs to extension uuid-ossp: CREATE EXTENSION uuid-ossp on the destination first (on Citus, on the coordinator, which creates it on the workers too; its files must be installed on every node)',
  ]);
  // Present on the destination (any arguments): nothing to say.
  assert.deepEqual(planSchemaCopy(m, dest({ functions: new Set(['app.norm', 'public.uuid_generate_v4']) }), opts).problems, []);
  // The table already there: schema copy creates nothing that calls them.
  const existing = dest({ functions: new Set(), tables: new Map([['app.things', { constraints: [], citus: 'local' as const, distributionColumn: null }]]) });
  assert.deepEqual(planSchemaCopy(m, existing, opts).problems, []);
  // A domain's check: judged by whether the domain is to be created.
  const domainUse: FunctionUse = { ...norm, usedBy: ['check constraint name_check of domain app.name'], owners: ['app.name'] };
  assert.equal(missingFunctionProblems([domainUse], new Set(), () => true).length, 1);
  assert.equal(missingFunctionProblems([domainUse], new Set(), () => false).length, 0);
});

test('on Citus a distribution column the source lets be NULL is noted (Citus refuses a row with NULL there); a NOT NULL one and plain PostgreSQL are not', () => {
  const m: SchemaModel = { tables: [things], types: [], sequences: [] };
  const plan = planSchemaCopy(m, dest(), { ...opts, distribute: [{ table: 'app.things', column: 'tenant_id' }], extendKeys: true });
  assert.deepEqual(plan.problems, []);
  assert.deepEqual(plan.notes.filter((n) => n.includes('allows NULL')), [
    'app.things.tenant_id, its distribution column, allows NULL on the source, and Citus refuses a row with NULL there ("cannot perform an INSERT with NULL in the partition column"), as does the NOT NULL that a key extended with it implies: such a row would stop the sink at this table. ' +
      'Check that none has it (SELECT count(*) FROM "app"."things" WHERE "tenant_id" IS NULL on the source) and keep it so with ALTER TABLE … ALTER COLUMN "tenant_id" SET NOT NULL there, or distribute by a NOT NULL column',
  ]);
  const byId = planSchemaCopy(m, dest(), { ...opts, distribute: [{ table: 'app.things', column: 'id' }] });
  assert.ok(!byId.notes.some((n) => n.includes('allows NULL')), byId.notes.join('\n'));
  const plain = planSchemaCopy(m, dest({ citus: false }), { ...opts, distribute: [{ table: 'app.things', column: 'tenant_id' }] });
  assert.ok(!plain.notes.some((n) => n.includes('allows NULL')), plain.notes.join('\n'));
});

test('on Citus a unique expression index without the distribution column is named with its expression (its column list is empty)', () => {
  const t: TableDef = {
    ...things,
    indexes: [{ name: 'things_name_lower', definition: 'CREATE UNIQUE INDEX things_name_lower ON app.things USING btree (lower(name)) WHERE (name IS NOT NULL)', unique: true, columns: [] }],
  };
  const plan = planSchemaCopy({ tables: [t], types: [], sequences: [] }, dest(), { ...opts, distribute: [{ table: 'app.things', column: 'id' }] });
  assert.deepEqual(plan.problems, [
    'app.things: unique index things_name_lower (lower(name)) WHERE (name IS NOT NULL) lacks the distribution column id, which Citus refuses: create app.things on the destination by hand with id in that index (schema copy then distributes it as it is)',
  ]);
});

test('cutover does not create a key from a table outside Citus\'s metadata to a distributed one, which Citus takes but does not enforce on the referenced side: it says why and the remedy', () => {
  const text = unenforcedCitusKeyText('"app"."audit"', 'audit_tenant_fk', '"app"."tenants"', 'distributed', 'id');
  assert.equal(
    text,
    'not created: "app"."tenants" is distributed by id and "app"."audit" is a local table outside Citus\'s metadata; Citus takes such a key but does not enforce it on "app"."tenants"\'s side ' +
      '(its rows live in the workers\' shards: a delete or key change there neither fails nor cascades, and "app"."audit" keeps rows that point at nothing). ' +
      'Remedy: distribute "app"."audit" colocated with "app"."tenants" by the column the key pairs with its distribution column (create_distributed_table(…, colocate_with => \'"app"."tenants"\')), then run cutover again; ' +
      'or accept a key enforced on "app"."audit"\'s writes only: delete its row from shardbridge.deferred_foreign_keys and ALTER TABLE "app"."audit" ADD CONSTRAINT "audit_tenant_fk" … by hand',
  );
  // schema copy's note says the same before any data moves.
  const audit: TableDef = { ...things, name: 'audit', printed: 'app.audit', constraints: [{ name: 'audit_fk', type: 'f', definition: 'FOREIGN KEY (tenant_id) REFERENCES app.tenants(id)', columns: ['tenant_id'], references: { schema: 'app', table: 'tenants', columns: ['id'], onUpdate: 'a', onDelete: 'a' } }] };
  const tenants: TableDef = { ...things, name: 'tenants', printed: 'app.tenants', constraints: [] };
  const plan = planSchemaCopy({ tables: [audit, tenants], types: [], sequences: [] }, dest(), { ...opts, distribute: [{ table: 'app.tenants', column: 'id' }] });
  assert.match(plan.notes.join('\n'), /foreign key audit_fk on app\.audit: Citus will refuse it at cut-over: a local table cannot reference a distributed table \(Citus takes such a key from a table outside its metadata but does not enforce it on the distributed table's deletes and key changes, so cutover does not create it\)/);
});

test('a check constraint NOT VALID on the source is left out of CREATE TABLE (which would make it valid, refusing the rows it spares there), with a note giving it for after cut-over', () => {
  const legacy: TableDef = {
    ...things,
    constraints: [...things.constraints, { name: 'things_name_check', type: 'c', definition: "CHECK ((name <> ''::text)) NOT VALID", columns: ['name'] }, { name: 'things_id_check', type: 'c', definition: 'CHECK ((id > 0))', columns: ['id'] }],
  };
  const plan = planSchemaCopy({ tables: [legacy], types: [], sequences: [] }, dest({ citus: false }), opts);
  const sql = plan.steps.flatMap((s) => s.sql).join('\n');
  assert.match(sql, /CONSTRAINT "things_id_check" CHECK \(\(id > 0\)\)/);
  assert.doesNotMatch(sql, /things_name_check/);
  assert.deepEqual(plan.notes, [
    'app.things: check constraint things_name_check is NOT VALID on the source (rows written before it may break it), and the destination checks every row the sink writes, so such a row would stop the sink: created without it; ' +
      'after cut-over, ALTER TABLE "app"."things" ADD CONSTRAINT "things_name_check" CHECK ((name <> \'\'::text)) NOT VALID (NOT VALID spares the rows already there)',
  ]);
});

test('a key Citus refuses at cut-over is said with its DETAIL, where Citus says why, and the remedy; another error keeps its text', () => {
  const citusRefusal = Object.assign(new Error('cannot create foreign key constraint'), {
    code: '0A000', detail: 'SET NULL, SET DEFAULT or CASCADE is not supported in ON UPDATE operation when distribution key included in the foreign constraint.',
  });
  assert.equal(
    keyErrorText(citusRefusal),
    'cannot create foreign key constraint: SET NULL, SET DEFAULT or CASCADE is not supported in ON UPDATE operation when distribution key included in the foreign constraint. ' +
      "Remedy: Citus refuses this key in the tables' layout (schema copy's notes said which and why): create by hand a key it accepts, or none (ON DELETE / ON UPDATE actions then fall to the application), " +
      'and delete its row from shardbridge.deferred_foreign_keys; or change the layout (undistribute_table, create_distributed_table … colocate_with, create_reference_table) and run cutover again',
  );
  const violation = Object.assign(new Error('insert or update on table "orders" violates foreign key constraint "orders_fk"'), { code: '23503', detail: 'Key (customer_id)=(7) is not present in table "customers".' });
  assert.equal(keyErrorText(violation), 'insert or update on table "orders" violates foreign key constraint "orders_fk": Key (customer_id)=(7) is not present in table "customers".');
});

test('in a distributed schema a serial column\'s default comes after its sequence\'s OWNED BY, which Citus refuses once the table (and so the sequence) is distributed', () => {
  const seq = { schema: 'tenant_a', name: 'items_id_seq', dataType: 'bigint', start: '1', increment: '1', min: '1', max: '9223372036854775807', cache: '1', cycle: false, ownedBy: { schema: 'tenant_a', table: 'items', column: 'id' } };
  const items: TableDef = {
    ...things, schema: 'tenant_a', name: 'items', printed: 'tenant_a.items',
    columns: [col('id', 'bigint', { notNull: true, default: "nextval('tenant_a.items_id_seq'::regclass)" }), col('name', 'text', { default: "'x'::text" })],
  };
  const m: SchemaModel = { tables: [items], types: [], sequences: [seq] };
  const sqlOf = (d: DestinationState) => planSchemaCopy(m, d, opts).steps.find((s) => s.object === 'tenant_a.items')!.sql;
  const sharded = sqlOf(dest({ schemas: new Set(['public', 'tenant_a']), distributedSchemas: new Map([['tenant_a', 7]]) }));
  assert.match(sharded[0], /"id" bigint NOT NULL,\n/);
  assert.match(sharded[0], /"name" text DEFAULT 'x'::text/);
  assert.deepEqual(sharded.slice(1), [
    'ALTER SEQUENCE "tenant_a"."items_id_seq" OWNED BY "tenant_a"."items"."id"',
    `ALTER TABLE "tenant_a"."items" ALTER COLUMN "id" SET DEFAULT nextval('tenant_a.items_id_seq'::regclass)`,
  ]);
  // Elsewhere the default stays in CREATE TABLE.
  const plain = sqlOf(dest({ schemas: new Set(['public', 'tenant_a']) }));
  assert.match(plain[0], /"id" bigint DEFAULT nextval\('tenant_a\.items_id_seq'::regclass\) NOT NULL/);
  assert.equal(plain.length, 2);
});

test('an ALWAYS identity created BY DEFAULT: on a table Citus holds the note says it stays so (Citus refuses SET GENERATED ALWAYS there); on a local or plain table it gives the ALTER', () => {
  const t: TableDef = { ...things, columns: [...things.columns, col('n', 'bigint', { notNull: true, identity: 'a' })] };
  const m: SchemaModel = { tables: [t], types: [], sequences: [] };
  const noteOf = (d: DestinationState, o = opts) => planSchemaCopy(m, d, o).notes.find((n) => n.startsWith('app.things.n is GENERATED ALWAYS'))!;
  assert.match(noteOf(dest(), { ...opts, distribute: [{ table: 'app.things', column: 'id' }] }), /it stays so after cut-over: Citus refuses ALTER TABLE … ALTER COLUMN … SET GENERATED ALWAYS on its tables \("alter table command is currently unsupported"\), so an insert that gives its own n is taken there/);
  assert.match(noteOf(dest(), { ...opts, reference: ['app.things'] }), /it stays so after cut-over/);
  assert.match(noteOf(dest()), /after cut-over, ALTER TABLE "app"\."things" ALTER COLUMN "n" SET GENERATED ALWAYS \(cutover reminds you\)$/);
  assert.match(noteOf(dest({ citus: false }), { ...opts, distribute: [{ table: 'app.things', column: 'id' }] }), /SET GENERATED ALWAYS \(cutover reminds you\)$/);
});

test('on Citus a generated distribution column stops the copy before anything runs (Citus refuses to distribute by one, after the tables were created)', () => {
  const t: TableDef = { ...things, columns: [...things.columns, col('bucket', 'integer', { generated: '(id % (10)::bigint)' })] };
  const m: SchemaModel = { tables: [t], types: [], sequences: [] };
  const o = { ...opts, distribute: [{ table: 'app.things', column: 'bucket' }] };
  assert.deepEqual(planSchemaCopy(m, dest(), o).problems.filter((p) => !p.includes('primary key')), [
    'app.things: its distribution column bucket is a generated column, which Citus refuses to distribute by ("Distribution column must not use GENERATED ALWAYS AS (...) STORED"): distribute by another column',
  ]);
  assert.deepEqual(planSchemaCopy(m, dest({ citus: false }), o).problems, []);
});
