import { z } from "zod";
import { newId, RunId, TaskId } from "./ids.ts";

/**
 * The one envelope of every internal message (tasks, handoffs, events).
 * `id` doubles as the `Nats-Msg-Id` header so JetStream drops duplicates within its dedup window.
 * `correlationId` is the run's id chain root (the request); `causationId` the message that caused this one.
 * `ts` is ISO-8601 UTC. The public `longshot.request` payload is NOT enveloped.
 */
export const Envelope = z.object({
  id: z.string().min(1),
  type: z.string().min(1),
  version: z.number().int().min(1),
  ts: z.string(),
  runId: RunId,
  taskId: TaskId.optional(),
  correlationId: z.string(),
  causationId: z.string(),
  data: z.unknown(),
});
export type Envelope<D = unknown> = Omit<z.infer<typeof Envelope>, "data"> & { data: D };

/** Metadata a publisher supplies; missing ids are generated. */
export interface EnvelopeMeta {
  runId: string;
  taskId?: string | undefined;
  /** Stable id for idempotent publishes (dedup). Generated when absent. */
  id?: string | undefined;
  correlationId?: string | undefined;
  causationId?: string | undefined;
}

/** Wraps `data` in an envelope of the given type and version. */
export function envelope<D>(type: string, version: number, data: D, meta: EnvelopeMeta): Envelope<D> {
  const id = meta.id ?? newId(type.replace(/\./g, "-"));
  return {
    id,
    type,
    version,
    ts: new Date().toISOString(),
    runId: meta.runId,
    ...(meta.taskId !== undefined ? { taskId: meta.taskId } : {}),
    correlationId: meta.correlationId ?? meta.runId,
    causationId: meta.causationId ?? id,
    data,
  };
}
