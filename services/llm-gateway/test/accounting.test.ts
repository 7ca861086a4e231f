import { describe, expect, it } from "vitest";
import {
  addRunUsage,
  costOf,
  Ledger,
  promptKey,
  type Reservation,
  SseUsageTap,
  usageCounts,
  usageFromBody,
  viewChatBody,
} from "../src/index.ts";

describe("ledger: tokens, budgets, cost", () => {
  const prices = { "glm-5": { inputPerMTok: 1, cachedInputPerMTok: 0.2, outputPerMTok: 4 } };

  it("prices uncached, cached and completion tokens", () => {
    expect(
      costOf(prices, "glm-5", { promptTokens: 1_000_000, cachedTokens: 500_000, completionTokens: 250_000 }),
    ).toBe(0.5 + 0.1 + 1);
    expect(costOf(prices, "other", { promptTokens: 10, cachedTokens: 0, completionTokens: 10 })).toBe(0);
    expect(
      costOf({ "*": { inputPerMTok: 1e6, outputPerMTok: 0 } }, "x", {
        promptTokens: 2,
        cachedTokens: 0,
        completionTokens: 9,
      }),
    ).toBe(2);
  });

  it("issues opaque tokens and stores only their grants", () => {
    const l = new Ledger(prices);
    const t = l.issue({ runId: "r1", taskId: "t1", role: "worker", budgetTokens: 100 });
    expect(t).toMatch(/^lsg_[A-Za-z0-9_-]{43}$/);
    expect(l.lookup(t)).toEqual({ runId: "r1", taskId: "t1", role: "worker", budgetTokens: 100 });
    expect(l.lookup("lsg_nope")).toBeUndefined();
    expect(l.revoke(t)).toBe(true);
    expect(l.lookup(t)).toBeUndefined();
  });

  it("refuses a task once its budget is used, and a run once the run budget is used", () => {
    const l = new Ledger(prices);
    l.issue({ runId: "r1", budgetTokens: 1000 });
    const task = { runId: "r1", taskId: "t1", role: "worker" };
    l.issue({ ...task, budgetTokens: 100 });
    expect(l.check(task)).toBeUndefined();
    l.record(task, "glm-5", { promptTokens: 60, completionTokens: 30, cachedTokens: 20 });
    expect(l.check(task)).toBeUndefined(); // 90 < 100
    l.record(task, "glm-5", { promptTokens: 10, completionTokens: 10, cachedTokens: 0 });
    expect(l.check(task)).toEqual({ scope: "task", usedTokens: 110, reservedTokens: 0, budgetTokens: 100 });
    const other = { runId: "r1", taskId: "t2", role: "planner" };
    expect(l.check(other)).toBeUndefined();
    l.record(other, "glm-5", { promptTokens: 800, completionTokens: 100, cachedTokens: 0 });
    expect(l.check(other)).toEqual({ scope: "run", usedTokens: 1010, reservedTokens: 0, budgetTokens: 1000 });
    expect(l.check({ runId: "r2" })).toBeUndefined();

    const u = l.usage("r1")!;
    expect(u).toMatchObject({
      requests: 3,
      promptTokens: 870,
      completionTokens: 140,
      cachedTokens: 20,
      totalTokens: 1010,
    });
    expect(u.budgetTokens).toBe(1000);
    expect(u.byTask.t1).toMatchObject({ totalTokens: 110, budgetTokens: 100, requests: 2 });
    expect(u.byRole.planner!.totalTokens).toBe(900);
    expect(u.byModel["glm-5"]!.requests).toBe(3);
    expect(u.cost).toBeCloseTo((850 * 1 + 20 * 0.2 + 140 * 4) / 1e6, 12);
    expect(l.allUsage().map((r) => r.runId)).toEqual(["r1"]);
  });

  it("holds estimates of requests in flight so concurrent requests cannot overshoot a budget together", () => {
    const l = new Ledger();
    const task = { runId: "r1", taskId: "t1" };
    l.issue({ ...task, budgetTokens: 1000 });
    const first = l.admit(task, 400);
    const second = l.admit(task, 400);
    expect("tokens" in first && "tokens" in second).toBe(true);
    // 0 used + 800 in flight + 400 > 1000: the third waits for the others
    expect(l.admit(task, 400)).toEqual({
      scope: "task",
      usedTokens: 0,
      reservedTokens: 800,
      budgetTokens: 1000,
    });
    l.record(task, "m", { promptTokens: 300, completionTokens: 50, cachedTokens: 0 });
    l.release(first as Reservation);
    expect(l.admit(task, 400)).toMatchObject({ usedTokens: 350, reservedTokens: 400 }); // 1150 > 1000
    const third = l.admit(task, 200); // 350 used + 400 in flight + 200 ≤ 1000
    expect("tokens" in third).toBe(true);
    l.release(second as Reservation);
    l.release(third as Reservation);
    // a lone request is admitted whatever its estimate, as long as the budget is not used up
    const big = l.admit(task, 5000);
    expect("tokens" in big).toBe(true);
    l.release(big as Reservation);
    l.record(task, "m", { promptTokens: 600, completionTokens: 100, cachedTokens: 0 });
    expect(l.admit(task, 1)).toMatchObject({ scope: "task", usedTokens: 1050, reservedTokens: 0 });
  });

  it("hands out usage not yet stored, and views a run as its stored record plus that", () => {
    const task = { runId: "r1", taskId: "t1", role: "worker" };
    const a = new Ledger(prices, undefined, true); // two gateway processes sharing one store
    const b = new Ledger(prices, undefined, true);
    a.issue({ ...task, budgetTokens: 400 });
    b.issue({ ...task, budgetTokens: 400 });
    a.record(task, "glm-5", { promptTokens: 200, completionTokens: 50, cachedTokens: 100 });
    b.record(task, "glm-5", { promptTokens: 100, completionTokens: 10, cachedTokens: 0 });

    // "the store": a's flush, then b's flush adds to it
    const stored1 = a.takePending("r1")!;
    expect(a.takePending("r1")).toBeUndefined();
    a.applyStored(stored1);
    const stored2 = addRunUsage(stored1, b.takePending("r1")!);
    b.applyStored(stored2);
    expect(b.usage("r1")).toMatchObject({
      requests: 2,
      totalTokens: 360,
      byTask: { t1: { totalTokens: 360 } },
    });
    expect(b.usage("r1")!.byTask.t1!.budgetTokens).toBe(400); // budgets from memory survive

    // a records more while its next flush fails: nothing is lost, and its view stays stored + unflushed
    a.record(task, "glm-5", { promptTokens: 30, completionTokens: 10, cachedTokens: 0 });
    const delta = a.takePending("r1")!;
    a.returnPending(delta);
    a.record(task, "glm-5", { promptTokens: 0, completionTokens: 5, cachedTokens: 0 });
    a.applyStored(stored2);
    expect(a.usage("r1")).toMatchObject({
      requests: 4,
      totalTokens: 405,
      byRole: { worker: { requests: 4 } },
    });
    expect(a.check(task)).toMatchObject({ scope: "task", usedTokens: 405 });
    expect(a.takePending("r1")).toMatchObject({ requests: 2, totalTokens: 45 });

    // without trackPending (no store) nothing is kept aside
    const plain = new Ledger();
    plain.record(task, "m", { promptTokens: 1, completionTokens: 1, cachedTokens: 0 });
    expect(plain.pendingRuns()).toEqual([]);
  });
});

