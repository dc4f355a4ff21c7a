/**
 * A real Apache Kafka broker for the dev stack: one KRaft node acting as broker and
 * controller (or, for 3.x, a ZooKeeper-mode broker beside a ZooKeeper: kafka-zookeeper.ts), run
 * from the Maven-fetched jars (kafka-jars.ts) with `java` directly. Tests use crash()/restart()
 * to prove that acknowledged records survive a broker kill.
 *
 * Java children run in a process group of their own (a terminal's Ctrl-C reaches only us, so
 * the broker outlives a graceful stop of the connectors using it), are tracked per process and
 * SIGKILLed from an exit hook, and die with us through the parent-death signal: a test or CLI
 * that dies or is interrupted does not leave a broker behind (kafka-processes.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { createKafka } from '../kafka/client.ts';
import { checkJava, compareKafkaVersions, ensureKafkaJars, KAFKA_VERSION, parseKafkaVersion } from './kafka-jars.ts';
import { checkZooKeeperRelease, devstackZooKeeperMode, renderZooKeeperProperties, waitForListener, zooKeeperBrokerProps } from './kafka-zookeeper.ts';
import { freePort } from './ports.ts';
import { javaCommand, kill, ownedDirs, readTail, track } from './kafka-processes.ts';
import { formatFromTemplate } from './kafka-template.ts';
import { ownedTempDir, reapStaleTempDirs } from './temp-dirs.ts';

export interface KafkaBroker {
  /** "127.0.0.1:port" */
  bootstrap: string;
  port: number;
  /** KRaft's controller listener; in ZooKeeper mode, ZooKeeper's client port. */
  controllerPort: number;
  dataDir: string;
  version: string;
  /** Whether it runs in ZooKeeper mode (beside a ZooKeeper of its own), not KRaft. */
  zookeeper: boolean;
  /** SIGTERM (controlled shutdown) and wait for exit; removes a temporary dataDir. */
  stop(): Promise<void>;
  /** SIGKILL and wait for exit: no flush, no controlled shutdown. */
  crash(): Promise<void>;
  /** Same ports, same log dir; stops the broker first if it runs; resolves once it answers again. */
  restart(): Promise<void>;
  /** The last lines of the broker's log (stdout/stderr + log4j). */
  logTail(lines?: number): string;
  /** "127.0.0.1:port" of the SASL_SSL (SASL_PLAINTEXT without a keystore) listener, when `secure` was given. */
  secureBootstrap?: string;
}

/**
 * A SASL_SSL listener beside the plaintext one (which the broker itself and the readiness probe
 * use): TLS with a PEM keystore, and users who may log in with PLAIN or SCRAM-SHA-256/512.
 * Without a keystore it is SASL_PLAINTEXT.
 */
export interface SecureListener {
  /** A PEM file holding the server's private key (PKCS#8, unencrypted) and its certificate chain. */
  keystore?: string;
  /** User name → password. */
  users: Record<string, string>;
  /**
   * Enforce ACLs (StandardAuthorizer, nothing allowed without one) for these super users
   * (user names). The plaintext listener's principal, User:ANONYMOUS, is a super user too: the
   * broker's own requests and the readiness probe go through it, and so may a test's set-up.
   */
  superUsers?: string[];
}

export interface StartKafkaOptions {
  /** Kept on stop(); a temporary one (removed on stop) when absent. Pass one to restart() after stop(). */
  dataDir?: string;
  port?: number;
  controllerPort?: number;
  heapMb?: number;
  logger?: Logger;
  readyTimeoutMs?: number;
  secure?: SecureListener;
  /** The Kafka release to run (3.3.0 or newer); SHARDBRIDGE_KAFKA_VERSION, else KAFKA_VERSION, by default. */
  version?: string;
  /** ZooKeeper mode (3.x only; kafka-zookeeper.ts); SHARDBRIDGE_KAFKA_MODE=zookeeper by default. Without `secure`. */
  zookeeper?: boolean;
}

const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;

