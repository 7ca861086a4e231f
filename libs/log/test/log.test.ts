import { describe, expect, it } from "vitest";
import { createLogger, SecretSet } from "../src/index.ts";

/** A pino destination that keeps every line written to it. */
function collector() {
  const lines: string[] = [];
  return {
    lines,
    destination: { write: (line: string) => void lines.push(line) },
    /** The last line, parsed. */
    last: () => JSON.parse(lines.at(-1) ?? "null") as Record<string, unknown>,
  };
}

const SECRET = "sk-live-0123456789abcdef";

describe("createLogger", () => {
  it("given a child logger, then lines are JSON with service, level and the child's fields", () => {
    const out = collector();
    const log = createLogger({ service: "planner", level: "info", destination: out.destination });
    log.child({ runId: "run-1" }).info({ iteration: 2 }, "planned");
    log.debug("not at info level");
    expect(out.lines).toHaveLength(1);
    expect(out.last()).toMatchObject({
      service: "planner",
      name: "longshot-planner",
      level: 30,
      runId: "run-1",
      iteration: 2,
      msg: "planned",
    });
  });

  it("given secret fields at the top level and nested, then their values are [redacted]", () => {
    const out = collector();
    const log = createLogger({ service: "test", level: "info", destination: out.destination });
    log.info(
      {
        apiKey: "sk-top-level-key",
        llm: { apiKey: "sk-nested-key", model: "glm-5" },
        headers: { authorization: "Bearer tok-abc", accept: "application/json" },
        cfg: { endpoint: { apiKey: "sk-two-deep", name: "a" } },
        token: "tok-top",
      },
      "calling model",
    );
    const line = out.last();
    expect(line.apiKey).toBe("[redacted]");
    expect(line.llm).toEqual({ apiKey: "[redacted]", model: "glm-5" });
    expect(line.headers).toEqual({ authorization: "[redacted]", accept: "application/json" });
    expect(line.cfg).toEqual({ endpoint: { apiKey: "[redacted]", name: "a" } });
    expect(line.token).toBe("[redacted]");
    const raw = out.lines.join("");
    for (const s of ["sk-top-level-key", "sk-nested-key", "tok-abc", "sk-two-deep", "tok-top"]) {
      expect(raw).not.toContain(s);
    }
  });

  it("given a secret value, then it is replaced inside free-text messages and arbitrary fields", () => {
    const out = collector();
    const log = createLogger({
      service: "test",
      level: "info",
      secrets: [SECRET, undefined],
      destination: out.destination,
    });
    log.info(`retrying with key ${SECRET} against the gateway`);
    expect(out.last().msg).toBe("retrying with key [redacted] against the gateway");
    log.warn({ note: `prefix${SECRET}suffix`, list: [SECRET] }, "odd field");
    expect(out.last()).toMatchObject({ note: "prefix[redacted]suffix", list: ["[redacted]"] });
    expect(out.lines.join("")).not.toContain(SECRET);
  });

  it("given a secret value inside an error, then the error's message and stack are redacted", () => {
    const out = collector();
    const log = createLogger({
      service: "test",
      level: "info",
      secrets: [SECRET],
      destination: out.destination,
    });
    const err = new Error(`401 Unauthorized: invalid key ${SECRET}`);
    log.error({ err }, "model call failed");
    const line = out.last() as { err: { message: string; stack: string; type: string }; msg: string };
    expect(line.err.type).toBe("Error");
    expect(line.err.message).toBe("401 Unauthorized: invalid key [redacted]");
    expect(line.err.stack).toContain("invalid key [redacted]");
    log.error(new Error(`cause: ${SECRET}`));
    expect(out.last().msg).toBe("cause: [redacted]");
    expect(out.lines.join("")).not.toContain(SECRET);
  });

  it("given a SecretSet that gains and loses values, then each line is redacted by the set as it is then", () => {
    const out = collector();
    const secrets = new SecretSet();
    const log = createLogger({ service: "test", level: "info", secrets, destination: out.destination });
    log.info(`key ${SECRET}`);
    expect(out.last().msg).toBe(`key ${SECRET}`);
    secrets.add(SECRET);
    secrets.add("abc"); // too short to redact: ordinary words would go
    secrets.add(undefined);
    expect(secrets.size).toBe(1);
    log.info(`key ${SECRET}, abc`);
    expect(out.last().msg).toBe("key [redacted], abc");
    expect(secrets.delete(SECRET)).toBe(true);
    log.info(`key ${SECRET}`);
    expect(out.last().msg).toBe(`key ${SECRET}`);
  });

  it("given overlapping secrets, then they are replaced in the order they were added", () => {
    const set = new SecretSet(["secret-long-value", "secret"]);
    expect(set.redact("a secret-long-value and a secret")).toBe("a [redacted] and a [redacted]");
  });

  it("given no secrets, then free text is left as is", () => {
    const out = collector();
    const log = createLogger({ service: "test", level: "info", destination: out.destination });
    log.info(`key ${SECRET}`);
    expect(out.last().msg).toBe(`key ${SECRET}`);
  });
});
