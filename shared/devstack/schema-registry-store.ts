/**
 * The state and rules of the development schema registry (schema-registry-server.ts):
 * subjects, versions, global ids, compatibility levels. Pure: no I/O; the server
 * persists `toJSON()` after each change. DEVELOPMENT ONLY, like the server.
 */
import avro from 'avsc';
import { canonicalSchemaText } from '../registry/canonical.ts';

type AvroSchemaJson = Parameters<typeof avro.Type.forSchema>[0];

export const COMPATIBILITY_LEVELS = [
  'NONE',
  'BACKWARD',
  'BACKWARD_TRANSITIVE',
  'FORWARD',
  'FORWARD_TRANSITIVE',
  'FULL',
  'FULL_TRANSITIVE',
] as const;
export type CompatibilityLevel = (typeof COMPATIBILITY_LEVELS)[number];

export function isCompatibilityLevel(v: unknown): v is CompatibilityLevel {
  return typeof v === 'string' && (COMPATIBILITY_LEVELS as readonly string[]).includes(v);
}

/** A refusal in Confluent's terms: HTTP status plus `error_code`. */
export class RegistryHttpError extends Error {
  constructor(
    readonly status: number,
    readonly errorCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** A subject's version; `deleted`: soft-deleted (Confluent's DELETE without `permanent=true`). */
interface Version {
  version: number;
  id: number;
  deleted?: boolean;
}

export interface StoreState {
  schemas: { id: number; schema: string }[];
  subjects: Record<string, Version[]>;
  globalLevel: CompatibilityLevel;
  subjectLevels: Record<string, CompatibilityLevel>;
}

export interface SubjectVersion {
  subject: string;
  id: number;
  version: number;
  schema: string;
}

interface StoredSchema {
  id: number;
  /** The text as first registered (minified); returned by GET /schemas/ids/{id}. */
  schema: string;
  canonical: string;
}

export class SchemaStore {
  private readonly byId = new Map<number, StoredSchema>();
  private readonly idByCanonical = new Map<string, number>();
  /** Every version, soft-deleted ones too (they keep their numbers: a re-registration continues after them). */
  private readonly subjects = new Map<string, Version[]>();
  private readonly subjectLevels = new Map<string, CompatibilityLevel>();
  private globalLevel: CompatibilityLevel = 'BACKWARD';
  private readonly types = new Map<number, avro.Type>();

  constructor(state?: StoreState) {
    if (!state) return;
    for (const s of state.schemas) this.addSchema(s.id, s.schema);
    for (const [name, versions] of Object.entries(state.subjects)) this.subjects.set(name, versions.map((v) => ({ ...v })));
    for (const [name, level] of Object.entries(state.subjectLevels)) this.subjectLevels.set(name, level);
    this.globalLevel = state.globalLevel;
  }

  toJSON(): StoreState {
    return {
      schemas: [...this.byId.values()].map(({ id, schema }) => ({ id, schema })),
      subjects: Object.fromEntries([...this.subjects].map(([k, v]) => [k, v.map((x) => ({ ...x }))])),
      globalLevel: this.globalLevel,
      subjectLevels: Object.fromEntries(this.subjectLevels),
    };
  }

  /** Registers `schemaText` under `subject`; `changed` is false when it was there already. */
  register(subject: string, schemaText: unknown, schemaType?: unknown): { id: number; version: number; changed: boolean } {
    const parsed = parseSchema(schemaText, schemaType);
    const existing = this.findUnderSubject(subject, parsed.canonical);
    if (existing) return { id: existing.id, version: existing.version, changed: false };

    const versions = this.subjects.get(subject) ?? [];
    const problems = this.compatibilityProblems(parsed.type, live(versions), this.levelFor(subject), false);
    if (problems.length > 0) {
      throw new RegistryHttpError(409, 409, `Schema being registered is incompatible with an earlier schema for subject "${subject}": ${problems.join('; ')}`);
    }
    let id = this.idByCanonical.get(parsed.canonical);
    if (id === undefined) {
      id = Math.max(0, ...this.byId.keys()) + 1;
      this.addSchema(id, parsed.minified, parsed.type);
    }
    const version = (versions.at(-1)?.version ?? 0) + 1;
    versions.push({ version, id });
    this.subjects.set(subject, versions);
    return { id, version, changed: true };
  }

  /** POST /subjects/{s}: is this schema registered under the subject? */
  lookup(subject: string, schemaText: unknown, schemaType?: unknown): SubjectVersion {
    this.versionsOf(subject);
    const parsed = parseSchema(schemaText, schemaType);
    const hit = this.findUnderSubject(subject, parsed.canonical);
    if (!hit) throw new RegistryHttpError(404, 40403, 'Schema not found');
    return this.describe(subject, hit);
  }

