/**
 * A small Confluent-Schema-Registry-compatible HTTP server, FOR DEVELOPMENT AND TESTS ONLY.
 * Production uses Confluent Schema Registry, or Apicurio / Karapace with the Confluent API.
 *
 * Serves the REST subset that `@kafkajs/confluent-schema-registry` and operators use
 * (register, look up, versions, config, compatibility test) for Avro only, with
 * Confluent's `{error_code, message}` error bodies and its two-step deletes (soft, then
 * `permanent=true`). No auth, no schema references (a request with some is refused), a single node. State lives in memory and, with
 * `dataFile`, in a JSON file rewritten atomically after each change so that a restart
 * keeps ids. The rules are in schema-registry-store.ts.
 */
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import pino, { type Logger } from 'pino';
import { RegistryHttpError, SchemaStore, type StoreState } from './schema-registry-store.ts';

export interface SchemaRegistryServer {
  url: string;
  port: number;
  stop(): Promise<void>;
}

const CONTENT_TYPE = 'application/vnd.schemaregistry.v1+json';
const MAX_BODY_BYTES = 16 * 1024 * 1024;

export async function startSchemaRegistry(
  opts: { port?: number; dataFile?: string; logger?: Logger } = {},
): Promise<SchemaRegistryServer> {
  const log = (opts.logger ?? pino({ level: 'silent' })).child({ component: 'dev-schema-registry' });
  const store = new SchemaStore(opts.dataFile ? loadState(opts.dataFile) : undefined);
  const persist = opts.dataFile ? () => saveState(opts.dataFile!, store.toJSON()) : () => {};

  const server = http.createServer((req, res) => {
    handle(req, store, persist, log).then(
      (r) => send(res, r.status, r.body),
      (err: unknown) => {
        if (err instanceof RegistryHttpError) {
          send(res, err.status, { error_code: err.errorCode, message: err.message });
        } else {
          log.error({ err }, 'dev schema registry: internal error');
          send(res, 500, { error_code: 50001, message: `Internal error: ${(err as Error).message}` });
        }
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const url = `http://127.0.0.1:${port}`;
  log.info({ url, dataFile: opts.dataFile }, 'dev schema registry listening');
  return {
    url,
    port,
    stop: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Clients keep connections alive; without this close() waits for them to idle out.
        server.closeAllConnections();
      }),
  };
}

interface Reply {
  status: number;
  body: unknown;
}

async function handle(req: http.IncomingMessage, store: SchemaStore, persist: () => void, log: Logger): Promise<Reply> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const method = req.method ?? 'GET';
  const parts = url.pathname
    .split('/')
    .filter(Boolean)
    .map((p) => decodeURIComponent(p));
  const ok = (body: unknown): Reply => ({ status: 200, body });
  const deleted = url.searchParams.get('deleted') === 'true';
  const permanent = url.searchParams.get('permanent') === 'true';
  const route = `${method} /${parts.map((p, i) => (isParam(parts, i) ? '*' : p)).join('/')}`;
  log.debug({ method, path: url.pathname }, 'request');

  switch (route) {
    case 'GET /':
      return ok({});
    case 'GET /schemas/types':
      return ok(['AVRO']);
    case 'GET /subjects':
      return ok(store.subjectNames(deleted));
    case 'GET /subjects/*/versions':
      return ok(store.versionNumbers(parts[1], deleted));
    case 'POST /subjects/*/versions': {
      const body = withoutReferences(await readJson(req));
      const r = store.register(parts[1], body.schema, body.schemaType);
      if (r.changed) {
        persist();
        log.info({ subject: parts[1], id: r.id, version: r.version }, 'schema registered');
      }
      return ok({ id: r.id });
    }
    case 'GET /subjects/*/versions/*':
      return ok(store.getVersion(parts[1], parts[3], deleted));
    case 'GET /subjects/*/versions/*/schema':
      return ok(JSON.parse(store.getVersion(parts[1], parts[3], deleted).schema));
    case 'DELETE /subjects/*/versions/*':
      return mutate(persist, store.deleteVersion(parts[1], parts[3], permanent));
    case 'POST /subjects/*': {
      const body = withoutReferences(await readJson(req));
      return ok(store.lookup(parts[1], body.schema, body.schemaType));
    }
    case 'DELETE /subjects/*':
      return mutate(persist, store.deleteSubject(parts[1], permanent));
    case 'GET /schemas/ids/*':
      return ok({ schema: store.schemaById(parseId(parts[2])) });
    case 'GET /schemas/ids/*/versions':
      return ok(store.subjectVersionsForId(parseId(parts[2]), deleted));
    case 'GET /config':
      return ok({ compatibilityLevel: store.getGlobalLevel() });
    case 'PUT /config':
      return mutate(persist, { compatibility: store.setLevel(undefined, (await readJson(req)).compatibility) });
    case 'GET /config/*':
      return ok({ compatibilityLevel: store.subjectLevel(parts[1], url.searchParams.get('defaultToGlobal') === 'true') });
    case 'PUT /config/*':
      return mutate(persist, { compatibility: store.setLevel(parts[1], (await readJson(req)).compatibility) });
    case 'DELETE /config/*':
      return mutate(persist, { compatibilityLevel: store.deleteSubjectLevel(parts[1]) });
    case 'POST /compatibility/subjects/*/versions/*': {
      const body = withoutReferences(await readJson(req));
      const problems = store.testCompatibility(parts[2], parts[4], body.schema, body.schemaType);
      const verbose = url.searchParams.get('verbose') === 'true';
      return ok(verbose ? { is_compatible: problems.length === 0, messages: problems } : { is_compatible: problems.length === 0 });
    }
    default:
      throw new RegistryHttpError(404, 404, `HTTP 404 Not Found: ${method} ${url.pathname}`);
  }
}

/** Which path segments are parameters: subject names, versions, ids. */
function isParam(parts: string[], i: number): boolean {
  const head = parts[0];
  if (head === 'subjects' || head === 'config') return i === 1 || (head === 'subjects' && i === 3);
  if (head === 'schemas') return parts[1] === 'ids' && i === 2;
  if (head === 'compatibility') return i === 2 || i === 4;
  return false;
}

/**
 * Schema references are not supported here: a schema naming some would be stored without them
 * (Confluent resolves them, or refuses the schema with 42201 when one is missing), so it is refused.
 */
function withoutReferences(body: Record<string, unknown>): Record<string, unknown> {
  const refs = body.references;
  if (refs !== undefined && refs !== null && !(Array.isArray(refs) && refs.length === 0)) {
    throw new RegistryHttpError(422, 42201, 'Invalid schema: schema references are not supported by this development registry');
  }
  return body;
}

function mutate(persist: () => void, body: unknown): Reply {
  persist();
  return { status: 200, body };
}

function parseId(s: string): number {
  if (!/^[0-9]{1,10}$/.test(s)) throw new RegistryHttpError(404, 40403, `Schema ${s} not found`);
  return Number(s);
}

async function readJson(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new RegistryHttpError(413, 413, 'request body too large');
    chunks.push(chunk);
  }
  const ctype = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  // Confluent accepts its own type, plain JSON, and the generic octet-stream some tools send.
  if (ctype && ![CONTENT_TYPE, 'application/vnd.schemaregistry+json', 'application/json', 'application/octet-stream'].includes(ctype)) {
    throw new RegistryHttpError(415, 415, `HTTP 415 Unsupported Media Type: ${ctype}`);
  }
  let body: unknown;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
  } catch (err) {
    throw new RegistryHttpError(400, 400, `Unexpected character in request body: ${(err as Error).message}`);
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new RegistryHttpError(422, 422, 'request body must be a JSON object');
  }
  return body as Record<string, unknown>;
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': CONTENT_TYPE, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function loadState(file: string): StoreState | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return JSON.parse(text) as StoreState;
}

/**
 * Synchronous on purpose: the change is on disk before the client gets its answer, and
 * two requests can never interleave their writes. Temp file + rename so that a crash
 * mid-write leaves the previous state, never half a file.
 */
function saveState(file: string, state: StoreState): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(state, null, 1));
  fs.renameSync(tmp, file);
}
