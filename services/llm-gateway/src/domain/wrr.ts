/** One entry of a weighted round robin: a name and its relative weight (> 0). */
export interface Weighted {
  name: string;
  weight: number;
}

/**
 * Smooth weighted round robin (nginx's algorithm): each pick adds every entry's weight to its running
 * score, picks the highest score and subtracts the total weight from it. With weights 5/1/1 the sequence is
 * a a b a c a a (spread out, not a a a a a b c). The entry set may change between picks (upstreams added
 * or removed): scores of entries that disappear are dropped, new entries start at 0.
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

  /** Forgets the running score of `name` (an upstream was removed). */
  forget(name: string): void {
    this.current.delete(name);
  }
}
