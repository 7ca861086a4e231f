import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { WorkerInput } from "@longshot/contracts";
import { killTree, scrubEnv } from "../adapters/shell.ts";
import type { Harness, HarnessProgress, HarnessResult } from "./types.ts";

/** Most stdout kept as the final text (the tail), in bytes. */
const MAX_OUTPUT_BYTES = 1_000_000;
/** Stderr tail kept for the error message, in chars. */
const STDERR_TAIL_CHARS = 2_000;

/** Error thrown when the command harness is selected without a command template. */
export class MissingWorkerCommandError extends Error {
  constructor(options?: ErrorOptions) {
    super("harness 'command' needs the env variable WORKER_COMMAND (a shell command template)", options);
    this.name = "MissingWorkerCommandError";
  }
}

/**
 * Replaces `{prompt_file}` in a command template with the shell-quoted path of the prompt file. Pure.
 */
export function renderCommand(template: string, promptFile: string): string {
  return template.split("{prompt_file}").join(shellQuote(promptFile));
}

/**
 * The command harness: runs any CLI agent given as a shell command template (env `WORKER_COMMAND`, e.g.
 * `opencode run "$(cat {prompt_file})"`) with `bash -c` in `input.repoDir`, in the worker's process group,
 * with the worker environment minus secrets plus `LONGSHOT_LLM_BASE_URL` (`baseUrl`: the model relay, which
 * needs no key) and `LONGSHOT_LLM_MODEL`.
 * `{prompt_file}` is replaced by a temp file holding the task prompt. The final text is the command's
 * stdout (its last 1 MB); a non-zero exit is `stopReason: "error"` with the stderr tail. Token and
 * tool-call counts are unknown to this harness and reported as 0.
 * @throws MissingWorkerCommandError when `template` is empty.
 */
export function createCommandHarness(template: string | undefined, baseUrl: string): Harness {
  if (!template || template.trim().length === 0) throw new MissingWorkerCommandError();
  return {
    async run(
      input: WorkerInput,
      prompt: string,
      onProgress: (p: HarnessProgress) => void,
      signal: AbortSignal,
    ) {
      const dir = await mkdtemp(join(tmpdir(), "longshot-cmd-"));
      try {
        const promptFile = join(dir, "prompt.md");
        await writeFile(promptFile, prompt);
        onProgress({ message: "command started" });
        return await runCommand(renderCommand(template, promptFile), input, baseUrl, signal);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

function runCommand(
  command: string,
  input: WorkerInput,
  baseUrl: string,
  signal: AbortSignal,
): Promise<HarnessResult> {
  return new Promise((resolve) => {
    const env = scrubEnv(process.env);
    delete env.WORKER_COMMAND;
    env.LONGSHOT_LLM_BASE_URL = baseUrl;
    env.LONGSHOT_LLM_MODEL = input.llm.model;
    const child = spawn("bash", ["-c", command], {
      cwd: input.repoDir,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout = (stdout + chunk).slice(-MAX_OUTPUT_BYTES);
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-STDERR_TAIL_CHARS);
    });
    const onAbort = () => {
      if (child.pid !== undefined) killTree(child.pid);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    const done = (result: Omit<HarnessResult, "tokensUsed" | "toolCallCount">) => {
      signal.removeEventListener("abort", onAbort);
      resolve({ ...result, tokensUsed: 0, toolCallCount: 0 });
    };
    let settled = false;
    child.once("error", (err) => {
      if (settled) return;
      settled = true;
      done({
        finalText: stdout,
        stopReason: "error",
        errorMessage: `command failed to start: ${err.message}`,
      });
    });
    const finish = (code: number | null, sig: NodeJS.Signals | null) => {
      if (signal.aborted) done({ finalText: stdout, stopReason: "aborted" });
      else if (code === 0) done({ finalText: stdout, stopReason: "stop" });
      else
        done({
          finalText: stdout,
          stopReason: "error",
          errorMessage: `command exited with ${code ?? sig}: ${stderr.trim()}`,
        });
    };
    // Prefer `close` (all output read); a background process holding the pipes must not hang us past exit.
    const settle = (code: number | null, sig: NodeJS.Signals | null) => {
      if (settled) return;
      settled = true;
      child.stdout.destroy();
      child.stderr.destroy();
      finish(code, sig);
    };
    child.once("close", settle);
    child.once("exit", (code, sig) => setTimeout(() => settle(code, sig), 1_000).unref());
  });
}

function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}
