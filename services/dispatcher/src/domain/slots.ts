/**
 * A counting semaphore whose waiters are granted by priority (1 first), then arrival order.
 * This is the dispatcher's backpressure: at most `capacity` sandboxes run at once, and when a slot frees
 * the most urgent waiting task takes it (inventory §3.1 item 13: the original dispatched FIFO).
 */
export class PrioritySlots {
  private running = 0;
  private seq = 0;
  private readonly waiters: { priority: number; seq: number; grant: () => void }[] = [];
  readonly capacity: number;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
    this.capacity = capacity;
  }

  /** Slots in use. */
  get active(): number {
    return this.running;
  }

  /** Tasks waiting for a slot. */
  get waiting(): number {
    return this.waiters.length;
  }

  /** Resolves when a slot is granted; call the returned function exactly once to release it. */
  acquire(priority: number): Promise<() => void> {
    return new Promise((resolve) => {
      const grant = () => {
        this.running++;
        let released = false;
        resolve(() => {
          if (released) return;
          released = true;
          this.running--;
          this.next();
        });
      };
      this.waiters.push({ priority, seq: this.seq++, grant });
      this.waiters.sort((a, b) => a.priority - b.priority || a.seq - b.seq);
      this.next();
    });
  }

  private next(): void {
    while (this.running < this.capacity && this.waiters.length > 0) this.waiters.shift()!.grant();
  }
}
