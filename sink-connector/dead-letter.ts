/**
 * Dead-letter mode: undecodable records go to the dead-letter topic as they were, with headers
 * naming the error and where they came from. A chunk whose apply stalls after its dead letters
 * went out is fetched again at each stall retry: what a partition already sent is remembered so
 * that they go out once (after a crash or a rebalance they may go out again, once).
 */
import type { DecodeError } from '../shared/errors.ts';
import type { OutMessage } from '../shared/kafka/client.ts';
import type { RawRecord } from './decode.ts';
import { tpKey } from './offsets.ts';

export interface DeadLetterTarget {
  topic: string;
  send(messages: OutMessage[]): Promise<void>;
}

type SetAside = { raw: RawRecord; deadLetter?: DecodeError };

export function deadLetterMessages(topic: string, items: readonly SetAside[]): OutMessage[] {
  return items.map(({ raw, deadLetter: err }) => ({
    topic,
    key: raw.key,
    value: raw.value,
    headers: {
      'shardbridge.error': err?.message ?? 'undecodable',
      'shardbridge.error.remedy': err?.remedy ?? '',
      'shardbridge.original.topic': raw.topic,
      'shardbridge.original.partition': String(raw.partition),
      'shardbridge.original.offset': raw.offset,
    },
  }));
}

/** The highest offset sent per topic-partition. */
export class DeadLetterLedger {
  private readonly sent = new Map<string, bigint>();

  /** The items (offset order) of this partition not sent yet. */
  unsent<T extends SetAside>(topic: string, partition: number, items: readonly T[]): T[] {
    const sent = this.sent.get(tpKey(topic, partition)) ?? -1n;
    return items.filter((it) => BigInt(it.raw.offset) > sent);
  }

  markSent(topic: string, partition: number, offset: string): void {
    this.sent.set(tpKey(topic, partition), BigInt(offset));
  }
}
