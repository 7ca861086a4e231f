/**
 * Coalesces sweep requests per key (run): at most one sweep runs per key; requests that arrive while one
 * runs all join a single follow-up sweep, which starts when the current one ends and so sees the newest
 * state. Sweeps never overlap per key (inventory §1.10: the original's setInterval sweeps could).
 */
export class SweepCoalescer<R> {
  private readonly state = new Map<string, { running: Promise<R>; next?: Promise<R> }>();
  private readonly sweep: (key: string) => Promise<R>;

  constructor(sweep: (key: string) => Promise<R>) {
    this.sweep = sweep;
  }

  /** Resolves with the result of a sweep that started after this call. */
  request(key: string): Promise<R> {
    const s = this.state.get(key);
    if (!s) return this.start(key);
    if (!s.next) {
      s.next = s.running
        .catch(() => undefined)
        .then(() => {
          const cur = this.state.get(key)!;
          cur.next = undefined;
          return this.start(key, true);
        });
    }
    return s.next;
  }

  private start(key: string, replace = false): Promise<R> {
    const running = this.sweep(key).finally(() => {
      const cur = this.state.get(key);
      if (cur && cur.running === running && !cur.next) this.state.delete(key);
    });
    if (replace) this.state.get(key)!.running = running;
    else this.state.set(key, { running });
    return running;
  }
}
