/**
 * The development schema registry server driven by the real client library over HTTP,
 * plus our RegistryClient edge against it.
 */
import { test, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createServer as httpServer, request as httpRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { SchemaRegistry, COMPATIBILITY } from '@kafkajs/confluent-schema-registry';
import { startSchemaRegistry } from '../../shared/devstack/schema-registry-server.ts';
import { waitFor } from '../../shared/devstack/ports.ts';
import { RegistryClient } from '../../shared/registry/registry-client.ts';
import { SchemaError } from '../../shared/errors.ts';
import { decodeWireHeader } from '../../shared/registry/wire-format.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'shardbridge-sr-test-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface RecordSchema {
  type: string;
  name: string;
  namespace: string;
  fields: Record<string, unknown>[];
}
const userV1: RecordSchema = {
  type: 'record',
  name: 'User',
  namespace: 'test.shardbridge',
  fields: [
    { name: 'id', type: 'long' },
    { name: 'name', type: 'string' },
  ],
};
const withField = (base: RecordSchema, field: Record<string, unknown>): RecordSchema => ({ ...base, fields: [...base.fields, field] });

type Req = { method?: string; url?: string };
/** A proxy in front of the registry at `target` that records each request, answers none that `silent` picks, and itself those `answer` has a reply for. */
async function registryProxy(
  t: TestContext,
  target: string,
  silent: (req: Req) => boolean = () => false,
  answer: (req: Req) => { status: number; body: unknown } | undefined = () => undefined,
): Promise<{ url: string; requests: string[] }> {
  const requests: string[] = [];
  const to = new URL(target);
  const proxy = httpServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    if (silent(req)) return; // read nothing, answer nothing
    const own = answer(req);
    if (own) {
      req.resume();
      res.writeHead(own.status, { 'content-type': 'application/vnd.schemaregistry.v1+json' });
      res.end(JSON.stringify(own.body));
      return;
    }
    const up = httpRequest({ host: to.hostname, port: to.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    req.pipe(up);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => {
    proxy.close(() => resolve());
    proxy.closeAllConnections();
  }));
  return { url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, requests };
}

async function http(url: string, method: string, body?: unknown): Promise<{ status: number; json: any; contentType: string | null }> {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/vnd.schemaregistry.v1+json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json(), contentType: res.headers.get('content-type') };
}

test('the client library registers, encodes and decodes through the server', async (t) => {
  const srv = await startSchemaRegistry();
  t.after(() => srv.stop());
  const lib = new SchemaRegistry({ host: srv.url });

  const { id } = await lib.register(userV1 as any, { subject: 'users-value' });
  const again = await lib.register(userV1 as any, { subject: 'users-value' });
  assert.equal(again.id, id);
  // The same schema under another subject gets the same global id, as in Confluent.
  const other = await lib.register(userV1 as any, { subject: 'other-value' });
  assert.equal(other.id, id);
  assert.equal(await lib.getLatestSchemaId('users-value'), id);
  assert.equal(await lib.getRegistryIdBySchema('users-value', userV1 as any), id);

  const buf = await lib.encode(id, { id: 42, name: 'ada' });
  assert.equal(decodeWireHeader(buf).schemaId, id);
  // A fresh client has no cache: decode fetches the schema by id from the server.
  const fresh = new SchemaRegistry({ host: srv.url });
  assert.deepEqual({ ...(await fresh.decode(buf)) }, { id: 42, name: 'ada' });

  const versions = await http(`${srv.url}/schemas/ids/${id}/versions`, 'GET');
  assert.deepEqual(versions.json, [
    { subject: 'other-value', version: 1 },
    { subject: 'users-value', version: 1 },
  ]);
  assert.equal(versions.contentType, 'application/vnd.schemaregistry.v1+json');
});

