export {
  Bus,
  type BusOptions,
  type ConsumeOptions,
  type Consumption,
  connectBus,
  envelopeDecoder,
  eventDecoder,
  type HandlerContext,
} from "./bus.ts";
export { ensureError, isKvConflict, RetryableError, TerminalError } from "./errors.ts";
export { findNatsServer, type NatsServerHandle, startNatsServer } from "./server.ts";
export { runService, type ServiceContext } from "./service.ts";
