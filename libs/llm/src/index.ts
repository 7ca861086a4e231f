export {
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
