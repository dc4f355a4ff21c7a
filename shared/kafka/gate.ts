/**
 * The end of a Kafka client's work at its stop (client.ts gives each producer, admin and
 * consumer a kafkajs instance of its own behind one): kafkajs has no way to cancel a retry
 * under way, and reconnects a cluster its caller disconnected to go on with it.
 */
import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import type { ISocketFactory } from 'kafkajs';

export const GATE_CLOSED = 'the Kafka client was closed';
/** kafkajs's longest wait between two tries of a request or a connection (Kafka's Java clients: reconnect.backoff.max.ms = 1 s). */
export const RECONNECT_BACKOFF_MAX_MS = 1_000;
/** How long a disconnect may wait for kafkajs's requests in flight (a broker that does not answer holds them up to the request timeout). */
export const DISCONNECT_GRACE_MS = 1_000;

/**
 * What ends kafkajs's work for one producer, admin or consumer: its sockets go through here, and
 * once shut, the open ones are destroyed (their requests fail at once), a new one fails at once,
 * and the broker list is empty, which kafkajs takes as a non-retriable failure: a retry loop
 * still under way (kafkajs retries a send for ever and reconnects a disconnected cluster to do
 * it) ends at its next try, within RECONNECT_BACKOFF_MAX_MS. Without it, a program that
 * embeds a connector kept kafkajs's timers and sockets after stop() while Kafka was down.
 */
export class Gate {
  private shut = false;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly brokers: readonly string[]) {}

  get closed(): boolean {
    return this.shut;
  }

  /** kafkajs's `brokers`: none once shut. */
  readonly brokerList = (): string[] => (this.shut ? [] : [...this.brokers]);

  /** kafkajs's socketFactory: its default (TCP or TLS, keep-alive), the socket kept until it closes. */
  readonly socketFactory: ISocketFactory = ({ host, port, ssl, onConnect }) => {
    if (this.shut) {
      const dead = new net.Socket();
      process.nextTick(() => dead.destroy(new Error(GATE_CLOSED)));
      return dead;
    }
    const socket = ssl
      ? tls.connect({ host, port, ...(net.isIP(host) ? {} : { servername: host }), ...ssl }, onConnect)
      : net.connect({ host, port }, onConnect);
    socket.setKeepAlive(true, 60_000);
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    return socket;
  };

  close(): void {
    this.shut = true;
    for (const s of this.sockets) s.destroy(new Error(GATE_CLOSED));
    this.sockets.clear();
  }

  /**
   * `disconnect`, then shut. After `graceMs` without it, shut at once, which lets it end; after
   * as long again, return without it (a stop never hangs on kafkajs).
   */
  async closeAfter(disconnect: Promise<void>, graceMs: number): Promise<void> {
    const timers: NodeJS.Timeout[] = [];
    const late = new Promise<void>((resolve) => {
      if (graceMs === Infinity) return;
      timers.push(setTimeout(() => {
        this.close();
        timers.push(setTimeout(resolve, graceMs));
      }, graceMs));
    });
    disconnect.catch(() => {}); // awaited below, unless it is given up
    try {
      await Promise.race([disconnect, late]);
    } finally {
      for (const t of timers) clearTimeout(t);
      this.close();
    }
  }
}
