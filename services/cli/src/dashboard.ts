import type { Bus } from "@longshot/bus";
import type { LlmRunUsage } from "@longshot/contracts";
import { Box, render, Text, useInput } from "ink";
import { createElement as h, type ReactNode } from "react";
import type { RunDisplay } from "./commands.ts";
import type { StoredEvent } from "./events.ts";
import { readLlmUsage } from "./follow.ts";
import { countByState, formatDuration, type RunView, runRates, type TaskView } from "./run-view.ts";

/**
 * `--dashboard`: a full-screen terminal view of one run, drawn with Ink (React for terminals; chosen because it is
 * maintained, lays out with flexbox and redraws only what changed): a header, the agent grid (every task with its
 * sandbox's state, elapsed time and last progress message), the merge queue, a metrics bar (commits/h, merge rate,
 * tokens, cost, base branch health) and the activity feed. Everything comes from the run's events (the same
 * {@link RunView} as `longshot status`) plus the gateway's usage record for the cost. `q` or Ctrl-C stops (like
 * SIGINT: a run of an embedded cluster stays in the store for `longshot resume`).
 */

/** What one frame shows. */
export interface DashboardState {
  view: RunView;
  activity: string[];
  usage?: LlmRunUsage;
  now: number;
  columns: number;
  rows: number;
}

const STATE_COLOR: Record<string, string> = {
  planned: "gray",
  running: "yellow",
  finished: "cyan",
  merged: "green",
  conflict: "red",
  skipped: "gray",
  "merge-failed": "red",
  decomposed: "blue",
};

const cut = (s: string, n: number) => (s.length > n ? `${s.slice(0, Math.max(0, n - 1))}…` : s.padEnd(n));

function elapsed(t: TaskView, now: number): string {
  if (!t.startedAt) return "-";
  return formatDuration((t.finishedAt ?? now) - t.startedAt);
}

/** The dashboard's frame for `s` (a pure React tree, rendered by Ink). */
export function Frame(s: DashboardState): ReactNode {
  const { view: v, now } = s;
  const width = Math.max(60, s.columns);
  const c = countByState(v);
  const rates = runRates(v, now);
  const status = v.status === "unknown" ? "waiting for the planner" : v.status;
  const header = `longshot · run ${v.runId} · ${status} · ${v.repo ?? ""}${v.baseBranch ? ` (${v.baseBranch})` : ""} · ${v.acceptedAt ? formatDuration((v.completedAt ?? now) - v.acceptedAt) : "-"}`;
  const tasks = [...v.tasks.values()];
  // Rows left for the grid once the other parts are drawn (header 2, grid header 2, queue 3, metrics 3, feed ≥ 4).
  const gridRows = Math.max(3, s.rows - 16);
  const shown = tasks.slice(-gridRows);
  const idW = Math.min(28, Math.max(6, ...tasks.map((t) => t.id.length)));
  const msgW = Math.max(10, width - idW - 34);
  const mergeRate = rates.mergeRate === undefined ? "-" : `${Math.round(rates.mergeRate * 100)} %`;
  const cost = s.usage && s.usage.cost > 0 ? `$${s.usage.cost.toFixed(4)}` : "-";
  const tokens = (s.usage?.totalTokens ?? v.tokens).toLocaleString("en-US");
  const health = v.health
    ? `${v.baseBranch ?? "main"} ${v.health.green ? "green" : `red (${v.health.failing.join(", ")})`} @ ${v.health.sha.slice(0, 8)}`
    : `${v.baseBranch ?? "main"} not swept yet`;
  const feedRows = Math.max(3, s.rows - gridRows - 14);
  return h(
    Box,
    { flexDirection: "column", width },
    h(Text, { bold: true, inverse: true }, cut(` ${header}`, width)),
    h(
      Text,
      null,
      ` agents  ${tasks.length} tasks: ${c.running} running, ${c.planned} waiting, ${c.finished} finished, ${c.merged} merged, ${c.conflict} conflict${c["merge-failed"] ? `, ${c["merge-failed"]} merge failed` : ""}`,
    ),
    h(
      Box,
      { flexDirection: "column", borderStyle: "round", paddingX: 1 },
      h(
        Text,
        { dimColor: true },
        `${"TASK".padEnd(idW)}  ${"STATE".padEnd(12)}  ${"ELAPSED".padEnd(10)}  LAST`,
      ),
      ...shown.map((t) =>
        h(
          Text,
          { key: t.id },
          `${cut(t.id, idW)}  `,
          h(
            Text,
            { color: STATE_COLOR[t.state] ?? "white" },
            cut(t.state === "running" ? "● running" : t.state, 12),
          ),
          `  ${cut(elapsed(t, now), 10)}  ${cut(t.lastMessage ?? t.description, msgW)}`,
        ),
      ),
      tasks.length === 0 ? h(Text, { dimColor: true }, "no task planned yet") : null,
    ),
    h(
      Text,
      null,
      ` merge queue (${v.mergeQueue.length}): `,
      h(
        Text,
        { color: v.mergeQueue.length ? "cyan" : "gray" },
        cut(v.mergeQueue.join(" → ") || "empty", width - 20),
      ),
    ),
    h(
      Text,
      { inverse: true },
      cut(
        ` commits/h ${rates.commitsPerHour.toFixed(1)} │ merge rate ${mergeRate} │ merged ${v.merged} │ tokens ${tokens} │ cost ${cost} │ ${health}`,
        width,
      ),
    ),
    h(Text, { bold: true }, " activity"),
    ...s.activity
      .slice(-feedRows)
      .map((l, i) => h(Text, { key: `a${i}`, dimColor: i < s.activity.length - 3 }, cut(` ${l}`, width))),
  );
}

