/**
 * The docs against the code they describe, so that neither drifts alone: the configuration keys
 * of docs/configuration.md against the zod schemas (names, defaults, required, enum values), the
 * environment variables and example configs the docs give, the metric lists against the metrics
 * the connectors define, the module tables against the files, the command-line flags against the
 * CLI definition, the README's test variables against what the tests read, and its set-up
 * commands against package.json and .ci/run.
 * (docker-compose.yml and docs/docker-compose.md: test/unit/docker-compose.test.ts.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import type { z } from 'zod';
import type { Command } from 'commander';
import { buildProgram } from '../../shared/cli/main.ts';
import { childSchema, objectKeys, schemaType, unwrap } from '../../shared/config/introspect.ts';
import { envOverrides, formatZodIssues } from '../../shared/config/load.ts';
import { sourceConfigSchema, SOURCE_ENV_PREFIX } from '../../source-connector/config.ts';
import { sinkConfigSchema, SINK_ENV_PREFIX } from '../../sink-connector/config.ts';
import { metricsDefinedInCode, readRepo, repoRoot } from '../helpers/docs.ts';

const docFiles = ['README.md', ...readdirSync(path.join(repoRoot, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

/** A doc's text; benchmark.md only up to its results, which record past runs as they were. */
function docText(file: string): string {
  const text = readRepo(file);
  return file === 'docs/benchmark.md' ? text.slice(0, text.indexOf('\n## Results')) : text;
}

/** The body of the `## ` section whose title starts with `title` (without the title). */
function section(text: string, title: string): string {
  const parts = text.split(/^## /m);
  const found = parts.find((p) => p.startsWith(title));
  assert.ok(found, `no section "## ${title}"`);
  return found.slice(found.indexOf('\n') + 1);
}

/** Rows of the markdown tables in `text` whose first cell is a code span: [first cell, other cells]. */
function tableRows(text: string): { key: string; cells: string[] }[] {
  return [...text.matchAll(/^\| `([^`]+)` \|(.*)\|$/gm)].map((m) => ({ key: m[1], cells: m[2].split(' | ').map((c) => c.trim()) }));
}

// ---------- configuration keys ----------

type Schema = z.ZodType;

/** Every leaf key of a config schema by dotted path (a union, record or array is a leaf). */
function leaves(s: Schema, prefix: string[] = []): Map<string, Schema> {
  const out = new Map<string, Schema>();
  if (schemaType(s) !== 'object') return out.set(prefix.join('.'), s);
  for (const key of objectKeys(s)) for (const [k, v] of leaves(childSchema(s, key) as Schema, [...prefix, key])) out.set(k, v);
  return out;
}

/** The schema's default, when it has one. */
function defaultOf(s: Schema): { value: unknown } | undefined {
  for (let cur: any = s, i = 0; i < 20 && cur; i++) {
    const def = cur._zod.def;
    if (def.type === 'default') return { value: structuredClone(def.defaultValue) };
    cur = def.innerType;
  }
  return undefined;
}

interface DocumentedKey {
  cells: string[];
  row: string;
}

/**
 * The keys a connector's table documents, with the shared sections ("see above") expanded:
 * `source` / `destination` / `primary` by the PostgreSQL connection table, `kafka` and `schemaRegistry` by theirs.
 */
function documentedKeys(connector: 'Source connector' | 'Sink connector'): Map<string, DocumentedKey> {
  const doc = readRepo('docs/configuration.md');
  const row = (r: { key: string; cells: string[] }) => ({ cells: r.cells, row: `| \`${r.key}\` | ${r.cells.join(' | ')} |` });
  const shared: Record<string, { key: string; cells: string[] }[]> = {
    pg: tableRows(section(doc, 'PostgreSQL connection')),
    kafka: tableRows(section(doc, 'Kafka (')),
    schemaRegistry: tableRows(section(doc, 'Schema Registry (')),
  };
  const out = new Map<string, DocumentedKey>();
  for (const r of tableRows(section(doc, connector))) {
    const expand = ['source', 'destination', 'primary'].includes(r.key) ? 'pg' : r.key === 'kafka' || r.key === 'schemaRegistry' ? r.key : undefined;
    if (expand && /see above/i.test(r.cells[1])) {
      for (const s of shared[expand]) out.set(expand === 'pg' ? `${r.key}.${s.key}` : s.key, row(s));
    } else {
      assert.ok(!out.has(r.key), `${connector}: ${r.key} documented twice`);
      out.set(r.key, row(r));
    }
  }
  return out;
}

