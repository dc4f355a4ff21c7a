/**
 * The I/O edge of `schema copy`: table definitions from the source catalog, and what already
 * exists on the destination. Reads run in one read-only snapshot with an empty search_path,
 * so PostgreSQL's deparsers print every user object schema-qualified.
 */
import type pg from 'pg';
import { detectCitus, LOCAL_TABLE, readCitusTables, readSchemaSharding, type CitusTable } from './citus-catalog.ts';
import { DEFERRED_FK_TABLE } from './generate.ts';
import type { ColumnDef, ConstraintDef, FunctionUse, IndexDef, PartitionDef, SchemaModel, SequenceDef, TableDef, TypeDef, ViewDef } from './model.ts';
import type { DestinationState, DestinationTableState } from './plan.ts';

const TABLES_SQL = `
SELECT c.oid::int AS relid, n.nspname AS schema, c.relname AS name, c.relkind AS kind, c.relpersistence = 'u' AS unlogged,
       quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS printed, pg_get_partkeydef(c.oid) AS partkey
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = ANY($1::oid[])`;

const COLUMNS_SQL = `
SELECT a.attrelid::int AS relid, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.atttypid::int AS typeoid,
       a.attnotnull AS not_null, a.attidentity AS identity, a.attgenerated AS generated,
       pg_get_expr(d.adbin, d.adrelid) AS expr,
       CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
            THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END AS collation,
       sn.nspname AS seq_schema, s.relname AS seq_name, format_type(q.seqtypid, NULL) AS seq_type,
       q.seqstart::text AS seq_start, q.seqincrement::text AS seq_increment, q.seqmin::text AS seq_min,
       q.seqmax::text AS seq_max, q.seqcache::text AS seq_cache, q.seqcycle AS seq_cycle
  FROM pg_attribute a
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  LEFT JOIN pg_collation co ON co.oid = a.attcollation
  LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
  LEFT JOIN pg_depend dep ON a.attidentity <> '' AND dep.refclassid = 'pg_class'::regclass AND dep.refobjid = a.attrelid
        AND dep.refobjsubid = a.attnum AND dep.classid = 'pg_class'::regclass AND dep.deptype = 'i'
  LEFT JOIN pg_class s ON s.oid = dep.objid AND s.relkind = 'S'
  LEFT JOIN pg_namespace sn ON sn.oid = s.relnamespace
  LEFT JOIN pg_sequence q ON q.seqrelid = s.oid
 WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum`;

// equality_columns: an exclusion constraint's columns compared with a btree equality operator,
// what Citus asks of the distribution column (ErrorIfUnsupportedConstraint, OperatorImplementsEquality);
// conkey and conexclop run in step, and an expression's conkey 0 matches no column.
const CONSTRAINTS_SQL = `
SELECT c.conrelid::int AS relid, c.conname AS name, c.contype AS type, pg_get_constraintdef(c.oid) AS definition,
       ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o)::text[] AS columns,
       rn.nspname AS ref_schema, r.relname AS ref_table, c.confupdtype AS on_update, c.confdeltype AS on_delete,
       ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
               JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o)::text[] AS ref_columns,
       CASE WHEN c.contype = 'x' THEN ARRAY(SELECT a.attname FROM unnest(c.conkey, c.conexclop) WITH ORDINALITY k(n, op, o)
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n
              WHERE EXISTS (SELECT 1 FROM pg_amop m JOIN pg_am am ON am.oid = m.amopmethod
                             WHERE m.amopopr = k.op AND am.amname = 'btree' AND m.amopstrategy = 3)
              ORDER BY k.o)::text[] END AS equality_columns
  FROM pg_constraint c
  LEFT JOIN pg_class r ON r.oid = c.confrelid
  LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
 WHERE c.conrelid = ANY($1::oid[]) AND c.contype IN ('p', 'u', 'c', 'x', 'f') AND c.conislocal
 ORDER BY c.conrelid, c.contype = 'p' DESC, c.conname`;

// Indexes that back a primary key, unique or exclusion constraint come with the constraint. Columns: the key's, not INCLUDE's.
const INDEXES_SQL = `
SELECT i.indrelid::int AS relid, ic.relname AS name, pg_get_indexdef(i.indexrelid) AS definition, i.indisunique AS unique,
       ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(n, o)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n WHERE k.o <= i.indnkeyatts ORDER BY k.o)::text[] AS columns
  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
 WHERE i.indrelid = ANY($1::oid[])
   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x'))
 ORDER BY i.indrelid, ic.relname`;

