/**
 * Topics that existed before the connector started (made by an operator, whose principal may
 * be the only one allowed to create them) keep their own settings: `ensureTopics` creates
 * only what is missing. A `cleanup.policy` other than the one the connector would have set is
 * named at start: on `__snapshot` / `__sequences` without `compact` their markers age out
 * with the topic's retention (the next start then takes the snapshot again), and a table
 * topic without the configured policy keeps or drops records otherwise than configured.
 */
import type { Admin } from '../shared/kafka/ports.ts';
import type { Logger } from '../shared/logger.ts';

/** The policies as a set: Kafka takes `compact,delete` and `delete,compact` alike. Pure. */
const policies = (p: string): string => p.split(',').map((x) => x.trim()).filter(Boolean).sort().join(',');

/** Topics whose `cleanup.policy` is not the wanted one, with both. A topic Kafka reports no value for is left out. Pure. */
export function policyMismatches(wanted: ReadonlyMap<string, string>, actual: ReadonlyMap<string, string>): { topic: string; wanted: string; actual: string }[] {
  const out: { topic: string; wanted: string; actual: string }[] = [];
  for (const [topic, want] of wanted) {
    const got = actual.get(topic);
    if (got !== undefined && policies(got) !== policies(want)) out.push({ topic, wanted: want, actual: got });
  }
  return out;
}

/** One DescribeConfigs request for every topic; a cluster that does not let us read configs is skipped (logged at debug). */
export async function warnTopicPolicies(admin: Admin, wanted: ReadonlyMap<string, string>, log: Logger): Promise<void> {
  let actual: Map<string, string>;
  try {
    actual = await admin.configValues('topic', [...wanted.keys()], 'cleanup.policy');
  } catch (err) {
    log.debug({ err }, "the topics' cleanup.policy could not be read: not checked");
    return;
  }
  for (const m of policyMismatches(wanted, actual)) {
    const control = /\.__(snapshot|sequences)$/.test(m.topic) && !policies(m.actual).split(',').includes('compact');
    log.warn(
      { topic: m.topic, cleanupPolicy: m.actual, expected: m.wanted, remedy: `kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics --entity-name ${m.topic} --add-config cleanup.policy=${m.wanted.includes(',') ? `[${m.wanted}]` : m.wanted}` },
      control
        ? `topic ${m.topic} has cleanup.policy=${m.actual}, not compact: its markers go with its retention, and the next start after that takes the snapshot again`
        : `topic ${m.topic} already existed with cleanup.policy=${m.actual}, not ${m.wanted} as configured: the connector does not change an existing topic's settings`,
    );
  }
}