/** A documented default: the code span the cell starts with, as JSON when it parses, else as text. */
function documentedDefault(cell: string): { value: unknown } | undefined {
  const m = /^`([^`]+)`/.exec(cell);
  if (!m || m[1].includes('<')) return undefined;
  try {
    return { value: JSON.parse(m[1]) };
  } catch {
    return { value: m[1] };
  }
}

for (const [connector, schema] of [
  ['Source connector', sourceConfigSchema],
  ['Sink connector', sinkConfigSchema],
] as const) {
  test(`docs/configuration.md documents every ${connector.toLowerCase()} key, with its default, and no other`, () => {
    const keys = leaves(schema);
    const documented = documentedKeys(connector);
    assert.deepEqual([...documented.keys()].sort(), [...keys.keys()].sort());
    for (const [key, s] of keys) {
      const { cells, row } = documented.get(key)!;
      const [cell, meaning] = cells;
      const inCode = defaultOf(s);
      const inDoc = documentedDefault(cell);
      if (inCode) assert.deepEqual(inDoc, inCode, `${key}: documented default ${cell}, the schema's is ${JSON.stringify(inCode.value)}`);
      else assert.equal(inDoc, undefined, `${key}: documented default ${cell}, the schema has none`);
      const required = !s.safeParse(undefined).success;
      assert.equal(/^(\*\*)?required/.test(cell), required, `${key}: ${required ? 'required' : 'optional'} in the schema, documented default ${cell}`);
      // The values an enum takes are all named, unless the row refers to the source's.
      if (schemaType(s) === 'enum' && !/^As for the source/.test(meaning)) {
        for (const v of Object.values((unwrap(s) as any)._zod.def.entries as Record<string, string>)) {
          assert.ok(row.includes(`\`${v}\``), `${key}: the value \`${v}\` is not documented: ${row}`);
        }
      }
    }
  });
}

test("docs/configuration.md's examples of validation errors are what validation prints", () => {
  const rules = section(readRepo('docs/configuration.md'), 'Rules');
  const block = /```\n([^`]*)```/.exec(rules);
  assert.ok(block);
  const lines = block[1].split('\n').map((l) => l.trim()).filter(Boolean);
  assert.ok(lines.length >= 3 && lines.every((l) => l.startsWith('config: ')), block[1]);
  const typo = /`(config: tabels: [^`]+)`/.exec(rules);
  assert.ok(typo);
  const parsed = sourceConfigSchema.safeParse({ tabels: {}, snapshot: { chunkSize: 'abc' }, kafka: { brokers: ['k1'] } }, { reportInput: true });
  assert.ok(!parsed.success);
  const printed = formatZodIssues(parsed.error.issues, { schema: sourceConfigSchema });
  for (const line of [...lines, typo[1]]) assert.ok(printed.includes(line), `not printed: ${line}\n${printed.join('\n')}`);
});

test('every SHARDBRIDGE_SOURCE_* / SHARDBRIDGE_SINK_* variable the docs and the compose files name sets a configuration key', () => {
  const files = [...docFiles, 'docker-compose.yml', ...readdirSync(path.join(repoRoot, 'docker')).filter((f) => /\.ya?ml$/.test(f)).map((f) => `docker/${f}`)];
  let seen = 0;
  for (const file of files) {
    for (const [name] of readRepo(file).matchAll(/\bSHARDBRIDGE_(?:SOURCE|SINK)_[A-Z][A-Z0-9_]*/g)) {
      const [schema, prefix] = name.startsWith(SOURCE_ENV_PREFIX) ? [sourceConfigSchema, SOURCE_ENV_PREFIX] : [sinkConfigSchema, SINK_ENV_PREFIX];
      const { problems, origins } = envOverrides(schema, { [name]: 'x' }, prefix);
      assert.deepEqual(problems, [], `${file}: ${name}`);
      assert.equal(origins.size, 1, `${file}: ${name}`);
      seen++;
    }
  }
  assert.ok(seen >= 4);
});

test('the example configurations in docs/configuration.md are valid', () => {
  const doc = section(readRepo('docs/configuration.md'), 'Examples');
  const examples = [...doc.matchAll(/^`(source|sink)\.yaml`:\n\n```yaml\n([\s\S]*?)```/gm)];
  assert.deepEqual(examples.map((m) => m[1]), ['source', 'sink']);
  for (const [, which, yaml] of examples) {
    const schema = which === 'source' ? sourceConfigSchema : sinkConfigSchema;
    const parsed = schema.safeParse(YAML.parse(yaml), { reportInput: true });
    assert.ok(parsed.success, `${which}.yaml: ${parsed.success ? '' : formatZodIssues(parsed.error.issues, { schema }).join('\n')}`);
  }
});

// ---------- metrics ----------

/** `name{label,label}` / `name{label="a"|"b"}` code spans → name and label names. */
function metricSpans(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const m of text.matchAll(/`([a-z][a-z0-9_]*)(?:\{([^}]*)\})?`/g)) {
    out.set(m[1], (m[2] ?? '').split(',').map((l) => l.split('=')[0].trim()).filter(Boolean));
  }
  return out;
}

