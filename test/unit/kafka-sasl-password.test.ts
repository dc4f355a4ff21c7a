/**
 * kafka.sasl.passwordFile rotated in place: kafkajs's own SASL code (PLAIN's request, SCRAM's
 * password) reads `password` off the object client.ts gives it at each authentication, so the
 * file's content at that time is what a new broker connection sends (FilePassword).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { FilePassword } from '../../shared/config/password-file.ts';
import { saslOf } from '../../shared/kafka/sasl.ts';
import { pinoLogEntry } from '../../shared/kafka/kafka-log.ts';

const require = createRequire(import.meta.url);
type Provider = (sasl: object) => (o: { host: string; port: number; logger: unknown; saslAuthenticate: (x: { request: { encode(): Promise<Buffer> } }) => Promise<void> }) => { authenticate(): Promise<void> };
const plain = require('kafkajs/src/broker/saslAuthenticator/plain.js') as Provider;
const { SCRAM, DIGESTS } = require('kafkajs/src/broker/saslAuthenticator/scram.js') as { SCRAM: new (sasl: object, ...rest: unknown[]) => { encodedPassword(): string }; DIGESTS: { SHA512: object } };

const dir = mkdtempSync(join(tmpdir(), 'sb-sasl-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const quiet = { debug() {}, error() {} };

/** What kafkajs's PLAIN authenticator sends for `sasl` (user NUL user NUL password, length-prefixed). */
async function plainSends(sasl: object): Promise<string> {
  let sent = '';
  await plain(sasl)({ host: 'k', port: 1, logger: quiet, saslAuthenticate: async ({ request }) => void (sent = (await request.encode()).subarray(4).toString()) }).authenticate();
  return sent.split('\u0000')[2];
}

test('kafka.sasl.passwordFile: each SASL authentication (PLAIN, SCRAM) takes the password in the file at that time; a file gone or emptied keeps the last good one, with one warning per problem naming the key and the path, never the content', async () => {
  const path = join(dir, 'kafka-password');
  writeFileSync(path, 'first\n');
  const warnings: [string, object][] = [];
  const sasl = saslOf({ mechanism: 'plain', username: 'u', password: 'first', passwordFile: path }, (m, c) => warnings.push([m, c]))!;
  const config = sasl.config as object;
  assert.equal(await plainSends(config), 'first');
  writeFileSync(path, 'second\n');
  assert.equal(await plainSends(config), 'second', 'read again at the next authentication');
  assert.equal(new SCRAM(config, 'k', 1, quiet, undefined, DIGESTS.SHA512).encodedPassword(), 'second');

  rmSync(path);
  assert.equal(await plainSends(config), 'second', 'the last good one');
  assert.equal(await plainSends(config), 'second');
  writeFileSync(path, '\n');
  assert.equal(await plainSends(config), 'second');
  assert.deepEqual(warnings, [
    [`kafka.sasl.passwordFile ${path}: cannot read it: no such file; the password last read from it is used meanwhile (put the password in the file again)`, { key: 'kafka.sasl.passwordFile', path }],
    [`kafka.sasl.passwordFile ${path}: it is empty (a password file holds the password, one line); the password last read from it is used meanwhile (put the password in the file again)`, { key: 'kafka.sasl.passwordFile', path }],
  ]);
  writeFileSync(path, 'third\n');
  assert.equal(await plainSends(config), 'third');
  assert.deepEqual(sasl.secrets(), ['third', 'second', 'first'], 'every password held, for masking');

  // Without a file: the password given, as before.
  const fixed = saslOf({ mechanism: 'scram-sha-512', username: 'u', password: 'given' }, () => assert.fail('no file, no warning'))!;
  assert.deepEqual(fixed.config, { mechanism: 'scram-sha-512', username: 'u', password: 'given' });
  assert.equal(await plainSends(fixed.config as object), 'given');
});

test('FilePassword remembers the last four passwords for masking; the kafkajs log mapping masks each of them', () => {
  const path = join(dir, 'masked');
  writeFileSync(path, 'pw-0');
  const file = new FilePassword(path, 'kafka.sasl.passwordFile', 'pw-0', () => assert.fail('no problem'));
  for (let i = 1; i <= 5; i++) {
    writeFileSync(path, `pw-${i}\n`);
    assert.equal(file.current(), `pw-${i}`);
    assert.equal(file.current(), `pw-${i}`, 'the same again: remembered once');
  }
  assert.deepEqual(file.known(), ['pw-5', 'pw-4', 'pw-3', 'pw-2']);

  const lines: string[] = [];
  const emit = pinoLogEntry(pino({ level: 'debug' }, { write: (line: string) => lines.push(line) }), () => file.known());
  emit({ namespace: 'Connection', level: 1, log: { message: 'SASL failed for pw-5 (was pw-4)', broker: 'k:1' } });
  assert.equal(lines.length, 1);
  assert.ok(!lines[0].includes('pw-5') && !lines[0].includes('pw-4'), lines[0]);
  assert.match(lines[0], /SASL failed for \[redacted\] \(was \[redacted\]\)/);
});
