import { createLogger } from "@longshot/log";
import { startTestNats, type TestNats } from "@longshot/testkit";
import type { KV } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Bus,
  connectBus,
  KvActor,
  KvActorExistsError,
  type KvStateCodec,
  wholeState,
} from "../src/index.ts";

// The shared KV actor on a real nats-server: partitioned state, O(1) writes per change, compare-and-set.

interface Doc {
  title: string;
  counter: number;
  items: Record<string, { text: string }>;
}

/** Header = title and counter; one part per item. */
const codec: KvStateCodec<Doc> = {
  split: ({ items, ...header }) => ({
    "": header,
    ...Object.fromEntries(Object.entries(items).map(([k, v]) => [`i.${k}`, v])),
  }),
  join: (parts) => {
    const header = parts[""] as Omit<Doc, "items">;
    const items: Doc["items"] = {};
    for (const [k, v] of Object.entries(parts))
      if (k.startsWith("i.")) items[k.slice(2)] = v as { text: string };
    return { ...header, items };
  },
};

let nats: TestNats;
let bus: Bus;
let kv: KV;

beforeAll(async () => {
  nats = await startTestNats();
  bus = await connectBus({
    servers: nats.url,
    name: "kv-actor-test",
    log: createLogger({ service: "t", level: "silent" }),
  });
  kv = await bus.kv("kv-actor-test");
});

afterAll(async () => {
  await bus?.close();
  await nats?.stop();
});

const bigDoc = (n: number): Doc => ({
  title: "doc",
  counter: 0,
  items: Object.fromEntries(
    Array.from({ length: n }, (_, i) => [`k${i}`, { text: `item ${i} `.repeat(20) }]),
  ),
});

describe("KvActor", () => {
  it("stores header and parts, loads them back, and refuses a second create", async () => {
    const a = await KvActor.create(kv, "doc1", codec, bigDoc(3));
    expect((await kv.get("doc1"))!.json()).toEqual({ title: "doc", counter: 0 });
    expect((await kv.get("doc1.i.k2"))!.json()).toEqual({ text: "item 2 ".repeat(20) });
    expect((await KvActor.load(kv, "doc1", codec))!.state).toEqual(a.state);
    await expect(KvActor.create(kv, "doc1", codec, bigDoc(1))).rejects.toBeInstanceOf(KvActorExistsError);
    expect(await KvActor.load(kv, "nobody", codec)).toBeUndefined();
  });

  it("writes only what changed: a change to one of 1000 parts costs the same as one of 10", async () => {
    const cost = async (base: string, n: number) => {
      const a = await KvActor.create(kv, base, codec, bigDoc(n));
      const before = { ...a.stats };
      await a.mutate((d) => ({
        ...d,
        counter: d.counter + 1,
        items: { ...d.items, k1: { text: "changed" } },
      }));
      return { writes: a.stats.writes - before.writes, bytes: a.stats.bytes - before.bytes };
    };
    const small = await cost("doc-small", 10);
    const large = await cost("doc-large", 1000);
    expect(small.writes).toBe(2); // the header and one part
    expect(large).toEqual(small);
    const loaded = (await KvActor.load(kv, "doc-large", codec))!.state;
    expect(loaded.counter).toBe(1);
    expect(loaded.items.k1).toEqual({ text: "changed" });
    expect(Object.keys(loaded.items)).toHaveLength(1000);
  });

  it("given another writer changed the state, then it reloads, applies the change once more, and keeps both", async () => {
    const a = await KvActor.create(kv, "doc2", codec, bigDoc(2));
    const b = (await KvActor.load(kv, "doc2", codec))!;
    await b.mutate((d) => ({ ...d, counter: d.counter + 100 }));
    // a's view is stale: its change to an item must not land on the old header.
    await a.mutate((d) => ({ ...d, counter: d.counter + 1, items: { ...d.items, k0: { text: "from a" } } }));
    const now = (await KvActor.load(kv, "doc2", codec))!.state;
    expect(now.counter).toBe(101);
    expect(now.items.k0).toEqual({ text: "from a" });
  });

  it("given another writer changed the state, when refreshed, then it sees the change without writing", async () => {
    const a = await KvActor.create(kv, "doc4", codec, bigDoc(2));
    const b = (await KvActor.load(kv, "doc4", codec))!;
    await b.mutate((d) => ({ ...d, counter: d.counter + 7, items: { ...d.items, k1: { text: "from b" } } }));
    const writes = a.stats.writes;
    expect(a.state.counter).toBe(0);
    expect(await a.refresh()).toBe(true);
    expect(a.state.counter).toBe(7);
    expect(a.state.items.k1).toEqual({ text: "from b" });
    expect(a.stats.writes).toBe(writes);
    // Nothing changed since: the header's revision is the one seen, nothing is reloaded.
    const before = a.state;
    expect(await a.refresh()).toBe(true);
    expect(a.state).toBe(before);
  });

  it("deletes parts that disappeared, and keeps a whole-state actor in one value", async () => {
    const a = await KvActor.create(kv, "doc3", codec, bigDoc(2));
    await a.mutate((d) => ({ ...d, items: { k0: d.items.k0! } }));
    expect(await kv.get("doc3.i.k1").then((e) => e?.operation)).not.toBe("PUT");
    const w = await KvActor.create(kv, "whole", wholeState<{ n: number }>(), { n: 1 });
    await w.mutate((s) => ({ n: s.n + 1 }));
    expect((await kv.get("whole"))!.json()).toEqual({ n: 2 });
  });
});
