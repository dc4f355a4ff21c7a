/**
 * The connector's publication on the source (on a standby source, written on its primary:
 * standby.ts): what it leaves out of the selected tables, its creation or mending, and what
 * the start-up checks judge of the role that does it (checks.ts).
 */
import type pg from 'pg';
import type { Logger } from '../shared/logger.ts';
import { SourceError } from '../shared/errors.ts';
import { isReadOnlyRefusal, readOnlyExplained, readOnlyOrigin } from './read-only-default.ts';
import type { TableInfo } from '../shared/pg-types.ts';
import { quoteIdent, quoteQualified } from './catalog.ts';
import type { Finding } from './checks.ts';

/**
 * The selected tables (`schema.name`) an existing publication lacks: ensurePublication will add
 * them, and the slot streamed none of their changes while they were out of it (they left the
 * selection, or were dropped and created again). None when the publication does not exist.
 */
export interface PublicationGaps {
  /** Whether the publication exists (restart-drift.ts publicationGone when it does not and the slot does). */
  exists: boolean;
  /** Its oid, when it exists. */
  oid?: number;
  /** Selected tables the publication does not list. */
  missing: string[];
  /** Selected tables it lists but leaves changes of out: a row filter, a column list, or a publish option without some operation. */
  narrowed: string[];
}

/** What the publication leaves out of the selected tables' changes now (before ensurePublication mends it); tables as `schema.name`. */
export async function publicationGaps(client: pg.ClientBase, name: string, selected: string[]): Promise<PublicationGaps> {
  const { rows: [pub] } = await client.query(
    `SELECT oid::int AS oid, ARRAY(SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1) AS tables FROM pg_publication WHERE pubname = $1`,
    [name],
  );
  if (!pub) return { exists: false, missing: [], narrowed: [] };
  const have = new Set(pub.tables as string[]);
  const listed = selected.filter((t) => have.has(t));
  return { exists: true, oid: pub.oid, missing: selected.filter((t) => !have.has(t)), narrowed: narrowedOf(listed, (await publicationNarrowing(client, name))!) };
}

/** The publication's oid (recorded in the slot's marker: control-topics.ts), undefined when there is none. */
export async function publicationOidOf(client: pg.ClientBase, name: string): Promise<number | undefined> {
  const { rows: [pub] } = await client.query(`SELECT oid::int AS oid FROM pg_publication WHERE pubname = $1`, [name]);
  return pub?.oid;
}

/** Pure: of the listed tables, those whose changes the publication leaves partly out. */
export function narrowedOf(listed: string[], n: PublicationNarrowing): string[] {
  return n.everyOp ? listed.filter((t) => n.filtered.includes(t)) : listed;
}

/**
 * Create the publication for `tables`, or make an existing one list exactly them. Returns what
 * was done. ONLY: an inheritance child is not selected with its parent (a partitioned table's
 * partitions are published with it all the same). `side`: the key `client` comes from, for a
 * refusal's message (a standby source's publication is made on `primary`).
 */
export async function ensurePublication(
  client: pg.ClientBase,
  name: string,
  tables: TableInfo[],
  log: Logger,
  side: 'source' | 'primary' = 'source',
): Promise<'created' | 'altered' | 'unchanged'> {
  try {
    return await publicationFor(client, name, tables, log);
  } catch (err) {
    if (!isReadOnlyRefusal(err)) throw err;
    const explained = readOnlyExplained(await readOnlyOrigin(client), side, `creating or altering publication "${name}"`);
    if (!explained) throw err;
    const { message, remedy } = explained;
    throw new SourceError(message, { cause: err, context: { publication: name, phase: 'startup', setting: 'default_transaction_read_only' }, remedy });
  }
}

