/**
 * Pure: what `schema copy` has to do, given the source model and what already exists on the
 * destination. Every step is checked against the destination first, so a second run plans
 * nothing. Problems (objects we cannot create faithfully) stop the command before it changes
 * anything; notes explain what was skipped and why.
 */
import type { SinkTableMapping } from '../../sink-connector/config.ts';
import { citusForeignKeyRefusal, defaultGroup, REFUSED_FK_REMEDY, type CitusLayout } from './citus-foreign-keys.ts';
import { describeCitusTable, type CitusTableKind } from './citus-table-kind.ts';
import { mapTable } from './mapping.ts';
import { missingFunctionProblems } from './plan-functions.ts';
import { identityDeferredNote, indexKeys, largeObjectNotes, notValidCheckNote, nullableDistributionNote } from './plan-notes.ts';
import { planViews, viewsOverLocalTables } from './plan-views.ts';
import type { ConstraintDef, PartitionDef, SchemaModel, TableDef } from './model.ts';
import {
  DEFERRED_FK_TABLE_SQL,
  createSchemaSql,
  createPartitionSql,
  createSequenceSql,
  createTableSql,
  createTypeSql,
  distributeSql,
  excludesWithoutColumn,
  extendKeySql,
  INDEX_MAX_KEYS,
  identityDeferred,
  indexSql,
  lacksColumn,
  notValidCheck,
  qualify,
  recordForeignKeySql,
  referenceSql,
  sequenceOwnedBySql,
  setDefaultSql,
} from './generate.ts';

export interface DestinationTableState {
  /** Primary key, unique and exclusion constraints (for --extend-keys, and Citus's checks, on an existing table). */
  constraints: ConstraintDef[];
  citus: CitusTableKind;
  distributionColumn: string | null;
  /** Citus colocation group of a distributed or single-shard table. */
  colocationId?: number | null;
  /** A Citus local table (citus_add_local_table_to_metadata): 'local', but in Citus's metadata, so a view over it reaches the workers. */
  citusLocal?: boolean;
}

export interface DestinationState {
  citus: boolean;
  schemas: Set<string>;
  /** `schema.name` of existing types, sequences and tables. */
  types: Set<string>;
  /** Those of the model's views and of the relations they read that exist (tables, views, foreign tables; absent: none looked for). */
  relations?: Set<string>;
  sequences: Set<string>;
  /** `schema.name` of the model's functions that exist, any arguments (absent: none looked for). */
  functions?: Set<string>;
  tables: Map<string, DestinationTableState>;
  deferredTableExists: boolean;
  /** `table_name` + NUL + `constraint_name` rows already kept aside. */
  deferred: Set<string>;
  /** Citus 12's distributed schemas (schema-based sharding), by name, with their colocation group: Citus makes every table created in one a single-shard table. */
  distributedSchemas?: Map<string, number>;
  /** `citus.enable_schema_based_sharding` is on for the destination session: a schema created now becomes a distributed schema. */
  schemaBasedSharding?: boolean;
  /** The destination's server_version_num (absent: taken as before 18). */
  serverVersionNum?: number;
}

export interface CopyOptions {
  mapping?: Record<string, SinkTableMapping>;
  /** Source `schema.table` → distribution column, in the order given. */
  distribute: { table: string; column: string }[];
  reference: string[];
  colocate: boolean;
  extendKeys: boolean;
}

export interface Step {
  /** ddl runs in one transaction; distribute runs after it, call by call; views last (on Citus, over the tables as distributed). */
  phase: 'ddl' | 'distribute' | 'views';
  action: string;
  object: string;
  sql: string[];
}

export interface CopyPlan {
  steps: Step[];
  notes: string[];
  problems: string[];
}

const key = (t: { schema: string; name: string }) => `${t.schema}.${t.name}`;

