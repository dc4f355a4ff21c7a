/**
 * The lock watchdog: a batch whose destination transaction waits for a lock someone else holds
 * (a DBA's `LOCK TABLE`, a non-concurrent `CREATE INDEX`, an `ALTER TABLE`, a long transaction
 * holding rows) waits as long as the lock is held, and with a table of as many partitions as the
 * sink has apply lanes, every lane waits and the other tables wait with them. Batches are not
 * changed for it (they go on once the lock is released); this only says who blocks them.
 *
 * Per batch: a map entry set and deleted around its transaction. A timer looks every few
 * hundred ms for batches in their transaction longer than `batch.lockWaitWarnMs`, and asks about
 * all of them in one query, from a destination connection of its own (opened at the first such
 * batch: the lanes' are busy waiting): `pg_blocking_pids` of each lane's backend. One warning
 * per blocking episode (its holders named, with the statement that would end them), again when
 * the holders change or every minute while it lasts, and an info line when it ends.
 *
 * A holder that is a sink's session (a frozen or cut-off member) is only named here: the bounded
 * waits of lock-holder.ts and the sessions' idle timeout end it.
 */
import pg from 'pg';
import type { Gauge } from 'prom-client';
import type { Logger } from '../shared/logger.ts';
import type { Chunk } from './apply.ts';
import { HOLDER_COLUMNS } from './lock-holder.ts';
import { quoteLiteral } from '../shared/sql.ts';
import { sessionPid } from '../shared/checks/pooler.ts';
import { CITUS_OPERATION_NOTE, citusOperation } from './citus-holders.ts';

/** A session blocking a lane's backend, as pg_stat_activity shows it. */
export interface BlockingSession {
  pid: number;
  applicationName: string;
  state: string;
  waitEvent: string | null;
  transactionSeconds: number;
  /** Its current (or last) statement, cut to QUERY_CHARS. */
  query: string;
  /** pg_stat_activity.backend_type (a background worker's type: Citus's rebalancer tasks). */
  backendType?: string;
  /**
   * pid 0: a prepared transaction (two-phase commit), which has no session; these are the gids
   * of the database's prepared transactions, oldest first (one of them holds the lock).
   */
  prepared?: string[];
}

/** A lane's blocking episode: since when it is known blocked, by whom, and when it was last reported. */
export interface Episode {
  since: number;
  /** The holders' pids, sorted: a change is reported. */
  holders: string;
  reportedAt: number;
}

export type EpisodeReport = 'blocked' | 'changed' | 'still' | 'cleared';

const QUERY_CHARS = 200;
/** A blocking episode that goes on is reported again this often. */
export const REPEAT_MS = 60_000;
const SINK_APPLICATION = 'shardbridge-sink';

export const holderKey = (holders: readonly { pid: number }[]): string =>
  holders
    .map((h) => h.pid)
    .sort((a, b) => a - b)
    .join(',');

/**
 * A lane's episode after a look at the destination: `holders` the key of the sessions blocking it
 * now (null: none). What is to be reported, if anything. Pure.
 */
export function nextEpisode(prev: Episode | undefined, holders: string | null, now: number, repeatMs = REPEAT_MS): { episode: Episode | undefined; report: EpisodeReport | null } {
  if (holders === null || holders === '') return { episode: undefined, report: prev ? 'cleared' : null };
  if (!prev) return { episode: { since: now, holders, reportedAt: now }, report: 'blocked' };
  if (prev.holders !== holders) return { episode: { ...prev, holders, reportedAt: now }, report: 'changed' };
  if (now - prev.reportedAt >= repeatMs) return { episode: { ...prev, reportedAt: now }, report: 'still' };
  return { episode: prev, report: null };
}

/**
 * A gid Citus gave its own two-phase commit (remote_transaction.c, PREPARED_TRANSACTION_NAME_FORMAT
 * `citus_<group>_<pid>_<transaction>_<connection>`): on a node whose shards a distributed
 * transaction wrote through a connection (a coordinator holding shards too). Pure.
 */
export const isCitusGid = (gid: string): boolean => /^citus_\d+_\d+_\d+_\d+$/.test(gid);

/**
 * Citus decides each of its prepared transactions from pg_dist_transaction on the node that began
 * it (group id: the gid's first number, 0 the coordinator), every citus.recover_2pc_interval
 * (transaction_recovery.c): one ended by hand against that decision leaves the distributed
 * transaction applied on some shards only.
 */