  schemaById(id: number): string {
    const s = this.byId.get(id);
    if (!s) throw new RegistryHttpError(404, 40403, `Schema ${id} not found`);
    return s.schema;
  }

  /** The subject-versions of a schema; soft-deleted ones only with `deleted`. */
  subjectVersionsForId(id: number, deleted = false): { subject: string; version: number }[] {
    this.schemaById(id);
    const out: { subject: string; version: number }[] = [];
    for (const subject of this.subjectNames(true)) {
      for (const v of this.subjects.get(subject)!) if (v.id === id && (deleted || !v.deleted)) out.push({ subject, version: v.version });
    }
    return out;
  }

  /** Subjects with a version that is not soft-deleted; with `deleted`, the soft-deleted ones too. */
  subjectNames(deleted = false): string[] {
    return [...this.subjects].filter(([, versions]) => deleted || live(versions).length > 0).map(([name]) => name).sort();
  }

  versionNumbers(subject: string, deleted = false): number[] {
    return this.versionsOf(subject, deleted).map((v) => v.version);
  }

  /** `version` is a positive integer, `latest` or -1 (Confluent's alias for latest). */
  getVersion(subject: string, version: string, deleted = false): SubjectVersion {
    const versions = this.versionsOf(subject, deleted);
    return this.describe(subject, pickVersion(versions, version));
  }

  /**
   * DELETE /subjects/{s}: Confluent's two steps. A soft delete hides the subject's versions (their
   * schemas stay readable by id, the numbers are not reused, the level stays); `permanent` then
   * removes them and the level, and refuses a subject not soft-deleted first (40405).
   */
  deleteSubject(subject: string, permanent = false): number[] {
    const all = this.versionsOf(subject, true);
    const visible = live(all);
    if (permanent) {
      if (visible.length > 0) throw new RegistryHttpError(404, 40405, `Subject '${subject}' was not deleted first before being permanently deleted`);
      this.subjects.delete(subject);
      this.subjectLevels.delete(subject);
      return all.map((v) => v.version);
    }
    if (visible.length === 0) throw new RegistryHttpError(404, 40404, `Subject '${subject}' was soft deleted. Set permanent=true to delete permanently`);
    for (const v of visible) v.deleted = true;
    return visible.map((v) => v.version);
  }

  /** DELETE /subjects/{s}/versions/{v}: soft, then `permanent` (40407 when not soft-deleted first; 40406 soft-deleted twice). */
  deleteVersion(subject: string, version: string, permanent = false): number {
    const all = this.versionsOf(subject, true);
    const hit = pickVersion(version === 'latest' || version === '-1' ? live(all) : all, version);
    if (permanent) {
      if (!hit.deleted) throw new RegistryHttpError(404, 40407, `Subject '${subject}' Version ${hit.version} was not deleted first before being permanently deleted`);
      const rest = all.filter((v) => v !== hit);
      if (rest.length === 0) this.subjects.delete(subject);
      else this.subjects.set(subject, rest);
    } else {
      if (hit.deleted) throw new RegistryHttpError(404, 40406, `Subject '${subject}' Version ${hit.version} was soft deleted. Set permanent=true to delete permanently`);
      hit.deleted = true;
    }
    return hit.version;
  }

  /** The level in force for a subject: its own, else the global one. */
  levelFor(subject: string): CompatibilityLevel {
    return this.subjectLevels.get(subject) ?? this.globalLevel;
  }

  /** GET /config/{s}: Confluent answers 40408 when the subject has no level of its own. */
  subjectLevel(subject: string, defaultToGlobal: boolean): CompatibilityLevel {
    const own = this.subjectLevels.get(subject);
    if (own) return own;
    if (defaultToGlobal) return this.globalLevel;
    throw new RegistryHttpError(404, 40408, `Subject '${subject}' does not have subject-level compatibility configured`);
  }

  getGlobalLevel(): CompatibilityLevel {
    return this.globalLevel;
  }

  setLevel(subject: string | undefined, level: unknown): CompatibilityLevel {
    if (!isCompatibilityLevel(level)) {
      throw new RegistryHttpError(422, 42203, `Invalid compatibility level: ${String(level)}; valid: ${COMPATIBILITY_LEVELS.join(', ')}`);
    }
    if (subject === undefined) this.globalLevel = level;
    else this.subjectLevels.set(subject, level);
    return level;
  }

  deleteSubjectLevel(subject: string): CompatibilityLevel {
    const level = this.subjectLevel(subject, false);
    this.subjectLevels.delete(subject);
    return level;
  }

