import { describe, expect, it } from "vitest";
import {
  type ChatMessage,
  type CompletionPlan,
  type ErrorPlan,
  parseChatRequest,
  parseScript,
  type ResponsePlan,
  respond,
  type ScriptInput,
  streamEvents,
} from "../src/index.ts";

const sys = (content: string): ChatMessage => ({ role: "system", content });
const user = (content: string): ChatMessage => ({ role: "user", content });
const assistant = (content: string | null = "ok"): ChatMessage => ({ role: "assistant", content });
const tool = (content = "result"): ChatMessage => ({ role: "tool", content });

function completion(plan: ResponsePlan): CompletionPlan {
  if (plan.kind !== "completion") throw new Error(`expected completion, got ${JSON.stringify(plan)}`);
  return plan;
}
function failure(plan: ResponsePlan): ErrorPlan {
  if (plan.kind !== "error") throw new Error(`expected error, got ${JSON.stringify(plan)}`);
  return plan;
}

const base: ScriptInput = {
  model: "sim-test",
  conversations: [
    {
      name: "planner",
      match: { system: "You are the root planner", user: "/rest\\s+api/i" },
      turns: [{ content: "plan-1" }, { content: "plan-2" }],
    },
    {
      name: "worker users-store",
      match: { system: "You are a worker", user: "## Task: users-store\n" },
      after: "error",
      turns: [
        { toolCalls: [{ name: "write", arguments: { path: "src/users.ts", content: "x" } }] },
        { toolCalls: [{ name: "bash", arguments: '{"command":"node --test"}', id: "fixed-id" }], delayMs: 5 },
        { content: "Done." },
      ],
    },
    { name: "faulty", match: { user: "FAULT" }, turns: [{ error: { status: 503, message: "overloaded" } }] },
    { name: "fallback", turns: [{ content: "fallback answer" }] },
  ],
};
const script = parseScript(base);
const run = (messages: ChatMessage[], extra: Record<string, unknown> = {}) => {
  let n = 0;
  return respond(script, { messages, ...extra }, { newToolCallId: () => `gen-${n++}` });
};

describe("conversation matching", () => {
  it("picks the first conversation whose every matcher matches", () => {
    const plan = completion(run([sys("You are the root planner. Be brief."), user("Build a REST  API")]));
    expect(plan.conversation).toBe("planner");
    expect(plan.content).toBe("plan-1");
  });

  it("requires every given matcher: a system match alone is not enough", () => {
    const plan = completion(run([sys("You are the root planner"), user("something else")]));
    expect(plan.conversation).toBe("fallback");
  });

  it("treats /.../flags as a regex and anything else as a plain substring", () => {
    // regex with the i flag and \s+
    expect(completion(run([sys("You are the root planner"), user("a rest \t api")])).conversation).toBe(
      "planner",
    );
    // substring: regex metacharacters are literal, and the newline is required
    expect(
      completion(run([sys("You are a worker"), user("intro\n## Task: users-store\nbody")])).conversation,
    ).toBe("worker users-store");
    expect(completion(run([sys("You are a worker"), user("## Task: users-store")])).conversation).toBe(
      "fallback",
    );
    const s = parseScript({
      conversations: [{ name: "dots", match: { user: "a.c" }, turns: [{ content: "x" }] }],
    });
    expect(respond(s, { messages: [user("abc")] }).kind).toBe("error");
    expect(respond(s, { messages: [user("xa.cx")] }).kind).toBe("completion");
  });

  it("tests match.system against system and developer messages together", () => {
    const s = parseScript({
      conversations: [{ name: "dev", match: { system: "/alpha\\nbeta/" }, turns: [{ content: "x" }] }],
    });
    const plan = respond(s, {
      messages: [sys("alpha"), { role: "developer", content: [{ type: "text", text: "beta" }] }, user("u")],
    });
    expect(completion(plan).conversation).toBe("dev");
  });

  it("tests match.user against the FIRST user message only", () => {
    const plan = run([sys("You are the root planner"), user("nothing"), assistant(), user("REST API")]);
    expect(completion(plan).conversation).toBe("fallback");
  });

  it("respects conversation order (fallback first shadows everything)", () => {
    const s = parseScript({
      conversations: [
        { name: "catch-all", turns: [{ content: "a" }] },
        { name: "specific", match: { user: "x" }, turns: [{ content: "b" }] },
      ],
    });
    expect(completion(respond(s, { messages: [user("x")] })).conversation).toBe("catch-all");
  });

  it("answers 400 naming the first user message and the conversations when nothing matches", () => {
    const s = parseScript({
      conversations: [
        { name: "one", match: { user: "nope" }, turns: [{ content: "a" }] },
        { name: "two", match: { system: "nope" }, turns: [{ content: "b" }] },
      ],
    });
    const long = `hello ${"y".repeat(300)}`;
    const plan = failure(respond(s, { messages: [user(long)] }));
    expect(plan.status).toBe(400);
    expect(plan.error.code).toBe("no_matching_conversation");
    expect(plan.error.type).toBe("invalid_request_error");
    expect(plan.error.message).toContain(JSON.stringify(long.slice(0, 200)));
    expect(plan.error.message).not.toContain(long.slice(0, 201));
    expect(plan.error.message).toContain('"one", "two"');
  });
});

