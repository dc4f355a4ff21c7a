/**
 * The connectors against a Kafka that enforces ACLs (StandardAuthorizer, nothing allowed without
 * an ACL, SASL/PLAIN users): a missing permission stops the process at once (exit 2) with a
 * message naming the principal, the operation and the resource, and the kafka-acls command that
 * grants it; never a retry loop, a hang, or a source confirming WAL that Kafka did not take.
 * Each test's principal is a user of its own, given its ACLs by the plaintext listener's super user.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import kafkajs from 'kafkajs';
import pg from 'pg';
import type { KafkaBroker } from '../../shared/devstack/kafka.ts';
import type { PgCluster } from '../../shared/devstack/postgres.ts';
import { runCli, spawnCli, type CliChild } from '../helpers/cli.ts';
import { startSecureStack } from '../helpers/secure-stack.ts';
import { dropSlot, uniquePrefix } from '../helpers/source.ts';
import { waitFor } from '../../shared/devstack/ports.ts';

const { Kafka, AclResourceTypes, AclOperationTypes, AclPermissionTypes, ResourcePatternTypes } = kafkajs;
const USERS = ['src-nocreate', 'src-notx', 'snk-nogroup', 'snk-notopic', 'snk-hidden', 'resnap'];
const password = (user: string) => `pw-${user}`;
const dir = mkdtempSync(join(tmpdir(), 'sb-acls-'));
const releases: (() => Promise<void>)[] = [];
let broker: KafkaBroker;
let cluster: PgCluster;
let registryUrl: string;
let su: pg.Client;
let superAdmin: kafkajs.Admin;

before(async () => {
  const users = Object.fromEntries([...USERS, 'admin'].map((u) => [u, password(u)]));
  ({ broker, cluster, registryUrl } = await startSecureStack({ users, superUsers: ['admin'] }, releases));
  const [b, c] = [broker, cluster];
  // The plaintext listener's principal (ANONYMOUS) is a super user: it grants the ACLs.
  superAdmin = new Kafka({ brokers: [b.bootstrap], logLevel: kafkajs.logLevel.NOTHING }).admin();
  await superAdmin.connect();
  su = new pg.Client({ connectionString: c.url() });
  await su.connect();
  await su.query(`CREATE DATABASE dest`);
  const dest = new pg.Client({ connectionString: c.url('dest') });
  await dest.connect();
  await dest.query('CREATE SCHEMA acl; CREATE TABLE acl.items (id int PRIMARY KEY, v text)');
  await dest.end();
  await su.query(`CREATE SCHEMA acl; CREATE TABLE acl.items (id int PRIMARY KEY, v text);
    INSERT INTO acl.items SELECT g, 'v' || g FROM generate_series(1, 20) g`);
});

after(async () => {
  await superAdmin?.disconnect().catch(() => {});
  await su?.end().catch(() => {});
  for (const r of releases.reverse()) await r().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

type Op = 'READ' | 'WRITE' | 'CREATE' | 'DESCRIBE';

async function allow(user: string, kind: 'TOPIC' | 'GROUP', name: string, ops: Op[], prefixed = false): Promise<void> {
  await superAdmin.createAcls({
    acl: ops.map((op) => ({
      resourceType: AclResourceTypes[kind],
      resourceName: name,
      resourcePatternType: prefixed ? ResourcePatternTypes.PREFIXED : ResourcePatternTypes.LITERAL,
      principal: `User:${user}`,
      host: '*',
      operation: AclOperationTypes[op],
      permissionType: AclPermissionTypes.ALLOW,
    })),
  });
}

function configs(user: string): { source: string; sink: string; prefix: string; slot: string; group: string } {
  const prefix = uniquePrefix();
  const slot = `sb_${user.replace(/-/g, '_')}`;
  const group = `g-${prefix}`;
  const kafka = { brokers: [broker.secureBootstrap], sasl: { mechanism: 'plain', username: user, password: password(user) } };
  const source = join(dir, `${user}-source.json`);
  const sink = join(dir, `${user}-sink.json`);
  writeFileSync(source, JSON.stringify({ name: user, source: { url: cluster.url() }, kafka, schemaRegistry: { url: registryUrl }, topicPrefix: prefix, slotName: slot, tables: { schemas: ['acl'] }, metricsPort: 0 }));
  writeFileSync(sink, JSON.stringify({ name: user, groupId: group, destination: { url: cluster.url('dest') }, kafka, schemaRegistry: { url: registryUrl }, topicPrefix: prefix, metricsPort: 0 }));
  return { source, sink, prefix, slot, group };
}

/** The child's exit, which must come within `ms` (else it is killed and the test fails with its output). */
async function exitWithin(child: CliChild, ms: number): Promise<{ code: number | null; output: string }> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), ms)));
  const r = await Promise.race([child.exited, late]);
  clearTimeout(timer);
  if (r === 'late') {
    child.proc.kill('SIGKILL');
    await child.exited;
    assert.fail(`still running after ${ms} ms:\n${child.output()}`);
  }
  return { code: r.code, output: child.output() };
}

