import {
  Buckets,
  type ConsumerDef,
  Consumers,
  type Envelope,
  type EnvelopeMeta,
  Envelope as EnvelopeSchema,
  type EventPayload,
  type EventType,
  envelope,
  eventDef,
  type MessageDef,
  ObjectStores,
  runIdOfEventSubject,
  STORE_LIMITS,
  STREAM_DEFAULTS,
  Streams,
  Subjects,
} from "@longshot/contracts";
import type { Logger } from "@longshot/log";
import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
  type PubAck,
} from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import { type ObjectStore, Objm } from "@nats-io/obj";
import { connect, type NatsConnection, nanos } from "@nats-io/transport-node";
import type { z } from "zod";
import { ensureError, RetryableError, TerminalError } from "./errors.ts";

/** Context handed to a consume handler along with the decoded payload. */
export interface HandlerContext {
  msg: JsMsg;
  /** Logger with subject, stream sequence and delivery count bound. */
  log: Logger;
  /** 1 on the first delivery. */
  deliveryCount: number;
  /** True on the last delivery `max_deliver` allows: a retryable failure now becomes terminal. */
  lastDelivery: boolean;
}

export interface ConsumeOptions {
  /** Handlers running at once (messages are pulled only when a slot is free). Default 1. */
  concurrency?: number;
  /** Interval of automatic `working()` heartbeats while a handler runs, ms. Default ackWait/3. */
  heartbeatMs?: number;
}

/** A running consumer: `stop()` stops pulling and waits for in-flight handlers. */
export interface Consumption {
  stop(): Promise<void>;
}

/** Connection options. `servers` is a NATS URL or a comma-separated list. */
export interface BusOptions {
  servers: string;
  /** Client name shown in the server's /connz, e.g. `longshot-merger`. */
  name: string;
  log: Logger;
  /** NATS user and password (`NATS_USER` / `NATS_PASSWORD`; per-role users); omit for a server without users. */
  user?: string;
  pass?: string;
  /**
   * Replicas of the streams and KV buckets this process creates (`NATS_REPLICAS`: 1 on a single node, 3 on a
   * 3-node cluster). Default 1.
   */
  replicas?: number;
}

/**
 * Connects with unlimited reconnects (1 s apart) and returns a {@link Bus}.
 * @throws the NATS ConnectionError when no server answers at all.
 */
export async function connectBus(opts: BusOptions): Promise<Bus> {
  const servers = opts.servers.split(",").map((s) => s.trim());
  const nc = await connect({
    servers,
    name: opts.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 1000,
    ...(opts.user !== undefined ? { user: opts.user, pass: opts.pass ?? "" } : {}),
  });
  // No $JS.API.INFO round trip here: a cluster still electing its JetStream leaders would time it out, while
  // the first real request (ensureTopology) can wait for it.
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const bus = new Bus(nc, jsm, opts.log, opts.replicas ?? 1);
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect" || s.type === "reconnect" || s.type === "error")
        opts.log.warn({ status: s.type }, "nats status");
    }
  })();
  return bus;
}

/**
 * Typed access to the system's streams, consumers and KV buckets. One per process.
 */
export class Bus {
  readonly nc: NatsConnection;
  readonly jsm: JetStreamManager;
  readonly js: JetStreamClient;
  readonly log: Logger;
  /** Replicas of the streams and KV buckets this process creates. */
  readonly replicas: number;
  private readonly kvs = new Map<string, Promise<KV>>();
  private readonly objectStores = new Map<string, Promise<ObjectStore>>();

  constructor(nc: NatsConnection, jsm: JetStreamManager, log: Logger, replicas = 1) {
    this.nc = nc;
    this.jsm = jsm;
    this.js = jetstream(nc);
    this.log = log;
    this.replicas = replicas;
  }

