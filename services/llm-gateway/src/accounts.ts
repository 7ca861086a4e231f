import type { Logger } from "@longshot/log";
import {
  type BudgetRefusal,
  type Grant,
  hashToken,
  type Ledger,
  type Reservation,
  type RunUsage,
} from "./domain/ledger.ts";
import type { UsageCounts } from "./domain/sse.ts";
import type { GatewayMetrics } from "./metrics.ts";
import type { LedgerStore, StoredUsage } from "./store.ts";

/**
 * Tokens and usage of one gateway process: the in-memory {@link Ledger} kept in step with the durable
 * {@link LedgerStore} when there is one (grants written before a token is handed out, deleted before a revocation
 * answers, read back for tokens this process has not seen; usage added to the runs' stored records by
 * {@link flush}, and other processes' records applied as they arrive). Without a store it is the ledger alone.
 * Token and usage metrics are counted here.
 */
export class Accounts {
  private readonly ledger: Ledger;
  private readonly store: LedgerStore | undefined;
  private readonly metrics: GatewayMetrics;
  private readonly log: Logger;
  /** Runs whose stored usage was merged into the ledger (once per process), and loads in progress. */
  private readonly loadedRuns = new Set<string>();
  private readonly loadingRuns = new Map<string, Promise<void>>();
  /** Store revision of the last usage record applied per run. */
  private readonly appliedRevisions = new Map<string, number>();

  constructor(deps: {
    ledger: Ledger;
    store: LedgerStore | undefined;
    metrics: GatewayMetrics;
    log: Logger;
  }) {
    this.ledger = deps.ledger;
    this.store = deps.store;
    this.metrics = deps.metrics;
    this.log = deps.log;
  }

  /** Whether grants and usage are kept in a store (else in memory only). */
  get durable(): boolean {
    return this.store !== undefined;
  }

  /**
   * Follows other processes' flushes of the runs this process serves, so its budgets count their usage too.
   * @returns a function that stops watching; undefined without a store, or when the watch could not start (logged:
   *   views then refresh on flush only). Never rejects.
   */
  async watch(): Promise<(() => void) | undefined> {
    if (this.store === undefined) return undefined;
    return this.store
      .watchUsage((stored) => {
        if (this.loadedRuns.has(stored.usage.runId)) this.applyStored(stored);
      })
      .catch((err: unknown) => {
        this.log.warn({ err: (err as Error).message }, "usage watch failed; views refresh on flush only");
        return undefined;
      });
  }

