import { createHash, randomBytes } from "node:crypto";
import { RunId } from "@longshot/contracts";

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
  /**
   * A service token (planner, subplanner, reconciler serve every run): a request naming a run in the
   * `x-longshot-run-id` header is accounted to, and budgeted as, that run (role kept, no task); `runId` is the
   * fallback for requests without the header.
   */
  anyRun?: boolean | undefined;
  /** When the token stops working (epoch ms); absent = until revoked. */
  expiresAt?: number | undefined;
}

/**
 * The grant one request is accounted to, given its token's grant and its `x-longshot-run-id` header: a service
 * token's (`anyRun`) request naming a run is accounted to, and budgeted as, that run with the token's role (no
 * task); every other request (a task token, no header) to the token's own grant.
 * @returns undefined when a service token's header is not a valid run id (the gateway answers 400).
 */
export function requestGrant(token: Grant, runHeader: string | string[] | undefined): Grant | undefined {
  if (!token.anyRun || typeof runHeader !== "string" || runHeader === "") return token;
  if (!RunId.safeParse(runHeader).success) return undefined;
  return { runId: runHeader, ...(token.role !== undefined ? { role: token.role } : {}) };
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

/**
 * Why a request is refused before it is sent: its task's or its run's token budget is used up (`reservedTokens`
 * 0), or would be by the requests of that scope still in flight (`reservedTokens` > 0: a transient refusal).
 */
export interface BudgetRefusal {
  scope: "task" | "run";
  usedTokens: number;
  /** Estimated tokens of the scope's other requests in flight. */
  reservedTokens: number;
  budgetTokens: number;
}

/** Tokens held for one request in flight (see {@link Ledger.admit}); give it back with {@link Ledger.release}. */
export interface Reservation {
  readonly runId: string;
  readonly taskId: string | undefined;
  readonly tokens: number;
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

function merge(into: UsageTotals, from: UsageTotals): void {
  into.requests += from.requests;
  into.promptTokens += from.promptTokens;
  into.completionTokens += from.completionTokens;
  into.cachedTokens += from.cachedTokens;
  into.totalTokens += from.totalTokens;
  into.cost += from.cost;
}

/**
 * Sum of two usage records of one run (e.g. the stored record and a gateway's unflushed usage): totals and
 * every task, role and model added up; budgets are `a`'s, else `b`'s. Pure.
 */
export function addRunUsage(a: RunUsage, b: RunUsage): RunUsage {
  const out: RunUsage = { runId: a.runId, ...zero(), byTask: {}, byRole: {}, byModel: {} };
  merge(out, a);
  merge(out, b);
  const budget = a.budgetTokens ?? b.budgetTokens;
  if (budget !== undefined) out.budgetTokens = budget;
  const slot = <T extends UsageTotals>(rec: Record<string, T>, id: string, make: () => T): T => {
    const existing = rec[id];
    if (existing !== undefined) return existing;
    const created = make();
    rec[id] = created;
    return created;
  };
  for (const src of [a, b]) {
    for (const [id, t] of Object.entries(src.byTask)) {
      const into = slot<UsageTotals & { budgetTokens?: number }>(out.byTask, id, zero);
      merge(into, t);
      const tb = into.budgetTokens ?? t.budgetTokens;
      if (tb !== undefined) into.budgetTokens = tb;
    }
    for (const [id, t] of Object.entries(src.byRole)) merge(slot(out.byRole, id, zero), t);
    for (const [id, t] of Object.entries(src.byModel)) merge(slot(out.byModel, id, zero), t);
  }
  return out;
}

function bucket(map: Map<string, UsageTotals>, key: string): UsageTotals {
  let t = map.get(key);
  if (t === undefined) {
    t = zero();
    map.set(key, t);
  }
  return t;
}

interface ScopeState {
  totals: UsageTotals;
  budget: number | undefined;
  /** Estimated tokens of requests in flight. */
  reserved: number;
}

interface RunState extends ScopeState {
  tasks: Map<string, ScopeState>;
  roles: Map<string, UsageTotals>;
  models: Map<string, UsageTotals>;
}

/**
 * SHA-256 of a token, base64url (the ledger and its store keep only hashes, so a heap dump, a log of its keys or
 * the KV bucket reveal no token). Valid as a NATS KV key.
 */
export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("base64url");
}

/**
 * Bearer tokens, token budgets and usage accounting, in memory (the gateway persists grants and usage through a
 * `LedgerStore` when it has one).
 * - `issue` returns a new opaque token (`lsg_` + 32 random bytes, base64url) bound to a {@link Grant}. A grant
 *   with `taskId` sets that task's budget; one without sets the run's budget (the latest issued wins).
 * - `check` refuses a request once the task's or the run's used tokens reached its budget: the request that
 *   crosses a budget completes (its size is unknown in advance), the next one is refused. `admit` also counts
 *   the estimated tokens of the scope's requests in flight.
 * - `record` adds one completion's usage to the run, task, role and model, priced with the price table.
 */
export class Ledger {
  private readonly grants = new Map<string, Grant>();
  private readonly runs = new Map<string, RunState>();
  /** Usage recorded since the last {@link takePending}, per run (kept only with `trackPending`). */
  private readonly pending = new Map<string, RunState>();
  private readonly trackPending: boolean;
  private readonly newToken: () => string;
  prices: PriceTable;

  /**
   * @param trackPending keep the usage recorded since the last {@link takePending} per run, for a store that
   *   adds it to a shared record (the gateway sets it when it has a store).
   */
  constructor(
    prices: PriceTable = {},
    newToken: () => string = () => `lsg_${randomBytes(32).toString("base64url")}`,
    trackPending = false,
  ) {
    this.prices = prices;
    this.newToken = newToken;
    this.trackPending = trackPending;
  }

  private run(runId: string, map = this.runs): RunState {
    let r = map.get(runId);
    if (r === undefined) {
      r = {
        totals: zero(),
        budget: undefined,
        reserved: 0,
        tasks: new Map(),
        roles: new Map(),
        models: new Map(),
      };
      map.set(runId, r);
    }
    return r;
  }

  private task(run: RunState, taskId: string) {
    let t = run.tasks.get(taskId);
    if (t === undefined) {
      t = { totals: zero(), budget: undefined, reserved: 0 };
      run.tasks.set(taskId, t);
    }
    return t;
  }

  /** Issues a token for `grant` and sets the task's or run's budget when `budgetTokens` is given. */
  issue(grant: Grant): string {
    const token = this.newToken();
    this.putGrant(hashToken(token), grant);
    return token;
  }

  /**
   * Stores a grant under a token hash (a token issued earlier, e.g. read back from the store after a restart)
   * and applies its budget. @returns the normalized grant.
   */
  putGrant(hash: string, grant: Grant): Grant {
    const g: Grant = { runId: grant.runId };
    if (grant.taskId !== undefined) g.taskId = grant.taskId;
    if (grant.role !== undefined) g.role = grant.role;
    if (grant.budgetTokens !== undefined) g.budgetTokens = grant.budgetTokens;
    if (grant.anyRun === true) g.anyRun = true;
    if (grant.expiresAt !== undefined) g.expiresAt = grant.expiresAt;
    this.grants.set(hash, g);
    const run = this.run(g.runId);
    if (g.budgetTokens !== undefined) {
      if (g.taskId !== undefined) this.task(run, g.taskId).budget = g.budgetTokens;
      else run.budget = g.budgetTokens;
    }
    return g;
  }

  /** The grant stored under a token hash. */
  grantOf(hash: string): Grant | undefined {
    return this.grants.get(hash);
  }

  /** Forgets a token hash (revoked elsewhere). @returns whether it was known. */
  dropGrant(hash: string): boolean {
    return this.grants.delete(hash);
  }

  /** Whether usage of `runId` is known in memory. */
  knowsRun(runId: string): boolean {
    return this.runs.has(runId);
  }

  /**
   * Replaces what the ledger knows of a run's usage by a stored record (written by this or another gateway
   * process, see {@link takePending}) plus the usage recorded here and not taken yet. Budgets set in memory win
   * over the record's; usage held by requests in flight is kept.
   */
  applyStored(stored: RunUsage): void {
    const pending = this.usageOf(this.pending.get(stored.runId), stored.runId);
    const view = pending ? addRunUsage(stored, pending) : stored;
    const run = this.run(stored.runId);
    run.totals = zero();
    merge(run.totals, view);
    run.budget ??= view.budgetTokens;
    const tasks = run.tasks;
    run.tasks = new Map();
    for (const [id, t] of Object.entries(view.byTask)) {
      const totals = zero();
      merge(totals, t);
      const old = tasks.get(id);
      run.tasks.set(id, { totals, budget: old?.budget ?? t.budgetTokens, reserved: old?.reserved ?? 0 });
    }
    for (const [id, old] of tasks) if (!run.tasks.has(id)) run.tasks.set(id, { ...old, totals: zero() });
    run.roles = new Map(Object.entries(view.byRole).map(([id, t]) => [id, { ...t }]));
    run.models = new Map(Object.entries(view.byModel).map(([id, t]) => [id, { ...t }]));
  }

  /** Runs with usage recorded and not taken yet. */
  pendingRuns(): string[] {
    return [...this.pending.keys()];
  }

  /**
   * The usage recorded for a run since the last call (no budgets), to add to a shared record; undefined when
   * there is none. Give it back with {@link returnPending} when it could not be stored.
   */
  takePending(runId: string): RunUsage | undefined {
    const p = this.pending.get(runId);
    this.pending.delete(runId);
    return this.usageOf(p, runId);
  }

  /** Puts usage taken by {@link takePending} back (its store write failed), to be taken again later. */
  returnPending(delta: RunUsage): void {
    const p = this.run(delta.runId, this.pending);
    merge(p.totals, delta);
    for (const [id, t] of Object.entries(delta.byTask)) merge(this.task(p, id).totals, t);
    for (const [id, t] of Object.entries(delta.byRole)) merge(bucket(p.roles, id), t);
    for (const [id, t] of Object.entries(delta.byModel)) merge(bucket(p.models, id), t);
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
    return this.refusal(grant, 0);
  }

  private refusal(grant: Grant, extra: number): BudgetRefusal | undefined {
    const run = this.runs.get(grant.runId);
    if (run === undefined) return undefined;
    const over = (scope: "task" | "run", s: ScopeState): BudgetRefusal | undefined => {
      if (s.budget === undefined) return undefined;
      const used = s.totals.totalTokens;
      if (used >= s.budget) return { scope, usedTokens: used, reservedTokens: 0, budgetTokens: s.budget };
      // Other requests in flight may take the rest: refuse while they would, but never the first one.
      if (s.reserved > 0 && used + s.reserved + extra > s.budget)
        return { scope, usedTokens: used, reservedTokens: s.reserved, budgetTokens: s.budget };
      return undefined;
    };
    const task = grant.taskId === undefined ? undefined : run.tasks.get(grant.taskId);
    return (task && over("task", task)) ?? over("run", run);
  }

  /**
   * Admission against budgets with requests in flight: refuses like {@link check}, and also while the scope's
   * used tokens plus the estimates of its requests in flight plus `estimateTokens` exceed the budget — so many
   * concurrent requests of one task cannot all start just below its budget and overshoot it together. A lone
   * request is never refused while the budget is not used up. On success, holds `estimateTokens` until
   * {@link release}.
   */
  admit(grant: Grant, estimateTokens: number): BudgetRefusal | Reservation {
    const refusal = this.refusal(grant, estimateTokens);
    if (refusal) return refusal;
    const tokens = Math.max(0, Math.ceil(estimateTokens));
    const run = this.run(grant.runId);
    run.reserved += tokens;
    if (grant.taskId !== undefined) this.task(run, grant.taskId).reserved += tokens;
    return { runId: grant.runId, taskId: grant.taskId, tokens };
  }

  /** Gives back a reservation of {@link admit} (once the request ended, recorded or not). */
  release(r: Reservation): void {
    const run = this.runs.get(r.runId);
    if (run === undefined) return;
    run.reserved = Math.max(0, run.reserved - r.tokens);
    if (r.taskId !== undefined) {
      const t = run.tasks.get(r.taskId);
      if (t) t.reserved = Math.max(0, t.reserved - r.tokens);
    }
  }

  /** Adds one completion's usage. @returns its cost (currency units). */
  record(grant: Grant, model: string, usage: TokenUsage): number {
    const cost = costOf(this.prices, model, usage);
    const targets = [this.run(grant.runId)];
    if (this.trackPending) targets.push(this.run(grant.runId, this.pending));
    for (const run of targets) {
      add(run.totals, usage, cost);
      if (grant.taskId !== undefined) add(this.task(run, grant.taskId).totals, usage, cost);
      add(bucket(run.roles, grant.role ?? "unknown"), usage, cost);
      add(bucket(run.models, model), usage, cost);
    }
    return cost;
  }

  /** Usage of one run (undefined when nothing is known about it). */
  usage(runId: string): RunUsage | undefined {
    return this.usageOf(this.runs.get(runId), runId);
  }

  private usageOf(r: RunState | undefined, runId: string): RunUsage | undefined {
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
