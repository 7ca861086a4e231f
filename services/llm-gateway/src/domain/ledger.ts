import { createHash, randomBytes } from "node:crypto";

/** Prices of one model in currency units (e.g. USD) per million tokens. */
export interface ModelPrice {
  /** Uncached prompt tokens. */
  inputPerMTok: number;
  /** Cached prompt tokens; defaults to `inputPerMTok`. */
  cachedInputPerMTok?: number | undefined;
  /** Completion tokens. */
  outputPerMTok: number;
}

/** Model id → price. The key `"*"` is the fallback for models not listed; unlisted models cost 0 otherwise. */
export type PriceTable = Record<string, ModelPrice>;

/** Token counts of one completion, as reported by the upstream's `usage`. */
export interface TokenUsage {
  promptTokens: number;
  completionTokens: number;
  /** Prompt tokens served from the replica's prefix cache (`prompt_tokens_details.cached_tokens`). */
  cachedTokens: number;
}

/**
 * Cost of one completion: uncached prompt × input price + cached × cached price + completion × output price,
 * prices per million tokens. @returns currency units (0 when the model has no price and there is no `"*"`).
 */
export function costOf(prices: PriceTable, model: string, usage: TokenUsage): number {
  const p = prices[model] ?? prices["*"];
  if (p === undefined) return 0;
  const cached = Math.min(usage.cachedTokens, usage.promptTokens);
  const uncached = usage.promptTokens - cached;
  return (
    (uncached * p.inputPerMTok +
      cached * (p.cachedInputPerMTok ?? p.inputPerMTok) +
      usage.completionTokens * p.outputPerMTok) /
    1_000_000
  );
}

/** What a bearer token grants: requests on behalf of a run (and optionally one task / role). */
export interface Grant {
  runId: string;
  taskId?: string | undefined;
  /** Free-form role label for accounting (planner, worker, reconciler, ...). */
  role?: string | undefined;
  /** Budget of this token's scope in tokens (prompt + completion): the task's when `taskId` is set, else the run's. */
  budgetTokens?: number | undefined;
}

/** Accumulated usage of one scope. */
export interface UsageTotals {
  requests: number;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  /** prompt + completion (the unit budgets are counted in). */
  totalTokens: number;
  /** Currency units from the price table. */
  cost: number;
}

/** Usage of one run: its totals, budget, and breakdowns by task, role and model. */
export interface RunUsage extends UsageTotals {
  runId: string;
  budgetTokens?: number;
  byTask: Record<string, UsageTotals & { budgetTokens?: number }>;
  byRole: Record<string, UsageTotals>;
  byModel: Record<string, UsageTotals>;
}

/** Why a request is refused before it is sent: its task's or its run's token budget is used up. */
export interface BudgetRefusal {
  scope: "task" | "run";
  usedTokens: number;
  budgetTokens: number;
}

const zero = (): UsageTotals => ({
  requests: 0,
  promptTokens: 0,
  completionTokens: 0,
  cachedTokens: 0,
  totalTokens: 0,
  cost: 0,
});

function add(t: UsageTotals, u: TokenUsage, cost: number): void {
  t.requests++;
  t.promptTokens += u.promptTokens;
  t.completionTokens += u.completionTokens;
  t.cachedTokens += u.cachedTokens;
  t.totalTokens += u.promptTokens + u.completionTokens;
  t.cost += cost;
}

function bucket(map: Map<string, UsageTotals>, key: string): UsageTotals {
  let t = map.get(key);
  if (t === undefined) {
    t = zero();
    map.set(key, t);
  }
  return t;
}

interface RunState {
  totals: UsageTotals;
  budget: number | undefined;
  tasks: Map<string, { totals: UsageTotals; budget: number | undefined }>;
  roles: Map<string, UsageTotals>;
  models: Map<string, UsageTotals>;
}

/** SHA-256 of a token (the ledger keeps only hashes, so a heap dump or a log of its keys reveals no token). */
function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("base64url");
}

/**
 * Bearer tokens, token budgets and usage accounting (in memory).
 * - `issue` returns a new opaque token (`lsg_` + 32 random bytes, base64url) bound to a {@link Grant}. A grant
 *   with `taskId` sets that task's budget; one without sets the run's budget (the latest issued wins).
 * - `check` refuses a request once the task's or the run's used tokens reached its budget: the request that
 *   crosses a budget completes (its size is unknown in advance), the next one is refused.
 * - `record` adds one completion's usage to the run, task, role and model, priced with the price table.
 */
