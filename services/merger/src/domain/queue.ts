import type { Handoff } from "@longshot/contracts";
import { mergedRecordKey, repoKey } from "./keys.ts";

/**
 * One handoff waiting in (or taken from) the merge queue. `key` is its merged-record key
 * (`<runId>.<taskId>`), `repo` its serialization key, `priority` the task's (1 = most urgent), `seq` the
 * enqueue order. `payload` is whatever the caller attaches (e.g. the JetStream message to ack).
 */
export interface QueueEntry<T> {
  key: string;
  repo: string;
  priority: number;
  seq: number;
  handoff: Handoff;
  payload: T;
}

/**
 * The merge queue state (immutable; every operation returns a new state). `pending` entries wait;
 * `inFlight` lists, per repository, the key being merged right now (at most one per repository).
 */
export interface MergeQueue<T> {
  readonly pending: readonly QueueEntry<T>[];
  readonly inFlight: readonly { readonly repo: string; readonly key: string }[];
  readonly nextSeq: number;
}

/**
 * Result of {@link enqueue}. `queued`: a new entry. `replaced`: the task was already pending; its payload
 * was replaced by the new one (a redelivery: ack the newest message), keeping its place in line.
 * `in-flight`: the task is being merged right now; the queue is unchanged.
 */
export type EnqueueStatus = "queued" | "replaced" | "in-flight";

/** An empty queue. */
export function emptyQueue<T>(): MergeQueue<T> {
  return { pending: [], inFlight: [], nextSeq: 1 };
}

/** Orders entries by priority (1 first), then FIFO by `seq`. */
export function compareEntries<T>(a: QueueEntry<T>, b: QueueEntry<T>): number {
  return a.priority - b.priority || a.seq - b.seq;
}

/** Adds a handoff to the queue (deduplicated by task; see {@link EnqueueStatus}). */
export function enqueue<T>(
  queue: MergeQueue<T>,
  handoff: Handoff,
  payload: T,
): { queue: MergeQueue<T>; status: EnqueueStatus } {
  const key = mergedRecordKey(handoff);
  if (queue.inFlight.some((f) => f.key === key)) return { queue, status: "in-flight" };
  const index = queue.pending.findIndex((e) => e.key === key);
  if (index >= 0) {
    const pending = queue.pending.map((e, i) => (i === index ? { ...e, handoff, payload } : e));
    return { queue: { ...queue, pending }, status: "replaced" };
  }
  const entry: QueueEntry<T> = {
    key,
    repo: repoKey(handoff.task.repo),
    priority: handoff.task.priority,
    seq: queue.nextSeq,
    handoff,
    payload,
  };
  return {
    queue: { ...queue, pending: [...queue.pending, entry], nextSeq: queue.nextSeq + 1 },
    status: "queued",
  };
}

/** True while a merge into `repo` is in flight. */
export function isBusy<T>(queue: MergeQueue<T>, repo: string): boolean {
  const key = repoKey(repo);
  return queue.inFlight.some((f) => f.repo === key);
}

/**
 * The entry that should be merged next: the lowest (priority, seq) among pending entries whose
 * repository has no merge in flight. Undefined when nothing is ready.
 */
export function peekNext<T>(queue: MergeQueue<T>): QueueEntry<T> | undefined {
  let best: QueueEntry<T> | undefined;
  for (const entry of queue.pending) {
    if (isBusy(queue, entry.repo)) continue;
    if (!best || compareEntries(entry, best) < 0) best = entry;
  }
  return best;
}

/**
 * Takes the next ready entry ({@link peekNext}) out of `pending` and marks its repository busy.
 * Undefined when nothing is ready. Call {@link finish} with the entry's key when its merge ends.
 */
export function startNext<T>(
  queue: MergeQueue<T>,
): { queue: MergeQueue<T>; entry: QueueEntry<T> } | undefined {
  const entry = peekNext(queue);
  if (!entry) return undefined;
  return {
    entry,
    queue: {
      ...queue,
      pending: queue.pending.filter((e) => e !== entry),
      inFlight: [...queue.inFlight, { repo: entry.repo, key: entry.key }],
    },
  };
}

/**
 * Every entry that can start now, one per idle repository, best first; the returned queue has them all
 * in flight. Use it to merge different repositories in parallel while each stays serial.
 */
export function startAllReady<T>(queue: MergeQueue<T>): { queue: MergeQueue<T>; entries: QueueEntry<T>[] } {
  const entries: QueueEntry<T>[] = [];
  let current = queue;
  for (let step = startNext(current); step; step = startNext(current)) {
    entries.push(step.entry);
    current = step.queue;
  }
  return { queue: current, entries };
}

/** Marks the in-flight merge of `key` as ended, freeing its repository. Unknown keys are ignored. */
export function finish<T>(queue: MergeQueue<T>, key: string): MergeQueue<T> {
  return { ...queue, inFlight: queue.inFlight.filter((f) => f.key !== key) };
}

/**
 * Puts an in-flight entry back in line (e.g. its merge hit a transient error and will be retried),
 * keeping its original seq, and frees its repository.
 */
export function requeue<T>(queue: MergeQueue<T>, entry: QueueEntry<T>): MergeQueue<T> {
  const freed = finish(queue, entry.key);
  if (freed.pending.some((e) => e.key === entry.key)) return freed;
  return { ...freed, pending: [...freed.pending, entry] };
}

/** Number of pending entries, for one repository or in total. */
export function pendingCount<T>(queue: MergeQueue<T>, repo?: string): number {
  if (repo === undefined) return queue.pending.length;
  const key = repoKey(repo);
  return queue.pending.filter((e) => e.repo === key).length;
}
