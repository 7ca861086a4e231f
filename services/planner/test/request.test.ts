import {
  type AcceptedRun,
  branchNameProblem,
  MAX_PROMPT_BYTES,
  MAX_REQUEST_BYTES,
} from "@longshot/contracts";
import { describe, expect, it } from "vitest";
import {
  fallbackRunId,
  generatedRunId,
  parseRequest,
  type RawRequest,
  requestConflicts,
  requestRunId,
  runStateProblem,
} from "../src/domain/request.ts";
import { REF_NAME_CASES } from "./ref-names.ts";

/** A raw request whose body is `value` serialized (size measured like the handler does). */
function raw(value: unknown, over: Partial<RawRequest> = {}): RawRequest {
  return {
    bytes: Buffer.byteLength(JSON.stringify(value)),
    body: { json: true, value },
    seq: 7,
    storedAtNs: 1_700_000_000_000_000_000,
    ...over,
  };
}

const REQ = { prompt: "Build a todo API", repo: "/srv/repo" };

describe("branchNameProblem (git check-ref-format rules)", () => {
  it.each(REF_NAME_CASES)("$name → ok: $ok", ({ name, ok, why }) => {
    const problem = branchNameProblem(name);
    if (ok) expect(problem).toBeUndefined();
    else expect(problem).toContain(why);
  });
});

describe("parseRequest", () => {
  it("given a valid request, then it is parsed with the prompt and repo trimmed", () => {
    const r = parseRequest(raw({ prompt: "  do it ", repo: " /srv/repo ", baseBranch: "release/v1" }));
    expect(r).toEqual({
      ok: true,
      request: { prompt: "do it", repo: "/srv/repo", baseBranch: "release/v1" },
    });
  });

  it("given a prompt of exactly 256 KiB in UTF-8, then it is accepted; one byte more is rejected with both sizes", () => {
    const at = "é".repeat(MAX_PROMPT_BYTES / 2); // 2 bytes each
    expect(parseRequest(raw({ ...REQ, prompt: at })).ok).toBe(true);
    const over = parseRequest(raw({ ...REQ, prompt: `${at}x` }));
    expect(over).toEqual({
      ok: false,
      errors: [
        {
          path: "prompt",
          message: `prompt is ${MAX_PROMPT_BYTES + 1} bytes; at most 262144 bytes (256 KiB, UTF-8) are accepted`,
        },
      ],
    });
  });

  it("given a body over 1 MiB, then the request size is reported along with the prompt's", () => {
    const body = { ...REQ, prompt: "p".repeat(3 * 1024 * 1024) };
    const r = parseRequest(raw(body));
    expect(r.ok).toBe(false);
    const errors = r.ok ? [] : r.errors;
    expect(errors.map((e) => e.path)).toEqual(["", "prompt"]);
    expect(errors[0]!.message).toBe(
      `request is ${Buffer.byteLength(JSON.stringify(body))} bytes; at most ${MAX_REQUEST_BYTES} bytes (1 MiB) are accepted`,
    );
  });

  it("given a body that is not JSON, then that is the error", () => {
    expect(parseRequest({ bytes: 5, body: { json: false } })).toEqual({
      ok: false,
      errors: [{ path: "", message: "payload is not JSON" }],
    });
  });

  it("given a bad baseBranch, an invalid runId and an unknown field, then every problem is listed with its path", () => {
    const r = parseRequest(raw({ ...REQ, baseBranch: "a..b", runId: "no spaces allowed", extra: 1 }));
    expect(r.ok).toBe(false);
    const errors = r.ok ? [] : r.errors;
    expect(errors).toContainEqual({
      path: "baseBranch",
      message: "baseBranch must not contain '..' (git check-ref-format rules)",
    });
    expect(errors.map((e) => e.path).sort()).toEqual(["", "baseBranch", "runId"]);
  });

  it("given a repo longer than 4096 characters, then it is rejected", () => {
    const r = parseRequest(raw({ ...REQ, repo: `/${"r".repeat(4096)}` }));
    expect(r.ok ? [] : r.errors.map((e) => e.path)).toEqual(["repo"]);
  });
});

describe("requestRunId: where a request's events and rejection go", () => {
  it.each([
    {
      name: "a valid body runId wins over the header",
      body: { runId: "run-a" },
      msgId: "hdr-1",
      id: "run-a",
    },
    {
      name: "an invalid body runId falls back to the header",
      body: { runId: "bad id" },
      msgId: "hdr-1",
      id: "hdr-1",
    },
    { name: "no body runId: the header", body: {}, msgId: "hdr-1", id: "hdr-1" },
    { name: "a header that is no valid run id is not used", body: {}, msgId: "a.b c", id: undefined },
    { name: "nothing usable", body: { runId: 42 }, msgId: undefined, id: undefined },
  ])("$name", ({ body, msgId, id }) => {
    expect(requestRunId(raw(body, { msgId }))).toBe(id);
  });

  it("given an unparseable body, then only the header can name it; else the fallback is request-<seq>", () => {
    expect(requestRunId({ ...raw({}), body: { json: false }, msgId: "hdr-2" })).toBe("hdr-2");
    expect(requestRunId({ ...raw({}), body: { json: false } })).toBeUndefined();
    expect(fallbackRunId({ seq: 42 })).toBe("request-42");
  });

  it("generated run ids are the same for a redelivery and differ between messages", () => {
    const a = generatedRunId({ seq: 1, storedAtNs: 5 });
    expect(a).toMatch(/^run-[0-9a-f]{12}$/);
    expect(generatedRunId({ seq: 1, storedAtNs: 5 })).toBe(a);
    expect(generatedRunId({ seq: 2, storedAtNs: 5 })).not.toBe(a);
    expect(generatedRunId({ seq: 1, storedAtNs: 6 })).not.toBe(a);
  });
});

describe("requestConflicts: a run id used again", () => {
  const stored: AcceptedRun = { runId: "r", ...REQ, baseBranch: "main", maxWorkers: 50 };

  it("given the same prompt and repo and no explicit options, then it is the same request", () => {
    expect(requestConflicts(stored, { ...REQ, runId: "r" })).toEqual([]);
    expect(requestConflicts(stored, { ...REQ, baseBranch: "main", maxWorkers: 50 })).toEqual([]);
  });

  it("given a different repo, prompt or explicit option, then those fields are named", () => {
    expect(requestConflicts(stored, { ...REQ, repo: "/other" })).toEqual(["repo"]);
    expect(
      requestConflicts(stored, { prompt: "else", repo: "/other", baseBranch: "dev", maxWorkers: 2 }),
    ).toEqual(["prompt", "repo", "baseBranch", "maxWorkers"]);
  });
});

describe("runStateProblem: the run's state must fit one KV value", () => {
  const run: AcceptedRun = {
    runId: "r",
    ...REQ,
    prompt: "p".repeat(MAX_PROMPT_BYTES),
    baseBranch: "main",
    maxWorkers: 5,
  };

  it("given the largest accepted prompt and nats-server's default max_payload (1 MiB), then it fits", () => {
    expect(runStateProblem(run, 1024 * 1024)).toBeUndefined();
  });

  it("given a server with a smaller max_payload, then the request is refused with the sizes", () => {
    expect(runStateProblem(run, 512 * 1024)).toMatch(
      /^the run's state would need about \d+ bytes; this cluster stores at most 524288 bytes per value/,
    );
  });
});
