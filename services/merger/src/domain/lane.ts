/**
 * One lane of the merge queue: the candidates for one base branch of one target repository, landed so that
 * every commit the base gains passed the target's checks (Zuul's dependent pipeline with a speculative future
 * state, bors' batches). Pure: the adapter (adapters/merge-queue.ts) does the git and sandbox work each
 * {@link LaneAction} asks for and feeds the outcome back through the evolve functions here.
 *
 * - **Line.** Waiting candidates, by (priority, arrival): priority 1 (fixes) first.
 * - **Stack.** Up to `depth` candidates built on top of each other: slot 1 = the base with the first branch
 *   applied, slot 2 = slot 1 with the second applied, … Every slot's tree is verified at once, in parallel.
 * - **Landing.** The longest run of green slots from the bottom lands in one push of its top commit (never
 *   forced: the stack is built on the base's tip). Slots behind it stay: they are built on what landed.
 * - **Culprit.** The first red slot whose slots below are all green is the culprit: nothing below it is at
 *   fault, so it is rejected (its task gets another attempt); the slots above it contained it, so they go back
 *   to the line and are built again without it (Zuul's nearest non-failing item). With every slot verified in
 *   parallel this needs no extra verification round; `bisectionDepth` tells how far back from the first red
 *   slot seen the culprit was.
 * - **Conflicts.** A candidate that does not apply on a speculative tip waits until it can be built directly
 *   on the base (the candidates ahead may still be rejected); on the base itself it is retried after a fresh
 *   fetch, then reported.
 * - **Base moved** (the push was refused as non-fast-forward): the whole stack is built again on the new tip.
 */

/** A slot's verification: not started, running, passed, failed. */
export type Verdict = "unverified" | "verifying" | "green" | "red";

/** A candidate in the line. `seq` is its arrival order; `builds` counts the times it was built. */
export interface Waiting {
  key: string;
  priority: number;
  seq: number;
  builds: number;
  /** Conflicts on the base itself (each one retried after a fresh fetch, up to the policy's limit). */
  conflicts: number;
  /** It did not apply on a speculative tip: build it only directly on the base (when the stack is empty). */
  onBaseOnly: boolean;
}

/** A built candidate: `commit` is the slot below's commit (or the base) with this candidate applied. */
export interface Slot extends Waiting {
  commit: string;
  tree: string;
  verdict: Verdict;
}

/**
 * A lane's state. `base`: the base tip the stack is built on (undefined until fetched); `baseFresh`: whether it
 * was fetched (or pushed by this lane) since the last sign that it may have moved; `moves`: pushes refused in a
 * row because the base moved; `firstRed`: the key of the first slot seen red since the stack last changed.
 */
export interface LaneState {
  base?: string | undefined;
  baseFresh: boolean;
  line: readonly Waiting[];
  stack: readonly Slot[];
  nextSeq: number;
  moves: number;
  firstRed?: string | undefined;
}

/** Limits of a lane: `depth` = MERGE_SPECULATION_DEPTH; the two others as in the merge runner before. */
export interface LanePolicy {
  /** Slots stacked and verified at once (1 = serial verification). */
  depth: number;
  /** Builds of one candidate that may conflict on the base before it is reported (default 3). */
  maxConflictAttempts: number;
  /** Refused pushes in a row (the base kept moving) before the stack gives up (default 5). */
  maxPushAttempts: number;
}

/** What the adapter should do next. */
export type LaneAction =
  | { kind: "idle" }
  /** Fetch the base branch's tip, then {@link baseFetched}. */
  | { kind: "fetch-base" }
  /** Build candidate `key` on `onto` (the base or the top slot), then {@link built} or {@link buildEnded}. */
  | { kind: "build"; key: string; onto: string; position: number }
  /** Verify slot `index`'s tree (mark it with {@link verifying}; the verdict comes back through {@link verdict}). */
  | { kind: "verify"; index: number }
  /** Push slot `count - 1`'s commit to the base (landing slots 0..count-1), then {@link landed} or {@link pushRefused}. */
  | { kind: "land"; count: number; commit: string }
  /** Slot `index` is the culprit: report it rejected, then {@link rejected}. */
  | { kind: "reject"; index: number; bisectionDepth: number };

/** An empty lane. */
export function emptyLane(): LaneState {
  return { baseFresh: false, line: [], stack: [], nextSeq: 1, moves: 0 };
}

/** Orders the line: priority 1 first, then arrival. */
export function compareWaiting(a: Waiting, b: Waiting): number {
  return a.priority - b.priority || a.seq - b.seq;
}

/**
 * The window rule. Given the slots' verdicts bottom-up: `land` = how many slots from the bottom are green;
 * `culprit` = the first red slot when every slot below it is green. A pending slot stops the walk (nothing
 * above it can land or be blamed yet). Pure.
 */
