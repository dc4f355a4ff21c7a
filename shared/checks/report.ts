/** Pure: findings as a readable report and as a summary (shared by the migration commands). */
import { formatFindings, type Finding } from '../../source-connector/checks.ts';

export interface FindingSection {
  title: string;
  findings: Finding[];
}

export interface FindingSummary {
  pass: number;
  warn: number;
  fail: number;
  ok: boolean;
}

export function summarize(findings: Finding[]): FindingSummary {
  const count = (l: Finding['level']) => findings.filter((f) => f.level === l).length;
  const fail = count('FAIL');
  return { pass: count('PASS'), warn: count('WARN'), fail, ok: fail === 0 };
}

/** Findings of one check past this many are folded into one line (`--all` lists them). */
export const FOLD_OVER = 20;

/**
 * A line per table is thousands over a database with a schema per tenant: per check, PASS
 * findings past FOLD_OVER become one line counting them, and so do WARN and FAIL findings that
 * say the same thing (message and remedy) of different objects, naming the first few.
 */
export function foldFindings(findings: Finding[]): Finding[] {
  const groups = new Map<string, Finding[]>();
  for (const f of findings) {
    const key = f.level === 'PASS' ? `PASS\0${f.check}` : `${f.level}\0${f.check}\0${f.message}\0${f.remedy ?? ''}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = []));
    g.push(f);
  }
  const out: Finding[] = [];
  const emitted = new Set<string>();
  for (const f of findings) {
    const key = f.level === 'PASS' ? `PASS\0${f.check}` : `${f.level}\0${f.check}\0${f.message}\0${f.remedy ?? ''}`;
    const g = groups.get(key)!;
    if (g.length <= FOLD_OVER) out.push(f);
    else if (!emitted.has(key)) {
      emitted.add(key);
      const named = `${g.slice(0, 3).map((x) => x.object).join(', ')}, …`;
      out.push(
        f.level === 'PASS'
          ? { level: 'PASS', check: f.check, object: `${g.length} objects`, message: `all pass (each with --all or --json; the first: ${f.object}: ${f.message})` }
          : { ...f, object: `${g.length} objects`, message: `${f.message} (${named}; each with --all or --json)` },
      );
    }
  }
  return out;
}

export function renderReport(sections: FindingSection[], opts: { all?: boolean } = {}): string {
  const all = sections.flatMap((s) => s.findings);
  const sum = summarize(all);
  const shown = (f: Finding[]) => (opts.all ? f : foldFindings(f));
  const body = sections.map((s) => `${s.title}\n${s.findings.length ? formatFindings(shown(s.findings)) : '      (nothing checked)'}`).join('\n\n');
  const verdict = sum.ok ? (sum.warn ? 'ready, with warnings' : 'ready') : 'NOT ready: fix every FAIL first';
  return `${body}\n\n${sum.pass} PASS, ${sum.warn} WARN, ${sum.fail} FAIL: ${verdict}\n`;
}
