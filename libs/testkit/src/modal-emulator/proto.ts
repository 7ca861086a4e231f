/**
 * The wire contract of the Modal emulator: a minimal, hand-written subset of Modal's protobuf API holding only the
 * messages and fields the `modal@0.11.1` JS SDK sends or reads on the paths the emulator implements.
 *
 * Field numbers and types are facts taken from `modal_proto/api.proto` (package `modal.client`) and
 * `modal_proto/task_command_router.proto` (package `modal.task_command_router`) in modal-labs/modal-client, and
 * checked against the ts-proto encoders compiled into `modal/dist/index.js` 0.11.1 (which also carry the fields
 * newer than the public proto snapshots: `SandboxCreateV2*`, `secret_sources`, the stdin stream and `*V2` stdio
 * of the router). Enums are declared as `int32` (the same varint on the wire); their values are listed in
 * {@link GenericStatus} and friends. Fields the SDK sends but the emulator ignores are simply absent here: protobuf
 * decoders skip unknown fields.
 */
import protobuf from "protobufjs";

const PROTO = `
syntax = "proto3";

package modal.client;

// ---- shared -------------------------------------------------------------------------------------------------
message Empty {}

message GenericResult {
  int32 status = 1;        // GenericStatus
  string exception = 2;
  int32 exitcode = 3;
  string traceback = 4;
}

// ---- auth, apps, environments -------------------------------------------------------------------------------
message AuthTokenGetRequest {}
message AuthTokenGetResponse { string token = 1; }

message AppGetOrCreateRequest {
  string app_name = 1;
  string environment_name = 2;
  int32 object_creation_type = 3;  // 0 lookup only, 1 CREATE_IF_MISSING
}
message AppGetOrCreateResponse { string app_id = 1; }

message EnvironmentGetOrCreateRequest {
  string deployment_name = 1;
  int32 object_creation_type = 2;
}
message EnvironmentSettings {
  string image_builder_version = 1;
  string webhook_suffix = 2;
}
message EnvironmentMetadata {
  string name = 1;
  EnvironmentSettings settings = 2;
}
message EnvironmentGetOrCreateResponse {
  string environment_id = 1;
  EnvironmentMetadata metadata = 2;
}

// ---- secrets (V1 sandboxes carry their env as an ephemeral secret) -------------------------------------------
message SecretGetOrCreateRequest {
  string deployment_name = 1;
  string environment_name = 3;
  int32 object_creation_type = 4;  // 5 EPHEMERAL for secrets.fromObject
  map<string, string> env_dict = 5;
  string app_id = 6;
}
message SecretGetOrCreateResponse { string secret_id = 1; }

// ---- images -------------------------------------------------------------------------------------------------
message BaseImage {
  string image_id = 1;
  string docker_tag = 2;
}
message Image {
  repeated BaseImage base_images = 5;
  repeated string dockerfile_commands = 6;
  repeated string secret_ids = 12;
}
message ImageGetOrCreateRequest {
  Image image = 2;
  string app_id = 4;
  bool force_build = 7;
  string builder_version = 9;
}
message ImageGetOrCreateResponse {
  string image_id = 1;
  GenericResult result = 2;
}
message ImageJoinStreamingRequest {
  string image_id = 1;
  float timeout = 2;
  string last_entry_id = 3;
}
message ImageJoinStreamingResponse {
  GenericResult result = 1;
  string entry_id = 3;
  bool eof = 4;
}
message ImageFromIdRequest { string image_id = 1; }
message ImageFromIdResponse { string image_id = 1; }

// ---- sandboxes ----------------------------------------------------------------------------------------------
message Resources {
  uint32 memory_mb = 2;
  uint32 milli_cpu = 3;
  uint32 memory_mb_max = 5;
  uint32 milli_cpu_max = 7;
}
message NetworkAccess {
  int32 network_access_type = 1;   // NetworkAccessType
  repeated string allowed_cidrs = 2;
  repeated string allowed_domains = 3;
}
message StringMap { map<string, string> contents = 1; }
message SecretSource {
  string secret_id = 1;
  StringMap env = 2;
}
message SandboxTag {
  string tag_name = 1;
  string tag_value = 2;
}
message PTYInfo { bool enabled = 1; }
message Sandbox {
  repeated string entrypoint_args = 1;
  string image_id = 3;
  repeated string secret_ids = 4;
  Resources resources = 5;
  uint32 timeout_secs = 7;
  string workdir = 8;
  bool block_network = 11;
  PTYInfo pty_info = 15;
  NetworkAccess network_access = 22;
  string name = 30;
  uint32 idle_timeout_secs = 33;
  StringMap environment_variables = 40;
}
message SandboxHandleMetadata {
  GenericResult result = 1;
  string app_id = 2;
}
message CommandRouterAccess {
  string jwt = 1;
  string url = 2;
}
message SandboxCreateRequest {
  string app_id = 1;
  Sandbox definition = 2;
  string environment_name = 3;
  repeated SandboxTag tags = 4;
}
message SandboxCreateResponse {
  string sandbox_id = 1;
  SandboxHandleMetadata metadata = 2;
}
message SandboxCreateV2Request {
  string app_id = 1;
  Sandbox definition = 2;
  repeated SandboxTag tags = 4;
  repeated SecretSource secret_sources = 6;
}
message SandboxCreateV2Response {
  string sandbox_id = 1;
  string task_id = 3;
  SandboxHandleMetadata metadata = 4;
  CommandRouterAccess command_router_access = 5;
}
message SandboxGetTaskIdRequest {
  string sandbox_id = 1;
  float timeout = 2;
  bool wait_until_ready = 3;
}
message SandboxGetTaskIdResponse {
  string task_id = 1;
  GenericResult task_result = 2;
}
message SandboxGetCommandRouterAccessRequest {
  string sandbox_id = 1;
  string task_id = 2;
}
message SandboxGetCommandRouterAccessResponse {
  string jwt = 1;
  string url = 2;
}
message TaskGetCommandRouterAccessRequest { string task_id = 1; }
message TaskGetCommandRouterAccessResponse {
  string jwt = 1;
  string url = 2;
}
message SandboxWaitRequest {
  string sandbox_id = 1;
  float timeout = 2;
}
message SandboxWaitResponse {
  GenericResult result = 1;
  SandboxHandleMetadata metadata = 2;
}
message SandboxTerminateRequest { string sandbox_id = 1; }
message SandboxTerminateResponse { GenericResult existing_result = 1; }
message SandboxTagsSetRequest {
  string environment_name = 1;
  string sandbox_id = 2;
  repeated SandboxTag tags = 3;
}
message SandboxTagsGetRequest { string sandbox_id = 1; }
message SandboxTagsGetResponse { repeated SandboxTag tags = 1; }
message SandboxListRequest {
  string app_id = 1;
  double before_timestamp = 2;
  string environment_name = 3;
  bool include_finished = 4;
  repeated SandboxTag tags = 5;
}
message TaskInfo {
  string id = 1;
  double started_at = 2;
  double finished_at = 3;
  GenericResult result = 4;
  string sandbox_id = 7;
}
message SandboxInfo {
  string id = 1;
  double created_at = 3;
  TaskInfo task_info = 4;
  string app_id = 5;
  repeated SandboxTag tags = 6;
  string name = 7;
  string image_id = 8;
  uint32 timeout_secs = 11;
}
message SandboxListResponse { repeated SandboxInfo sandboxes = 1; }
`;

