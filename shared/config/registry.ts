/**
 * The Schema Registry section both connectors share, and the split of credentials out of its URL.
 */
import { z } from 'zod';
import { REQUEST_TIMEOUT_MS } from '../registry/registry-client.ts';
import { nonEmptyString, safeDecode, withFilePassword } from './common.ts';

/** schemaRegistry.requestTimeoutMs: below 100 ms a healthy registry fails; over 5 min a dead one holds a stop or a check that long. */
export const REGISTRY_TIMEOUT_BOUNDS = { min: 100, max: 300_000 } as const;

/**
 * The registry section. Credentials in the URL (`http://user:pw@host`) move to username/password:
 * fetch refuses a URL that carries them.
 */
export const schemaRegistrySchema = () =>
  z
    .strictObject({
      url: z.string().regex(/^https?:\/\/\S+$/).describe('an http:// or https:// URL'),
      username: nonEmptyString().optional(),
      password: z.string().optional(),
      /** A file holding the password: read at load, and again when the registry answers 401 (FilePassword). */
      passwordFile: nonEmptyString().optional(),
      // A registry far away (another region, a slow proxy) needs longer; the sink's 3 s hold of an
      // apply slot (batch-retry.ts) does not follow it: it measures silence, not one request.
      requestTimeoutMs: z
        .number()
        .int()
        .min(REGISTRY_TIMEOUT_BOUNDS.min)
        .max(REGISTRY_TIMEOUT_BOUNDS.max)
        .describe(`an integer number of milliseconds from ${REGISTRY_TIMEOUT_BOUNDS.min} to ${REGISTRY_TIMEOUT_BOUNDS.max}`)
        .default(REQUEST_TIMEOUT_MS),
    })
    // One pass (validation and value): the password file is read once at load.
    .transform((v, ctx) => {
      const parts = splitUrlCredentials(v.url);
      if (!parts) ctx.addIssue({ code: 'custom', path: ['url'], message: 'not a valid URL (percent-encode special characters of a user name or password)' });
      else if (parts.username !== undefined && v.username !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['url'], message: 'carries a user name, and schemaRegistry.username is set too: give the credentials once' });
      } else if (parts.password !== undefined && v.password !== undefined) {
        // The URL's would win: a password rotated through the environment, ignored without a word.
        ctx.addIssue({ code: 'custom', path: ['password'], message: 'conflicts with the password in schemaRegistry.url: give the password once (take it out of the URL)' });
      } else if (parts.password !== undefined && v.passwordFile !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['passwordFile'], message: 'conflicts with the password in schemaRegistry.url: give the password once (take it out of the URL)' });
      } else if (v.passwordFile !== undefined && v.username === undefined && parts.username === undefined) {
        // Basic auth goes with a user: without one the password would be dropped without a word.
        ctx.addIssue({ code: 'custom', path: ['passwordFile'], message: 'needs schemaRegistry.username (basic auth sends a user and its password)' });
      }
      const read = withFilePassword(v, 'schemaRegistry', ctx);
      if (parts?.username === undefined) return read;
      return { ...read, url: parts.url, username: parts.username, password: parts.password ?? read.password };
    });
export type SchemaRegistryConfig = z.infer<ReturnType<typeof schemaRegistrySchema>>;

/** An http(s) URL without its userinfo, and the (decoded) user name and password it carried; undefined when not a URL. */
export function splitUrlCredentials(url: string): { url: string; username?: string; password?: string } | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  if (u.username === '' && u.password === '') return { url };
  const username = safeDecode(u.username);
  const password = u.password === '' ? undefined : safeDecode(u.password);
  u.username = '';
  u.password = '';
  // URL adds a "/" path to a bare origin; the registry client joins paths onto what it is given.
  const clean = u.pathname === '/' && !url.replace(/[?#].*$/, '').endsWith('/') ? `${u.origin}${u.search}` : u.href;
  return { url: clean, username, password };
}