export const CITUS_PREPARED_REMEDY =
  "Citus's own (citus_<group>_…) are committed or rolled back by its two-phase commit recovery, every citus.recover_2pc_interval (1 min by default), or at once with SELECT recover_prepared_transactions() on the node of that group (0: the coordinator): never end those by hand";

/** One blocked batch, for a warning. */
export interface BlockedLane {
  topic: string;
  partition: number;
  /** Destination tables the batch writes. */
  tables: readonly string[];
  /** Relations its backend waits to lock (pg_locks), when the wait is on one. */
  relations: readonly string[];
  waitedMs: number;
}

/**
 * The warning for lanes blocked by the same holders, reported at one look: the message and its
 * log fields. `lanesWaiting` of `lanes` are blocked in all. Pure.
 */
export function blockedWarning(
  kind: Exclude<EpisodeReport, 'cleared'>,
  blocked: readonly BlockedLane[],
  holders: readonly BlockingSession[],
  lanes: { total: number; waiting: number },
): { msg: string; fields: Record<string, unknown> } {
  const tables = [...new Set(blocked.flatMap((b) => (b.tables.length > 0 ? b.tables : b.relations)))];
  const relations = [...new Set(blocked.flatMap((b) => b.relations))];
  const partitions = new Map<string, number[]>();
  for (const b of blocked) partitions.set(b.topic, [...(partitions.get(b.topic) ?? []), b.partition]);
  const where = [...partitions].map(([topic, ps]) => `${topic}[${ps.sort((x, y) => x - y).join(', ')}]`).join(', ');
  const secs = Math.round(Math.max(...blocked.map((b) => b.waitedMs)) / 1000);
  // Citus's own (a shard move, the rebalancer, a table distributed anew) end by themselves: not to be ended.
  const citusOps = new Map(holders.map((h) => [h.pid, h.pid === 0 ? null : citusOperation(h)]));
  const others = holders.filter((h) => h.pid !== 0 && !h.applicationName.startsWith(SINK_APPLICATION) && citusOps.get(h.pid) === null);
  const gids = holders.find((h) => h.pid === 0)?.prepared ?? [];
  // Citus's own (its two-phase commit of a distributed transaction) are apart: its recovery ends them.
  const citus = gids.filter(isCitusGid);
  const prepared = gids.filter((g) => !isCitusGid(g));
  const listed = [
    ...(prepared.length ? [`one of ${prepared.map((g) => quoteLiteral(g)).join(', ')}`] : []),
    ...(citus.length ? [`${prepared.length ? 'or ' : ''}Citus's own ${citus.map((g) => quoteLiteral(g)).join(', ')}`] : []),
  ];
  const named = holders.map((h) => {
    if (h.pid === 0) return `a prepared transaction (two-phase commit: no session holds it)${listed.length ? `, ${listed.join(', ')}` : ''}`;
    const sink = h.applicationName.startsWith(SINK_APPLICATION) ? ", a sink's session: a member frozen or cut off inside a batch is ended by the sink after batch.idleInTransactionTimeoutMs" : '';
    const query = h.query ? `: ${JSON.stringify(h.query)}` : '';
    const op = citusOps.get(h.pid);
    const who = h.applicationName || (h.backendType && h.backendType !== 'client backend' ? h.backendType : 'no application_name');
    if (op) return `pid ${h.pid}, ${op} (${who}, in a transaction for ${h.transactionSeconds} s)${query}`;
    return `pid ${h.pid} (${h.applicationName || 'no application_name'}, ${h.state || 'no state'}, in a transaction for ${h.transactionSeconds} s${sink})${query}`;
  });
  const ends = [
    ...(others.length > 0 ? [`end ${others.length === 1 ? 'that session' : 'those sessions'} if stuck: ${others.map((h) => `SELECT pg_terminate_backend(${h.pid})`).join('; ')}`] : []),
    ...(holders.some((h) => h.pid === 0) && (prepared.length > 0 || citus.length === 0)
      ? [`end a prepared transaction its transaction manager lost with COMMIT PREPARED or ROLLBACK PREPARED '<gid>' (SELECT gid, prepared, owner FROM pg_prepared_xacts lists them)`]
      : []),
    ...(citus.length > 0 ? [CITUS_PREPARED_REMEDY] : []),
    ...([...citusOps.values()].some((o) => o !== null) ? [CITUS_OPERATION_NOTE] : []),
  ];
  const remedy = ends.length > 0 ? ends.join('; ') : undefined;
  const verb = kind === 'still' ? `still wait, for ${secs} s now,` : kind === 'changed' ? `now wait (for ${secs} s in all)` : `have waited ${secs} s`;
  const on = relations.length > 0 ? ` on ${relations.join(', ')}` : '';
  const laneNote =
    lanes.waiting >= lanes.total
      ? `all ${lanes.total} apply lanes wait, so the other tables wait for a free apply lane meanwhile`
      : `${lanes.waiting} of ${lanes.total} apply lanes wait; the others go on, and every table waits once all of them do`;
  const msg =
    `batches of ${tables.join(', ') || 'the destination'} (${where}) ${verb} for a lock${on} held by ${named.join('; ')}: ` +
    `the sink goes on by itself once it is released${remedy ? `; ${remedy}` : ''}. ${laneNote}`;
  const fields: Record<string, unknown> = {
    waiting: blocked.map((b) => ({ topic: b.topic, partition: b.partition, tables: b.tables, relations: b.relations, waitedSeconds: Math.round(b.waitedMs / 1000) })),
    holders,
    lanes: lanes.total,
    lanesWaiting: lanes.waiting,
  };
  if (remedy) fields.remedy = remedy;
  return { msg, fields };
}

