import { Subjects } from "./subjects.ts";

/** Nanoseconds from milliseconds (stream and consumer configs take ns). */
const ns = (ms: number) => ms * 1_000_000;
const DAY_MS = 24 * 60 * 60 * 1000;

/** Stream definitions (JetStream `StreamConfig` subset). All file storage, limits retention, kept 7 days. */
export const Streams = {
  REQUESTS: {
    name: "REQUESTS",
    subjects: [Subjects.request, Subjects.cancel],
    description: "Public run requests and cancellations",
  },
  TASKS: {
    name: "TASKS",
    subjects: [Subjects.allTasks()],
    description: "Tasks ready for a sandbox or a subplanner",
  },
  HANDOFFS: { name: "HANDOFFS", subjects: [Subjects.allHandoffs], description: "Task attempt handoffs" },
  EVENTS: {
    name: "EVENTS",
    subjects: [`${Subjects.runEvents("*")}`],
    description: "Run, task, merge and health events",
  },
} as const;
export type StreamName = keyof typeof Streams;

/** Shared stream defaults: `max_age` and `duplicate_window` in ns. */
export const STREAM_DEFAULTS = {
  retention: "limits",
  storage: "file",
  max_age: ns(7 * DAY_MS),
  duplicate_window: ns(2 * 60_000),
} as const;

/**
 * Ack wait of every consumer, ms: a crashed handler's message is redelivered this long after its last
 * `working()` heartbeat (heartbeats go out every third of it while a handler runs).
 */
export const ACK_WAIT_MS = 20_000;

/**
 * A durable pull consumer. `ackWaitMs` is how long a delivery may go without `ack`/`working()` before it is
 * redelivered; `maxDeliver` bounds redeliveries (then the message is a visible failure, see libs/bus).
 */
export interface ConsumerDef {
  stream: StreamName;
  name: string;
  filter: string;
  ackWaitMs: number;
  maxDeliver: number;
  maxAckPending: number;
}

/** Every durable consumer of the system. `maxAckPending` of the dispatcher is raised to its prefetch at runtime. */
export const Consumers = {
  plannerRequests: {
    stream: "REQUESTS",
    name: "planner-requests",
    filter: Subjects.request,
    ackWaitMs: ACK_WAIT_MS,
    maxDeliver: 5,
    maxAckPending: 64,
  },
  plannerCancels: {
    stream: "REQUESTS",
    name: "planner-cancels",
    filter: Subjects.cancel,
    ackWaitMs: ACK_WAIT_MS,
    maxDeliver: 5,
    maxAckPending: 64,
  },
  plannerHandoffs: {
    stream: "HANDOFFS",
    name: "planner-handoffs",
    filter: Subjects.allHandoffs,
    ackWaitMs: ACK_WAIT_MS,
    maxDeliver: 10,
    maxAckPending: 256,
  },
  plannerMerges: {
    stream: "EVENTS",
    name: "planner-merges",
    filter: Subjects.eventsOfType("merge.*"),
    ackWaitMs: ACK_WAIT_MS,
    maxDeliver: 10,
    maxAckPending: 256,
  },
  plannerHealth: {
    stream: "EVENTS",
    name: "planner-health",
    filter: Subjects.eventsOfType("health.swept"),
    ackWaitMs: ACK_WAIT_MS,
    maxDeliver: 10,
    maxAckPending: 64,
  },
  plannerFixes: {
    stream: "EVENTS",
    name: "planner-fixes",
    filter: Subjects.eventsOfType("fix.requested"),
    ackWaitMs: ACK_WAIT_MS,
    maxDeliver: 10,
    maxAckPending: 64,
  },
  subplanner: {
    stream: "TASKS",
    name: "subplanner",
    filter: Subjects.allTasks("decompose"),
    ackWaitMs: ACK_WAIT_MS,
    maxDeliver: 5,
    maxAckPending: 1000,
  },
  subplannerHandoffs: {
    stream: "HANDOFFS",
    name: "subplanner-handoffs",
    filter: Subjects.allHandoffs,
    ackWaitMs: ACK_WAIT_MS,
    maxDeliver: 10,
    maxAckPending: 256,
  },
  subplannerMerges: {
    stream: "EVENTS",
    name: "subplanner-merges",
    filter: Subjects.eventsOfType("merge.*"),
    ackWaitMs: ACK_WAIT_MS,
    maxDeliver: 10,
    maxAckPending: 256,
  },
  dispatcher: {
    stream: "TASKS",
    name: "dispatcher",
    filter: Subjects.allTasks("execute"),
    ackWaitMs: ACK_WAIT_MS,
    maxDeliver: 5,
    maxAckPending: 1000,
  },
  merger: {
    stream: "HANDOFFS",
    name: "merger",
    filter: Subjects.allHandoffs,
    ackWaitMs: ACK_WAIT_MS,
    maxDeliver: 10,
    maxAckPending: 1000,
  },
  reconcilerMerges: {
    stream: "EVENTS",
    name: "reconciler-merges",
    filter: Subjects.eventsOfType("merge.merged"),
    ackWaitMs: ACK_WAIT_MS,
    maxDeliver: 10,
    maxAckPending: 256,
  },
  reconcilerSweeps: {
    stream: "EVENTS",
    name: "reconciler-sweeps",
    filter: Subjects.eventsOfType("sweep.requested"),
    ackWaitMs: ACK_WAIT_MS,
    maxDeliver: 10,
    maxAckPending: 64,
  },
} as const satisfies Record<string, ConsumerDef>;

