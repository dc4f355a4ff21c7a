/**
 * Citus's own sessions among the holders of a lock a batch waits for (lock-watch.ts). A shard
 * move or split with shard_transfer_mode 'block_writes' (also the rebalancer's, and the default
 * logical mode at its end) and create_distributed_table / alter_distributed_table /
 * undistribute_table hold the table's writes while they copy it: on a real Citus 13.2 cluster
 * the watchdog named the move's backend as 'no application_name' and the rebalancer's task
 * executor (a background worker: no application_name, no state, no query) likewise, each with
 * "end that session if stuck: SELECT pg_terminate_backend(…)". Ending them aborts the
 * operator's operation; they end by themselves. Pure.
 */

/** What pg_stat_activity shows of a holder, enough to tell Citus's own. */
export interface HolderActivity {
  applicationName: string;
  /** pg_stat_activity.backend_type: a background worker's bgw_type. */
  backendType?: string;
  query: string;
}

/** Citus's user-facing operations that copy or move a table's rows while holding its writes. */
const OPERATION = /\b(citus_move_shard_placement|master_move_shard_placement|citus_copy_shard_placement|citus_split_shard_by_split_points|isolate_tenant_to_new_shard|rebalance_table_shards|citus_rebalance_start|citus_drain_node|create_distributed_table_concurrently|create_distributed_table|create_reference_table|alter_distributed_table|alter_table_set_access_method|undistribute_table|citus_add_local_table_to_metadata)\s*\(/i;

/**
 * A name for a holder that is Citus at work ("Citus's rebalancer (a background task of
 * citus_rebalance_start)", "a Citus citus_move_shard_placement"), or null for anyone else.
 */
export function citusOperation(h: HolderActivity): string | null {
  const type = h.backendType ?? '';
  if (/^Citus Background Task Queue/i.test(type)) return "Citus's rebalancer (a background task of citus_rebalance_start or citus_drain_node's job: citus_rebalance_status() shows it)";
  if (/^Citus/i.test(type)) return `Citus's ${type}`;
  if (/^citus_rebalancer\b/i.test(h.applicationName)) return "Citus's rebalancer";
  const op = OPERATION.exec(h.query)?.[1];
  if (op) return `a Citus ${op.toLowerCase()}`;
  if (/^citus_internal\b/i.test(h.applicationName)) return 'a Citus internal session';
  return null;
}

/** What to do about a Citus operation holding the lock: let it finish. */
export const CITUS_OPERATION_NOTE =
  "a Citus operation holds the table's writes while it copies the rows (shard_transfer_mode 'block_writes' for the whole copy, the default logical mode only at its end): the batches go on once it is done; do not end it (SELECT citus_rebalance_stop() stops a background rebalance between its moves)";
