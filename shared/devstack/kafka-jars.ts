/**
 * The real Apache Kafka broker's jars for the dev stack, fetched from Maven Central with
 * `mvn dependency:copy-dependencies` (shared/devstack/kafka/pom.xml) into a per-version
 * cache directory. A download goes to a temp directory that is renamed into place and then
 * marked complete, so an interrupted fetch is never mistaken for a usable one. The same way,
 * the Java Avro jars of the interop test (shared/devstack/avro/pom.xml, ensureAvroJars).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../errors.ts';
import { ownedPartialDir } from './temp-dirs.ts';

/**
 * The newest Kafka release proven with kafkajs 2.2.4 (idempotent producer, consumer group
 * join/commit, admin create/delete topics, describeConfigs, fetchTopicOffsets): see
 * test/integration/kafka-broker.test.ts.
 */
export const KAFKA_VERSION = '4.4.0';

/** The oldest release the dev stack can run: KRaft without ZooKeeper became production-ready in 3.3. */
export const OLDEST_DEVSTACK_KAFKA = '3.3.0';

/**
 * The Kafka release the dev stack runs: SHARDBRIDGE_KAFKA_VERSION (e.g. 3.9.2, to run the tests
 * against an older broker, as many users have), else KAFKA_VERSION. Pure.
 */
export function devstackKafkaVersion(env: NodeJS.ProcessEnv = process.env): string {
  const wanted = env.SHARDBRIDGE_KAFKA_VERSION?.trim();
  if (!wanted) return KAFKA_VERSION;
  const parsed = parseKafkaVersion(wanted);
  if (!parsed) {
    throw new ConfigError(`SHARDBRIDGE_KAFKA_VERSION=${wanted} is not a Kafka release number`, {
      context: { variable: 'SHARDBRIDGE_KAFKA_VERSION', value: wanted },
      remedy: `name a release of org.apache.kafka:kafka_2.13 such as ${KAFKA_VERSION} or 3.9.2, or unset it for ${KAFKA_VERSION}`,
    });
  }
  if (compareKafkaVersions(parsed, parseKafkaVersion(OLDEST_DEVSTACK_KAFKA) ?? [3, 3, 0]) < 0) {
    throw new ConfigError(`the dev stack runs Kafka in KRaft mode, which Kafka ${wanted} cannot run in production (KRaft is production-ready from 3.3)`, {
      context: { variable: 'SHARDBRIDGE_KAFKA_VERSION', value: wanted },
      remedy: `set SHARDBRIDGE_KAFKA_VERSION to 3.3.0 or newer; test an older broker (ZooKeeper) against a cluster of your own through SHARDBRIDGE_TEST_KAFKA`,
    });
  }
  return wanted;
}

/** `3.9.2` → [3, 9, 2]; undefined when it is not such a number. Pure. */
export function parseKafkaVersion(version: string): [number, number, number] | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(version);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

export function compareKafkaVersions(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return (a[i] ?? 0) - (b[i] ?? 0);
  return 0;
}

/** Kafka 4.x brokers need Java 17 or newer. */
const MIN_JAVA = 17;
const MARKER = '.complete';
const POM = fileURLToPath(new URL('./kafka/pom.xml', import.meta.url));

export function shardbridgeCacheDir(): string {
  return process.env.SHARDBRIDGE_CACHE ?? path.join(os.homedir(), '.cache', 'shardbridge');
}

/** Where the jars of `version` live once fetched. */
export function kafkaLibsDir(version: string = KAFKA_VERSION): string {
  return path.join(shardbridgeCacheDir(), `kafka-${version}`, 'libs');
}

export async function ensureKafkaJars(
  opts: { version?: string; log?: (msg: string) => void } = {},
): Promise<{ libsDir: string; version: string }> {
  const version = opts.version ?? devstackKafkaVersion();
  const libsDir = await ensureMavenJars({
    what: `Apache Kafka ${version}`,
    pom: POM,
    properties: { 'kafka.version': version },
    libsDir: kafkaLibsDir(version),
    mainJar: `kafka_2.13-${version}.jar`,
    purpose: 'it fetches the Kafka broker jars on first use',
    log: opts.log,
  });
  return { libsDir, version };
}

/**
 * The reference Java Avro implementation, which Kafka Connect, ksqlDB, Flink, Spark and
 * Confluent's KafkaAvroDeserializer read our topics with: test/integration/avro-interop.test.ts
 * decodes every record with it (test/java/AvroDecode.java). 1.11, as Confluent Platform 7 ships:
 * stricter on union defaults than 1.12.
 */
export const AVRO_VERSION = '1.11.4';
const AVRO_POM = fileURLToPath(new URL('./avro/pom.xml', import.meta.url));

/** Where the jars of Java Avro `version` (and its jackson, commons, slf4j) live once fetched. */
export function avroLibsDir(version: string = AVRO_VERSION): string {
  return path.join(shardbridgeCacheDir(), `avro-${version}`, 'libs');
}

