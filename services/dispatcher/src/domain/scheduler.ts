/** `exclusive`: a task whose scope overlaps a running task's scope waits; `advisory`: it runs anyway. */
export type ScopePolicy = "exclusive" | "advisory";

/** What the scheduler needs of a task. `scope`: repo-relative files; empty = touches nothing declared. */
export interface SchedulableTask {
  id: string;
  priority: number;
  scope: readonly string[];
  /**
   * `conflict-fix` tasks are scheduled exclusively by scope whatever the policy: two resolutions of the same
   * files running at once would conflict with each other again.
   */
  kind?: string;
}

interface Waiter {
  task: SchedulableTask;
  files: Set<string>;
  seq: number;
  grant: () => void;
}

const norm = (f: string) => f.trim().replace(/^\.\//, "");
const overlaps = (a: Set<string>, b: Set<string>) => {
  for (const f of a) if (b.has(f)) return true;
  return false;
};

/**
 * The dispatcher's admission control: at most `capacity` tasks run at once (MAX_WORKERS, the backpressure),
 * granted by priority (1 first) then arrival. Under the `exclusive` scope policy a task also waits while
 * its scope overlaps a running task's scope; a lower-priority task may pass a blocked one only if it
 * overlaps neither running scopes nor the scope of any more urgent waiter (so the urgent one is not
 * starved). Under `advisory` only conflict-fix tasks wait for overlapping running tasks. Inventory §3.1
 * item 13: the original dispatched FIFO and only warned about overlaps.
 */
export class Scheduler {
  readonly capacity: number;
  readonly policy: ScopePolicy;
  private readonly running = new Map<string, Set<string>>();
  private readonly waiters: Waiter[] = [];
  private seq = 0;

  constructor(capacity: number, policy: ScopePolicy = "exclusive") {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
    this.capacity = capacity;
    this.policy = policy;
  }

  /** Tasks running. */
  get active(): number {
    return this.running.size;
  }

  /** Tasks waiting for admission. */
  get waiting(): number {
    return this.waiters.length;
  }

  /**
   * Resolves when `task` may start; call the returned function exactly once when it ends (extra calls are
   * ignored). Two acquisitions with the same task id are tracked separately.
   */
  acquire(task: SchedulableTask): Promise<() => void> {
    return new Promise((resolve) => {
      const key = `${task.id}#${this.seq}`;
      const files = new Set(task.scope.map(norm).filter((f) => f.length > 0));
      const waiter: Waiter = {
        task,
        files,
        seq: this.seq++,
        grant: () => {
          this.running.set(key, files);
          let released = false;
          resolve(() => {
            if (released) return;
            released = true;
            this.running.delete(key);
            this.pump();
          });
        },
      };
      this.waiters.push(waiter);
      this.waiters.sort((a, b) => a.task.priority - b.task.priority || a.seq - b.seq);
      this.pump();
    });
  }

  private pump(): void {
    const blocked: Set<string>[] = [];
    for (let i = 0; i < this.waiters.length && this.running.size < this.capacity; ) {
      const w = this.waiters[i]!;
      const exclusive = this.policy === "exclusive" || w.task.kind === "conflict-fix";
      const free =
        !exclusive ||
        (![...this.running.values()].some((r) => overlaps(w.files, r)) &&
          !blocked.some((b) => overlaps(w.files, b)));
      if (free) {
        this.waiters.splice(i, 1);
        w.grant();
      } else {
        if (this.policy === "exclusive") blocked.push(w.files);
        i++;
      }
    }
  }
}
