import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { compiledPositionMapper } from '../../shared/bench/profile-sources.ts';
import { analyzeProfile, decodeMappings, parseProfileName, decodeVlq, formatProfileSummary, originalLine, shortUrl, type CpuProfile } from '../../shared/bench/profile.ts';

const profile: CpuProfile = {
  nodes: [
    { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1 } },
    { id: 2, callFrame: { functionName: '(idle)', url: '', lineNumber: -1 } },
    { id: 3, callFrame: { functionName: 'encode', url: 'file:///repo/source-connector/publisher.ts', lineNumber: 0, columnNumber: 120 } },
    { id: 4, callFrame: { functionName: 'crc32C', url: 'file:///repo/node_modules/kafkajs/src/crc32C.js', lineNumber: 7 } },
    { id: 5, callFrame: { functionName: '(garbage collector)', url: '', lineNumber: -1 } },
  ],
  startTime: 0,
  endTime: 10_000,
  // sample i lasts timeDeltas[i + 1] µs (the last one: its own delta)
  samples: [2, 3, 3, 4, 5, 2],
  timeDeltas: [0, 1000, 2000, 3000, 1000, 2000],
};

test('analyzeProfile: self time per function from sample intervals, idle apart, shares of busy time', () => {
  const s = analyzeProfile(profile, '/repo');
  assert.equal(s.idleMs, 1 + 2);
  assert.equal(s.busyMs, 5 + 1 + 2);
  assert.deepEqual(
    s.functions.map((f) => [f.what, f.ms]),
    [
      ['encode (source-connector/publisher.ts:1)', 5],
      ['(garbage collector)', 2],
      ['crc32C (node_modules/kafkajs/src/crc32C.js:8)', 1],
    ],
  );
  assert.ok(Math.abs(s.functions[0].share - 5 / 8) < 1e-9);
  assert.equal(s.files[0].what, 'source-connector/publisher.ts');
  assert.match(formatProfileSummary('source', s), /^source: 8 ms busy of 11 ms profiled\n {2}top self time:\n +5 ms +62\.5 % {2}encode/);
});

test('analyzeProfile: a position mapper turns generated positions into original lines', () => {
  const s = analyzeProfile(profile, '/repo', (url, line0, col0) => (url.endsWith('.ts') && line0 === 0 && col0 === 120 ? 42 : null));
  assert.equal(s.functions[0].what, 'encode (source-connector/publisher.ts:42)');
});

test('shortUrl: repository-relative, node_modules from the package, node internals as they are', () => {
  assert.equal(shortUrl('file:///repo/sink-connector/apply.ts', '/repo'), 'sink-connector/apply.ts');
  assert.equal(shortUrl('file:///repo/node_modules/pg/lib/client.js', '/repo'), 'node_modules/pg/lib/client.js');
  assert.equal(shortUrl('node:internal/buffer', '/repo'), 'node:internal/buffer');
  assert.equal(shortUrl('', '/repo'), '');
  assert.equal(shortUrl('file:///repo/dist/sink-connector/apply.js', '/repo'), 'sink-connector/apply.ts', 'the compiled build names its source');
});

test('source maps: VLQ segments, mappings per generated line, lookup by column', () => {
  assert.deepEqual(decodeVlq('AAAA'), [0, 0, 0, 0]);
  assert.deepEqual(decodeVlq('AACA'), [0, 0, 1, 0]);
  assert.deepEqual(decodeVlq('D'), [-1]);
  assert.deepEqual(decodeVlq('gB'), [16]);
  // one generated line: col 0 → line 0, col 10 → line 2, col 25 → line 5
  const decoded = decodeMappings('AAAA,UAEA,eAGA');
  assert.deepEqual(decoded, [[[0, 0], [10, 2], [25, 5]]]);
  assert.equal(originalLine(decoded, 0, 0), 1);
  assert.equal(originalLine(decoded, 0, 12), 3);
  assert.equal(originalLine(decoded, 0, 100), 6);
  assert.equal(originalLine(decoded, 1, 0), null);
  assert.throws(() => decodeVlq('!'));
});

test('parseProfileName: pid and thread of node --cpu-prof file names', () => {
  assert.deepEqual(parseProfileName('CPU.20261125.060719.5433.2.003.cpuprofile'), { pid: 5433, thread: 2 });
  assert.deepEqual(parseProfileName('custom.cpuprofile'), { pid: null, thread: null });
});

test('compiled build positions map through the .js.map beside the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sb-map-'));
  try {
    mkdirSync(join(dir, 'dist'));
    const js = join(dir, 'dist', 'a.js');
    // Generated line 0 → source line 0; generated line 1, columns 0 and 4 → source lines 2 and 3.
    writeFileSync(js + '.map', JSON.stringify({ version: 3, sources: ['../a.ts'], mappings: 'AAAA;AAEA,IACA' }));
    const map = compiledPositionMapper();
    const url = pathToFileURL(js).href;
    assert.equal(map(url, 0, 0), 1);
    assert.equal(map(url, 1, 2), 3);
    assert.equal(map(url, 1, 9), 4);
    assert.equal(map(pathToFileURL(join(dir, 'dist', 'none.js')).href, 0, 0), null, 'no map: unknown');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
