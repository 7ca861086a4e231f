import { appendFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { Task, WorkerLine } from "@longshot/contracts";

/**
 * Worker transcripts: every progress line of a task attempt's worker (uncoalesced, unlike `task.progress`
 * events) and its handoff, appended to `<dir>/<runId>/<taskId>.<attempt>.log`, one `<ISO time> <text>` line each.
 * `longshot logs <run> --task <id>` prints them when it runs on the dispatcher's host (the embedded cluster).
 * Model traffic is never written (it is relayed, not part of the transcript).
 */
export interface Transcripts {
  append(task: Task, line: WorkerLine): void;
  /** Files with appends still being written (0 when idle: finished files are not tracked). */
  pending(): number;
  /** Resolves when every append so far is written (or failed and reported). */
  idle(): Promise<void>;
}

/** The transcript text of one worker line, or undefined for lines that are not part of it (model relay). */
export function transcriptText(line: WorkerLine): string | undefined {
  if (line.kind === "progress") {
    const extra = [
      line.toolCalls !== undefined ? `${line.toolCalls} tool calls` : "",
      line.tokens !== undefined ? `${line.tokens} tokens` : "",
    ].filter(Boolean);
    const detail = line.detail !== undefined ? `: ${line.detail}` : "";
    return `${line.message}${detail}${extra.length ? ` (${extra.join(", ")})` : ""}`;
  }
  if (line.kind === "handoff") {
    const h = line.handoff;
    const concerns = h.concerns.length ? `; concerns: ${h.concerns.join(" | ")}` : "";
    return `handoff ${h.status}: ${h.summary}${concerns}`;
  }
  return undefined;
}

/**
 * Transcripts under `dir` (created as needed). Appends are queued per file, so lines keep their order; a failed
 * write is reported to `onError` and never disturbs the task.
 */
export function createTranscripts(dir: string, onError: (err: unknown) => void = () => {}): Transcripts {
  const queues = new Map<string, Promise<void>>();
  return {
    append(task, line) {
      const text = transcriptText(line);
      if (text === undefined) return;
      const runDir = join(dir, task.runId);
      const file = join(runDir, `${task.id}.${task.attempt}.log`);
      const entry = `${new Date().toISOString()} ${text.replace(/\n/g, " ")}\n`;
      const prev = queues.get(file) ?? mkdir(runDir, { recursive: true }).then(() => {});
      const next: Promise<void> = prev
        .then(() => appendFile(file, entry))
        .catch(onError)
        .finally(() => {
          // The file's queue is empty again: forget it (one entry per attempt would pile up for the process's life).
          if (queues.get(file) === next) queues.delete(file);
        });
      queues.set(file, next);
    },
    pending: () => queues.size,
    async idle() {
      while (queues.size > 0) await Promise.all(queues.values());
    },
  };
}