test('BACKWARD refuses a new field without default with 409; NONE allows it', async (t) => {
  const srv = await startSchemaRegistry();
  t.after(() => srv.stop());
  const lib = new SchemaRegistry({ host: srv.url });
  const v2Bad = withField(userV1, { name: 'email', type: 'string' });
  const v2Good = withField(userV1, { name: 'email', type: 'string', default: '' });

  const { id: id1 } = await lib.register(userV1 as any, { subject: 'b-value' });
  await assert.rejects(lib.register(v2Bad as any, { subject: 'b-value' }), (err: any) => err.status === 409 && /incompatible/.test(err.message));
  const raw = await http(`${srv.url}/subjects/b-value/versions`, 'POST', { schema: JSON.stringify(v2Bad) });
  assert.equal(raw.status, 409);
  assert.equal(raw.json.error_code, 409);

  const { id: id2 } = await lib.register(v2Good as any, { subject: 'b-value' });
  assert.notEqual(id2, id1);
  assert.deepEqual((await http(`${srv.url}/subjects/b-value/versions`, 'GET')).json, [1, 2]);

  await lib.register(userV1 as any, { subject: 'n-value', compatibility: COMPATIBILITY.NONE });
  assert.equal((await http(`${srv.url}/config/n-value`, 'GET')).json.compatibilityLevel, 'NONE');
  const { id: idNone } = await lib.register(v2Bad as any, { subject: 'n-value', compatibility: COMPATIBILITY.NONE });
  assert.ok(idNone > id2);
});

test('FORWARD, FULL and the transitive levels follow Avro schema resolution', async (t) => {
  const srv = await startSchemaRegistry();
  t.after(() => srv.stop());
  const register = (subject: string, schema: object) => http(`${srv.url}/subjects/${subject}/versions`, 'POST', { schema: JSON.stringify(schema) });
  const setLevel = (subject: string, level: string) => http(`${srv.url}/config/${subject}`, 'PUT', { compatibility: level });

  // FORWARD: old readers must read new data. Dropping a field without default breaks them;
  // adding a required field does not.
  const onlyId = { ...userV1, fields: [userV1.fields[0]] };
  await register('f', userV1);
  assert.equal((await setLevel('f', 'FORWARD')).json.compatibility, 'FORWARD');
  assert.equal((await register('f', onlyId)).status, 409);
  assert.equal((await register('f', withField(userV1, { name: 'age', type: 'int' }))).status, 200);

  // FULL: both ways; a field with a default is fine, a required one is not.
  await register('full', userV1);
  await setLevel('full', 'FULL');
  assert.equal((await register('full', withField(userV1, { name: 'age', type: 'int' }))).status, 409);
  assert.equal((await register('full', withField(userV1, { name: 'age', type: 'int', default: 0 }))).status, 200);

  // v3 reads v2 (which has b) but not v1 (which lacks it and v3 has no default for it).
  const v2 = withField(userV1, { name: 'b', type: 'string', default: 'x' });
  const v3 = withField(userV1, { name: 'b', type: 'string' });
  for (const [subject, level, expected] of [
    ['bt', 'BACKWARD_TRANSITIVE', 409],
    ['bl', 'BACKWARD', 200],
  ] as const) {
    await setLevel(subject, level);
    await register(subject, userV1);
    await register(subject, v2);
    assert.equal((await register(subject, v3)).status, expected, level);
  }
});

test('ids, versions and levels survive a restart with the same dataFile', async () => {
  const dataFile = path.join(tmp, 'restart', 'registry.json');
  const first = await startSchemaRegistry({ dataFile });
  const lib = new SchemaRegistry({ host: first.url });
  const { id: a } = await lib.register(userV1 as any, { subject: 'r1-value' });
  const v2 = withField(userV1, { name: 'email', type: ['null', 'string'], default: null });
  const { id: b } = await lib.register(v2 as any, { subject: 'r1-value' });
  await http(`${first.url}/config/r2-value`, 'PUT', { compatibility: 'FULL' });
  await first.stop();
  assert.ok(fs.existsSync(dataFile));
  assert.deepEqual(
    fs.readdirSync(path.dirname(dataFile)).filter((f) => f.endsWith('.tmp')),
    [],
  );

  const second = await startSchemaRegistry({ dataFile });
  try {
    const lib2 = new SchemaRegistry({ host: second.url });
    assert.equal((await lib2.register(userV1 as any, { subject: 'r1-value' })).id, a);
    assert.equal((await lib2.register(v2 as any, { subject: 'r1-value' })).id, b);
    const latest = await http(`${second.url}/subjects/r1-value/versions/latest`, 'GET');
    assert.deepEqual({ ...latest.json, schema: JSON.parse(latest.json.schema) }, { subject: 'r1-value', id: b, version: 2, schema: v2 });
    assert.equal((await http(`${second.url}/config/r2-value`, 'GET')).json.compatibilityLevel, 'FULL');
    // A new schema continues the id sequence rather than reusing one.
    const v3 = withField(v2, { name: 'age', type: 'int', default: 0 });
    assert.equal((await lib2.register(v3 as any, { subject: 'r1-value' })).id, Math.max(a, b) + 1);
  } finally {
    await second.stop();
  }
});

