/**
 * `replay --to-time`: the time to rewind to, parsed strictly (pure). JavaScript's own Date parser
 * takes almost anything: 'Dec 7' is 2001-12-07, 'foo 1' 2001-01-01, '2026-02-30' 2026-03-02,
 * '12/07/2026' July, and a time without a zone is the local zone of the machine it runs on
 * (a date alone UTC). A replay from a later time than meant skips changes, and the destination
 * does not converge: so only an ISO-8601 date-time with its zone, or epoch milliseconds.
 */

const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?(Z|z|[+-]\d{2}(?::?\d{2})?)?$/;

export const REPLAY_TIME_FORMAT = 'an ISO-8601 time with its zone (2026-12-07T10:00:00Z, 2026-12-07T10:00:00+02:00) or epoch milliseconds';

/** The instant `v` names, or a message saying what is wrong with it (without the flag's name: the caller adds it). */
export function parseReplayTime(v: string): Date | string {
  const s = v.trim();
  if (/^\d+$/.test(s)) {
    const ms = Number(s);
    return Number.isSafeInteger(ms) && ms <= 8.64e15 ? new Date(ms) : `epoch milliseconds out of range; expected ${REPLAY_TIME_FORMAT}`;
  }
  const m = ISO.exec(s);
  if (!m) return `expected ${REPLAY_TIME_FORMAT}`;
  const [, y, mo, d, h, mi, sec, frac, zone] = m;
  if (h === undefined) return `a date without a time of day; expected ${REPLAY_TIME_FORMAT}`;
  if (zone === undefined) {
    return `no time zone (this machine's would be a guess): add it, e.g. ${s.replace(' ', 'T')}Z (UTC) or ${s.replace(' ', 'T')}+02:00`;
  }
  const [year, month, day, hour, minute, second] = [y, mo, d, h, mi, sec ?? '0'].map(Number);
  // Date.UTC rolls over (Feb 30 → Mar 2): a field out of range is refused instead.
  const days = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (month < 1 || month > 12 || day < 1 || day > days || hour > 23 || minute > 59 || second > 59) return `no such date or time; expected ${REPLAY_TIME_FORMAT}`;
  let offsetMin = 0;
  if (zone !== 'Z' && zone !== 'z') {
    const digits = zone.slice(1).replace(':', '');
    const zh = Number(digits.slice(0, 2));
    const zm = Number(digits.slice(2) || '0');
    if (zh > 23 || zm > 59) return `no such time zone offset ${zone}; expected ${REPLAY_TIME_FORMAT}`;
    offsetMin = (zone[0] === '-' ? -1 : 1) * (zh * 60 + zm);
  }
  const ms = Number((frac ?? '').padEnd(3, '0').slice(0, 3));
  return new Date(Date.UTC(year, month - 1, day, hour, minute, second, ms) - offsetMin * 60_000);
}
