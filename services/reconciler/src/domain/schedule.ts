/** Sweep timer settings: ms between timer sweeps while red / green, and the green streak that relaxes it. */
export interface SweepTimerPolicy {
  redIntervalMs: number;
  greenIntervalMs: number;
  greenStreak: number;
}

/** Per-run timer state: consecutive green sweeps so far (0 after a red one). */
export interface SweepTimerState {
  greens: number;
}

/**
 * After a sweep: the new state and the delay to the next timer sweep. Red → the short interval (60 s by
 * default); green → stays short until `greenStreak` (3) greens in a row, then the long one (300 s).
 * Inventory §1.10 (PR #24 adaptive scheduling), kept.
 */
export function afterSweep(
  state: SweepTimerState,
  green: boolean,
  p: SweepTimerPolicy,
): { state: SweepTimerState; delayMs: number } {
  const greens = green ? state.greens + 1 : 0;
  return { state: { greens }, delayMs: greens >= p.greenStreak ? p.greenIntervalMs : p.redIntervalMs };
}
