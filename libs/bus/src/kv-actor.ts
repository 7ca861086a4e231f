import type { KV } from "@nats-io/kv";
import { isKvConflict } from "./errors.ts";

/**
 * How an actor's state is laid out in KV: a header (key `<base>`) plus parts (keys `<base>.<part>`), so that a
 * change rewrites only what changed — e.g. one task record — and no single value grows with the whole state.
 * `split` must return the header under `""`; part names use `[-_.a-zA-Z0-9]`. `join` inverts `split`.
 */
export interface KvStateCodec<S> {
  split(state: S): Record<string, unknown>;
  join(parts: Record<string, unknown>): S;
}

/** One value per key: the whole state is the header (for small states). */
export const wholeState = <S>(): KvStateCodec<S> => ({
  split: (s) => ({ "": s }),
  join: (p) => p[""] as S,
});

/** Thrown by {@link KvActor.create} when the actor's header key exists already. */
export class KvActorExistsError extends Error {
  readonly key: string;
  constructor(key: string) {
    super(`${key} exists`);
    this.name = "KvActorExistsError";
    this.key = key;
  }
}

/** Compare-and-set conflicts one {@link KvActor.mutate} absorbs (reload and apply again) before it rejects. */
const MAX_CONFLICTS = 5;

const keyOf = (base: string, part: string) => (part === "" ? base : `${base}.${part}`);

/** Written bytes and writes of one actor, for tests and benchmarks (bytes of the JSON values, per key). */
export interface KvActorStats {
  writes: number;
  bytes: number;
}

/**
 * A state owned by one actor and stored in NATS KV, changed only through {@link KvActor.mutate}: changes are
 * serialized, applied to the in-memory state and persisted before `mutate` resolves (so the triggering message
 * can be acked after). Every key is written with compare-and-set on its own revision, the header first on
 * every change (it is the lock): when another writer (a second instance of the service) changed the state
 * meanwhile, nothing is written, the state is reloaded and the change applied again (after 5 conflicts in a row
 * it rejects and the message is redelivered); {@link KvActor.refresh} catches up without a change. Only parts whose JSON changed are written, so bytes written per change do not grow
 * with the state's size. Used by the planner (runs) and the subplanner (decompositions).
 */
export class KvActor<S> {
  private chain: Promise<unknown> = Promise.resolve();
  private readonly revisions = new Map<string, number>();
  private readonly lastRef = new Map<string, unknown>();
  private readonly lastJson = new Map<string, string>();
  readonly stats: KvActorStats = { writes: 0, bytes: 0 };

  private readonly kv: KV;
  /** The header key; parts are `<base>.<part>`. */
  readonly base: string;
  private readonly codec: KvStateCodec<S>;
  private current: S;

  private constructor(kv: KV, base: string, codec: KvStateCodec<S>, state: S) {
    this.kv = kv;
    this.base = base;
    this.codec = codec;
    this.current = state;
  }

  /** The state as last persisted. */
  get state(): S {
    return this.current;
  }

  /**
   * Creates the actor with `state` (every key written with "must not exist").
   * @throws KvActorExistsError when the header exists (another writer created it first).
   */
  static async create<S>(kv: KV, base: string, codec: KvStateCodec<S>, state: S): Promise<KvActor<S>> {
    const a = new KvActor(kv, base, codec, state);
    const parts = codec.split(state);
    try {
      for (const [part, value] of Object.entries(parts).sort(([x], [y]) =>
        x === "" ? 1 : y === "" ? -1 : 0,
      )) {
        await a.write(part, value);
      }
    } catch (err) {
      if (isKvConflict(err)) throw new KvActorExistsError(base);
      throw err;
    }
    return a;
  }

  /** Loads the actor stored under `base`, or undefined when there is none. */
  static async load<S>(kv: KV, base: string, codec: KvStateCodec<S>): Promise<KvActor<S> | undefined> {
    const a = new KvActor<S>(kv, base, codec, undefined as S);
    return (await a.reload()) ? a : undefined;
  }

