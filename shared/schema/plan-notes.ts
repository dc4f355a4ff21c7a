/**
 * Pure texts of `schema copy`'s plan that say what a table's definition means on the
 * destination: large-object columns, a distribution column the source lets be NULL, an index's keys.
 */
import { quoteIdent, splitQualifiedName } from '../../source-connector/catalog.ts';
import { LARGE_OBJECT_REMEDY } from '../../source-connector/checks.ts';
import type { ConstraintDef, SchemaModel, TableDef } from './model.ts';
import { qualify } from './generate.ts';

const key = (t: { schema: string; name: string }) => `${t.schema}.${t.name}`;

/** An index's keys as its definition gives them, expressions and predicate too (`columns` leaves expressions out): `(lower(name))`. */
export const indexKeys = (i: { definition: string; columns: string[] }) => / USING \S+ (\(.*)$/.exec(i.definition)?.[1] ?? `(${i.columns.join(', ')})`;

/**
 * A distribution column the source lets be NULL: Citus refuses a row with NULL there, so such a
 * row would stop the sink at that table (and --extend-keys, putting it in a key, makes it NOT NULL).
 */
export function nullableDistributionNote(table: string, d: { schema: string; name: string }, column: string, extendKeys: boolean): string {
  const t = splitQualifiedName(table);
  return `${key(d)}.${column}, its distribution column, allows NULL on the source, and Citus refuses a row with NULL there ("cannot perform an INSERT with NULL in the partition column")${extendKeys ? ', as does the NOT NULL that a key extended with it implies' : ''}: such a row would stop the sink at this table. ` +
    `Check that none has it (SELECT count(*) FROM ${quoteIdent(t.schema)}.${quoteIdent(t.table)} WHERE ${quoteIdent(column)} IS NULL on the source) and keep it so with ALTER TABLE … ALTER COLUMN ${quoteIdent(column)} SET NOT NULL there, or distribute by a NOT NULL column`;
}

/**
 * Columns typed `oid`, or a domain over it (the lo extension's `lo`): references to large
 * objects, which logical replication does not carry (check and the source's start say so too).
 */
export function largeObjectNotes(model: SchemaModel, destOf: (t: TableDef) => { schema: string; name: string }): string[] {
  const overOid = new Set(model.types.filter((t) => t.kind === 'domain' && t.baseType === 'oid').map((t) => key(t)));
  return model.tables.flatMap((t) =>
    t.columns
      .filter((c) => c.type === 'oid' || overOid.has(c.type))
      .map((c) => `${key(destOf(t))}.${c.name} (${c.type}) holds large-object references: the migration carries the numbers, not the objects; ${LARGE_OBJECT_REMEDY}`),
  );
}

/** A check constraint NOT VALID on the source, created without it (generate.ts, notValidCheck): what to run after cut-over. */
export function notValidCheckNote(d: { schema: string; name: string }, c: ConstraintDef): string {
  return `${key(d)}: check constraint ${c.name} is NOT VALID on the source (rows written before it may break it), and the destination checks every row the sink writes, so such a row would stop the sink: created without it; ` +
    `after cut-over, ALTER TABLE ${qualify(d)} ADD CONSTRAINT ${quoteIdent(c.name)} ${c.definition} (NOT VALID spares the rows already there)`;
}
