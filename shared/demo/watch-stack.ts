/**
 * The dev stack's servers, watched while the demo runs. The connectors retry a Kafka or a
 * database that is gone, as they should in production, so without this a server that died
 * (killed, out of memory) showed as a silent wait running out 90 s later ("timed out waiting
 * for the snapshot") that did not name it. A server whose port refuses connections twice in a
 * row is dead: a live one always accepts (a connect that merely times out, on a loaded
 * machine, does not count).
 */
import net from 'node:net';

export interface WatchedServer {
  /** e.g. "Kafka broker": the failure names it. */
  name: string;
  port: number;
}

/** The failure naming a dead server: what it was, where, and what it means for the demo. */
export function deadServerMessage(s: WatchedServer): string {
  return `the dev stack's ${s.name} (127.0.0.1:${s.port}) died: its port refuses connections, so the migration cannot go on (was it killed, or out of memory?)`;
}

/** Probe every server each `intervalMs`; `onDead` is called once, with the first one found dead. Returns the stop function. */
export function watchServers(servers: WatchedServer[], onDead: (message: string) => void, intervalMs = 1_000): () => void {
  const refusals = new Map<number, number>();
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const round = async (): Promise<void> => {
    const refused = await Promise.all(servers.map((s) => refuses(s.port)));
    if (stopped) return;
    for (const [i, s] of servers.entries()) {
      const n = refused[i] ? (refusals.get(s.port) ?? 0) + 1 : 0;
      refusals.set(s.port, n);
      if (n >= 2) {
        stopped = true;
        onDead(deadServerMessage(s));
        return;
      }
    }
    timer = setTimeout(() => void round(), intervalMs);
    timer.unref();
  };
  timer = setTimeout(() => void round(), intervalMs);
  timer.unref();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** Whether 127.0.0.1:port refuses a connection (nothing listens). */
function refuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.setTimeout(2_000, () => {
      s.destroy();
      resolve(false);
    });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}
