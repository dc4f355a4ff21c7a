/**
 * Our pgoutput path against a real PostgreSQL: pg-logical-replication with the raw plugin,
 * our decoder, the session settings of the value contract, and the COPY parser on the same
 * rows (both must yield the same text).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { LogicalReplicationService } from 'pg-logical-replication';
import { startPostgres, type PgCluster } from '../../shared/devstack/postgres.ts';
import { waitFor } from '../../shared/devstack/ports.ts';
import { sourceSessionOptions, type TextTuple } from '../../shared/pg-types.ts';
import { decodePgoutput, formatLsn, parseLsn, type PgoutputMessage } from '../../source-connector/pgoutput-decoder.ts';
import { RawPgoutputPlugin, ackArgument } from '../../source-connector/raw-pgoutput-plugin.ts';
import { CopyTextParser } from '../../source-connector/copy-parser.ts';

interface Received {
  /** XLogData start position as the library reports it. */
  lsn: bigint;
  msg: PgoutputMessage;
}

/** A replication stream collecting decoded messages; acknowledgement is ours (auto off, no timer). */
function stream(cluster: PgCluster, slot: string, publication: string): { got: Received[]; service: LogicalReplicationService; done: Promise<unknown> } {
  const service = new LogicalReplicationService(
    { connectionString: cluster.url(), options: sourceSessionOptions() },
    { acknowledge: { auto: false, timeoutSeconds: 0 } },
  );
  const got: Received[] = [];
  service.on('data', (lsn: string, raw: Buffer) => {
    got.push({ lsn: parseLsn(lsn), msg: decodePgoutput(raw) });
  });
  service.on('error', () => {}); // surfaced through `done`
  const done = service.subscribe(new RawPgoutputPlugin({ publicationNames: [publication] }), slot, '0/0').catch((e: unknown) => e);
  return { got, service, done };
}

async function waitForCommits(got: Received[], n: number): Promise<void> {
  await waitFor(`${n} commits on the stream`, () => got.filter((r) => r.msg.tag === 'commit').length >= n, { timeoutMs: 30_000, intervalMs: 20 });
}

function ofTag<T extends PgoutputMessage['tag']>(got: Received[], tag: T): Extract<PgoutputMessage, { tag: T }>[] {
  return got.map((r) => r.msg).filter((m): m is Extract<PgoutputMessage, { tag: T }> => m.tag === tag);
}

async function copyRows(client: pg.Client, sql: string): Promise<TextTuple[]> {
  const parser = new CopyTextParser();
  const rows: TextTuple[] = [];
  const s = client.query(copyStreams.to(sql));
  for await (const chunk of s) rows.push(...parser.push(chunk as Buffer));
  parser.end();
  return rows;
}