  /**
   * Creates every stream, durable consumer and KV bucket of the system if missing, and updates a config that
   * differs from the definition in place (an unchanged one is only read: a per-role NATS user needs no
   * create/update rights once the topology exists). Idempotent: every service calls it at start.
   */
  async ensureTopology(): Promise<void> {
    for (const s of Object.values(Streams)) {
      const cfg = {
        ...STREAM_DEFAULTS,
        name: s.name,
        subjects: [...s.subjects],
        description: s.description,
        num_replicas: this.replicas,
      };
      let current: Record<string, unknown> | undefined;
      try {
        current = (await this.jsm.streams.info(s.name)).config as unknown as Record<string, unknown>;
      } catch (e) {
        if (!isNotFound(e)) throw e;
      }
      if (!current) await this.jsm.streams.add(cfg);
      else if (differs(current, cfg))
        await this.updateIfAllowed(`stream ${s.name}`, () => this.jsm.streams.update(s.name, cfg));
    }
    for (const c of Object.values(Consumers) as ConsumerDef[]) await this.ensureConsumer(c);
    for (const b of Object.values(Buckets)) await this.kv(b);
    for (const o of Object.values(ObjectStores)) await this.objectStore(o);
  }

  /** Creates or updates one durable pull consumer. */
  async ensureConsumer(c: ConsumerDef): Promise<void> {
    const cfg = {
      durable_name: c.name,
      filter_subject: c.filter,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(c.ackWaitMs),
      max_deliver: c.maxDeliver,
      max_ack_pending: c.maxAckPending,
    };
    let current: Record<string, unknown> | undefined;
    try {
      current = (await this.jsm.consumers.info(c.stream, c.name)).config as unknown as Record<
        string,
        unknown
      >;
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    if (!current) await this.jsm.consumers.add(c.stream, cfg);
    else if (differs(current, cfg))
      await this.updateIfAllowed(`consumer ${c.name}`, () =>
        this.jsm.consumers.update(c.stream, c.name, cfg),
      );
  }

  /**
   * Runs a topology update; a per-role user may not (only the admin that created the topology may), so a
   * permissions violation is logged and the existing definition kept.
   */
  private async updateIfAllowed(what: string, update: () => Promise<unknown>): Promise<void> {
    try {
      await update();
    } catch (e) {
      if (!/permissions violation/i.test((e as Error).message ?? "")) throw e;
      this.log.warn(
        { what },
        "topology differs from this version's definition; this NATS user may not update it",
      );
    }
  }

  /**
   * Opens (creating if needed) a KV bucket, cached per process. History 5, file storage, {@link replicas}
   * replicas, and the bucket's `STORE_LIMITS` (max age and bytes) when it has some (an existing bucket is opened
   * as it is).
   */
  kv(bucket: string): Promise<KV> {
    let p = this.kvs.get(bucket);
    if (!p) {
      const limits = STORE_LIMITS[bucket];
      p = new Kvm(this.nc).create(bucket, {
        history: 5,
        replicas: this.replicas,
        ...(limits ? { ttl: limits.maxAgeMs, max_bytes: limits.maxBytes } : {}),
      });
      this.kvs.set(bucket, p);
    }
    return p;
  }

  /**
   * Opens (creating if needed) a JetStream object store (`ObjectStores`), cached per process: file storage,
   * {@link replicas} replicas, its `STORE_LIMITS` (an existing store is opened as it is). A failed open is not
   * cached, so the next call tries again.
   */
  objectStore(name: string): Promise<ObjectStore> {
    let p = this.objectStores.get(name);
    if (!p) {
      const limits = STORE_LIMITS[name];
      p = new Objm(this.nc).create(name, {
        replicas: this.replicas,
        ...(limits ? { ttl: nanos(limits.maxAgeMs), max_bytes: limits.maxBytes } : {}),
      });
      p.catch(() => this.objectStores.delete(name));
      this.objectStores.set(name, p);
    }
    return p;
  }

  /**
   * Validates `data` against `def.schema`, wraps it in an envelope and publishes it to JetStream with
   * `Nats-Msg-Id = envelope.id` (duplicates inside the stream's dedup window are dropped).
   * @throws TerminalError when `data` does not match the schema (a programming error, never sent).
   */
  async publish<S extends z.ZodType, A extends unknown[]>(
    def: MessageDef<string, S, A>,
    subjectArgs: A,
    data: z.input<S>,
    meta: EnvelopeMeta,
  ): Promise<{ ack: PubAck; envelope: Envelope<z.infer<S>> }> {
    const parsed = def.schema.safeParse(data);
    if (!parsed.success)
      throw new TerminalError(`refusing to publish invalid ${def.type}: ${parsed.error.message}`);
    const env = envelope(def.type, def.version, parsed.data as z.infer<S>, meta);
    const ack = await this.js.publish(def.subject(...subjectArgs), JSON.stringify(env), { msgID: env.id });
    return { ack, envelope: env };
  }

  /** Publishes event `type` of run `runId` on `longshot.event.<runId>.<type>`. */
  publishEvent<T extends EventType>(
    type: T,
    runId: string,
    data: EventPayload<T>,
    meta: Omit<EnvelopeMeta, "runId"> = {},
  ): Promise<{ ack: PubAck; envelope: Envelope<EventPayload<T>> }> {
    const def = eventDef(type);
    return this.publish(def, [runId], data as z.input<typeof def.schema>, { ...meta, runId }) as Promise<{
      ack: PubAck;
      envelope: Envelope<EventPayload<T>>;
    }>;
  }

  /**
   * Runs `opts.handler` for messages of durable consumer `c`, mapping outcomes to acks in one place:
   * success → ack; RetryableError (or any other error) → nak(delay), except on the last allowed delivery
   * where it is terminated and reported; TerminalError or a decode failure → term + `error.rejected` event.
   * Sends `working()` heartbeats while a handler runs. Plain `term()` only (term(reason) is broken on 2.9).
   * `decode` turns a raw message into the handler's payload; it throws TerminalError (or anything) for bad input.
   */
  async consume<T>(
    c: ConsumerDef,
    decode: (msg: JsMsg) => T,
    handler: (data: T, ctx: HandlerContext) => Promise<void>,
    opts: ConsumeOptions = {},
  ): Promise<Consumption> {
    const concurrency = Math.max(1, opts.concurrency ?? 1);
    const heartbeatMs = opts.heartbeatMs ?? Math.max(1000, Math.floor(c.ackWaitMs / 3));
    const consumer = await this.js.consumers.get(c.stream, c.name);
    const inFlight = new Set<Promise<void>>();
    let stopped = false;
    let wake: (() => void) | undefined;

    const handle = async (msg: JsMsg) => {
      const deliveryCount = msg.info.deliveryCount;
      const log = this.log.child({
        consumer: c.name,
        subject: msg.subject,
        seq: msg.seq,
        delivery: deliveryCount,
      });
      const lastDelivery = deliveryCount >= c.maxDeliver;
      const timer = setInterval(() => msg.working(), heartbeatMs);
      try {
        let data: T;
        try {
          data = decode(msg);
        } catch (e) {
          throw e instanceof TerminalError
            ? e
            : new TerminalError(`undecodable message: ${ensureError(e).message}`);
        }
        await handler(data, { msg, log, deliveryCount, lastDelivery });
        msg.ack();
      } catch (thrown) {
        const err = ensureError(thrown);
        if (err instanceof TerminalError || lastDelivery) {
          log.error(
            { err },
            err instanceof TerminalError
              ? "terminal failure, message terminated"
              : "retries exhausted, message terminated",
          );
          msg.term();
          await this.reportRejected(msg, err.message).catch((e) =>
            log.error({ err: e }, "could not publish error event"),
          );
        } else {
          const delay = err instanceof RetryableError ? err.delayMs : 2000;
          log.warn({ err, delayMs: delay }, "handler failed, will retry");
          msg.nak(delay);
        }
      } finally {
        clearInterval(timer);
      }
    };

    const loop = (async () => {
      while (!stopped) {
        if (inFlight.size >= concurrency) {
          await new Promise<void>((r) => {
            wake = r;
          });
          continue;
        }
        let msg: JsMsg | null = null;
        try {
          msg = await consumer.next({ expires: 2000 });
        } catch (e) {
          if (stopped || this.nc.isClosed()) break;
          this.log.warn({ err: ensureError(e), consumer: c.name }, "pull failed, retrying");
          await new Promise((r) => setTimeout(r, 500));
          continue;
        }
        if (!msg) continue;
        const p = handle(msg).finally(() => {
          inFlight.delete(p);
          wake?.();
        });
        inFlight.add(p);
      }
    })();

    return {
      stop: async () => {
        stopped = true;
        wake?.();
        await loop;
        await Promise.allSettled([...inFlight]);
      },
    };
  }

  private async reportRejected(msg: JsMsg, reason: string): Promise<void> {
    let runId = runIdOfEventSubject(msg.subject);
    if (!runId) {
      try {
        const raw = msg.json<{ runId?: unknown }>();
        if (typeof raw.runId === "string" && /^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$/.test(raw.runId))
          runId = raw.runId;
      } catch {
        // not JSON: no run to attribute it to
      }
    }
    await this.publishEvent(
      "error.rejected",
      runId ?? "system",
      { reason: reason.slice(0, 2000), subject: msg.subject, stream: msg.info.stream, streamSeq: msg.seq },
      { id: `rejected-${msg.info.stream}-${msg.seq}` },
    );
  }

  /** Drains the connection (flushes pending publishes) and closes it. */
  async close(): Promise<void> {
    if (!this.nc.isClosed()) await this.nc.drain();
  }
}

/**
 * Decoder for enveloped messages of `def`: parses the envelope, checks its type, validates the payload.
 * @throws TerminalError naming the first schema problems.
 */
export function envelopeDecoder<S extends z.ZodType>(def: {
  type: string;
  schema: S;
}): (msg: JsMsg) => Envelope<z.infer<S>> {
  return (msg) => {
    let raw: unknown;
    try {
      raw = msg.json();
    } catch {
      throw new TerminalError("payload is not JSON");
    }
    const env = EnvelopeSchema.safeParse(raw);
    if (!env.success) throw new TerminalError(`bad envelope: ${env.error.message}`);
    if (env.data.type !== def.type)
      throw new TerminalError(`expected message type ${def.type}, got ${env.data.type}`);
    const data = def.schema.safeParse(env.data.data);
    if (!data.success) throw new TerminalError(`invalid ${def.type} payload: ${data.error.message}`);
    return { ...env.data, data: data.data };
  };
}

/**
 * Decoder for plain JSON messages (public subjects without an envelope, e.g. `longshot.cancel`): parses the
 * body and validates it with `schema`.
 * @throws TerminalError when the body is not JSON or does not match, naming the problems.
 */
export function jsonDecoder<S extends z.ZodType>(schema: S): (msg: JsMsg) => z.infer<S> {
  return (msg) => {
    let raw: unknown;
    try {
      raw = msg.json();
    } catch {
      throw new TerminalError("payload is not JSON");
    }
    const r = schema.safeParse(raw);
    if (!r.success) {
      const problems = r.error.issues.map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`).join("; ");
      throw new TerminalError(`invalid payload: ${problems}`);
    }
    return r.data;
  };
}

/** Decoder for any event envelope on `longshot.event.>` whose type is one of `types`. */
export function eventDecoder<T extends EventType>(
  ...types: T[]
): (msg: JsMsg) => Envelope<EventPayload<T>> & { type: T } {
  const decoders = new Map(types.map((t) => [t, envelopeDecoder(eventDef(t))]));
  return (msg) => {
    const type = msg.subject.split(".").slice(3).join(".") as T;
    const d = decoders.get(type);
    if (!d) throw new TerminalError(`unexpected event type ${type}`);
    return d(msg) as Envelope<EventPayload<T>> & { type: T };
  };
}

/** True when a field of `wanted` differs from the server's `current` config (arrays compared by value). */
function differs(current: Record<string, unknown>, wanted: Record<string, unknown>): boolean {
  return Object.entries(wanted).some(
    ([k, v]) => JSON.stringify(current[k] ?? null) !== JSON.stringify(v ?? null),
  );
}

function isNotFound(e: unknown): boolean {
  const err = e as { code?: number; name?: string; message?: string };
  return (
    err?.code === 10059 ||
    err?.code === 10014 ||
    err?.name === "StreamNotFoundError" ||
    err?.name === "ConsumerNotFoundError" ||
    /not found/i.test(err?.message ?? "")
  );
}

export { Subjects };
