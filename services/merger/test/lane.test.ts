import { describe, expect, it } from "vitest";
import {
  baseFetched,
  buildEnded,
  built,
  decideWindow,
  emptyLane,
  type LanePolicy,
  type LaneState,
  landed,
  nextAction,
  pushRefused,
  rejected,
  remove,
  submit,
  verdict,
  verifying,
} from "../src/domain/lane.ts";

const policy: LanePolicy = { depth: 4, maxConflictAttempts: 3, maxPushAttempts: 5 };

/** A lane on base `B0` (fetched) with `keys` submitted at priority 5 (or `key:priority`). */
function given(...keys: string[]): LaneState {
  let s = baseFetched(emptyLane(), "B0").state;
  for (const k of keys) {
    const [key, p] = k.split(":");
    s = submit(s, key!, Number(p ?? 5)).state;
  }
  return s;
}

/**
 * Runs builds and verification starts until the lane is idle or asks for something else; each build of key
 * `k` on `onto` yields commit `<onto>+k` with tree `T(<commit>)`. Returns the state and the actions seen.
 */
function stack(s: LaneState, p: Pick<LanePolicy, "depth"> = policy) {
  const seen: string[] = [];
  for (;;) {
    const a = nextAction(s, p);
    if (a.kind === "build") {
      const commit = `${a.onto}+${a.key}`;
      s = built(s, a.key, commit, `T(${commit})`);
      seen.push(`build ${a.key} on ${a.onto}`);
    } else if (a.kind === "verify") {
      s = verifying(s, a.index);
      seen.push(`verify ${s.stack[a.index]!.key}`);
    } else return { s, seen, next: a };
  }
}

const tree = (s: LaneState, key: string) => s.stack.find((x) => x.key === key)!.tree;

describe("decideWindow", () => {
  it("given green slots from the bottom, then they land; a pending slot stops the walk", () => {
    expect(decideWindow(["green", "green", "verifying", "green"])).toEqual({ land: 2 });
    expect(decideWindow(["verifying", "green"])).toEqual({ land: 0 });
    expect(decideWindow([])).toEqual({ land: 0 });
  });
  it("given a red slot above green ones, then the greens land and the red slot is the culprit", () => {
    expect(decideWindow(["green", "red", "red"])).toEqual({ land: 1, culprit: 1 });
    expect(decideWindow(["red", "green"])).toEqual({ land: 0, culprit: 0 });
  });
  it("given a red slot above a pending one, then nobody is blamed yet", () => {
    expect(decideWindow(["verifying", "red"])).toEqual({ land: 0 });
  });
});

describe("lane: stacking", () => {
  it("given an empty lane, when a candidate arrives, then the base is fetched first and it is built on it", () => {
    const s = submit(emptyLane(), "a", 5).state;
    expect(nextAction(s, policy)).toEqual({ kind: "fetch-base" });
    const fetched = baseFetched(s, "B0").state;
    expect(nextAction(fetched, policy)).toEqual({ kind: "build", key: "a", onto: "B0", position: 1 });
  });

  it("given five candidates at depth 4, then four are stacked on each other and verified at once; the fifth waits", () => {
    const { s, seen, next } = stack(given("a", "b", "c", "d", "e"));
    expect(seen).toEqual([
      "build a on B0",
      "verify a",
      "build b on B0+a",
      "verify b",
      "build c on B0+a+b",
      "verify c",
      "build d on B0+a+b+c",
      "verify d",
    ]);
    expect(next).toEqual({ kind: "idle" });
    expect(s.line.map((w) => w.key)).toEqual(["e"]);
  });

  it("given depth 1, then candidates are verified one at a time (serial verification)", () => {
    const { seen } = stack(given("a", "b"), { depth: 1 });
    expect(seen).toEqual(["build a on B0", "verify a"]);
  });

  it("given a fix arriving while the stack verifies, then it goes first in the line but does not preempt the stack", () => {
    let { s } = stack(given("a", "b", "c", "d", "e"));
    s = submit(s, "fix", 1).state;
    s = verdict(s, tree(s, "a"), true);
    expect(nextAction(s, policy)).toEqual({ kind: "land", count: 1, commit: "B0+a" });
    s = landed(s, 1).state;
    const after = stack(s);
    expect(after.seen).toEqual(["build fix on B0+a+b+c+d", "verify fix"]);
  });

  it("given a candidate that is already in the stack, when it is submitted again, then it is in flight; waiting, it is replaced", () => {
    const { s } = stack(given("a", "b", "c", "d", "e"));
    expect(submit(s, "a", 5)).toEqual({ state: s, status: "in-flight" });
    expect(submit(s, "e", 5).status).toBe("replaced");
  });
});

