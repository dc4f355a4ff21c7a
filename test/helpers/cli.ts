/**
 * Running the `shardbridge` CLI from tests: in process through `main` (output captured), or
 * as the real executable in a child process (output tail kept for assertions and failures).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { main } from '../../shared/cli/main.ts';

export const BIN = fileURLToPath(new URL('../../shared/cli/shardbridge.js', import.meta.url));

/** The process environment without the SHARDBRIDGE_* overrides and LOG_LEVEL a test run may carry. */
export function cleanEnv(): Record<string, string | undefined> {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SHARDBRIDGE_') && k !== 'LOG_LEVEL'));
}

/** `shardbridge <args> --log-level warn` in this process. */
export async function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(['node', 'shardbridge', ...args, '--log-level', 'warn'], { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), env: cleanEnv() });
  return { code, stdout, stderr };
}

/**
 * `shardbridge <args>` as a child process to completion: the executable itself (shebang +
 * tsx), or `node <bin>` for another entry (the compiled one). Exit code -1 when it was killed.
 */
export function execCli(args: string[], o: { bin?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const [file, argv] = o.bin ? [process.execPath, [o.bin, ...args]] : [BIN, args];
  return new Promise((resolve) => {
    execFile(file, argv, { env: cleanEnv(), timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

export interface CliChild {
  proc: ChildProcess;
  /** The last `tailBytes` characters of stdout and stderr together. */
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `shardbridge source --config FILE` as a child process, logging at warn. */
export function spawnSourceCli(file: string, tailBytes = 20_000): CliChild {
  return spawnCli('source', file, { tailBytes });
}

/** `shardbridge <command> --config FILE` as a child process, logging at warn (or `logLevel`); `bin`: another entry (the compiled one). */
export function spawnCli(command: 'source' | 'sink', file: string, o: { tailBytes?: number; bin?: string; logLevel?: string } = {}): CliChild {
  const tailBytes = o.tailBytes ?? 20_000;
  const proc = spawn(process.execPath, [o.bin ?? BIN, command, '--config', file], { env: { ...cleanEnv(), LOG_LEVEL: o.logLevel ?? 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-tailBytes);
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return { proc, output: () => out, exited };
}