export function planSchemaCopy(model: SchemaModel, dest: DestinationState, opts: CopyOptions): CopyPlan {
  const steps: Step[] = [];
  const notes: string[] = [];
  const problems: string[] = [];
  const mapped = new Map(model.tables.map((t) => [key(t), mapTable(t, opts.mapping)]));
  const destOf = (t: TableDef) => mapped.get(key(t))!.destination;

  for (const t of model.tables) {
    const m = mapped.get(key(t))!;
    if (Object.keys(m.columnMap).length && !dest.tables.has(key(m.destination))) {
      problems.push(`${key(t)}: the sink mapping renames columns (${Object.entries(m.columnMap).map(([a, b]) => `${a} → ${b}`).join(', ')}); schema copy does not rename columns: create ${key(m.destination)} by hand`);
    }
  }
  for (const ty of model.types) {
    if (ty.kind === 'other' && !dest.types.has(key(ty))) {
      problems.push(`type ${key(ty)} (typtype ${ty.typtype}) is missing on the destination and not created by schema copy: install it first (often CREATE EXTENSION)`);
    }
  }
  const sourceTables = new Map(model.tables.map((t) => [key(t), t]));
  const creates = (owner: string) => {
    const t = sourceTables.get(owner);
    return t ? !dest.tables.has(key(destOf(t))) : !dest.types.has(owner);
  };
  problems.push(...missingFunctionProblems(model.functions ?? [], dest.functions ?? new Set(), creates));

  notes.push(...largeObjectNotes(model, destOf));
  const viewSteps = planViews(model, dest, destOf, notes);
  // Schemas first: of tables, and of the types, sequences and views we create.
  const schemas = new Set<string>(viewSteps.map((v) => v.schema));
  for (const ty of model.types) if (ty.kind !== 'other' && !dest.types.has(key(ty))) schemas.add(ty.schema);
  for (const s of model.sequences) if (!dest.sequences.has(key(s))) schemas.add(s.schema);
  for (const t of model.tables) {
    if (dest.tables.has(key(destOf(t)))) continue;
    schemas.add(destOf(t).schema);
    // A partition may live in another schema than its table.
    for (const p of t.partitions ?? []) schemas.add(p.schema);
  }
  for (const s of [...schemas].filter((x) => !dest.schemas.has(x)).sort()) {
    steps.push({ phase: 'ddl', action: 'create schema', object: s, sql: [createSchemaSql(s)] });
  }
  for (const ty of model.types) {
    if (ty.kind !== 'other' && !dest.types.has(key(ty))) steps.push({ phase: 'ddl', action: `create ${ty.kind}`, object: key(ty), sql: [createTypeSql(ty)] });
  }
  for (const s of model.sequences) {
    if (!dest.sequences.has(key(s))) steps.push({ phase: 'ddl', action: 'create sequence', object: key(s), sql: [createSequenceSql(s)] });
  }

  // Citus 13 does not document virtual generated columns: made STORED there, as before 18.
  const virtualColumns = !dest.citus && (dest.serverVersionNum ?? 0) >= 180000;
  for (const t of model.tables) {
    const d = destOf(t);
    if (dest.tables.has(key(d))) continue;
    for (const c of t.constraints.filter(notValidCheck)) notes.push(notValidCheckNote(d, c));
    const citusTable = dest.citus && (opts.distribute.some((x) => x.table === key(t)) || opts.reference.includes(key(t)) || layoutBefore(dest, d).kind === 'single-shard');
    for (const c of identityDeferred(t)) notes.push(identityDeferredNote(d, c, citusTable));
    for (const c of t.columns.filter((x) => x.virtual && !virtualColumns)) notes.push(virtualColumnNote(d, c.name, dest.citus));
    const owned = model.sequences.filter((s) => s.ownedBy && s.ownedBy.schema === t.schema && s.ownedBy.table === t.name);
    // Partitions before the indexes, which a partitioned table's then makes on each of them.
    const parentOf = (p: PartitionDef) => (p.parent.schema === t.schema && p.parent.name === t.name ? d : p.parent);
    // In a distributed schema Citus makes the table single-shard as it is created, and the
    // sequences its defaults call distributed ones, whose ALTER SEQUENCE … OWNED BY it refuses
    // ("Altering a distributed sequence is currently not supported"): there those defaults come after.
    const late = new Set(dest.citus && layoutBefore(dest, d).kind === 'single-shard' ? owned.map((s) => s.ownedBy!.column) : []);
    const bare = late.size ? { ...t, columns: t.columns.map((c) => (late.has(c.name) ? { ...c, default: null } : c)) } : t;
    steps.push({
      phase: 'ddl',
      action: t.kind === 'p' ? `create partitioned table (${t.partitions?.length ?? 0} partitions)` : 'create table',
      object: key(d),
      sql: [
        createTableSql(bare, d, virtualColumns),
        ...(t.partitions ?? []).map((p) => createPartitionSql(p, parentOf(p))),
        ...t.indexes.map((i) => indexSql(i, t, d)),
        ...owned.map((s) => sequenceOwnedBySql(s, d, s.ownedBy!.column)),
        ...t.columns.filter((c) => late.has(c.name) && c.default !== null).map((c) => setDefaultSql(d, c.name, c.default!)),
      ],
    });
  }

  // Foreign keys: kept aside for cut-over, never created now (tables are applied independently).
  const renames = new Map<string, string>();
  for (const t of model.tables) renames.set(t.printed, qualify(destOf(t)));
  const fkSteps: Step[] = [];
  for (const t of model.tables) {
    for (const c of t.constraints.filter((x) => x.type === 'f')) {
      const d = destOf(t);
      if (dest.deferred.has(`${qualify(d)}\u0000${c.name}`)) continue;
      fkSteps.push({ phase: 'ddl', action: 'keep foreign key aside', object: `${key(d)}.${c.name}`, sql: [recordForeignKeySql(d, c, renames)] });
    }
  }
  if (fkSteps.length && !dest.deferredTableExists) steps.push({ phase: 'ddl', action: 'create table', object: 'shardbridge.deferred_foreign_keys', sql: DEFERRED_FK_TABLE_SQL });
  steps.push(...fkSteps);

  const byName = new Map(model.tables.map((t) => [key(t), t]));
  // Each table's Citus layout as it is, or as creating it makes it; updated as the plan
  // distributes tables, for the foreign-key check at the end.
  const layouts = new Map<string, CitusLayout>(model.tables.map((t) => [key(t), layoutBefore(dest, destOf(t))]));
  if (dest.citus) problems.push(...colocationProblems(opts, layouts, (table) => byName.get(table)!), ...citusPartitionProblems(model, dest, opts, destOf, layouts));
  if (dest.citus) {
    for (const { table, column } of opts.distribute) {
      const d = destOf(byName.get(table)!);
      if (layouts.get(table)!.kind !== 'local' || !byName.get(table)!.columns.find((c) => c.name === column)?.generated) continue;
      problems.push(`${key(d)}: its distribution column ${column} is a generated column, which Citus refuses to distribute by ("Distribution column must not use GENERATED ALWAYS AS (...) STORED"): distribute by another column`);
    }
  }
  if (opts.extendKeys && !dest.citus) {
    if (opts.distribute.length) notes.push('plain PostgreSQL (no Citus): --extend-keys skipped, keys stay as on the source');
  } else if (dest.citus) {
    // create_distributed_table refuses a unique constraint or index without the distribution
    // column (an exclusion constraint without it compared by =), and it runs after the DDL
    // phase has committed: refuse before anything runs.
    for (const { table, column } of opts.distribute) {
      if (layouts.get(table)!.kind === 'single-shard') continue;
      const t = byName.get(table)!;
      const d = destOf(t);
      const existing = dest.tables.get(key(d));
      if (existing && existing.citus !== 'local') continue;
      const constraints = existing ? existing.constraints : t.constraints;
      for (const c of constraints.filter((x) => lacksColumn(x, column))) {
        const what = c.type === 'p' ? 'primary key' : 'unique constraint';
        // Its index would have one column too many: PostgreSQL's ALTER fails (54011) after the DDL before it committed.
        if (c.columns.length >= INDEX_MAX_KEYS) problems.push(`${key(d)}: ${what} ${c.name} has ${c.columns.length} columns, the most a PostgreSQL index may have (INDEX_MAX_KEYS ${INDEX_MAX_KEYS}), so it cannot take the distribution column ${column}, which Citus needs in it: distribute by one of its columns`);
        else if (opts.extendKeys) steps.push({ phase: 'ddl', action: `add ${column} to ${what}`, object: `${key(d)}.${c.name}`, sql: [extendKeySql(d, c, column)] });
        else problems.push(`${key(d)}: ${what} ${c.name} (${c.columns.join(', ')}) lacks the distribution column ${column}, which Citus refuses: add --extend-keys (it becomes (${[...c.columns, column].join(', ')})) or distribute by one of its columns`);
      }
      for (const c of constraints.filter((x) => excludesWithoutColumn(x, column))) {
        problems.push(`${key(d)}: exclusion constraint ${c.name} (${c.definition}) does not compare the distribution column ${column} with =, which Citus refuses: create ${key(d)} on the destination by hand with ${column} WITH = in that constraint (schema copy then distributes it as it is), or distribute by a column it compares with =`);
      }
      if (!existing) {
        for (const i of t.indexes.filter((x) => x.unique && !x.columns.includes(column))) {
          problems.push(`${key(d)}: unique index ${i.name} ${indexKeys(i)} lacks the distribution column ${column}, which Citus refuses: create ${key(d)} on the destination by hand with ${column} in that index (schema copy then distributes it as it is)`);
        }
      }
    }
  }

  if (!dest.citus) {
    for (const { table, column } of opts.distribute) {
      notes.push(`plain PostgreSQL (no Citus): create_distributed_table for ${key(destOf(byName.get(table)!))} by ${column} skipped`);
    }
    for (const table of opts.reference) notes.push(`plain PostgreSQL (no Citus): create_reference_table for ${key(destOf(byName.get(table)!))} skipped`);
    if (opts.colocate && opts.distribute.length) notes.push('plain PostgreSQL (no Citus): --colocate has nothing to colocate');
    return { steps: [...steps, ...viewSteps.map((v) => v.step)], notes, problems };
  }
  /** A table schema copy creates in a distributed schema: Citus makes it a single-shard table, which it cannot then distribute otherwise. */
  const inTenantSchema = (table: string, call: string): boolean => {
    const d = destOf(byName.get(table)!);
    if (dest.tables.has(key(d)) || layouts.get(table)!.kind !== 'single-shard') return false;
    notes.push(`${key(d)} is created in distributed schema ${d.schema}: Citus makes it a single-shard table; ${call} skipped`);
    return true;
  };
  for (const table of opts.reference) {
    const d = destOf(byName.get(table)!);
    const state = dest.tables.get(key(d));
    if (inTenantSchema(table, 'create_reference_table')) continue;
    if (state && state.citus !== 'local') {
      if (state.citus !== 'reference') notes.push(`${key(d)} is already ${describeCitusTable(state.citus, state.distributionColumn)}: left as is`);
      continue;
    }
    layouts.set(table, { kind: 'reference' });
    steps.push({ phase: 'distribute', action: 'create reference table', object: key(d), sql: [referenceSql(d)] });
  }
  let first: { schema: string; name: string } | undefined;
  // Under --colocate every new distributed table goes with the first one named.
  let colocated: string | null = null;
  for (const { table, column } of opts.distribute) {
    const d = destOf(byName.get(table)!);
    const state = dest.tables.get(key(d));
    const colocateWith = opts.colocate ? first : undefined;
    if (!first) {
      first = d;
      const l = layouts.get(table)!;
      colocated = l.kind === 'distributed' ? l.group : l.kind === 'local' ? `with:${key(d)}` : null;
    }
    if (inTenantSchema(table, `create_distributed_table by ${column}`)) continue;
    if (state && state.citus !== 'local') {
      if (state.citus !== 'distributed' || state.distributionColumn !== column) {
        notes.push(`${key(d)} is already ${describeCitusTable(state.citus, state.distributionColumn)}: left as is (wanted ${column})`);
      }
      continue;
    }
    layouts.set(table, { kind: 'distributed', column, group: opts.colocate ? colocated : defaultGroup(byName.get(table)!, column) });
    steps.push({ phase: 'distribute', action: `distribute by ${column}`, object: key(d), sql: [distributeSql(d, column, colocateWith)] });
    if (byName.get(table)!.columns.find((c) => c.name === column)?.notNull === false) notes.push(nullableDistributionNote(table, d, column, opts.extendKeys));
  }
  for (const t of model.tables) {
    if (layouts.get(key(t))!.kind === 'local') {
      notes.push(`${key(destOf(t))} stays a local table on the coordinator (named in neither --distribute nor --reference): its rows all live there; distribute it or make it a reference table now, before data arrives`);
    }
    for (const c of t.constraints) {
      if (!c.references) continue;
      const to = layouts.get(`${c.references.schema}.${c.references.table}`);
      const reason = to && citusForeignKeyRefusal(c, layouts.get(key(t))!, to, t);
      if (reason) notes.push(`foreign key ${c.name} on ${key(destOf(t))}: Citus will refuse it at cut-over: ${reason}; ${REFUSED_FK_REMEDY}`);
    }
  }
  const citusLocal = new Set(model.tables.filter((t) => dest.tables.get(key(destOf(t)))?.citusLocal === true).map(key));
  notes.push(...viewsOverLocalTables(viewSteps, layouts, citusLocal));
  return { steps: [...steps, ...viewSteps.map((v) => v.step)], notes, problems };
}