export function decideWindow(verdicts: readonly Verdict[]): { land: number; culprit?: number } {
  let land = 0;
  for (const v of verdicts) {
    if (v === "green") land++;
    else if (v === "red") return { land, culprit: land };
    else break;
  }
  return { land };
}

/** The next thing to do in the lane. Pure. */
export function nextAction(s: LaneState, policy: Pick<LanePolicy, "depth">): LaneAction {
  const window = decideWindow(s.stack.map((slot) => slot.verdict));
  if (window.land > 0) return { kind: "land", count: window.land, commit: s.stack[window.land - 1]!.commit };
  if (window.culprit !== undefined) {
    const first = s.firstRed === undefined ? -1 : s.stack.findIndex((slot) => slot.key === s.firstRed);
    return { kind: "reject", index: window.culprit, bisectionDepth: Math.max(0, first - window.culprit) };
  }
  const unverified = s.stack.findIndex((slot) => slot.verdict === "unverified");
  if (unverified >= 0) return { kind: "verify", index: unverified };
  if (s.stack.length >= policy.depth) return { kind: "idle" };
  const next = [...s.line].sort(compareWaiting)[0];
  if (!next) return { kind: "idle" };
  if (s.stack.length === 0 && (!s.baseFresh || s.base === undefined)) return { kind: "fetch-base" };
  // Keep the line's order: a candidate that only applies on the base waits for the stack to drain.
  if (next.onBaseOnly && s.stack.length > 0) return { kind: "idle" };
  const onto = s.stack.at(-1)?.commit ?? s.base!;
  return { kind: "build", key: next.key, onto, position: s.stack.length + 1 };
}

/**
 * Adds a candidate to the line. `queued`: new. `replaced`: it was already waiting (a redelivery; the caller
 * swaps the message it will answer, the candidate keeps its place). `in-flight`: it is in the stack right now
 * (the state is unchanged).
 */
export function submit(
  s: LaneState,
  key: string,
  priority: number,
): { state: LaneState; status: "queued" | "replaced" | "in-flight" } {
  if (s.stack.some((slot) => slot.key === key)) return { state: s, status: "in-flight" };
  if (s.line.some((w) => w.key === key)) return { state: s, status: "replaced" };
  const entry: Waiting = { key, priority, seq: s.nextSeq, builds: 0, conflicts: 0, onBaseOnly: false };
  return { state: { ...s, line: [...s.line, entry], nextSeq: s.nextSeq + 1 }, status: "queued" };
}

/** The base's tip was fetched. A stack built on another tip goes back to the line (returned as `dropped`). */
export function baseFetched(s: LaneState, sha: string): { state: LaneState; dropped: Slot[] } {
  if (s.stack.length > 0 && s.base !== sha) {
    const back = backToLine(s, 0);
    return { state: { ...back.state, base: sha, baseFresh: true }, dropped: back.dropped };
  }
  return { state: { ...s, base: sha, baseFresh: true }, dropped: [] };
}

/** Candidate `key` was built as `commit` (tree `tree`) on top of the stack; `verdict` from the cache, if known. */
export function built(
  s: LaneState,
  key: string,
  commit: string,
  tree: string,
  verdict: Verdict = "unverified",
): LaneState {
  const entry = s.line.find((w) => w.key === key);
  if (!entry) return s;
  const slot: Slot = { ...entry, builds: entry.builds + 1, onBaseOnly: false, commit, tree, verdict };
  const firstRed = s.firstRed ?? (verdict === "red" ? key : undefined);
  return { ...s, line: s.line.filter((w) => w !== entry), stack: [...s.stack, slot], firstRed };
}

/**
 * Candidate `key` could not be built on the top of the stack. `noop` (nothing to apply) and `conflict` on a
 * speculative tip are only final on the base itself: the candidate then waits to be built directly on it.
 * A conflict on the base is retried after a fresh fetch until `maxConflictAttempts` builds conflicted. Returns
 * `decided` when the candidate leaves the lane with this outcome (the adapter reports it), and its `builds`.
 */
export function buildEnded(
  s: LaneState,
  key: string,
  outcome: "noop" | "conflict" | "failed",
  policy: Pick<LanePolicy, "maxConflictAttempts">,
): { state: LaneState; decided: boolean; builds: number } {
  const entry = s.line.find((w) => w.key === key);
  if (!entry) return { state: s, decided: false, builds: 0 };
  const builds = entry.builds + 1;
  const without = { ...s, line: s.line.filter((w) => w !== entry) };
  if (outcome === "failed") return { state: without, decided: true, builds };
  if (s.stack.length > 0) {
    const waiting: Waiting = { ...entry, builds, onBaseOnly: true };
    return { state: { ...without, line: [...without.line, waiting] }, decided: false, builds };
  }
  if (outcome === "noop") return { state: without, decided: true, builds };
  const conflicts = entry.conflicts + 1;
  if (conflicts >= policy.maxConflictAttempts) return { state: without, decided: true, builds };
  const retry: Waiting = { ...entry, builds, conflicts };
  // The base may have moved meanwhile: fetch it again before the retry.
  return { state: { ...without, line: [...without.line, retry], baseFresh: false }, decided: false, builds };
}

