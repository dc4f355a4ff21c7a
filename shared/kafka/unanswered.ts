/**
 * A broker address that accepts TCP but never answers (a hung broker, a firewall that holds
 * connections, a port that is not a Kafka listener): kafkajs times out the first request
 * (ApiVersions), and its retry then finds the socket still open, takes the broker as connected
 * and fails with a bare, non-retriable `Error('Broker not connected')`. That message says
 * nothing of the timeout, and being non-retriable it stopped the connectors, which retry a
 * refused port for ever. Under SASL the failure is the bare ApiVersions timeout. Pure.
 */
import kafkajs from 'kafkajs';

/**
 * kafkajs's error from a broker whose first request never answered: `Broker not connected`
 * (broker/index.js, notInitializedLookup), or, with SASL (the socket then does not count as
 * connected, so kafkajs retries), the ApiVersions timeout itself, alone or as its retries' cause.
 */
export function isUnanswered(err: unknown): boolean {
  const e = err as { name?: string; message?: string; cause?: unknown } | null;
  if (!e) return false;
  if (e.name === 'Error' && e.message === 'Broker not connected') return true;
  if (e.name === 'KafkaJSRequestTimeoutError' && /^Request ApiVersions\b/.test(e.message ?? '')) return true;
  return e.name === 'KafkaJSNumberOfRetriesExceeded' && isUnanswered(e.cause);
}

/**
 * `err` as a retriable KafkaJSConnectionError naming the brokers and what it means, when it is
 * the black-hole failure; else `err` unchanged.
 */
export function explainUnanswered(err: unknown, brokers: readonly string[]): unknown {
  if (!isUnanswered(err)) return err;
  return new kafkajs.KafkaJSConnectionError(
    `Kafka at ${brokers.join(',')} accepted the connection but did not answer: a broker that hangs, a proxy or firewall that holds connections, or a port that is not a Kafka listener (a TLS or SASL listener needs kafka.ssl / kafka.sasl)`,
    { broker: brokers.join(',') },
  );
}

/** `p`, its black-hole failure explained (explainUnanswered). */
export const answered = <T>(p: Promise<T>, brokers: readonly string[]): Promise<T> =>
  p.catch((err: unknown) => Promise.reject(explainUnanswered(err, brokers)));
