/**
 * The connectors as child processes of the benchmark, run through the real CLI executable
 * (`node shared/cli/shardbridge.js source|sink --config FILE`) so that what is measured is
 * what a user runs. Their JSON log lines (stderr) are watched for milestones; peak RSS comes
 * from /proc/<pid>/status (VmHWM: the kernel's high-water mark of the resident set).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../cli/shardbridge.js', import.meta.url));

export interface LogLine {
  time: number;
  msg: string;
  level: number;
  [k: string]: unknown;
}

export interface SpawnConnectorOptions {
  command: 'source' | 'sink';
  configFile: string;
  /** Directory for node --cpu-prof; none: no profiling. */
  cpuProfDir?: string;
  /** Lines at or above this pino level are kept for failure reports (default warn = 40). */
  keepLevel?: number;
  /** V8 old-space cap in MB through NODE_OPTIONS (as the image sets it); 0 or absent: node's default. */
  heapMb?: number;
  /** The CLI entry to run: the compiled build (build.ts) or, by default, the sources through tsx (BIN). */
  bin?: string;
}

/**
 * NODE_OPTIONS for a connector process: the inherited value without any old-space cap, plus
 * `--max-old-space-size=<heapMb>` when heapMb > 0; undefined when nothing is left. Pure.
 * Through the environment rather than argv so the process is what the image runs.
 */
export function connectorNodeOptions(inherited: string | undefined, heapMb: number | undefined): string | undefined {
  const tokens = (inherited ?? '').split(/\s+/).filter(Boolean);
  const kept: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const m = /^--max[-_]old[-_]space[-_]size(=.*)?$/.exec(tokens[i]);
    if (!m) kept.push(tokens[i]);
    else if (!m[1]) i++; // the value as the next token
  }
  if (heapMb) kept.push(`--max-old-space-size=${heapMb}`);
  return kept.length ? kept.join(' ') : undefined;
}

/** Reads VmHWM (kB) of a live process; null when it is gone or /proc is unavailable. */
export function peakRssKb(pid: number): number | null {
  try {
    return parseVmHwm(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return null;
  }
}

/** VmHWM in kB from the text of /proc/<pid>/status. Pure. */
export function parseVmHwm(status: string): number | null {
  const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(status);
  return m ? Number(m[1]) : null;
}

export class ConnectorChild {
  readonly proc: ChildProcess;
  readonly spawnedAt = Date.now();
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private peakKb = 0;
  private readonly kept: string[] = [];
  private readonly waiters: { match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  private readonly seen: LogLine[] = [];
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private stopping = false;
  private readonly sampler: NodeJS.Timeout;

  constructor(readonly opts: SpawnConnectorOptions) {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SHARDBRIDGE_') && k !== 'LOG_LEVEL' && k !== 'NODE_OPTIONS'));
    const nodeOptions = connectorNodeOptions(process.env.NODE_OPTIONS, opts.heapMb);
    if (nodeOptions) env.NODE_OPTIONS = nodeOptions;
    const nodeArgs = opts.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`] : [];
    this.proc = spawn(process.execPath, [...nodeArgs, opts.bin ?? BIN, opts.command, '--config', opts.configFile], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stdout!.resume();
    let partial = '';
    this.proc.stderr!.setEncoding('utf8');
    this.proc.stderr!.on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop() ?? '';
      for (const text of parts) this.onLine(text);
    });
    this.exited = new Promise((resolve) =>
      this.proc.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        clearInterval(this.sampler);
        resolve({ code, signal });
      }),
    );
    this.sampler = setInterval(() => this.sampleRss(), 500);
    this.sampler.unref();
  }

  get name(): string {
    return this.opts.command;
  }

  get pid(): number {
    return this.proc.pid ?? -1;
  }

  /** Peak RSS so far in MB (sampled every 500 ms and on demand). */
  peakRssMb(): number | null {
    this.sampleRss();
    return this.peakKb > 0 ? this.peakKb / 1024 : null;
  }

  /** Died on its own (not stopped by us): a description with its last warnings and errors. */
  failure(): string | null {
    if (!this.exitInfo || this.stopping) return null;
    return `the ${this.name} connector exited (code ${this.exitInfo.code}, signal ${this.exitInfo.signal}); last log lines:\n${this.logTail()}`;
  }

  logTail(n = 15): string {
    return this.kept.slice(-n).join('\n');
  }

  /** The first log line (past or future) whose message matches; rejects when the process exits first or at the deadline. */
  waitForLog(msg: string | RegExp, timeoutMs: number): Promise<LogLine> {
    const match = (l: LogLine) => (typeof msg === 'string' ? l.msg === msg : msg.test(l.msg));
    const found = this.seen.find(match);
    if (found) return Promise.resolve(found);
    return new Promise<LogLine>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the ${this.name} connector did not log "${String(msg)}" within ${Math.round(timeoutMs / 1000)} s\n${this.logTail()}`)), timeoutMs);
      const entry = {
        match,
        resolve: (l: LogLine) => {
          clearTimeout(timer);
          resolve(l);
        },
      };
      this.waiters.push(entry);
      void this.exited.then(() => {
        clearTimeout(timer);
        reject(new Error(this.failure() ?? `the ${this.name} connector stopped before logging "${String(msg)}"`));
      });
    });
  }

  /** SIGTERM (graceful: in-flight records are acknowledged and confirmed), SIGKILL after `graceMs`. */
  async stop(graceMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.stopping = true;
    this.sampleRss();
    if (this.exitInfo) return this.exitInfo;
    this.proc.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.proc.kill('SIGKILL');
        resolve();
      }, graceMs);
    });
    await Promise.race([this.exited, killed]);
    clearTimeout(timer);
    return this.exited;
  }

  private sampleRss(): void {
    if (this.exitInfo || this.proc.pid === undefined) return;
    const kb = peakRssKb(this.proc.pid);
    if (kb !== null && kb > this.peakKb) this.peakKb = kb;
  }

  private onLine(text: string): void {
    if (!text.startsWith('{')) {
      if (text.trim()) this.kept.push(text);
      return;
    }
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
    } catch {
      this.kept.push(text);
      return;
    }
    if ((line.level ?? 0) >= (this.opts.keepLevel ?? 40)) this.kept.push(text.length > 600 ? text.slice(0, 600) + '…' : text);
    if (this.kept.length > 200) this.kept.splice(0, this.kept.length - 200);
    // Only info-and-above milestones are waited for; keep a bounded history of them.
    if (this.seen.length < 2_000) this.seen.push({ time: line.time, msg: line.msg, level: line.level });
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      if (this.waiters[i].match(line)) this.waiters.splice(i, 1)[0].resolve(line);
    }
  }
}