test("each connector's Metrics section lists exactly the metrics it defines, with their labels", () => {
  const defined = metricsDefinedInCode();
  const sections = {
    shardbridge_source_: section(readRepo('docs/source-connector.md'), 'Metrics').split('\n').filter((l) => l.startsWith('| `')).map((l) => l.split(' | ')[0]).join('\n'),
    shardbridge_sink_: section(readRepo('docs/sink-connector.md'), 'Metrics'),
  };
  for (const [prefix, text] of Object.entries(sections)) {
    const documented = metricSpans(text);
    const ours = [...defined].filter(([name]) => name.startsWith(prefix)).map(([name, d]) => [name.slice(prefix.length), d] as const);
    assert.ok(ours.length > 5, `metrics of ${prefix}`);
    assert.deepEqual([...documented.keys()].sort(), ours.map(([n]) => n).sort(), `the ${prefix}* metrics documented`);
    for (const [name, d] of ours) assert.deepEqual(documented.get(name), d.labels, `${prefix}${name}: labels`);
  }
});

test('every shardbridge_* metric the docs name is one the connectors define', () => {
  const defined = metricsDefinedInCode();
  for (const file of docFiles) {
    for (const [name] of docText(file).matchAll(/\bshardbridge_(?:source|sink)_[a-z0-9_]*[a-z0-9]/g)) {
      const histogram = /_(bucket|sum|count)$/.exec(name);
      const ok = defined.has(name) || (histogram && defined.get(name.slice(0, -histogram[0].length))?.kind === 'histogram');
      assert.ok(ok, `${file}: ${name} is not a metric the connectors define`);
    }
  }
});

// ---------- modules ----------

/** Every file under the repository (no node_modules, no dot-directories), relative. */
function repoFiles(dir = ''): string[] {
  return readdirSync(path.join(repoRoot, dir), { withFileTypes: true }).flatMap((e) => {
    if (e.name.startsWith('.') || e.name === 'node_modules' || e.name === 'dist') return [];
    const rel = path.posix.join(dir, e.name);
    return e.isDirectory() ? repoFiles(rel) : [rel];
  });
}

test('every .ts file the docs name exists', () => {
  const files = repoFiles();
  const basenames = new Set(files.map((f) => path.posix.basename(f)));
  for (const file of docFiles) {
    for (const [ref] of docText(file).matchAll(/[\w./{},-]*[\w}]\.ts\b/g)) {
      // `migration-{status,cutover}.test.ts` names each.
      const brace = /^(.*)\{([^}]*)\}(.*)$/.exec(ref);
      for (const name of brace ? brace[2].split(',').map((x) => brace[1] + x + brace[3]) : [ref]) {
        if (name.includes('/')) assert.ok(existsSync(path.join(repoRoot, name.replace(/^\.\//, ''))), `${file}: ${name} does not exist`);
        else assert.ok(basenames.has(name), `${file}: no file ${name}`);
      }
    }
  }
});

for (const dir of ['source-connector', 'sink-connector']) {
  test(`docs/${dir}.md's module table lists every module of ${dir}/`, () => {
    const rows = tableRows(section(readRepo(`docs/${dir}.md`), 'Modules')).map((r) => r.key).filter((k) => !k.includes('/'));
    const modules = readdirSync(path.join(repoRoot, dir)).filter((f) => f.endsWith('.ts'));
    assert.deepEqual([...rows].sort(), modules.sort());
  });
}

test("docs/architecture.md's module tree names every part of shared/", () => {
  const doc = readRepo('docs/architecture.md');
  const start = doc.indexOf('```\n');
  const tree = doc.slice(start, doc.indexOf('\n```', start));
  const shared = tree.slice(tree.indexOf('\nshared/'));
  assert.ok(start >= 0 && shared.length > 0);
  for (const e of readdirSync(path.join(repoRoot, 'shared'), { withFileTypes: true })) {
    const name = e.isDirectory() ? `${e.name}/` : e.name;
    assert.ok(new RegExp(`(^|\\s)${name.replace(/\./g, '\\.')}(\\s|$)`, 'm').test(shared), `shared/${name} is not in the tree`);
  }
});

// ---------- the command line ----------

/** Every command of the program by its full name (`schema copy`), with its long options and the globals. */
function commands(): Map<string, Set<string>> {
  const program = buildProgram(async () => {}, () => {}, () => {});
  const longs = (c: Command) => c.options.map((o) => o.long).filter((l): l is string => l !== undefined);
  const globals = new Set([...longs(program), '--help']);
  const out = new Map<string, Set<string>>([['', globals]]);
  const visit = (c: Command, prefix: string) => {
    for (const sub of c.commands) {
      const name = `${prefix}${sub.name()}`;
      if (sub.commands.length > 0) visit(sub, `${name} `);
      else out.set(name, new Set([...globals, ...longs(sub)]));
    }
  };
  visit(program, '');
  return out;
}

test('every option of every command is documented, and every option the docs give a command is one it has', () => {
  const cli = commands();
  const text = docFiles.map(docText).join('\n');
  for (const [name, options] of cli) {
    for (const option of options) assert.ok(new RegExp(`${option}(?![\\w-])`).test(text), `\`shardbridge ${name}\`'s ${option} is not documented`);
  }
  let checked = 0;
  for (const file of docFiles) {
    const doc = docText(file);
    const spans = [...doc.matchAll(/`([^`\n]+)`/g)].map((m) => m[1]);
    const blockLines = [...doc.matchAll(/```[a-z]*\n([\s\S]*?)```/g)].flatMap((m) => m[1].split('\n'));
    for (const span of [...spans, ...blockLines]) {
      for (const m of span.matchAll(/(?:^|[\s(])(?:shardbridge|npm run) (schema copy|[a-z]+)\b(.*)$/g)) {
        const [, command, rest] = m;
        if (command === 'build') continue; // `npm run build`: tsc
        const options = cli.get(command);
        assert.ok(options, `${file}: \`shardbridge ${command}\` is not a command (${span})`);
        for (const [flag] of rest.matchAll(/--[a-z][a-z-]*/g)) {
          // `npm run bench -- --scale 0.1`, `--no-warmup`: as commander reads them.
          assert.ok(options.has(flag), `${file}: \`shardbridge ${command}\` has no ${flag} (${span})`);
          checked++;
        }
      }
    }
  }
  assert.ok(checked > 20, `options checked: ${checked}`);
});

