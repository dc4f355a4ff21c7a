/**
 * An update that changes a row's primary key under REPLICA IDENTITY DEFAULT, leaving a TOASTed
 * column unchanged: pgoutput sends neither that column's value (unchanged TOAST) nor the old
 * row, so the `c` record of the new key lacks it (listed in `unchanged_toast`) and the
 * destination's row under the new key has it NULL. A native subscriber updates the old row in
 * place and keeps it; the Kafka record has nowhere to take it from. Said, not silent: one warning
 * per table, then at most one a minute with the count since.
 */
import type { Logger } from '../shared/logger.ts';
import type { ChangeEvent } from './envelope.ts';
import { resnapshotCommand, tableArgument } from '../shared/migration/remedies.ts';
import { quoteQualified } from './catalog.ts';

const REPEAT_MS = 60_000;

/** The columns the new key's record lacks, when `events` are a key change's (d [+ tombstone] + c). Pure. */
export function keyChangeGaps(events: readonly ChangeEvent[]): readonly string[] {
  if (events.length < 2) return [];
  const created = events[events.length - 1].value;
  return created !== null && created.op === 'c' ? created.unchanged_toast : [];
}

/** The warning's text and remedy. Pure. */
export function keyChangeGapWarning(t: { schema: string; name: string }, columns: readonly string[], count: number): { msg: string; remedy: string } {
  const table = `${t.schema}.${t.name}`;
  return {
    msg:
      `${count === 1 ? 'a primary-key change' : `${count} primary-key changes`} of ${table} left TOASTed column(s) ${columns.join(', ')} unchanged: ` +
      'pgoutput sends neither their values nor the old row under REPLICA IDENTITY DEFAULT, so the row under its new key arrives without them and they are NULL at the destination',
    remedy: `ALTER TABLE ${quoteQualified(t)} REPLICA IDENTITY FULL on the source (the old row then supplies them), then take the table's snapshot again to repair the rows moved so far: ${resnapshotCommand(tableArgument(t))}`,
  };
}

export class KeyChangeGaps {
  private readonly said = new Map<string, { at: number; count: number; columns: Set<string> }>();

  constructor(
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** After a change's events were built: only a key change's `c` can carry gaps. */
  note(table: { schema: string; name: string }, events: readonly ChangeEvent[]): void {
    const gaps = keyChangeGaps(events);
    if (gaps.length === 0) return;
    const name = `${table.schema}.${table.name}`;
    const s = this.said.get(name);
    const t = this.now();
    if (s === undefined || t - s.at >= REPEAT_MS) {
      const columns = new Set([...(s?.columns ?? []), ...gaps]);
      const { msg, remedy } = keyChangeGapWarning(table, [...columns], (s?.count ?? 0) + 1);
      this.log.warn({ table: name, columns: [...columns], remedy }, msg);
      this.said.set(name, { at: t, count: 0, columns: new Set() });
    } else {
      s.count++;
      for (const c of gaps) s.columns.add(c);
    }
  }
}
