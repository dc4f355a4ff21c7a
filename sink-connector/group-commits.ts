/**
 * Kafka group offset commits. The sink's position of record is in the destination
 * (offsets.ts); the group's offsets only let Kafka tooling show the lag. Committing one per
 * applied batch cost the broker more than the data under light load (a coordinator log write
 * per commit, ~100 a second for 1,000 changes/s); one request per partition and interval
 * still meant one a second for each partition written to (2,250 requests while 400 tables of
 * six partitions took their snapshot). So at most one request goes per interval, carrying the
 * latest position of every partition applied since the last: the group is never more than
 * an interval behind, however many partitions the sink owns.
 */
import { tpKey } from './offsets.ts';

export interface GroupOffset {
  topic: string;
  partition: number;
  next: bigint;
}

export class GroupCommits {
  private readonly pending = new Map<string, GroupOffset>();
  private lastAt = -Infinity;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly commit: (offsets: GroupOffset[]) => Promise<void>,
    private readonly intervalMs = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  /** A partition applied up to `next`: committed now when no request went within the interval, else with the next one. */
  offer(topic: string, partition: number, next: bigint): void {
    this.pending.set(tpKey(topic, partition), { topic, partition, next });
    if (this.timer) return;
    const wait = this.lastAt + this.intervalMs - this.now();
    if (wait <= 0) {
      void this.flush();
      return;
    }
    this.timer = setTimeout(() => void this.flush(), wait);
    this.timer.unref?.();
  }

  /** Commit what is pending now, in one request (on a timer, and before the consumer leaves the group). */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.pending.size === 0) return Promise.resolve();
    const offsets = [...this.pending.values()];
    this.lastAt = this.now();
    this.pending.clear();
    return this.commit(offsets);
  }
}
