// With --processes N each front process has its own pool: what they report about their backends
// (tsgi ctl list, /status) is merged into one row per backend for the primary's answers.

/**
 * One row per backend (by `key`): the `counts` fields summed over the processes, and the
 * states joined when the processes disagree ('up/connecting').
 */
export function mergeBackendRows<T extends { state: string }>(lists: readonly (readonly T[])[], key: keyof T,
  counts: readonly (keyof T)[]): T[] {
  const rows = new Map<unknown, { row: T; states: Set<string> }>();
  for (const list of lists) {
    for (const item of list) {
      const seen = rows.get(item[key]);
      if (seen === undefined) {
        rows.set(item[key], { row: { ...item }, states: new Set([item.state]) });
        continue;
      }
      seen.states.add(item.state);
      for (const field of counts) (seen.row[field] as number) += item[field] as number;
    }
  }
  return [...rows.values()].map(({ row, states }) => ({ ...row, state: [...states].join('/') }));
}
