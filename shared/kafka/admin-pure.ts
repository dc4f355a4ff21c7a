/**
 * The admin's logic that needs no kafkajs (client.ts's admin calls it): whether a group has
 * members, a failed topic creation explained.
 */
import { ConfigError, RetriableError } from '../errors.ts';
import { asAclError, type AclClient } from './authorization.ts';

/** Whether a consumer group in `state` has members (Kafka sets its offsets only when not). Pure. */
export const groupRunning = (state: string): boolean => state !== 'Empty' && state !== 'Dead';

/**
 * kafkajs reports per-topic creation failures as a KafkaJSAggregateError, which has no
 * `retriable` of its own: say which topics failed and why, and keep the flag visible.
 */
export function rethrowCreateTopicsError(err: unknown, client: AclClient): never {
  const errors = (err as { errors?: unknown }).errors;
  if (!(err instanceof Error) || !Array.isArray(errors)) throw err;
  const refused = errors.filter((e: { type?: string }) => e.type === 'TOPIC_AUTHORIZATION_FAILED').map((e: { topic?: string }) => e.topic ?? '?');
  if (refused.length > 0) throw asAclError(err, { ...client, operation: 'Create', resourceType: 'topic', names: refused, doing: 'creating the topics it needs' });
  const parts = errors.map((e: { topic?: string; type?: string; message?: string }) => `${e.topic ?? '?'}: ${e.type ?? e.message}`);
  const message = `could not create topics (${parts.join('; ')})`;
  const context = { topics: errors.map((e: { topic?: string }) => e.topic).join(',') };
  if (errors.every((e: { retriable?: boolean }) => e.retriable === true)) throw new RetriableError(message, { cause: err, context });
  throw new ConfigError(message, { cause: err, context, remedy: 'check the partition count, replication factor and topic configs against the cluster' });
}