/**
 * Under --colocate each new distributed table goes with the first one named, and Citus's
 * create_distributed_table refuses unless that one is hash-distributed (or about to be) and
 * the two distribution columns have the same type: said before any step runs, instead of the
 * distribute phase stopping half done. `layouts`: the tables' layouts before the plan.
 */
function colocationProblems(opts: CopyOptions, layouts: Map<string, CitusLayout>, table: (name: string) => TableDef): string[] {
  const [first, ...rest] = opts.distribute;
  if (!opts.colocate || !first) return [];
  const typeOf = (name: string, column: string) => table(name).columns.find((c) => c.name === column)?.type;
  const anchor = layouts.get(first.table)!;
  if (anchor.kind === 'reference' || anchor.kind === 'single-shard') {
    return [`--colocate: ${first.table}, named first, is ${anchor.kind === 'reference' ? 'already a reference table' : 'a single-shard table (a table of a distributed schema, or already one)'}: Citus colocates new tables only with a hash-distributed one; name such a table first`];
  }
  const column = anchor.kind === 'distributed' ? anchor.column : first.column;
  const want = typeOf(first.table, column);
  if (want === undefined) return [];
  const out: string[] = [];
  for (const d of rest) {
    if (layouts.get(d.table)!.kind !== 'local') continue;
    const type = typeOf(d.table, d.column);
    if (type !== want) {
      out.push(`--colocate: ${d.table}.${d.column} is ${type}, but ${first.table}, named first, is distributed by ${column} (${want}): Citus colocates only distribution columns of one type`);
    }
  }
  return out;
}