// The partitions of partitioned tables, every level, each after its parent.
const PARTITIONS_SQL = `
SELECT r.root::int AS root, n.nspname AS schema, c.relname AS name, pn.nspname AS parent_schema, p.relname AS parent_name,
       pg_get_expr(c.relpartbound, c.oid) AS bound, pg_get_partkeydef(c.oid) AS partkey, c.relpersistence = 'u' AS unlogged
  FROM unnest($1::oid[]) AS r(root)
 CROSS JOIN LATERAL pg_partition_tree(r.root) t
  JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_class p ON p.oid = t.parentrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
 WHERE t.level > 0
 ORDER BY r.root, t.level, n.nspname, c.relname`;

// Views and materialized views reading the selected tables, with every relation they read.
const VIEWS_SQL = `
SELECT v.oid::int AS oid, vn.nspname AS schema, v.relname AS name, v.relkind AS kind, pg_get_viewdef(v.oid) AS definition,
       COALESCE(v.reloptions, '{}')::text[] AS options,
       (SELECT json_agg(json_build_object('schema', rn.nspname, 'name', rc.relname) ORDER BY rn.nspname, rc.relname)
          FROM (SELECT DISTINCT d2.refobjid FROM pg_rewrite r2 JOIN pg_depend d2 ON d2.classid = 'pg_rewrite'::regclass AND d2.objid = r2.oid
                 WHERE r2.ev_class = v.oid AND d2.refclassid = 'pg_class'::regclass AND d2.refobjid <> v.oid) x
          JOIN pg_class rc ON rc.oid = x.refobjid JOIN pg_namespace rn ON rn.oid = rc.relnamespace) AS reads
  FROM pg_class v JOIN pg_namespace vn ON vn.oid = v.relnamespace
 WHERE v.relkind IN ('v', 'm')
   AND EXISTS (SELECT 1 FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                WHERE r.ev_class = v.oid AND d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY($1::oid[]))
 ORDER BY v.oid`;

// Sequences the column defaults use (serial: also owned by the column).
const SEQUENCES_SQL = `
SELECT DISTINCT sn.nspname AS schema, s.relname AS name, format_type(q.seqtypid, NULL) AS type,
       q.seqstart::text AS start, q.seqincrement::text AS increment, q.seqmin::text AS min, q.seqmax::text AS max,
       q.seqcache::text AS cache, q.seqcycle AS cycle, own_n.nspname AS own_schema, own_t.relname AS own_table, own_a.attname AS own_column
  FROM pg_attrdef ad
  JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
  JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
  JOIN pg_namespace sn ON sn.oid = s.relnamespace
  JOIN pg_sequence q ON q.seqrelid = s.oid
  LEFT JOIN pg_depend o ON o.classid = 'pg_class'::regclass AND o.objid = s.oid AND o.refclassid = 'pg_class'::regclass AND o.deptype = 'a'
  LEFT JOIN pg_class own_t ON own_t.oid = o.refobjid
  LEFT JOIN pg_namespace own_n ON own_n.oid = own_t.relnamespace
  LEFT JOIN pg_attribute own_a ON own_a.attrelid = o.refobjid AND own_a.attnum = o.refobjsubid
 WHERE ad.adrelid = ANY($1::oid[])
 ORDER BY 1, 2`;

// User types the columns use, with the types they are built on (array elements, domain bases).
const TYPES_SQL = `
WITH RECURSIVE t(oid) AS (
  SELECT unnest($1::oid[])
  UNION
  SELECT x FROM t JOIN pg_type p ON p.oid = t.oid
    CROSS JOIN LATERAL (VALUES (NULLIF(p.typelem, 0)), (NULLIF(p.typbasetype, 0))) v(x)
   WHERE x IS NOT NULL
)
SELECT p.oid::int AS oid, n.nspname AS schema, p.typname AS name, p.typtype AS typtype, p.typbasetype::int AS base_oid,
       format_type(p.typbasetype, p.typtypmod) AS base_type, p.typnotnull AS not_null, p.typdefault AS "default",
       (p.typcategory = 'A' AND p.typelem <> 0) AS is_array,
       ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = p.oid ORDER BY e.enumsortorder) AS labels,
       COALESCE((SELECT json_agg(json_build_object('name', c.conname, 'definition', pg_get_constraintdef(c.oid)) ORDER BY c.conname)
                   FROM pg_constraint c WHERE c.contypid = p.oid), '[]') AS checks
  FROM pg_type p JOIN pg_namespace n ON n.oid = p.typnamespace
 WHERE p.oid IN (SELECT oid FROM t) AND n.nspname NOT IN ('pg_catalog', 'information_schema')`;

