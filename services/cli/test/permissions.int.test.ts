import { chmod, mkdir } from "node:fs/promises";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { type Bus, connectBus, readAttempts, readTranscript, writeAttempt } from "@longshot/bus";
import {
  type AttemptRecord,
  Buckets,
  Consumers,
  NATS_ROLES,
  type NatsRole,
  ObjectStores,
  ROLE_GRANTS,
  rolePermissions,
} from "@longshot/contracts";
import { createLogger } from "@longshot/log";
import { createBox } from "@longshot/sandbox";
import { tempDir } from "@longshot/testkit";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../src/cluster.ts";
import { type NatsNodes, startNatsNodes } from "../src/nats-nodes.ts";
import { type ClusterRole, clusterUsers } from "../src/users.ts";

// Least-privilege NATS on a real nats-server with the embedded cluster's generated users: each role's
// credentials are refused outside its subjects, an anonymous client is refused, a sandbox cannot connect at all.

let dir: Awaited<ReturnType<typeof tempDir>>;
let nats: NatsNodes;
let port: number;
const users = clusterUsers();
const log = createLogger({ service: "test", level: "silent" });
const cluster = (r: NatsRole): ClusterRole => (r === "gateway" ? "llm-gateway" : r);

beforeAll(async () => {
  dir = await tempDir("longshot-perms-");
  port = await freePort();
  nats = await startNatsNodes({
    specs: [{ name: "n1", port, storeDir: join(dir.path, "nats") }],
    users: Object.values(users).map((u) => ({
      user: u.user,
      password: u.pass,
      ...(u.permissions ? { permissions: u.permissions } : {}),
    })),
    maxPayloadBytes: 4 * 1024 * 1024,
    confDir: join(dir.path, "conf"),
    logDir: dir.path,
    env: { PATH: process.env.PATH ?? "" },
  });
  // The admin creates the topology; no role may.
  const admin = await connectBus({ servers: nats.urls[0]!, name: "admin", log, ...users.admin });
  await admin.ensureTopology();
  await admin.close();
}, 60_000);

afterAll(async () => {
  await nats?.stop();
  await dir?.cleanup();
});

const as = (role: NatsRole) =>
  connect({ servers: nats.urls[0]!, user: users[cluster(role)].user, pass: users[cluster(role)].pass });

/** Publishes `subject` and resolves with the permissions error the server answers (undefined when accepted). */
async function publishRefusal(nc: NatsConnection, subject: string): Promise<string | undefined> {
  const errors: string[] = [];
  const watch = (async () => {
    for await (const s of nc.status()) if (s.type === "error") errors.push(String(s.error));
  })();
  nc.publish(subject, "{}");
  await nc.flush();
  await nc.flush(); // the -ERR for the publish arrives before the second PONG
  void watch;
  return errors.find((e) => e.includes(subject));
}

/** A JetStream API request: "ok", or the error's message. */
async function api(nc: NatsConnection, subject: string): Promise<string> {
  try {
    await nc.request(subject, "{}", { timeout: 3000 });
    return "ok";
  } catch (e) {
    return `${(e as Error).message} ${(e as { cause?: Error }).cause?.message ?? ""}`;
  }
}

/** A subscription: resolves with the error the server closed it with (undefined while it stays open). */
async function subscribeRefusal(nc: NatsConnection, subject: string): Promise<string | undefined> {
  const sub = nc.subscribe(subject);
  const closed = sub.closed.then((e) => (e ? String(e) : "closed"));
  await nc.flush();
  await nc.flush();
  const r = await Promise.race([closed, Promise.resolve(undefined)]);
  sub.unsubscribe();
  return r;
}

