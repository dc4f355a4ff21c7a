/**
 * The dev stack's Java children (Kafka brokers, their ZooKeeper, the storage format step): run
 * through the parent-death signal where util-linux has it, tracked, and SIGKILLed from an exit
 * hook, so that a test or CLI that dies does not leave one behind (kafka.ts).
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, fstatSync, openSync, readSync, rmSync } from 'node:fs';
import { onSignalUnlessHandled } from './signal-hooks.ts';

let setprivAvailable: boolean | undefined;

/**
 * `java args`, through `setpriv --pdeathsig KILL` where util-linux has it: the kernel then
 * kills the JVM even when this process dies by SIGKILL, which no exit hook can catch.
 * setpriv execs java, so the pid (and our signals) stay the JVM's.
 */
export function javaCommand(args: string[]): [string, string[]] {
  setprivAvailable ??= process.platform === 'linux' && spawnSync('setpriv', ['--version'], { stdio: 'ignore' }).status === 0;
  return setprivAvailable ? ['setpriv', ['--pdeathsig', 'KILL', 'java', ...args]] : ['java', args];
}

/** Signal and wait for exit; escalates to SIGKILL after `timeoutMs`. */
export async function kill(proc: ChildProcess, signal: NodeJS.Signals, timeoutMs: number): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill(signal);
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
}

export function readTail(file: string, lines: number): string {
  if (!existsSync(file)) return '';
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const len = Math.min(size, 64 * 1024);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    return buf.toString('utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } finally {
    closeSync(fd);
  }
}

// --- children of this process: never outlive it -------------------------------------------

const children = new Set<ChildProcess>();
export const ownedDirs = new Set<string>();
let hooksInstalled = false;

export function track(proc: ChildProcess): void {
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
  proc.once('error', () => children.delete(proc));
  installHooks();
}

function killAllSync(): void {
  for (const proc of children) {
    try {
      proc.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const dir of ownedDirs) {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // best effort: a temp dir
    }
  }
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', killAllSync);
  onSignalUnlessHandled(killAllSync);
}