/** The destination tables a chunk writes (read only when it is reported). */
export function chunkTables(chunk: Pick<Chunk, 'records' | 'fast'>): string[] {
  const out = new Set<string>();
  for (const rows of [chunk.records, chunk.fast ?? []]) for (const r of rows) out.add(`${r.table.dest.schema}.${r.table.dest.name}`);
  return [...out];
}

/** Each given backend's blockers and the relations it waits to lock; no row for one not blocked. */
const BLOCKERS_SQL = `SELECT w.pid AS waiter,
  (SELECT array_agg(DISTINCT l.relation::regclass::text) FROM pg_locks l WHERE l.pid = w.pid AND NOT l.granted AND l.relation IS NOT NULL) AS relations,
  ${HOLDER_COLUMNS}, left(coalesce(a.query, ''), ${QUERY_CHARS}) AS query, coalesce(a.backend_type, '') AS backend_type, b.pid AS blocker,
  -- pg_blocking_pids gives 0 for a prepared transaction: it has no session in pg_stat_activity.
  CASE WHEN b.pid = 0 THEN (SELECT array_agg(p.gid ORDER BY p.prepared) FROM pg_prepared_xacts p WHERE p.database = current_database()) END AS prepared
FROM unnest($1::int[]) AS w(pid)
CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS b(pid)
LEFT JOIN pg_stat_activity a ON a.pid = b.pid
WHERE a.pid IS NOT NULL OR b.pid = 0
ORDER BY w.pid, b.pid`;

interface Watched {
  topic: string;
  partition: number;
  pid: number;
  since: number;
  chunk: Pick<Chunk, 'records' | 'fast'>;
  episode?: Episode;
}

export interface LockWatchOptions {
  /** Batches in their transaction this long are looked at; 0: no watchdog. */
  warnMs: number;
  /** Apply lanes (concurrency), for the message. */
  lanes: number;
  logger: Logger;
  /** Set to the batches known blocked. */
  gauge: Gauge<string>;
  /** A destination connection of the watchdog's own, not yet connected. */
  client: () => pg.Client;
  repeatMs?: number;
  /** How often it looks; default a quarter of warnMs, between 100 ms and 2 s. */
  lookEveryMs?: number;
  now?: () => number;
}

export class LockWatch {
  private readonly watched = new Map<number, Watched>();
  private readonly timer?: NodeJS.Timeout;
  private client?: pg.Client;
  private looking = false;
  private failing = false;
  private stopped = false;
  private readonly now: () => number;

  constructor(private readonly opts: LockWatchOptions) {
    this.now = opts.now ?? Date.now;
    if (opts.warnMs > 0) {
      // Reported within a quarter of the threshold after it.
      this.timer = setInterval(() => void this.look(), opts.lookEveryMs ?? Math.min(2_000, Math.max(100, opts.warnMs / 4)));
      this.timer.unref();
    }
  }