// Functions outside pg_catalog called by the tables' defaults and generated columns, check
// constraints, index expressions and predicates, and by the domains' checks (pg_depend records each call).
const FUNCTIONS_SQL = `
WITH uses(fn, what, owner) AS (
  SELECT d.refobjid, CASE WHEN a.attgenerated = '' THEN 'default of ' ELSE 'generated column ' END || c.oid::regclass::text || '.' || quote_ident(a.attname),
         n.nspname || '.' || c.relname
    FROM pg_attrdef ad JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_proc'::regclass
    JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
    JOIN pg_class c ON c.oid = ad.adrelid JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE ad.adrelid = ANY($1::oid[])
  UNION ALL
  SELECT d.refobjid, 'check constraint ' || quote_ident(co.conname) || ' of ' || COALESCE(NULLIF(co.conrelid, 0)::regclass::text, 'domain ' || NULLIF(co.contypid, 0)::regtype::text),
         COALESCE((SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = co.conrelid),
                  (SELECT n.nspname || '.' || t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = co.contypid))
    FROM pg_constraint co JOIN pg_depend d ON d.classid = 'pg_constraint'::regclass AND d.objid = co.oid AND d.refclassid = 'pg_proc'::regclass
   WHERE co.conrelid = ANY($1::oid[]) OR co.contypid = ANY($2::oid[])
  UNION ALL
  SELECT d.refobjid, 'index ' || i.indexrelid::regclass::text, n.nspname || '.' || c.relname
    FROM pg_index i JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid AND d.refclassid = 'pg_proc'::regclass
    JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE i.indrelid = ANY($1::oid[])
)
SELECT n.nspname AS schema, p.proname AS name, p.oid::regprocedure::text AS signature, e.extname AS extension,
       array_agg(DISTINCT u.what ORDER BY u.what) AS used_by, array_agg(DISTINCT u.owner ORDER BY u.owner) AS owners
  FROM uses u JOIN pg_proc p ON p.oid = u.fn JOIN pg_namespace n ON n.oid = p.pronamespace
  LEFT JOIN pg_depend x ON x.classid = 'pg_proc'::regclass AND x.objid = p.oid AND x.deptype = 'e'
  LEFT JOIN pg_extension e ON e.oid = x.refobjid
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
 GROUP BY 1, 2, 3, 4
 ORDER BY 3`;

async function inSnapshot<T>(client: pg.ClientBase, fn: () => Promise<T>): Promise<T> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    await client.query(`SET LOCAL search_path = ''`);
    const out = await fn();
    await client.query('COMMIT');
    return out;
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    throw e;
  }
}

