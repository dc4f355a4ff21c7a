import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Client } from 'pg';
import { RawPgoutputPlugin, ackArgument, quoteIdent, startReplicationSql } from '../../source-connector/raw-pgoutput-plugin.ts';
import { ConfigError, DecodeError } from '../../shared/errors.ts';

test('START_REPLICATION command: quoted slot and publications, proto 1, messages on', () => {
  assert.equal(
    startReplicationSql('sb_slot', '16/B374D848', { publicationNames: ['pub'] }),
    `START_REPLICATION SLOT "sb_slot" LOGICAL 16/B374D848 (proto_version '1', publication_names '"pub"', messages 'true')`,
  );
  assert.equal(
    startReplicationSql('s', '0/00000000', { publicationNames: ['Pub,One', `it's "x"`], messages: false }),
    `START_REPLICATION SLOT "s" LOGICAL 0/0 (proto_version '1', publication_names '"Pub,One","it''s ""x"""', messages 'false')`,
  );
});

test('START_REPLICATION refuses a malformed LSN instead of splicing it into the command', () => {
  assert.throws(() => startReplicationSql('s', '0/0 (x)', { publicationNames: ['p'] }), DecodeError);
});

test('quoteIdent doubles quotes and refuses empty names', () => {
  assert.equal(quoteIdent('a"b'), '"a""b"');
  assert.throws(() => quoteIdent(''), ConfigError);
  assert.throws(() => new RawPgoutputPlugin({ publicationNames: [] }), ConfigError);
});

test('parse hands the raw bytes over uncopied, start issues the command on the given client', async () => {
  const plugin = new RawPgoutputPlugin({ publicationNames: ['pub'] });
  assert.equal(plugin.name, 'pgoutput');
  const src = Buffer.from('I\x00\x00\x00\x01N', 'latin1');
  assert.equal(plugin.parse(src), src);

  const seen: string[] = [];
  const client = { query: async (sql: string) => (seen.push(sql), { rows: [] }) } as unknown as Client;
  await plugin.start(client, 'slot', '1/2');
  assert.deepEqual(seen, [`START_REPLICATION SLOT "slot" LOGICAL 1/2 (proto_version '1', publication_names '"pub"', messages 'true')`]);
});

test('ackArgument compensates the library adding one to the acknowledged LSN', () => {
  assert.equal(ackArgument(0x16_b374_d848n), '16/B374D847');
  assert.equal(ackArgument(0x1_0000_0000n), '0/FFFFFFFF');
  assert.throws(() => ackArgument(0n), RangeError);
});
