import { type Bus, isKvConflict } from "@longshot/bus";
import { Buckets, LlmRunUsage } from "@longshot/contracts";
import { type KV, KvWatchInclude } from "@nats-io/kv";
import { z } from "zod";
import { addRunUsage, type Grant, type RunUsage } from "./domain/ledger.ts";

/**
 * Durable side of the gateway's ledger: token grants (by token hash, never the token) and per-run usage, so a
 * restarted gateway still accepts the tokens it issued and still counts what runs already used against their
 * budgets. The gateway writes a grant before it answers `POST /admin/tokens`, deletes it before it answers a
 * revocation, and adds the usage it recorded to the run's record every `usageFlushMs`. Several gateway
 * processes may share one store: usage is added, never overwritten.
 */
export interface LedgerStore {
  /** The grant stored under a token hash, or undefined. */
  getGrant(hash: string): Promise<Grant | undefined>;
  putGrant(hash: string, grant: Grant): Promise<void>;
  deleteGrant(hash: string): Promise<void>;
  /** The stored usage record of a run, or undefined. */
  getUsage(runId: string): Promise<StoredUsage | undefined>;
  /** Adds `delta` to the run's record atomically (compare-and-set). @returns the record after the addition. */
  addUsage(delta: RunUsage): Promise<StoredUsage>;
  /**
   * Calls `onRecord` with every usage record written from now on (by any gateway process), so each process's
   * view of a run stays current. @returns a function that stops watching.
   */
  watchUsage(onRecord: (record: StoredUsage) => void): Promise<() => void>;
}

/** A run's usage record and its store revision (records only grow: a higher revision is newer). */
export interface StoredUsage {
  usage: RunUsage;
  revision: number;
}

const GrantRecord = z.object({
  runId: z.string().min(1),
  taskId: z.string().min(1).optional(),
  role: z.string().min(1).optional(),
  budgetTokens: z.number().int().positive().optional(),
  anyRun: z.boolean().optional(),
  expiresAt: z.number().int().positive().optional(),
});

/** KV keys are `[-/_=.a-zA-Z0-9]+`; run ids are (see `Id`), token hashes are base64url. */
function key(k: string): string {
  if (!/^[-/_=.a-zA-Z0-9]+$/.test(k)) throw new Error(`not a valid KV key: ${JSON.stringify(k)}`);
  return k;
}

/**
 * A {@link LedgerStore} on NATS KV: bucket `longshot-llm-tokens` (token hash → grant, history 1) and
 * `longshot-llm-usage` (run id → `LlmRunUsage` of @longshot/contracts). Records that fail validation are ignored (treated as
 * absent), so a corrupt entry cannot crash the gateway.
 */
export async function natsLedgerStore(bus: Bus): Promise<LedgerStore> {
  const tokens: KV = await bus.kv(Buckets.llmTokens);
  const usage: KV = await bus.kv(Buckets.llmUsage);
  return {
    async getGrant(hash) {
      const e = await tokens.get(key(hash));
      if (e === null || e.operation !== "PUT") return undefined;
      const p = GrantRecord.safeParse(safeJson(e.string()));
      return p.success ? p.data : undefined;
    },
    async putGrant(hash, grant) {
      await tokens.put(key(hash), JSON.stringify(grant));
    },
    async deleteGrant(hash) {
      await tokens.delete(key(hash));
    },
    async getUsage(runId) {
      const e = await usage.get(key(runId));
      if (e === null || e.operation !== "PUT") return undefined;
      const p = LlmRunUsage.safeParse(safeJson(e.string()));
      return p.success ? { usage: p.data as RunUsage, revision: e.revision } : undefined;
    },
    async watchUsage(onRecord) {
      const w = await usage.watch({ key: ">", include: KvWatchInclude.UpdatesOnly });
      void (async () => {
        for await (const e of w) {
          if (e.operation !== "PUT") continue;
          const p = LlmRunUsage.safeParse(safeJson(e.string()));
          if (p.success) onRecord({ usage: p.data as RunUsage, revision: e.revision });
        }
      })();
      return () => w.stop();
    },
    async addUsage(delta) {
      const k = key(delta.runId);
      for (let attempt = 0; ; attempt++) {
        const e = await usage.get(k);
        const current =
          e !== null && e.operation === "PUT" ? LlmRunUsage.safeParse(safeJson(e.string())) : undefined;
        const merged = current?.success ? addRunUsage(current.data as RunUsage, delta) : delta;
        try {
          const revision =
            e === null || e.operation !== "PUT"
              ? await usage.create(k, JSON.stringify(merged))
              : await usage.update(k, JSON.stringify(merged), e.revision);
          return { usage: merged, revision };
        } catch (err) {
          // Another gateway wrote the record in between (wrong last sequence / key exists): read it again.
          if (attempt >= 9 || !isKvConflict(err)) throw err;
        }
      }
    },
  };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
