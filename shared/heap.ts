/**
 * How far V8 lets the heap grow past what the last full collection kept. By default V8 grows
 * the old generation to up to ~4× the live set before collecting it again. The sink's live set
 * is small (one Kafka fetch, one batch per partition: ~45 MB) but it allocates fast, so its
 * resident size swung between 290 and 445 MB with the live set unchanged;
 * `--heap-growing-percent=100` (factor 2) held it at ~215 MB for a few % more CPU (38 instead
 * of 16 full collections on a 1.4M-record backlog, 1.2 s instead of 0.5 s). The source's live
 * set is its in-flight window, larger: there the same factor cost 25-40 % more CPU, so it keeps
 * V8's default. NODE_OPTIONS does not accept this V8 flag, so the connector sets it at start
 * (configuration key `heapGrowingPercent`; 0 leaves V8's own heuristics). See
 * docs/configuration.md, "Memory".
 */
import { setFlagsFromString } from 'node:v8';

/** The V8 flags for a `heapGrowingPercent` setting. Pure. */
export function heapFlags(heapGrowingPercent: number): string[] {
  return heapGrowingPercent > 0 ? [`--heap-growing-percent=${heapGrowingPercent}`] : [];
}

/** From this many selected tables, a source without a setting holds its heap to twice its live data. */
export const MANY_TABLES = 500;

/**
 * Pure: the source's factor. Configured, as configured. Otherwise V8's own (0): over a few tables
 * the live set is the in-flight window, and 100 cost the benchmark's source 25-40 % more CPU;
 * over many (a schema per tenant), the first start's registrations and snapshots allocate fast
 * around a small live set, and V8's own growth took a source of 2,000 tables to 299-321 MB of
 * RSS where 100 held it at 214-226 MB for no more CPU.
 */
export function sourceHeapGrowingPercent(configured: number | undefined, tables: number): number {
  return configured ?? (tables >= MANY_TABLES ? 100 : 0);
}

/** Applies the setting to this process: V8 reads the factor at every full collection. */
export function tuneHeap(heapGrowingPercent: number): void {
  for (const flag of heapFlags(heapGrowingPercent)) setFlagsFromString(flag);
}
