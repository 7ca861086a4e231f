/** One entry of a weighted round robin: a name and its relative weight (> 0). */
export interface Weighted {
  name: string;
  weight: number;
}

/**
 * Smooth weighted round robin (nginx's algorithm): each pick adds every entry's weight to its running
 * score, picks the highest score and subtracts the total weight from it. With weights 5/1/1 the sequence is
 * a a b a c a a (spread out, not a a a a a b c); ties go to the first entry listed. The entry set may change
 * between picks (upstreams added, removed or ineligible for a while): an entry keeps its running score until
 * {@link forget} drops it, a new entry starts at 0. Entries are told apart by `name`.
 *
 * The one implementation of the algorithm: the LLM gateway's `round_robin` policy and the services'
 * `ChatClient` (over its endpoints) both use it. Import it as `@longshot/llm/wrr` where the `openai` SDK behind
 * `@longshot/llm` is not wanted (the gateway).
 */
export class SmoothWeightedRoundRobin {
  private readonly current = new Map<string, number>();

  /**
   * Picks one entry among `entries` (non-positive weights count as 1).
   * @returns the picked name, or undefined when `entries` is empty.
   */
  pick(entries: readonly Weighted[]): string | undefined {
    if (entries.length === 0) return undefined;
    let total = 0;
    let best: string | undefined;
    let bestScore = Number.NEGATIVE_INFINITY;
    for (const e of entries) {
      const w = e.weight > 0 ? e.weight : 1;
      total += w;
      const score = (this.current.get(e.name) ?? 0) + w;
      this.current.set(e.name, score);
      if (score > bestScore) {
        bestScore = score;
        best = e.name;
      }
    }
    this.current.set(best!, bestScore - total);
    return best;
  }

  /** Forgets the running score of `name` (e.g. an upstream was removed); unknown names are ignored. */
  forget(name: string): void {
    this.current.delete(name);
  }
}