/** Definitions of the given source tables and of the types and sequences they use. */
export async function readSchemaModel(client: pg.ClientBase, relids: number[]): Promise<SchemaModel> {
  return inSnapshot(client, async () => {
    const tables = (await client.query(TABLES_SQL, [relids])).rows;
    const columns = (await client.query(COLUMNS_SQL, [relids])).rows;
    const constraints = (await client.query(CONSTRAINTS_SQL, [relids])).rows;
    const indexes = (await client.query(INDEXES_SQL, [relids])).rows;
    const sequences = (await client.query(SEQUENCES_SQL, [relids])).rows;
    const types = (await client.query(TYPES_SQL, [[...new Set(columns.map((c) => c.typeoid))]])).rows;
    const partitioned = tables.filter((t) => t.kind === 'p').map((t) => t.relid);
    const partitions = partitioned.length ? (await client.query(PARTITIONS_SQL, [partitioned])).rows : [];
    const views = (await client.query(VIEWS_SQL, [relids])).rows;
    const domains = types.filter((t) => t.typtype === 'd').map((t) => t.oid);
    const functions = (await client.query(FUNCTIONS_SQL, [relids, domains])).rows;
    const order = new Map(relids.map((r, i) => [r, i]));
    return {
      tables: tables
        .sort((a, b) => order.get(a.relid)! - order.get(b.relid)!)
        .map((t): TableDef => ({
          schema: t.schema,
          name: t.name,
          printed: t.printed,
          kind: t.kind === 'p' ? 'p' : 'r',
          unlogged: t.unlogged,
          columns: columns.filter((c) => c.relid === t.relid).map(toColumn),
          constraints: constraints.filter((c) => c.relid === t.relid).map(toConstraint),
          indexes: indexes.filter((i) => i.relid === t.relid).map((i): IndexDef => ({ name: i.name, definition: i.definition, unique: i.unique, columns: i.columns })),
          ...(t.kind === 'p'
            ? {
                partitionKey: t.partkey,
                partitions: partitions.filter((p) => p.root === t.relid).map((p): PartitionDef => ({
                  schema: p.schema, name: p.name, parent: { schema: p.parent_schema, name: p.parent_name }, bound: p.bound, partitionKey: p.partkey, unlogged: p.unlogged,
                })),
              }
            : {}),
        })),
      views: views.map((v): ViewDef => ({
        schema: v.schema,
        name: v.name,
        kind: v.kind,
        definition: String(v.definition).trim().replace(/;$/, ''),
        options: v.options,
        reads: v.reads ?? [],
      })),
      types: orderTypes(types),
      functions: functions.map((f): FunctionUse => ({ schema: f.schema, name: f.name, signature: f.signature, extension: f.extension, usedBy: f.used_by, owners: f.owners })),
      sequences: sequences.map((s): SequenceDef => ({
        schema: s.schema,
        name: s.name,
        dataType: s.type,
        start: s.start,
        increment: s.increment,
        min: s.min,
        max: s.max,
        cache: s.cache,
        cycle: s.cycle,
        ownedBy: s.own_table ? { schema: s.own_schema, table: s.own_table, column: s.own_column } : null,
      })),
    };
  });
}

function toConstraint(c: any): ConstraintDef {
  const def: ConstraintDef = { name: c.name, type: c.type, definition: c.definition, columns: c.columns };
  if (c.type === 'x') def.equalityColumns = c.equality_columns ?? [];
  if (c.type === 'f') def.references = { schema: c.ref_schema, table: c.ref_table, columns: c.ref_columns, onUpdate: c.on_update, onDelete: c.on_delete };
  return def;
}

function toColumn(c: any): ColumnDef {
  const identity = c.identity as ColumnDef['identity'];
  return {
    name: c.name,
    type: c.type,
    notNull: c.not_null,
    default: identity || c.generated ? null : c.expr,
    identity,
    identitySequence: identity && c.seq_name
      ? { schema: c.seq_schema, name: c.seq_name, dataType: c.seq_type, start: c.seq_start, increment: c.seq_increment, min: c.seq_min, max: c.seq_max, cache: c.seq_cache, cycle: c.seq_cycle }
      : undefined,
    generated: c.generated === 's' || c.generated === 'v' ? c.expr : null,
    ...(c.generated === 'v' ? { virtual: true } : {}),
    collation: c.collation,
  };
}

/** Enums and domains to create, each after the user types it is based on; arrays come with their element type. */
function orderTypes(rows: any[]): TypeDef[] {
  const byOid = new Map(rows.map((r) => [r.oid as number, r]));
  const out: TypeDef[] = [];
  const seen = new Set<number>();
  const visit = (r: any) => {
    if (seen.has(r.oid)) return;
    seen.add(r.oid);
    if (r.is_array) return;
    if (r.typtype === 'd' && byOid.has(r.base_oid)) visit(byOid.get(r.base_oid));
    if (r.typtype === 'e') out.push({ kind: 'enum', schema: r.schema, name: r.name, labels: r.labels });
    else if (r.typtype === 'd') out.push({ kind: 'domain', schema: r.schema, name: r.name, baseType: r.base_type, notNull: r.not_null, default: r.default, checks: r.checks });
    else out.push({ kind: 'other', schema: r.schema, name: r.name, typtype: r.typtype });
  };
  for (const r of [...rows].sort((a, b) => a.oid - b.oid)) visit(r);
  return out;
}

