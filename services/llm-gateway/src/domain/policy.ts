import { SmoothWeightedRoundRobin } from "@longshot/llm/wrr";
import type { Grant } from "./ledger.ts";
import { PrefixTree, type PrefixTreeOptions } from "./prefix-tree.ts";
import type { ChatBodyView } from "./prompt.ts";

/** An upstream the router may pick: its name, weight (> 0) and current load (requests in flight). */
export interface Candidate {
  name: string;
  weight: number;
  /** Requests in flight on this upstream through this gateway. */
  load: number;
}

/** What the router knows about a request. */
export interface RouteInput {
  /** Session key (a task id): the affinity policy keeps one key on one upstream. */
  affinityKey?: string | undefined;
  /** Prompt text used for prefix matching (see `promptKey`). Empty/undefined disables cache-aware matching. */
  prefixText?: string | undefined;
}

/**
 * What the policy sees of a request: the affinity key `<run>/<task>` (the task from the `x-longshot-task-id`
 * header, else the token's task; none without either) and the prompt text for prefix matching.
 */
export function routeInput(
  grant: Grant,
  taskHeader: string | string[] | undefined,
  view: ChatBodyView,
): RouteInput {
  const taskKey = typeof taskHeader === "string" && taskHeader !== "" ? taskHeader : grant.taskId;
  return {
    affinityKey: taskKey === undefined ? undefined : `${grant.runId}/${taskKey}`,
    prefixText: view.prefixText,
  };
}

/** Why a policy picked an upstream (the `reason` label of `llm_gateway_policy_decisions_total`). */
export type DecisionReason =
  | "round_robin"
  | "least_outstanding"
  | "cache_hit"
  | "cache_miss"
  | "load_imbalance"
  | "affinity";

/** A routing decision. */
export interface Decision {
  name: string;
  reason: DecisionReason;
  /** Cache-aware only: matched chars / prompt chars on the picked upstream (0..1). */
  matchRatio?: number;
}

/**
 * A routing policy. `pick` chooses among healthy candidates (it never sees unhealthy, open-circuit or draining
 * upstreams) and does not change routing history; `record` is called once the request was sent to the picked
 * upstream and updates the history (prefix trees, affinity table). Policies are synchronous and in-memory.
 */
export interface RoutingPolicy {
  readonly name: string;
  /** @returns the decision, or undefined when `candidates` is empty. */
  pick(candidates: readonly Candidate[], input: RouteInput): Decision | undefined;
  /** The request `input` was dispatched to upstream `name`. */
  record(name: string, input: RouteInput): void;
  /** Upstream `name` was removed: drop its history. */
  forget(name: string): void;
}

/** Weighted round robin (smooth, nginx style). Ignores load and prompt. */
export function roundRobinPolicy(): RoutingPolicy {
  const wrr = new SmoothWeightedRoundRobin();
  return {
    name: "round_robin",
    pick(candidates) {
      const name = wrr.pick(candidates);
      return name === undefined ? undefined : { name, reason: "round_robin" };
    },
    record() {},
    forget(name) {
      wrr.forget(name);
    },
  };
}

/**
 * Least outstanding requests, weighted: the smallest `load / weight`. Ties are broken by a rotating index so
 * that an idle pool is still spread (no "always the first" bias).
 */
export function leastOutstandingPolicy(): RoutingPolicy {
  const tie = { next: 0 };
  return {
    name: "least_outstanding",
    pick(candidates) {
      const name = leastLoaded(candidates, tie);
      return name === undefined ? undefined : { name, reason: "least_outstanding" };
    },
    record() {},
    forget() {},
  };
}

/** The candidate with the smallest load/weight; ties rotate with `tie.next`. */
export function leastLoaded(candidates: readonly Candidate[], tie: { next: number }): string | undefined {
  let best = Number.POSITIVE_INFINITY;
  const tied: string[] = [];
  for (const c of candidates) {
    const score = c.load / (c.weight > 0 ? c.weight : 1);
    if (score < best) {
      best = score;
      tied.length = 0;
      tied.push(c.name);
    } else if (score === best) tied.push(c.name);
  }
  if (tied.length === 0) return undefined;
  const name = tied[tie.next % tied.length]!;
  tie.next = (tie.next + 1) % 1_000_000_007;
  return name;
}

/** Options of {@link cacheAwarePolicy} (defaults follow the SGLang model gateway where they apply). */
export interface CacheAwareOptions extends PrefixTreeOptions {
  /** Minimum matched/prompt ratio to route by prefix (default 0.3); below it, the least-loaded upstream. */
  threshold?: number;
  /**
   * Load-imbalance guard: the best-matching upstream is skipped for the least-loaded one when its load exceeds
   * the minimum load by more than `balanceAbsThreshold` requests (default 8) AND is more than
   * `balanceRelThreshold` × the minimum (default 1.5).
   */
  balanceAbsThreshold?: number;
  balanceRelThreshold?: number;
}

