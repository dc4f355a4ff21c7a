/**
 * The replicated tables' sequences (read once, at the first session's start): their values
 * published to `<prefix>.__sequences` after a snapshot, every `sequencesIntervalMs` while
 * streaming, and on demand.
 */
import type pg from 'pg';
import type { Logger } from '../shared/logger.ts';
import { tableSequences, sequenceValues, type TableSequence } from './catalog.ts';
import { sequenceRecord } from './control-topics.ts';
import type { Publisher } from './publisher.ts';

export class SequenceValues {
  private sequences: TableSequence[] = [];
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly deps: {
      connect(): Promise<pg.Client>;
      publisher: Publisher;
      /** `<prefix>.__sequences`. */
      topic: string;
      log: Logger;
    },
  ) {}

  /** The sequences owned by the tables' columns. */
  async read(client: pg.ClientBase, relids: number[]): Promise<void> {
    this.sequences = await tableSequences(client, relids);
  }

  async publish(reason: 'snapshot' | 'interval' | 'demand'): Promise<void> {
    if (this.sequences.length === 0) return;
    const { publisher, topic } = this.deps;
    const values = await sequenceValues(await this.deps.connect(), this.sequences);
    for (const s of this.sequences) {
      const r = sequenceRecord({ ...s, value: values.get(s.sequence)?.value ?? null, reason });
      publisher.publishRaw(topic, r.key, r.value);
    }
    await publisher.barrier();
    this.deps.log.debug({ sequences: this.sequences.length, reason }, 'sequence values published');
  }

  /** While streaming: published every `intervalMs` until stopInterval(). */
  startInterval(intervalMs: number): void {
    this.timer = setInterval(() => void this.publish('interval').catch((err: unknown) => this.deps.log.warn({ err }, 'publishing sequence values failed')), intervalMs);
  }

  stopInterval(): void {
    clearInterval(this.timer);
  }
}
