/**
 * Start-up checks on the source: gather facts (one round of catalog queries), then judge
 * them with pure functions so `shardbridge check` and the connector share the verdicts.
 */
import type pg from 'pg';
import { tableSequences, type ResolvedTables } from './catalog.ts';
import { topicNameProblems } from './table-versions.ts';
import { IDLE_SLOT_TIMEOUT_OFF, invalidatedSlot } from '../shared/migration/remedies.ts';
import { WAL_KEEP_SIZE_REMEDY, WAL_KEEP_UNLIMITED } from '../shared/checks/capacity.ts';
import { publicationFindings, publicationNarrowing, type PublicationFacts } from './publication.ts';
import { failoverFindings } from './failover-checks.ts';
import { gatherStandbyFacts, invalidationReasonSql, standbyFindings, type StandbyFacts } from './standby.ts';
import { gatherKeyEquality, keyEqualityFindings, type KeyEqualityFact } from './key-equality.ts';
import { sourcePoolerError, toldOtherPid } from '../shared/checks/pooler.ts';
import { describePrepared, preparedRemedy, readPreparedTransactions, type PreparedTransaction } from './prepared-xacts.ts';

export type FindingLevel = 'PASS' | 'WARN' | 'FAIL';

export interface Finding {
  level: FindingLevel;
  check: string;
  object: string;
  message: string;
  remedy?: string;
}

export interface SourceFacts {
  /** `server_version_num`, e.g. 150004. */
  serverVersionNum: number;
  /** pg_is_in_recovery(): a standby. */
  inRecovery: boolean;
  walLevel: string;
  /** The database's encoding (`server_encoding`). */
  serverEncoding: string;
  maxReplicationSlots: number;
  usedReplicationSlots: number;
  maxWalSenders: number;
  usedWalSenders: number;
  role: string;
  canReplicate: boolean;
  /** The connection reaches the server through a pooler (shared/checks/pooler.ts); unset: not asked. */
  pooler?: boolean;
  /** Our slot, if it exists. */
  slot: { active: boolean; activePid: number | null; walStatus: string | null; plugin: string | null; invalidationReason?: string | null; failover?: boolean | null } | null;
  slotName: string;
  /** The slotFailover setting; unset (a caller that does not say): the existing slot's own flag. */
  slotFailover?: boolean;
  /** The primary's physical standbys: physical slots, and WAL senders holding no slot (unset: not asked). */
  physicalStandbys?: string[];
  /** The physical slots' names (unset: not asked). */
  physicalSlots?: string[];
  /** synchronized_standby_slots (PostgreSQL 17+; null before). */
  synchronizedStandbySlots?: string | null;
  missingTables: string[];
  tablesWithoutPrimaryKey: string[];
  /** Tables whose replica identity the stream cannot key by their primary key (catalog.ts). */
  badReplicaIdentity: { table: string; message: string; remedy: string }[];
  /** Tables whose topic name Kafka would refuse or another table shares (table-versions.ts). */
  topicProblems: { table: string; message: string; remedy: string }[];
  /** Sequences of the selected tables (owned or called in a default) that the role can neither SELECT nor USE: pg_sequences shows them as never used. */
  unreadableSequences: string[];
  selectedTables: number;
  maxSlotWalKeepSize: string;
  /** idle_replication_slot_timeout as SHOW prints it (PostgreSQL 18+; null before). */
  idleSlotTimeout?: string | null;
  /** Selected tables the role cannot SELECT: the snapshot could not read them. */
  unreadableTables: string[];
  /** Selected tables whose row-level security policies apply to the role: its snapshot would read only the rows they show. */
  rowSecurityTables: { table: string; forced: boolean; owner: string }[];
  /** Selected tables that are UNLOGGED, or have an UNLOGGED partition: their changes are not in the WAL. */
  unloggedTables: { table: string; unlogged: string; sql: string }[];
  publication: PublicationFacts;
  /** Key columns whose equal values can differ in their bytes, without a canonical key text (key-equality.ts). */
  keyEquality: KeyEqualityFact[];
  topicPrefix: string;
  /** Large objects in the database (`pg_largeobject_metadata`): logical replication does not carry them. */
  largeObjects: number;
  /** Columns of selected tables typed `oid` or a domain over it (the lo extension's `lo`): references to large objects, most likely. */
  largeObjectColumns: { table: string; column: string; type: string }[];
  /** Prepared transactions of the cluster (two-phase commit): a slot's creation waits for each to end. */
  preparedTransactions: PreparedTransaction[];
  /** Whether `primary` is configured (unset: not). */
  primaryConfigured?: boolean;
  /** A standby source's settings and its primary's identity (standby.ts); unset on a primary. */
  standby?: StandbyFacts;
}

