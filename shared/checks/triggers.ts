/**
 * Triggers on the destination tables, which the sink's writes fire while PostgreSQL's own
 * logical replication (and pg_dump's restore, --disable-triggers) would not: its apply worker
 * runs with session_replication_role = replica. Read by `check`, the sink's start and `cutover`;
 * the judgements are pure, the reads below them thin.
 */
import type pg from 'pg';
import { resnapshotCommand } from '../migration/remedies.ts';

/** `pg_trigger.tgenabled`: O fires under origin (the default), A always, R under replica only, D never. */
export type TriggerEnabled = 'O' | 'A' | 'R' | 'D';

export interface DestinationTrigger {
  name: string;
  enabled: TriggerEnabled;
  /** Set for a trigger of one of the table's partitions of its own (not a clone of the table's): the table's ALTER does not reach it. */
  partition?: Named;
}

export type ReplicationRole = 'origin' | 'replica';

interface Named {
  schema: string;
  name: string;
}

const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
const qn = (t: Named) => `${q(t.schema)}.${q(t.name)}`;

/**
 * The user's triggers (not PostgreSQL's internal ones, such as foreign keys' and Citus's
 * truncate_trigger) of each table, in the order given, and those its partitions have of their
 * own (a partitioned table's trigger is cloned onto each partition: the clones are the table's);
 * a missing table has none.
 */
export async function readTriggers(client: pg.ClientBase, tables: readonly Named[]): Promise<DestinationTrigger[][]> {
  const out = tables.map((): DestinationTrigger[] => []);
  if (tables.length === 0) return out;
  const { rows } = await client.query<{ i: string; name: string; enabled: TriggerEnabled; pschema: string | null; pname: string | null }>(
    `SELECT x.i, t.tgname AS name, t.tgenabled AS enabled,
            CASE WHEN r.oid <> c.oid THEN rn.nspname END AS pschema, CASE WHEN r.oid <> c.oid THEN r.relname END AS pname
       FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(s, n, i)
       JOIN pg_namespace ns ON ns.nspname = x.s
       JOIN pg_class c ON c.relnamespace = ns.oid AND c.relname = x.n
       -- pg_partition_tree lists nothing for a table that is not partitioned
       CROSS JOIN LATERAL (SELECT c.oid AS relid, 0 AS level UNION ALL SELECT relid, level FROM pg_partition_tree(c.oid) WHERE level > 0) pt
       JOIN pg_class r ON r.oid = pt.relid JOIN pg_namespace rn ON rn.oid = r.relnamespace
       JOIN pg_trigger t ON t.tgrelid = r.oid
      WHERE NOT t.tgisinternal AND (r.oid = c.oid OR t.tgparentid = 0)
      ORDER BY x.i, pt.level, 5 NULLS FIRST, t.tgname`,
    [tables.map((t) => t.schema), tables.map((t) => t.name)],
  );
  for (const r of rows) {
    out[Number(r.i) - 1].push({ name: r.name, enabled: r.enabled, ...(r.pschema !== null && r.pname !== null ? { partition: { schema: r.pschema, name: r.pname } } : {}) });
  }
  return out;
}

/**
 * Citus refuses ALTER TABLE … ENABLE / DISABLE TRIGGER on a distributed or reference table
 * ("triggers are not supported on distributed tables", trigger.c ErrorOutForTriggerIfNotSupported)
 * unless the session sets citus.enable_unsafe_triggers (any role may); it then passes it to the
 * shards. Citus's own truncate_trigger is internal: DISABLE TRIGGER USER leaves it alone.
 */
const UNSAFE_TRIGGERS = 'SET citus.enable_unsafe_triggers = on; ';
const CITUS_TRIGGER_NOTE =
  'on Citus in one session after SET citus.enable_unsafe_triggers = on, without which Citus refuses ALTER TABLE … TRIGGER on a distributed or reference table ("triggers are not supported on distributed tables"); Citus passes it to the shards';

/** A trigger as messages name it. */
const label = (t: DestinationTrigger) => (t.partition ? `${t.name} (of partition ${t.partition.schema}.${t.partition.name})` : t.name);
/** `ALTER TABLE … ENABLE / DISABLE TRIGGER "name";` on the relation that has the trigger. */
const alterTrigger = (table: Named, t: DestinationTrigger, verb: 'ENABLE' | 'DISABLE') => `ALTER TABLE ${qn(t.partition ?? table)} ${verb} TRIGGER ${q(t.name)};`;

/** Whether this session's role may set session_replication_role (a superuser, or PG15's GRANT SET ON PARAMETER). */
export async function canSetReplicationRole(client: pg.ClientBase): Promise<boolean> {
  try {
    await client.query('SET session_replication_role = replica');
    await client.query('RESET session_replication_role');
    return true;
  } catch (err) {
    if ((err as { code?: string }).code === '42501') return false;
    throw err;
  }
}

/** The triggers that fire for the rows a session of this role writes. Pure. */
export function firingTriggers(triggers: readonly DestinationTrigger[], role: ReplicationRole): DestinationTrigger[] {
  return triggers.filter((t) => t.enabled === 'A' || t.enabled === (role === 'replica' ? 'R' : 'O'));
}

/**
 * What the sink's writes into this table fire, said with the remedy; null when nothing fires.
 * `role` is the one the sink's sessions run with (origin on Citus: replica is refused there). Pure.
 */
