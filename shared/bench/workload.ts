/**
 * The benchmark's workload as SQL text, pure: the `orders` table of ../shared/README.md, its
 * seed rows, the backlog (inserts, updates and deletes interleaved in transactions of
 * BACKLOG_TXN_ROWS rows) and the latency load's transactions.
 *
 * Backlog updates touch ids 10k+1 and deletes ids 50k+5 of the seeded rows (disjoint sets);
 * the latency load updates ids 10k+3 (cycling) and deletes rows it inserted itself, never a
 * row whose arrival it is timing.
 */

export const TABLE = { schema: 'public', name: 'orders' } as const;
export const COLUMNS = ['id', 'customer_id', 'amount', 'status', 'created_at', 'payload'] as const;

export const ORDERS_DDL =
  'CREATE TABLE public.orders (id bigserial PRIMARY KEY, customer_id int, amount numeric(12,2), status text, created_at timestamptz, payload jsonb)';

/** Rows per backlog transaction. */
export const BACKLOG_TXN_ROWS = 100;

/** Column values of generated row number `g` (a SQL expression over `g`), in insert-column order. */
function rowValues(createdAt: string): string {
  return [
    '1 + (g % 50000)',
    'round(((g * 37) % 100000) / 100.0, 2)',
    "(ARRAY['new','paid','shipped','delivered','cancelled'])[1 + (g % 5)::int]",
    createdAt,
    "jsonb_build_object('sku', 'SKU-' || (g % 1000), 'qty', 1 + g % 9, 'note', 'order ' || g)",
  ].join(', ');
}

/** Insert rows numbered from..to (inclusive); `RETURNING id` when asked. */
export function insertSql(from: number, to: number, opts: { clockTimestamp?: boolean; returning?: boolean } = {}): string {
  const createdAt = opts.clockTimestamp ? 'clock_timestamp()' : "timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'";
  return (
    `INSERT INTO public.orders (customer_id, amount, status, created_at, payload) SELECT ${rowValues(createdAt)} ` +
    `FROM generate_series(${int(from)}::bigint, ${int(to)}::bigint) AS g${opts.returning ? ' RETURNING id' : ''}`
  );
}

export function updateSql(ids: readonly number[]): string {
  return `UPDATE public.orders SET status = 'updated', amount = amount + 1, payload = payload || '{"rev": 2}' WHERE id = ANY('${idArray(ids)}'::bigint[])`;
}

export function deleteSql(ids: readonly number[]): string {
  return `DELETE FROM public.orders WHERE id = ANY('${idArray(ids)}'::bigint[])`;
}

/** One transaction as a single simple-protocol query string (one round trip). */
export function transactionSql(statements: readonly string[]): string {
  return ['BEGIN', ...statements, 'COMMIT'].join(';\n') + ';';
}

export type BacklogStep =
  | { kind: 'insert'; from: number; to: number }
  | { kind: 'update'; ids: number[] }
  | { kind: 'delete'; ids: number[] };

/**
 * The backlog's transactions: `inserts` new rows (numbered after `rows`), `updates` and
 * `deletes` of seeded rows, each kind cut into transactions of `txnRows` and the kinds
 * interleaved evenly. The last transaction is always an insert: native logical replication
 * applies in commit order, so its last row being visible means the whole backlog is.
 */
export function backlogPlan(w: { rows: number; inserts: number; updates: number; deletes: number }, txnRows = BACKLOG_TXN_ROWS): BacklogStep[] {
  if (w.updates > 0 && 10 * (w.updates - 1) + 1 > w.rows) throw new RangeError('more updates than seeded rows allow (ids 10k+1)');
  if (w.deletes > 0 && 50 * (w.deletes - 1) + 5 > w.rows) throw new RangeError('more deletes than seeded rows allow (ids 50k+5)');
  const inserts: BacklogStep[] = [];
  for (let g = w.rows + 1; g <= w.rows + w.inserts; g += txnRows) inserts.push({ kind: 'insert', from: g, to: Math.min(g + txnRows - 1, w.rows + w.inserts) });
  const idSteps = (kind: 'update' | 'delete', count: number, id: (k: number) => number): BacklogStep[] => {
    const out: BacklogStep[] = [];
    for (let k = 0; k < count; k += txnRows) {
      const ids: number[] = [];
      for (let j = k; j < Math.min(k + txnRows, count); j++) ids.push(id(j));
      out.push({ kind, ids });
    }
    return out;
  };
  const updates = idSteps('update', w.updates, (k) => 10 * k + 1);
  const deletes = idSteps('delete', w.deletes, (k) => 50 * k + 5);
  // Even interleaving: the i-th of n steps of a kind sits at (i + 0.5) / n.
  const placed = [inserts, updates, deletes].flatMap((steps) => steps.map((s, i) => ({ s, at: (i + 0.5) / steps.length })));
  placed.sort((a, b) => a.at - b.at);
  const plan = placed.map((p) => p.s);
  const lastInsert = plan.map((s) => s.kind).lastIndexOf('insert');
  if (lastInsert >= 0 && lastInsert !== plan.length - 1) plan.push(...plan.splice(lastInsert, 1));
  return plan;
}

export function stepSql(step: BacklogStep): string {
  switch (step.kind) {
    case 'insert':
      return transactionSql([insertSql(step.from, step.to)]);
    case 'update':
      return transactionSql([updateSql(step.ids)]);
    case 'delete':
      return transactionSql([deleteSql(step.ids)]);
  }
}

export function stepRows(step: BacklogStep): number {
  return step.kind === 'insert' ? step.to - step.from + 1 : step.ids.length;
}

/** Row changes of `n` split for the latency load: 70 % inserts (at least 1), 25 % updates, the rest deletes. */
export function loadMix(n: number): { inserts: number; updates: number; deletes: number } {
  const inserts = Math.max(1, Math.round(n * 0.7));
  const updates = Math.max(0, Math.min(n - inserts, Math.round(n * 0.25)));
  return { inserts, updates, deletes: Math.max(0, n - inserts - updates) };
}

function int(n: number): string {
  if (!Number.isSafeInteger(n)) throw new RangeError(`not an integer: ${n}`);
  return String(n);
}

function idArray(ids: readonly number[]): string {
  return `{${ids.map(int).join(',')}}`;
}