const ROUTER_PROTO = `
syntax = "proto3";

package modal.task_command_router;

message TaskExecStartRequest {
  string task_id = 1;
  string exec_id = 2;
  repeated string command_args = 3;
  int32 stdout_config = 4;   // TaskExecStdoutConfig: 0 DEVNULL, 1 PIPE
  int32 stderr_config = 5;   // TaskExecStderrConfig: 0 DEVNULL, 1 PIPE, 2 STDOUT
  uint32 timeout_secs = 6;
  string workdir = 7;
  repeated string secret_ids = 8;
  modal.client.PTYInfo pty_info = 9;
  string container_id = 11;
  map<string, string> env = 12;
  repeated modal.client.SecretSource secret_sources = 13;
}
message TaskExecStartResponse {}

message TaskExecStdioReadRequest {
  string task_id = 1;
  string exec_id = 2;
  uint64 offset = 3;
  int32 file_descriptor = 4;  // TaskExecStdioFileDescriptor: 0 STDOUT, 1 STDERR
}
message TaskExecStdioReadResponse { bytes data = 1; }

message TaskExecStdinWriteRequest {
  string task_id = 1;
  string exec_id = 2;
  uint64 offset = 3;
  bytes data = 4;
  bool eof = 5;
}
message TaskExecStdinWriteResponse {}

message TaskExecStdinWriteStreamStart {
  string task_id = 1;
  string exec_id = 2;
  uint64 offset = 3;
}
message TaskExecStdinWriteStreamEnd {}
message TaskExecStdinWriteStreamRequest {
  TaskExecStdinWriteStreamStart start = 1;
  bytes data = 2;
  TaskExecStdinWriteStreamEnd end = 3;
}
message TaskExecStdinWriteStreamResponse {}

message TaskExecStdinStatusRequest {
  string task_id = 1;
  string exec_id = 2;
}
message TaskExecStdinStatusResponse {
  uint64 num_bytes_written = 1;
  bool closed = 2;
}

message TaskExecWaitRequest {
  string task_id = 1;
  string exec_id = 2;
}
message TaskExecWaitResponse {
  oneof exit_status {
    int32 code = 1;
    int32 signal = 2;
  }
}
message TaskExecPollRequest {
  string task_id = 1;
  string exec_id = 2;
}
message TaskExecPollResponse {
  oneof exit_status {
    int32 code = 1;
    int32 signal = 2;
  }
}

message TaskSetNetworkAccessRequest {
  string task_id = 1;
  modal.client.NetworkAccess network_access = 2;
}
message TaskSetNetworkAccessResponse {}

message SandboxStdioReadV2Request {
  string task_id = 1;
  uint64 offset = 2;
  int32 file_descriptor = 3;  // SandboxStdioFileDescriptor: 0 STDOUT, 1 STDERR
}
message SandboxStdioReadV2Response {
  bytes data = 1;
  uint64 starting_offset = 2;
}
message SandboxStdinWriteV2Request {
  string task_id = 1;
  uint64 offset = 2;
  bytes data = 3;
  bool eof = 4;
}
message SandboxStdinWriteV2Response {}
`;

