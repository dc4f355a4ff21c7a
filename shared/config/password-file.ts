/**
 * `passwordFile` of a PostgreSQL connection section: a file whose content is the password
 * (Kubernetes and Vault agents deliver secrets so, and rewrite them in place). node-postgres
 * calls a `password` function at every new connection, so a rotated password is taken at the
 * next connection without a restart. The content is never logged nor put in a message.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../errors.ts';

/** The password a file holds: its content without the trailing line break(s) an editor or `echo` adds. Pure. */
export function passwordOfFile(content: string): string {
  return content.replace(/[\r\n]+$/, '');
}

/** Why a read failed, in words (never the content). */
function readProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'not a file' : (code ?? (err as Error).message);
}

/**
 * The password `path` holds now, or why it cannot serve. Synchronous: at load, and for Kafka's
 * SASL at each new broker connection (FilePassword). The content is returned, never put in `problem`.
 */
export function readPasswordFile(path: string): { password: string } | { problem: string } {
  try {
    const password = passwordOfFile(readFileSync(path, 'utf8'));
    return password === '' ? { problem: 'it is empty (a password file holds the password, one line)' } : { password };
  } catch (err) {
    return { problem: `cannot read it: ${readProblem(err)}` };
  }
}

/** Why the password file at `path` cannot serve now ('no such file', 'empty'...), or undefined when it can. Reads it. */
export function passwordFileProblem(path: string): string | undefined {
  const read = readPasswordFile(path);
  return 'problem' in read ? read.problem : undefined;
}

/** How many passwords a FilePassword remembers for masking (the current one and those before it). */
const REMEMBERED = 4;

/**
 * kafka.sasl.passwordFile and schemaRegistry.passwordFile: kafkajs and the registry client take a
 * password, not a function, so `current()` reads the file again when asked (Kafka: at each broker
 * (re)authentication; the registry: when a request is refused with 401). A file that cannot serve
 * then keeps the last good password (a connection that works goes on working), with one warning
 * per problem naming the key and the path, never the content.
 */
export class FilePassword {
  private problem: string | undefined;
  /** Newest first: [0] is the last good password. */
  private readonly seen: string[];

  constructor(
    readonly path: string,
    readonly key: string,
    /** The password read at load. */
    first: string,
    private readonly warn: (message: string, context: { key: string; path: string }) => void,
  ) {
    this.seen = [first];
  }

  /** The file's password now; the last good one when the file cannot serve. */
  current(): string {
    const read = readPasswordFile(this.path);
    if ('password' in read) {
      this.problem = undefined;
      if (read.password !== this.seen[0]) {
        this.seen.unshift(read.password);
        this.seen.length = Math.min(this.seen.length, REMEMBERED);
      }
      return read.password;
    }
    if (read.problem !== this.problem) {
      this.problem = read.problem;
      this.warn(`${this.key} ${this.path}: ${read.problem}; the password last read from it is used meanwhile (put the password in the file again)`, { key: this.key, path: this.path });
    }
    return this.seen[0];
  }

  /** The passwords this has held, newest first: masked in whatever a server or a library echoes. */
  known(): readonly string[] {
    return this.seen;
  }
}

/**
 * A node-postgres `password` function reading `path` at every new connection. A file unreadable
 * or empty by then fails that connection attempt with a ConfigError naming the key and the path
 * (the sink's pool wraps it as retriable and tries again; the source stops, as for a refused
 * password). `this` is the pg Client: its half-open socket, left waiting for the password until
 * the server's authentication_timeout (60 s) otherwise, is closed.
 */
export function passwordFromFile(path: string, key = 'passwordFile'): () => Promise<string> {
  return async function (this: unknown) {
    let why: string;
    try {
      const password = passwordOfFile(await readFile(path, 'utf8'));
      if (password !== '') return password;
      why = 'it is empty';
    } catch (err) {
      why = `cannot read it: ${readProblem(err)}`;
    }
    // After node-postgres has taken the error (it is delivered first), or it would see a lost connection instead.
    const stream = (this as { connection?: { stream?: { destroy?: () => void } } } | undefined)?.connection?.stream;
    if (typeof stream?.destroy === 'function') setImmediate(() => stream.destroy!());
    throw new ConfigError(`config: ${key} ${path}: ${why}`, {
      context: { key, path },
      remedy: `put the password in ${path} again, readable by the connector (it is read at every new connection: no restart needed)`,
    });
  };
}
