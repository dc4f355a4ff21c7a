/**
 * Reading V8 CPU profiles (`node --cpu-prof` output, .cpuprofile JSON): self time per
 * function (summed over the samples whose leaf it was, weighted by the sample intervals) and
 * per file, with paths made short. The analysis is pure; readProfiles is the file edge.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number; columnNumber?: number }; hitCount?: number }[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface SelfTime {
  /** `name (file:line)`, or a V8 pseudo-frame such as `(garbage collector)`. */
  what: string;
  file: string;
  ms: number;
  /** Share of the profile's busy time (idle excluded). */
  share: number;
}

export interface ProfileSummary {
  totalMs: number;
  idleMs: number;
  busyMs: number;
  functions: SelfTime[];
  files: SelfTime[];
}

const PSEUDO = new Set(['(idle)', '(program)', '(garbage collector)', '(root)']);

/** Shortens a script URL: the repository part, or node_modules/<package>/…, or node:internal. */
export function shortUrl(url: string, root: string): string {
  if (!url) return '';
  let p = url.startsWith('file://') ? decodeURIComponent(url.slice('file://'.length)) : url;
  const nm = p.lastIndexOf('/node_modules/');
  if (nm >= 0) return p.slice(nm + 1);
  if (root && p.startsWith(root + '/')) p = p.slice(root.length + 1);
  // The compiled build (npm run build) mirrors the sources: name the TypeScript file.
  if (p.startsWith('dist/') && p.endsWith('.js')) p = p.slice('dist/'.length, -'.js'.length) + '.ts';
  return p;
}

/**
 * Maps a position in generated code back to the 1-based line of the original file (tsx
 * compiles every module to one minified line; tsc's dist/ moves lines); null when unknown.
 */
export type PositionMapper = (url: string, line0: number, column0: number) => number | null;

export function analyzeProfile(profile: CpuProfile, root = '', mapPosition?: PositionMapper): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  if (samples.length > 0) {
    // timeDeltas[i] is the time before sample i; the interval after sample i is deltas[i + 1].
    for (let i = 0; i < samples.length; i++) {
      const dt = deltas[i + 1] ?? deltas[i] ?? 0;
      selfUs.set(samples[i], (selfUs.get(samples[i]) ?? 0) + Math.max(0, dt));
    }
  } else {
    const interval = profile.nodes.reduce((a, n) => a + (n.hitCount ?? 0), 0);
    const per = interval > 0 ? (profile.endTime - profile.startTime) / interval : 0;
    for (const n of profile.nodes) selfUs.set(n.id, (n.hitCount ?? 0) * per);
  }
  const fn = new Map<string, { file: string; us: number }>();
  const files = new Map<string, number>();
  let idleUs = 0;
  let totalUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    totalUs += us;
    const cf = node.callFrame;
    if (cf.functionName === '(idle)') {
      idleUs += us;
      continue;
    }
    const file = shortUrl(cf.url, root);
    const line = (mapPosition && cf.url ? mapPosition(cf.url, cf.lineNumber, cf.columnNumber ?? 0) : null) ?? cf.lineNumber + 1;
    const what = PSEUDO.has(cf.functionName) || !file ? cf.functionName || '(anonymous)' : `${cf.functionName || '(anonymous)'} (${file}:${line})`;
    const e = fn.get(what) ?? { file, us: 0 };
    e.us += us;
    fn.set(what, e);
    const fk = file || cf.functionName;
    files.set(fk, (files.get(fk) ?? 0) + us);
  }
  const busyUs = totalUs - idleUs;
  const share = (us: number) => (busyUs > 0 ? us / busyUs : 0);
  const functions = [...fn.entries()].map(([what, e]) => ({ what, file: e.file, ms: e.us / 1000, share: share(e.us) })).sort((a, b) => b.ms - a.ms);
  const fileList = [...files.entries()].map(([file, us]) => ({ what: file, file, ms: us / 1000, share: share(us) })).sort((a, b) => b.ms - a.ms);
  return { totalMs: totalUs / 1000, idleMs: idleUs / 1000, busyMs: busyUs / 1000, functions, files: fileList };
}

