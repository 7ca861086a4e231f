import { z } from "zod";
import { RunId, TaskId } from "./ids.ts";
import { Handoff } from "./task.ts";

/**
 * Structured attempt history (the "Shots on Goal" seed): one {@link AttemptRecord} per finished attempt of every
 * task, written by the dispatcher that ran it to the KV bucket `Buckets.attempts` under {@link attemptKey}, and the
 * attempt's compact transcript to the object store `ObjectStores.transcripts` under the same name. Both are
 * bounded by {@link STORE_LIMITS} (age and bytes). The merge queue's verdict on an attempt (its validation:
 * `merge.verified`, `merge.rejected` with the failing check, `merge.merged`, …) is not copied in: it stays in
 * the EVENTS stream under the attempt's number, and readers join the two (`longshot history`).
 */

/** The KV key and transcript object name of attempt `attempt` of `taskId` in `runId`: `<runId>.<taskId>.<attempt>`. */
export function attemptKey(runId: string, taskId: string, attempt: number): string {
  return `${runId}.${taskId}.${attempt}`;
}

/** A KV key filter for every attempt of `runId` (of one task when `taskId` is given). */
export function attemptKeys(runId: string, taskId?: string): string {
  return taskId === undefined ? `${runId}.>` : `${runId}.${taskId}.*`;
}

/** Largest compact transcript kept per attempt, bytes (UTF-8); lines beyond it are left out in the middle. */
export const TRANSCRIPT_MAX_BYTES = 64 * 1024;

/** Where an attempt's compact transcript is and what it holds. */
export const TranscriptRef = z.object({
  /** Object name in `ObjectStores.transcripts` (the attempt's {@link attemptKey}). */
  object: z.string().min(1),
  /** Lines stored (each `<ISO time> <text>`). */
  lines: z.number().int().min(0),
  /** Lines left out (in the middle) to stay within {@link TRANSCRIPT_MAX_BYTES}. */
  omittedLines: z.number().int().min(0),
  /** Size of the stored object, bytes. */
  bytes: z.number().int().min(0),
});
export type TranscriptRef = z.infer<typeof TranscriptRef>;

/**
 * One finished attempt of one task, as the dispatcher that ran it saw it. The handoff is kept whole: its
 * `status`, `summary`, `concerns`, `branch` and `head` (the pushed sha), its `metrics` (diff stat: lines added
 * and removed, files created and modified; `toolCallCount`; `tokensUsed`; `durationMs`) and `task` (as
 * dispatched: kind, description, scope, the retry's context). Times are ISO-8601 UTC; durations ms.
 */
export const AttemptRecord = z.object({
  runId: RunId,
  taskId: TaskId,
  attempt: z.number().int().min(1),
  /** The model the agent called (`task.model`, e.g. a retry's fallback, else the dispatcher's LLM_MODEL). */
  model: z.string().min(1),
  /** The agent harness (WORKER_HARNESS: `pi` or `command`). */
  harness: z.string().min(1),
  /** The sandbox provider (`local`, `unsafe-local`, `modal`) and its id of the sandbox. */
  sandbox: z.string().min(1),
  sandboxId: z.string().optional(),
  /** When the attempt got its slot and its sandbox started, and when its sandbox was done. */
  startedAt: z.string(),
  finishedAt: z.string(),
  /** True when the sandbox was killed at WORKER_TIMEOUT. */
  timedOut: z.boolean(),
  /** The compact transcript; absent when it could not be stored (the record is written anyway). */
  transcript: TranscriptRef.optional(),
  handoff: Handoff,
});
export type AttemptRecord = z.infer<typeof AttemptRecord>;