describe("SSE usage tap", () => {
  const ev = (o: unknown) => `data: ${JSON.stringify(o)}\n\n`;
  const content = ev({ choices: [{ index: 0, delta: { content: "hi" } }] });
  const usageEv = ev({
    choices: [],
    usage: {
      prompt_tokens: 7,
      completion_tokens: 3,
      total_tokens: 10,
      prompt_tokens_details: { cached_tokens: 4 },
    },
  });
  const stream = `${content}${usageEv}data: [DONE]\n\n`;

  it("passes bytes through unchanged and reads the usage chunk, whatever the chunking", () => {
    for (const size of [1, 3, 17, stream.length]) {
      const tap = new SseUsageTap(false);
      const buf = Buffer.from(stream);
      const out: Buffer[] = [];
      for (let i = 0; i < buf.length; i += size) out.push(tap.push(buf.subarray(i, i + size)));
      out.push(tap.flush());
      expect(Buffer.concat(out).toString()).toBe(stream);
      expect(tap.usage).toEqual({ promptTokens: 7, completionTokens: 3, cachedTokens: 4 });
      expect(tap.events).toBe(3);
    }
  });

  it("strips the usage-only event when the gateway asked for usage itself", () => {
    for (const size of [1, 5, stream.length]) {
      const tap = new SseUsageTap(true);
      const buf = Buffer.from(stream);
      const out: Buffer[] = [];
      for (let i = 0; i < buf.length; i += size) out.push(tap.push(buf.subarray(i, i + size)));
      out.push(tap.flush());
      expect(Buffer.concat(out).toString()).toBe(`${content}data: [DONE]\n\n`);
      expect(tap.usage?.promptTokens).toBe(7);
    }
  });

  it("reads a non-streaming body's usage without being fooled by usage-like text in the message", () => {
    const usage = { prompt_tokens: 120, completion_tokens: 7, prompt_tokens_details: { cached_tokens: 64 } };
    const expected = { promptTokens: 120, completionTokens: 7, cachedTokens: 64 };
    const body = (o: unknown, space?: number) => Buffer.from(JSON.stringify(o, null, space));
    const content = 'here is JSON: {"usage": {"prompt_tokens": 999999}} and a brace }';
    const completion = { id: "c1", choices: [{ index: 0, message: { role: "assistant", content } }], usage };
    expect(usageFromBody(body(completion))).toEqual(expected);
    expect(usageFromBody(body(completion, 2))).toEqual(expected); // pretty-printed
    // usage before the choices: the last "usage" key is inside the (escaped) content, so the body is parsed whole
    expect(usageFromBody(body({ usage, choices: completion.choices }))).toEqual(expected);
    expect(usageFromBody(body({ id: "c2", choices: [], usage: null }))).toBeUndefined();
    expect(usageFromBody(body({ id: "c3", choices: [] }))).toBeUndefined();
    expect(usageFromBody(Buffer.from("not json"))).toBeUndefined();
  });

  it("reads usage objects defensively", () => {
    expect(usageCounts(null)).toBeUndefined();
    expect(usageCounts({ prompt_tokens: 5 })).toEqual({
      promptTokens: 5,
      completionTokens: 0,
      cachedTokens: 0,
    });
  });
});

describe("request view and prompt key", () => {
  it("reads stream flags and builds an append-only prompt key", () => {
    const msgs = [
      { role: "system", content: "sys" },
      { role: "user", content: [{ type: "text", text: "hello" }] },
    ];
    const v = viewChatBody({
      model: "glm-5",
      messages: msgs,
      stream: true,
      stream_options: { include_usage: true },
    })!;
    expect(v).toMatchObject({ model: "glm-5", stream: true, includeUsage: true });
    const longer = promptKey([
      ...msgs,
      {
        role: "assistant",
        content: null,
        tool_calls: [{ id: "c1", type: "function", function: { name: "bash", arguments: "{}" } }],
      },
      { role: "tool", tool_call_id: "c1", content: "ok" },
    ]);
    expect(longer.startsWith(v.prefixText)).toBe(true);
    expect(longer).toContain("bash({})");
    expect(promptKey(msgs, [{ type: "function" }]).startsWith('[{"type":"function"}]')).toBe(true);
    expect(viewChatBody({ messages: "no" })).toBeUndefined();
    expect(viewChatBody([1])).toBeUndefined();
    expect(viewChatBody({ messages: [] })).toMatchObject({
      stream: false,
      includeUsage: false,
      model: undefined,
    });
  });
});
