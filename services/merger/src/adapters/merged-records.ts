/**
 * The merger's record of merged tasks: key `<runId>.<taskId>` (see `mergedRecordKey`) → the base sha
 * after the task landed. Backed by a NATS KV bucket in production; {@link createMemoryMergedRecords} for tests.
 */
export interface MergedRecordStore {
  /** The recorded sha, or undefined when the task was never recorded as merged. */
  get(key: string): Promise<string | undefined>;
  /** Records (or overwrites) the sha for `key`. */
  put(key: string, sha: string): Promise<void>;
}

/** An in-memory {@link MergedRecordStore}; `entries` exposes the map for assertions. */
export function createMemoryMergedRecords(): MergedRecordStore & { entries: Map<string, string> } {
  const entries = new Map<string, string>();
  return {
    entries,
    async get(key) {
      return entries.get(key);
    },
    async put(key, sha) {
      entries.set(key, sha);
    },
  };
}