  /**
   * POST /compatibility/subjects/{s}/versions/{v}: messages, empty when compatible.
   * `latest` under a transitive level checks every version, as a registration would;
   * a numbered version checks against that version only.
   */
  testCompatibility(subject: string, version: string, schemaText: unknown, schemaType?: unknown): string[] {
    const versions = this.versionsOf(subject);
    const parsed = parseSchema(schemaText, schemaType);
    const level = this.levelFor(subject);
    if (version === 'latest' || version === '-1') return this.compatibilityProblems(parsed.type, versions, level, false);
    return this.compatibilityProblems(parsed.type, [pickVersion(versions, version)], level, true);
  }

  private compatibilityProblems(
    candidate: avro.Type,
    versions: Version[],
    level: CompatibilityLevel,
    onlyGiven: boolean,
  ): string[] {
    if (level === 'NONE' || versions.length === 0) return [];
    const transitive = level.endsWith('_TRANSITIVE');
    const against = onlyGiven || transitive ? versions : versions.slice(-1);
    const backward = level.startsWith('BACKWARD') || level.startsWith('FULL');
    const forward = level.startsWith('FORWARD') || level.startsWith('FULL');
    const problems: string[] = [];
    for (const v of against) {
      const old = this.typeOf(v.id);
      if (backward) {
        const why = resolutionProblem(candidate, old);
        if (why) problems.push(`new schema cannot read data written with version ${v.version} (${why})`);
      }
      if (forward) {
        const why = resolutionProblem(old, candidate);
        if (why) problems.push(`version ${v.version} cannot read data written with the new schema (${why})`);
      }
    }
    return problems;
  }

  /** A subject's versions, soft-deleted ones only with `deleted`; 40401 when none. */
  private versionsOf(subject: string, deleted = false): Version[] {
    const all = this.subjects.get(subject) ?? [];
    const versions = deleted ? all : live(all);
    if (versions.length === 0) throw new RegistryHttpError(404, 40401, `Subject '${subject}' not found.`);
    return versions;
  }

  /** The version holding the schema, soft-deleted ones aside (a soft-deleted schema registered again is a new version, as in Confluent). */
  private findUnderSubject(subject: string, canonical: string): Version | undefined {
    const id = this.idByCanonical.get(canonical);
    if (id === undefined) return undefined;
    return this.subjects.get(subject)?.find((v) => v.id === id && !v.deleted);
  }

  private describe(subject: string, v: { version: number; id: number }): SubjectVersion {
    return { subject, id: v.id, version: v.version, schema: this.schemaById(v.id) };
  }

  private addSchema(id: number, schema: string, type?: avro.Type): void {
    const canonical = canonicalSchemaText(JSON.parse(schema));
    this.byId.set(id, { id, schema, canonical });
    this.idByCanonical.set(canonical, id);
    if (type) this.types.set(id, type);
  }

  private typeOf(id: number): avro.Type {
    let t = this.types.get(id);
    if (!t) {
      t = avro.Type.forSchema(JSON.parse(this.schemaById(id)) as AvroSchemaJson);
      this.types.set(id, t);
    }
    return t;
  }
}

function live(versions: Version[]): Version[] {
  return versions.filter((v) => !v.deleted);
}

function pickVersion(versions: Version[], version: string): Version {
  if (version === 'latest' || version === '-1') {
    const last = versions.at(-1);
    if (!last) throw new RegistryHttpError(404, 40402, `Version ${version} not found.`);
    return last;
  }
  if (!/^[1-9][0-9]{0,9}$/.test(version)) {
    throw new RegistryHttpError(422, 42202, `The specified version '${version}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string "latest"`);
  }
  const hit = versions.find((v) => v.version === Number(version));
  if (!hit) throw new RegistryHttpError(404, 40402, `Version ${version} not found.`);
  return hit;
}

function parseSchema(schemaText: unknown, schemaType: unknown): { type: avro.Type; canonical: string; minified: string } {
  if (schemaType !== undefined && schemaType !== null && schemaType !== 'AVRO') {
    throw new RegistryHttpError(422, 42201, `Invalid schema: schemaType ${String(schemaType)} is not supported by this development registry (AVRO only)`);
  }
  if (typeof schemaText !== 'string') throw new RegistryHttpError(422, 42201, 'Invalid schema: the "schema" field must be a string of Avro JSON');
  let json: unknown;
  try {
    json = JSON.parse(schemaText);
  } catch (err) {
    throw new RegistryHttpError(422, 42201, `Invalid schema: not JSON: ${(err as Error).message}`);
  }
  let type: avro.Type;
  try {
    type = avro.Type.forSchema(json as AvroSchemaJson);
  } catch (err) {
    throw new RegistryHttpError(422, 42201, `Invalid schema: ${(err as Error).message}`);
  }
  return { type, canonical: canonicalSchemaText(json), minified: JSON.stringify(json) };
}

/** Why `reader` cannot read data written with `writer` (Avro schema resolution), or undefined. */
function resolutionProblem(reader: avro.Type, writer: avro.Type): string | undefined {
  try {
    reader.createResolver(writer);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}
