/**
 * Our topics as Java consumers read them (Kafka Connect sinks, ksqlDB, Flink, Spark, Confluent's
 * KafkaAvroDeserializer: all org.apache.avro). The source connector runs once over the every-type
 * table, renamed and given awkward column names, in a schema whose name is no Avro name, and a
 * second table that is truncated; then one JVM (test/java/AvroDecode.java) parses every schema
 * the records name, as the registry serves it, with Avro 1.11 (Confluent Platform 7's: a union
 * field's default must match its first branch) and the specification's strict names, and
 * decodes every key and value. Java's values must be avsc's to the bit, and read back through the
 * sink's text encoders they must be the source table's rows.
 *
 * Cost: ~8 s in all, ~1.5 s of it the JVM. The jars are fetched once into the cache by the
 * before hook (ensureAvroJars; without mvn it fails there naming the package): measured 4.8 s
 * after the Kafka jars' fetch had put Maven's plugins in ~/.m2 (CI's order), 12.4 s from an
 * empty ~/.m2.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { ensureAvroJars } from '../../shared/devstack/kafka-jars.ts';
import { decodeWireHeader } from '../../shared/registry/wire-format.ts';
import { startSourceConnector } from '../../source-connector/run.ts';
import { ITEMS_DDL, ITEM_ROWS } from '../helpers/every-type-sql.ts';
import { capturingLogger } from '../helpers/kafka.ts';
import {
  assertRowsEqualTable,
  caughtUp,
  finalState,
  readRaw,
  RegistryDecoder,
  startSourceTestEnv,
  streaming,
  testSourceConfig,
  walLsn,
  type DecodedRecord,
  type SourceTestEnv,
} from '../helpers/source.ts';

const DECODER = fileURLToPath(new URL('../java/AvroDecode.java', import.meta.url));
const SCHEMA = 'my-app';
const TABLE = '2024-sales';
const OTHER = 'select';
const Q = (s: string) => `"${s.replace(/"/g, '""')}"`;

let env: SourceTestEnv;
let libsDir: string;

before(async () => {
  // The jars first: a machine without mvn fails here with the remedy, before any server starts.
  ({ libsDir } = await ensureAvroJars({ log: (m) => console.log(m) }));
  env = await startSourceTestEnv('test-avro-interop');
});

after(async () => {
  await env?.close();
});

interface JavaLine {
  schema?: string;
  tag?: string;
  ok?: boolean;
  value?: unknown;
  error?: string;
}

/** One JVM over every line: `S id schema` and `R tag id payload` (see AvroDecode.java). */
function runJava(lines: string[]): Promise<JavaLine[]> {
  return new Promise((resolve, reject) => {
    const child = spawn('java', ['-cp', path.join(libsDir, '*'), DECODER], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => {
      const stderr = Buffer.concat(err).toString('utf8');
      // The source launcher compiles in memory: a runtime without the jdk.compiler module cannot.
      const remedy = /compiler/i.test(stderr) ? ' (java File.java needs a JDK: install openjdk-17-jdk-headless)' : '';
      if (code !== 0) return reject(new Error(`AvroDecode.java exited ${code}${remedy}: ${stderr}`));
      resolve(Buffer.concat(out).toString('utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as JavaLine));
    });
    child.stdin.end(lines.join('\n') + '\n');
  });
}

/** Java's tagged JSON back to the values avsc gives (bigint longs, Buffer bytes, non-finite doubles). */
function revive(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(revive);
  if (v === null || typeof v !== 'object') return v;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.length === 1 && keys[0].startsWith('$')) {
    const text = o[keys[0]] as string;
    switch (keys[0]) {
      case '$long':
        return BigInt(text);
      case '$bytes':
      case '$fixed':
        return Buffer.from(text, 'base64');
      case '$double':
        return Number(text);
      default:
        throw new Error(`Java decoded a logical type (${keys[0]} ${text}): our schemas declare none`);
    }
  }
  return Object.fromEntries(keys.map((k) => [k, revive(o[k])]));
}

/** avsc's records are instances of generated classes: plain objects, to compare with Java's. */
function plain(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(plain);
  if (v === null || typeof v !== 'object' || Buffer.isBuffer(v)) return v;
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
}

test('Java Avro parses every schema we register (strict names, defaults validated) and decodes every key and value to the source rows, with the Debezium envelope', async (t) => {
  const { url, client, slot } = await env.freshDatabase(t);
  const S = Q(SCHEMA);
  await client.query(`CREATE SCHEMA ${S}`);
  await client.query(ITEMS_DDL(S));
  await client.query(ITEM_ROWS(S));
  // Column names that are no Avro names (a leading digit, a dash, a space, a non-ASCII letter),
  // one that clashes with another once adjusted (`a-b`, `a_b`), and Avro's and SQL's own words.
  const AWKWARD = ['1st', 'a-b', 'a_b', 'Mixed Case', 'prénom', 'type', 'default', 'order', 'null', 'namespace', 'record'];
  await client.query(`ALTER TABLE ${S}.items RENAME TO ${Q(TABLE)}`);
  await client.query(`ALTER TABLE ${S}.${Q(TABLE)} ${AWKWARD.map((c, i) => `ADD COLUMN ${Q(c)} ${i % 2 ? 'text' : 'int'}`).join(', ')}`);
  await client.query(`UPDATE ${S}.${Q(TABLE)} SET ${AWKWARD.map((c, i) => `${Q(c)} = ${i % 2 ? `'${c} ' || id` : `id * ${i + 1}`}`).join(', ')} WHERE id <> 3`);
  // Shapes the every-type table lacks: arrays of floats, bytes, dates, enums, a domain and box
  // (';' delimited), typmods, types carried as text.
  const MORE: [string, string][] = [
    ['f4s real[]', `'{NaN,-0,1.5,NULL}'`],
    ['bys bytea[]', `'{"\\\\x00ff",NULL}'`],
    ['days date[]', `'{2024-02-29,infinity,"0044-03-15 BC"}'`],
    ['tstzs timestamptz[]', `'{"2000-01-01 00:00:00.5+00",-infinity}'`],
    [`moods ${S}.mood[]`, `'{sad,happy}'`],
    [`posints ${S}.posint[]`, `'{1,NULL,3}'`],
    ['boxes box[]', `'{(1,1),(0,0);(2,2),(1,1)}'`],
    ['ts3 timestamp(3)', `'2020-02-02 02:02:02.123'`],
    ['tm0 time(0)', `'23:59:59'`],
    ['x xml', `'<a x="1">t</a>'`],
    ['o oid', '4294967295'],
    ['c1 "char"', `'z'`],
    ['nm name', `'pg_class'`],
    ['tsv tsvector', `'a:1 b:2'`],
    ['mr int4multirange', `'{[1,3),[5,7)}'`],
  ];
  await client.query(`ALTER TABLE ${S}.${Q(TABLE)} ${MORE.map(([c]) => `ADD COLUMN ${c}`).join(', ')}`);
  await client.query(`UPDATE ${S}.${Q(TABLE)} SET ${MORE.map(([c, v]) => `${c.split(' ')[0]} = ${v}`).join(', ')} WHERE id IN (1, 4)`);
  await client.query(`ALTER TABLE ${S}.${Q(TABLE)} REPLICA IDENTITY FULL`);
  // A composite key with a reserved word and an unconstrained numeric (sent as its canonical text).
  await client.query(`CREATE TABLE ${S}.${Q(OTHER)} (${Q('order')} int, ${Q('Default')} numeric, v text, PRIMARY KEY (${Q('order')}, ${Q('Default')}))`);
  await client.query(`INSERT INTO ${S}.${Q(OTHER)} VALUES (1, 1.50, 'one'), (2, 'NaN', 'two')`);

  const config = testSourceConfig({ sourceUrl: url, kafka: env.bootstrap, registry: env.registryUrl, extra: { slotName: slot, tables: { schemas: [SCHEMA] }, topics: { partitions: 2 } } });
  const source = await startSourceConnector(config, capturingLogger().logger);
  t.after(() => source.stop());
  await streaming(source);
  // Streamed: an insert, an update with its old row (REPLICA IDENTITY FULL), a delete, a truncate.
  await client.query(`INSERT INTO ${S}.${Q(TABLE)} (id, t, ${Q('1st')}, ${Q('Mixed Case')}) VALUES (6, 'six', 6, 'Six')`);
  await client.query(`UPDATE ${S}.${Q(TABLE)} SET t = 'one, updated', num = 42.5, ${Q('a-b')} = 'changed', ${Q('order')} = -1 WHERE id = 1`);
  await client.query(`DELETE FROM ${S}.${Q(TABLE)} WHERE id = 2`);
  await client.query(`TRUNCATE ${S}.${Q(OTHER)}`);
  // A second schema version: Java reads the records of both.
  await client.query(`ALTER TABLE ${S}.${Q(TABLE)} ADD COLUMN ${Q('late-column')} numeric(5,1)`);
  await client.query(`INSERT INTO ${S}.${Q(TABLE)} (id, ${Q('late-column')}, ${Q('Mixed Case')}) VALUES (7, 1234.5, 'Zoë')`);
  await caughtUp(source, await walLsn(client));

  const topics = [TABLE, OTHER].map((name) => `${config.topicPrefix}.${SCHEMA}.${name}`);
  const raw = await Promise.all(topics.map((topic) => readRaw(env.kafka, topic)));
  // Every schema the records name, as the registry serves it to a Java consumer.
  const ids = new Set<number>();
  for (const r of raw.flat()) for (const b of [r.key, r.value]) if (b) ids.add(decodeWireHeader(b).schemaId);
  const subjects = topics.flatMap((topic) => [`${topic}-key`, `${topic}-value`]);
  for (const subject of subjects) {
    const res = await fetch(`${env.registryUrl}/subjects/${encodeURIComponent(subject)}/versions/latest`);
    assert.equal(res.status, 200, `${subject} is registered`);
    ids.add(((await res.json()) as { id: number }).id);
  }
  const lines: string[] = [];
  for (const id of ids) {
    const res = await fetch(`${env.registryUrl}/schemas/ids/${id}`);
    const text = ((await res.json()) as { schema: string }).schema;
    lines.push(`S\t${id}\t${Buffer.from(text).toString('base64')}`);
  }
  raw.forEach((records, ti) => {
    for (const r of records) {
      for (const [part, b] of [['key', r.key], ['value', r.value]] as const) {
        if (b) lines.push(`R\t${ti}/${r.partition}/${r.offset}/${part}\t${decodeWireHeader(b).schemaId}\t${b.subarray(5).toString('base64')}`);
      }
    }
  });
  const started = Date.now();
  const java = await runJava(lines);
  assert.ok(ids.size >= 6, `two value schema versions of ${TABLE}, its key, ${OTHER}'s key and value, the truncate key (${ids.size})`);
  t.diagnostic(`Java parsed ${ids.size} schemas and decoded ${lines.length - ids.size} keys and values in ${Date.now() - started} ms`);
  assert.equal(java.length, lines.length, 'a line out per line in');

  const refused = java.filter((l) => l.error !== undefined).map((l) => `${l.schema ?? l.tag}: ${l.error}`);
  assert.deepEqual(refused, [], 'Java parses every schema and decodes every record');
  const decodedByJava = new Map(java.filter((l) => l.tag !== undefined).map((l) => [l.tag!, revive(l.value)]));

  const decoder = new RegistryDecoder(env.registryUrl);
  const ops = new Map<string, number>();
  for (const [ti, records] of raw.entries()) {
    const state: DecodedRecord[] = [];
    for (const r of records) {
      const tag = `${ti}/${r.partition}/${r.offset}`;
      const key = await decoder.decode(r.key);
      const value = await decoder.decode(r.value);
      const javaKey = r.key ? decodedByJava.get(`${tag}/key`) : null;
      const javaValue = (r.value ? decodedByJava.get(`${tag}/value`) : null) as DecodedRecord['value'];
      assert.deepStrictEqual(javaKey, plain(key.value), `${topics[ti]} ${tag}: Java's key is avsc's`);
      assert.deepStrictEqual(javaValue, plain(value.value), `${topics[ti]} ${tag}: Java's value is avsc's`);
      if (javaValue) {
        for (const f of ['before', 'after', 'source', 'op', 'ts_ms']) assert.ok(f in javaValue, `${tag}: envelope field ${f}`);
        const source = javaValue.source;
        assert.deepEqual([source.connector, source.schema, source.table], ['postgresql', SCHEMA, [TABLE, OTHER][ti]], `${tag}: source block`);
        ops.set(javaValue.op, (ops.get(javaValue.op) ?? 0) + 1);
        if (javaValue.op === 'u') assert.ok(javaValue.before && javaValue.after, `${tag}: an update under REPLICA IDENTITY FULL has before and after`);
      }
      state.push({
        partition: r.partition,
        offset: r.offset,
        key: javaKey as Record<string, unknown> | null,
        value: javaValue,
        valueSchemaId: value.schemaId,
        afterText: javaValue?.after ? value.toText(javaValue.after) : null,
      });
    }
    // Java's values through the sink's text encoders, cast to the columns' types: the table's rows.
    await assertRowsEqualTable(client, `${S}.${Q([TABLE, OTHER][ti])}`, finalState(state).values());
  }
  assert.deepEqual(Object.fromEntries([...ops].sort()), { c: 2, d: 1, r: 7, t: 2, u: 1 }, 'every kind of change event was read');
});