async function publicationFor(client: pg.ClientBase, name: string, tables: TableInfo[], log: Logger): Promise<'created' | 'altered' | 'unchanged'> {
  const list = tables.map((t) => `ONLY ${quoteQualified(t)}`).join(', ');
  const { rows: pubs } = await client.query(`SELECT puballtables, pubviaroot FROM pg_publication WHERE pubname = $1`, [name]);
  if (pubs.length === 0) {
    // Changes of a partitioned table's partitions under the table's own identity (and topic),
    // as its snapshot reads them: without it pgoutput names each leaf partition.
    await client.query(`CREATE PUBLICATION ${quoteIdent(name)} FOR TABLE ${list} WITH (publish_via_partition_root = true)`);
    log.info({ publication: name, tables: tables.length }, 'publication created');
    return 'created';
  }
  if (pubs[0].puballtables) {
    throw new SourceError(`publication "${name}" is FOR ALL TABLES; ShardBridge manages its publication's table list`, {
      context: { publication: name, phase: 'startup' },
      remedy: 'drop the publication or set publicationName to another name',
    });
  }
  let altered = false;
  if (!pubs[0].pubviaroot) {
    await client.query(`ALTER PUBLICATION ${quoteIdent(name)} SET (publish_via_partition_root = true)`);
    log.info({ publication: name }, 'publication set to publish partitions via their root table');
    altered = true;
  }
  // A publication made or changed by hand may leave changes out without a word: some
  // operations (publish = 'insert, update'), a table's rows (a row filter) or columns (a
  // column list). Every change of every column is what the destination needs.
  const narrowing = (await publicationNarrowing(client, name))!;
  if (!narrowing.everyOp) {
    await client.query(`ALTER PUBLICATION ${quoteIdent(name)} SET (publish = 'insert, update, delete, truncate')`);
    log.warn({ publication: name }, 'the publication left out some operations (its publish option): set to publish inserts, updates, deletes and truncates');
    altered = true;
  }
  const { rows } = await client.query(`SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables WHERE pubname = $1`, [name]);
  const have = new Set(rows.map((r) => r.t as string));
  const want = new Set(tables.map((t) => `${t.schema}.${t.name}`));
  const narrowed = narrowing.filtered;
  if (narrowed.length === 0 && have.size === want.size && [...want].every((t) => have.has(t))) return altered ? 'altered' : 'unchanged';
  // SET TABLE replaces every entry: filters and column lists go with them.
  await client.query(`ALTER PUBLICATION ${quoteIdent(name)} SET TABLE ${list}`);
  if (narrowed.length > 0) log.warn({ publication: name, tables: narrowed }, 'the publication had a row filter or a column list on these tables: removed, every row and column is published');
  log.info(
    { publication: name, added: [...want].filter((t) => !have.has(t)), removed: [...have].filter((t) => !want.has(t)) },
    'publication table list changed',
  );
  return 'altered';
}

/** What a publication leaves out of its tables' changes. */
export interface PublicationNarrowing {
  /** It publishes inserts, updates, deletes and truncates. */
  everyOp: boolean;
  /** `schema.name` of its tables with a row filter or a column list. */
  filtered: string[];
}

/**
 * The publication's narrowing, or null when it does not exist (row filters and column lists:
 * PostgreSQL 15's prqual, prattrs, read through to_jsonb so that the query runs on 14 too).
 */
export async function publicationNarrowing(client: pg.ClientBase, publication: string): Promise<PublicationNarrowing | null> {
  const { rows: [p] } = await client.query(
    `SELECT p.pubinsert AND p.pubupdate AND p.pubdelete AND p.pubtruncate AS every_op,
            ARRAY(SELECT n.nspname || '.' || c.relname
                    FROM pg_publication_rel r JOIN pg_class c ON c.oid = r.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE r.prpubid = p.oid AND (to_jsonb(r) ->> 'prqual' IS NOT NULL OR to_jsonb(r) ->> 'prattrs' IS NOT NULL)
                   ORDER BY 1) AS filtered
       FROM pg_publication p WHERE p.pubname = $1`,
    [publication],
  );
  return p ? { everyOp: p.every_op, filtered: p.filtered } : null;
}

