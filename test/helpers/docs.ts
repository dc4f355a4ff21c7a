/**
 * Reading the repository's own files for the tests that hold docs, examples and code in step
 * (test/unit/docs.test.ts, test/unit/docker-compose.test.ts).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const readRepo = (rel: string) => readFileSync(path.join(repoRoot, rel), 'utf8');

export interface MetricDefinition {
  kind: 'counter' | 'gauge' | 'histogram';
  labels: string[];
}

/**
 * The metrics the connectors define, by full name: `createMetrics({ prefix })` in each connector
 * directory and every `.counter('name', 'help', ['label', ...])` / `.gauge(...)` / `.histogram(...)` there, and
 * `.sampled('name', 'help', read)` (a gauge read when scraped, without labels).
 */
export function metricsDefinedInCode(): Map<string, MetricDefinition> {
  const out = new Map<string, MetricDefinition>();
  for (const dir of ['source-connector', 'sink-connector']) {
    const texts = readdirSync(path.join(repoRoot, dir)).filter((f) => f.endsWith('.ts')).map((f) => readRepo(path.join(dir, f)));
    const prefixes = new Set(texts.flatMap((t) => [...t.matchAll(/createMetrics\(\{[^}]*\bprefix:\s*'([a-z0-9_]+)'/g)].map((m) => m[1])));
    assert.ok(prefixes.size <= 1, `${dir}: one metric prefix (${[...prefixes].join(', ')})`);
    const [prefix] = prefixes;
    if (prefix === undefined) continue;
    const help = /(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|`[^`]*`)/.source;
    const call = new RegExp(String.raw`\.(counter|gauge|histogram|sampled)(?:<[^>(]*>)?\(\s*'([a-z0-9_]+)',\s*${help}\s*(?:,\s*\[([^\]]*)\])?`, 'g');
    for (const t of texts) {
      for (const m of t.matchAll(call)) {
        const labels = [...(m[3] ?? '').matchAll(/'([^']+)'/g)].map((l) => l[1]);
        out.set(prefix + m[2], { kind: m[1] === 'sampled' ? 'gauge' : (m[1] as MetricDefinition['kind']), labels });
      }
    }
  }
  return out;
}
