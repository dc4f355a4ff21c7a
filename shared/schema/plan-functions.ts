/**
 * Functions the selected tables' definitions call (defaults, generated columns, check
 * constraints, index expressions and predicates, domain checks). `schema copy` creates no
 * function: one missing on the destination made the DDL transaction fail at that table with
 * PostgreSQL's bare `function … does not exist`. Said up front instead, with where it is called
 * and what to do. Pure.
 */
import type { FunctionUse } from './model.ts';

/**
 * Problems for the functions in `uses` missing on the destination (`present`: `schema.name`
 * there, any arguments) that a table or domain still to be created calls (`creates`: the
 * source `schema.name` of those).
 */
export function missingFunctionProblems(uses: readonly FunctionUse[], present: ReadonlySet<string>, creates: (owner: string) => boolean): string[] {
  return uses
    .filter((f) => !present.has(`${f.schema}.${f.name}`) && f.owners.some(creates))
    .map((f) => {
      const where = `called by ${f.usedBy.join(', ')}`;
      const remedy = f.extension
        ? `it belongs to extension ${f.extension}: CREATE EXTENSION ${f.extension} on the destination first (on Citus, on the coordinator, which creates it on the workers too; its files must be installed on every node)`
        : `create it on the destination first (pg_dump --schema-only of the source prints its CREATE FUNCTION; on Citus, create it through the coordinator, which passes it to the workers), then run schema copy again`;
      return `function ${f.signature} is missing on the destination (${where}), and schema copy creates no function: ${remedy}`;
    });
}
