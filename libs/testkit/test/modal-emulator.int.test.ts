/**
 * The Modal emulator driven by the real `modal@0.11.1` SDK over real gRPC: every SDK call the Modal sandbox
 * provider relies on, end to end (control plane, command router, sandboxes running in boxes).
 */
import { mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type App,
  type Image,
  InvalidError,
  ModalClient,
  NotFoundError,
  type Sandbox,
  SandboxFilesystemIsADirectoryError,
  SandboxFilesystemNotFoundError,
} from "modal";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ModalEmulator, startModalEmulator, waitFor } from "../src/index.ts";

const TOKEN = { tokenId: "ak-longshot-test", tokenSecret: "as-longshot-test" };
let emu: ModalEmulator;
let modal: ModalClient;
let app: App;
let image: Image;
const savedEnv = { ...process.env };

/** Collects a text stream in the background; `until(s)` resolves once `s` has arrived. */
function collect(stream: AsyncIterable<string>) {
  const out = { text: "" };
  const finished = (async () => {
    for await (const chunk of stream) out.text += chunk;
  })();
  return { out, finished, until: (s: string) => waitFor(() => out.text.includes(s), 15_000, 10) };
}

/** Host processes whose command line contains `marker` (one `/proc` scan). */
async function processesWith(marker: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = (await readFile(`/proc/${name}/cmdline`, "utf8")).replaceAll("\0", " ");
      if (cmd.includes(marker) && Number(name) !== process.pid) pids.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

async function create(params: Parameters<ModalClient["sandboxes"]["create"]>[2] = {}): Promise<Sandbox> {
  return modal.sandboxes.create(app, image, { timeoutMs: 120_000, workdir: "/workspace", ...params });
}

beforeAll(async () => {
  emu = await startModalEmulator(TOKEN);
  // The env route: 0.11.1 reads the server URL only from MODAL_SERVER_URL (or a profile); `endpoint` is ignored.
  Object.assign(process.env, emu.env);
  delete process.env.MODAL_SANDBOX_V2;
  modal = new ModalClient({ ...TOKEN, logLevel: "error" });
  app = await modal.apps.fromName("longshot", { createIfMissing: true });
  image = await modal.images.fromRegistry("node:24-bookworm-slim").build(app);
});

afterAll(async () => {
  await emu?.stop();
  for (const k of Object.keys(process.env)) if (!(k in savedEnv)) delete process.env[k];
  Object.assign(process.env, savedEnv);
});

describe("client, apps, images", () => {
  it("authenticates with token id/secret from the environment and gets or creates apps", async () => {
    const fromEnv = new ModalClient({ logLevel: "error" }); // MODAL_TOKEN_ID / MODAL_TOKEN_SECRET
    const again = await fromEnv.apps.fromName("longshot", { createIfMissing: true });
    expect(again.appId).toBe(app.appId);
    await expect(fromEnv.apps.fromName("no-such-app")).rejects.toBeInstanceOf(NotFoundError);
    expect(emu.apps()).toContainEqual({ name: "longshot", environment: "", appId: app.appId });

    const wrong = new ModalClient({ tokenId: TOKEN.tokenId, tokenSecret: "wrong", logLevel: "error" });
    await expect(wrong.apps.fromName("longshot", { createIfMissing: true })).rejects.toThrow(/invalid token/);
    expect(emu.calls).toContain("AuthTokenGet");
    expect(emu.calls).toContain("AppGetOrCreate");
  });

  it("records registry images with their Dockerfile commands and finds them by id", async () => {
    const built = await modal.images
      .fromRegistry("ghcr.io/longshot/sandbox:1.2.3")
      .dockerfileCommands(["ENV LONGSHOT_IMAGE=1", "RUN apt-get install -y git", "WORKDIR /workspace"])
      .build(app);
    expect(built.imageId).toMatch(/^im-/);
    const desc = emu.images().find((i) => i.imageId === built.imageId);
    expect(desc).toEqual({
      imageId: built.imageId,
      registryTag: "ghcr.io/longshot/sandbox:1.2.3",
      commands: ["ENV LONGSHOT_IMAGE=1", "RUN apt-get install -y git", "WORKDIR /workspace"],
      env: { LONGSHOT_IMAGE: "1" },
      workdir: "/workspace",
    });
    expect((await modal.images.fromId(built.imageId)).imageId).toBe(built.imageId);
    await expect(modal.images.fromId("im-doesnotexist")).rejects.toBeInstanceOf(NotFoundError);
    for (const m of ["EnvironmentGetOrCreate", "ImageGetOrCreate", "ImageFromId"])
      expect(emu.calls).toContain(m);

    // A sandbox on that image sees its ENV; RUN commands are recorded, not executed.
    const sb = await modal.sandboxes.create(app, built, { timeoutMs: 60_000 });
    const p = await sb.exec(["sh", "-c", 'echo "$LONGSHOT_IMAGE $(pwd)"']);
    expect(await p.stdout.readText()).toBe("1 /workspace\n");
    await sb.terminate();
  });
});

describe("sandboxes.create", () => {
  it("takes the V2 path by default and records cpu, memory, network policy, tags and env", async () => {
    const before = emu.callCount("SandboxCreateV2");
    const sb = await create({
      cpu: 0.5,
      memoryMiB: 768,
      blockNetwork: true,
      tags: { run: "r-create", role: "worker" },
      env: { LONGSHOT_TASK_ID: "t-1", LONGSHOT_LLM_API_KEY: "k" },
    });
    expect(emu.callCount("SandboxCreateV2")).toBe(before + 1);
    expect(emu.calls).not.toContain("SandboxCreate");
    const v = emu.sandbox(sb.sandboxId)!;
    expect(v).toMatchObject({
      version: "v2",
      appId: app.appId,
      imageId: image.imageId,
      cpu: 0.5,
      memoryMiB: 768,
      timeoutSecs: 120,
      workdir: "/workspace",
      network: "blocked",
      tags: { run: "r-create", role: "worker" },
      env: { LONGSHOT_TASK_ID: "t-1", LONGSHOT_LLM_API_KEY: "k" },
      limits: { memoryMb: 768, cpuCores: 0.5, pidsMax: 1024 },
      status: "running",
    });
    expect(emu.sandboxes().map((s) => s.sandboxId)).toContain(sb.sandboxId);

    // The layout: writable /workspace (the host dir), the checkout read-only at /opt/longshot.
    const p = await sb.exec([
      "sh",
      "-c",
      'pwd; echo "$LONGSHOT_TASK_ID"; echo hi > /workspace/f; head -c 1 /opt/longshot/package.json; echo; touch /opt/longshot/x 2>/dev/null || echo ro',
    ]);
    expect(await p.stdout.readText()).toBe("/workspace\nt-1\n{\nro\n");
    expect(await readFile(join(v.workspaceDir, "f"), "utf8")).toBe("hi\n");
    await sb.terminate();
  });

  it("gives the box the limits (cpuLimit/memoryLimitMiB over cpu/memoryMiB); a cgroup box enforces memory", async () => {
    const sb = await create({ cpu: 0.25, cpuLimit: 1, memoryMiB: 64, memoryLimitMiB: 96 });
    const v = emu.sandbox(sb.sandboxId)!;
    expect(v).toMatchObject({ cpu: 0.25, cpuLimit: 1, memoryMiB: 64, memoryLimitMiB: 96 });
    expect(v.limits).toEqual({ memoryMb: 96, cpuCores: 1, pidsMax: 1024 });
    if (v.limiter === "cgroup1" || v.limiter === "cgroup2") {
      const hog = await sb.exec(["node", "-e", "const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1));"]);
      expect(await hog.wait()).toBe(137);
    }
    await sb.terminate();
  });
});

describe("exec", () => {
  it("streams stdout while the process runs and feeds stdin to it incrementally", async () => {
    const sb = await create();
    const p = await sb.exec(
      ["sh", "-c", 'echo ready; while read line; do echo "got:$line"; done; echo bye'],
      {
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    const out = collect(p.stdout);
    const err = collect(p.stderr);
    // "ready" arrives while the process is blocked reading stdin: output is live, not delivered at exit.
    await out.until("ready\n");
    expect(emu.sandbox(sb.sandboxId)!.execs.at(-1)!.exit).toBeUndefined();
    await p.stdin.writeText("one\n");
    await out.until("got:one\n");
    await p.stdin.writeText("two\n");
    await out.until("got:two\n");
    expect(emu.sandbox(sb.sandboxId)!.execs.at(-1)!.exit).toBeUndefined();
    await p.stdin.close();
    expect(await p.wait()).toBe(0);
    await Promise.all([out.finished, err.finished]);
    expect(out.out.text).toBe("ready\ngot:one\ngot:two\nbye\n");
    expect(err.out.text).toBe("");
    await sb.terminate();
  });

  it("delivers a long-running process's lines as they are printed", async () => {
    const sb = await create();
    const p = await sb.exec(["sh", "-c", "for i in 1 2 3; do echo line$i; echo err$i >&2; sleep 0.4; done"]);
    const seen: { line: string; at: number }[] = [];
    const t0 = Date.now();
    const errText = p.stderr.readText();
    for await (const chunk of p.stdout) {
      for (const line of chunk.split("\n").filter(Boolean)) seen.push({ line, at: Date.now() - t0 });
    }
    expect(seen.map((s) => s.line)).toEqual(["line1", "line2", "line3"]);
    // line1 came ≥ 0.6 s before line3: it was not held back until the exit.
    expect(seen[2]!.at - seen[0]!.at).toBeGreaterThan(600);
    expect(await errText).toBe("err1\nerr2\nerr3\n");
    expect(await p.wait()).toBe(0);

    // Large output arrives whole and in order.
    const big = await sb.exec(["seq", "1", "300000"]);
    const text = await big.stdout.readText();
    expect(text.length).toBe(1_988_895);
    expect(text.endsWith("\n299999\n300000\n")).toBe(true);
    await sb.terminate();
  });

  it("runs the image's Node as /usr/local/bin/node with a writable HOME, under the provider's minimal env", async () => {
    const sb = await create();
    const env = { HOME: "/home/sandbox", TMPDIR: "/tmp", PATH: "/usr/local/bin:/usr/bin:/bin" };
    const p = await sb.exec(
      [
        "sh",
        "-c",
        'command -v node; node -p process.version; git config --global user.name t && echo home-ok; echo "$PWD"',
      ],
      { env, workdir: "/workspace" },
    );
    expect(await p.stdout.readText()).toBe(`/usr/local/bin/node\n${process.version}\nhome-ok\n/workspace\n`);
    expect(await p.wait()).toBe(0);
    await sb.terminate();
  });

  it("passes workdir and env, returns exit codes, kills on exec timeout, and supports binary mode", async () => {
    const sb = await create({ env: { FROM_CREATE: "c" } });
    const p = await sb.exec(["sh", "-c", 'echo "$(pwd) $FROM_CREATE $FROM_EXEC"; exit 5'], {
      workdir: "/workspace/sub/dir",
      env: { FROM_EXEC: "e" },
    });
    expect(await p.stdout.readText()).toBe("/workspace/sub/dir c e\n");
    expect(await p.wait()).toBe(5);

    const t0 = Date.now();
    const slow = await sb.exec(["sleep", "30"], { timeoutMs: 1000 });
    expect(await slow.wait()).toBe(137);
    expect(Date.now() - t0).toBeLessThan(10_000);

    const bin = await sb.exec(["printf", "\\377\\000\\001"], { mode: "binary" });
    expect([...(await bin.stdout.readBytes())]).toEqual([255, 0, 1]);
    await sb.terminate();
  });
});

describe("filesystem", () => {
  it("writes and reads text and bytes as the sandbox sees its paths", async () => {
    const sb = await create();
    const bytes = new Uint8Array(300_000).map((_, i) => (i * 7) % 256);
    await sb.filesystem.writeBytes(bytes, "/workspace/deep/er/blob.bin");
    expect(
      Buffer.from(await sb.filesystem.readBytes("/workspace/deep/er/blob.bin")).equals(Buffer.from(bytes)),
    ).toBe(true);
    await sb.filesystem.writeText('{"task":"é"}\n', "/workspace/input.json");
    expect(await sb.filesystem.readText("/workspace/input.json")).toBe('{"task":"é"}\n');
    // The process view and the host directory agree.
    const cat = await sb.exec(["cat", "/workspace/input.json"]);
    expect(await cat.stdout.readText()).toBe('{"task":"é"}\n');
    const host = emu.sandbox(sb.sandboxId)!.workspaceDir;
    expect(await readFile(join(host, "input.json"), "utf8")).toBe('{"task":"é"}\n');
    // Reading the read-only checkout works; writing it does not.
    expect(await sb.filesystem.readText("/opt/longshot/package.json")).toContain('"name"');
    await expect(sb.filesystem.writeText("x", "/opt/longshot/x")).rejects.toThrow();

    await expect(sb.filesystem.readText("/workspace/missing")).rejects.toBeInstanceOf(
      SandboxFilesystemNotFoundError,
    );
    await expect(sb.filesystem.readText("/workspace/deep")).rejects.toBeInstanceOf(
      SandboxFilesystemIsADirectoryError,
    );
    const files = await sb.filesystem.listFiles("/workspace");
    expect(files.map((f) => [f.name, f.type])).toEqual([
      ["deep", "directory"],
      ["input.json", "file"],
    ]);
    await expect(sb.filesystem.watch("/workspace")[Symbol.asyncIterator]().next()).rejects.toBeInstanceOf(
      InvalidError,
    );
    for (const m of ["TaskExecStdinWriteStream", "TaskExecWait", "TaskExecStdioRead"]) {
      expect(emu.calls).toContain(m);
    }
    await sb.terminate();
  });

  it("never follows a planted symlink out to host files", async () => {
    const secretDir = join(tmpdir(), `longshot-host-secret-${process.pid}`);
    const secret = join(secretDir, "secret.txt");
    await rm(secretDir, { recursive: true, force: true });
    await mkdir(secretDir);
    await writeFile(secret, "host secret");
    try {
      const sb = await create();
      const plant = await sb.exec([
        "sh",
        "-c",
        `ln -s ${secret} /workspace/evil && ln -s ${secretDir} /workspace/evildir`,
      ]);
      expect(await plant.wait()).toBe(0);
      // Inside the box that path does not exist: the read fails instead of leaking the host file.
      await expect(sb.filesystem.readText("/workspace/evil")).rejects.toBeInstanceOf(
        SandboxFilesystemNotFoundError,
      );
      // Writing through the link lands inside the box, never on the host.
      await sb.filesystem.writeText("overwritten", "/workspace/evildir/secret.txt").catch(() => {});
      expect(await readFile(secret, "utf8")).toBe("host secret");
      await sb.terminate();
    } finally {
      await rm(secretDir, { recursive: true, force: true });
    }
  });
});

describe("lifecycle", () => {
  it("terminate kills every process of the sandbox and removes its directory", async () => {
    const sb = await create();
    const fg = await sb.exec(["sleep", "7171"]);
    const bg = await sb.exec(["sh", "-c", "sleep 7272 & sleep 7373; wait"]);
    await waitFor(async () => (await processesWith("sleep 7272")).length > 0);
    expect(await processesWith("sleep 7171")).not.toEqual([]);
    const { workspaceDir, pids } = emu.sandbox(sb.sandboxId)!;
    expect(pids.length).toBe(2);
    expect(await sb.poll()).toBeNull();
    const finishedBefore = emu.terminatedCount();

    await sb.terminate();

    for (const m of ["sleep 7171", "sleep 7272", "sleep 7373"]) expect(await processesWith(m)).toEqual([]);
    for (const pid of pids) expect(await exists(`/proc/${pid}`)).toBe(false);
    expect(await fg.wait()).toBe(137);
    expect(await bg.wait()).toBe(137);
    expect(await exists(workspaceDir)).toBe(false);
    expect(await sb.wait()).toBe(137); // GENERIC_STATUS_TERMINATED
    expect(await sb.poll()).toBe(137);
    expect(emu.terminatedCount()).toBe(finishedBefore + 1);
    expect(emu.sandbox(sb.sandboxId)!.status).toBe("terminated");
    expect(emu.sandboxes().map((s) => s.sandboxId)).not.toContain(sb.sandboxId);
    await expect(sb.exec(["true"])).rejects.toThrow();
    for (const m of ["SandboxTerminateV2", "SandboxWaitV2"]) expect(emu.calls).toContain(m);
  });

  it("terminates a sandbox when its timeout elapses", async () => {
    const sb = await create({ timeoutMs: 2000 });
    await sb.exec(["sleep", "8181"]);
    await waitFor(async () => (await processesWith("sleep 8181")).length > 0);
    const t0 = Date.now();
    expect(await sb.wait()).toBe(124); // GENERIC_STATUS_TIMEOUT
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(emu.sandbox(sb.sandboxId)!.status).toBe("timeout");
    await waitFor(async () => (await processesWith("sleep 8181")).length === 0, 5000);
  });

  it("runs a create `command` as the entrypoint with live stdout and stdin; its exit ends the sandbox", async () => {
    const sb = await create({ command: ["sh", "-c", 'echo started; read x; echo "got $x"; exit 7'] });
    const out = collect(sb.stdout);
    await out.until("started\n");
    expect(await sb.poll()).toBeNull();
    await sb.stdin.writeText("v\n");
    await sb.stdin.close();
    expect(await sb.wait()).toBe(7);
    await out.finished;
    expect(out.out.text).toBe("started\ngot v\n");
    expect(emu.sandbox(sb.sandboxId)).toMatchObject({
      status: "failed",
      command: ["sh", "-c", expect.any(String)],
    });
    for (const m of ["SandboxStdioReadV2", "SandboxStdinWriteV2"]) expect(emu.calls).toContain(m);
  });
});

describe("tags, list, fromId", () => {
  it("lists running sandboxes carrying all the given tags", async () => {
    const run = `r-${Date.now()}`;
    const a = await create({ tags: { run, slot: "a" } });
    const b = await create({ tags: { run, slot: "b" } });
    const c = await create({ tags: { run, slot: "c" } });
    const other = await create({ tags: { run: "another", slot: "a" } });
    const ids = async (tags: Record<string, string>) => {
      const out: string[] = [];
      for await (const sb of modal.sandboxes.list({ appId: app.appId, tags })) out.push(sb.sandboxId);
      return out.sort();
    };
    expect(await ids({ run })).toEqual([a.sandboxId, b.sandboxId, c.sandboxId].sort());
    expect(await ids({ run, slot: "a" })).toEqual([a.sandboxId]);
    await c.terminate();
    expect(await ids({ run })).toEqual([a.sandboxId, b.sandboxId].sort());

    await b.setTags({ run, slot: "z", extra: "1" });
    expect(await b.getTags()).toEqual({ run, slot: "z", extra: "1" });
    expect(await ids({ run, slot: "z" })).toEqual([b.sandboxId]);
    expect(emu.sandbox(b.sandboxId)!.tags).toEqual({ run, slot: "z", extra: "1" });
    for (const m of ["SandboxListV2", "SandboxTagsSetV2", "SandboxTagsGetV2"]) expect(emu.calls).toContain(m);
    await Promise.all([a.terminate(), b.terminate(), other.terminate()]);
    expect(await ids({ run })).toEqual([]);
  });

  it("reattaches by id: poll, exec and terminate through fromId", async () => {
    const sb = await create();
    const again = await modal.sandboxes.fromId(sb.sandboxId);
    expect(again.sandboxId).toBe(sb.sandboxId);
    expect(await again.poll()).toBeNull();
    const p = await again.exec(["echo", "attached"]);
    expect(await p.stdout.readText()).toBe("attached\n");
    for (const m of ["SandboxGetTaskIdV2", "SandboxGetCommandRouterAccess"]) expect(emu.calls).toContain(m);
    await again.terminate();
    expect(await sb.poll()).toBe(137);
  });
});

describe("network policy", () => {
  let server: Server;
  let port: number;
  let accepted = 0;
  beforeAll(async () => {
    server = createServer((s) => {
      accepted++;
      s.on("error", () => {}); // the probe exits right after connecting
      s.end("hello\n");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const probe = (host: string) => [
    "node",
    "-e",
    `require("node:net").connect(${port}, "${host}").on("connect", () => { console.log("connected"); process.exit(0); }).on("error", (e) => { console.log(e.code); process.exit(1); })`,
  ];

  it("blockNetwork: a process cannot open a TCP connection to a host port; an open sandbox can", async () => {
    const blocked = await create({ blockNetwork: true });
    const p = await blocked.exec(probe("127.0.0.1"));
    const [text, code] = await Promise.all([p.stdout.readText(), p.wait()]);
    expect(code).toBe(1);
    expect(text).toMatch(/ECONNREFUSED|ENETUNREACH|EHOSTUNREACH/);
    expect(accepted).toBe(0);
    expect(emu.sandbox(blocked.sandboxId)!.network).toBe("blocked");

    const open = await create({ blockNetwork: false });
    const q = await open.exec(probe("127.0.0.1"));
    expect(await q.stdout.readText()).toBe("connected\n");
    expect(accepted).toBe(1);
    await Promise.all([blocked.terminate(), open.terminate()]);
  });

  it("updateNetworkPolicy to a loopback-only allowlist cuts the network of later processes", async () => {
    const sb = await create();
    const before = await sb.exec(probe("127.0.0.1"));
    expect(await before.stdout.readText()).toBe("connected\n");
    const acceptedBefore = accepted;
    // 0.11.1 requires both lists (a call with only outboundCidrAllowlist throws before any RPC).
    await expect(sb.updateNetworkPolicy({ outboundCidrAllowlist: ["127.0.0.1/32"] })).rejects.toBeInstanceOf(
      InvalidError,
    );
    await sb.updateNetworkPolicy({ outboundCidrAllowlist: ["127.0.0.1/32"], outboundDomainAllowlist: [] });
    expect(emu.sandbox(sb.sandboxId)!.network).toBe("allowlist");
    const after = await sb.exec(probe("127.0.0.1"));
    expect(await after.wait()).toBe(1);
    expect(accepted).toBe(acceptedBefore);
    expect(emu.calls).toContain("TaskSetNetworkAccess");
    await sb.terminate();
  });
});

describe("V1 backend (MODAL_SANDBOX_V2=0)", () => {
  it("creates, execs with env, lists and terminates through the V1 RPCs", async () => {
    process.env.MODAL_SANDBOX_V2 = "0";
    const v1 = new ModalClient({ ...TOKEN, logLevel: "error" });
    delete process.env.MODAL_SANDBOX_V2;
    const sb = await v1.sandboxes.create(app, image, {
      timeoutMs: 60_000,
      workdir: "/workspace",
      env: { V1_VAR: "v1" },
      tags: { backend: "v1" },
    });
    expect(sb.sandboxId).toMatch(/^sb-[0-9a-z]{22}$/);
    expect(emu.sandbox(sb.sandboxId)).toMatchObject({ version: "v1", env: { V1_VAR: "v1" } });
    const p = await sb.exec(["sh", "-c", 'echo "$V1_VAR"']);
    expect(await p.stdout.readText()).toBe("v1\n");
    const listed: string[] = [];
    for await (const s of v1.sandboxes.list({ tags: { backend: "v1" } })) listed.push(s.sandboxId);
    expect(listed).toEqual([sb.sandboxId]);
    await sb.terminate();
    expect(await sb.wait()).toBe(137);
    for (const m of [
      "SecretGetOrCreate",
      "SandboxCreate",
      "SandboxGetTaskId",
      "TaskGetCommandRouterAccess",
      "SandboxList",
      "SandboxTerminate",
      "SandboxWait",
    ]) {
      expect(emu.calls).toContain(m);
    }
  });
});