  /**
   * The grant of a bearer token: memory first, then the store (a token issued before a restart; a failed lookup is
   * logged and counts as unknown). An expired grant is forgotten (and deleted from the store, best effort) and
   * reported as `"expired"`. Never rejects.
   */
  async grantOf(token: string): Promise<Grant | "expired" | undefined> {
    const hash = hashToken(token);
    let grant = this.ledger.grantOf(hash);
    if (grant === undefined && this.store !== undefined) {
      try {
        const stored = await this.store.getGrant(hash);
        if (stored !== undefined) grant = this.ledger.putGrant(hash, stored);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, "token store lookup failed");
      }
    }
    if (grant?.expiresAt !== undefined && Date.now() >= grant.expiresAt) {
      this.ledger.dropGrant(hash);
      this.store?.deleteGrant(hash).catch(() => undefined);
      return "expired";
    }
    return grant;
  }

  /**
   * Issues a token for `grant`; with a store, the grant is stored (by token hash) before the token is returned.
   * @throws the store's error; the token is then not issued (forgotten again).
   */
  async issue(grant: Grant): Promise<string> {
    const token = this.ledger.issue(grant);
    if (this.store) {
      const hash = hashToken(token);
      try {
        await this.store.putGrant(hash, this.ledger.grantOf(hash)!);
      } catch (err) {
        this.ledger.dropGrant(hash);
        throw err;
      }
    }
    return token;
  }

  /**
   * Revokes a token, in memory and (before resolving) in the store.
   * @returns whether the token was known (here or in the store).
   * @throws the store's error (the token may then still be valid in the store).
   */
  async revoke(token: string): Promise<boolean> {
    const hash = hashToken(token);
    let known = this.ledger.dropGrant(hash);
    if (this.store) {
      known ||= (await this.store.getGrant(hash)) !== undefined;
      await this.store.deleteGrant(hash);
    }
    return known;
  }

  /**
   * Loads a run's stored usage once per process, before its first budget check: a promise to await while it
   * loads, undefined when there is nothing to wait for (no store, or loaded already). Never rejects (a failed read
   * is logged and retried on the run's next request).
   */
  ensureRunLoaded(runId: string): Promise<void> | undefined {
    if (this.store === undefined || this.loadedRuns.has(runId)) return undefined;
    let p = this.loadingRuns.get(runId);
    if (p === undefined) {
      const st = this.store;
      p = (async () => {
        try {
          const stored = await st.getUsage(runId);
          if (stored) this.applyStored(stored);
          this.loadedRuns.add(runId);
        } catch (err) {
          this.log.warn(
            { runId, err: (err as Error).message },
            "usage store read failed; counting from memory",
          );
        } finally {
          this.loadingRuns.delete(runId);
        }
      })();
      this.loadingRuns.set(runId, p);
    }
    return p;
  }

  /**
   * Holds `estimate` tokens (prompt bytes / 4 + the completion cap) against the grant's task and run while a
   * request is in flight. @returns the reservation to {@link release}, or why the budget refuses the request.
   */
  admit(grant: Grant, estimate: number): Reservation | BudgetRefusal {
    return this.ledger.admit(grant, estimate);
  }

  /** Releases a reservation of {@link admit} (exactly once, when the request ended). */
  release(reservation: Reservation): void {
    this.ledger.release(reservation);
  }

  /**
   * Records one completion's `usage` (undefined: the upstream reported none, nothing is counted) for `grant` and
   * `model`: ledger (priced) and the token and cost metrics.
   */
  account(grant: Grant, model: string, usage: UsageCounts | undefined): void {
    if (usage === undefined) return;
    const { metrics } = this;
    const cost = this.ledger.record(grant, model, usage);
    const role = grant.role ?? "unknown";
    // The types partition the total: summing over `type` gives prompt + completion, nothing twice.
    const cached = Math.min(usage.cachedTokens, usage.promptTokens);
    metrics.tokens.inc({ model, role, type: "uncached_prompt" }, usage.promptTokens - cached);
    metrics.tokens.inc({ model, role, type: "cached_prompt" }, cached);
    metrics.tokens.inc({ model, role, type: "completion" }, usage.completionTokens);
    if (cost > 0) metrics.cost.inc({ model, role }, cost);
  }

  /**
   * Usage of one run (loaded from the store first when this process has not seen it; empty when unknown), or of
   * every run this process counted. Never rejects.
   */
  async usage(runId?: string): Promise<RunUsage[]> {
    if (runId === undefined) return this.ledger.allUsage();
    await this.ensureRunLoaded(runId);
    const u = this.ledger.usage(runId);
    return u ? [u] : [];
  }

  /**
   * Adds the usage recorded since the last flush to each run's stored record (compare-and-set, so several gateways
   * can share the store) and takes the result as this process's view of the run. A failed write is logged and its
   * usage kept for the next flush. Never rejects; does nothing without a store.
   */
  async flush(): Promise<void> {
    const store = this.store;
    if (store === undefined) return;
    await Promise.all(
      this.ledger.pendingRuns().map(async (runId) => {
        const delta = this.ledger.takePending(runId);
        if (delta === undefined) return;
        try {
          this.applyStored(await store.addUsage(delta));
        } catch (err) {
          this.ledger.returnPending(delta);
          this.log.warn({ runId, err: (err as Error).message }, "usage store write failed; will retry");
        }
      }),
    );
  }

  /**
   * Takes a stored usage record as this process's view of the run (plus its unflushed usage), unless a newer
   * revision was applied already (records from flushes, loads and the watch arrive in any order).
   */
  private applyStored(stored: StoredUsage): void {
    const runId = stored.usage.runId;
    if ((this.appliedRevisions.get(runId) ?? 0) >= stored.revision) return;
    this.appliedRevisions.set(runId, stored.revision);
    this.ledger.applyStored(stored.usage);
  }
}
