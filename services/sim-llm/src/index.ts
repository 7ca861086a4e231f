/**
 * @longshot/sim-llm — a scripted OpenAI-compatible chat-completions server (the model of the demo and tests).
 * `respond()` is the pure decision (script + request → plan); `server.ts` renders plans over HTTP/SSE.
 */
export {
  ARGUMENTS_CHUNK_CHARS,
  CONTENT_CHUNK_CHARS,
  completionObject,
  errorBody,
  type ResponseMeta,
  type StreamEvent,
  splitText,
  streamEvents,
} from "./openai-format.ts";
export {
  type FaultOptions,
  mulberry32,
  PrefixCache,
  promptText,
  Replica,
  type ReplicaOptions,
  type ReplicaStats,
} from "./replica.ts";
export {
  type ChatMessage,
  type ChatRequest,
  ChatRequestSchema,
  type CompletionPlan,
  type ErrorPlan,
  errorPlan,
  errorTypeForStatus,
  estimatePromptTokens,
  estimateTokens,
  firstUserText,
  matcherMatches,
  messageText,
  type PlannedToolCall,
  parseChatRequest,
  type RespondOptions,
  type ResponsePlan,
  randomToolCallId,
  respond,
  selectConversation,
  systemText,
  turnIndexOf,
  type Usage,
} from "./respond.ts";
export {
  type Conversation,
  compileMatcher,
  loadScript,
  parseScript,
  type Script,
  type ScriptInput,
  type ScriptIssue,
  ScriptLoadError,
  ScriptSchema,
  type ScriptToolCall,
  ScriptValidationError,
  type Turn,
} from "./script.ts";
export {
  createSimLlmHandler,
  MAX_BODY_BYTES,
  type RequestRecord,
  type SimLlm,
  SimLlmConfigError,
  type SimLlmHandlerOptions,
  type StartSimLlmOptions,
  startSimLlm,
  syntheticScript,
} from "./server.ts";