/** Fetches org.apache.avro:avro `version` with its dependencies once (about 3 s from Maven Central); then only checks the marker. */
export async function ensureAvroJars(
  opts: { version?: string; log?: (msg: string) => void } = {},
): Promise<{ libsDir: string; version: string }> {
  const version = opts.version ?? AVRO_VERSION;
  const libsDir = await ensureMavenJars({
    what: `Apache Avro ${version}`,
    pom: AVRO_POM,
    properties: { 'avro.version': version },
    libsDir: avroLibsDir(version),
    mainJar: `avro-${version}.jar`,
    purpose: 'it fetches the Java Avro jars the interop test decodes with on first use',
    log: opts.log,
  });
  return { libsDir, version };
}

interface MavenJars {
  /** For messages: `Apache Kafka 4.4.0`. */
  what: string;
  pom: string;
  /** `-D` properties of the pom (versions). */
  properties: Record<string, string>;
  libsDir: string;
  /** The jar whose absence means the fetch went wrong. */
  mainJar: string;
  /** Why mvn is needed, for the message when it is missing. */
  purpose: string;
  log?: (msg: string) => void;
}

/** `mvn dependency:copy-dependencies` of `pom` into `libsDir`, once: a marker next to it says the copy is complete. */
async function ensureMavenJars(o: MavenJars): Promise<string> {
  const log = o.log ?? (() => {});
  const { libsDir, what } = o;
  const home = path.dirname(libsDir);
  const marker = path.join(home, MARKER);
  if (existsSync(marker) && existsSync(libsDir)) return libsDir;

  const props = Object.entries(o.properties).map(([k, v]) => `-D${k}=${v}`);
  const args = (out: string) => ['-q', '-B', '-f', o.pom, ...props, 'dependency:copy-dependencies', `-DoutputDirectory=${out}`];
  await checkJava();
  await checkMaven(o.purpose, `mvn ${args(libsDir).join(' ')} && touch ${marker}`);
  await mkdir(home, { recursive: true });
  // Same parent as libsDir so the final rename is atomic (one filesystem).
  const tmp = await ownedPartialDir(libsDir);
  try {
    log(`fetching ${what} jars into ${libsDir} (mvn, first run only)`);
    const started = Date.now();
    const res = await runCommand('mvn', args(tmp));
    if (res.code !== 0) {
      throw new ConfigError(`mvn could not fetch the ${what} jars (exit ${res.code}):\n${tail(res.output, 20)}\n`, {
        context: { what },
        remedy: `check access to Maven Central, or fetch by hand: mvn ${args(libsDir).join(' ')} && touch ${marker}`,
      });
    }
    const jars = await readdir(tmp);
    if (!jars.includes(o.mainJar)) {
      throw new ConfigError(`mvn finished but ${o.mainJar} is missing from ${tmp}`, { context: { what } });
    }
    // A libs dir without the marker is a leftover of an interrupted earlier run.
    if (!existsSync(marker)) await rm(libsDir, { recursive: true, force: true });
    try {
      await rename(tmp, libsDir);
    } catch (err) {
      // Another process finished the same fetch first: theirs is as good as ours.
      if (!existsSync(marker)) throw err;
    }
    await writeFile(marker, `${jars.sort().join('\n')}\n`);
    log(`fetched ${jars.length} jars for ${what} in ${Date.now() - started} ms`);
    return libsDir;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Throws a ConfigError naming the package to install when java is missing or older than 17. */
export async function checkJava(): Promise<void> {
  const res = await runCommand('java', ['-version']).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') {
      throw new ConfigError('java was not found on PATH; the dev stack runs a real Kafka broker', {
        context: { tool: 'java' },
        remedy: `install a JDK ${MIN_JAVA}+ (Debian/Ubuntu: sudo apt-get install openjdk-${MIN_JAVA}-jdk-headless)`,
      });
    }
    throw err;
  });
  const major = parseJavaMajor(res.output);
  if (major !== undefined && major < MIN_JAVA) {
    throw new ConfigError(`java ${major} is too old for Kafka 4 (needs ${MIN_JAVA}+)`, {
      context: { tool: 'java', found: major },
      remedy: `install a JDK ${MIN_JAVA}+ (Debian/Ubuntu: sudo apt-get install openjdk-${MIN_JAVA}-jdk-headless) and put it first on PATH`,
    });
  }
}

async function checkMaven(purpose: string, byHand: string): Promise<void> {
  await runCommand('mvn', ['-v']).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') {
      throw new ConfigError(`mvn was not found on PATH; ${purpose}`, {
        context: { tool: 'mvn' },
        remedy: `install Maven (Debian/Ubuntu: sudo apt-get install maven), or run it yourself: ${byHand}`,
      });
    }
    throw err;
  });
}

/** `java -version` prints e.g. `openjdk version "17.0.15"` or `java version "1.8.0_392"`. */
export function parseJavaMajor(versionOutput: string): number | undefined {
  const m = /version "(\d+)(?:\.(\d+))?/.exec(versionOutput);
  if (!m) return undefined;
  const first = Number(m[1]);
  return first === 1 && m[2] ? Number(m[2]) : first;
}

/** A command's exit code and its stdout and stderr together (the fetches of the dev stack's servers). */
export function runCommand(cmd: string, args: string[], cwd?: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.stderr.on('data', (c: Buffer) => chunks.push(c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, output: Buffer.concat(chunks).toString('utf8') }));
  });
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}