describe("lane: landing and culprits", () => {
  it("given every slot green, then they land in one push of the top commit and the base moves there", () => {
    let { s } = stack(given("a", "b", "c"));
    for (const k of ["c", "a", "b"]) s = verdict(s, tree(s, k), true);
    expect(nextAction(s, policy)).toEqual({ kind: "land", count: 3, commit: "B0+a+b+c" });
    const after = landed(s, 3);
    expect(after.landed.map((x) => x.key)).toEqual(["a", "b", "c"]);
    expect(after.state).toMatchObject({ base: "B0+a+b+c", stack: [], moves: 0 });
  });

  it("given a green prefix under a red slot, then the prefix lands, the culprit is rejected and the slots above it are rebuilt without it", () => {
    let { s } = stack(given("a", "b", "c", "d"));
    s = verdict(s, tree(s, "a"), true);
    s = verdict(s, tree(s, "b"), false);
    s = verdict(s, tree(s, "c"), false);
    expect(nextAction(s, policy)).toEqual({ kind: "land", count: 1, commit: "B0+a" });
    s = landed(s, 1).state;
    expect(nextAction(s, policy)).toEqual({ kind: "reject", index: 0, bisectionDepth: 0 });
    const r = rejected(s, 0);
    expect(r.rejected?.key).toBe("b");
    expect(r.dropped.map((x) => x.key)).toEqual(["c", "d"]);
    const again = stack(r.state);
    expect(again.seen).toEqual(["build c on B0+a", "verify c", "build d on B0+a+c", "verify d"]);
  });

  it("given the first red verdict from high up the stack, then the culprit is found when the slots below report, and the depth says how far back", () => {
    let { s } = stack(given("a", "b", "c", "d"));
    s = verdict(s, tree(s, "d"), false);
    s = verdict(s, tree(s, "c"), false);
    expect(nextAction(s, policy)).toEqual({ kind: "idle" });
    s = verdict(s, tree(s, "b"), false);
    s = verdict(s, tree(s, "a"), true);
    s = landed(s, 1).state;
    expect(nextAction(s, policy)).toEqual({ kind: "reject", index: 0, bisectionDepth: 2 });
  });

  it("given a green slot above a red one, then it does not land before the culprit is out (no red commit on the base)", () => {
    let { s } = stack(given("a", "b"));
    s = verdict(s, tree(s, "b"), true);
    s = verdict(s, tree(s, "a"), false);
    expect(nextAction(s, policy)).toEqual({ kind: "reject", index: 0, bisectionDepth: 0 });
    const r = rejected(s, 0);
    expect(r.dropped.map((x) => x.key)).toEqual(["b"]);
    expect(stack(r.state).seen).toEqual(["build b on B0", "verify b"]);
  });

  it("given a verdict on a tree that left the stack, then it changes nothing", () => {
    let { s } = stack(given("a", "b"));
    const bTree = tree(s, "b");
    s = rejected(verdict(s, tree(s, "a"), false), 0).state;
    expect(verdict(s, bTree, true)).toEqual(s);
  });

  it("given verification off (every slot green when built), then candidates land as soon as they are built", () => {
    let s = given("a", "b");
    const a = nextAction(s, policy);
    if (a.kind !== "build") throw new Error(a.kind);
    s = built(s, "a", "B0+a", "T1", "green");
    expect(nextAction(s, policy)).toEqual({ kind: "land", count: 1, commit: "B0+a" });
  });
});

