import type { Bus } from "@longshot/bus";
import { type EventType, Streams } from "@longshot/contracts";
import { DeliverPolicy } from "@nats-io/jetstream";

/** An event as stored in the EVENTS stream (the envelope; `data` per the event's schema). */
export interface StoredEvent {
  id: string;
  type: EventType;
  ts: string;
  runId: string;
  taskId?: string;
  data: unknown;
}

/**
 * Runs `fn` again while JetStream says it is between leaders ("temporarily unavailable", a timeout): a clustered
 * store answers so for a few seconds after it starts or loses a node. At most `ms`.
 */
async function whenAvailable<T>(fn: () => Promise<T>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (!/temporarily unavailable|timeout/i.test((e as Error).message ?? "") || Date.now() > deadline)
        throw e;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** How many stored events match `filter` (EVENTS stream subject counts). */
async function storedCount(bus: Bus, filter: string): Promise<number> {
  const info = await whenAvailable(() =>
    bus.jsm.streams.info(Streams.EVENTS.name, { subjects_filter: filter }),
  );
  return Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
}

function parse(data: Uint8Array): StoredEvent | undefined {
  try {
    return JSON.parse(new TextDecoder().decode(data)) as StoredEvent;
  } catch {
    return undefined;
  }
}

/**
 * Every stored event whose subject matches `filter` (e.g. `longshot.event.<run>.>`), in stream order, read with
 * an ordered consumer (nothing is acked or changed).
 */
export async function readEvents(bus: Bus, filter: string): Promise<StoredEvent[]> {
  const total = await storedCount(bus, filter);
  const out: StoredEvent[] = [];
  if (total === 0) return out;
  const oc = await whenAvailable(() =>
    bus.js.consumers.get(Streams.EVENTS.name, { filter_subjects: filter, deliver_policy: DeliverPolicy.All }),
  );
  let seen = 0;
  while (seen < total) {
    const batch = await oc.fetch({ max_messages: Math.min(1000, total - seen), expires: 2000 });
    let n = 0;
    for await (const m of batch) {
      n++;
      seen++;
      const e = parse(m.data);
      if (e) out.push(e);
      if (m.info.pending === 0) seen = Math.max(seen, total);
    }
    if (n === 0) break;
  }
  await oc.delete().catch(() => {});
  return out;
}

/** A running {@link followEvents}. */
export interface EventFollow {
  /** Resolves when following ended (`onEvent` returned true, or {@link stop}). */
  done: Promise<void>;
  stop(): void;
}

/**
 * Delivers every stored event matching `filter`, then new ones as they are stored, to `onEvent` until it returns
 * true or `stop()` is called. `onCaughtUp` runs once, after the events stored when following began (at once
 * when there were none). An ordered consumer: no race with a publish made right after this resolves.
 */
export async function followEvents(
  bus: Bus,
  filter: string,
  onEvent: (e: StoredEvent) => boolean | undefined,
  onCaughtUp?: () => void,
): Promise<EventFollow> {
  const total = await storedCount(bus, filter);
  const oc = await whenAvailable(() =>
    bus.js.consumers.get(Streams.EVENTS.name, { filter_subjects: filter, deliver_policy: DeliverPolicy.All }),
  );
  // Short pulls (heartbeats every ~2.5 s): when the node holding this ordered consumer dies (a clustered
  // store), missed heartbeats recreate it on another node within seconds instead of the default minute or more.
  const msgs = await oc.consume({ expires: 5000 });
  let caughtUp = false;
  const caught = () => {
    if (caughtUp) return;
    caughtUp = true;
    onCaughtUp?.();
  };
  if (total === 0) caught();
  let seen = 0;
  const done = (async () => {
    for await (const m of msgs) {
      seen++;
      const e = parse(m.data);
      const stop = e ? onEvent(e) === true : false;
      if (seen >= total || m.info.pending === 0) caught();
      if (stop) break;
    }
  })().finally(() => {
    void msgs.close().catch(() => {});
  });
  return { done, stop: () => void msgs.stop() };
}
