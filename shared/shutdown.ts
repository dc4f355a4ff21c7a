/**
 * Graceful shutdown on SIGINT/SIGTERM: registered handlers run once, newest first (so what was
 * started last is stopped first). A second signal or the timeout forces the exit, so a stuck
 * handler can never keep a connector from dying. The core (`ShutdownCoordinator`) does not touch
 * `process` and is what the tests drive.
 */
import type { Logger } from './logger.ts';

export type ShutdownSignal = 'SIGINT' | 'SIGTERM';
export type ShutdownHandler = (signal: ShutdownSignal) => Promise<void> | void;

/** Conventional 128 + signal number. */
export const SIGNAL_EXIT_CODES: Record<ShutdownSignal, number> = { SIGINT: 130, SIGTERM: 143 };

export interface ShutdownOptions {
  logger?: Logger;
  /** How long handlers (and whatever keeps the process alive after them) get. Default 30 s. */
  timeoutMs?: number;
  /** How to force the exit; default `process.exit`. */
  exit?: (code: number) => void;
}

export class ShutdownCoordinator {
  private readonly handlers: { handler: ShutdownHandler }[] = [];
  private running?: Promise<void>;
  private timer?: NodeJS.Timeout;
  private readonly exit: (code: number) => void;
  logger?: Logger;
  readonly timeoutMs: number;

  constructor(opts: ShutdownOptions = {}) {
    this.logger = opts.logger;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.exit = opts.exit ?? ((code) => process.exit(code));
  }

  get size(): number {
    return this.handlers.length;
  }

  get started(): boolean {
    return this.running !== undefined;
  }

  /** Add a handler; the returned function removes it (idempotent). */
  register(handler: ShutdownHandler): () => void {
    const entry = { handler };
    this.handlers.push(entry);
    return () => {
      const i = this.handlers.indexOf(entry);
      if (i >= 0) this.handlers.splice(i, 1);
    };
  }

  /**
   * A signal arrived. The first one runs the handlers (and arms the forced-exit timer); any
   * later one forces the exit at once. Resolves when the handlers have finished.
   */
  signal(signal: ShutdownSignal): Promise<void> {
    if (this.running) {
      this.logger?.warn({ signal }, `second ${signal}: exiting now without waiting for shutdown to finish`);
      this.exit(SIGNAL_EXIT_CODES[signal]);
      return this.running;
    }
    this.timer = setTimeout(() => {
      this.logger?.error({ signal, timeoutMs: this.timeoutMs }, `shutdown did not finish within ${this.timeoutMs} ms: exiting`);
      this.exit(SIGNAL_EXIT_CODES[signal]);
    }, this.timeoutMs);
    // The timer guards against a hang; it must not itself keep the process alive.
    this.timer.unref();
    return this.run(signal);
  }

  /** Run every handler once, newest first; a failing handler is logged and the rest still run. */
  run(signal: ShutdownSignal): Promise<void> {
    this.running ??= (async () => {
      this.logger?.info({ signal, handlers: this.handlers.length }, `${signal} received: shutting down`);
      for (const { handler } of [...this.handlers].reverse()) {
        try {
          await handler(signal);
        } catch (err) {
          this.logger?.error({ err, signal }, 'shutdown handler failed');
        }
      }
      this.logger?.info({ signal }, 'shutdown complete');
    })();
    return this.running;
  }

  /** Drop the forced-exit timer (for callers that exit on their own once handlers are done). */
  disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

let processCoordinator: ShutdownCoordinator | undefined;
const SIGNALS: ShutdownSignal[] = ['SIGINT', 'SIGTERM'];
const listeners = new Map<ShutdownSignal, () => void>();

/**
 * Run `handler` once on SIGINT/SIGTERM (process-wide, newest registration first). Returns an
 * unregister function; when the last handler is gone the signal listeners are removed, restoring
 * Node's default behaviour. `opts` apply when the process-wide coordinator is first created.
 */
export function onShutdown(handler: ShutdownHandler, logger?: Logger, opts: Omit<ShutdownOptions, 'logger'> = {}): () => void {
  processCoordinator ??= new ShutdownCoordinator({ ...opts, logger });
  const coordinator = processCoordinator;
  coordinator.logger ??= logger;
  const unregister = coordinator.register(handler);
  if (listeners.size === 0) {
    for (const sig of SIGNALS) {
      const listener = () => void coordinator.signal(sig);
      listeners.set(sig, listener);
      process.on(sig, listener);
    }
  }
  return () => {
    unregister();
    if (coordinator.size === 0 && !coordinator.started) {
      for (const [sig, listener] of listeners) process.off(sig, listener);
      listeners.clear();
    }
  };
}
