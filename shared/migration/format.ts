/** Pure text helpers shared by `status`, `cutover` and `cleanup`: aligned tables, bytes, durations. */

/** Left-aligned columns separated by two spaces; numbers (and cells that look like them) right-aligned. */
export function renderTable(headers: string[], rows: (string | number | null | undefined)[][], indent = '  '): string {
  const cells = rows.map((r) => headers.map((_, i) => cellText(r[i])));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i].length)));
  const numeric = headers.map((_, i) => cells.some((r) => r[i] !== '-' && r[i] !== '') && cells.every((r) => r[i] === '-' || r[i] === '' || /^-?[\d,.]+( [a-zA-Z/]+)?$/.test(r[i])));
  const line = (r: string[]) =>
    indent +
    r
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]) : i === r.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(headers), ...cells.map(line)].join('\n');
}

function cellText(v: string | number | null | undefined): string {
  if (v === null || v === undefined) return '-';
  return typeof v === 'number' ? formatCount(v) : v;
}

export const formatCount = (n: number): string => n.toLocaleString('en-US');

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '-';
  const abs = Math.abs(n);
  if (abs < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(Math.abs(v) < 10 ? 1 : 0)} ${units[u]}`;
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '-';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  const h = Math.floor(s / 3600);
  return `${h} h ${Math.floor((s % 3600) / 60)} min`;
}

/** The first line of a multi-line text. */
export const firstLine = (s: string): string => s.split('\n')[0];
