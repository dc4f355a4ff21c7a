/** SQL quoting shared by both connectors and the commands. Pure. */

/** `"name"`, inner double quotes doubled. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** `'text'`, inner single quotes doubled (standard_conforming_strings is on since 9.1; the replication grammar has no backslash escapes). */
export function quoteLiteral(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/**
 * `CREATE SCHEMA IF NOT EXISTS` for ShardBridge's own schemas (`shardbridge`,
 * `shardbridge_staging`) with Citus's schema-based sharding off: with it on, a new schema
 * becomes a distributed schema and its tables Citus tables, and the sink's offsets table must
 * stay a plain coordinator table (a Citus-managed one errors after a parallel multi-shard write
 * in the same transaction, citus issue 6729). The setting is put back after, for the user's own
 * schemas created in the same transaction. Without Citus, plain CREATE SCHEMA.
 */
export function createOwnSchemasSql(...schemas: string[]): string {
  const creates = schemas.map((s) => `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(s)};`).join(' ');
  return `DO $$
DECLARE sharding text := current_setting('citus.enable_schema_based_sharding', true);
BEGIN
  IF sharding IS NOT NULL THEN PERFORM set_config('citus.enable_schema_based_sharding', 'off', true); END IF;
  ${creates}
  IF sharding IS NOT NULL THEN PERFORM set_config('citus.enable_schema_based_sharding', sharding, true); END IF;
END $$`;
}

/** `schema.table`, accepting quoted identifiers: `"My Schema"."T"`. */
export function splitQualifiedName(name: string, defaultSchema = 'public'): { schema: string; table: string } {
  const parts: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < name.length; i++) {
    const ch = name[i];
    if (quoted) {
      if (ch === '"' && name[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === '.') {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  parts.push(cur);
  return parts.length >= 2 ? { schema: parts[0], table: parts.slice(1).join('.') } : { schema: defaultSchema, table: parts[0] };
}