describe("least-privilege NATS users", () => {
  it("refuses an anonymous client and a wrong password", async () => {
    await expect(connect({ servers: nats.urls[0]! })).rejects.toThrow(/Authorization Violation/);
    await expect(connect({ servers: nats.urls[0]!, user: "planner", pass: "guess" })).rejects.toThrow(
      /Authorization Violation/,
    );
  });

  describe.each(NATS_ROLES)("role %s", (role) => {
    const g = ROLE_GRANTS[role];
    it("may do its own work", async () => {
      const nc = await as(role);
      try {
        for (const c of g.consumers)
          expect(await api(nc, `$JS.API.CONSUMER.INFO.${c.stream}.${c.name}`), c.name).toBe("ok");
        for (const b of [...g.buckets, ...g.readBuckets])
          expect(await api(nc, `$JS.API.STREAM.INFO.KV_${b}`), b).toBe("ok");
        for (const o of [...g.objectStores, ...g.readObjectStores])
          expect(await api(nc, `$JS.API.STREAM.INFO.OBJ_${o}`), o).toBe("ok");
        for (const s of g.readStreams) expect(await api(nc, `$JS.API.STREAM.INFO.${s}`), s).toBe("ok");
        for (const subject of g.publishes)
          expect(await publishRefusal(nc, subject.replace(/[*>]/g, "x"))).toBeUndefined();
        for (const subject of g.subscribes) expect(await subscribeRefusal(nc, subject)).toBeUndefined();
      } finally {
        await nc.close();
      }
    });

    it("is refused outside its subjects", async () => {
      const nc = await as(role);
      try {
        // No role changes or deletes the topology.
        expect(await api(nc, "$JS.API.STREAM.DELETE.TASKS")).toMatch(/Permissions Violation/);
        expect(await api(nc, "$JS.API.STREAM.CREATE.STOLEN")).toMatch(/Permissions Violation/);
        expect(await api(nc, "$JS.API.STREAM.PURGE.EVENTS")).toMatch(/Permissions Violation/);
        // No role pulls work from another role's durable consumer.
        const foreign = Object.values(Consumers).find((c) => !(g.consumers as unknown[]).includes(c))!;
        expect(await api(nc, `$JS.API.CONSUMER.MSG.NEXT.${foreign.stream}.${foreign.name}`)).toMatch(
          /Permissions Violation/,
        );
        expect(await api(nc, `$JS.API.CONSUMER.DELETE.${foreign.stream}.${foreign.name}`)).toMatch(
          /Permissions Violation/,
        );
        // Publishing what another role publishes, or a bucket it does not hold.
        const notMine = role === "submitter" ? "longshot.task.execute.run-x" : "longshot.request";
        expect(await publishRefusal(nc, notMine)).toMatch(/Permissions Violation/);
        const bucket = role === "gateway" ? "longshot-runs" : "longshot-llm-tokens";
        expect(await publishRefusal(nc, `$KV.${bucket}.k`)).toMatch(/Permissions Violation/);
        expect(await api(nc, `$JS.API.DIRECT.GET.KV_${bucket}.$KV.${bucket}.k`)).toMatch(
          /Permissions Violation/,
        );
        // Reading tasks and handoffs off the wire.
        expect(await subscribeRefusal(nc, "longshot.task.>")).toMatch(/Permissions Violation/);
        expect(await subscribeRefusal(nc, ">")).toMatch(/Permissions Violation/);
      } finally {
        await nc.close();
      }
    });
  });

  it("attempt history: the dispatcher writes records and transcripts, the monitor reads records, the submitter both", async () => {
    const busOf = (role: NatsRole) =>
      connectBus({ servers: nats.urls[0]!, name: `perm-${role}`, log, ...users[cluster(role)] });
    const runId = "run-perm-h";
    const task = {
      id: "t-h",
      runId,
      kind: "plan" as const,
      description: "d",
      scope: [],
      acceptance: "",
      branch: "worker/t-h",
      priority: 5,
      depth: 0,
      attempt: 1,
      repo: "/tmp/r",
      baseBranch: "main",
    };
    const rec: Omit<AttemptRecord, "transcript"> = {
      runId,
      taskId: "t-h",
      attempt: 1,
      model: "m",
      harness: "pi",
      sandbox: "local",
      startedAt: new Date().toISOString(),
      finishedAt: new Date().toISOString(),
      timedOut: false,
      handoff: {
        taskId: "t-h",
        runId,
        status: "complete",
        summary: "s",
        filesChanged: [],
        concerns: [],
        suggestions: [],
        metrics: {
          linesAdded: 0,
          linesRemoved: 0,
          filesCreated: 0,
          filesModified: 0,
          tokensUsed: 0,
          toolCallCount: 1,
          durationMs: 1,
        },
        branch: "worker/t-h",
        task,
      },
    };
    const buses: Bus[] = [];
    try {
      const dispatcher = await busOf("dispatcher");
      buses.push(dispatcher);
      const errors: unknown[] = [];
      const stored = await writeAttempt(
        dispatcher,
        rec,
        { text: "a line\n", lines: 1, omittedLines: 0 },
        (e) => errors.push(e),
      );
      expect(errors).toEqual([]);
      expect(stored.transcript?.object).toBe("run-perm-h.t-h.1");
      const monitor = await busOf("monitor");
      const submitter = await busOf("submitter");
      buses.push(monitor, submitter);
      expect(await readAttempts(monitor, runId)).toEqual([stored]);
      expect(await readAttempts(submitter, runId)).toEqual([stored]);
      expect(await readTranscript(submitter, stored.transcript!)).toBe("a line\n");
      // Readers do not write, and the monitor has no use for transcripts.
      for (const nc of [monitor.nc, submitter.nc]) {
        expect(await publishRefusal(nc, `$KV.${Buckets.attempts}.x`)).toMatch(/Permissions Violation/);
        expect(await publishRefusal(nc, `$O.${ObjectStores.transcripts}.M.x`)).toMatch(
          /Permissions Violation/,
        );
      }
      for (const read of ["STREAM.MSG.GET", "DIRECT.GET", "CONSUMER.CREATE"])
        expect(await api(monitor.nc, `$JS.API.${read}.OBJ_${ObjectStores.transcripts}`), read).toMatch(
          /Permissions Violation/,
        );
      // Nobody purges or deletes the history, the dispatcher included.
      expect(await api(dispatcher.nc, `$JS.API.STREAM.PURGE.OBJ_${ObjectStores.transcripts}`)).toMatch(
        /Permissions Violation/,
      );
      expect(await api(dispatcher.nc, `$JS.API.STREAM.DELETE.KV_${Buckets.attempts}`)).toMatch(
        /Permissions Violation/,
      );
      // Another role reads none of it.
      const merger = await busOf("merger");
      buses.push(merger);
      await expect(readAttempts(merger, runId)).rejects.toThrow(/Permissions Violation|permission/i);
    } finally {
      for (const b of buses) await b.close();
    }
  });

  it("each role's permissions allow nothing beyond its grants", () => {
    const p = rolePermissions("merger");
    expect(p.publish.allow).not.toContain(">");
    expect(p.publish.allow.filter((s) => s.startsWith("longshot."))).toEqual(
      ROLE_GRANTS.merger.events.map((t) => `longshot.event.*.${t}`).sort(),
    );
    expect(rolePermissions("submitter")).toEqual({
      publish: {
        allow: [
          "$JS.API.CONSUMER.CREATE.EVENTS",
          "$JS.API.CONSUMER.CREATE.EVENTS.>",
          "$JS.API.CONSUMER.CREATE.KV_longshot-attempts",
          "$JS.API.CONSUMER.CREATE.KV_longshot-attempts.>",
          "$JS.API.CONSUMER.CREATE.OBJ_longshot-transcripts",
          "$JS.API.CONSUMER.CREATE.OBJ_longshot-transcripts.>",
          "$JS.API.CONSUMER.DELETE.EVENTS.*",
          "$JS.API.CONSUMER.DELETE.KV_longshot-attempts.>",
          "$JS.API.CONSUMER.DELETE.OBJ_longshot-transcripts.>",
          "$JS.API.CONSUMER.INFO.EVENTS.*",
          "$JS.API.CONSUMER.INFO.KV_longshot-attempts.*",
          "$JS.API.CONSUMER.INFO.OBJ_longshot-transcripts.*",
          "$JS.API.CONSUMER.MSG.NEXT.EVENTS.*",
          "$JS.API.DIRECT.GET.KV_longshot-attempts",
          "$JS.API.DIRECT.GET.KV_longshot-attempts.>",
          "$JS.API.DIRECT.GET.OBJ_longshot-transcripts",
          "$JS.API.DIRECT.GET.OBJ_longshot-transcripts.>",
          "$JS.API.INFO",
          "$JS.API.STREAM.INFO.EVENTS",
          "$JS.API.STREAM.INFO.KV_longshot-attempts",
          "$JS.API.STREAM.INFO.OBJ_longshot-transcripts",
          "$JS.API.STREAM.MSG.GET.KV_longshot-attempts",
          "$JS.API.STREAM.MSG.GET.OBJ_longshot-transcripts",
          "$JS.FC.KV_longshot-attempts.>",
          "$JS.FC.OBJ_longshot-transcripts.>",
          "longshot.cancel",
          "longshot.request",
        ],
        deny: expect.arrayContaining(["$JS.API.CONSUMER.MSG.NEXT.EVENTS.planner-merges"]),
      },
      subscribe: { allow: ["_INBOX.>", "longshot.event.*.>"] },
    });
  });

  it("a sandbox cannot connect to NATS at all", async () => {
    const boxRoot = join(dir.path, "boxes");
    await mkdir(boxRoot, { recursive: true });
    await chmod(dir.path, 0o711);
    await chmod(boxRoot, 0o711);
    const box = await createBox({
      id: `perm-${process.pid}`,
      dir: join(boxRoot, "b1"),
      mounts: [],
      limits: {},
      isolation: "bwrap",
    });
    try {
      const hostAddrs = Object.values(networkInterfaces())
        .flat()
        .filter((a) => a && a.family === "IPv4" && !a.internal)
        .map((a) => a!.address);
      const script = `
        const net = require("node:net");
        const hosts = ${JSON.stringify(["127.0.0.1", ...hostAddrs])};
        let left = hosts.length;
        for (const host of hosts) {
          const s = net.connect({ host, port: ${port}, timeout: 3000 });
          s.on("connect", () => { console.log(host + " connected"); s.destroy(); if (--left === 0) process.exit(0); });
          s.on("timeout", () => { console.log(host + " timeout"); s.destroy(); if (--left === 0) process.exit(0); });
          s.on("error", (e) => { console.log(host + " " + e.code); if (--left === 0) process.exit(0); });
        }`;
      const child = box.exec({ argv: [process.execPath, "-e", script], cwd: "/tmp", env: {} });
      let out = "";
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
      });
      await new Promise((r) => child.once("exit", r));
      const lines = out.trim().split("\n");
      expect(lines).toHaveLength(1 + hostAddrs.length);
      for (const l of lines) expect(l).toMatch(/ (ECONNREFUSED|ENETUNREACH|EHOSTUNREACH|timeout)$/);
    } finally {
      await box.destroy();
    }
  });
});