// ---------- source maps ----------

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Decodes one base64 VLQ segment of a source map into its numbers. */
export function decodeVlq(segment: string): number[] {
  const out: number[] = [];
  let value = 0;
  let shift = 0;
  for (const ch of segment) {
    const digit = B64.indexOf(ch);
    if (digit < 0) throw new Error(`invalid base64 VLQ character ${JSON.stringify(ch)}`);
    value += (digit & 31) << shift;
    if (digit & 32) {
      shift += 5;
      continue;
    }
    out.push(value & 1 ? -(value >>> 1) : value >>> 1);
    value = 0;
    shift = 0;
  }
  return out;
}

/** Per generated line: [generated column, original line (0-based)] pairs, ordered by column. */
export function decodeMappings(mappings: string): [number, number][][] {
  const lines: [number, number][][] = [];
  let srcLine = 0;
  for (const text of mappings.split(';')) {
    const segs: [number, number][] = [];
    let genCol = 0;
    for (const seg of text.split(',')) {
      if (!seg) continue;
      const v = decodeVlq(seg);
      genCol += v[0];
      if (v.length >= 4) {
        srcLine += v[2];
        segs.push([genCol, srcLine]);
      }
    }
    lines.push(segs);
  }
  return lines;
}

/** The 1-based original line of generated (line0, column0): the last mapping at or before it. */
export function originalLine(decoded: [number, number][][], line0: number, column0: number): number | null {
  const segs = decoded[line0];
  if (!segs || segs.length === 0) return null;
  let lo = 0;
  let hi = segs.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (segs[mid][0] <= column0) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found < 0 ? null : segs[found][1] + 1;
}

export function formatProfileSummary(title: string, s: ProfileSummary, top = 15): string {
  const pct = (x: number) => `${(x * 100).toFixed(1).padStart(5)} %`;
  const ms = (x: number) => `${Math.round(x).toLocaleString('en-US').padStart(8)} ms`;
  const lines = [`${title}: ${Math.round(s.busyMs).toLocaleString('en-US')} ms busy of ${Math.round(s.totalMs).toLocaleString('en-US')} ms profiled`];
  lines.push('  top self time:');
  for (const f of s.functions.slice(0, top)) lines.push(`    ${ms(f.ms)} ${pct(f.share)}  ${f.what}`);
  lines.push('  by file:');
  for (const f of s.files.slice(0, Math.ceil(top / 2))) lines.push(`    ${ms(f.ms)} ${pct(f.share)}  ${f.what}`);
  return lines.join('\n');
}

/** A profile file of `node --cpu-prof` and the process and thread that wrote it. */
export interface ProfileFile {
  file: string;
  pid: number | null;
  /** 0: the main thread; others: worker threads (tsx's loader, a producer thread…). */
  thread: number | null;
}

/** pid and thread from node's default profile name `CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile`. Pure. */
export function parseProfileName(name: string): { pid: number | null; thread: number | null } {
  const m = /\.(\d+)\.(\d+)\.\d+\.cpuprofile$/.exec(name);
  return { pid: m ? Number(m[1]) : null, thread: m ? Number(m[2]) : null };
}

/** The profiles (`CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile`) in `dir`, of `pid` when given. */
export function profileFiles(dir: string, pid?: number): ProfileFile[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => n.endsWith('.cpuprofile'))
    .map((n) => ({ file: path.join(dir, n), ...parseProfileName(n) }))
    .filter((f) => pid === undefined || f.pid === pid)
    .sort((a, b) => (a.thread ?? 0) - (b.thread ?? 0) || a.file.localeCompare(b.file));
}

export function readProfile(file: string): CpuProfile {
  return JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
}
