import { describe, expect, it } from "vitest";
import {
  admissionAnswer,
  budgetAnswer,
  exhaustedAnswer,
  modelCatalog,
  modelList,
  requestGrant,
  routeInput,
  unauthorizedAnswer,
  upstreamBody,
  viewChatBody,
} from "../src/index.ts";

const view = viewChatBody({ model: "glm-5", messages: [{ role: "user", content: "hi" }] })!;

describe("error answers", () => {
  it("given a used-up budget, then 429 budget_exceeded that the SDK must not retry", () => {
    const a = budgetAnswer(
      { runId: "r1", taskId: "t1" },
      { scope: "task", usedTokens: 120, budgetTokens: 100, reservedTokens: 0 },
    );
    expect(a).toEqual({
      status: 429,
      code: "budget_exceeded",
      type: "budget_exceeded",
      message: "token budget exceeded for task t1 of run r1: used 120 of 100 tokens",
      headers: { "x-should-retry": "false" },
    });
  });

  it("given a budget held by requests in flight, then 429 budget_reserved with Retry-After", () => {
    const a = budgetAnswer(
      { runId: "r1" },
      { scope: "run", usedTokens: 50, budgetTokens: 100, reservedTokens: 40 },
    );
    expect(a.code).toBe("budget_reserved");
    expect(a.headers).toEqual({ "retry-after": "1" });
    expect(a.message).toContain("run r1 is held by its requests in flight: used 50 + about 40");
  });

  it("given failed attempts, then 504 when the last timed out and 502 naming the last reason otherwise", () => {
    expect(exhaustedAnswer(2, "timeout")).toMatchObject({ status: 504, code: "upstream_timeout" });
    expect(exhaustedAnswer(3, "connect")).toEqual({
      status: 502,
      code: "upstream_unavailable",
      message: "every upstream attempt failed (3 attempt(s), last: connect)",
    });
  });

  it("says why a token was refused and why the queue refused a request", () => {
    expect(unauthorizedAnswer(undefined, false).message).toMatch(/^missing bearer token/);
    expect(unauthorizedAnswer("lsg_x", true).message).toBe("expired gateway token");
    expect(unauthorizedAnswer("lsg_x", false).message).toBe("unknown or revoked gateway token");
    expect(admissionAnswer("queue_full")).toMatchObject({ status: 429, headers: { "retry-after": "1" } });
  });
});

describe("models", () => {
  it("given upstreams with and without model lists, then the catalog names the listed ones and is open", () => {
    const c = modelCatalog([
      { models: new Set(["a", "b"]) },
      { models: undefined },
      { models: new Set(["b"]) },
    ]);
    expect([...c.ids]).toEqual(["a", "b"]);
    expect(c.open).toBe(true);
    expect(modelCatalog([{ models: new Set(["a"]) }]).open).toBe(false);
  });

  it("given an open upstream's list, then its models follow the configured ones, once; garbage adds nothing", () => {
    const listed = Buffer.from(JSON.stringify({ data: [{ id: "b" }, { id: "c" }, { id: 3 }] }));
    expect(modelList(new Set(["a", "b"]), listed).map((m) => m.id)).toEqual(["a", "b", "c"]);
    expect(modelList(new Set(["a"]), Buffer.from("not json")).map((m) => m.id)).toEqual(["a"]);
    expect(modelList(new Set(["a"]), undefined)[0]).toEqual({
      id: "a",
      object: "model",
      created: 0,
      owned_by: "longshot-llm-gateway",
    });
  });
});

describe("route input", () => {
  it("keys affinity by run and task: the header's task first, else the token's, else none", () => {
    expect(routeInput({ runId: "r1", taskId: "t1" }, "t2", view)).toEqual({
      affinityKey: "r1/t2",
      prefixText: view.prefixText,
    });
    expect(routeInput({ runId: "r1", taskId: "t1" }, "", view).affinityKey).toBe("r1/t1");
    expect(routeInput({ runId: "r1" }, ["x", "y"], view).affinityKey).toBeUndefined();
  });
});

describe("request grant", () => {
  it("accounts a service token's call to the run its header names, with the token's role and no task", () => {
    const service = { runId: "fallback", role: "planner", anyRun: true, budgetTokens: 10 };
    expect(requestGrant(service, "run-2")).toEqual({ runId: "run-2", role: "planner" });
    expect(requestGrant(service, undefined)).toBe(service);
    expect(requestGrant(service, "not a run id!")).toBeUndefined();
  });

  it("ignores the header for a task token", () => {
    const task = { runId: "run-1", taskId: "t1" };
    expect(requestGrant(task, "run-2")).toBe(task);
  });
});

describe("upstream body", () => {
  const body = (o: unknown) => {
    const raw = Buffer.from(JSON.stringify(o));
    const parsed = JSON.parse(raw.toString()) as unknown;
    return { raw, parsed, view: viewChatBody(parsed)! };
  };

  it("given a stream without usage, then usage is asked for (kept in place) and its event marked to strip", () => {
    const b = body({ model: "m", stream: true, stream_options: { x: 1 }, messages: [] });
    const out = upstreamBody(b.parsed, b.raw, b.view);
    expect(out.strip).toBe(true);
    expect(out.body.toString()).toBe(
      '{"model":"m","stream":true,"stream_options":{"x":1,"include_usage":true},"messages":[]}',
    );
    expect(b.parsed).toEqual({ model: "m", stream: true, stream_options: { x: 1 }, messages: [] });
  });

  it("given a non-streaming request or one asking for usage, then the client's bytes go upstream", () => {
    for (const o of [
      { messages: [] },
      { stream: true, stream_options: { include_usage: true }, messages: [] },
    ]) {
      const b = body(o);
      expect(upstreamBody(b.parsed, b.raw, b.view)).toEqual({ body: b.raw, strip: false });
    }
  });
});