test('pgoutput through the raw plugin and our decoder: every message kind, exact text values, TOAST, COPY parity', async (t) => {
  const cluster = await startPostgres({ name: 'pgoutput-live' });
  // The source sessions' settings, and public on the path: the setup below names its objects unqualified.
  const admin = new pg.Client({ connectionString: cluster.url(), options: `${sourceSessionOptions()} -c search_path=public` });
  const services: LogicalReplicationService[] = [];
  t.after(async () => {
    // Replication connection first: a fast shutdown waits for walsenders to be confirmed.
    for (const s of services) await s.destroy();
    await admin.end();
    await cluster.destroy();
  });
  await admin.connect();

  await admin.query(`
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE TABLE items (id int PRIMARY KEY, note text, big text, ts timestamptz, f float8, j json, t timestamp, m mood);
    ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL;
    CREATE TABLE "Other ""one""" (id bigint PRIMARY KEY);
    CREATE PUBLICATION "sb pub" FOR TABLE items, "Other ""one""";
  `);
  const slot = (await admin.query(`SELECT lsn FROM pg_create_logical_replication_slot('sb_slot', 'pgoutput')`)).rows[0] as { lsn: string };
  const { rows: oidRows } = await admin.query(`SELECT 'items'::regclass::oid AS items, '"Other ""one"""'::regclass::oid AS other, 'mood'::regtype::oid AS mood`);
  const oids = { items: Number(oidRows[0].items), other: Number(oidRows[0].other), mood: Number(oidRows[0].mood) };

  const live = stream(cluster, 'sb_slot', 'sb pub');
  const { got, done } = live;
  services.push(live.service);

  const big = crypto.randomBytes(75_000).toString('base64'); // 100 kB, random: stays out of line
  await admin.query(`INSERT INTO items VALUES (1, 'first', $1, now(), 1.5, '[]', '2024-02-29 12:00', 'ok')`, [big]);
  await admin.query(`
    INSERT INTO items VALUES (2, 'Grüße 東京 🚀 tab\there', NULL,
      timestamptz '2000-01-01 00:00:00.000001+00', float8 '-0', json '{"a":1,"a":2}', timestamp 'infinity', NULL)`);
  const copied = await copyRows(admin, 'COPY items TO STDOUT');
  await admin.query(`UPDATE items SET note = 'changed' WHERE id = 1`);
  await admin.query(`UPDATE items SET id = 3 WHERE id = 2`);
  await admin.query(`DELETE FROM items WHERE id = 3`);
  await admin.query(`BEGIN; SELECT pg_logical_emit_message(true, 'shardbridge', 'x'); INSERT INTO "Other ""one""" VALUES (1); COMMIT`);
  await admin.query(`TRUNCATE items, "Other ""one""" RESTART IDENTITY`);
  await waitForCommits(got, 7);

  // Every transaction is Begin … Commit with matching LSNs, in increasing commit order.
  const begins = ofTag(got, 'begin');
  const commits = ofTag(got, 'commit');
  assert.equal(begins.length, 7);
  assert.equal(commits.length, 7);
  for (let i = 0; i < 7; i++) {
    assert.equal(begins[i].finalLsn, commits[i].commitLsn);
    assert.ok(commits[i].endLsn > commits[i].commitLsn);
    if (i > 0) assert.ok(commits[i].endLsn > commits[i - 1].endLsn);
    assert.ok(commits[i].endLsn > parseLsn(slot.lsn));
  }
  // The library reports a Commit's XLogData position as the transaction's end LSN.
  const commitPositions = got.filter((r) => r.msg.tag === 'commit').map((r) => r.lsn);
  assert.deepEqual(commitPositions, commits.map((c) => c.endLsn));
  const commitMs = Number(commits[0].commitTime / 1000n) + Date.UTC(2000, 0, 1);
  assert.ok(Math.abs(commitMs - Date.now()) < 5 * 60_000, 'commit time is µs since 2000-01-01');

  // Type before Relation for the enum column (sent again whenever the relation is resent);
  // Relation carries names, key flags, identity.
  const types = ofTag(got, 'type');
  assert.ok(types.length >= 1);
  for (const ty of types) assert.deepEqual(ty, { tag: 'type', oid: oids.mood, namespace: 'public', name: 'mood' });
  const tags = got.map((r) => r.msg.tag);
  assert.ok(tags.indexOf('type') < tags.indexOf('relation'));
  const relations = ofTag(got, 'relation');
  const items = relations.find((r) => r.relid === oids.items);
  assert.ok(items);
  assert.equal(items.namespace, 'public');
  assert.equal(items.replicaIdentity, 'default');
  assert.deepEqual(
    items.columns.map((c) => [c.name, c.isKey, c.typeOid]),
    [
      ['id', true, 23],
      ['note', false, 25],
      ['big', false, 25],
      ['ts', false, 1184],
      ['f', false, 701],
      ['j', false, 114],
      ['t', false, 1114],
      ['m', false, oids.mood],
    ],
  );
  assert.ok(relations.some((r) => r.relid === oids.other && r.name === 'Other "one"'));

  // Inserts: the exact text output of the value contract.
  const inserts = ofTag(got, 'insert');
  assert.equal(inserts.length, 3);
  const [ins1, ins2] = inserts;
  assert.equal(ins1.relid, oids.items);
  assert.equal(ins1.new[2], big);
  assert.match(ins1.new[3] as string, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?\+00$/);
  assert.deepEqual(ins1.new.slice(4), ['1.5', '[]', '2024-02-29 12:00:00', 'ok']);
  assert.deepEqual(ins2.new, ['2', 'Grüße 東京 🚀 tab\there', null, '2000-01-01 00:00:00.000001+00', '-0', '{"a":1,"a":2}', 'infinity', null]);
  assert.deepEqual(inserts[2], { tag: 'insert', relid: oids.other, new: ['1'] });

  // COPY of the same rows under the same session settings gives the same text.
  assert.deepEqual(copied, [ins1.new, ins2.new]);

  // Updates: the unchanged TOASTed column arrives as undefined; a key change sends 'K'.
  const updates = ofTag(got, 'update');
  assert.equal(updates.length, 2);
  assert.equal(updates[0].key, undefined);
  assert.equal(updates[0].old, undefined);
  assert.equal(updates[0].new.length, 8);
  assert.equal(updates[0].new[1], 'changed');
  assert.ok(2 in updates[0].new);
  assert.equal(updates[0].new[2], undefined, 'unchanged TOAST');
  assert.deepEqual(updates[1].key, ['2', null, null, null, null, null, null, null]);
  assert.equal(updates[1].new[0], '3');

  const deletes = ofTag(got, 'delete');
  assert.deepEqual(deletes, [{ tag: 'delete', relid: oids.items, key: ['3', null, null, null, null, null, null, null], old: undefined }]);

  // The logical message sits inside its transaction, before the insert it precedes.
  const messages = ofTag(got, 'message');
  assert.equal(messages.length, 1);
  assert.equal(messages[0].transactional, true);
  assert.equal(messages[0].prefix, 'shardbridge');
  assert.equal(messages[0].content.toString(), 'x');
  const at = tags.indexOf('message');
  assert.equal(tags.lastIndexOf('begin', at) > tags.lastIndexOf('commit', at), true);

  const truncates = ofTag(got, 'truncate');
  assert.equal(truncates.length, 1);
  assert.deepEqual([...truncates[0].relids].sort((a, b) => a - b), [oids.items, oids.other].sort((a, b) => a - b));
  assert.equal(truncates[0].restartIdentity, true);
  assert.equal(truncates[0].cascade, false);
  assert.ok(!tags.includes('unsupported'));

  // Acknowledging through the library with ackArgument confirms exactly the commit end LSN.
  const last = commits[6].endLsn;
  await live.service.acknowledge(ackArgument(last));
  await waitFor('confirmed_flush_lsn to move', async () => {
    const { rows } = await admin.query(`SELECT confirmed_flush_lsn::text AS c FROM pg_replication_slots WHERE slot_name = 'sb_slot'`);
    return (rows[0] as { c: string }).c === formatLsn(last);
  });
  await live.service.stop();
  await done;
});

