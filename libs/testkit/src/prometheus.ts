/** One sample of a Prometheus text exposition: name, labels, value. */
export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text format 0.0.4 (comments skipped; label values unescaped for `\"`, `\\`, `\n`). */
export function parsePrometheusText(text: string): PromSample[] {
  const out: PromSample[] = [];
  for (const m of text.matchAll(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/gm)) {
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]!] = l[2]!.replace(/\\n/g, "\n").replace(/\\(["\\])/g, "$1");
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the first sample `name` whose labels include all of `labels`, or undefined. */
export function promValue(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  return parsePrometheusText(text).find(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  )?.value;
}
