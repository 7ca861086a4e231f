import { describe, expect, it } from "vitest";
import { scrubEnv } from "../src/adapters/shell.ts";
import { renderCommand } from "../src/harness/command.ts";

describe("scrubEnv", () => {
  it("drops the model key, NATS settings and key/token/secret/password-like names", () => {
    const env = scrubEnv({
      PATH: "/bin",
      HOME: "/h",
      LONGSHOT_LLM_API_KEY: "k",
      NATS_URL: "nats://x",
      GITHUB_TOKEN: "t",
      DB_PASSWORD: "p",
      MY_SECRET: "s",
      OPENAI_API_KEY: "o",
      GIT_AUTHOR_NAME: "Bot",
    });
    expect(env).toEqual({ PATH: "/bin", HOME: "/h", GIT_AUTHOR_NAME: "Bot" });
  });
});

describe("renderCommand", () => {
  it("replaces every {prompt_file} with the shell-quoted path", () => {
    expect(renderCommand("agent --prompt {prompt_file} && cat {prompt_file}", "/tmp/it's here/p.md")).toBe(
      "agent --prompt '/tmp/it'\\''s here/p.md' && cat '/tmp/it'\\''s here/p.md'",
    );
  });
});
