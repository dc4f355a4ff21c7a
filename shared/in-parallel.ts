/** Bounded concurrency for start-up work over many tables (registry requests, schema fetches). */

/** `fn` over `items` with at most `n` running at once; results in the items' order; the first failure rejects. */
export async function inParallel<T, R>(items: readonly T[], n: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]);
      } catch (err) {
        next = items.length; // the others take nothing more
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

/** inParallel that runs every item and reports each outcome, as Promise.allSettled does. */
export function settledInParallel<T, R>(items: readonly T[], n: number, fn: (item: T) => Promise<R>): Promise<PromiseSettledResult<R>[]> {
  return inParallel(items, n, (item) =>
    fn(item).then(
      (value): PromiseSettledResult<R> => ({ status: 'fulfilled', value }),
      (reason: unknown): PromiseSettledResult<R> => ({ status: 'rejected', reason }),
    ),
  );
}
