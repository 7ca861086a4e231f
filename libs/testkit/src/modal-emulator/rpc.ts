/**
 * gRPC plumbing of the emulator: turning an {@link RpcSpec} table plus plain async handlers into a
 * `@grpc/grpc-js` service, with one RPC log and one error mapping for all of them.
 */
import {
  type Metadata,
  type Server,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type sendUnaryData,
  status,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { codec, type RpcSpec } from "./proto.ts";

/** An error the emulator answers with a specific gRPC status (`code` from `@grpc/grpc-js`'s `status`). */
export class RpcError extends Error {
  override readonly name = "RpcError";
  readonly code: status;
  constructor(code: status, message: string) {
    super(message);
    this.code = code;
  }
}

/** Shorthands for the statuses the SDK reacts to. */
export const notFound = (m: string): RpcError => new RpcError(status.NOT_FOUND, m);
export const invalid = (m: string): RpcError => new RpcError(status.INVALID_ARGUMENT, m);
export const precondition = (m: string): RpcError => new RpcError(status.FAILED_PRECONDITION, m);
export const alreadyExists = (m: string): RpcError => new RpcError(status.ALREADY_EXISTS, m);
export const unauthenticated = (m: string): RpcError => new RpcError(status.UNAUTHENTICATED, m);

/** A call as a handler sees it: its request metadata and a signal aborted when the client cancels. */
export interface CallContext {
  metadata: Metadata;
  signal: AbortSignal;
}

/** Handler of a unary RPC. */
export type UnaryHandler = (
  req: Record<string, unknown>,
  ctx: CallContext,
) => Promise<Record<string, unknown>>;
/** Handler of a server-streaming RPC: yields responses; ends the stream by returning. */
export type ServerStreamHandler = (
  req: Record<string, unknown>,
  ctx: CallContext,
) => AsyncIterable<Record<string, unknown>>;
/** Handler of a client-streaming RPC: consumes the requests, returns the single response. */
export type ClientStreamHandler = (
  reqs: AsyncIterable<Record<string, unknown>>,
  ctx: CallContext,
) => Promise<Record<string, unknown>>;

/** A handler tagged with its streaming shape (checked against the RPC's {@link RpcSpec.kind}). */
export type Handler =
  | { kind: "unary"; fn: UnaryHandler }
  | { kind: "server"; fn: ServerStreamHandler }
  | { kind: "client"; fn: ClientStreamHandler };

export const unary = (fn: UnaryHandler): Handler => ({ kind: "unary", fn });
export const serverStream = (fn: ServerStreamHandler): Handler => ({ kind: "server", fn });
export const clientStream = (fn: ClientStreamHandler): Handler => ({ kind: "client", fn });

/** Handlers of one service, by RPC name. */
export type Handlers = Record<string, Handler>;

function toServiceError(err: unknown): { code: status; details: string } {
  if (err instanceof RpcError) return { code: err.code, details: err.message };
  return { code: status.INTERNAL, details: err instanceof Error ? err.message : String(err) };
}

function callSignal(call: { on(ev: "cancelled", cb: () => void): unknown }): AbortSignal {
  const ac = new AbortController();
  call.on("cancelled", () => ac.abort());
  return ac.signal;
}

/**
 * Registers `handlers` for the RPCs of `specs` on `server` under `service` (e.g. `modal.client.ModalClient`).
 * Every call is appended to `log` as its bare method name before its handler runs. `authorize` runs first and
 * rejects the call by throwing an {@link RpcError}. RPCs without a handler are not registered (grpc-js answers
 * `UNIMPLEMENTED`).
 */
export function addService(
  server: Server,
  service: string,
  specs: RpcSpec[],
  handlers: Handlers,
  log: (method: string) => void,
  authorize: (method: string, metadata: Metadata) => void,
): void {
  const definition: Record<string, ServiceDefinition[string]> = {};
  const impl: UntypedServiceImplementation = {};
  for (const spec of specs) {
    const handler = handlers[spec.name];
    if (!handler) continue;
    if (handler.kind !== spec.kind)
      throw new Error(`${spec.name} is a ${spec.kind} RPC, got a ${handler.kind} handler`);
    const req = codec(spec.request);
    const res = codec(spec.response);
    definition[spec.name] = {
      path: `/${service}/${spec.name}`,
      requestStream: spec.kind === "client",
      responseStream: spec.kind === "server",
      requestSerialize: (v: Record<string, unknown>) => req.encode(v),
      requestDeserialize: (b: Buffer) => req.decode(b),
      responseSerialize: (v: Record<string, unknown>) => res.encode(v),
      responseDeserialize: (b: Buffer) => res.decode(b),
      originalName: spec.name,
    };
    if (handler.kind === "unary") {
      impl[spec.name] = (
        call: ServerUnaryCall<Record<string, unknown>, Record<string, unknown>>,
        cb: sendUnaryData<Record<string, unknown>>,
      ) => {
        log(spec.name);
        const ctx = { metadata: call.metadata, signal: callSignal(call) };
        Promise.resolve()
          .then(() => authorize(spec.name, call.metadata))
          .then(() => handler.fn(call.request, ctx))
          .then(
            (out) => cb(null, out),
            (err) => cb(toServiceError(err)),
          );
      };
    } else if (handler.kind === "server") {
      impl[spec.name] = (call: ServerWritableStream<Record<string, unknown>, Record<string, unknown>>) => {
        log(spec.name);
        const ctx = { metadata: call.metadata, signal: callSignal(call) };
        (async () => {
          authorize(spec.name, call.metadata);
          for await (const item of handler.fn(call.request, ctx)) {
            if (ctx.signal.aborted) return;
            if (!call.write(item)) await new Promise((r) => call.once("drain", r));
          }
          call.end();
        })().catch((err) => {
          // grpc-js turns an 'error' event on a server stream into the call's final status.
          if (!ctx.signal.aborted) call.emit("error", toServiceError(err));
        });
      };
    } else {
      impl[spec.name] = (
        call: ServerReadableStream<Record<string, unknown>, Record<string, unknown>>,
        cb: sendUnaryData<Record<string, unknown>>,
      ) => {
        log(spec.name);
        const ctx = { metadata: call.metadata, signal: callSignal(call) };
        Promise.resolve()
          .then(() => authorize(spec.name, call.metadata))
          .then(() => handler.fn(call as AsyncIterable<Record<string, unknown>>, ctx))
          .then(
            (out) => cb(null, out),
            (err) => cb(toServiceError(err)),
          );
      };
    }
  }
  server.addService(definition as ServiceDefinition, impl);
}
