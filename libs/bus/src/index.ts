export { readAttempt, readAttempts, readTranscript, writeAttempt } from "./attempt-history.ts";
export {
  Bus,
  type BusOptions,
  type ConsumeOptions,
  type Consumption,
  connectBus,
  envelopeDecoder,
  eventDecoder,
  type HandlerContext,
  jsonDecoder,
} from "./bus.ts";
export { ensureError, isKvConflict, RetryableError, TerminalError } from "./errors.ts";
export { KvActor, KvActorExistsError, type KvActorStats, type KvStateCodec, wholeState } from "./kv-actor.ts";
export {
  createScopeLeases,
  type LeaseHolder,
  type LeaseResult,
  type LeaseTask,
  leaseKey,
  type ScopeLeases,
} from "./leases.ts";
export {
  acquirePlanningLease,
  claimLease,
  heldByOther,
  holdingPlanningLease,
  instanceId,
  type LeasedActor,
  PLANNING_LEASE_TTL_MS,
  type PlanningLease,
  releaseLease,
} from "./planning-lease.ts";
export { findNatsServer, type NatsServerHandle, startNatsServer } from "./server.ts";
export { runService, type ServiceContext } from "./service.ts";
export { notifyReady, type ReadyMessage, watchSupervisor } from "./supervision.ts";
