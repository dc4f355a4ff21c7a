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
 * The password `path` holds, read once (at load: Kafka's SASL and the registry's basic auth take a
 * password, not a function), or why it cannot serve. The content is returned, never put in `problem`.
 */
export function passwordAtStart(path: string): { password: string } | { problem: string } {
  try {
    const password = passwordOfFile(readFileSync(path, 'utf8'));
    return password === '' ? { problem: 'it is empty (a password file holds the password, one line)' } : { password };
  } catch (err) {
    return { problem: `cannot read it: ${readProblem(err)}` };
  }
}

/** Why the password file at `path` cannot serve now ('no such file', 'empty'...), or undefined when it can. Reads it. */
export function passwordFileProblem(path: string): string | undefined {
  const read = passwordAtStart(path);
  return 'problem' in read ? read.problem : undefined;
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