// ---------- the tests' own variables ----------

test("the README's test variables are the ones the tests read", () => {
  const read = new Set<string>();
  for (const file of repoFiles('test')) {
    if (!file.endsWith('.ts')) continue;
    for (const [, name] of readRepo(file).matchAll(/process\.env\.(SHARDBRIDGE_TEST_[A-Z_]+)/g)) read.add(name);
  }
  const readme = section(readRepo('README.md'), 'The dev stack');
  const documented = new Set([...readme.matchAll(/`(SHARDBRIDGE_TEST_[A-Z_]+)`/g)].map((m) => m[1]));
  assert.deepEqual([...documented].sort(), [...read].sort());
});

test("the README's quick start asks for the Node.js version package.json requires", () => {
  const engines = (JSON.parse(readRepo('package.json')) as { engines: { node: string } }).engines.node;
  const wanted = /^>=(\d+(?:\.\d+)*)$/.exec(engines);
  assert.ok(wanted, engines);
  assert.match(section(readRepo('README.md'), 'Quick start'), new RegExp(`with Node\\.js ${wanted[1].replace(/\./g, '\\.')}\\+ `));
});

test("the README's set-up commands are package.json's scripts, and .ci/run installs its prerequisites and runs its test command", () => {
  const quickStart = section(readRepo('README.md'), 'Quick start');
  const scripts = (JSON.parse(readRepo('package.json')) as { scripts: Record<string, string> }).scripts;
  const block = /```sh\n([\s\S]*?)```/.exec(quickStart);
  assert.ok(block, 'no sh block in the quick start');
  const commands = block[1].split('\n').flatMap((l) => l.replace(/#.*/, '').split('&&')).map((c) => c.trim()).filter(Boolean);
  assert.deepEqual(commands, ['npm ci', 'npm run demo', 'npm test']);
  for (const c of commands.filter((c) => c !== 'npm ci')) {
    const script = c === 'npm test' ? 'test' : c.slice('npm run '.length);
    assert.ok(scripts[script], `package.json has no script "${script}" (${c})`);
  }
  const ci = readRepo('.ci/run');
  const lines = ci.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  assert.equal(lines.at(-1), 'npm test', '.ci/run ends with the README\'s test command');
  const packages = /apt-get install -y ([a-z0-9 .+-]+)`/.exec(quickStart);
  assert.ok(packages, "the quick start's apt-get line");
  const installed = [...ci.matchAll(/missing\+=\(([a-z0-9.+-]+)\)/g)].map((m) => m[1]);
  assert.deepEqual(installed.sort(), packages[1].trim().split(/\s+/).sort());
});

test("the README's Documentation list names every page of docs/", () => {
  const listed = [...section(readRepo('README.md'), 'Documentation').matchAll(/^- \[(docs\/[\w-]+\.md)\]\(\1\)/gm)].map((m) => m[1]);
  assert.deepEqual(listed.sort(), docFiles.filter((f) => f.startsWith('docs/')).sort());
});
