import type { KvStateCodec } from "@longshot/bus";
import type { RunState, TaskRecord } from "./run.ts";

/** Task ids per `order` chunk: appending a task rewrites only the last chunk. */
const ORDER_CHUNK = 256;

/**
 * How a run's state is laid out in the `longshot-runs` bucket (key `<runId>` and parts `<runId>.<part>`): the
 * header (counters, phase, finalization, pending reports), `conv` (the conversation window), `seen` (the base
 * branch as the planner last saw it, with its file tree), `t.<taskId>` (one record per task) and `o.<n>` (the
 * creation order, 256 ids a chunk). A handoff rewrites its task record and the small header, not the whole run:
 * bytes written per event do not grow with the run, and no single value does either (`max_payload` no longer
 * bounds a run). Pure.
 */
export const runCodec: KvStateCodec<RunState> = {
  split(s) {
    const { tasks, order, conversation, lastSeen, ...header } = s;
    const parts: Record<string, unknown> = { "": header, conv: conversation };
    if (lastSeen) parts.seen = lastSeen;
    for (const id of order) parts[`t.${id}`] = tasks[id];
    for (let i = 0; i * ORDER_CHUNK < order.length; i++) {
      parts[`o.${i}`] = order.slice(i * ORDER_CHUNK, (i + 1) * ORDER_CHUNK);
    }
    return parts;
  },
  join(parts) {
    const header = parts[""] as Omit<RunState, "tasks" | "order" | "conversation" | "lastSeen">;
    const order: string[] = [];
    for (let i = 0; parts[`o.${i}`] !== undefined; i++) order.push(...(parts[`o.${i}`] as string[]));
    const tasks: Record<string, TaskRecord> = {};
    for (const id of order) {
      const r = parts[`t.${id}`] as TaskRecord | undefined;
      if (r) tasks[id] = r;
    }
    return {
      ...header,
      conversation: (parts.conv as RunState["conversation"] | undefined) ?? [],
      ...(parts.seen ? { lastSeen: parts.seen as NonNullable<RunState["lastSeen"]> } : {}),
      // A task whose record was not written yet (a crash between the order chunk and the record) is dropped.
      order: order.filter((id) => tasks[id] !== undefined),
      tasks,
    };
  },
};
