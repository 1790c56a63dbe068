// Module customization hooks (node:module register) for a worker of `tsgi serve --workers`: the
// app's entry module is read from the snapshot its generation took at reload, not from disk, so
// a worker respawned after a failed reload runs the code that serves, not the broken file.
interface SnapshotData {
  /** The entry module's file: URL (no query). */
  url: string;
  source: string;
}

let snapshot: SnapshotData | null = null;

export function initialize(data: SnapshotData): void {
  snapshot = data;
}

type NextLoad = (url: string, context: object) => Promise<{ format?: string | null; source?: unknown }>;

export async function load(url: string, context: object, nextLoad: NextLoad): Promise<object> {
  const loaded = await nextLoad(url, context);
  if (snapshot === null || url.split('?')[0] !== snapshot.url) return loaded;
  return { format: loaded.format, source: snapshot.source, shortCircuit: true };
}
