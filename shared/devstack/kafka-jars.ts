/**
 * The real Apache Kafka broker's jars for the dev stack, fetched from Maven Central with
 * `mvn dependency:copy-dependencies` (shared/devstack/kafka/pom.xml) into a per-version
 * cache directory. A download goes to a temp directory that is renamed into place and then
 * marked complete, so an interrupted fetch is never mistaken for a usable one.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, writeFile, mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../errors.ts';

/**
 * The newest Kafka release proven with kafkajs 2.2.4 (idempotent producer, consumer group
 * join/commit, admin create/delete topics, describeConfigs, fetchTopicOffsets): see
 * test/integration/kafka-broker.test.ts.
 */
export const KAFKA_VERSION = '4.4.0';

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
  const version = opts.version ?? KAFKA_VERSION;
  const log = opts.log ?? (() => {});
  const libsDir = kafkaLibsDir(version);
  const home = path.dirname(libsDir);
  const marker = path.join(home, MARKER);
  if (existsSync(marker) && existsSync(libsDir)) return { libsDir, version };

  await checkJava();
  await checkMaven(version);
  await mkdir(home, { recursive: true });
  // Same parent as libsDir so the final rename is atomic (one filesystem).
  const tmp = await mkdtemp(path.join(home, 'libs.partial-'));
  try {
    log(`fetching Apache Kafka ${version} jars into ${libsDir} (mvn, first run only)`);
    const started = Date.now();
    const args = (out: string) => ['-q', '-B', '-f', POM, `-Dkafka.version=${version}`, 'dependency:copy-dependencies', `-DoutputDirectory=${out}`];
    const res = await run('mvn', args(tmp));
    if (res.code !== 0) {
      throw new ConfigError(`mvn could not fetch the Kafka ${version} jars (exit ${res.code}):\n${tail(res.output, 20)}\n`, {
        context: { version },
        remedy: `check access to Maven Central, or fetch by hand: mvn ${args(libsDir).join(' ')} && touch ${marker}`,
      });
    }
    const jars = await readdir(tmp);
    if (!jars.includes(`kafka_2.13-${version}.jar`)) {
      throw new ConfigError(`mvn finished but kafka_2.13-${version}.jar is missing from ${tmp}`, { context: { version } });
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
    log(`fetched ${jars.length} jars for Kafka ${version} in ${Date.now() - started} ms`);
    return { libsDir, version };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Throws a ConfigError naming the package to install when java is missing or older than 17. */
export async function checkJava(): Promise<void> {
  const res = await run('java', ['-version']).catch((err: NodeJS.ErrnoException) => {
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

async function checkMaven(version: string): Promise<void> {
  await run('mvn', ['-v']).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') {
      throw new ConfigError('mvn was not found on PATH; it fetches the Kafka broker jars on first use', {
        context: { tool: 'mvn' },
        remedy: `install Maven (Debian/Ubuntu: sudo apt-get install maven), or run it yourself: mvn -q -f ${POM} -Dkafka.version=${version} dependency:copy-dependencies -DoutputDirectory=${kafkaLibsDir(version)} && touch ${path.join(path.dirname(kafkaLibsDir(version)), MARKER)}`,
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

function run(cmd: string, args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
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