export const WAL_LEVEL_REMEDY = [
  'add to postgresql.conf (a restart of the source server is required):',
  '    wal_level = logical',
  '    max_replication_slots = 5   # has to be > 0',
  '    max_wal_senders = 5         # has to be > 0',
  'on Amazon RDS: set rds.logical_replication = 1 in the parameter group and reboot',
].join('\n');

export async function gatherSourceFacts(
  client: pg.ClientBase,
  opts: { slotName: string; publicationName: string; topicPrefix: string; resolved: ResolvedTables; slotFailover?: boolean; primary?: { client: pg.ClientBase; endpoint: string } | null; primaryConfigured?: boolean },
): Promise<SourceFacts> {
  const { rows: [s] } = await client.query(`
    SELECT current_setting('server_version_num')::int AS version_num, pg_is_in_recovery() AS in_recovery,
           current_setting('wal_level') AS wal_level,
           current_setting('server_encoding') AS encoding,
           current_setting('max_replication_slots')::int AS max_slots,
           (SELECT count(*)::int FROM pg_replication_slots) AS used_slots,
           current_setting('max_wal_senders')::int AS max_senders,
           (SELECT count(*)::int FROM pg_stat_replication) AS used_senders,
           current_user AS role,
           (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user)
             OR EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = 'rds_replication' AND pg_has_role(current_user, r.oid, 'member'))
             AS can_replicate,
           current_setting('max_slot_wal_keep_size') AS keep_size, current_setting('idle_replication_slot_timeout', true) AS idle_slot_timeout,
           current_setting('synchronized_standby_slots', true) AS standby_slots,
           pg_backend_pid() AS pid`);
  const { resolved } = opts;
  const relids = resolved.tables.map((t) => t.relid);
  const sequences = await tableSequences(client, relids);
  const { rows: slots } = await client.query(
    `SELECT active, active_pid, wal_status, plugin, ${invalidationReasonSql()} AS invalidation_reason, (to_jsonb(s) ->> 'failover')::boolean AS failover
       FROM pg_replication_slots s WHERE slot_name = $1`,
    [opts.slotName],
  );
  // A WAL sender holding a slot is named by it (a logical slot's is no standby; a physical one is listed above).
  const { rows: standbys } = await client.query(
    `SELECT 'physical slot ' || slot_name AS standby, slot_name AS slot FROM pg_replication_slots WHERE slot_type = 'physical'
     UNION ALL
     SELECT 'WAL sender to ' || coalesce(nullif(r.application_name, ''), 'pid ' || r.pid) || coalesce(' at ' || host(r.client_addr), ''), NULL
       FROM pg_stat_replication r WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots l WHERE l.active_pid = r.pid)
     ORDER BY 1`,
  );
  const standby = s.in_recovery === true && s.version_num >= 160000 ? await gatherStandbyFacts(client, opts.primary ?? null) : undefined;
  // A standby source's publication is made by primary's role (standby.ts): judged for it, when primary is the standby's own (its roles are the standby's).
  const writer = standby?.primary && standby.primary.systemIdentifier === standby.systemIdentifier ? standby.primary.role : null;
  const { rows: tables } = await client.query(
    `SELECT c.oid::int AS relid, n.nspname || '.' || c.relname AS name, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS sql, has_table_privilege(c.oid, 'SELECT') AS readable,
            pg_has_role(coalesce($3::name, current_user), c.relowner, 'MEMBER') AS owned,
            (SELECT ARRAY[ln.nspname || '.' || l.relname, quote_ident(ln.nspname) || '.' || quote_ident(l.relname)] FROM (SELECT c.oid AS relid, 0 AS level UNION ALL SELECT relid, level FROM pg_partition_tree(c.oid) WHERE level > 0) pt
              JOIN pg_class l ON l.oid = pt.relid JOIN pg_namespace ln ON ln.oid = l.relnamespace
              WHERE l.relpersistence = 'u' ORDER BY pt.level, 1 LIMIT 1) AS unlogged,
            -- As PostgreSQL decides whether RLS applies to a query (check_enable_rls): the walsender's stream is not filtered, the snapshot's COPY is.
            c.relrowsecurity AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)
              AND (c.relforcerowsecurity OR NOT pg_has_role(current_user, c.relowner, 'USAGE')) AS row_security,
            c.relforcerowsecurity AS forced, pg_get_userbyid(c.relowner) AS owner,
            EXISTS (SELECT 1 FROM pg_publication_tables pt WHERE pt.pubname = $2 AND pt.schemaname = n.nspname AND pt.tablename = c.relname) AS published
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY($1::oid[]) ORDER BY 2`,
    [relids, opts.publicationName, writer],
  );
  const { rows: [pub] } = await client.query(
    `SELECT current_database() AS db, has_database_privilege(coalesce($2::name, current_user), current_database(), 'CREATE') AS can_create,
            p.oid IS NOT NULL AS exists, coalesce(p.puballtables, false) AS all_tables, coalesce(p.pubviaroot, false) AS via_root,
            coalesce(pg_has_role(coalesce($2::name, current_user), p.pubowner, 'MEMBER'), false) AS owned,
            (SELECT count(*)::int FROM pg_publication_tables pt WHERE pt.pubname = $1) AS listed
       FROM (SELECT 1) one LEFT JOIN pg_publication p ON p.pubname = $1`,
    [opts.publicationName, writer],
  );
  const published = tables.filter((t) => t.published).length;
  const narrowing = await publicationNarrowing(client, opts.publicationName);
  const keyEquality = await gatherKeyEquality(client, relids, s.version_num);
  const lo = await largeObjectFacts(client, relids);
  const preparedTransactions = await readPreparedTransactions(client);
  return {
    serverVersionNum: s.version_num,
    inRecovery: s.in_recovery === true,
    walLevel: s.wal_level,
    serverEncoding: s.encoding,
    maxReplicationSlots: s.max_slots,
    usedReplicationSlots: s.used_slots,
    maxWalSenders: s.max_senders,
    usedWalSenders: s.used_senders,
    role: s.role,
    canReplicate: s.can_replicate === true,
    pooler: toldOtherPid(client, Number(s.pid)),
    slot: slots[0] ? { active: slots[0].active, activePid: slots[0].active_pid, walStatus: slots[0].wal_status, plugin: slots[0].plugin, invalidationReason: slots[0].invalidation_reason, failover: slots[0].failover } : null,
    slotName: opts.slotName,
    slotFailover: opts.slotFailover,
    physicalStandbys: standbys.map((r) => r.standby as string),
    physicalSlots: standbys.filter((r) => r.slot !== null).map((r) => r.slot as string),
    synchronizedStandbySlots: s.standby_slots,
    missingTables: resolved.missing,
    tablesWithoutPrimaryKey: resolved.noPrimaryKey,
    badReplicaIdentity: resolved.badReplicaIdentity,
    topicProblems: topicNameProblems(opts.topicPrefix, resolved.tables),
    unreadableSequences: sequences.filter((o) => !o.readable).map((o) => o.sequence),
    selectedTables: resolved.tables.length,
    maxSlotWalKeepSize: s.keep_size,
    idleSlotTimeout: s.idle_slot_timeout,
    unreadableTables: tables.filter((t) => !t.readable).map((t) => t.name),
    rowSecurityTables: tables.filter((t) => t.row_security).map((t) => ({ table: t.name, forced: t.forced, owner: t.owner })),
    unloggedTables: tables.filter((t) => t.unlogged !== null).map((t) => ({ table: t.name, unlogged: t.unlogged[0], sql: t.unlogged[1] })),
    keyEquality,
    topicPrefix: opts.topicPrefix,
    ...lo,
    preparedTransactions,
    primaryConfigured: opts.primaryConfigured,
    standby,
    publication: {
      name: opts.publicationName,
      role: writer ?? s.role,
      database: pub.db,
      exists: pub.exists,
      allTables: pub.all_tables,
      owned: pub.owned,
      // A publish option or a row filter / column list that leaves changes out is mended too (publication.ts, ensurePublication).
      differs: !pub.exists || !pub.via_root || published !== tables.length || pub.listed !== published || (narrowing !== null && (!narrowing.everyOp || narrowing.filtered.length > 0)),
      notOwned: tables.filter((t) => !t.published && !t.owned).map((t) => ({ name: t.name, sql: t.sql })),
      canCreate: pub.can_create,
      tables: tables.map((t) => ({ name: t.name, sql: t.sql })),
    },
  };
}

