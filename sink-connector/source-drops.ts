/**
 * Columns the source dropped: records of a table version older than the drop still carry the
 * column, and the destination, altered as the source was, no longer has it. Applying them
 * (a replay from before the drop, or a sink that lagged behind it) must write them without
 * that column, as the source has it now, instead of stalling for an ADD COLUMN or adding a
 * column back under autoEvolve that the source no longer has. Which version is the latest is
 * asked of the registry (a fresh sink replaying from offset 0 has not seen it yet) once per
 * version and catalog read that meets missing columns: never per row or per batch.
 */
import type { Logger } from '../shared/logger.ts';
import type { ApplyTable } from './sink-change.ts';
import type { TableVersion } from './schema-compile.ts';

/** A version of a source table as far as the decision needs it: its id and source column names. */
export interface LaterVersion {
  schemaId: number;
  /** The source table it names; null when the schema names none (then it is the topic's own). */
  source: { schema: string; table: string } | null;
  sourceColumns: readonly string[];
}

/** The latest value schema under a topic's subject (`<topic>-value`); null when the subject has none. Throws when the registry does not answer. */
export type LatestVersionOf = (topic: string) => Promise<LaterVersion | null>;

/** A table version as a LaterVersion (the versions the sink saw in-process). */
export const asLaterVersion = (v: TableVersion): LaterVersion => ({ schemaId: v.schemaId, source: v.source, sourceColumns: v.columns.map((c) => c.source ?? c.name) });

/**
 * Of `missing` (columns of `version`, destination names, that the destination lacks), those the
 * source dropped since: the newest known version of the same source table, later than `version`
 * (a higher schema id: the registry's ids grow), lacks the column's source name. A column the
 * newest version has again (dropped, then added back) is not among them. Pure.
 */
export function droppedAtSource(
  version: TableVersion,
  missing: readonly { name: string }[],
  known: Iterable<LaterVersion>,
): { columns: string[]; newest: LaterVersion } | null {
  let newest: LaterVersion | null = null;
  for (const k of known) {
    const sameSource = k.source === null || (k.source.schema === version.source.schema && k.source.table === version.source.table);
    if (sameSource && k.schemaId > version.schemaId && (newest === null || k.schemaId > newest.schemaId)) newest = k;
  }
  if (newest === null) return null;
  const has = new Set(newest.sourceColumns);
  const sourceOf = new Map(version.columns.map((c) => [c.name, c.source ?? c.name]));
  const columns = missing.filter((c) => !has.has(sourceOf.get(c.name) ?? c.name)).map((c) => c.name);
  return columns.length === 0 ? null : { columns, newest };
}

/** The decisions of one sink process: per catalog read (ApplyTable) and version, and which drops were logged. */
export class SourceDrops {
  private readonly decided = new WeakMap<ApplyTable, Map<number, ReadonlySet<string>>>();
  /** Per topic, the registry request in flight: partitions meeting it at once share it; the next event asks again. */
  private readonly asking = new Map<string, Promise<LaterVersion | null>>();
  private readonly logged = new Set<string>();

  constructor(
    private readonly latestOf: LatestVersionOf | undefined,
    private readonly logger: Logger,
  ) {}

  /**
   * Of `missing`, the columns the source dropped since `version` (see droppedAtSource), with
   * `seen` the versions this process saw; 'unknown' when the registry did not answer (then the
   * caller stalls as before, and its retry asks again).
   */
  async dropped(table: ApplyTable, version: TableVersion, topic: string, missing: readonly { name: string }[], seen: Iterable<TableVersion>): Promise<ReadonlySet<string> | 'unknown'> {
    let byVersion = this.decided.get(table);
    const hit = byVersion?.get(version.schemaId);
    if (hit) return hit;
    const known = [...seen].map(asLaterVersion);
    if (this.latestOf) {
      try {
        const latest = await this.latest(topic);
        if (latest) known.push(latest);
      } catch (err) {
        // The stall's remedy says so (missingColumnError); its retries ask again.
        this.logger.debug({ err, topic, table: `${table.schema}.${table.name}` }, 'could not ask the schema registry for the latest version of the table: whether the source dropped the missing column is not known');
        return 'unknown';
      }
    }
    const found = droppedAtSource(version, missing, known);
    const out: ReadonlySet<string> = new Set(found?.columns);
    if (!byVersion) this.decided.set(table, (byVersion = new Map()));
    byVersion.set(version.schemaId, out);
    if (found) this.log(table, version, found.columns, found.newest);
    return out;
  }

  private latest(topic: string): Promise<LaterVersion | null> {
    let p = this.asking.get(topic);
    if (!p) {
      p = this.latestOf!(topic);
      this.asking.set(topic, p);
      const forget = () => {
        if (this.asking.get(topic) === p) this.asking.delete(topic);
      };
      p.then(forget, forget);
    }
    return p;
  }

  private log(table: ApplyTable, version: TableVersion, columns: readonly string[], newest: LaterVersion): void {
    const qn = `${table.schema}.${table.name}`;
    const src = `${version.source.schema}.${version.source.table}`;
    for (const column of columns) {
      const key = `${qn}\u0000${column}`;
      if (this.logged.has(key)) continue;
      this.logged.add(key);
      this.logger.info(
        { table: qn, column, schemaId: version.schemaId, laterSchemaId: newest.schemaId },
        `column ${column} of ${src} (schema ${version.schemaId}) is applied without its values: the source dropped it in a later version (schema ${newest.schemaId}) and the destination has no such column: its values are not written`,
      );
    }
  }
}
