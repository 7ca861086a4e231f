import { createHash } from "node:crypto";
import { Buckets, type Task } from "@longshot/contracts";
import type { KV } from "@nats-io/kv";
import type { Bus } from "./bus.ts";
import { isKvConflict } from "./errors.ts";

/** Who holds a scope lease: the task (and its run) whose work on the file has not landed yet. */
export interface LeaseHolder {
  runId: string;
  taskId: string;
  /** The original task whose work this is (`resolves` of a conflict-fix task, else the task itself). */
  origin?: string;
  /** The repo-relative file. */
  file: string;
  /** ms since the epoch when it was taken. */
  at: number;
}

/** Outcome of {@link ScopeLeases.tryAcquire}: every file leased, or the holders that block it. */
export type LeaseResult = { ok: true } | { ok: false; heldBy: LeaseHolder[] };

/** What leasing needs of a task. `resolves`: a conflict-fix task takes over the leases of the task it resolves. */
export type LeaseTask = Pick<Task, "id" | "runId" | "repo" | "scope"> & { resolves?: string | undefined };

const hash = (s: string) => createHash("sha1").update(s).digest("hex").slice(0, 16);
const norm = (f: string) => f.trim().replace(/^\.\//, "");

/** The lease key of `file` in `repo`: `<sha1(repo)>.<sha1(file)>` (16 hex each; KV keys cannot hold paths). */
export function leaseKey(repo: string, file: string): string {
  return `${hash(repo)}.${hash(norm(file))}`;
}

/**
 * Scope leases in NATS KV (`longshot-leases`), shared by every dispatcher of a cluster: a task holds a lease on
 * each file of its declared scope from the moment it is admitted until its branch is merged or abandoned (the
 * planner releases them then), not merely while its sandbox runs — so a second task on the same file starts
 * from a base that already has the first one's change. Keys are per repository and file, so runs on the same
 * repository exclude each other too. Taking a lease is `create` (compare-and-set on "absent"); a task may take
 * back its own leases (a retry), and every task carrying the same original task's work (the original and its
 * successive conflict-fix tasks) takes over the others' leases.
 */
export interface ScopeLeases {
  /**
   * Leases every file of `task.scope` for the task, or none: when one is held by another task, the ones taken
   * by this call are given back and the holders are returned.
   */
  tryAcquire(task: LeaseTask): Promise<LeaseResult>;
  /** Resolves when one of `holders`' leases is released or changes hands, or after `maxWaitMs`. */
  waitForChange(task: LeaseTask, holders: LeaseHolder[], maxWaitMs: number): Promise<void>;
  /**
   * Releases the leases `task` (or, for `resolves`, the task it resolves) holds on `task.scope`; leases
   * another task holds are left alone.
   */
  release(task: LeaseTask): Promise<void>;
}

/** The {@link ScopeLeases} of `bus`'s cluster. */
export function createScopeLeases(bus: Bus): ScopeLeases {
  let kvP: Promise<KV> | undefined;
  const kv = () => {
    kvP ??= bus.kv(Buckets.leases);
    return kvP;
  };
  // The same work: the task itself (a retry), or any task carrying the same original task's work (the
  // original and its successive conflict-fix tasks).
  const origin = (task: LeaseTask) => task.resolves ?? task.id;
  const owns = (task: LeaseTask, h: LeaseHolder) =>
    h.runId === task.runId && (h.taskId === task.id || (h.origin ?? h.taskId) === origin(task));

  const files = (task: LeaseTask) => [...new Set(task.scope.map(norm).filter((f) => f.length > 0))].sort();

  const releaseKeys = async (task: LeaseTask, list: string[]) => {
    const store = await kv();
    for (const file of list) {
      const key = leaseKey(task.repo, file);
      const e = await store.get(key);
      if (e?.operation !== "PUT" || !owns(task, e.json<LeaseHolder>())) continue;
      try {
        await store.delete(key, { previousSeq: e.revision });
      } catch (err) {
        if (!isKvConflict(err)) throw err;
      }
    }
  };

  return {
    async tryAcquire(task) {
      const store = await kv();
      const taken: string[] = [];
      const heldBy: LeaseHolder[] = [];
      for (const file of files(task)) {
        const key = leaseKey(task.repo, file);
        const mine: LeaseHolder = {
          runId: task.runId,
          taskId: task.id,
          origin: origin(task),
          file,
          at: Date.now(),
        };
        try {
          await store.create(key, JSON.stringify(mine));
          taken.push(file);
          continue;
        } catch (err) {
          if (!isKvConflict(err)) throw err;
        }
        const e = await store.get(key);
        if (e?.operation !== "PUT") {
          heldBy.push({ runId: "?", taskId: "?", file, at: Date.now() });
          continue;
        }
        const holder = e.json<LeaseHolder>();
        if (!owns(task, holder)) {
          heldBy.push(holder);
          continue;
        }
        try {
          await store.update(key, JSON.stringify(mine), e.revision);
        } catch (err) {
          if (!isKvConflict(err)) throw err;
          heldBy.push(holder);
        }
      }
      if (heldBy.length === 0) return { ok: true };
      await releaseKeys(task, taken);
      return { ok: false, heldBy };
    },
    async waitForChange(task, holders, maxWaitMs) {
      const store = await kv();
      const keys = new Set(holders.map((h) => leaseKey(task.repo, h.file)));
      const watch = await store.watch({ key: [...keys].length === 1 ? [...keys][0]! : ">" });
      const timer = setTimeout(() => watch.stop(), maxWaitMs);
      try {
        for await (const e of watch) {
          if (!keys.has(e.key)) continue;
          if (e.operation !== "PUT") break;
          const h = e.json<LeaseHolder>();
          if (owns(task, h) || !holders.some((x) => x.runId === h.runId && x.taskId === h.taskId)) break;
        }
      } finally {
        clearTimeout(timer);
        watch.stop();
      }
    },
    release: (task) => releaseKeys(task, files(task)),
  };
}