/**
 * Large objects live in pg_largeobject, a system catalog no publication can list: a table's
 * `oid` / `lo` column travels as the number only. pg_largeobject_metadata is readable by every role.
 */
async function largeObjectFacts(client: pg.ClientBase, relids: number[]): Promise<Pick<SourceFacts, 'largeObjects' | 'largeObjectColumns'>> {
  const largeObjects = await countLargeObjects(client);
  const { rows } = await client.query(
    `SELECT n.nspname || '.' || c.relname AS table, a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid
      WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
        AND (a.atttypid = 'oid'::regtype OR (t.typtype = 'd' AND t.typbasetype = 'oid'::regtype))
      ORDER BY 1, a.attnum`,
    [relids],
  );
  return { largeObjects, largeObjectColumns: rows.map((r) => ({ table: r.table, column: r.column, type: r.type })) };
}

/** How many large objects the database holds (check and the source's start; cutover, on each side). */
export async function countLargeObjects(client: pg.ClientBase): Promise<number> {
  return Number((await client.query(`SELECT count(*)::float8 AS n FROM pg_largeobject_metadata`)).rows[0].n);
}

/** Pure: the verdicts. Any FAIL stops the connector before it creates anything. */
export function judgeSourceFacts(f: SourceFacts): Finding[] {
  const out: Finding[] = [];
  // A standby (16+) with its primary, or refused (standby.ts).
  out.push(...standbyFindings(f));
  if (f.pooler) {
    const e = sourcePoolerError('source.url', "the server session's pid is not the one the connection was given");
    out.push({ level: 'FAIL', check: 'connection pooler', object: 'source', message: e.message, remedy: e.remedy });
  }
  // pgoutput's `messages` option (heartbeats, cut-over markers) needs 14.
  if (f.serverVersionNum < 140000) {
    const v = `${Math.floor(f.serverVersionNum / 10000)}`;
    out.push({ level: 'FAIL', check: 'server version', object: 'server', message: `PostgreSQL ${v}: the source connector needs PostgreSQL 14 or newer (pgoutput's logical-message option)`, remedy: 'upgrade the source server to PostgreSQL 14 or newer' });
  }
  out.push(
    f.walLevel === 'logical'
      ? { level: 'PASS', check: 'wal_level', object: 'server', message: 'wal_level = logical' }
      : { level: 'FAIL', check: 'wal_level', object: 'server', message: `wal_level is '${f.walLevel}', logical replication needs 'logical'`, remedy: WAL_LEVEL_REMEDY },
  );
  if (!f.slot) {
    out.push(
      f.usedReplicationSlots < f.maxReplicationSlots
        ? { level: 'PASS', check: 'replication slots', object: 'server', message: `${f.usedReplicationSlots} of ${f.maxReplicationSlots} slots in use` }
        : { level: 'FAIL', check: 'replication slots', object: 'server', message: `no free replication slot (${f.usedReplicationSlots} of max_replication_slots = ${f.maxReplicationSlots} in use)`, remedy: 'raise max_replication_slots in postgresql.conf (restart required) or drop an unused slot with pg_drop_replication_slot()' },
    );
  }
  out.push(
    f.usedWalSenders < f.maxWalSenders
      ? { level: 'PASS', check: 'wal senders', object: 'server', message: `${f.usedWalSenders} of ${f.maxWalSenders} WAL senders in use` }
      : { level: 'FAIL', check: 'wal senders', object: 'server', message: `no free WAL sender (${f.usedWalSenders} of max_wal_senders = ${f.maxWalSenders} in use)`, remedy: 'raise max_wal_senders in postgresql.conf (restart required)' },
  );
  out.push(
    f.canReplicate
      ? { level: 'PASS', check: 'replication privilege', object: `role ${f.role}`, message: 'role may replicate' }
      : { level: 'FAIL', check: 'replication privilege', object: `role ${f.role}`, message: `role "${f.role}" lacks the REPLICATION attribute`, remedy: `ALTER ROLE "${f.role}" WITH REPLICATION;  (on RDS: GRANT rds_replication TO "${f.role}";)` },
  );
  for (const t of f.missingTables) {
    out.push({ level: 'FAIL', check: 'table exists', object: t, message: `table ${t} is listed in tables.include but does not exist`, remedy: 'create it or remove it from tables.include' });
  }
  if (f.selectedTables === 0 && f.missingTables.length === 0) {
    out.push({ level: 'FAIL', check: 'tables', object: 'selection', message: 'no table matches tables.schemas / tables.include', remedy: 'check tables.schemas and tables.include' });
  }
  for (const t of f.tablesWithoutPrimaryKey) {
    out.push({
      level: 'FAIL',
      check: 'primary key',
      object: t,
      message: `table ${t} has no primary key: its changes cannot be applied by key`,
      remedy: `ALTER TABLE ${t} ADD PRIMARY KEY (...);  or add "${t}" to tables.exclude`,
    });
  }
  for (const r of f.rowSecurityTables) {
    out.push({
      level: 'FAIL',
      check: 'row-level security',
      object: r.table,
      message: `table ${r.table} has row-level security${r.forced ? ' (FORCE)' : ''} that applies to role "${f.role}": the snapshot would read only the rows its policies show, while the stream carries every change`,
      remedy: `ALTER ROLE "${f.role}" BYPASSRLS;  (a superuser can)${r.forced ? ` or ALTER TABLE ${r.table} NO FORCE ROW LEVEL SECURITY and connect as its owner "${r.owner}"` : ` or connect as its owner "${r.owner}"`}`,
    });
  }
  for (const u of f.unloggedTables) {
    const what = u.unlogged === u.table ? `table ${u.table} is UNLOGGED` : `partition ${u.unlogged} of ${u.table} is UNLOGGED`;
    out.push({
      level: 'FAIL',
      check: 'unlogged',
      object: u.table,
      message: `${what}: its changes are not written to the WAL, so logical replication cannot carry them`,
      remedy: `ALTER TABLE ${u.sql} SET LOGGED;  (rewrites it) or add "${u.table}" to tables.exclude`,
    });
  }
  for (const b of f.badReplicaIdentity) {
    out.push({ level: 'FAIL', check: 'replica identity', object: b.table, message: b.message, remedy: b.remedy });
  }
  for (const seq of f.unreadableSequences) {
    out.push({
      level: 'FAIL',
      check: 'sequence privilege',
      object: seq,
      message: `role "${f.role}" cannot read sequence ${seq}: its value would be published as unknown, and cutover could not move the destination's sequence past it`,
      remedy: `GRANT SELECT ON SEQUENCE ${seq} TO "${f.role}";  (or GRANT SELECT ON ALL SEQUENCES IN SCHEMA …)`,
    });
  }
  for (const t of f.unreadableTables) {
    out.push({ level: 'FAIL', check: 'table privilege', object: t, message: `role "${f.role}" cannot SELECT ${t}: the snapshot could not read it`, remedy: `GRANT SELECT ON ${t} TO "${f.role}";  (or GRANT SELECT ON ALL TABLES IN SCHEMA …)` });
  }
  out.push(...publicationFindings(f.publication, f.publication.role ?? f.role));
  for (const b of f.topicProblems) {
    out.push({ level: 'FAIL', check: 'topic name', object: b.table, message: b.message, remedy: b.remedy });
  }
  if (f.slot) {
    if (f.slot.walStatus === 'lost') {
      out.push({ level: 'FAIL', check: 'slot', object: f.slotName, ...invalidatedSlot(f.slotName, f.slot.invalidationReason) });
    } else if (f.slot.active) {
      out.push({ level: 'FAIL', check: 'slot', object: f.slotName, message: `replication slot "${f.slotName}" is active in another process (pid ${f.slot.activePid})`, remedy: 'stop the other connector, or use a different slotName' });
    } else if (f.slot.plugin && f.slot.plugin !== 'pgoutput') {
      out.push({ level: 'FAIL', check: 'slot', object: f.slotName, message: `replication slot "${f.slotName}" uses plugin ${f.slot.plugin}, not pgoutput`, remedy: 'use a different slotName' });
    } else {
      out.push({ level: 'PASS', check: 'slot', object: f.slotName, message: 'existing slot will be reused' });
    }
  }
  out.push(...failoverFindings(f));
  out.push(...keyEqualityFindings(f.keyEquality, f.topicPrefix));
  out.push(...largeObjectFindings(f));
  if (f.preparedTransactions.length > 0) {
    const p = f.preparedTransactions;
    // Our slot made already waits for nothing; a table's own snapshot still makes a temporary one.
    const when = f.slot ? "a table's own snapshot (its temporary slot) and resnapshot wait" : 'the first start waits, creating the replication slot,';
    out.push({
      level: 'WARN',
      check: 'prepared transactions',
      object: 'server',
      message: `${p.length} prepared transaction(s), the oldest ${describePrepared(p[0])}: ${when} until each one is committed or rolled back, and pg_stat_activity does not show them`,
      remedy: `${preparedRemedy(p)}: a slot's creation waits until every one of them ended`,
    });
  }
  if (f.serverEncoding === 'SQL_ASCII') {
    // Every other server encoding converts to the sessions' UTF-8; SQL_ASCII text is bytes.
    out.push({
      level: 'WARN',
      check: 'encoding',
      object: 'database',
      message: 'the database encoding is SQL_ASCII: text that is not valid UTF-8 cannot be carried (Avro strings are UTF-8); the connector stops at the first such value (invalid byte sequence for encoding "UTF8")',
      remedy: 'make sure every text value is UTF-8, or move the data to a UTF8 database',
    });
  }
  if (f.maxSlotWalKeepSize === '-1') {
    out.push({ level: 'WARN', check: 'max_slot_wal_keep_size', object: 'server', message: WAL_KEEP_UNLIMITED, remedy: `${WAL_KEEP_SIZE_REMEDY}: a stall then invalidates the slot instead of filling the disk; a reload is enough (SELECT pg_reload_conf())` });
  }
  if (f.idleSlotTimeout && f.idleSlotTimeout !== '0') {
    out.push({
      level: 'WARN',
      check: 'idle_replication_slot_timeout',
      object: 'server',
      message: `idle_replication_slot_timeout = ${f.idleSlotTimeout}: a slot no connector streams from for longer (a stopped or stalled source connector, or one taking a long snapshot of a table of its own) is invalidated at the next checkpoint, and the migration must start over from a new snapshot`,
      remedy: `${IDLE_SLOT_TIMEOUT_OFF};  (for the migration; or a value longer than any stop you plan)`,
    });
  }
  return out;
}

