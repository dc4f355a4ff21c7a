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

export function renderReport(sections: FindingSection[]): string {
  const all = sections.flatMap((s) => s.findings);
  const sum = summarize(all);
  const body = sections.map((s) => `${s.title}\n${s.findings.length ? formatFindings(s.findings) : '      (nothing checked)'}`).join('\n\n');
  const verdict = sum.ok ? (sum.warn ? 'ready, with warnings' : 'ready') : 'NOT ready: fix every FAIL first';
  return `${body}\n\n${sum.pass} PASS, ${sum.warn} WARN, ${sum.fail} FAIL: ${verdict}\n`;
}