/** `GenericResult.status` values (enum `GenericResult.GenericStatus` in api.proto). */
export const GenericStatus = {
  UNSPECIFIED: 0,
  SUCCESS: 1,
  FAILURE: 2,
  TERMINATED: 3,
  TIMEOUT: 4,
  INIT_FAILURE: 5,
  INTERNAL_FAILURE: 6,
  IDLE_TIMEOUT: 7,
} as const;

/** `NetworkAccess.network_access_type` values (enum `NetworkAccess.NetworkAccessType` in api.proto). */
export const NetworkAccessType = { UNSPECIFIED: 0, OPEN: 1, BLOCKED: 2, ALLOWLIST: 3 } as const;

/** `AppGetOrCreateRequest.object_creation_type` values (enum `ObjectCreationType` in api.proto). */
export const ObjectCreationType = { UNSPECIFIED: 0, CREATE_IF_MISSING: 1 } as const;

const root = new protobuf.Root();
protobuf.parse(PROTO, root, { keepCase: false });
protobuf.parse(ROUTER_PROTO, root, { keepCase: false });
root.resolveAll();

/** A message type as a pair of functions: wire bytes ⇄ plain object with camelCase keys. */
export interface Codec {
  /** Decodes into a plain object: uint64 as number, bytes as Buffer, absent message fields `null`. */
  decode(buf: Buffer): Record<string, unknown>;
  encode(obj: Record<string, unknown>): Buffer;
}

const codecs = new Map<string, Codec>();

/** The codec of a message, by full name (`modal.client.SandboxWaitRequest`). Throws on an unknown name. */
export function codec(fullName: string): Codec {
  let c = codecs.get(fullName);
  if (!c) {
    const type = root.lookupType(fullName);
    c = {
      decode: (buf) =>
        type.toObject(type.decode(buf), {
          longs: Number,
          bytes: Buffer,
          defaults: true,
          arrays: true,
          objects: true,
          oneofs: false,
        }),
      encode: (obj) => Buffer.from(type.encode(type.fromObject(obj)).finish()),
    };
    codecs.set(fullName, c);
  }
  return c;
}

/** One RPC of a service: its name, request/response message names, and streaming shape. */
export interface RpcSpec {
  name: string;
  request: string;
  response: string;
  /** `unary`, `server` (response stream), or `client` (request stream). */
  kind: "unary" | "server" | "client";
}

