/** SQL quoting shared by both connectors and the commands. Pure. */

/** `"name"`, inner double quotes doubled. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** `'text'`, inner single quotes doubled (standard_conforming_strings is on since 9.1; the replication grammar has no backslash escapes). */
export function quoteLiteral(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}