export function triggerWarning(table: Named, triggers: readonly DestinationTrigger[], role: ReplicationRole, citus: boolean): { message: string; remedy: string } | null {
  const firing = firingTriggers(triggers, role);
  if (firing.length === 0) return null;
  const names = firing.map(label).join(', ');
  const plural = firing.length > 1;
  const what = `trigger${plural ? 's' : ''} ${names} on ${table.schema}.${table.name} fire${plural ? '' : 's'} for every row the sink applies`;
  const why =
    "a trigger that changes the row (updated_at = now()) makes it differ from the source's, and cutover's verification with it; one that writes elsewhere (an audit table) writes again what the source's own trigger wrote there, which the migration carries too";
  if (role === 'replica') {
    return {
      message: `${what}, also under sessionReplicationRole: replica (ENABLE ALWAYS or ENABLE REPLICA): ${why}`,
      remedy: firing.map((t) => alterTrigger(table, t, 'DISABLE')).join(' ') + ' until cut-over, then ENABLE them again as they were',
    };
  }
  const always = firing.filter((t) => t.enabled === 'A').map(label);
  // DISABLE TRIGGER USER on a partitioned table reaches the clones of its triggers, not a partition's own.
  const own = firing.filter((t) => t.partition);
  const partitions = own.length ? ` ${own.map((t) => alterTrigger(table, t, 'DISABLE')).join(' ')} (a partition's own trigger)` : '';
  const alternative = citus
    ? ` (${CITUS_TRIGGER_NOTE}; sessionReplicationRole: replica is refused on Citus)`
    : `; or set sessionReplicationRole: replica in the sink's configuration${always.length ? `, which does not stop ${always.join(', ')} (ENABLE ALWAYS)` : ''}`;
  const unsafe = citus ? UNSAFE_TRIGGERS : '';
  return {
    message: `${what} (PostgreSQL's own logical replication would not fire them): ${why}`,
    remedy: `until cut-over: ${unsafe}ALTER TABLE ${qn(table)} DISABLE TRIGGER USER;${partitions} and at cut-over ${unsafe}ALTER TABLE ${qn(table)} ENABLE TRIGGER USER; (cutover names triggers left disabled)${alternative}`,
  };
}

/**
 * Why the sink may not run with session_replication_role = replica on this destination; null
 * when it may. On Citus the setting stays on the coordinator's session: Citus does not pass it
 * to the workers' connections (it propagates SET LOCAL of a few settings, under
 * citus.propagate_set_commands, and nothing of a session's startup options), so the shards'
 * triggers and foreign keys still fire; and the coordinator's own internal truncate_trigger,
 * through which Citus truncates a distributed table's shards, would not fire: a truncate
 * would empty the coordinator's shell table and leave every shard's rows. Pure.
 */
export function replicationRoleRefusal(citus: boolean, canSet: boolean, role: string): { message: string; remedy: string } | null {
  if (citus) {
    return {
      message:
        "sessionReplicationRole: replica is refused on Citus: the setting does not reach the workers' shard sessions (their triggers and foreign keys would still fire), and it stops Citus's own truncate_trigger on the coordinator, so a truncate would leave the shards' rows",
      remedy: `remove sessionReplicationRole (or set origin) and disable the destination tables' triggers until cut-over: ${UNSAFE_TRIGGERS}ALTER TABLE … DISABLE TRIGGER USER (${CITUS_TRIGGER_NOTE})`,
    };
  }
  if (!canSet) {
    return {
      message: `sessionReplicationRole: replica, but role "${role}" may not set session_replication_role`,
      remedy: `as a superuser: GRANT SET ON PARAMETER session_replication_role TO "${role}"; (PostgreSQL 15 and later; before 15 only a superuser may set it), or remove sessionReplicationRole and disable the triggers: ALTER TABLE … DISABLE TRIGGER USER`,
    };
  }
  return null;
}

/**
 * Cutover's hint for a table its verification found different whose triggers fire for the sink's
 * rows: the likely cause (one that sets updated_at = now()), what stops them, and the snapshot
 * taken again that repairs the rows they changed. Pure.
 */
export function differingTableTriggerHints(tables: readonly { table: Named; source: string; triggers: readonly DestinationTrigger[] }[], role: ReplicationRole, citus = false): string[] {
  return tables.flatMap(({ table, source, triggers }) => {
    const w = triggerWarning(table, triggers, role, citus);
    if (w === null) return [];
    const firing = firingTriggers(triggers, role);
    return [
      `${table.schema}.${table.name} differs from the source, and trigger${firing.length > 1 ? 's' : ''} ${firing.map(label).join(', ')} fire${firing.length > 1 ? '' : 's'} for the rows the sink applies there: a likely cause. ` +
        `Stop ${firing.length > 1 ? 'them' : 'it'} (${w.remedy}), then take the table's snapshot again: ${resnapshotCommand(source)}`,
    ];
  });
}

/** Cutover's reminder: user triggers left disabled on the destination tables, with the statement that enables them (on Citus after the SET that lets it). Pure. */
export function disabledTriggerReminders(tables: readonly { table: Named; triggers: readonly DestinationTrigger[] }[], citus = false): string[] {
  return tables.flatMap(({ table, triggers }) => {
    const off = triggers.filter((t) => t.enabled === 'D');
    if (off.length === 0) return [];
    return [
      `trigger${off.length > 1 ? 's' : ''} ${off.map(label).join(', ')} on ${table.schema}.${table.name} ${off.length > 1 ? 'are' : 'is'} disabled: if disabled for the migration, enable ${off.length > 1 ? 'them' : 'it'} before the application writes: ${citus ? UNSAFE_TRIGGERS : ''}${off.map((t) => alterTrigger(table, t, 'ENABLE')).join(' ')}`,
    ];
  });
}