test('raw HTTP: Confluent error codes, subjects, lookup, config and compatibility test', async (t) => {
  const srv = await startSchemaRegistry();
  t.after(() => srv.stop());
  const u = srv.url;
  const schema = JSON.stringify(userV1);

  assert.equal((await http(`${u}/subjects/s1/versions`, 'POST', { schema, schemaType: 'AVRO' })).json.id, 1);
  await http(`${u}/subjects/s2/versions`, 'POST', { schema });
  assert.deepEqual((await http(`${u}/subjects`, 'GET')).json, ['s1', 's2']);

  const missingSubject = await http(`${u}/subjects/nope/versions/latest`, 'GET');
  assert.deepEqual([missingSubject.status, missingSubject.json.error_code], [404, 40401]);
  const missingVersion = await http(`${u}/subjects/s1/versions/7`, 'GET');
  assert.deepEqual([missingVersion.status, missingVersion.json.error_code], [404, 40402]);
  const missingSchema = await http(`${u}/schemas/ids/999`, 'GET');
  assert.deepEqual([missingSchema.status, missingSchema.json.error_code], [404, 40403]);
  for (const bad of ['{not json', JSON.stringify({ type: 'record', name: 'X', fields: [{ name: 'a', type: 'nosuchtype' }] })]) {
    const invalid = await http(`${u}/subjects/s1/versions`, 'POST', { schema: bad });
    assert.deepEqual([invalid.status, invalid.json.error_code], [422, 42201]);
    assert.equal(typeof invalid.json.message, 'string');
  }
  const badLevel = await http(`${u}/config`, 'PUT', { compatibility: 'SIDEWAYS' });
  assert.deepEqual([badLevel.status, badLevel.json.error_code], [422, 42203]);

  assert.deepEqual((await http(`${u}/schemas/ids/1`, 'GET')).json, { schema });
  assert.deepEqual((await http(`${u}/subjects/s1/versions/1/schema`, 'GET')).json, userV1);
  assert.deepEqual((await http(`${u}/subjects/s1`, 'POST', { schema })).json, { subject: 's1', id: 1, version: 1, schema });
  const notUnder = await http(`${u}/subjects/s1`, 'POST', { schema: JSON.stringify(withField(userV1, { name: 'z', type: 'int' })) });
  assert.deepEqual([notUnder.status, notUnder.json.error_code], [404, 40403]);

  assert.deepEqual((await http(`${u}/config`, 'GET')).json, { compatibilityLevel: 'BACKWARD' });
  const noOwnLevel = await http(`${u}/config/s1`, 'GET');
  assert.equal(noOwnLevel.status, 404);
  assert.deepEqual((await http(`${u}/config/s1?defaultToGlobal=true`, 'GET')).json, { compatibilityLevel: 'BACKWARD' });

  const incompatible = JSON.stringify(withField(userV1, { name: 'email', type: 'string' }));
  const compatible = JSON.stringify(withField(userV1, { name: 'email', type: 'string', default: '' }));
  assert.deepEqual((await http(`${u}/compatibility/subjects/s1/versions/latest`, 'POST', { schema: incompatible })).json, { is_compatible: false });
  assert.deepEqual((await http(`${u}/compatibility/subjects/s1/versions/1`, 'POST', { schema: compatible })).json, { is_compatible: true });
  const verbose = await http(`${u}/compatibility/subjects/s1/versions/latest?verbose=true`, 'POST', { schema: incompatible });
  assert.match(verbose.json.messages[0], /email/);
  const compatMissing = await http(`${u}/compatibility/subjects/s1/versions/9`, 'POST', { schema: compatible });
  assert.deepEqual([compatMissing.status, compatMissing.json.error_code], [404, 40402]);

  // Plain application/json is accepted as well as Confluent's content type.
  const plain = await fetch(`${u}/subjects/s3/versions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ schema }) });
  assert.deepEqual(await plain.json(), { id: 1 });

  assert.deepEqual((await http(`${u}/subjects/s2`, 'DELETE')).json, [1]);
  assert.deepEqual((await http(`${u}/subjects`, 'GET')).json, ['s1', 's3']);
  assert.equal((await http(`${u}/subjects/s2/versions`, 'GET')).json.error_code, 40401);
  // The schema itself stays readable by id after its subject is gone.
  assert.equal((await http(`${u}/schemas/ids/1`, 'GET')).status, 200);
});

test('RegistryClient: cached ids and schemas, SchemaError mapping, no credentials in logs', async (t) => {
  const srv = await startSchemaRegistry();
  let stopped = false;
  t.after(async () => {
    if (!stopped) await srv.stop();
  });
  const logLines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void logLines.push(s) });
  const client = new RegistryClient({ url: srv.url, username: 'svc-user', password: 's3cret-pw', logger, retries: 0 });

  const schema: RecordSchema = {
    ...userV1,
    fields: [...userV1.fields, { name: 'at', type: { type: 'long', 'connect.name': 'io.debezium.time.MicroTimestamp' } }],
  };
  const [id, same] = await Promise.all([client.register('c-value', schema), client.register('c-value', structuredClone(schema))]);
  assert.equal(same, id);
  // Key order does not matter to the cache or the registry.
  const reordered = { fields: schema.fields, namespace: schema.namespace, name: schema.name, type: schema.type };
  assert.equal(await client.register('c-value', reordered), id);

  // A second client has an empty cache: getSchema fetches the raw JSON, custom attributes intact.
  const reader = new RegistryClient({ url: srv.url, retries: 0 });
  const fetched = await reader.getSchema(id);
  assert.deepEqual(fetched, schema);
  assert.equal(await reader.getSchema(id), fetched);

  await assert.rejects(reader.getSchema(9999), (err: unknown) => err instanceof SchemaError && !err.retriable && err.context.schemaId === 9999 && err.context.status === 404);

  const incompatible = withField(schema, { name: 'email', type: 'string' });
  await assert.rejects(
    client.register('c-value', incompatible),
    (err: unknown) => err instanceof SchemaError && !err.retriable && err.context.subject === 'c-value' && err.context.status === 409,
  );
  await client.setCompatibility('c-value', 'NONE');
  assert.equal((await http(`${srv.url}/config/c-value`, 'GET')).json.compatibilityLevel, 'NONE');
  const idNone = await client.register('c-value', incompatible);
  assert.ok(idNone > id);

  // Everything above is cached: with the server gone, the same questions still get answers.
  await srv.stop();
  stopped = true;
  assert.equal(await client.register('c-value', schema), id);
  assert.equal(await client.register('c-value', incompatible), idNone);
  assert.deepEqual(await reader.getSchema(id), schema);
  // The registering client knows the schema of the ids it registered without asking.
  assert.deepEqual(await client.getSchema(idNone), incompatible);

  // New questions fail as retriable SchemaErrors naming the subject or id.
  await assert.rejects(
    client.register('d-value', schema),
    (err: unknown) => err instanceof SchemaError && err.retriable && err.context.subject === 'd-value',
  );
  await assert.rejects(reader.getSchema(id + 100), (err: unknown) => err instanceof SchemaError && err.retriable && err.context.schemaId === id + 100);
  await assert.rejects(client.setCompatibility('d-value', 'FULL'), (err: unknown) => err instanceof SchemaError && err.retriable);

  const logs = logLines.join('');
  assert.match(logs, /schema registered/);
  assert.doesNotMatch(logs, /s3cret-pw/);
});

test('RegistryClient.latestSchema: the latest version with its id, then known by id; null for a subject without versions', async (t) => {
  const srv = await startSchemaRegistry();
  let stopped = false;
  t.after(async () => {
    if (!stopped) await srv.stop();
  });
  const writer = new RegistryClient({ url: srv.url, retries: 0 });
  const v1 = await writer.register('l-value', userV1);
  const v2schema = withField(userV1, { name: 'email', type: ['null', 'string'], default: null });
  const v2 = await writer.register('l-value', v2schema);
  assert.ok(v2 > v1);

  const reader = new RegistryClient({ url: srv.url, retries: 0 });
  assert.deepEqual(await reader.latestSchema('l-value'), { id: v2, schema: v2schema });
  assert.equal(await reader.latestSchema('no-such-value'), null);
  // Known by id from then on: answered with the server gone.
  await srv.stop();
  stopped = true;
  assert.deepEqual(await reader.getSchema(v2), v2schema);
  await assert.rejects(reader.latestSchema('l-value'), (err: unknown) => err instanceof SchemaError && err.retriable && err.context.subject === 'l-value');
});

test("RegistryClient keeps a subject's own compatibility level (an operator's NONE for a type change) and sets BACKWARD only on a subject without one", async (t) => {
  const srv = await startSchemaRegistry();
  t.after(() => srv.stop());
  const first = new RegistryClient({ url: srv.url, retries: 0 });
  const v1 = await first.register('n-value', userV1);
  // A subject without a level of its own gets the connector's BACKWARD at its first registration.
  assert.equal((await http(`${srv.url}/config/n-value`, 'GET')).json.compatibilityLevel, 'BACKWARD');
  const changed: RecordSchema = { ...userV1, fields: [{ name: 'id', type: 'string' }, userV1.fields[1]] };
  await assert.rejects(first.register('n-value', changed), (err: unknown) => {
    assert.ok(err instanceof SchemaError);
    assert.equal(err.context.status, 409);
    assert.equal(err.context.compatibility, 'BACKWARD');
    assert.match(err.remedy ?? '', /PUT http:\S+\/config\/n-value with {"compatibility":"NONE"}/);
    assert.match(err.remedy ?? '', /set it back to BACKWARD/);
    assert.doesNotMatch(err.remedy ?? '', /default/);
    return true;
  });
  // The documented remedy, applied by the operator (not through this client); then a fresh start registers under it.
  assert.equal((await http(`${srv.url}/config/n-value`, 'PUT', { compatibility: 'NONE' })).status, 200);
  const next = new RegistryClient({ url: srv.url, retries: 0 });
  assert.equal(await next.register('n-value', userV1), v1);
  const v2 = await next.register('n-value', changed);
  assert.ok(v2 > v1);
  assert.equal((await http(`${srv.url}/config/n-value`, 'GET')).json.compatibilityLevel, 'NONE', 'the operator’s level stays');
  // A key subject's refusal says the key changed, not that a column wants a default.
  await next.register('n-key', userV1);
  await assert.rejects(next.register('n-key', changed), (err: unknown) => {
    assert.ok(err instanceof SchemaError);
    assert.match(err.remedy ?? '', /key columns/);
    assert.match(err.remedy ?? '', /\/config\/n-key/);
    return true;
  });
});

test('RegistryClient with schemaRegistry.passwordFile rotated in place: a 401 reads the file again and sends the request once more with the new password (the library\'s registration too); a password refused again is not resent; none is logged', async (t) => {
  const srv = await startSchemaRegistry();
  t.after(() => srv.stop());
  // A front that takes one password only (the test registry asks for none). `rotateAt`: at that
  // request (let through), the registry and the file change to `next`, as an operator rotating does.
  let accepted = 'Reg-First-0a1b';
  let rotateAt: { request: string; next: string } | undefined;
  const basic = (pw: string) => `Basic ${Buffer.from(`svc:${pw}`).toString('base64')}`;
  const file = path.join(tmp, 'registry-password');
  const rotate = (next: string) => {
    accepted = next;
    fs.writeFileSync(file, `${next}\n`);
  };
  const answer = (req: Req) => {
    if (rotateAt?.request === `${req.method} ${req.url}`) {
      rotate(rotateAt.next);
      rotateAt = undefined;
      return undefined;
    }
    return (req as IncomingMessage).headers.authorization === basic(accepted) ? undefined : { status: 401, body: { error_code: 401, message: 'Unauthorized' } };
  };
  const { url, requests } = await registryProxy(t, srv.url, undefined, answer);
  fs.writeFileSync(file, `${accepted}\n`);
  const logLines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void logLines.push(s) });
  const client = new RegistryClient({ url, username: 'svc', password: accepted, passwordFile: file, logger, retries: 0 });
  await client.register('rot1-value', userV1);

  // Our own request (fetch): refused once, sent again with the file's new password.
  rotate('Reg-Second-2c3d');
  requests.length = 0;
  assert.deepEqual(await client.subjects(), ['rot1-value']);
  assert.deepEqual(requests, ['GET /subjects', 'GET /subjects']);

  // The library's registration: the rotation after our lookup and level read, so the library's first request is refused.
  rotateAt = { request: 'GET /config/rot2-value', next: 'Reg-Third-4e5f' };
  requests.length = 0;
  const id = await client.register('rot2-value', { ...userV1, name: 'User2' });
  assert.equal(rotateAt, undefined, 'rotated during the registration');
  assert.equal((await http(`${srv.url}/schemas/ids/${id}`, 'GET')).status, 200, 'registered');
  // Our level read, the library's refused (sent with the old password), the library's again.
  assert.equal(requests.filter((r) => r === 'GET /config/rot2-value').length, 3, requests.join(', '));
  assert.ok(requests.includes('POST /subjects/rot2-value/versions'), requests.join(', '));

  // Refused with the password the file still holds: no second try; the 401 as before.
  accepted = 'Reg-Elsewhere-6a7b';
  requests.length = 0;
  await assert.rejects(client.subjects(), (err: unknown) => err instanceof SchemaError && err.context.status === 401 && /check the registry username and password/.test(err.remedy ?? ''));
  assert.deepEqual(requests, ['GET /subjects']);
  // The file gone: the last good password kept (refused here), a warning naming the key and the path.
  fs.rmSync(file);
  await assert.rejects(client.subjects(), (err: unknown) => err instanceof SchemaError && err.context.status === 401);
  const warned = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.level === 40);
  assert.deepEqual(warned.map((l) => [l.msg, l.key, l.path]), [[`schemaRegistry.passwordFile ${file}: cannot read it: no such file; the password last read from it is used meanwhile (put the password in the file again)`, 'schemaRegistry.passwordFile', file]]);

  const logs = logLines.join('');
  assert.match(logs, /schemaRegistry\.passwordFile holds another: taken, the request sent again/);
  for (const pw of ['Reg-First-0a1b', 'Reg-Second-2c3d', 'Reg-Third-4e5f']) assert.ok(!logs.includes(pw), pw);
});

test('RegistryClient: a schema already under its subject costs one request to find again (every restart, two subjects a table)', async (t) => {
  const srv = await startSchemaRegistry();
  t.after(() => srv.stop());
  // A counting proxy in front of the registry.
  const { url, requests } = await registryProxy(t, srv.url);
  const subjects = Array.from({ length: 60 }, (_, i) => ({ subject: `many${i}-value`, schema: { ...userV1, name: `User${i}` } }));

  const first = new RegistryClient({ url, retries: 0 });
  const ids = await Promise.all(subjects.map((s) => first.register(s.subject, s.schema)));
  assert.equal((await http(`${srv.url}/config/many7-value`, 'GET')).json.compatibilityLevel, 'BACKWARD', 'a new subject gets BACKWARD');

  requests.length = 0;
  const restarted = new RegistryClient({ url, retries: 0 });
  assert.deepEqual(await Promise.all(subjects.map((s) => restarted.register(s.subject, s.schema))), ids);
  assert.equal(requests.length, subjects.length, `requests: ${[...new Set(requests.map((r) => r.replace(/many\d+/, 'S')))].join(', ')}`);
  assert.ok(requests.every((r) => /^POST \/subjects\/many\d+-value$/.test(r)));

  // A schema new under its subject is still registered, under the subject's own level.
  requests.length = 0;
  const evolved = withField(subjects[0].schema, { name: 'email', type: ['null', 'string'], default: null });
  assert.ok((await restarted.register(subjects[0].subject, evolved)) > Math.max(...ids));
  assert.ok(requests.some((r) => r.startsWith('POST /subjects/many0-value/versions')));
});

test('RegistryClient: many requests at once under one stop signal (16 tables at a time at start) make no listener-leak warning', async (t) => {
  const srv = await startSchemaRegistry();
  t.after(() => srv.stop());
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
  process.on('warning', onWarning);
  t.after(() => process.off('warning', onWarning));
  const stop = new AbortController();
  const subjects = Array.from({ length: 30 }, (_, i) => ({ subject: `leak${i}-value`, schema: { ...userV1, name: `Leak${i}` } }));
  // The first client registers (the library's requests), the second finds them again (our own).
  for (const client of [new RegistryClient({ url: srv.url, retries: 0, signal: stop.signal }), new RegistryClient({ url: srv.url, retries: 0, signal: stop.signal })]) {
    await Promise.all(subjects.map((s) => client.register(s.subject, s.schema)));
  }
  // process.emitWarning emits on a later tick.
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning')), []);
});

test('RegistryClient: a registry that stops answering ends each request after the timeout, the registration too (it had none), with no retries of its own', async (t) => {
  const srv = await startSchemaRegistry();
  t.after(() => srv.stop());
  // A proxy in front of the registry that never answers the requests `silent` picks (nor, once hung, any).
  let silent = (_req: { method?: string; url?: string }): boolean => false;
  const { url, requests } = await registryProxy(t, srv.url, (req) => silent(req));
  const client = new RegistryClient({ url, requestTimeoutMs: 300 });

  // The library's registration (after our lookup and level read answered): it waited for good.
  silent = (req) => req.method === 'POST' && /\/versions$/.test(req.url ?? '');
  let started = Date.now();
  await assert.rejects(client.register('hang-value', userV1), (err: SchemaError) => err.retriable && /hang-value/.test(err.message));
  assert.ok(Date.now() - started < 5_000, `registration ended after ${Date.now() - started} ms`);

  // Our own requests: one try, not four, then the caller's loop.
  silent = () => true;
  requests.length = 0;
  started = Date.now();
  await assert.rejects(client.getSchema(1), (err: SchemaError) => {
    assert.equal(err.retriable, true);
    assert.match(err.message, new RegExp(`the registry at ${url} accepted the connection but did not answer within 0.3 s`));
    return true;
  });
  assert.ok(Date.now() - started < 2_000, `getSchema ended after ${Date.now() - started} ms`);
  assert.deepEqual(requests, ['GET /schemas/ids/1']);

  // The connector's stop ends the requests under way, the library's too, long before their timeout.
  const stop = new AbortController();
  const stoppable = new RegistryClient({ url, requestTimeoutMs: 60_000, signal: stop.signal });
  silent = (req) => req.method === 'POST' && /\/versions$/.test(req.url ?? '');
  requests.length = 0;
  const registering = stoppable.register('stop-value', userV1);
  await waitFor('the registration sent', async () => requests.some((r) => r === 'POST /subjects/stop-value/versions'), { timeoutMs: 5_000 });
  silent = () => true;
  const fetching = stoppable.getSchema(2);
  await waitFor('the fetch sent', async () => requests.includes('GET /schemas/ids/2'), { timeoutMs: 5_000 });
  started = Date.now();
  stop.abort();
  await assert.rejects(registering, SchemaError);
  await assert.rejects(fetching, SchemaError);
  assert.ok(Date.now() - started < 1_000, `ended ${Date.now() - started} ms after the stop`);
});

test("deletes are Confluent's two steps: soft (hidden, numbers kept, id readable), then permanent; references are refused", async (t) => {
  const srv = await startSchemaRegistry();
  t.after(() => srv.stop());
  const u = srv.url;
  const schema = JSON.stringify(userV1);
  const v2 = JSON.stringify(withField(userV1, { name: 'email', type: ['null', 'string'], default: null }));
  const { id } = (await http(`${u}/subjects/d-value/versions`, 'POST', { schema })).json;
  await http(`${u}/subjects/d-value/versions`, 'POST', { schema: v2 });
  await http(`${u}/config/d-value`, 'PUT', { compatibility: 'NONE' });
  const code = async (method: string, p: string, body?: unknown) => {
    const r = await http(`${u}${p}`, method, body);
    return [r.status, r.json.error_code ?? r.json];
  };

  // A permanent delete first is refused; the soft one hides the subject from every read but by id.
  assert.deepEqual(await code('DELETE', '/subjects/d-value?permanent=true'), [404, 40405]);
  assert.deepEqual(await code('DELETE', '/subjects/d-value'), [200, [1, 2]]);
  assert.deepEqual(await code('DELETE', '/subjects/d-value'), [404, 40404]);
  assert.deepEqual((await http(`${u}/subjects`, 'GET')).json, []);
  assert.deepEqual((await http(`${u}/subjects?deleted=true`, 'GET')).json, ['d-value']);
  assert.deepEqual(await code('GET', '/subjects/d-value/versions'), [404, 40401]);
  assert.deepEqual(await code('GET', '/subjects/d-value/versions?deleted=true'), [200, [1, 2]]);
  assert.deepEqual(await code('GET', '/subjects/d-value/versions/latest'), [404, 40401]);
  assert.deepEqual(await code('POST', '/subjects/d-value', { schema }), [404, 40401]);
  assert.deepEqual(await code('GET', `/schemas/ids/${id}/versions`), [200, []]);
  assert.equal((await http(`${u}/schemas/ids/${id}`, 'GET')).json.schema, schema);
  assert.equal((await http(`${u}/config/d-value`, 'GET')).json.compatibilityLevel, 'NONE', 'a soft delete keeps the level');

  // Registered again: the same id, a version numbered after the deleted ones.
  assert.deepEqual(await code('POST', '/subjects/d-value/versions', { schema }), [200, { id }]);
  assert.deepEqual(await code('GET', '/subjects/d-value/versions'), [200, [3]]);
  assert.deepEqual(await code('DELETE', '/subjects/d-value/versions/3?permanent=true'), [404, 40407]);
  assert.deepEqual(await code('DELETE', '/subjects/d-value/versions/3'), [200, 3]);
  assert.deepEqual(await code('DELETE', '/subjects/d-value/versions/3'), [404, 40406]);
  assert.deepEqual(await code('DELETE', '/subjects/d-value/versions/3?permanent=true'), [200, 3]);
  assert.deepEqual(await code('DELETE', '/subjects/d-value?permanent=true'), [200, [1, 2]]);
  assert.deepEqual((await http(`${u}/subjects?deleted=true`, 'GET')).json, []);
  assert.deepEqual(await code('GET', '/config/d-value'), [404, 40408]);

  // A schema naming references would be stored without them: refused, as Confluent refuses one it cannot resolve.
  const references = [{ name: 'test.shardbridge.Other', subject: 'other-value', version: 1 }];
  assert.deepEqual(await code('POST', '/subjects/r-value/versions', { schema, references }), [422, 42201]);
  assert.deepEqual(await code('POST', '/subjects/r-value/versions', { schema, references: [] }), [200, { id }]);
});

test("RegistryClient: a 404 that is no 'not found' of the registry's names its cause: a URL that is not the registry base fails (not 'no such subject'); Karapace's 404 to a registration without write permission says so", async (t) => {
  const srv = await startSchemaRegistry();
  t.after(() => srv.stop());
  await new RegistryClient({ url: srv.url, retries: 0 }).register('w-value', userV1);
  const wrong = new RegistryClient({ url: `${srv.url}/registry`, retries: 0 });
  const named = (err: unknown) => {
    assert.ok(err instanceof SchemaError);
    assert.equal(err.context.status, 404);
    assert.match(err.remedy ?? '', /the registry's base URL/);
    return true;
  };
  await assert.rejects(wrong.latestSchema('w-value'), named);
  await assert.rejects(wrong.register('w-value', userV1), named);
  // The registry's own "not found" stays an answer.
  const right = new RegistryClient({ url: srv.url, retries: 0 });
  assert.equal(await right.latestSchema('nothing-value'), null);
  // Karapace refuses a registration by a user without write permission on the subject with 404 40401.
  const { url } = await registryProxy(t, srv.url, undefined, (req) =>
    req.method === 'POST' && /\/versions$/.test(req.url ?? '') ? { status: 404, body: { error_code: 40401, message: "Subject 'ro-value' not found." } } : undefined,
  );
  await assert.rejects(new RegistryClient({ url, retries: 0 }).register('ro-value', userV1), (err: unknown) => {
    assert.ok(err instanceof SchemaError);
    assert.equal(err.context.status, 404);
    assert.match(err.remedy ?? '', /write permission on subject ro-value/);
    return true;
  });
});