function Keys(props: { onQuit: () => void }): ReactNode {
  useInput((input, key) => {
    if (input === "q" || (key.ctrl && input === "c")) props.onQuit();
  });
  return null;
}

/**
 * Opens the dashboard of `runId` on the terminal (alternate screen; restored by `close`). Re-reads the run's LLM
 * usage every 2 s for the cost; redraws at most 10 times a second and once a second for elapsed times.
 */
export async function openDashboard(bus: Bus, runId: string): Promise<RunDisplay> {
  const out = process.stdout;
  const interactive = process.stdin.isTTY === true;
  out.write("\x1b[?1049h\x1b[H");
  const state: DashboardState = {
    view: {
      runId,
      status: "unknown",
      tasks: new Map(),
      mergeQueue: [],
      merged: 0,
      conflicts: 0,
      tokens: 0,
      events: 0,
    },
    activity: [],
    now: Date.now(),
    columns: out.columns ?? 120,
    rows: out.rows ?? 40,
  };
  const quit = () => process.kill(process.pid, "SIGINT");
  const tree = () => h(Box, null, interactive ? h(Keys, { onQuit: quit }) : null, h(Frame, { ...state }));
  // The user asked for the dashboard: draw every frame on a terminal even where a CI variable is set (Ink's own
  // detection would otherwise write only the final frame, e.g. in a tmux session started from a CI job).
  const app = render(tree(), { exitOnCtrlC: false, patchConsole: false, interactive: out.isTTY === true });
  let pending = false;
  const draw = () => {
    if (pending) return;
    pending = true;
    setTimeout(() => {
      pending = false;
      state.now = Date.now();
      state.columns = out.columns ?? state.columns;
      state.rows = out.rows ?? state.rows;
      app.rerender(tree());
    }, 100);
  };
  const tick = setInterval(draw, 1000);
  const usage = setInterval(() => {
    void readLlmUsage(bus, runId).then((u) => {
      if (u) {
        state.usage = u;
        draw();
      }
    });
  }, 2000);
  let closed = false;
  return {
    update(v: RunView, line: string | undefined, e: StoredEvent) {
      state.view = v;
      if (line) state.activity.push(`${e.ts.slice(11, 19)} ${line.split("\n")[0]}`);
      if (state.activity.length > 200) state.activity.splice(0, state.activity.length - 200);
      draw();
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(tick);
      clearInterval(usage);
      state.now = Date.now();
      app.rerender(tree());
      app.unmount();
      out.write("\x1b[?1049l");
    },
  };
}
