/**
 * The partition count each table topic's keys are spread over. Kafka lets an operator add
 * partitions to a topic (`kafka-topics --alter --partitions`); murmur2(key) % count would then
 * send a key's later changes to another partition than its earlier ones, and the sink applies
 * partitions independently: an older change still waiting in the old partition (a stall, a
 * lag) would be applied after a newer one, and the destination would keep the older row. So
 * the count a topic's keys were first spread over is recorded in `__snapshot`
 * (`partitions:<topic>`) and kept: partitions added later stay empty. Pure.
 */

export interface PinPlan {
  /** Per table topic, the count its keys go by. */
  pins: Map<string, number>;
  /** Counts to record: topics seen for the first time, or made again by this start. */
  record: Map<string, number>;
  /** Topics with more partitions than their keys go to. */
  grown: { topic: string; pinned: number; partitions: number }[];
  /** Topics with fewer partitions than recorded: made again outside the connector; their keys go by what they have now. */
  shrunk: { topic: string; recorded: number; partitions: number }[];
}

export function planPartitionPins(
  /** Each table topic's partition count now. */
  live: ReadonlyMap<string, number>,
  /** What `__snapshot` recorded. */
  recorded: ReadonlyMap<string, number>,
  /** Topics this start created: nothing was keyed into them yet. */
  created: ReadonlySet<string>,
): PinPlan {
  const plan: PinPlan = { pins: new Map(), record: new Map(), grown: [], shrunk: [] };
  for (const [topic, partitions] of live) {
    const was = created.has(topic) ? undefined : recorded.get(topic);
    const pinned = keyedCount(partitions, was);
    if (pinned < partitions) plan.grown.push({ topic, pinned, partitions });
    if (was !== undefined && was > partitions) plan.shrunk.push({ topic, recorded: was, partitions });
    plan.pins.set(topic, pinned);
    if (recorded.get(topic) !== pinned) plan.record.set(topic, pinned);
  }
  return plan;
}

/** The count a topic's keys go by: the recorded one, or what the topic has when that is fewer (made again) or nothing was recorded. Pure. */
export function keyedCount(partitions: number, recorded: number | undefined): number {
  return recorded !== undefined && recorded < partitions ? recorded : partitions;
}