/** What exists on the destination among the objects a model needs. `citus`: whether it has Citus (asked of pg_extension when not given). */
export async function readDestinationState(
  client: pg.ClientBase,
  model: SchemaModel,
  destTables: { schema: string; name: string }[],
  citus?: boolean,
): Promise<DestinationState> {
  citus ??= (await detectCitus(client)).present;
  const pairs = (xs: { schema: string; name: string }[]) => [xs.map((x) => x.schema), xs.map((x) => x.name)];
  const typeRows = (await client.query(
    `SELECT n.nspname || '.' || t.typname AS k FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
      JOIN unnest($1::text[], $2::text[]) AS w(s, n) ON w.s = n.nspname AND w.n = t.typname`,
    pairs(model.types),
  )).rows;
  const relRows = (await client.query(
    `SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS name, c.relkind AS kind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN unnest($1::text[], $2::text[]) AS w(s, n) ON w.s = n.nspname AND w.n = c.relname
     WHERE c.relkind IN ('r', 'p', 'S')`,
    pairs([...model.sequences, ...destTables]),
  )).rows;
  const viewNames = (model.views ?? []).flatMap((v) => [v, ...v.reads]);
  const relations = viewNames.length
    ? new Set((await client.query(
        `SELECT n.nspname || '.' || c.relname AS k FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN unnest($1::text[], $2::text[]) AS w(s, n) ON w.s = n.nspname AND w.n = c.relname WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')`,
        pairs(viewNames),
      )).rows.map((r) => r.k as string))
    : new Set<string>();
  const functions = model.functions?.length
    ? new Set((await client.query(
        `SELECT DISTINCT n.nspname || '.' || p.proname AS k FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          JOIN unnest($1::text[], $2::text[]) AS w(s, n) ON w.s = n.nspname AND w.n = p.proname`,
        pairs(model.functions),
      )).rows.map((r) => r.k as string))
    : new Set<string>();
  const { rows: nsRows } = await client.query(`SELECT nspname, current_setting('server_version_num')::int AS v FROM pg_namespace`);
  const schemas = nsRows.map((r) => r.nspname as string);
  const tableRows = relRows.filter((r) => r.kind === 'r' || r.kind === 'p');
  const constraints = tableRows.length
    ? (await client.query(CONSTRAINTS_SQL, [tableRows.map((r) => r.oid)])).rows.filter((c) => c.type === 'p' || c.type === 'u' || c.type === 'x')
    : [];
  const dist = citus ? await readCitusTables(client, tableRows.map((r) => r.oid)) : new Map<number, CitusTable>();
  const tables = new Map<string, DestinationTableState>();
  for (const r of tableRows) {
    const d = dist.get(r.oid) ?? LOCAL_TABLE;
    tables.set(`${r.schema}.${r.name}`, {
      constraints: constraints.filter((c) => c.relid === r.oid).map(toConstraint),
      citus: d.kind,
      distributionColumn: d.distributionColumn,
      colocationId: d.colocationId,
      // In pg_dist_partition yet 'local': a Citus local table.
      ...(d.kind === 'local' && dist.has(r.oid) ? { citusLocal: true } : {}),
    });
  }
  const deferredTableExists = (await client.query(`SELECT to_regclass($1) IS NOT NULL AS e`, [DEFERRED_FK_TABLE])).rows[0].e === true;
  const deferred = deferredTableExists
    ? new Set((await client.query(`SELECT table_name, constraint_name FROM ${DEFERRED_FK_TABLE}`)).rows.map((r) => `${r.table_name}\u0000${r.constraint_name}`))
    : new Set<string>();
  return {
    citus,
    serverVersionNum: nsRows[0]?.v as number | undefined,
    schemas: new Set(schemas),
    types: new Set(typeRows.map((r) => r.k)),
    sequences: new Set(relRows.filter((r) => r.kind === 'S').map((r) => `${r.schema}.${r.name}`)),
    tables,
    relations,
    functions,
    deferredTableExists,
    deferred,
    ...(citus ? await readSchemaSharding(client) : {}),
  };
}
