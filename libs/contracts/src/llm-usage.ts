import { z } from "zod";

/** Token and cost totals of one scope (run, task, role or model), as counted by the LLM gateway. */
export const LlmUsageTotals = z.object({
  requests: z.number().int().nonnegative(),
  promptTokens: z.number().nonnegative(),
  completionTokens: z.number().nonnegative(),
  /** Prompt tokens the replica served from its prefix cache. */
  cachedTokens: z.number().nonnegative(),
  /** prompt + completion: the unit token budgets are counted in. */
  totalTokens: z.number().nonnegative(),
  /** Currency units of the gateway's price table (`GATEWAY_PRICES`). */
  cost: z.number().nonnegative(),
});
export type LlmUsageTotals = z.infer<typeof LlmUsageTotals>;

/**
 * One run's LLM usage, the value of KV bucket `Buckets.llmUsage` under the run id: written by the LLM gateway
 * (about every second while the run makes requests), read by anyone (the CLI prints it with the run summary).
 */
export const LlmRunUsage = LlmUsageTotals.extend({
  runId: z.string().min(1),
  budgetTokens: z.number().optional(),
  byTask: z.record(z.string(), LlmUsageTotals.extend({ budgetTokens: z.number().optional() })),
  byRole: z.record(z.string(), LlmUsageTotals),
  byModel: z.record(z.string(), LlmUsageTotals),
});
export type LlmRunUsage = z.infer<typeof LlmRunUsage>;
