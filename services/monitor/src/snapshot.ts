import type { Registry } from "@longshot/metrics";
import type { HistogramData } from "./domain/fleet.ts";

/** One sample of a metric family: labels (without `service`, added by the registry) and value. */
export interface Sample {
  labels?: Record<string, string | number>;
  value: number;
  /** Suffix of the sample name within a histogram family (`_bucket`, `_sum`, `_count`). */
  suffix?: string;
}

/** A metric family computed at scrape time from state (see {@link registerSnapshot}). */
export interface SnapshotFamily {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  samples: () => Sample[] | Promise<Sample[]>;
}

/**
 * Registers a family whose samples are computed from state on every scrape, instead of being incremented as
 * things happen: the monitor's figures are a fold of the streams, so a restarted monitor exports exactly what it
 * recomputed. Implements prom-client's `get()` contract (name, help, type, values with `metricName` for
 * histogram series), so the registry adds its default labels and formats the text as for its own metrics.
 */
export function registerSnapshot(registry: Registry, family: SnapshotFamily): void {
  const metric = {
    name: family.name,
    help: family.help,
    type: family.type,
    aggregator: "sum",
    get: async () => ({
      name: family.name,
      help: family.help,
      type: family.type,
      aggregator: "sum",
      values: (await family.samples()).map((s) => ({
        value: s.value,
        labels: s.labels ?? {},
        ...(s.suffix ? { metricName: `${family.name}${s.suffix}` } : {}),
      })),
    }),
  };
  registry.registerMetric(metric as unknown as Parameters<Registry["registerMetric"]>[0]);
}

/** The `_bucket` (cumulative, `le`), `_sum` and `_count` samples of histogram data `h` with `labels`. */
export function histogramSamples(h: HistogramData, labels: Record<string, string> = {}): Sample[] {
  const out: Sample[] = [];
  let cumulative = 0;
  h.bounds.forEach((b, i) => {
    cumulative += h.counts[i] ?? 0;
    out.push({ suffix: "_bucket", labels: { ...labels, le: b }, value: cumulative });
  });
  out.push({ suffix: "_bucket", labels: { ...labels, le: "+Inf" }, value: h.count });
  out.push({ suffix: "_sum", labels, value: h.sum });
  out.push({ suffix: "_count", labels, value: h.count });
  return out;
}