export const LARGE_OBJECT_REMEDY =
  "copy the large objects at cut-over, after the last write (their OIDs kept): pg_dump --data-only --blobs --exclude-schema='*' <source> | psql <destination> (--large-objects from PostgreSQL 16; only the large objects), or lo_export / lo_import(path, oid) per object; or move them into bytea columns before the migration";

/**
 * Large objects are not in any publication: a selected table's `oid` / `lo` column arrives as a
 * number pointing at nothing, found only after cut-over. A warning, not a refusal: the numbers
 * themselves are carried, and the objects can be copied at cut-over. Pure.
 */
function largeObjectFindings(f: SourceFacts): Finding[] {
  const count = `${f.largeObjects} large object${f.largeObjects === 1 ? '' : 's'}`;
  const out: Finding[] = f.largeObjectColumns.map((c) => ({
    level: 'WARN' as const,
    check: 'large objects',
    object: `${c.table}.${c.column}`,
    message: `column ${c.column} of ${c.table} is ${c.type}: if it refers to large objects (the database has ${count}), only the numbers are migrated: logical replication does not carry pg_largeobject, so the destination has no objects behind them`,
    remedy: LARGE_OBJECT_REMEDY,
  }));
  if (out.length === 0 && f.largeObjects > 0) {
    out.push({
      level: 'WARN',
      check: 'large objects',
      object: 'database',
      message: `the database has ${count}, which logical replication does not carry; no selected table has an oid or lo column, but one that refers to them otherwise (a bigint column, a function) finds none on the destination`,
      remedy: LARGE_OBJECT_REMEDY,
    });
  }
  return out;
}

export function formatFindings(findings: Finding[]): string {
  return findings
    .map((f) => `${f.level.padEnd(4)}  ${f.check.padEnd(22)} ${f.object.padEnd(24)} ${f.message}${f.remedy && f.level !== 'PASS' ? `\n      remedy: ${f.remedy.replace(/\n/g, '\n      ')}` : ''}`)
    .join('\n');
}
