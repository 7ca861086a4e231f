import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { logTails, tempDir, waitFor } from "@longshot/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type SimLlmProcess, startSimLlmProcess } from "../src/demo.ts";
import { makeListRepo, writeScript } from "./fixtures.ts";

// `--dashboard` in a real terminal: the CLI runs in tmux (160×45), the test reads the screen with capture-pane
// while a 3-task run fills the agent grid and drains the merge queue.

const run = promisify(execFile);
const KEY = "sim-dashboard-key-7e21";
const MAIN = join(import.meta.dirname, "../src/main.ts");
const SESSION = `longshot-dash-${process.pid}`;
let dir: Awaited<ReturnType<typeof tempDir>>;
let sim: SimLlmProcess;

const tmux = (...args: string[]) => run("tmux", args).then((r) => r.stdout);
const screen = () => tmux("capture-pane", "-p", "-t", SESSION);

beforeAll(async () => {
  dir = await tempDir("longshot-dashboard-");
  sim = await startSimLlmProcess(await writeScript(dir.path, 3), KEY);
  await makeListRepo(join(dir.path, "repo"));
  await writeFile(
    join(dir.path, ".env"),
    `LLM_BASE_URL=${sim.url}\nLLM_API_KEY=${KEY}\nLLM_MODEL=${sim.model}\nMAX_WORKERS=3\n`,
  );
}, 60_000);

afterAll(async () => {
  await tmux("kill-session", "-t", SESSION).catch(() => {});
  await sim?.stop();
  await dir?.cleanup();
});

describe("longshot --dashboard", () => {
  it("shows the agent grid filling and the merge queue draining, then the summary", async () => {
    const cmd = [
      `cd ${dir.path}`,
      `LONGSHOT_STATE_DIR=${join(dir.path, "state")} ${process.execPath} ${MAIN} "Add list helpers" --repo repo --run-id run-dash --dashboard`,
      "echo EXIT=$?",
      "sleep 600",
    ].join(" && ");
    await tmux("new-session", "-d", "-s", SESSION, "-x", "160", "-y", "45", `bash -c '${cmd}'`);
    // A terminal shows frames, not events: sample the screen.
    const frames: string[] = [];
    const sample = async () => {
      const s = await screen();
      if (frames.at(-1) !== s) frames.push(s);
      return s;
    };
    // On a timeout: the last frame and every service's log (a healthy run takes 25 s alone, 70 s beside the
    // demo and the scale test; the limits are for a loaded CI machine).
    const explain = async () =>
      `last screen:\n${frames.at(-1) ?? "(none)"}\n${await logTails(join(dir.path, "state", "logs"))}`;
    const running = await waitFor(
      async () => {
        const s = await sample();
        return /● running/.test(s) && /add-first|add-last|add-second/.test(s) ? s : undefined;
      },
      150_000,
      100,
      explain,
    );
    expect(running).toContain("longshot · run run-dash");
    expect(running).toMatch(/TASK +STATE +ELAPSED +LAST/);
    expect(running).toMatch(/commits\/h [\d.]+ │ merge rate/);
    const queued = await waitFor(
      async () => {
        const s = await sample();
        return /merge queue \([1-9]\): add-/.test(s) ? s : undefined;
      },
      120_000,
      100,
      explain,
    );
    expect(queued).toMatch(/merge queue \([1-9]\)/);
    const drained = await waitFor(
      async () => {
        const s = await sample();
        return /3 tasks: 0 running, 0 waiting, 0 finished, 3 merged/.test(s) ? s : undefined;
      },
      120_000,
      100,
      explain,
    );
    expect(drained).toContain("merge queue (0): empty");
    expect(drained).toMatch(/merged 3 │ tokens [\d,]+/);
    expect(drained).toMatch(/activity[\s\S]*merged +add-/);
    // Back on the normal screen: the summary and a green exit.
    const end = await waitFor(
      async () => {
        const s = await screen();
        return s.includes("EXIT=") ? s : undefined;
      },
      60_000,
      200,
      explain,
    );
    expect(end).toContain("Run run-dash: GREEN");
    expect(end).toContain("EXIT=0");
    expect(frames.length).toBeGreaterThan(3);
  }, 420_000);
});