export class Ledger {
  private readonly grants = new Map<string, Grant>();
  private readonly runs = new Map<string, RunState>();
  private readonly newToken: () => string;
  prices: PriceTable;

  constructor(
    prices: PriceTable = {},
    newToken: () => string = () => `lsg_${randomBytes(32).toString("base64url")}`,
  ) {
    this.prices = prices;
    this.newToken = newToken;
  }

  private run(runId: string): RunState {
    let r = this.runs.get(runId);
    if (r === undefined) {
      r = { totals: zero(), budget: undefined, tasks: new Map(), roles: new Map(), models: new Map() };
      this.runs.set(runId, r);
    }
    return r;
  }

  private task(run: RunState, taskId: string) {
    let t = run.tasks.get(taskId);
    if (t === undefined) {
      t = { totals: zero(), budget: undefined };
      run.tasks.set(taskId, t);
    }
    return t;
  }

  /** Issues a token for `grant` and sets the task's or run's budget when `budgetTokens` is given. */
  issue(grant: Grant): string {
    const token = this.newToken();
    const g: Grant = { runId: grant.runId };
    if (grant.taskId !== undefined) g.taskId = grant.taskId;
    if (grant.role !== undefined) g.role = grant.role;
    if (grant.budgetTokens !== undefined) g.budgetTokens = grant.budgetTokens;
    this.grants.set(hashToken(token), g);
    const run = this.run(g.runId);
    if (g.budgetTokens !== undefined) {
      if (g.taskId !== undefined) this.task(run, g.taskId).budget = g.budgetTokens;
      else run.budget = g.budgetTokens;
    }
    return token;
  }

  /** The grant of a token, or undefined for an unknown / revoked token. */
  lookup(token: string): Grant | undefined {
    return this.grants.get(hashToken(token));
  }

  /** Revokes a token. @returns whether it existed. */
  revoke(token: string): boolean {
    return this.grants.delete(hashToken(token));
  }

  /** Number of live tokens. */
  get tokenCount(): number {
    return this.grants.size;
  }

  /** @returns undefined when the grant may make a request, else which budget is used up. */
  check(grant: Grant): BudgetRefusal | undefined {
    const run = this.runs.get(grant.runId);
    if (run === undefined) return undefined;
    if (grant.taskId !== undefined) {
      const t = run.tasks.get(grant.taskId);
      if (t?.budget !== undefined && t.totals.totalTokens >= t.budget) {
        return { scope: "task", usedTokens: t.totals.totalTokens, budgetTokens: t.budget };
      }
    }
    if (run.budget !== undefined && run.totals.totalTokens >= run.budget) {
      return { scope: "run", usedTokens: run.totals.totalTokens, budgetTokens: run.budget };
    }
    return undefined;
  }

  /** Adds one completion's usage. @returns its cost (currency units). */
  record(grant: Grant, model: string, usage: TokenUsage): number {
    const cost = costOf(this.prices, model, usage);
    const run = this.run(grant.runId);
    add(run.totals, usage, cost);
    if (grant.taskId !== undefined) add(this.task(run, grant.taskId).totals, usage, cost);
    add(bucket(run.roles, grant.role ?? "unknown"), usage, cost);
    add(bucket(run.models, model), usage, cost);
    return cost;
  }

  /** Usage of one run (undefined when nothing is known about it). */
  usage(runId: string): RunUsage | undefined {
    const r = this.runs.get(runId);
    if (r === undefined) return undefined;
    const out: RunUsage = { runId, ...r.totals, byTask: {}, byRole: {}, byModel: {} };
    if (r.budget !== undefined) out.budgetTokens = r.budget;
    for (const [id, t] of r.tasks) {
      out.byTask[id] = { ...t.totals, ...(t.budget !== undefined ? { budgetTokens: t.budget } : {}) };
    }
    for (const [id, t] of r.roles) out.byRole[id] = { ...t };
    for (const [id, t] of r.models) out.byModel[id] = { ...t };
    return out;
  }

  /** Usage of every run. */
  allUsage(): RunUsage[] {
    return [...this.runs.keys()].map((id) => this.usage(id)!);
  }
}