describe("lane: conflicts, moved base, removal", () => {
  it("given a conflict on a speculative tip, then the candidate waits for the stack to drain and is built on the base", () => {
    let { s } = stack(given("a", "b", "c"), { depth: 1 });
    expect(s.stack.map((x) => x.key)).toEqual(["a"]);
    s = verdict(s, tree(s, "a"), true);
    s = landed(s, 1).state;
    let a = nextAction(s, policy);
    expect(a).toEqual({ kind: "build", key: "b", onto: "B0+a", position: 1 });
    s = built(s, "b", "B0+a+b", "Tb");
    a = nextAction(verifying(s, 0), policy);
    expect(a).toEqual({ kind: "build", key: "c", onto: "B0+a+b", position: 2 });
    const ended = buildEnded(verifying(s, 0), "c", "conflict", policy);
    expect(ended.decided).toBe(false);
    s = ended.state;
    expect(nextAction(s, policy)).toEqual({ kind: "idle" });
    s = landed(verdict(s, "Tb", true), 1).state;
    expect(nextAction(s, policy)).toEqual({ kind: "build", key: "c", onto: "B0+a+b", position: 1 });
  });

  it("given a conflict on the base, then it is retried after a fresh fetch and reported on the third", () => {
    let s = given("x");
    for (const round of [1, 2]) {
      const ended = buildEnded(s, "x", "conflict", policy);
      expect(ended).toMatchObject({ decided: false, builds: round });
      s = ended.state;
      expect(nextAction(s, policy)).toEqual({ kind: "fetch-base" });
      s = baseFetched(s, "B0").state;
    }
    expect(buildEnded(s, "x", "conflict", policy)).toMatchObject({ decided: true, builds: 3 });
  });

  it("given nothing to apply on the base, then it is decided at once; on a speculative tip it waits for the base", () => {
    expect(buildEnded(given("x"), "x", "noop", policy).decided).toBe(true);
    const { s } = stack(given("a", "x"), { depth: 1 });
    const onTip = buildEnded(s, "x", "noop", policy);
    expect(onTip.decided).toBe(false);
    expect(onTip.state.line).toEqual([expect.objectContaining({ key: "x", onBaseOnly: true })]);
  });

  it("given a push refused because the base moved, then the stack is built again on the new tip; the fifth refusal gives up", () => {
    let { s } = stack(given("a", "b"));
    s = verdict(verdict(s, tree(s, "a"), true), tree(s, "b"), true);
    for (let i = 1; i < 5; i++) {
      const r = pushRefused(s, policy);
      expect(r.dropped.map((x) => x.key)).toEqual(["a", "b"]);
      expect(r.givenUp).toEqual([]);
      expect(nextAction(r.state, policy)).toEqual({ kind: "fetch-base" });
      s = stack(baseFetched(r.state, `B${i}`).state).s;
      expect(s.stack[0]!.commit).toBe(`B${i}+a`);
      s = verdict(verdict(s, tree(s, "a"), true), tree(s, "b"), true);
    }
    const last = pushRefused(s, policy);
    expect(last.givenUp.map((x) => x.key)).toEqual(["a", "b"]);
    expect(last.state.stack).toEqual([]);
    expect(last.state.line).toEqual([]);
  });

  it("given a candidate removed from the middle of the stack, then the slots above it are rebuilt", () => {
    const { s } = stack(given("a", "b", "c"));
    const r = remove(s, "b");
    expect(r.dropped.map((x) => x.key)).toEqual(["c"]);
    expect(r.state.stack.map((x) => x.key)).toEqual(["a"]);
    expect(remove(r.state, "c").state.line).toEqual([]);
  });

  it("never mutates the state it is given", () => {
    const s = stack(given("a", "b", "c")).s;
    const snapshot = JSON.stringify(s);
    verdict(s, tree(s, "a"), false);
    rejected(s, 0);
    pushRefused(s, policy);
    landed(s, 1);
    submit(s, "z", 1);
    expect(JSON.stringify(s)).toBe(snapshot);
  });
});
