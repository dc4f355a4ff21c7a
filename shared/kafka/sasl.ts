/**
 * kafka.sasl as kafkajs takes it (kafkajs's types only: client.ts makes the client), its password
 * read from kafka.sasl.passwordFile at each authentication.
 */
import type { KafkaConfig } from 'kafkajs';
import { FilePassword } from '../config/password-file.ts';
import type { KafkaSettings } from './ports.ts';

/**
 * kafkajs's SASL settings. kafkajs keeps this object (each connection's `sasl`) and reads `password`
 * at each authentication (saslAuthenticator: PLAIN's request, SCRAM's encodedPassword), a new
 * connection or a re-authentication: with a passwordFile, a getter reads the file then, so that a
 * password rotated in place is taken without a restart (FilePassword: the last good one kept, and
 * a warning, when the file cannot serve). `secrets`: what the log mapping masks.
 */
export function saslOf(
  sasl: KafkaSettings['sasl'],
  warn: (message: string, context: { key: string; path: string }) => void,
): { config: KafkaConfig['sasl']; secrets: () => readonly string[] } | undefined {
  if (!sasl) return undefined;
  const { mechanism, username, password, passwordFile } = sasl;
  if (passwordFile === undefined) return { config: { mechanism, username, password } as KafkaConfig['sasl'], secrets: () => [password] };
  const file = new FilePassword(passwordFile, 'kafka.sasl.passwordFile', password, warn);
  const config = { mechanism, username } as { mechanism: string; username: string; password: string };
  Object.defineProperty(config, 'password', { enumerable: true, get: () => file.current() });
  return { config: config as KafkaConfig['sasl'], secrets: () => file.known() };
}