/**
 * Cache-aware routing: an approximate prefix tree per upstream built from the prompts routed to it. The upstream
 * holding the longest prefix of the prompt wins when the match covers at least `threshold` of the prompt (ties:
 * least loaded), unless the load-imbalance guard fires; otherwise the least-loaded upstream wins (a cache miss).
 * `record` inserts the prompt into the picked upstream's tree.
 */
export function cacheAwarePolicy(options: CacheAwareOptions = {}): RoutingPolicy & { tree: PrefixTree } {
  const threshold = options.threshold ?? 0.3;
  const abs = options.balanceAbsThreshold ?? 8;
  const rel = options.balanceRelThreshold ?? 1.5;
  const tree = new PrefixTree(options);
  const tie = { next: 0 };
  return {
    name: "cache_aware",
    tree,
    pick(candidates, input) {
      if (candidates.length === 0) return undefined;
      const text = input.prefixText ?? "";
      let minLoad = Number.POSITIVE_INFINITY;
      for (const c of candidates) minLoad = Math.min(minLoad, c.load);
      if (text.length > 0) {
        const m = tree.match(text);
        // Longest match first; among equally long matches the least loaded (ties rotate).
        let bestChars = 0;
        let tied: Candidate[] = [];
        for (const c of candidates) {
          const chars = m.matchedChars.get(c.name) ?? 0;
          if (chars === 0 || chars < bestChars) continue;
          if (chars > bestChars) {
            bestChars = chars;
            tied = [];
          }
          tied.push(c);
        }
        const bestName = leastLoaded(tied, tie);
        const best = candidates.find((c) => c.name === bestName);
        const ratio = bestChars / text.length;
        if (best !== undefined && ratio >= threshold) {
          if (best.load - minLoad > abs && best.load > rel * minLoad) {
            return { name: leastLoaded(candidates, tie)!, reason: "load_imbalance", matchRatio: ratio };
          }
          return { name: best.name, reason: "cache_hit", matchRatio: ratio };
        }
        return { name: leastLoaded(candidates, tie)!, reason: "cache_miss", matchRatio: ratio };
      }
      return { name: leastLoaded(candidates, tie)!, reason: "cache_miss", matchRatio: 0 };
    },
    record(name, input) {
      if (input.prefixText) tree.insert(input.prefixText, name);
    },
    forget(name) {
      tree.removeTenant(name);
    },
  };
}

/** Options of {@link sessionAffinityPolicy}. */
export interface SessionAffinityOptions {
  /** Most session keys remembered (least recently used are forgotten). Default 100 000. */
  maxSessions?: number;
}

/**
 * Session affinity on top of another policy: a request with an `affinityKey` goes to the upstream that key last
 * went to while that upstream is a candidate (healthy, circuit not open, not draining); otherwise the inner
 * policy decides and the key moves to its choice. Requests without a key go straight to the inner policy.
 */
export function sessionAffinityPolicy(
  inner: RoutingPolicy,
  options: SessionAffinityOptions = {},
): RoutingPolicy & { sessions: Map<string, string> } {
  const max = Math.max(1, options.maxSessions ?? 100_000);
  const sessions = new Map<string, string>();
  return {
    name: `session_affinity+${inner.name}`,
    sessions,
    pick(candidates, input) {
      const key = input.affinityKey;
      if (key !== undefined) {
        const bound = sessions.get(key);
        if (bound !== undefined && candidates.some((c) => c.name === bound)) {
          return { name: bound, reason: "affinity" };
        }
      }
      return inner.pick(candidates, input);
    },
    record(name, input) {
      const key = input.affinityKey;
      if (key !== undefined) {
        sessions.delete(key);
        sessions.set(key, name);
        if (sessions.size > max) sessions.delete(sessions.keys().next().value!);
      }
      inner.record(name, input);
    },
    forget(name) {
      for (const [k, v] of sessions) if (v === name) sessions.delete(k);
      inner.forget(name);
    },
  };
}

/** Policy names accepted by {@link createPolicy} (and `GATEWAY_POLICY`). */
export const POLICY_NAMES = ["cache_aware", "round_robin", "least_outstanding"] as const;
/** One of {@link POLICY_NAMES}. */
export type PolicyName = (typeof POLICY_NAMES)[number];

/**
 * Builds a policy by name, with session affinity on top unless `sessionAffinity` is false.
 * Default: cache-aware with session affinity.
 */
export function createPolicy(
  name: PolicyName = "cache_aware",
  options: { sessionAffinity?: boolean; cacheAware?: CacheAwareOptions } & SessionAffinityOptions = {},
): RoutingPolicy {
  const base =
    name === "round_robin"
      ? roundRobinPolicy()
      : name === "least_outstanding"
        ? leastOutstandingPolicy()
        : cacheAwarePolicy(options.cacheAware);
  return options.sessionAffinity === false ? base : sessionAffinityPolicy(base, options);
}