/** gRPC service name of Modal's control plane (`service ModalClient` in api.proto). */
export const CONTROL_SERVICE = "modal.client.ModalClient";
/** gRPC service name of the per-task command router (`service TaskCommandRouter`). */
export const ROUTER_SERVICE = "modal.task_command_router.TaskCommandRouter";

const c = (name: string, request: string, response: string, kind: RpcSpec["kind"] = "unary"): RpcSpec => ({
  name,
  request: `modal.client.${request}`,
  response: `modal.client.${response}`,
  kind,
});
const r = (name: string, kind: RpcSpec["kind"] = "unary", request = `${name}Request`): RpcSpec => ({
  name,
  request: `modal.task_command_router.${request}`,
  response: `modal.task_command_router.${request.replace(/Request$/, "Response")}`,
  kind,
});

/**
 * The control-plane RPCs the emulator serves. V1 and V2 sandbox RPCs share request/response messages (the SDK's
 * `ModalClientDefinition` maps e.g. both `SandboxWait` and `SandboxWaitV2` to `SandboxWaitRequest`).
 */
export const CONTROL_RPCS: RpcSpec[] = [
  c("AuthTokenGet", "AuthTokenGetRequest", "AuthTokenGetResponse"),
  c("AppGetOrCreate", "AppGetOrCreateRequest", "AppGetOrCreateResponse"),
  c("EnvironmentGetOrCreate", "EnvironmentGetOrCreateRequest", "EnvironmentGetOrCreateResponse"),
  c("SecretGetOrCreate", "SecretGetOrCreateRequest", "SecretGetOrCreateResponse"),
  c("ImageGetOrCreate", "ImageGetOrCreateRequest", "ImageGetOrCreateResponse"),
  c("ImageJoinStreaming", "ImageJoinStreamingRequest", "ImageJoinStreamingResponse", "server"),
  c("ImageFromId", "ImageFromIdRequest", "ImageFromIdResponse"),
  c("SandboxCreate", "SandboxCreateRequest", "SandboxCreateResponse"),
  c("SandboxCreateV2", "SandboxCreateV2Request", "SandboxCreateV2Response"),
  c("SandboxGetTaskId", "SandboxGetTaskIdRequest", "SandboxGetTaskIdResponse"),
  c("SandboxGetTaskIdV2", "SandboxGetTaskIdRequest", "SandboxGetTaskIdResponse"),
  c(
    "SandboxGetCommandRouterAccess",
    "SandboxGetCommandRouterAccessRequest",
    "SandboxGetCommandRouterAccessResponse",
  ),
  c("TaskGetCommandRouterAccess", "TaskGetCommandRouterAccessRequest", "TaskGetCommandRouterAccessResponse"),
  c("SandboxWait", "SandboxWaitRequest", "SandboxWaitResponse"),
  c("SandboxWaitV2", "SandboxWaitRequest", "SandboxWaitResponse"),
  c("SandboxTerminate", "SandboxTerminateRequest", "SandboxTerminateResponse"),
  c("SandboxTerminateV2", "SandboxTerminateRequest", "SandboxTerminateResponse"),
  c("SandboxTagsSet", "SandboxTagsSetRequest", "Empty"),
  c("SandboxTagsSetV2", "SandboxTagsSetRequest", "Empty"),
  c("SandboxTagsGet", "SandboxTagsGetRequest", "SandboxTagsGetResponse"),
  c("SandboxTagsGetV2", "SandboxTagsGetRequest", "SandboxTagsGetResponse"),
  c("SandboxList", "SandboxListRequest", "SandboxListResponse"),
  c("SandboxListV2", "SandboxListRequest", "SandboxListResponse"),
];

/** The command-router RPCs the emulator serves (`TaskCommandRouterDefinition` in the SDK). */
export const ROUTER_RPCS: RpcSpec[] = [
  r("TaskExecStart"),
  r("TaskExecStdioRead", "server"),
  r("TaskExecStdinWrite"),
  r("TaskExecStdinWriteStream", "client"),
  r("TaskExecStdinStatus"),
  r("TaskExecWait"),
  r("TaskExecPoll"),
  r("TaskSetNetworkAccess"),
  r("SandboxStdioReadV2", "server"),
  r("SandboxStdinWriteV2"),
];
