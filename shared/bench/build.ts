/**
 * The compiled CLI for the benchmark's connector processes: `npm run build` (tsc with
 * tsconfig.build.json into dist/), as the image builds it, so that they run what users run
 * in production rather than the sources through tsx (which compiles every module at start-up
 * and keeps a module-loader thread: about 30 MB more resident).
 */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The compiled entry that `npm run build` writes. */
export const COMPILED_ENTRY = fileURLToPath(new URL('../../dist/shared/cli/entry.js', import.meta.url));

/** Builds dist/ and returns the compiled entry; throws with tsc's output when it fails. */
export async function buildCli(): Promise<string> {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  try {
    await promisify(execFile)(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: ROOT, maxBuffer: 16 * 2 ** 20 });
  } catch (err) {
    const e = err as { stdout?: string; message: string };
    throw new Error(`npm run build (tsc -p tsconfig.build.json) failed: ${e.stdout?.trim() || e.message}`);
  }
  return COMPILED_ENTRY;
}
