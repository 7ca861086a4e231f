/**
 * A planning lease: which instance of a service may make the model call of one actor (a planner's run, a
 * subplanner's decomposition) right now, kept in the actor's own KV header so it is taken with the same
 * compare-and-set as every other change (see KvActor). Several instances apply an actor's messages (they share
 * its durable consumers), but only the holder plans: two instances never plan one run at once. A lease expires
 * at `expiresAt` (epoch ms) unless its holder renews it, so a dead holder's lease passes on after at most one
 * TTL; the same holder (a restarted process with the same instance id) takes its own lease back at once.
 * Pure functions.
 */
export interface PlanningLease {
  /** Instance id of the holder (see {@link instanceId}). */
  owner: string;
  /** Epoch ms after which another instance may take it. */
  expiresAt: number;
}

/** Default lease time-to-live, ms: renewed every third of it while the holder plans. */
export const PLANNING_LEASE_TTL_MS = 60_000;

/** Whether `lease` is held by an instance other than `owner` at `now` (epoch ms). */
export function heldByOther(lease: PlanningLease | undefined, owner: string, now: number): boolean {
  return lease !== undefined && lease.owner !== owner && lease.expiresAt > now;
}

/**
 * The lease after `owner` tries to take (or renew) it at `now`: `owner`'s with `expiresAt = now + ttlMs` when it
 * is free, expired or already `owner`'s; `lease` unchanged (the same object) when another instance holds it.
 */
export function claimLease(
  lease: PlanningLease | undefined,
  owner: string,
  now: number,
  ttlMs = PLANNING_LEASE_TTL_MS,
): PlanningLease | undefined {
  if (heldByOther(lease, owner, now)) return lease;
  return { owner, expiresAt: now + ttlMs };
}

/** The lease after `owner` releases it: undefined when `owner` held it, unchanged otherwise. */
export function releaseLease(lease: PlanningLease | undefined, owner: string): PlanningLease | undefined {
  return lease?.owner === owner ? undefined : lease;
}

/**
 * This process's instance id for planning leases: `<host>/<LONGSHOT_INSTANCE or "1">`. Stable across restarts,
 * so a restarted instance takes back its own lease; two instances on one host need distinct `LONGSHOT_INSTANCE`
 * (the embedded cluster sets it; compose replicas differ by host name).
 */
export function instanceId(host: string, instance: string | undefined): string {
  return `${host}/${instance ?? "1"}`;
}

/** What the lease helpers need of an actor (a `KvActor` or an actor over one): its state and its mutate. */
export interface LeasedActor<S extends { planningLease?: PlanningLease }> {
  readonly state: S;
  mutate(fn: (s: S) => S): Promise<void>;
}

/** Bounds of the wait before looking at a lease held by another instance again, ms. */
const RECHECK_MIN_MS = 50;
const RECHECK_MAX_MS = 5_000;

/**
 * Tries to take the planning lease in `actor`'s state for `owner` (a compare-and-set write like any other change
 * of the actor). Resolves with `undefined` when `owner` holds it now, else with how long to wait before trying
 * again, ms: until the holder's lease expires, but between 50 ms and 5 s (the holder usually releases early).
 * @throws what `actor.mutate` throws (a KV error after repeated conflicts).
 */
export async function acquirePlanningLease<S extends { planningLease?: PlanningLease }>(
  actor: LeasedActor<S>,
  owner: string,
  ttlMs = PLANNING_LEASE_TTL_MS,
): Promise<number | undefined> {
  await actor.mutate((st) => {
    const lease = claimLease(st.planningLease, owner, Date.now(), ttlMs);
    return lease === st.planningLease ? st : { ...st, planningLease: lease };
  });
  const lease = actor.state.planningLease;
  if (lease?.owner === owner) return undefined;
  return Math.max(
    RECHECK_MIN_MS,
    Math.min((lease?.expiresAt ?? 0) - Date.now() + RECHECK_MIN_MS, RECHECK_MAX_MS),
  );
}

/**
 * Runs `work` (a model call) while `owner` holds the planning lease, renewing it every third of `ttlMs` so a
 * long call does not lose it; a failed renewal goes to `onRenewError` (the call goes on: at worst another
 * instance takes the lease after it expires). Does not release the lease: the caller releases it
 * ({@link releaseLease}) in the same write that records the call's result, so no other instance plans in between.
 */
export async function holdingPlanningLease<S extends { planningLease?: PlanningLease }, T>(
  actor: LeasedActor<S>,
  owner: string,
  work: () => Promise<T>,
  opts: { ttlMs?: number; onRenewError: (err: unknown) => void },
): Promise<T> {
  const ttlMs = opts.ttlMs ?? PLANNING_LEASE_TTL_MS;
  const renew = setInterval(() => {
    void actor
      .mutate((st) =>
        st.planningLease?.owner === owner
          ? { ...st, planningLease: { owner, expiresAt: Date.now() + ttlMs } }
          : st,
      )
      .catch(opts.onRenewError);
  }, ttlMs / 3);
  try {
    return await work();
  } finally {
    clearInterval(renew);
  }
}