/** The table topics and control topics made by the super user, as an operator would for a principal without Create. */
async function makeTopics(prefix: string): Promise<void> {
  await superAdmin.createTopics({
    waitForLeaders: true,
    topics: [`${prefix}.acl.items`, `${prefix}.__snapshot`, `${prefix}.__sequences`, `${prefix}.__transactions`].map((topic) => ({
      topic,
      numPartitions: 1,
      configEntries: topic.endsWith('__snapshot') || topic.endsWith('__sequences') ? [{ name: 'cleanup.policy', value: 'compact' }] : [],
    })),
  });
}

test('source without Create (its topics missing), then without any Write: exit 2 at once, naming principal, operation, topics and the grant', async () => {
  const user = 'src-nocreate';
  const c = configs(user);
  const first = await exitWithin(spawnCli('source', c.source), 30_000);
  assert.equal(first.code, 2, first.output);
  assert.match(first.output, new RegExp(`Kafka refused User:${user} IdempotentWrite on the cluster`));
  assert.match(first.output, new RegExp(`kafka-acls.sh --bootstrap-server ${broker.secureBootstrap} .*--add --allow-principal 'User:${user}' --operation IdempotentWrite --cluster`));

  await allow(user, 'TOPIC', `${c.prefix}.`, ['WRITE'], true);
  const second = await exitWithin(spawnCli('source', c.source), 30_000);
  assert.equal(second.code, 2, second.output);
  assert.match(second.output, new RegExp(`Kafka refused User:${user} Create on one or more of the topics ${c.prefix}\\.__sequences, ${c.prefix}\\.__snapshot, ${c.prefix}\\.__transactions, ${c.prefix}\\.acl\\.items while creating the topics it needs \\(TOPIC_AUTHORIZATION_FAILED\\)`));
  assert.match(second.output, new RegExp(`--operation Create --topic '${c.prefix}\\.' --resource-pattern-type prefixed`));
  assert.doesNotMatch(second.output, /partition count, replication factor/);
});

