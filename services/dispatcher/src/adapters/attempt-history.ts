import { type Bus, readAttempt, writeAttempt } from "@longshot/bus";
import type { AttemptRecord } from "@longshot/contracts";
import type { Logger } from "@longshot/log";
import type { CompactTranscriptText } from "../domain/compact-transcript.ts";

/** Where the dispatcher keeps the history of the attempts it runs (`longshot-attempts`, `longshot-transcripts`). */
export interface AttemptHistory {
  /**
   * Stores one finished attempt and its compact transcript. Never rejects: the history must not hold up or fail
   * the task, so a record that cannot be stored is logged (`attempt record not stored`) and dropped.
   */
  record(record: Omit<AttemptRecord, "transcript">, transcript: CompactTranscriptText): Promise<void>;
  /**
   * The record of an attempt that already ran (its task message came again: a redelivery after a lost ack, a
   * dispatcher that crashed after the handoff), else undefined. Never rejects: when the history cannot be read,
   * undefined (the attempt runs again, as before there was a history).
   */
  finished(at: { runId: string; taskId: string; attempt: number }): Promise<AttemptRecord | undefined>;
}

/** The attempt history on NATS through `bus` (see `writeAttempt` in @longshot/bus). */
export function createAttemptHistory(bus: Bus, log: Logger): AttemptHistory {
  return {
    async record(record, transcript) {
      const at = { runId: record.runId, taskId: record.taskId, attempt: record.attempt };
      try {
        await writeAttempt(bus, record, transcript, (err) =>
          log.warn({ err, ...at }, "attempt transcript not stored"),
        );
      } catch (err) {
        log.warn({ err, ...at }, "attempt record not stored");
      }
    },
    async finished(at) {
      try {
        return await readAttempt(bus, at.runId, at.taskId, at.attempt);
      } catch (err) {
        log.warn({ err, ...at }, "attempt history not read");
        return undefined;
      }
    },
  };
}