/**
 * What Citus refuses of a partitioned table: a reference table that is partitioned, a
 * distributed (or single-shard) one with partitions partitioned in turn, and, in a distributed
 * schema, partitions in another schema than their table (create_distributed_table.c,
 * EnsureRelationCanBeDistributed; table.c, ErrorIfMultiLevelPartitioning; schema_based_sharding.c,
 * ErrorIfIllegalPartitioningInTenantSchema). Said before any step runs: the distribution calls
 * run after the DDL has committed, and a refusal there left the tables created but local.
 */
function citusPartitionProblems(
  model: SchemaModel,
  dest: DestinationState,
  opts: CopyOptions,
  destOf: (t: TableDef) => { schema: string; name: string },
  layouts: Map<string, CitusLayout>,
): string[] {
  const out: string[] = [];
  const tenant = (schema: string) => dest.distributedSchemas?.has(schema) || (dest.schemaBasedSharding === true && !dest.schemas.has(schema));
  for (const t of model.tables.filter((x) => x.kind === 'p')) {
    const d = destOf(t);
    const state = dest.tables.get(key(d));
    if (state && state.citus !== 'local') continue;
    const layout = layouts.get(key(t))!;
    if (opts.reference.includes(key(t)) && layout.kind === 'local') {
      out.push(`${key(d)} is partitioned, and Citus makes no partitioned reference table ("distributing partitioned tables in only supported for hash-distributed tables"): distribute it instead (--distribute ${key(t)}=<column>; its partitions go with it), or leave it out of --reference (a local table on the coordinator)`);
    }
    if (state) continue; // its partitions are the destination's, not created here
    const partitions = t.partitions ?? [];
    const sub = partitions.filter((p) => p.partitionKey);
    const distributed = layout.kind === 'single-shard' || opts.distribute.some((x) => x.table === key(t));
    if (distributed && sub.length) {
      out.push(`${key(d)}: its partition${sub.length > 1 ? 's' : ''} ${sub.map(key).join(', ')} ${sub.length > 1 ? 'are' : 'is'} partitioned in turn, and Citus does not distribute multi-level partitioned tables ("distributing multi-level partitioned tables is not supported"): ${layout.kind === 'single-shard' ? `create it outside distributed schema ${d.schema}, or` : `leave it out of --distribute (a local table on the coordinator), or`} create it on the destination by hand with one level of partitions (schema copy then distributes it as it is)`);
    }
    const elsewhere = partitions.filter((p) => p.schema !== d.schema);
    if (elsewhere.length && (layout.kind === 'single-shard' || elsewhere.some((p) => tenant(p.schema)))) {
      out.push(`${key(d)}: partition${elsewhere.length > 1 ? 's' : ''} ${elsewhere.map(key).join(', ')} ${elsewhere.length > 1 ? 'are' : 'is'} in another schema than ${d.schema}, and a distributed schema is involved, which Citus refuses ("partitioning within a distributed schema is not supported when the parent and the child are in different schemas"): create ${key(d)} and its partitions by hand in one schema`);
    }
  }
  return out;
}

