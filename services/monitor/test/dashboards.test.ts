import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  DASHBOARDS_DIR,
  DATASOURCE_VARIABLE,
  dashboardJson,
  dashboards,
  panelQueries,
} from "../grafana/dashboards.ts";

const PANEL_TYPES = new Set(["row", "timeseries", "stat", "bargauge", "state-timeline"]);

describe("Grafana dashboards (deploy/grafana/dashboards)", () => {
  it("are exactly what the foundation-SDK builders produce (regenerate: node services/monitor/grafana/dashboards.ts)", async () => {
    for (const [file, d] of Object.entries(dashboards()))
      expect(await readFile(join(DASHBOARDS_DIR, file), "utf8"), file).toBe(dashboardJson(d));
  });

  it("give every panel a Prometheus query with a refId, on the dashboard's datasource variable", () => {
    const uids = new Set<string>();
    for (const [file, d] of Object.entries(dashboards())) {
      expect(d.uid, file).toMatch(/^longshot-/);
      expect(uids.has(d.uid!), `${file} uid`).toBe(false);
      uids.add(d.uid!);
      expect(typeof d.schemaVersion).toBe("number");
      const vars = (d.templating?.list ?? []).map((v) => v.name);
      expect(vars, file).toContain("datasource");
      for (const p of d.panels ?? []) {
        expect(PANEL_TYPES.has(p.type), `${file}: ${p.type}`).toBe(true);
        if (p.type === "row") continue;
        const panel = p as {
          title?: string;
          targets?: { expr?: string; refId?: string; datasource?: { uid?: string } }[];
        };
        expect(panel.title, file).toBeTruthy();
        expect(panel.targets?.length, `${file}: ${panel.title}`).toBeGreaterThan(0);
        for (const t of panel.targets ?? []) {
          expect(t.expr?.trim(), `${file}: ${panel.title}`).toBeTruthy();
          expect(t.refId).toMatch(/^[A-Z]$/);
          expect(t.datasource?.uid).toBe(DATASOURCE_VARIABLE);
        }
      }
    }
    expect(uids).toEqual(new Set(["longshot-fleet", "longshot-run", "longshot-gateway", "longshot-nats"]));
  });

  it("select one run on the Run dashboard by its run variable", () => {
    const run = dashboards()["run.json"]!;
    expect(run.templating?.list?.find((v) => v.name === "run")).toMatchObject({ type: "query" });
    for (const q of panelQueries(run)) expect(q.expr, q.panel).toContain('run="$run"');
  });
});
