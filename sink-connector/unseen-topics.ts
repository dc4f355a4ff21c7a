/**
 * Table topics the source's snapshot markers name (`shardbridge.snapshot_status`, written as the
 * sink applies `__snapshot`) that the sink's topic listing does not show. Kafka leaves a topic out
 * of the listing for a principal without Describe on it, and a deleted topic is gone from it:
 * either way the table's changes are not applied, and nothing else would say so. Said once per
 * topic (again if it comes back and goes again), and counted in `topics_unseen`.
 *
 * The markers are read before the listing: a table topic exists before its first marker is
 * written, so one named then and missing from a later listing is not merely new.
 */
export interface NamedTopic {
  topic: string;
  table: string;
}

export class UnseenTopics {
  private readonly reported = new Set<string>();

  constructor(private readonly prefix: string) {}

  /** Pure but for what was reported: the topics to report now, and how many are unseen. */
  look(named: readonly NamedTopic[], listed: ReadonlySet<string>): { fresh: NamedTopic[]; unseen: number } {
    const unseen = named.filter((n) => n.topic.startsWith(this.prefix + '.') && !listed.has(n.topic));
    const now = new Set(unseen.map((n) => n.topic));
    for (const t of this.reported) if (!now.has(t)) this.reported.delete(t);
    const fresh = unseen.filter((n) => !this.reported.has(n.topic));
    for (const n of fresh) this.reported.add(n.topic);
    return { fresh, unseen: unseen.length };
  }
}

export function unseenMessage(fresh: readonly NamedTopic[]): { msg: string; remedy: string } {
  const list = fresh.map((n) => `${n.topic} (table ${n.table})`).join(', ');
  return {
    msg: `the source's snapshot markers name ${list}, which this sink cannot see in Kafka: deleted, or its principal lacks Describe on it (Kafka leaves such topics out of the listing): its changes are not applied`,
    remedy: `grant the sink's principal Read on the topic (kafka-acls.sh --add --allow-principal <principal> --operation Read --topic <topic>; Read implies Describe), or, if the topic was deleted on purpose, remove the table's row from shardbridge.snapshot_status`,
  };
}