/**
 * A destination table's Citus layout before the plan: as it is (local when absent), or, when
 * schema copy is to create it in a distributed schema (an existing one, or one it creates while
 * schema-based sharding is on), the single-shard table Citus will make it.
 */
function layoutBefore(dest: DestinationState, d: { schema: string; name: string }): CitusLayout {
  const state = dest.tables.get(key(d));
  if (state) {
    const group = state.colocationId == null ? null : `id:${state.colocationId}`;
    if (state.citus === 'distributed') return { kind: 'distributed', column: state.distributionColumn ?? '', group };
    return state.citus === 'single-shard' ? { kind: 'single-shard', group } : { kind: state.citus };
  }
  const group = dest.citus ? dest.distributedSchemas?.get(d.schema) : undefined;
  if (group !== undefined) return { kind: 'single-shard', group: `id:${group}` };
  if (dest.citus && dest.schemaBasedSharding && !dest.schemas.has(d.schema)) return { kind: 'single-shard', group: `schema:${d.schema}` };
  return { kind: 'local' };
}

export { resolveDistribution, resolveTableArg } from './plan-args.ts';

/** A virtual generated column the destination gets STORED: the same values, read as before; they take space. Pure. */
function virtualColumnNote(d: { schema: string; name: string }, column: string, citus: boolean): string {
  const why = citus ? 'Citus documents no VIRTUAL generated columns' : 'there are none before PostgreSQL 18';
  return `${key(d)}.${column} is a virtual generated column on the source: created STORED on the destination (${why}), with the same values; it takes disk space there`;
}
