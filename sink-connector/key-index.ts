/**
 * The fast-row plan's index of repeated keys (fast-rows.ts): the first record of each
 * (table, key) in a chunk. Numeric keys (the common case) live in an open-addressing table of
 * typed arrays kept across chunks, so a chunk of 10,000 records costs no Map growth
 * (measured: 8 % of the sink's allocations); other keys in a Map. A slot is empty unless its
 * stamp is the current chunk's. One per planner.
 */
export class FirstIndex {
  private keys = new Float64Array(1 << 14);
  private tables = new Int32Array(1 << 14);
  private firsts = new Int32Array(1 << 14);
  private stamps = new Uint32Array(1 << 14);
  private stamp = 0;
  private used = 0;
  /** Other keys, per table number. */
  private readonly others: Map<string, number>[] = [];

  /** Forgets every key; sized for `n` more. */
  reset(n: number): void {
    for (const m of this.others) m.clear();
    this.used = 0;
    if (++this.stamp === 0xffffffff || this.keys.length < n * 2) this.grow(Math.max(this.keys.length, 2 ** Math.ceil(Math.log2(n * 2))), true);
  }

  /** The first index recorded for (table, key), or records `index` and returns -1. */
  firstOr(table: number, key: number | string, index: number): number {
    if (typeof key === 'string') {
      const m = (this.others[table] ??= new Map());
      const first = m.get(key);
      if (first !== undefined) return first;
      m.set(key, index);
      return -1;
    }
    if (this.used * 2 >= this.keys.length) this.grow(this.keys.length * 2, false);
    const mask = this.keys.length - 1;
    // Keys are byte strings read little-endian: mix the high bits in so that the slot
    // depends on every byte, not only on the low ones.
    const h = (Math.imul((key % 0x100000000) ^ (key / 0x100000000), 0x9e3779b1) ^ Math.imul(table + 1, 0x85ebca6b)) >>> 0;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      if (this.stamps[i] !== this.stamp) {
        this.stamps[i] = this.stamp;
        this.keys[i] = key;
        this.tables[i] = table;
        this.firsts[i] = index;
        this.used++;
        return -1;
      }
      if (this.keys[i] === key && this.tables[i] === table) return this.firsts[i];
    }
  }

  private grow(size: number, empty: boolean): void {
    const { keys, tables, firsts, stamps, stamp } = this;
    this.keys = new Float64Array(size);
    this.tables = new Int32Array(size);
    this.firsts = new Int32Array(size);
    this.stamps = new Uint32Array(size);
    this.stamp = 1;
    this.used = 0;
    if (empty) return;
    for (let i = 0; i < keys.length; i++) if (stamps[i] === stamp) this.firstOr(tables[i], keys[i], firsts[i]);
  }
}
