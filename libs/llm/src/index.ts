export {
  type CallObservation,
  ChatClient,
  type ChatClientOptions,
  type ChatEndpoint,
  type ChatMessage,
  chatClientFromConfig,
  ModelOutputError,
  refusalStatus,
  type Usage,
} from "./client.ts";
export { extractJson } from "./json.ts";
export {
  errorResult,
  formatEntries,
  formatFileLines,
  parseRepoToolCall,
  REPO_TOOL_DEFINITIONS,
  REPO_TOOL_LIMITS,
  RepoToolArgs,
  type RepoToolCall,
  type RepoToolEntry,
  type RepoToolName,
  type RepoToolReader,
  repoToolSet,
} from "./repo-tools.ts";
export { capText, TOOL_DEFAULTS, type ToolDefinition, type ToolOptions, type ToolSet } from "./tools.ts";
export { SmoothWeightedRoundRobin, type Weighted } from "./wrr.ts";
