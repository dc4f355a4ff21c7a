/**
 * Dead-letter mode's sends for the partitions of one batch processor: the set-aside records of a
 * chunk go out in offset order, in sends under the dead-letter topic's size limit (halved, and
 * kept so, when the topic refuses one as too large), each acknowledged before the chunk's
 * transaction moves the offset past them (dead-letter.ts keeps what went and what is under way).
 */
import type { Logger } from '../shared/logger.ts';
import type { ShardBridgeError } from '../shared/errors.ts';
import { isFast, type Item, type SlowItem } from './chunk-items.ts';
import {
  DEAD_LETTER_ACK_MS,
  DEAD_LETTER_SEND_BYTES,
  DeadLetterLedger,
  deadLetterMessages,
  letterBytes,
  nextSendCount,
  notSent,
  refusedAsTooLarge,
  type DeadLetterTarget,
  type SendOutcome,
} from './dead-letter.ts';
import type { SinkMetrics } from './sink-metrics.ts';

/** The partition a chunk's dead letters come from, and whether its batch is still wanted. */
export interface SendingPart {
  topic: string;
  partition: number;
  log: Logger;
  signal: AbortSignal;
  usable(): boolean;
}

export class DeadLetterSender {
  private readonly ledger = new DeadLetterLedger();
  /** Bytes per dead-letter send: lowered when the topic refuses one as too large. */
  private sendBytes = DEAD_LETTER_SEND_BYTES;

  constructor(
    private readonly target: DeadLetterTarget,
    private readonly metrics: Pick<SinkMetrics, 'deadLetter'>,
  ) {}

  /**
   * Send the set-aside records of items[0, upTo) not sent yet, in offset order, in sends under the
   * dead-letter topic's size limit. Null when all went; else the index of the first that did not
   * and why (the partition applies up to it and stalls there); 'abandon' when the batch went stale.
   */
  async send(p: SendingPart, items: readonly Item[], upTo: number): Promise<{ index: number; error: ShardBridgeError } | 'abandon' | null> {
    const dl = this.target;
    const setAside: (SlowItem & { index: number })[] = [];
    for (let i = 0; i < upTo; i++) {
      const it = items[i];
      if (!isFast(it) && it.deadLetter !== undefined) setAside.push({ ...it, index: i });
    }
    if (setAside.length === 0) return null;
    const ledger = this.ledger;
    // A send an earlier attempt stalled waiting for (a stall retry): waited for again, not repeated.
    const earlier = ledger.underWay(p.topic, p.partition);
    if (earlier) {
      const r = await this.acknowledged(p, earlier);
      if (r === 'abandon') return 'abandon';
      const first = ledger.unsent(p.topic, p.partition, setAside)[0];
      if (r === 'late' && first) return { index: first.index, error: notSent('no-ack', { ...first.raw, bytes: letterBytes(deadLetterMessages(dl.topic, [first], dl)[0]) }, dl.topic) };
    }
    for (;;) {
      if (!p.usable()) return 'abandon';
      const todo = ledger.unsent(p.topic, p.partition, setAside);
      if (todo.length === 0) return null;
      const all = deadLetterMessages(dl.topic, todo, dl);
      const n = nextSendCount(all, this.sendBytes);
      const part = todo.slice(0, n);
      const messages = all.slice(0, n);
      const r = await this.acknowledged(p, ledger.track(p.topic, p.partition, part[n - 1].raw.offset, () => dl.send(messages)));
      if (r === 'abandon') return 'abandon';
      const first = { ...part[0].raw, bytes: letterBytes(messages[0]) };
      if (r === 'late') return { index: part[0].index, error: notSent('no-ack', first, dl.topic) };
      if (r.error !== undefined) {
        if (!refusedAsTooLarge(r.error)) return { index: part[0].index, error: notSent('refused', first, dl.topic, r.error) };
        if (n === 1) return { index: part[0].index, error: notSent('too-large', first, dl.topic, r.error) };
        // The topic's limit is below our sends: halved until they fit, and kept for the next sends.
        this.sendBytes = Math.max(1, Math.floor(messages.reduce((b, m) => b + letterBytes(m), 0) / 2));
        p.log.info({ deadLetterTopic: dl.topic, records: n, maxBytes: this.sendBytes }, 'the dead-letter topic refused a send as too large: sending in smaller parts');
        continue;
      }
      this.metrics.deadLetter.inc({ topic: p.topic }, n);
      const sent = { records: n, first: part[0].raw.offset, last: part[n - 1].raw.offset, error: part[0].deadLetter?.message ?? 'undecodable' };
      const summary = ledger.summary(p.topic, p.partition, sent);
      if (summary) {
        p.log.warn(
          { deadLetterTopic: dl.topic, ...summary },
          `${summary.records} undecodable record(s) sent to the dead-letter topic, offsets ${summary.firstOffset}..${summary.lastOffset} (the first's error shown; ` +
            'at most one such line a minute per partition: dead_letter_records_total counts them all)',
        );
      } else {
        p.log.debug({ deadLetterTopic: dl.topic, ...sent }, 'undecodable records sent to the dead-letter topic');
      }
    }
  }

  /** A dead-letter send's outcome; 'late' when Kafka has not acknowledged it within DEAD_LETTER_ACK_MS, 'abandon' when the batch went stale or we stop. */
  private async acknowledged(p: SendingPart, outcome: SendOutcome): Promise<{ error?: unknown } | 'late' | 'abandon'> {
    const signal = p.signal;
    if (signal.aborted) return 'abandon';
    let timer: NodeJS.Timeout | undefined;
    let onAbort = (): void => {};
    const r = await Promise.race([
      outcome,
      new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), DEAD_LETTER_ACK_MS))),
      new Promise<'abandon'>((resolve) => signal.addEventListener('abort', (onAbort = () => resolve('abandon')), { once: true })),
    ]);
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
    return r !== 'abandon' && !p.usable() ? 'abandon' : r;
  }
}