test('confirming a commit end LSN exactly keeps a transaction whose commit record follows it directly', async (t) => {
  const cluster = await startPostgres({ name: 'pgoutput-ack' });
  const a = new pg.Client({ connectionString: cluster.url() });
  const b = new pg.Client({ connectionString: cluster.url() });
  const streams: { service: LogicalReplicationService; done: Promise<unknown> }[] = [];
  t.after(async () => {
    // Replication connections first: a fast shutdown waits for walsenders to be confirmed.
    for (const s of streams) await s.service.destroy();
    await Promise.all([a.end(), b.end()]);
    await cluster.destroy();
  });
  await a.connect();
  await b.connect();
  await a.query(`CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION p FOR TABLE t`);
  await a.query(`SELECT pg_create_logical_replication_slot('s', 'pgoutput')`);

  // Two transactions whose commit records are adjacent in WAL: both insert, then both commit.
  // Other WAL (a checkpoint, autovacuum) may land in between: retry until adjacent.
  let first = 0n;
  let id = 0;
  await waitFor('two transactions with adjacent commit records', async () => {
    const s = stream(cluster, 's', 'p');
    try {
      await a.query('BEGIN');
      await b.query('BEGIN');
      await a.query('INSERT INTO t VALUES ($1)', [++id]);
      await b.query('INSERT INTO t VALUES ($1)', [++id]);
      await a.query('COMMIT');
      await b.query('COMMIT');
      await waitForCommits(s.got, 2);
      const [c1, c2] = ofTag(s.got, 'commit').slice(-2);
      const adjacent = ofTag(s.got, 'begin').at(-1)?.finalLsn === c1.endLsn;
      first = c1.endLsn;
      if (adjacent) await s.service.acknowledge(ackArgument(first));
      else await s.service.acknowledge(ackArgument(c2.endLsn)); // consume both, try again
      await waitFor('confirm', async () => {
        const { rows } = await a.query(`SELECT confirmed_flush_lsn::text AS c FROM pg_replication_slots WHERE slot_name = 's'`);
        return (rows[0] as { c: string }).c === formatLsn(adjacent ? first : c2.endLsn);
      });
      return adjacent;
    } catch (err) {
      await Promise.all([a.query('ROLLBACK'), b.query('ROLLBACK')]); // leave no open transaction behind
      throw err;
    } finally {
      await s.service.destroy();
      await s.done;
    }
  }, { timeoutMs: 60_000, intervalMs: 10 });

  // Restart from the slot: the second transaction must be delivered again.
  const again = stream(cluster, 's', 'p');
  streams.push(again);
  await waitForCommits(again.got, 1);
  const inserts = ofTag(again.got, 'insert');
  assert.deepEqual(inserts[0].new, [String(id)]);
  assert.equal(ofTag(again.got, 'begin')[0].finalLsn, first);
});
