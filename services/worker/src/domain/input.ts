import type { WorkerInput } from "@longshot/contracts";

/**
 * The worker input with the task's model applied: when `input.task.model` is set it replaces
 * `input.llm.model` (a retry may go to LLM_MODEL_FALLBACK); otherwise the input is returned unchanged.
 * This is the only place the override happens: providers pass the dispatcher's model in `input.llm` and
 * every harness reads `input.llm.model`. Pure; returns a new object when it changes anything.
 */
export function applyModelOverride(input: WorkerInput): WorkerInput {
  const model = input.task.model;
  if (model === undefined || model === input.llm.model) return input;
  return { ...input, llm: { ...input.llm, model } };
}
