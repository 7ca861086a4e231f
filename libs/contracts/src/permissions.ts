import { Subjects } from "./subjects.ts";
import { Buckets, type ConsumerDef, Consumers, ObjectStores, type StreamName } from "./topology.ts";

/**
 * Least-privilege NATS users: one per role, each allowed only the subjects its process uses. The embedded
 * cluster generates users with these permissions per start; `nats.conf` carries the same (rendered by
 * `natsConfUsers`). A process without credentials is refused by both.
 */

/** A NATS user role: a service, `submitter` (a tool that submits and follows runs) or `admin` (topology). */
export type NatsRole =
  | "planner"
  | "subplanner"
  | "dispatcher"
  | "merger"
  | "reconciler"
  | "monitor"
  | "gateway"
  | "submitter";

/** What a role does on NATS, in the system's own terms; {@link rolePermissions} turns it into subjects. */
export interface RoleGrants {
  /** Subjects it publishes to (streams capture them; plain and JetStream publishes alike). */
  publishes: string[];
  /** Event types it publishes (`longshot.event.*.<type>`, see `EventData`). */
  events: readonly string[];
  /** Core subscriptions it makes. */
  subscribes: string[];
  /** Durable consumers it pulls from and acks. */
  consumers: ConsumerDef[];
  /** KV buckets it reads and writes. */
  buckets: string[];
  /** KV buckets it only reads (get, watch). */
  readBuckets: string[];
  /** Object stores it writes (put, read back; never purge or delete). */
  objectStores: string[];
  /** Object stores it only reads (info, get). */
  readObjectStores: string[];
  /** Streams it replays with ordered consumers (never a durable consumer of another role). */
  readStreams: StreamName[];
  /** True for service processes: they check the topology (stream and consumer info) at start. */
  service: boolean;
}

const ALL_EVENTS_OF = (...types: string[]) => types;

/** The grants of every role (derived from what each service's code publishes, consumes and keeps). */
export const ROLE_GRANTS: Record<NatsRole, RoleGrants> = {
  planner: {
    publishes: [Subjects.allTasks()],
    events: ALL_EVENTS_OF(
      "run.accepted",
      "run.rejected",
      "run.completed",
      "run.cancelled",
      "planner.iteration",
      "task.planned",
      "sweep.requested",
      "error.rejected",
    ),
    subscribes: [],
    consumers: [
      Consumers.plannerRequests,
      Consumers.plannerCancels,
      Consumers.plannerHandoffs,
      Consumers.plannerMerges,
      Consumers.plannerHealth,
      Consumers.plannerFixes,
    ],
    buckets: [Buckets.runs, Buckets.cancelled, Buckets.leases, Buckets.plannerTurns],
    readBuckets: [Buckets.merged],
    objectStores: [],
    readObjectStores: [],
    readStreams: [],
    service: true,
  },
  subplanner: {
    publishes: [Subjects.allTasks(), Subjects.allHandoffs],
    events: ALL_EVENTS_OF("task.planned", "task.finished", "error.rejected"),
    subscribes: [],
    consumers: [Consumers.subplanner, Consumers.subplannerHandoffs, Consumers.subplannerMerges],
    buckets: [Buckets.decompositions],
    readBuckets: [],
    objectStores: [],
    readObjectStores: [],
    readStreams: [],
    service: true,
  },
  dispatcher: {
    publishes: [Subjects.allHandoffs],
    events: ALL_EVENTS_OF("task.started", "task.progress", "task.finished", "error.rejected"),
    subscribes: [Subjects.eventsOfType("task.stuck")],
    consumers: [Consumers.dispatcher],
    buckets: [Buckets.leases, Buckets.attempts],
    readBuckets: [Buckets.cancelled],
    objectStores: [ObjectStores.transcripts],
    readObjectStores: [],
    readStreams: [],
    service: true,
  },
  merger: {
    publishes: [],
    events: ALL_EVENTS_OF(
      "merge.merged",
      "merge.conflict",
      "merge.skipped",
      "merge.failed",
      "merge.verified",
      "merge.rejected",
      "error.rejected",
    ),
    subscribes: [],
    consumers: [Consumers.merger],
    buckets: [Buckets.merged],
    readBuckets: [],
    objectStores: [],
    readObjectStores: [],
    readStreams: [],
    service: true,
  },
  reconciler: {
    publishes: [],
    events: ALL_EVENTS_OF("health.swept", "health.verified-red", "fix.requested", "error.rejected"),
    subscribes: [Subjects.eventsOfType("run.completed")],
    consumers: [Consumers.reconcilerMerges, Consumers.reconcilerSweeps],
    buckets: [],
    readBuckets: [],
    objectStores: [],
    readObjectStores: [],
    readStreams: [],
    service: true,
  },
  monitor: {
    publishes: [Subjects.cancel],
    events: ALL_EVENTS_OF("task.stuck", "alert.raised", "error.rejected"),
    subscribes: [Subjects.runEvents("*")],
    consumers: [],
    buckets: [],
    readBuckets: [Buckets.llmUsage, Buckets.runs, Buckets.attempts],
    objectStores: [],
    readObjectStores: [],
    readStreams: ["EVENTS", "HANDOFFS"],
    service: true,
  },
  gateway: {
    publishes: [],
    events: [],
    subscribes: [],
    consumers: [],
    buckets: [Buckets.llmTokens, Buckets.llmUsage],
    readBuckets: [],
    objectStores: [],
    readObjectStores: [],
    readStreams: [],
    service: true,
  },
  submitter: {
    publishes: [Subjects.request, Subjects.cancel],
    events: [],
    subscribes: [Subjects.runEvents("*")],
    consumers: [],
    buckets: [],
    readBuckets: [Buckets.attempts],
    objectStores: [],
    readObjectStores: [ObjectStores.transcripts],
    readStreams: ["EVENTS"],
    service: false,
  },
};

