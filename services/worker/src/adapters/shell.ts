import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import type { BashOperations } from "@mariozechner/pi-coding-agent";

/** Environment variable names never passed to the agent's shell or a command harness. */
const SECRET_NAME =
  /(^NATS_|^LONGSHOT_LLM_API_KEY$|KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|^AWS_|^MODAL_)/i;

/**
 * A copy of `env` without secrets: the model key, NATS settings and anything named like a key, token,
 * secret, password or credential. Pure.
 */
export function scrubEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(env)) {
    if (value !== undefined && !SECRET_NAME.test(name)) out[name] = value;
  }
  return out;
}

/**
 * Pi `BashOperations` that keep every command inside the worker's own process group (Pi's default spawns
 * each command detached, in a new group, which a sandbox provider killing the worker's group would miss).
 * Commands run with `bash -c` and the scrubbed worker environment. On abort or on the tool's own timeout
 * (seconds) the command and all its descendants get SIGKILL (descendants found through /proc on Linux).
 */
export function createContainedBashOperations(): BashOperations {
  return {
    exec: (command, cwd, { onData, signal, timeout }) =>
      new Promise((resolve, reject) => {
        const child = spawn("bash", ["-c", command], {
          cwd,
          env: scrubEnv(process.env),
          stdio: ["ignore", "pipe", "pipe"],
        });
        let timedOut = false;
        const kill = () => {
          if (child.pid !== undefined) killTree(child.pid);
        };
        const timer =
          timeout !== undefined && timeout > 0
            ? setTimeout(() => {
                timedOut = true;
                kill();
              }, timeout * 1000)
            : undefined;
        const onAbort = () => kill();
        if (signal?.aborted) kill();
        else signal?.addEventListener("abort", onAbort, { once: true });
        child.stdout.on("data", onData);
        child.stderr.on("data", onData);
        const finish = () => {
          if (timer) clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
        };
        child.once("error", (err) => {
          finish();
          reject(err);
        });
        // `exit`, not `close`: a background process started by the command may hold the pipes open.
        child.once("exit", (code) => {
          finish();
          setTimeout(() => {
            child.stdout.destroy();
            child.stderr.destroy();
            if (signal?.aborted) reject(new Error("aborted"));
            else if (timedOut) reject(new Error(`timeout:${timeout}`));
            else resolve({ exitCode: code });
          }, 50);
        });
      }),
  };
}

/**
 * SIGKILLs `pid` and every descendant. Descendants come from the parent links in `/proc/<pid>/stat`
 * (Linux); elsewhere only `pid` itself is killed. Errors for processes already gone are ignored.
 */
export function killTree(pid: number): void {
  for (const p of [...descendants(pid), pid]) {
    try {
      process.kill(p, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return [];
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // Fields after the parenthesised command name: state, ppid, ...
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // process exited while scanning
    }
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const pid = stack.pop() as number;
    for (const child of children.get(pid) ?? []) {
      out.push(child);
      stack.push(child);
    }
  }
  return out;
}
