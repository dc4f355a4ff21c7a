/**
 * ShardBridge's version, from package.json: two levels above this file in a checkout
 * (shared/version.ts), three in a build (dist/shared/version.js), where it is not copied.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export function packageVersion(): string {
  try {
    const file = ['../package.json', '../../package.json'].map((p) => new URL(p, import.meta.url)).find((u) => existsSync(fileURLToPath(u)))!;
    return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}