/** nats-server permissions of one user (`allow` lists; `deny` wins over `allow`). */
export interface NatsPermissions {
  publish: { allow: string[]; deny?: string[] };
  subscribe: { allow: string[]; deny?: string[] };
}

/**
 * JetStream API and KV subjects of a bucket read (get, watch, keys, history: `keys` asks for its consumer's info).
 * Ordered consumers: 2.9 and 2.10+ names.
 */
const bucketRead = (bucket: string) => {
  const s = `KV_${bucket}`;
  return [
    `$JS.API.STREAM.INFO.${s}`,
    `$JS.API.DIRECT.GET.${s}`,
    `$JS.API.DIRECT.GET.${s}.>`,
    `$JS.API.STREAM.MSG.GET.${s}`,
    `$JS.API.CONSUMER.CREATE.${s}`,
    `$JS.API.CONSUMER.CREATE.${s}.>`,
    `$JS.API.CONSUMER.INFO.${s}.*`,
    `$JS.API.CONSUMER.DELETE.${s}.>`,
    `$JS.FC.${s}.>`,
  ];
};

/**
 * JetStream API subjects of an object store read: stream info, the meta entry (last by subject, direct or not),
 * and the ordered push consumer `get` reads the chunks with (created, deleted, flow-controlled).
 */
const objectStoreRead = (store: string) => {
  const s = `OBJ_${store}`;
  return [
    `$JS.API.STREAM.INFO.${s}`,
    `$JS.API.STREAM.MSG.GET.${s}`,
    `$JS.API.DIRECT.GET.${s}`,
    `$JS.API.DIRECT.GET.${s}.>`,
    `$JS.API.CONSUMER.CREATE.${s}`,
    `$JS.API.CONSUMER.CREATE.${s}.>`,
    `$JS.API.CONSUMER.INFO.${s}.*`,
    `$JS.API.CONSUMER.DELETE.${s}.>`,
    `$JS.FC.${s}.>`,
  ];
};

/**
 * The permissions of `role`: its publishes and events, its durable consumers (pull and ack), its buckets and object
 * stores (read and write, or read only), ordered-consumer replays of its read streams (pulling from a durable consumer of that
 * stream denied: it cannot take another role's work), core subscriptions, and replies on `_INBOX.>` (requests,
 * publish acks). Services may read stream and consumer info (the topology check at start). Nothing else:
 * no stream or consumer is created, changed or deleted, no other role's consumer or bucket is touched.
 */