describe("turn selection", () => {
  const worker = [sys("You are a worker"), user("## Task: users-store\nwrite it")];

  it("uses the number of assistant messages as the turn index", () => {
    const t0 = completion(run(worker));
    expect(t0.turnIndex).toBe(0);
    expect(t0.toolCalls).toEqual([
      { id: "gen-0", name: "write", arguments: '{"path":"src/users.ts","content":"x"}' },
    ]);
    expect(t0.finishReason).toBe("tool_calls");
    expect(t0.content).toBeNull();

    const t1 = completion(run([...worker, assistant(null), tool()]));
    expect(t1.turnIndex).toBe(1);
    expect(t1.toolCalls).toEqual([{ id: "fixed-id", name: "bash", arguments: '{"command":"node --test"}' }]);
    expect(t1.delayMs).toBe(5);

    const t2 = completion(run([...worker, assistant(null), tool(), assistant(null), tool()]));
    expect(t2.turnIndex).toBe(2);
    expect(t2.content).toBe("Done.");
    expect(t2.finishReason).toBe("stop");
    expect(t2.toolCalls).toEqual([]);
  });

  it("repeats the last turn past the end by default", () => {
    const planner = [sys("You are the root planner"), user("REST API")];
    const plan = completion(
      run([...planner, assistant(), user("again"), assistant(), user("again"), assistant()]),
    );
    expect(plan.turnIndex).toBe(3);
    expect(plan.content).toBe("plan-2");
  });

  it('answers 400 script_exhausted past the end with after: "error"', () => {
    const msgs = [...worker, assistant(), tool(), assistant(), tool(), assistant(), user("more?")];
    const plan = failure(run(msgs));
    expect(plan.status).toBe(400);
    expect(plan.error.code).toBe("script_exhausted");
    expect(plan.conversation).toBe("worker users-store");
    expect(plan.turnIndex).toBe(3);
    expect(plan.error.message).toContain("ran out");
  });

  it("turns a scripted error turn into an error plan", () => {
    const plan = failure(run([user("FAULT please")]));
    expect(plan).toMatchObject({ status: 503, conversation: "faulty", turnIndex: 0 });
    expect(plan.error).toEqual({ message: "overloaded", type: "server_error", code: "injected_fault" });
  });

  it("generates distinct tool call ids within one response", () => {
    const s = parseScript({
      conversations: [
        {
          name: "multi",
          turns: [
            {
              toolCalls: [
                { name: "read", arguments: { path: "a" } },
                { name: "read", arguments: { path: "b" } },
              ],
            },
          ],
        },
      ],
    });
    const plan = completion(respond(s, { messages: [user("x")] }));
    expect(plan.toolCalls).toHaveLength(2);
    expect(plan.toolCalls[0]!.id).toMatch(/^call_[0-9a-f]{24}$/);
    expect(plan.toolCalls[0]!.id).not.toBe(plan.toolCalls[1]!.id);
  });
});

describe("usage and stream flags", () => {
  it("estimates tokens as ceil(chars/4) of prompt content and of the output", () => {
    const plan = completion(
      run([
        sys("You are the root planner"), // 24 chars
        user("REST API"), // 8 chars
        { role: "assistant", content: null, tool_calls: [{ function: { name: "ab", arguments: "{}" } }] }, // 4 chars
        { role: "user", content: [{ type: "text", text: "12345" }] }, // 5 chars
      ]),
    );
    expect(plan.usage.prompt_tokens).toBe(Math.ceil(41 / 4));
    expect(plan.usage.completion_tokens).toBe(Math.ceil("plan-2".length / 4));
    expect(plan.usage.total_tokens).toBe(plan.usage.prompt_tokens + plan.usage.completion_tokens);
    expect(plan.usage.prompt_tokens_details).toEqual({ cached_tokens: 0 });
    expect(plan.stream).toBe(false);
    expect(plan.includeUsage).toBe(false);
  });

  it("reads stream and stream_options.include_usage", () => {
    const plan = completion(run([user("x")], { stream: true, stream_options: { include_usage: true } }));
    expect(plan.stream).toBe(true);
    expect(plan.includeUsage).toBe(true);
    expect(completion(run([user("x")], { stream: true })).includeUsage).toBe(false);
  });
});

describe("parseChatRequest", () => {
  it("accepts unknown fields (Pi sends store, max_completion_tokens, tools, ...)", () => {
    const r = parseChatRequest({
      model: "m",
      messages: [{ role: "user", content: "hi" }],
      store: false,
      max_completion_tokens: 100,
      tools: [{ type: "function", function: { name: "bash", parameters: {} } }],
      stream_options: { include_usage: true },
    });
    expect(r.ok).toBe(true);
  });

  it("rejects a request without messages", () => {
    const r = parseChatRequest({ model: "m" });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatchObject({ status: 400, error: { code: "invalid_request" } });
  });
});

describe("streamEvents", () => {
  it("splits tool call arguments over several deltas after a header delta", () => {
    const plan = completion(run([sys("You are a worker"), user("## Task: users-store\n")], { stream: true }));
    const events = streamEvents(plan, { id: "chatcmpl-1", created: 1 });
    const deltas = events.map((e) => (e.chunk.choices as { delta: Record<string, unknown> }[])[0]?.delta);
    const toolDeltas = deltas.filter((d) => d?.tool_calls !== undefined);
    expect(toolDeltas[0]).toEqual({
      tool_calls: [{ index: 0, id: "gen-0", type: "function", function: { name: "write", arguments: "" } }],
    });
    expect(toolDeltas.length).toBeGreaterThan(2);
    const args = toolDeltas
      .map((d) => (d!.tool_calls as { function: { arguments: string } }[])[0]!.function.arguments)
      .join("");
    expect(JSON.parse(args)).toEqual({ path: "src/users.ts", content: "x" });
    expect(events.at(-1)!.chunk.choices).toEqual([
      { index: 0, delta: {}, logprobs: null, finish_reason: "tool_calls" },
    ]);
  });
});