/** Slot `index`'s verification started. */
export function verifying(s: LaneState, index: number): LaneState {
  const slot = s.stack[index];
  if (slot?.verdict !== "unverified") return s;
  return { ...s, stack: s.stack.map((x, i) => (i === index ? { ...x, verdict: "verifying" } : x)) };
}

/** Slot `key`'s verification could not run (not a verdict): it is verified again. */
export function unverified(s: LaneState, key: string): LaneState {
  return {
    ...s,
    stack: s.stack.map((slot) =>
      slot.key === key && slot.verdict === "verifying" ? { ...slot, verdict: "unverified" } : slot,
    ),
  };
}

/** The verdict on `tree` arrived: every slot with that tree takes it (a verdict for a dropped tree is ignored). */
export function verdict(s: LaneState, tree: string, green: boolean): LaneState {
  let firstRed = s.firstRed;
  const stack = s.stack.map((slot) => {
    if (slot.tree !== tree || (slot.verdict !== "verifying" && slot.verdict !== "unverified")) return slot;
    if (!green && firstRed === undefined) firstRed = slot.key;
    return { ...slot, verdict: green ? ("green" as const) : ("red" as const) };
  });
  return { ...s, stack, firstRed };
}

/** The push of slot `count - 1`'s commit succeeded: slots 0..count-1 landed, the base is that commit. */
export function landed(s: LaneState, count: number): { state: LaneState; landed: Slot[] } {
  const done = s.stack.slice(0, count);
  const stack = s.stack.slice(count);
  const firstRed = stack.some((slot) => slot.key === s.firstRed) ? s.firstRed : undefined;
  return {
    state: { ...s, base: done.at(-1)?.commit ?? s.base, baseFresh: true, stack, moves: 0, firstRed },
    landed: done,
  };
}

/** Slot `index` was rejected: it leaves the lane; the slots above it go back to the line (`dropped`). */
export function rejected(
  s: LaneState,
  index: number,
): { state: LaneState; rejected?: Slot; dropped: Slot[] } {
  const culprit = s.stack[index];
  if (!culprit) return { state: s, dropped: [] };
  const back = backToLine({ ...s, stack: s.stack.filter((_, i) => i !== index) }, index);
  return { state: { ...back.state, firstRed: undefined }, rejected: culprit, dropped: back.dropped };
}

/**
 * The push was refused because the base moved: every slot goes back to the line (`dropped`) and the base is
 * fetched again. After `maxPushAttempts` refusals in a row the stack's candidates give up (`givenUp`: they
 * leave the lane; the adapter fails them as retryable).
 */
export function pushRefused(
  s: LaneState,
  policy: Pick<LanePolicy, "maxPushAttempts">,
): { state: LaneState; dropped: Slot[]; givenUp: Slot[]; moves: number } {
  const moves = s.moves + 1;
  if (moves >= policy.maxPushAttempts) {
    return {
      state: { ...s, stack: [], baseFresh: false, moves: 0, firstRed: undefined },
      dropped: [],
      givenUp: [...s.stack],
      moves,
    };
  }
  const back = backToLine(s, 0);
  return { state: { ...back.state, baseFresh: false, moves }, dropped: back.dropped, givenUp: [], moves };
}

/**
 * Takes candidate `key` out of the lane wherever it is (its message failed for another reason, e.g. its
 * verification could not run); slots above it go back to the line (`dropped`).
 */
export function remove(s: LaneState, key: string): { state: LaneState; dropped: Slot[] } {
  const index = s.stack.findIndex((slot) => slot.key === key);
  if (index < 0) return { state: { ...s, line: s.line.filter((w) => w.key !== key) }, dropped: [] };
  const back = backToLine({ ...s, stack: s.stack.filter((_, i) => i !== index) }, index);
  return { state: { ...back.state, firstRed: undefined }, dropped: back.dropped };
}

/** Moves the slots from `from` up back to the line (keeping their arrival order), returning them as dropped. */
function backToLine(s: LaneState, from: number): { state: LaneState; dropped: Slot[] } {
  const dropped = s.stack.slice(from);
  const line = [
    ...s.line,
    ...dropped.map(
      ({ key, priority, seq, builds }): Waiting => ({
        key,
        priority,
        seq,
        builds,
        conflicts: 0,
        onBaseOnly: false,
      }),
    ),
  ];
  const stack = s.stack.slice(0, from);
  const firstRed = stack.some((slot) => slot.key === s.firstRed) ? s.firstRed : undefined;
  return { state: { ...s, stack, line, firstRed }, dropped };
}