/** KV buckets holding state that must survive restarts. Keys are ids (see `Id`). */
export const Buckets = {
  /** Planner-owned run state, key = runId. */
  runs: "longshot-runs",
  /** Subplanner-owned decomposition state, key = `<runId>.<parentTaskId>`. */
  decompositions: "longshot-decompositions",
  /** Merger's record of merged tasks, key = `<runId>.<taskId>` → merged sha. */
  merged: "longshot-merged",
  /**
   * Runs that were cancelled, key = runId → `{reason, at}` (written by the planner before it announces
   * `run.cancelled`): the dispatcher checks it before starting a sandbox and watches it to stop running ones.
   */
  cancelled: "longshot-cancelled",
  /**
   * Scope leases, key = `<sha1(repo)>.<sha1(file)>` (16 hex each) → `{runId, taskId, file, at}`: a task's
   * claim on a file of its scope from admission until its branch lands or is abandoned (libs/bus leases.ts).
   */
  leases: "longshot-leases",
  /** The planner's whole conversation per run, one key per turn `<runId>.<n>` → `{role, content}`. */
  plannerTurns: "longshot-planner-turns",
  /** LLM gateway's token grants, key = SHA-256 of the token (base64url) → `{runId, taskId?, role?, budgetTokens?}`. */
  llmTokens: "longshot-llm-tokens",
  /** LLM gateway's usage per run, key = runId → tokens and cost by task, role and model (see llm-gateway). */
  llmUsage: "longshot-llm-usage",
  /**
   * Attempt history, key = `<runId>.<taskId>.<attempt>` (`attemptKey`) → `AttemptRecord`, written by the dispatcher
   * when an attempt finishes; bounded by {@link STORE_LIMITS}.
   */
  attempts: "longshot-attempts",
} as const;

/** JetStream object stores (stream `OBJ_<name>`): larger values than a KV entry should hold. */
export const ObjectStores = {
  /**
   * Compact worker transcripts, name = the attempt's `attemptKey` → `<ISO time> <text>` lines (UTF-8, at most
   * `TRANSCRIPT_MAX_BYTES`), written by the dispatcher with the attempt's record; bounded by {@link STORE_LIMITS}.
   */
  transcripts: "longshot-transcripts",
} as const;

/** Retention of a bucket or object store that grows with every attempt: `maxAgeMs` (TTL), `maxBytes` (cap). */
export interface StoreLimits {
  maxAgeMs: number;
  maxBytes: number;
}

/**
 * Bounded retention of the attempt history: kept as long as the streams (7 days), so an attempt's record,
 * transcript, handoff and merge events age out together; at most 256 MiB of records and 1 GiB of transcripts.
 * JetStream applies `max_age` per entry; a store at `maxBytes` refuses new entries until old ones age out
 * (the dispatcher logs it and the task goes on). Set when the bucket or store is created (`ensureTopology`);
 * an existing one keeps its configuration.
 */
export const STORE_LIMITS: Readonly<Record<string, StoreLimits>> = {
  [Buckets.attempts]: { maxAgeMs: 7 * DAY_MS, maxBytes: 256 * 1024 * 1024 },
  [ObjectStores.transcripts]: { maxAgeMs: 7 * DAY_MS, maxBytes: 1024 * 1024 * 1024 },
};