/** What the connector's CREATE / ALTER PUBLICATION will need (ensurePublication, above): gathered with the start-up checks' facts (checks.ts). */
export interface PublicationFacts {
  name: string;
  /** The role that creates or alters it: the source's, a standby source's primary's (`primary`). */
  role?: string;
  database: string;
  exists: boolean;
  allTables: boolean;
  /** The role is (a member of) its owner: ALTER PUBLICATION needs that. */
  owned: boolean;
  /** Its table list differs from the selection, or publish_via_partition_root is off: the connector alters it. */
  differs: boolean;
  /** Selected tables it lacks (all of them when it does not exist) that the role does not own: adding a table needs its ownership. */
  notOwned: PublicationTable[];
  /** CREATE on the database, which CREATE PUBLICATION needs. */
  canCreate: boolean;
  /** Every selected table, for the remedy's statement. */
  tables: PublicationTable[];
}

/** `name` as messages print it, `sql` quoted for a statement. */
export interface PublicationTable {
  name: string;
  sql: string;
}

/** Whether the role can create or alter the publication as the connector will. Pure. */
export function publicationFindings(p: PublicationFacts, role: string): Finding[] {
  const object = `publication ${p.name}`;
  if (p.tables.length === 0) return [];
  const pub = quoteIdent(p.name);
  // As the tables' owner (or a superuser), then handed over: what docker/source-init.sql does.
  const create = `as the tables' owner: CREATE PUBLICATION ${pub} FOR TABLE ${p.tables.map((t) => t.sql).join(', ')} WITH (publish_via_partition_root = true); ALTER PUBLICATION ${pub} OWNER TO "${role}";`;
  const few = (ts: PublicationTable[]) => ts.slice(0, 5).map((t) => t.name).join(', ') + (ts.length > 5 ? `, … (${ts.length} in all)` : '');
  if (p.exists && p.allTables) {
    return [{ level: 'FAIL', check: 'publication', object, message: `publication ${p.name} is FOR ALL TABLES; the connector manages its publication's table list`, remedy: 'drop it, or set publicationName to another name' }];
  }
  if (!p.exists) {
    const out: Finding[] = [];
    if (!p.canCreate) out.push({ level: 'FAIL', check: 'publication', object, message: `role "${role}" cannot create publication ${p.name}: it lacks CREATE on database ${p.database}`, remedy: `GRANT CREATE ON DATABASE ${quoteIdent(p.database)} TO "${role}";  or create it ${create}` });
    if (p.notOwned.length > 0) out.push({ level: 'FAIL', check: 'publication', object, message: `creating publication ${p.name} FOR TABLE needs ownership of each table; role "${role}" does not own ${few(p.notOwned)}`, remedy: `create it ${create}` });
    return out.length > 0 ? out : [{ level: 'PASS', check: 'publication', object, message: 'the connector will create it' }];
  }
  if (!p.differs) return [{ level: 'PASS', check: 'publication', object, message: 'lists every selected table' }];
  if (!p.owned) {
    return [{ level: 'FAIL', check: 'publication', object, message: `publication ${p.name} differs from the selected tables (or publish_via_partition_root is off), and role "${role}" does not own it to alter it`, remedy: `ALTER PUBLICATION ${pub} OWNER TO "${role}";  (as its owner)` }];
  }
  if (p.notOwned.length > 0) {
    return [{ level: 'FAIL', check: 'publication', object, message: `adding tables to publication ${p.name} needs their ownership; role "${role}" does not own ${few(p.notOwned)}`, remedy: `as their owner: ALTER PUBLICATION ${pub} ADD TABLE ${p.notOwned.map((t) => t.sql).join(', ')};` }];
  }
  return [{ level: 'PASS', check: 'publication', object, message: 'the connector will alter it to the selected tables' }];
}
