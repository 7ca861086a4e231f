import {
  AttemptRecord,
  attemptKey,
  attemptKeys,
  Buckets,
  ObjectStores,
  type TranscriptRef,
} from "@longshot/contracts";
import type { Bus } from "./bus.ts";

/**
 * The attempt history on NATS (see `AttemptRecord` in libs/contracts): records in the KV bucket
 * `longshot-attempts`, compact transcripts in the object store `longshot-transcripts`, both under
 * `<runId>.<taskId>.<attempt>`. The dispatcher writes; the monitor, the CLI and any reader with the grants read.
 */

/**
 * Stores one finished attempt: its transcript first (when `transcript.text` is not empty), then the record naming
 * it, so a record that is there always finds its transcript. Writing the same attempt again replaces both (a
 * redelivered task's rerun). Returns the record as stored (`transcript` set when it was stored).
 * @throws what NATS answers when the record cannot be stored (a transcript that cannot is left out, and
 *   `onTranscriptError` hears why).
 */
export async function writeAttempt(
  bus: Bus,
  record: Omit<AttemptRecord, "transcript">,
  transcript: { text: string; lines: number; omittedLines: number },
  onTranscriptError: (err: unknown) => void = () => {},
): Promise<AttemptRecord> {
  const key = attemptKey(record.runId, record.taskId, record.attempt);
  let ref: TranscriptRef | undefined;
  if (transcript.text.length > 0) {
    try {
      const store = await bus.objectStore(ObjectStores.transcripts);
      const data = new TextEncoder().encode(transcript.text);
      await store.putBlob({ name: key, description: `worker transcript of ${key}` }, data);
      ref = {
        object: key,
        lines: transcript.lines,
        omittedLines: transcript.omittedLines,
        bytes: data.length,
      };
    } catch (err) {
      onTranscriptError(err);
    }
  }
  const stored = AttemptRecord.parse({ ...record, ...(ref ? { transcript: ref } : {}) });
  await (await bus.kv(Buckets.attempts)).put(key, JSON.stringify(stored));
  return stored;
}

/**
 * Every stored attempt of `runId` (of one task when `taskId` is given), by task in order of first start, then by
 * attempt. Entries that do not parse as an `AttemptRecord` are skipped.
 */
export async function readAttempts(bus: Bus, runId: string, taskId?: string): Promise<AttemptRecord[]> {
  const kv = await bus.kv(Buckets.attempts);
  const keys: string[] = [];
  for await (const k of await kv.keys(attemptKeys(runId, taskId))) keys.push(k);
  const records: AttemptRecord[] = [];
  for (const k of keys) {
    const e = await kv.get(k);
    if (e?.operation !== "PUT") continue;
    const r = AttemptRecord.safeParse(e.json());
    if (r.success) records.push(r.data);
  }
  const firstStart = new Map<string, string>();
  for (const r of records) {
    const t = firstStart.get(r.taskId);
    if (t === undefined || r.startedAt < t) firstStart.set(r.taskId, r.startedAt);
  }
  return records.sort(
    (a, b) =>
      firstStart.get(a.taskId)!.localeCompare(firstStart.get(b.taskId)!) ||
      a.taskId.localeCompare(b.taskId) ||
      a.attempt - b.attempt,
  );
}

/**
 * The stored record of one attempt, or undefined when there is none (not run yet, aged out) or it does not parse.
 * @throws what NATS answers when the bucket cannot be read.
 */
export async function readAttempt(
  bus: Bus,
  runId: string,
  taskId: string,
  attempt: number,
): Promise<AttemptRecord | undefined> {
  const e = await (await bus.kv(Buckets.attempts)).get(attemptKey(runId, taskId, attempt));
  if (e?.operation !== "PUT") return undefined;
  const r = AttemptRecord.safeParse(e.json());
  return r.success ? r.data : undefined;
}

/** The text of a stored transcript, or undefined when it is gone (aged out) or was never stored. */
export async function readTranscript(bus: Bus, ref: TranscriptRef): Promise<string | undefined> {
  const store = await bus.objectStore(ObjectStores.transcripts);
  const data = await store.getBlob(ref.object);
  return data === null ? undefined : new TextDecoder().decode(data);
}