  /** Re-reads every key; false when the header is gone. */
  private async reload(): Promise<boolean> {
    const header = await this.kv.get(this.base);
    if (header?.operation !== "PUT") return false;
    const parts: Record<string, unknown> = {};
    this.revisions.clear();
    this.lastRef.clear();
    this.lastJson.clear();
    const remember = (part: string, json: string, revision: number) => {
      parts[part] = JSON.parse(json);
      this.revisions.set(part, revision);
      this.lastJson.set(part, json);
    };
    remember("", header.string(), header.revision);
    const prefix = `${this.base}.`;
    for await (const key of await this.kv.keys(`${prefix}>`)) {
      const e = await this.kv.get(key);
      if (e?.operation === "PUT") remember(key.slice(prefix.length), e.string(), e.revision);
    }
    this.current = this.codec.join(parts);
    for (const [part, value] of Object.entries(this.codec.split(this.current))) this.lastRef.set(part, value);
    return true;
  }

  /** Writes one part with compare-and-set: create when new, update on its revision otherwise. */
  private async write(part: string, value: unknown): Promise<void> {
    const json = JSON.stringify(value);
    const key = keyOf(this.base, part);
    const rev = this.revisions.get(part);
    const next = rev === undefined ? await this.kv.create(key, json) : await this.kv.update(key, json, rev);
    this.revisions.set(part, next);
    this.lastRef.set(part, value);
    this.lastJson.set(part, json);
    this.stats.writes++;
    this.stats.bytes += json.length;
  }

  private async persist(next: S): Promise<void> {
    const parts = this.codec.split(next);
    const changed: Array<[string, unknown]> = [];
    for (const [part, value] of Object.entries(parts)) {
      if (this.lastRef.get(part) === value) continue;
      if (this.lastJson.get(part) === JSON.stringify(value)) {
        this.lastRef.set(part, value);
        continue;
      }
      changed.push([part, value]);
    }
    const removed = [...this.revisions.keys()].filter((part) => part !== "" && !(part in parts));
    if (changed.length === 0 && removed.length === 0) return;
    // The header first, always: it is the lock. Its compare-and-set fails before anything is written when
    // another writer got in first, so a retry starts from a clean reload. (A crash after the header and
    // before the parts leaves the header ahead of some parts; the redelivered message applies them again.)
    if (!changed.some(([part]) => part === "")) changed.push(["", parts[""]]);
    changed.sort(([x], [y]) => (x === "" ? -1 : y === "" ? 1 : 0));
    for (const [part, value] of changed) await this.write(part, value);
    for (const part of removed) {
      await this.kv.delete(keyOf(this.base, part), { previousSeq: this.revisions.get(part)! });
      this.revisions.delete(part);
      this.lastRef.delete(part);
      this.lastJson.delete(part);
    }
  }

  /**
   * Applies `fn` to the state and persists the result (serialized per actor; `fn` returning the same object
   * is a no-op). On a compare-and-set conflict (another instance changed the state) the state is reloaded and
   * `fn` applied again, up to {@link MAX_CONFLICTS} times.
   * @throws the KV error of the last conflict, or when the state vanished.
   */
  mutate(fn: (s: S) => S): Promise<void> {
    const p = this.chain.then(async () => {
      for (let attempt = 1; ; attempt++) {
        const next = fn(this.current);
        if (next === this.current) return;
        try {
          await this.persist(next);
          this.current = next;
          return;
        } catch (err) {
          if (attempt >= MAX_CONFLICTS || !isKvConflict(err)) throw err;
          if (!(await this.reload())) throw err;
        }
      }
    });
    this.chain = p.catch(() => undefined);
    return p;
  }

  /**
   * Catches up with changes another instance made: reads the header and, when its revision is not the one last
   * seen, reloads every key (serialized with {@link mutate}). Resolves false when the state is gone.
   */
  refresh(): Promise<boolean> {
    const p = this.chain.then(async () => {
      const header = await this.kv.get(this.base);
      if (header?.operation !== "PUT") return false;
      if (header.revision === this.revisions.get("")) return true;
      return this.reload();
    });
    this.chain = p.catch(() => undefined);
    return p;
  }
}