export function rolePermissions(role: NatsRole): NatsPermissions {
  const g = ROLE_GRANTS[role];
  const pub = new Set<string>(g.publishes);
  const deny = new Set<string>();
  for (const t of g.events) pub.add(Subjects.eventsOfType(t));
  if (g.service) {
    pub.add("$JS.API.INFO");
    pub.add("$JS.API.STREAM.INFO.*");
    pub.add("$JS.API.CONSUMER.INFO.*.*");
  }
  for (const c of g.consumers) {
    pub.add(`$JS.API.CONSUMER.INFO.${c.stream}.${c.name}`);
    pub.add(`$JS.API.CONSUMER.MSG.NEXT.${c.stream}.${c.name}`);
    pub.add(`$JS.ACK.${c.stream}.${c.name}.>`);
  }
  for (const b of g.buckets) {
    pub.add(`$KV.${b}.>`);
    for (const s of bucketRead(b)) pub.add(s);
  }
  for (const b of g.readBuckets) for (const s of bucketRead(b)) pub.add(s);
  // The KV and object store clients ask for the account's JetStream info (limits, usage) when they open one.
  if (g.readBuckets.length + g.readObjectStores.length + g.buckets.length + g.objectStores.length > 0)
    pub.add("$JS.API.INFO");
  // A writer publishes chunks and meta entries; no purge: a replaced object's old chunks age out with max_age.
  for (const o of g.objectStores) {
    pub.add(`$O.${o}.C.>`);
    pub.add(`$O.${o}.M.>`);
    for (const s of objectStoreRead(o)) pub.add(s);
  }
  for (const o of g.readObjectStores) for (const s of objectStoreRead(o)) pub.add(s);
  for (const s of g.readStreams) {
    for (const subject of [
      `$JS.API.STREAM.INFO.${s}`,
      `$JS.API.CONSUMER.CREATE.${s}`,
      `$JS.API.CONSUMER.CREATE.${s}.>`,
      `$JS.API.CONSUMER.INFO.${s}.*`,
      `$JS.API.CONSUMER.MSG.NEXT.${s}.*`,
      `$JS.API.CONSUMER.DELETE.${s}.*`,
    ])
      pub.add(subject);
    for (const c of Object.values(Consumers) as ConsumerDef[]) {
      if (c.stream !== s || g.consumers.includes(c)) continue;
      deny.add(`$JS.API.CONSUMER.MSG.NEXT.${s}.${c.name}`);
      deny.add(`$JS.API.CONSUMER.DELETE.${s}.${c.name}`);
    }
  }
  return {
    publish: { allow: [...pub].sort(), ...(deny.size ? { deny: [...deny].sort() } : {}) },
    subscribe: { allow: [...new Set(["_INBOX.>", ...g.subscribes])].sort() },
  };
}

/** The roles in a stable order. */
export const NATS_ROLES = Object.keys(ROLE_GRANTS) as NatsRole[];

/** The environment variable that carries `role`'s password in `nats.conf` (e.g. `NATS_PLANNER_PASSWORD`). */
export const natsPasswordVar = (role: NatsRole | "admin") => `NATS_${role.toUpperCase()}_PASSWORD`;

/**
 * The `authorization` block of `nats.conf`: `admin` (every subject: creates the topology) and every role with its
 * {@link rolePermissions}, each password read from the server's environment (`$NATS_<ROLE>_PASSWORD`; nats-server
 * refuses to start when one is missing). Users are named after their role.
 */
export function natsConfAuthorization(): string {
  const users = [
    `    { user: admin, password: $${natsPasswordVar("admin")} }`,
    ...NATS_ROLES.map(
      (r) =>
        `    { user: ${r}, password: $${natsPasswordVar(r)}, permissions: ${JSON.stringify(rolePermissions(r))} }`,
    ),
  ];
  return `authorization {\n  users: [\n${users.join("\n")}\n  ]\n}\n`;
}
