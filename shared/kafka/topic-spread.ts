/**
 * kafkajs's admin refreshes the metadata of every topic it was ever asked about whenever it is
 * asked about a new one (fetchTopicOffsets and the like): the offsets of n topics through one
 * admin cost n(n+1)/2 topics' metadata. A source snapshot of 1,500 tables of two partitions
 * read 151 MB of metadata responses that way, and its resident size doubled. Spread over
 * clients of at most `perClient` topics each, that is about n·perClient/2, for n/perClient
 * connections.
 */
export interface Connectable {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
}

export class TopicSpread<C extends Connectable> {
  private readonly clients: { client: C; topics: number; ready?: Promise<void> }[] = [];
  private readonly owner = new Map<string, number>();

  constructor(
    private readonly make: () => C,
    private readonly perClient = 50,
  ) {}

  /** The connected client that answers for `topic` (always the same one until disconnect). */
  async for(topic: string): Promise<C> {
    let i = this.owner.get(topic);
    if (i === undefined) {
      let last = this.clients.at(-1);
      if (!last || last.topics >= this.perClient) this.clients.push((last = { client: this.make(), topics: 0 }));
      last.topics++;
      i = this.clients.length - 1;
      this.owner.set(topic, i);
    }
    const c = this.clients[i];
    // A failed connect is forgotten so that the next call tries again.
    c.ready ??= c.client.connect().catch((err: unknown) => {
      c.ready = undefined;
      throw err;
    });
    await c.ready;
    return c.client;
  }

  /** How many clients there are (tests). */
  get size(): number {
    return this.clients.length;
  }

  async disconnect(): Promise<void> {
    const all = this.clients.splice(0);
    this.owner.clear();
    await Promise.all(all.map((c) => c.client.disconnect()));
  }
}