  /** Run `fn`, the batch's transaction on `client`, watched. */
  async during<T>(client: pg.ClientBase, chunk: Chunk, fn: () => Promise<T>): Promise<T> {
    // Not the pid the connection was told at connect: through a pooler that is the pooler's.
    const known = this.timer === undefined ? null : sessionPid(client);
    const pid = known instanceof Promise ? await known : known;
    if (pid === null) return fn();
    const w: Watched = { topic: chunk.topic, partition: chunk.partition, pid, since: this.now(), chunk };
    this.watched.set(pid, w);
    let ok = false;
    try {
      const out = await fn();
      ok = true;
      return out;
    } finally {
      if (this.watched.get(pid) === w) this.watched.delete(pid);
      if (w.episode) this.cleared(w, ok ? 'applies again' : 'no longer waits (its transaction failed: retried or stalled, logged apart)');
    }
  }

  /** Ask about every batch in its transaction past the threshold (or known blocked), in one query. */
  async look(): Promise<void> {
    if (this.looking || this.stopped) return;
    const now = this.now();
    const due = [...this.watched.values()].filter((w) => w.episode !== undefined || now - w.since >= this.opts.warnMs);
    if (due.length === 0) return;
    this.looking = true;
    try {
      const found = await this.blockers(due.map((w) => w.pid));
      this.failing = false;
      const reports: { w: Watched; kind: Exclude<EpisodeReport, 'cleared'>; holders: BlockingSession[]; relations: string[] }[] = [];
      const at = this.now();
      for (const w of due) {
        if (this.watched.get(w.pid) !== w) continue; // ended meanwhile: cleared there
        const seen = found.get(w.pid);
        const { episode, report } = nextEpisode(w.episode, seen ? holderKey(seen.holders) : null, at, this.opts.repeatMs);
        if (report === 'cleared') this.cleared(w, 'applies again');
        w.episode = episode;
        if (report && report !== 'cleared') reports.push({ w, kind: report, holders: seen!.holders, relations: seen!.relations });
      }
      const waiting = this.blockedCount();
      this.opts.gauge.set(waiting);
      // One line per set of holders: the lanes one lock holds are named together.
      const groups = new Map<string, typeof reports>();
      for (const r of reports) {
        const k = `${r.kind}\u0000${holderKey(r.holders)}`;
        groups.set(k, [...(groups.get(k) ?? []), r]);
      }
      for (const group of groups.values()) {
        const blocked = group.map(({ w, relations }) => ({ topic: w.topic, partition: w.partition, tables: chunkTables(w.chunk), relations, waitedMs: at - w.since }));
        const { msg, fields } = blockedWarning(group[0].kind, blocked, group[0].holders, { total: this.opts.lanes, waiting });
        this.opts.logger.warn(fields, msg);
      }
    } catch (err) {
      // Said once per run of failures: the batches themselves are not affected.
      this.opts.logger[this.failing ? 'debug' : 'warn']({ err: (err as Error).message }, 'cannot tell whether the batches in their transaction for long wait for a lock (the lock watchdog asks again)');
      this.failing = true;
      const c = this.client;
      this.client = undefined;
      await c?.end().catch(() => {});
    } finally {
      this.looking = false;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => {});
  }

  private blockedCount(): number {
    let n = 0;
    for (const w of this.watched.values()) if (w.episode) n++;
    return n;
  }

  private cleared(w: Watched, how: string): void {
    const waited = Math.round((this.now() - w.since) / 1000);
    w.episode = undefined;
    this.opts.gauge.set(this.blockedCount());
    this.opts.logger.info({ topic: w.topic, partition: w.partition, tables: chunkTables(w.chunk), waitedSeconds: waited }, `${w.topic}[${w.partition}] ${how} after waiting ${waited} s for a lock`);
  }

  private async blockers(pids: number[]): Promise<Map<number, { holders: BlockingSession[]; relations: string[] }>> {
    if (!this.client) {
      const c = this.opts.client();
      c.on('error', () => {}); // a broken connection fails the next query, which drops it
      await c.connect().catch(async (err: unknown) => {
        await c.end().catch(() => {});
        throw err;
      });
      if (this.stopped) {
        await c.end().catch(() => {});
        return new Map();
      }
      this.client = c;
    }
    const { rows } = await this.client.query(BLOCKERS_SQL, [pids]);
    const out = new Map<number, { holders: BlockingSession[]; relations: string[] }>();
    for (const r of rows) {
      let e = out.get(r.waiter);
      if (!e) out.set(r.waiter, (e = { holders: [], relations: r.relations ?? [] }));
      e.holders.push({ pid: r.blocker, applicationName: r.app, state: r.state, waitEvent: r.wait_event, transactionSeconds: Math.round(r.secs), query: r.query, backendType: r.backend_type, ...(r.blocker === 0 ? { prepared: r.prepared ?? [] } : {}) });
    }
    return out;
  }
}