test('source without Write on __transactions: stops at the first streamed transaction (exit 2), its slot not confirmed past it', async () => {
  const user = 'src-notx';
  const c = configs(user);
  await makeTopics(c.prefix);
  for (const t of ['acl.items', '__snapshot', '__sequences']) await allow(user, 'TOPIC', `${c.prefix}.${t}`, ['WRITE']);
  await allow(user, 'TOPIC', `${c.prefix}.`, ['READ'], true);
  await allow(user, 'GROUP', 'shardbridge-read-', ['READ'], true);
  const child = spawnCli('source', c.source, { logLevel: 'info' });
  // Streaming once the slot is active (the snapshot writes no __transactions record).
  let lsn = '';
  for (const deadline = Date.now() + 30_000; ; ) {
    const { rows } = await su.query(`SELECT active FROM pg_replication_slots WHERE slot_name = $1`, [c.slot]);
    if (rows[0]?.active) break;
    assert.ok(Date.now() < deadline && child.proc.exitCode === null, `the source never streamed:\n${child.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  lsn = (await su.query(`INSERT INTO acl.items VALUES (1001, 'x') RETURNING pg_current_wal_insert_lsn()::text AS lsn`)).rows[0].lsn;
  const { code, output } = await exitWithin(child, 30_000);
  assert.equal(code, 2, output);
  assert.match(output, new RegExp(`Kafka refused User:${user} Write on (topic |one or more of the topics .*)${c.prefix}\\.__transactions`));
  assert.match(output, new RegExp(`--allow-principal 'User:${user}' --operation Write --topic`));
  const { rows } = await su.query(`SELECT confirmed_flush_lsn < $2::pg_lsn AS behind FROM pg_replication_slots WHERE slot_name = $1`, [c.slot, lsn]);
  assert.equal(rows[0].behind, true, 'the slot was confirmed past a transaction Kafka did not take');
  await dropSlot(su, c.slot);
});

test('sink without Read on its group: exit 2 at once (was 0), naming the group and the grant', async () => {
  const user = 'snk-nogroup';
  const c = configs(user);
  await makeTopics(c.prefix);
  await allow(user, 'TOPIC', `${c.prefix}.`, ['READ'], true);
  const { code, output } = await exitWithin(spawnCli('sink', c.sink), 30_000);
  assert.equal(code, 2, output);
  assert.match(output, new RegExp(`Kafka refused User:${user} Read on group ${c.group} while consuming`));
  assert.match(output, new RegExp(`--allow-principal 'User:${user}' --operation Read --group '${c.group}'`));
});

test('sink without Read on a topic: exit 2 at once, naming its topics and the prefixed grant', async () => {
  const user = 'snk-notopic';
  const c = configs(user);
  await makeTopics(c.prefix);
  await allow(user, 'GROUP', c.group, ['READ']);
  // Describe on all: a topic it may not describe is left out of its listing, and so not consumed (see docs/sink-connector.md, "Kafka ACLs").
  await allow(user, 'TOPIC', `${c.prefix}.`, ['DESCRIBE'], true);
  for (const t of ['acl.items', '__snapshot', '__sequences']) await allow(user, 'TOPIC', `${c.prefix}.${t}`, ['READ']);
  const { code, output } = await exitWithin(spawnCli('sink', c.sink), 30_000);
  assert.equal(code, 2, output);
  assert.match(output, new RegExp(`Kafka refused User:${user} Read on one or more of the topics .*${c.prefix}\\.__transactions.* \\(TOPIC_AUTHORIZATION_FAILED\\)`));
  assert.match(output, new RegExp(`--operation Read --topic '${c.prefix}\\.' --resource-pattern-type prefixed`));
});

test('sink that may not Describe a table topic: Kafka hides it from the listing; once the snapshot markers name it, the sink says so (error naming topic and table, the grant)', async (t) => {
  const user = 'snk-hidden';
  const c = configs(user);
  await makeTopics(c.prefix);
  await allow(user, 'GROUP', c.group, ['READ']);
  for (const x of ['__snapshot', '__sequences', '__transactions']) await allow(user, 'TOPIC', `${c.prefix}.${x}`, ['READ']);
  const producer = new Kafka({ brokers: [broker.bootstrap], logLevel: kafkajs.logLevel.NOTHING }).producer();
  await producer.connect();
  const topic = `${c.prefix}.acl.items`;
  const started = { kind: 'started', table: 'acl.items', tableSchema: 'acl', tableName: 'items', topic, slot: c.slot, consistentPoint: '0/1', estimatedRows: 20, at: new Date().toISOString() };
  await producer.send({ topic: `${c.prefix}.__snapshot`, messages: [{ key: 'acl.items', value: JSON.stringify(started) }] });
  await producer.disconnect();
  const sink = spawnCli('sink', c.sink);
  t.after(async () => {
    sink.proc.kill('SIGKILL');
    await sink.exited;
  });
  let exited = false;
  void sink.exited.then(() => (exited = true));
  await waitFor('the hidden topic reported', () => exited || sink.output().includes('cannot see in Kafka'), { timeoutMs: 40_000, intervalMs: 200 });
  assert.equal(exited, false, sink.output());
  assert.match(sink.output(), new RegExp(`snapshot markers name ${topic.replace(/\./g, '\\.')} \\(table acl\\.items\\), which this sink cannot see in Kafka: deleted, or its principal lacks Describe on it`));
  assert.match(sink.output(), /--operation Read --topic/);
});

test('resnapshot without Read on the reader groups: fails at once (was a 30 s timeout), naming the group prefix', async () => {
  const user = 'resnap';
  const c = configs(user);
  await makeTopics(c.prefix);
  const producer = new Kafka({ brokers: [broker.bootstrap], logLevel: kafkajs.logLevel.NOTHING }).producer();
  await producer.connect();
  await producer.send({ topic: `${c.prefix}.__snapshot`, messages: [{ key: `slot:${c.slot}`, value: JSON.stringify({ kind: 'slot-created', slot: c.slot, consistentPoint: '0/1', at: new Date().toISOString() }) }] });
  await producer.disconnect();
  await allow(user, 'TOPIC', `${c.prefix}.`, ['READ', 'WRITE'], true);
  const started = Date.now();
  const { code, stderr } = await runCli(['resnapshot', '--source-config', c.source, '--table', 'acl.items']);
  assert.ok(Date.now() - started < 15_000, `took ${Date.now() - started} ms`);
  assert.equal(code, 2, stderr);
  assert.match(stderr, new RegExp(`Kafka refused User:${user} Read on group shardbridge-read-[0-9a-f]+ while consuming`));
  assert.match(stderr, /--operation Read --group 'shardbridge-read-' --resource-pattern-type prefixed/);
});
