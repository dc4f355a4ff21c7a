/**
 * Which foreign keys Citus will refuse when `cutover` adds them, given the layout the
 * destination tables will have after `schema copy`. Citus checks a foreign key when it is
 * added (commands/foreign_constraint.c): a distributed table may reference a reference table,
 * or a distributed table colocated with it with the two distribution columns paired in the
 * key; a single-shard table a reference table or a single-shard table of its own colocation
 * group; a reference table only reference tables, or local ones without cascading actions;
 * a key that includes the referencing table's distribution column cannot SET NULL /
 * SET DEFAULT on delete, nor SET NULL / SET DEFAULT / CASCADE on update; and no key may
 * SET DEFAULT a column defaulting to a sequence. Schema copy says so before any data moves
 * instead of cut-over failing at the end. Pure.
 */
import type { ConstraintDef, ForeignKeyAction, TableDef } from './model.ts';

/**
 * `group`: the colocation group when it can be told (`id:<colocationid>` for an existing
 * table, `type:<type>` for Citus's default colocation by column type, `with:<table>` under
 * --colocate); groups are compared only within one kind.
 */
export type CitusLayout =
  | { kind: 'local' }
  | { kind: 'reference' }
  | { kind: 'distributed'; column: string; group: string | null }
  | { kind: 'single-shard'; group: string | null };

const ACTION: Record<ForeignKeyAction, string> = { a: 'NO ACTION', r: 'RESTRICT', c: 'CASCADE', n: 'SET NULL', d: 'SET DEFAULT' };

/**
 * Why Citus refuses foreign key `fk` from a table laid out as `from` to one laid out as `to`;
 * null when it accepts it or it cannot be told. `table`: the referencing table, whose column
 * defaults Citus also checks.
 */
export function citusForeignKeyRefusal(fk: ConstraintDef, from: CitusLayout, to: CitusLayout, table?: TableDef): string | null {
  const ref = fk.references;
  if (!ref) return null;
  // Citus drops nextval defaults from shards, so SET DEFAULT would write NULL there; checked for any key a Citus table is part of.
  const onSequence = table && !(from.kind === 'local' && to.kind === 'local') ? setDefaultOnSequence(fk, table) : null;
  if (onSequence) return `SET DEFAULT is not supported on ${onSequence}, whose default is a sequence's nextval`;
  if (!distributed(from)) {
    if (from.kind === 'reference' && to.kind === 'local' && !(noAction(ref.onDelete) && noAction(ref.onUpdate))) {
      // Citus makes the local table a Citus local table, whose changes it cannot cascade to the reference table's copies.
      return `a reference table can reference a local table only with NO ACTION or RESTRICT, not ON DELETE ${ACTION[ref.onDelete]} / ON UPDATE ${ACTION[ref.onUpdate]}`;
    }
    if (!distributed(to)) return null;
    return from.kind === 'reference'
      ? 'a reference table cannot reference a distributed table'
      : "a local table cannot reference a distributed table (Citus takes such a key from a table outside its metadata but does not enforce it on the distributed table's deletes and key changes, so cutover does not create it)";
  }
  if (to.kind === 'local') return 'a distributed table can only reference a reference table or a distributed table colocated with it, and the referenced table stays local';
  if (from.kind === 'single-shard' || to.kind === 'single-shard') {
    // A single-shard table has no distribution column, and its colocation group holds single-shard tables only.
    if (to.kind === 'reference') return null;
    if (from.kind !== to.kind) return 'the two tables are not colocated: a single-shard table is colocated only with single-shard tables';
    return from.group !== null && to.group !== null && from.group !== to.group ? 'the two single-shard tables are not colocated' : null;
  }
  const at = fk.columns.indexOf(from.column);
  if (at >= 0) {
    const includes = `when the key includes the distribution column ${from.column}`;
    if (ref.onDelete === 'n' || ref.onDelete === 'd') return `ON DELETE ${ACTION[ref.onDelete]} is not supported ${includes}`;
    if (ref.onUpdate === 'n' || ref.onUpdate === 'd' || ref.onUpdate === 'c') return `ON UPDATE ${ACTION[ref.onUpdate]} is not supported ${includes}`;
  }
  if (to.kind === 'reference') return null;
  if (from.group !== null && to.group !== null && kindOf(from.group) === kindOf(to.group) && from.group !== to.group) {
    return 'the two distributed tables are not colocated';
  }
  if (at < 0 || ref.columns[at] !== to.column) {
    return `between distributed tables the key must pair the distribution columns (${from.column} with ${to.column})`;
  }
  return null;
}

const kindOf = (group: string) => group.slice(0, group.indexOf(':'));
const noAction = (a: ForeignKeyAction) => a === 'a' || a === 'r';
const distributed = (l: CitusLayout) => l.kind === 'distributed' || l.kind === 'single-shard';

/** The first column a SET DEFAULT action of `fk` would set whose default calls nextval (ON UPDATE: every key column; ON DELETE: PostgreSQL 15's column list when given). */
function setDefaultOnSequence(fk: ConstraintDef, t: TableDef): string | null {
  const ref = fk.references!;
  let set: string[] = [];
  if (ref.onUpdate === 'd') set = fk.columns;
  else if (ref.onDelete === 'd') set = setDefaultList(fk.definition) ?? fk.columns;
  const nextval = new Set(t.columns.filter((c) => c.default !== null && /\bnextval\(/.test(c.default)).map((c) => c.name));
  return set.find((c) => nextval.has(c)) ?? null;
}

/** `ON DELETE SET DEFAULT (a, "B")` in a `pg_get_constraintdef` text: the columns named; null without a list. */
function setDefaultList(definition: string): string[] | null {
  const m = /ON DELETE SET DEFAULT \(((?:[^)"]|"(?:[^"]|"")*")*)\)/.exec(definition);
  if (!m) return null;
  return (m[1].match(/"(?:[^"]|"")*"|[^,\s]+/g) ?? []).map((c) => (c.startsWith('"') ? c.slice(1, -1).replace(/""/g, '"') : c));
}

/** The default colocation group Citus gives a table distributed by `column` without colocate_with. */
export function defaultGroup(t: TableDef, column: string): string | null {
  const type = t.columns.find((c) => c.name === column)?.type;
  return type === undefined ? null : `type:${type}`;
}

/** The remedy that goes with a refusal. */
export const REFUSED_FK_REMEDY =
  'change the layout (--distribute, --reference, --colocate), or delete its row from shardbridge.deferred_foreign_keys and create a key Citus accepts by hand ' +
  '(the sink needs none: the source\'s cascades reach it as row changes)';
