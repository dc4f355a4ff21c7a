/**
 * Kafka's refusals for missing ACLs (TOPIC/GROUP/CLUSTER/TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
 * as one clear error: who was refused what on which resource, and the `kafka-acls` command that
 * grants it. Not retriable: the broker refuses again until an operator adds the ACL. Pure.
 *
 * The broker's answer names neither the resource nor the operation (kafkajs keeps only the
 * code), so the caller says what it asked for: the client's wrappers (client.ts, producer.ts)
 * know the topics of a send, the group of a consumer, the topics a request named.
 */
import { ConfigError } from '../errors.ts';

export type AclResourceType = 'topic' | 'group' | 'cluster' | 'transactional-id';

const REFUSALS: Record<string, AclResourceType> = {
  TOPIC_AUTHORIZATION_FAILED: 'topic',
  GROUP_AUTHORIZATION_FAILED: 'group',
  CLUSTER_AUTHORIZATION_FAILED: 'cluster',
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED: 'transactional-id',
};

/**
 * kafkajs finds a group's coordinator by trying each broker and drops their answers: a
 * GROUP_AUTHORIZATION_FAILED there reaches us only as this error.
 */
const COORDINATOR_NOT_FOUND = 'KafkaJSGroupCoordinatorNotFound';

/** The kafkajs error type of an authorization refusal anywhere in `err`'s causes (or, for an aggregate, its errors); null when it is not one. */
export function authorizationRefusal(err: unknown): string | null {
  for (let e: any = err, depth = 0; e && depth < 8; e = e.cause ?? e.originalError, depth++) {
    if (typeof e.type === 'string' && e.type in REFUSALS) return e.type;
    if (e.name === COORDINATOR_NOT_FOUND) return e.name;
    if (Array.isArray(e.errors)) {
      const inner = e.errors.map(authorizationRefusal).find((t: string | null) => t !== null);
      if (inner) return inner;
    }
  }
  return null;
}

/** What the client asked for when it was refused. */
export interface AclRequest {
  /** `User:name` when the client logs in with SASL; undefined otherwise (a TLS certificate's DN, or ANONYMOUS). */
  principal?: string;
  /** Kafka's operation name, as kafka-acls takes it: Read, Write, Create, Describe, DescribeConfigs, Delete, IdempotentWrite. */
  operation: string;
  resourceType: AclResourceType;
  /** The resources asked for (none for the cluster). */
  names: readonly string[];
  /** Bootstrap brokers, for the command. */
  brokers: readonly string[];
  /** What the process was doing, e.g. "sending records", "joining the consumer group". */
  doing: string;
  /** A prefix that grants every name (a group named anew each time): the remedy grants it rather than the names. */
  prefix?: string;
}

/** Who asks: what every request of one client shares. */
export type AclClient = Pick<AclRequest, 'principal' | 'brokers'>;

/** The names' common prefix up to its last dot ("shop." for shop.public.a, shop.__snapshot): one prefixed ACL grants them all. Pure. */
export function sharedPrefix(names: readonly string[]): string | undefined {
  if (names.length < 2) return undefined;
  let p = names[0];
  for (const n of names) while (!n.startsWith(p)) p = p.slice(0, -1);
  const dot = p.lastIndexOf('.');
  return dot > 0 ? p.slice(0, dot + 1) : undefined;
}

const FLAG: Record<AclResourceType, string> = { topic: '--topic', group: '--group', cluster: '--cluster', 'transactional-id': '--transactional-id' };

/** The `kafka-acls` command that allows `principal` `operation` on one resource (`--resource-pattern-type prefixed` for a prefix). Pure. */
export function aclCommand(p: { principal?: string; operation: string; resourceType: AclResourceType; name?: string; brokers: readonly string[]; prefixed?: boolean }): string {
  const resource = p.resourceType === 'cluster' ? '--cluster' : `${FLAG[p.resourceType]} '${p.name}'`;
  return [
    `kafka-acls.sh --bootstrap-server ${p.brokers[0] ?? '<broker>'} --command-config <admin.properties> --add`,
    `--allow-principal '${p.principal ?? 'User:<the connector\'s principal>'}'`,
    `--operation ${p.operation} ${resource}`,
    ...(p.prefixed ? ['--resource-pattern-type prefixed'] : []),
  ].join(' ');
}

/**
 * The refusal `err` as a ConfigError naming principal, operation and resource, with the grant;
 * `err` itself when it is not a refusal. Of several requests (a consumer's group and its topics)
 * the one of the refused resource's type is named. Pure.
 */
export function asAclError(err: unknown, ...requests: AclRequest[]): unknown {
  const refusal = authorizationRefusal(err);
  if (refusal === null) return err;
  const type = refusal === COORDINATOR_NOT_FOUND ? 'group' : REFUSALS[refusal];
  const req = requests.find((r) => r.resourceType === type) ?? requests[0];
  const who = req.principal ?? "the connector's principal";
  const names = req.names.length > 5 ? [...req.names.slice(0, 5), `… (${req.names.length} in all)`] : req.names;
  // The broker does not say which of several it refused.
  const what = req.resourceType === 'cluster' ? 'the cluster' : req.names.length > 1 ? `one or more of the ${req.resourceType}s ${names.join(', ')}` : `${req.resourceType} ${names[0]}`;
  const hedge =
    refusal === COORDINATOR_NOT_FOUND
      ? ' (kafkajs found no coordinator for the group: Kafka answers so when the principal may not use the group, or when no broker answered)'
      : ` (${refusal})`;
  const grants = req.resourceType === 'cluster' ? [undefined] : req.names.slice(0, 5);
  // Many names: one prefixed grant rather than a command per name.
  const prefix = req.prefix ?? (req.names.length > 2 ? sharedPrefix(req.names) : undefined);
  const commands = prefix !== undefined ? [aclCommand({ ...req, name: prefix, prefixed: true })] : grants.map((name) => aclCommand({ ...req, name }));
  if (prefix !== undefined && req.prefix === undefined) commands.push(`or one such command per ${req.resourceType} named, without the pattern type`);
  return new ConfigError(`Kafka refused ${who} ${req.operation} on ${what} while ${req.doing}${hedge}`, {
    cause: err,
    context: { principal: req.principal, operation: req.operation, resource: `${req.resourceType}${req.names.length ? `:${req.names[0]}` : ''}` },
    remedy: `grant it, then start again (a refusal is not retried): ${commands.join('; ')}`,
  });
}

/** The principal a SASL login gives: `User:<username>`. */
export const saslPrincipal = (sasl?: { username: string }): string | undefined => (sasl ? `User:${sasl.username}` : undefined);
