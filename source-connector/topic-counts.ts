/**
 * What a table topic's keys and truncates go by: its partition count (as start-up found it, or,
 * for a topic start-up did not make, as `__snapshot` recorded it: partition-pins.ts), the
 * truncate key schema, and the session's delivery number (truncate-fanout.ts).
 */
import type { Admin, Producer } from '../shared/kafka/client.ts';
import type { TruncateFanout } from './envelope.ts';
import { keyedCount } from './partition-pins.ts';

export class TopicCounts {
  /** The truncate key schema's id (read at start). */
  truncateKeySchemaId = 0;
  /** This session's delivery, carried by its truncates' copies: a replayed truncate is told from an earlier, maybe partial, send. */
  delivery = 0;
  /** The counts `__snapshot` recorded, as of the session's start (for a topic start-up did not make). */
  recorded: ReadonlyMap<string, number> = new Map();
  private readonly counts = new Map<string, number>();

  constructor(
    private readonly admin: Admin,
    private readonly producer: Producer,
    /** `topics.partitions`: for a topic whose count is not known. */
    private readonly defaultPartitions: number,
  ) {}

  /** The counts the first session's set-up read (kafka-setup.ts). */
  adopt(counts: Iterable<[string, number]>): void {
    for (const [topic, n] of counts) this.counts.set(topic, n);
  }

  /** A topic start-up did not make (a table renamed while stopped replays under its old name): Kafka may still have it. */
  async exists(topic: string): Promise<boolean> {
    if (this.counts.has(topic)) return true;
    if (!(await this.admin.listTopics()).includes(topic)) return false;
    const n = keyedCount(await this.admin.partitionCount(topic), this.recorded.get(topic));
    this.counts.set(topic, n);
    this.producer.pin(new Map([[topic, n]]));
    return true;
  }

  /** Where a table's truncate goes: the truncate key schema and each partition of its topic (truncate-fanout.ts). */
  fanout(topic: string): TruncateFanout {
    return { keySchemaId: this.truncateKeySchemaId, partitions: this.counts.get(topic) ?? this.defaultPartitions, delivery: this.delivery };
  }
}
