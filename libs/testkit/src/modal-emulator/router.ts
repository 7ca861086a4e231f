/**
 * The emulator's task command router: handlers of the `modal.task_command_router.TaskCommandRouter` RPCs behind
 * `sb.exec()`, `sb.filesystem.*` (execs of fs-tools) and a V2 sandbox's own stdin/stdout/stderr.
 *
 * Every request names its task (`task_id`, field 1) and carries `authorization: Bearer <jwt>`, the JWT handed
 * out with the router URL by `SandboxCreateV2` / `Sandbox|TaskGetCommandRouterAccess`; a wrong JWT is
 * UNAUTHENTICATED (the SDK then refreshes it once).
 */
import type { Metadata } from "@grpc/grpc-js";
import { type ControlState, envOfSources, networkPolicyOf } from "./control-plane.ts";
import {
  clientStream,
  type Handlers,
  invalid,
  notFound,
  precondition,
  serverStream,
  unary,
  unauthenticated,
} from "./rpc.ts";
import type { EmulatedSandbox, ExecProcess, OutputBuffer, SandboxRuntime, StdioMode } from "./runtime.ts";

type Msg = Record<string, unknown>;

const str = (v: unknown): string => (typeof v === "string" ? v : "");
const num = (v: unknown): number => (typeof v === "number" ? v : 0);
const bytes = (v: unknown): Buffer => (Buffer.isBuffer(v) ? v : Buffer.alloc(0));

/** The router accepts only calls that carry a bearer token (checked against the task's JWT by each handler). */
export function authorizeRouter(_method: string, md: Metadata): void {
  if (!/^Bearer \S+$/.test(str(md.get("authorization")[0]))) throw unauthenticated("missing bearer token");
}

const exitMsg = (p: ExecProcess): Msg =>
  p.exit === undefined ? {} : p.exit.code !== undefined ? { code: p.exit.code } : { signal: p.exit.signal };

/** Handlers of the router RPCs listed in `ROUTER_RPCS` (proto.ts). */
export function routerHandlers(runtime: SandboxRuntime, state: ControlState): Handlers {
  const task = (req: Msg, md: Metadata): EmulatedSandbox => {
    const sb = runtime.byTask.get(str(req.taskId));
    if (!sb) throw notFound(`Task ${str(req.taskId)} not found`);
    if (str(md.get("authorization")[0]) !== `Bearer ${sb.jwt}`)
      throw unauthenticated("invalid JWT for this task");
    return sb;
  };
  const exec = (req: Msg, md: Metadata): ExecProcess => {
    const p = task(req, md).execs.get(str(req.execId));
    if (!p) throw notFound(`exec ${str(req.execId)} not found`);
    return p;
  };

  const execStart = unary(async (req, ctx) => {
    const sb = task(req, ctx.metadata);
    const execId = str(req.execId);
    if (!execId) throw invalid("exec_id is required");
    if (sb.execs.has(execId)) return {}; // exec_id makes TaskExecStart idempotent
    const argv = (req.commandArgs as string[] | undefined) ?? [];
    if (argv.length === 0) throw invalid("command_args is empty");
    const pty = (req.ptyInfo as Msg | null)?.enabled === true;
    const stdout: StdioMode = num(req.stdoutConfig) === 1 ? "pipe" : "devnull";
    // TaskExecStderrConfig: 0 DEVNULL, 1 PIPE, 2 STDOUT. A PTY merges stderr into stdout (no real PTY here).
    const errCfg = pty ? 2 : num(req.stderrConfig);
    const stderr: StdioMode = errCfg === 1 ? "pipe" : errCfg === 2 ? "stdout" : "devnull";
    const env = sb.envFor({
      ...((req.env as Record<string, string> | undefined) ?? {}),
      ...envOfSources(state, req.secretSources, req.secretIds),
    });
    const p = await sb.spawn(execId, argv, {
      cwd: str(req.workdir) || undefined,
      env,
      stdout,
      stderr,
      timeoutMs: num(req.timeoutSecs) * 1000 || undefined,
    });
    sb.execs.set(execId, p);
    return {};
  });

  async function* stdioRead(buf: OutputBuffer, offset: number, signal: AbortSignal, withOffset: boolean) {
    let pos = offset;
    for await (const data of buf.read(offset, signal)) {
      yield withOffset ? { data, startingOffset: pos } : { data };
      pos += data.length;
    }
  }

  const entryOf = (sb: EmulatedSandbox): ExecProcess => {
    if (!sb.entry) throw precondition(`Sandbox ${sb.sandboxId} has no entrypoint command to write to`);
    return sb.entry;
  };

  return {
    TaskExecStart: execStart,

    TaskExecStdioRead: serverStream((req, ctx) => {
      const p = exec(req, ctx.metadata);
      // TaskExecStdioFileDescriptor: 0 STDOUT, 1 STDERR.
      const buf = num(req.fileDescriptor) === 1 ? p.stderr : p.stdout;
      return stdioRead(buf, num(req.offset), ctx.signal, false);
    }),

    TaskExecStdinWrite: unary(async (req, ctx) => {
      await exec(req, ctx.metadata).writeStdin(num(req.offset), bytes(req.data), req.eof === true);
      return {};
    }),

    TaskExecStdinWriteStream: clientStream(async (reqs, ctx) => {
      // First message `start {task_id, exec_id, offset}`, then `data` chunks, then `end {}` (= EOF).
      let p: ExecProcess | undefined;
      let offset = 0;
      for await (const m of reqs) {
        const start = m.start as Msg | null;
        if (start) {
          p = exec(start, ctx.metadata);
          offset = num(start.offset);
          continue;
        }
        if (!p) throw invalid("the first message of TaskExecStdinWriteStream must be `start`");
        const data = bytes(m.data);
        if (data.length > 0) {
          await p.writeStdin(offset, data, false);
          offset += data.length;
        }
        if (m.end) await p.writeStdin(offset, Buffer.alloc(0), true);
      }
      return {};
    }),

    TaskExecStdinStatus: unary(async (req, ctx) => exec(req, ctx.metadata).stdinStatus),

    TaskExecWait: unary(async (req, ctx) => {
      const p = exec(req, ctx.metadata);
      await Promise.race([
        p.exited,
        new Promise((r) => ctx.signal.addEventListener("abort", r, { once: true })),
      ]);
      return exitMsg(p);
    }),

    TaskExecPoll: unary(async (req, ctx) => exitMsg(exec(req, ctx.metadata))),

    TaskSetNetworkAccess: unary(async (req, ctx) => {
      const na = (req.networkAccess as Msg | null) ?? {};
      task(req, ctx.metadata).setNetwork(
        networkPolicyOf(na),
        (na.allowedCidrs as string[] | undefined) ?? [],
        (na.allowedDomains as string[] | undefined) ?? [],
      );
      return {};
    }),

    SandboxStdioReadV2: serverStream((req, ctx) => {
      const sb = task(req, ctx.metadata);
      // SandboxStdioFileDescriptor: 0 STDOUT, 1 STDERR. Without an entrypoint the sandbox prints nothing.
      const buf = sb.entry
        ? num(req.fileDescriptor) === 1
          ? sb.entry.stderr
          : sb.entry.stdout
        : sb.idleOutput;
      return stdioRead(buf, num(req.offset), ctx.signal, true);
    }),

    SandboxStdinWriteV2: unary(async (req, ctx) => {
      await entryOf(task(req, ctx.metadata)).writeStdin(num(req.offset), bytes(req.data), req.eof === true);
      return {};
    }),
  };
}
