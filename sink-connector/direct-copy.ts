/**
 * When to COPY fresh rows straight into the destination table instead of through staging.
 *
 * Rows whose key first appears in a batch as an insert (`c`, or a snapshot read `r`) are
 * normally absent at the destination, and a plain COPY into the table costs PostgreSQL
 * about a third of COPY into staging + `INSERT … SELECT … ON CONFLICT` + clearing staging
 * (measured on 100k orders rows). When one is present after all (a replay, a snapshot
 * redone over rows already applied) the COPY fails on the primary key, the batch is rolled
 * back and applied again through the upsert path: same rows, only slower. This policy keeps
 * that waste small: after a conflict a table skips its next direct attempts, twice as many
 * after each further conflict, and a success forgives. Pure; keyed by destination table.
 */
export interface DirectCopyPolicyOptions {
  /** Eligible batches skipped after the first conflict, doubled per further conflict. */
  initialSkip?: number;
  maxSkip?: number;
}

interface TableState {
  /** Eligible batches still to skip. */
  skipping: number;
  /** Skip length after the next conflict. */
  nextSkip: number;
}

export class DirectCopyPolicy {
  private readonly tables = new Map<string, TableState>();
  private readonly initialSkip: number;
  private readonly maxSkip: number;

  constructor(opts: DirectCopyPolicyOptions = {}) {
    this.initialSkip = opts.initialSkip ?? 1;
    this.maxSkip = opts.maxSkip ?? 256;
  }

  /** Whether this eligible batch of `table` should try a direct COPY (counts a skip when not). */
  shouldTry(table: string): boolean {
    const st = this.tables.get(table);
    if (!st || st.skipping === 0) return true;
    st.skipping--;
    return false;
  }

  /** The direct COPY met a row already there; returns how many eligible batches are skipped now. */
  conflicted(table: string): number {
    let st = this.tables.get(table);
    if (!st) this.tables.set(table, (st = { skipping: 0, nextSkip: this.initialSkip }));
    st.skipping = st.nextSkip;
    st.nextSkip = Math.min(this.maxSkip, st.nextSkip * 2);
    return st.skipping;
  }

  succeeded(table: string): void {
    this.tables.delete(table);
  }
}