export async function startKafka(opts: StartKafkaOptions = {}): Promise<KafkaBroker> {
  const log = (opts.logger ?? pino({ level: 'silent' })).child({ component: 'kafka-broker' });
  const { libsDir, version } = await ensureKafkaJars({ version: opts.version, log: (m) => log.info(m) });
  if (opts.secure && Object.keys(opts.secure.users).length > 0 && !kafkaAtLeast(version, [3, 5, 0])) {
    // KRaft's format step takes SCRAM credentials from 3.5 (KIP-900).
    throw new Error(`the dev stack's SASL listener needs Kafka 3.5 or newer in KRaft mode (SCRAM credentials at format time); asked for ${version}`);
  }
  const zookeeper = opts.zookeeper ?? devstackZooKeeperMode(version);
  if (zookeeper) checkZooKeeperRelease(version);
  if (zookeeper && opts.secure) throw new Error("the dev stack's SASL listener runs in KRaft mode only");
  await checkJava();
  const ownDir = opts.dataDir === undefined;
  if (ownDir) reapStaleTempDirs();
  const dataDir = opts.dataDir ?? ownedTempDir('shardbridge-kafka');
  await mkdir(dataDir, { recursive: true });
  if (ownDir) ownedDirs.add(dataDir);
  const files = {
    props: path.join(dataDir, 'server.properties'),
    log4j: path.join(dataDir, 'log4j2.properties'),
    log: path.join(dataDir, 'broker.log'),
    zkProps: path.join(dataDir, 'zookeeper.properties'),
    zkLog: path.join(dataDir, 'zookeeper.log'),
  };
  await writeFile(files.log4j, renderLog4j2());

  const otherPort = async (not: number): Promise<number> => {
    for (;;) {
      const p = await freePort();
      if (p !== not) return p;
    }
  };
  let port = opts.port ?? (await freePort());
  let controllerPort = opts.controllerPort ?? (await otherPort(port));
  const securePort = async (): Promise<number | undefined> => {
    if (!opts.secure) return undefined;
    for (;;) {
      const p = await otherPort(port);
      if (p !== controllerPort) return p;
    }
  };
  let secure = await securePort();
  let child: ChildProcess | undefined;
  let removed = false;

  let zkChild: ChildProcess | undefined;
  const halt = async (signal: NodeJS.Signals): Promise<void> => {
    if (child) await kill(child, signal, STOP_TIMEOUT_MS);
    child = undefined;
  };
  const haltZooKeeper = async (): Promise<void> => {
    if (zkChild) await kill(zkChild, 'SIGTERM', STOP_TIMEOUT_MS);
    zkChild = undefined;
  };
  // ZooKeeper mode: ZooKeeper first (on controllerPort), the broker then registers there.
  const launchZooKeeper = async (): Promise<void> => {
    await writeFile(files.zkProps, renderZooKeeperProperties({ port: controllerPort, dataDir: path.join(dataDir, 'zookeeper') }));
    const out = openSync(files.zkLog, 'a');
    const proc = spawn(...javaCommand(['-Xmx128m', `-Dlog4j2.configurationFile=${files.log4j}`, '-cp', path.join(libsDir, '*'), 'org.apache.zookeeper.server.quorum.QuorumPeerMain', files.zkProps]), {
      cwd: dataDir,
      stdio: ['ignore', out, out],
      detached: true,
    });
    closeSync(out);
    zkChild = proc;
    track(proc);
    let exited: string | undefined;
    proc.once('exit', (code, signal) => (exited = `exited (code ${code}, signal ${signal})`));
    try {
      await waitForListener(controllerPort, () => exited, opts.readyTimeoutMs ?? READY_TIMEOUT_MS);
    } catch (err) {
      await haltZooKeeper();
      throw new Error(`${(err as Error).message}; log ${files.zkLog}:\n${readTail(files.zkLog, 20)}`);
    }
  };
  const removeDir = async (dir: string): Promise<void> => {
    removed = true;
    ownedDirs.delete(dir);
    await rm(dir, { recursive: true, force: true });
  };

  const launch = async (): Promise<void> => {
    const started = Date.now();
    const out = openSync(files.log, 'a');
    const [cmd, args] = javaCommand([`-Xmx${opts.heapMb ?? 512}m`, `-Xms${opts.heapMb ?? 512}m`, ...JVM_FLAGS,
      `-Dlog4j2.configurationFile=${files.log4j}`, '-cp', path.join(libsDir, '*'), 'kafka.Kafka', files.props]);
    const proc = spawn(cmd, args, { cwd: dataDir, stdio: ['ignore', out, out], detached: true });
    closeSync(out);
    child = proc;
    track(proc);
    let exited: string | undefined;
    proc.once('exit', (code, signal) => (exited = `exited (code ${code}, signal ${signal})`));
    proc.once('error', (err) => (exited = `could not start: ${err.message}`));
    const probe = createKafka(
      { brokers: [`127.0.0.1:${port}`], clientId: 'devstack-ready', logLevel: 'nothing', connectionTimeoutMs: 1000, requestTimeoutMs: 5000, retry: { retries: 0 } },
      log,
    ).admin({ retry: { retries: 0 } });
    const timeoutMs = opts.readyTimeoutMs ?? READY_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown;
    try {
      // Not waitFor(): a JVM that exits (bad config, port taken) must fail at once, not at the deadline.
      for (;;) {
        if (exited) throw new Error(`Kafka broker ${exited} before it was ready`);
        const answered = await probe.describeCluster().then((c) => c.brokers.length > 0, (err: unknown) => ((lastError = err), false));
        if (answered) break;
        if (Date.now() > deadline) {
          throw new Error(`Kafka broker on 127.0.0.1:${port} not ready after ${timeoutMs} ms (last error: ${(lastError as Error)?.message})`);
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    } catch (err) {
      await kill(proc, 'SIGKILL', STOP_TIMEOUT_MS);
      throw new Error(`${(err as Error).message}; log ${files.log}:\n${readTail(files.log, 40)}`, { cause: lastError });
    } finally {
      await probe.disconnect().catch(() => {});
    }
    log.info({ port, controllerPort, pid: proc.pid, ms: Date.now() - started }, 'Kafka broker ready');
  };

  // Ports picked here were free a moment ago; if another process took one before the JVM
  // bound it, pick again (explicit ports are the caller's business).
  for (let attempt = 1; ; attempt++) {
    try {
      const listener = opts.secure && secure !== undefined ? { ...opts.secure, port: secure } : undefined;
      await writeFile(files.props, renderServerProperties({ port, controllerPort, logDir: path.join(dataDir, 'data'), secure: listener, version, zookeeper }));
      if (zookeeper) await launchZooKeeper();
      else await formatStorage(libsDir, files, dataDir, scramArgs(opts.secure?.users ?? {}), { port, controllerPort, version });
      await launch();
      break;
    } catch (err) {
      await haltZooKeeper();
      const portClash = /Address already in use/.test(readTail(files.log, 40) + readTail(files.zkLog, 40));
      if (!portClash || attempt >= 3 || opts.port !== undefined || opts.controllerPort !== undefined) {
        if (ownDir) await removeDir(dataDir);
        throw err;
      }
      log.warn({ port, controllerPort }, 'port taken before the broker bound it; picking new ports');
      port = await freePort();
      controllerPort = await otherPort(port);
      secure = await securePort();
    }
  }

  return {
    bootstrap: `127.0.0.1:${port}`,
    port,
    controllerPort,
    dataDir,
    version,
    zookeeper,
    async stop() {
      await halt('SIGTERM');
      await haltZooKeeper();
      if (ownDir && !removed) await removeDir(dataDir);
    },
    crash: () => halt('SIGKILL'),
    async restart() {
      if (removed) throw new Error(`broker was stopped and its temporary dataDir ${dataDir} removed; pass dataDir to startKafka to restart after stop()`);
      await halt('SIGTERM');
      // stop() ended ZooKeeper too: the broker cannot register without it.
      if (zookeeper && !zkChild) await launchZooKeeper();
      for (let attempt = 1; ; attempt++) {
        try {
          await launch();
          return;
        } catch (err) {
          // After a crash ZooKeeper keeps the killed broker's registration until its session
          // ends (3 s): a broker started before that exits at once (NodeExistsException).
          if (!zookeeper || attempt >= 10 || !/NodeExistsException/.test((err as Error).message)) throw err;
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
    },
    logTail: (lines = 40) => readTail(files.log, lines),
    ...(secure !== undefined ? { secureBootstrap: `127.0.0.1:${secure}` } : {}),
  };
}

/** SCRAM credentials are stored in the cluster metadata: KRaft's format step adds them. */
function scramArgs(users: Record<string, string>): string[] {
  return Object.entries(users).flatMap(([name, password]) =>
    ['SCRAM-SHA-256', 'SCRAM-SHA-512'].flatMap((m) => ['--add-scram', `${m}=[name=${name},password=${password}]`]),
  );
}

/** Cluster id as Kafka's Uuid prints it: base64url of 16 random bytes, not starting with '-' (it would parse as a flag). */
export function newClusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

/** Whether release `version` is `min` or newer (a version that is no release number counts as the newest). Pure. */
export function kafkaAtLeast(version: string, min: readonly [number, number, number]): boolean {
  const v = parseKafkaVersion(version);
  return v === undefined || compareKafkaVersions(v, min) >= 0;
}

export function renderServerProperties(p: {
  port: number;
  controllerPort: number;
  logDir: string;
  secure?: SecureListener & { port: number };
  /** The release it is for (KAFKA_VERSION by default): 3.x lacks the share-group settings. */
  version?: string;
  /** ZooKeeper mode: ZooKeeper listens on controllerPort. */
  zookeeper?: boolean;
}): string {
  const props: Record<string, string | number | boolean> = {
    'process.roles': 'broker,controller',
    'node.id': 1,
    'controller.quorum.voters': `1@127.0.0.1:${p.controllerPort}`,
    listeners: `PLAINTEXT://127.0.0.1:${p.port},CONTROLLER://127.0.0.1:${p.controllerPort}`,
    'advertised.listeners': `PLAINTEXT://127.0.0.1:${p.port}`,
    'controller.listener.names': 'CONTROLLER',
    'inter.broker.listener.name': 'PLAINTEXT',
    'listener.security.protocol.map': 'CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
    'log.dirs': p.logDir,
    'num.partitions': 1,
    'default.replication.factor': 1,
    'min.insync.replicas': 1,
    'offsets.topic.num.partitions': 1,
    'offsets.topic.replication.factor': 1,
    'transaction.state.log.replication.factor': 1,
    'transaction.state.log.min.isr': 1,
    // Share groups (KIP-932) came with 4.x; a 3.x broker would warn about unknown settings.
    ...(kafkaAtLeast(p.version ?? KAFKA_VERSION, [4, 0, 0]) && {
      'share.coordinator.state.topic.replication.factor': 1,
      'share.coordinator.state.topic.min.isr': 1,
    }),
    'group.initial.rebalance.delay.ms': 0,
    'auto.create.topics.enable': false,
    'num.network.threads': 2,
    'num.io.threads': 2,
    'num.recovery.threads.per.data.dir': 1,
    // After a SIGKILL the restarted broker waits for its old registration's session to
    // expire (default 9 s) before it is unfenced: a short session keeps restart() quick.
    'broker.heartbeat.interval.ms': 500,
    'broker.session.timeout.ms': 3000,
    // A held fetch that expires stays on the purgatory's list of every partition it names until
    // a purge, which runs after this many completed fetches (default 1000). An idle sink's
    // fetches name all its partitions and expire: over 2,000 partitions the live heap grew by
    // ~1.4 MB per fetch (1000 fetches: 1.4 GB), and the 512 MB broker ran out of heap within
    // 4 minutes.
    'fetch.purgatory.purge.interval.requests': 100,
    // The cleaner looks for compactable logs every 15 s by default: a test forcing compaction
    // (compacted-topics.test.ts) would wait that long. Scanning an idle test broker is cheap.
    'log.cleaner.backoff.ms': 250,
  };
  if (p.secure) {
    const { port, keystore, users, superUsers } = p.secure;
    const name = keystore ? 'SASL_SSL' : 'SASL_PLAINTEXT';
    const key = `listener.name.${name.toLowerCase()}`;
    const plainUsers = Object.entries(users).map(([user, pw]) => `user_${user}="${pw}"`).join(' ');
    Object.assign(props, {
      listeners: `${props.listeners},${name}://127.0.0.1:${port}`,
      'advertised.listeners': `${props['advertised.listeners']},${name}://127.0.0.1:${port}`,
      'listener.security.protocol.map': `${props['listener.security.protocol.map']},${name}:${name}`,
      'sasl.enabled.mechanisms': 'PLAIN,SCRAM-SHA-256,SCRAM-SHA-512',
      [`${key}.plain.sasl.jaas.config`]: `org.apache.kafka.common.security.plain.PlainLoginModule required ${plainUsers};`,
      [`${key}.scram-sha-256.sasl.jaas.config`]: 'org.apache.kafka.common.security.scram.ScramLoginModule required;',
      [`${key}.scram-sha-512.sasl.jaas.config`]: 'org.apache.kafka.common.security.scram.ScramLoginModule required;',
      ...(keystore && { [`${key}.ssl.keystore.type`]: 'PEM', [`${key}.ssl.keystore.location`]: keystore }),
    });
    if (superUsers) {
      Object.assign(props, {
        'authorizer.class.name': 'org.apache.kafka.metadata.authorizer.StandardAuthorizer',
        'super.users': ['ANONYMOUS', ...superUsers].map((u) => `User:${u}`).join(';'),
        'allow.everyone.if.no.acl.found': false,
      });
    }
  }
  const out = p.zookeeper ? zooKeeperBrokerProps(props, { port: p.port, zookeeperPort: p.controllerPort }) : props;
  return Object.entries(out).map(([k, v]) => `${k}=${v}`).join('\n') + '\n';
}

/** Everything to stdout (which is broker.log); WARN overall, INFO for start/stop/recovery. */
export function renderLog4j2(): string {
  const info = ['kafka.Kafka', 'kafka.server.KafkaRaftServer', 'kafka.server.KafkaServer', 'kafka.server.BrokerServer', 'kafka.server.ControllerServer', 'kafka.log.LogManager'];
  return [
    'status = warn',
    // Kafka stops on SIGTERM through its own hook; log4j's would race it and complain.
    'shutdownHook = disable',
    'appender.out.type = Console',
    'appender.out.name = OUT',
    'appender.out.layout.type = PatternLayout',
    'appender.out.layout.pattern = [%d] %p %m (%c)%n',
    'rootLogger.level = warn',
    'rootLogger.appenderRef.out.ref = OUT',
    ...info.flatMap((name, i) => [`logger.l${i}.name = ${name}`, `logger.l${i}.level = info`]),
    '',
  ].join('\n');
}

const JVM_FLAGS = ['-XX:+UseG1GC', '-XX:MaxGCPauseMillis=20', '-XX:+ExitOnOutOfMemoryError', '-Djava.awt.headless=true'];

async function formatStorage(
  libsDir: string,
  files: { props: string; log4j: string },
  dataDir: string,
  extra: string[],
  at: { port: number; controllerPort: number; version: string },
): Promise<void> {
  const logDir = path.join(dataDir, 'data');
  if (existsSync(path.join(logDir, 'meta.properties'))) return;
  // SCRAM credentials go into the metadata: such a format is run each time, never kept.
  if (extra.length > 0) return runStorageTool(libsDir, files.log4j, files.props, dataDir, extra);
  const key = { version: at.version, libsDir, props: renderServerProperties({ port: 0, controllerPort: 0, logDir: '', version: at.version }) };
  await formatFromTemplate(key, logDir, async (dir) => {
    const props = path.join(dataDir, 'format.properties');
    await writeFile(props, renderServerProperties({ port: at.port, controllerPort: at.controllerPort, logDir: dir, version: at.version }));
    try {
      await runStorageTool(libsDir, files.log4j, props, dataDir, []);
    } finally {
      await rm(props, { force: true });
    }
  }, newClusterId);
}

async function runStorageTool(libsDir: string, log4j: string, props: string, cwd: string, extra: string[]): Promise<void> {
  const args = [`-Dlog4j2.configurationFile=${log4j}`, '-cp', path.join(libsDir, '*'), 'kafka.tools.StorageTool', 'format', '-t', newClusterId(), '-c', props, ...extra];
  const proc = spawn(...javaCommand(['-Xmx256m', ...args]), { cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  track(proc);
  const chunks: Buffer[] = [];
  proc.stdout?.on('data', (c: Buffer) => chunks.push(c));
  proc.stderr?.on('data', (c: Buffer) => chunks.push(c));
  const code = await new Promise<number | null>((resolve, reject) => {
    proc.once('error', reject);
    proc.once('close', resolve);
  });
  if (code !== 0) {
    throw new Error(`kafka StorageTool format failed (exit ${code}): java ${args.join(' ')}\n${Buffer.concat(chunks).toString('utf8')}`);
  }
}
