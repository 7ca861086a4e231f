export {
  ChatClient,
  type ChatClientOptions,
  type ChatEndpoint,
  type ChatMessage,
  ModelOutputError,
  type Usage,
} from "./client.ts";
export { extractJson } from "./json.ts";
