import { join } from "node:path";
import { type Bus, connectBus } from "@longshot/bus";
import type { Logger } from "@longshot/log";
import { natsServerEnv } from "./child-env.ts";
import { freePort, MAX_PAYLOAD_BYTES } from "./cluster.ts";
import { startNatsNodes } from "./nats-nodes.ts";
import {
  type ClusterRecord,
  liveCluster,
  ownerAlive,
  readClusterRecord,
  reapStale,
  removeClusterRecord,
  stateLayout,
  storedNodeCount,
  writeClusterRecord,
} from "./state.ts";
import { clusterUsers } from "./users.ts";

/** A connection to the cluster a command works with, and how it was reached. */
export interface ClusterAccess {
  bus: Bus;
  /**
   * `external`: `NATS_URL`; `running`: the state dir's cluster, run by another CLI; `offline`: the state dir's
   * store opened by a nats-server of this command alone (no services: nothing progresses).
   */
  kind: "external" | "running" | "offline";
  /** Where it is, for messages. */
  where: string;
  /**
   * `running` only: resolves when the connection drops and the cluster's owner CLI is gone (it stopped the
   * cluster at the end of its own run, or died): nothing will answer any more.
   */
  lost?: Promise<Error>;
  /** Closes the connection (and stops the offline nats-server). */
  close(): Promise<void>;
}

/** Resolves when `bus` loses its connection while the owner of `rec` is no longer alive. */
function ownerLost(bus: Bus, stateDir: string, rec: ClusterRecord): Promise<Error> {
  return new Promise((resolve) => {
    void (async () => {
      for await (const s of bus.nc.status()) {
        if ((s.type === "disconnect" || s.type === "reconnecting") && !ownerAlive(rec)) {
          resolve(new Error(`the cluster of ${stateDir} stopped (its CLI, pid ${rec.ownerPid}, is gone)`));
          return;
        }
      }
    })();
  });
}

/**
 * Resolves once stream `name` has a leader (a restarted cluster elects its meta leader, then each stream's), at
 * most `ms`.
 */
async function waitForStream(bus: Bus, name: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const info = await bus.jsm.streams.info(name);
      if (!info.cluster || info.cluster.leader) return;
    } catch (e) {
      if (Date.now() > deadline) throw e;
    }
    if (Date.now() > deadline) throw new Error(`stream ${name} has no leader after ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Thrown when there is nothing to read: no `NATS_URL`, no running cluster and no store. */
export class NoClusterError extends Error {
  override readonly name = "NoClusterError";
}

/**
 * Reaches the cluster for a command that reads or publishes: `NATS_URL` (with `NATS_USER`/`NATS_PASSWORD`) when
 * set; else the running cluster of `stateDir` (its admin credentials from `cluster.json`); else, with
 * `offline: true`, the store of `stateDir` opened by a nats-server started for this command only (so `runs`,
 * `status` and `logs` work after the CLI that ran the cluster exited).
 * @throws NoClusterError when none of these exists.
 */
export async function openCluster(opts: {
  env: Record<string, string | undefined>;
  stateDir: string;
  log: Logger;
  offline: boolean;
}): Promise<ClusterAccess> {
  const { env, log } = opts;
  if (env.NATS_URL) {
    const bus = await connectBus({
      servers: env.NATS_URL,
      name: "longshot-cli",
      log,
      ...(env.NATS_USER ? { user: env.NATS_USER, pass: env.NATS_PASSWORD ?? "" } : {}),
    });
    return { bus, kind: "external", where: env.NATS_URL, close: () => bus.close() };
  }
  const rec = await liveCluster(opts.stateDir);
  if (rec) {
    const bus = await connectBus({
      servers: rec.natsUrls.join(","),
      name: "longshot-cli",
      log,
      ...(rec.admin ? rec.admin : {}),
    });
    return {
      bus,
      kind: "running",
      where: `the cluster of ${opts.stateDir} (CLI pid ${rec.ownerPid})`,
      lost: ownerLost(bus, opts.stateDir, rec),
      close: () => bus.close(),
    };
  }
  const nodes = await storedNodeCount(opts.stateDir);
  if (!opts.offline || nodes === undefined)
    throw new NoClusterError(
      `no cluster: NATS_URL is not set, and ${opts.stateDir} has ${nodes === undefined ? "no store (no run yet)" : "no running cluster"}`,
    );
  const stale = await readClusterRecord(opts.stateDir);
  if (stale) {
    await reapStale(opts.stateDir, stale);
    await removeClusterRecord(opts.stateDir);
  }
  const layout = stateLayout(opts.stateDir);
  const users = clusterUsers();
  const specs = [];
  for (let i = 1; i <= nodes; i++)
    specs.push({
      name: `n${i}`,
      port: await freePort(),
      storeDir: join(layout.natsDir, `n${i}`),
      ...(nodes > 1 ? { clusterPort: await freePort() } : {}),
    });
  const natsNodes = await startNatsNodes({
    specs,
    users: [{ user: users.admin.user, password: users.admin.pass }],
    maxPayloadBytes: MAX_PAYLOAD_BYTES,
    confDir: layout.confDir,
    logDir: layout.logDir,
    env: natsServerEnv(process.env),
  });
  const admin = { user: users.admin.user, pass: users.admin.pass };
  await writeClusterRecord(opts.stateDir, {
    ownerPid: process.pid,
    natsUrls: natsNodes.urls,
    admin,
    readOnly: true,
    startedAt: new Date().toISOString(),
    pids: Object.fromEntries(natsNodes.pids().map((p, i) => [`nats-n${i + 1}`, p ?? 0])),
  });
  try {
    const bus = await connectBus({ servers: natsNodes.urls.join(","), name: "longshot-cli", log, ...admin });
    // A store of several nodes answers once they have elected their JetStream leaders again (reads only).
    if (nodes > 1) await waitForStream(bus, "EVENTS", 60_000);
    return {
      bus,
      kind: "offline",
      where: `the store of ${opts.stateDir} (no cluster running)`,
      close: async () => {
        await bus.close();
        await natsNodes.stop();
        await removeClusterRecord(opts.stateDir);
      },
    };
  } catch (e) {
    await natsNodes.stop();
    await removeClusterRecord(opts.stateDir);
    throw e;
  }
}
