/**
 * @longshot/subplanner: the decomposition logic (pure domain) and the service core. The service itself runs
 * from `src/main.ts`; other services never import this package (they talk over NATS).
 */
export * from "./domain/decomposition.ts";
export * from "./domain/messages.ts";
export { createSubplanner, type Subplanner, type SubplannerDeps } from "./subplanner.ts";
