/**
 * Kafka group offset commits. The sink's position of record is in the destination
 * (offsets.ts); the group's offsets only let Kafka tooling show the lag. Committing one per
 * applied batch cost the broker more than the data under light load (a coordinator log write
 * per commit, ~100 a second for 1,000 changes/s), so each partition commits at most once per
 * interval, the latest position trailing: the group is never more than an interval behind.
 */
import { tpKey } from './offsets.ts';

export interface GroupOffset {
  topic: string;
  partition: number;
  next: bigint;
}

export class GroupCommits {
  private readonly pending = new Map<string, GroupOffset>();
  private readonly last = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly commit: (offsets: GroupOffset[]) => Promise<void>,
    private readonly intervalMs = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  /** A partition applied up to `next`: committed now, or with the next flush. */
  offer(topic: string, partition: number, next: bigint): void {
    const key = tpKey(topic, partition);
    const t = this.now();
    if (!this.pending.has(key) && t - (this.last.get(key) ?? -Infinity) >= this.intervalMs) {
      this.last.set(key, t);
      void this.commit([{ topic, partition, next }]);
      return;
    }
    this.pending.set(key, { topic, partition, next });
    this.timer ??= setTimeout(() => void this.flush(), this.intervalMs);
    this.timer.unref?.();
  }

  /** Commit what is pending now (on a timer, and before the consumer leaves the group). */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.pending.size === 0) return Promise.resolve();
    const offsets = [...this.pending.values()];
    const t = this.now();
    for (const key of this.pending.keys()) this.last.set(key, t);
    this.pending.clear();
    return this.commit(offsets);
  }
}
