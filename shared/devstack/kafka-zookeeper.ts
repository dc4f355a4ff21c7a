/**
 * The dev stack's broker in ZooKeeper mode (Kafka 3.x and older; 4.0 removed it), beside a
 * ZooKeeper of its own from the same jars (Kafka ships org.apache.zookeeper): many users'
 * clusters still run so, and some broker answers differ from KRaft's (a topic deleted a
 * moment ago is "already there" to a create until ZooKeeper has finished deleting it).
 * SHARDBRIDGE_KAFKA_MODE=zookeeper with a 3.x SHARDBRIDGE_KAFKA_VERSION, or startKafka's `zookeeper`.
 */
import net from 'node:net';
import { ConfigError } from '../errors.ts';
import { parseKafkaVersion } from './kafka-jars.ts';

/** Whether the dev stack's broker runs in ZooKeeper mode: SHARDBRIDGE_KAFKA_MODE=zookeeper (else kraft). Pure. */
export function devstackZooKeeperMode(version: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const mode = env.SHARDBRIDGE_KAFKA_MODE?.trim().toLowerCase() || 'kraft';
  if (mode !== 'kraft' && mode !== 'zookeeper') {
    throw new ConfigError(`SHARDBRIDGE_KAFKA_MODE=${mode} is neither kraft nor zookeeper`, { context: { variable: 'SHARDBRIDGE_KAFKA_MODE' }, remedy: 'unset it (kraft) or set it to zookeeper' });
  }
  if (mode === 'zookeeper') checkZooKeeperRelease(version);
  return mode === 'zookeeper';
}

/** Throws unless `version` still has ZooKeeper mode (before 4.0). Pure. */
export function checkZooKeeperRelease(version: string): void {
  const v = parseKafkaVersion(version);
  if (v && v[0] >= 4) {
    throw new ConfigError(`Kafka ${version} has no ZooKeeper mode (removed in 4.0)`, {
      context: { version },
      remedy: 'run a 3.x release in ZooKeeper mode, e.g. SHARDBRIDGE_KAFKA_VERSION=3.9.2 SHARDBRIDGE_KAFKA_MODE=zookeeper',
    });
  }
}

/** A standalone ZooKeeper: a short tick so that a killed broker's session (and its registration) ends within seconds. Pure. */
export function renderZooKeeperProperties(p: { port: number; dataDir: string }): string {
  return [`dataDir=${p.dataDir}`, `clientPort=${p.port}`, 'clientPortAddress=127.0.0.1', 'tickTime=500', 'maxClientCnxns=0', 'admin.enableServer=false', ''].join('\n');
}

/** KRaft's settings (renderServerProperties) turned into a ZooKeeper-mode broker's. Pure. */
export function zooKeeperBrokerProps(props: Record<string, string | number | boolean>, p: { port: number; zookeeperPort: number }): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  const kraftOnly = /^(process\.roles|node\.id|controller\.|broker\.heartbeat\.|broker\.session\.|share\.coordinator\.)/;
  for (const [k, v] of Object.entries(props)) if (!kraftOnly.test(k)) out[k] = v;
  const drop = (list: unknown) => String(list).split(',').filter((l) => !l.startsWith('CONTROLLER')).join(',');
  out.listeners = drop(out.listeners);
  out['listener.security.protocol.map'] = drop(out['listener.security.protocol.map']);
  return {
    'broker.id': 1,
    'zookeeper.connect': `127.0.0.1:${p.zookeeperPort}`,
    // Our ZooKeeper's tick is 500 ms: a killed broker's registration ends within 3 s, so restart() is quick.
    'zookeeper.session.timeout.ms': 3000,
    ...out,
    ...(props['authorizer.class.name'] !== undefined && { 'authorizer.class.name': 'kafka.security.authorizer.AclAuthorizer' }),
  };
}

/** Resolves once something accepts connections on 127.0.0.1:`port`; rejects when `exited()` says the process is gone or the time is up. */
export async function waitForListener(port: number, exited: () => string | undefined, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const gone = exited();
    if (gone) throw new Error(`ZooKeeper ${gone} before it listened on 127.0.0.1:${port}`);
    const open = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`ZooKeeper not listening on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
