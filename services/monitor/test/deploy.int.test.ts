import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dashboards } from "../grafana/dashboards.ts";

const ROOT = join(import.meta.dirname, "../../..");
let dir: string;

/** docker-compose (Debian's v1, installed by scripts/bootstrap.sh) on the copy of deploy/ with the env files a user writes. */
function compose(...args: string[]) {
  const deploy = join(dir, "deploy");
  const res = spawnSync(
    "docker-compose",
    ["--env-file", "secrets.env", "-f", "docker-compose.yml", ...args],
    {
      cwd: deploy,
      encoding: "utf8",
    },
  );
  if (res.error)
    throw new Error(`docker-compose is required (scripts/bootstrap.sh installs it): ${res.error.message}`);
  return res;
}

beforeAll(async () => {
  // deploy/.env, gateway.env and secrets.env are the operator's (git-ignored): validate a copy with the examples
  // filled in (compose refuses to start without the NATS passwords).
  dir = await mkdtemp(join(tmpdir(), "longshot-deploy-"));
  await cp(join(ROOT, "deploy"), join(dir, "deploy"), { recursive: true });
  await cp(join(ROOT, "nats.conf"), join(dir, "nats.conf"));
  for (const f of [".env", "gateway.env"])
    await cp(join(dir, "deploy", `${f}.example`), join(dir, "deploy", f));
  const passwords = (await readFile(join(dir, "deploy/secrets.env.example"), "utf8")).replace(
    /^(NATS_[A-Z]+_PASSWORD|GATEWAY_ADMIN_TOKEN)=$/gm,
    (_, k: string) => `${k}=p${randomBytes(18).toString("hex")}`,
  );
  await writeFile(join(dir, "deploy/secrets.env"), passwords);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("deploy/docker-compose.yml with Prometheus and Grafana", () => {
  it("passes docker-compose config -q", () => {
    const res = compose("config", "-q");
    expect(res.status, res.stderr).toBe(0);
  });

  it("runs the monitor, an exporter per NATS node and Grafana with the provisioned dashboards, and Prometheus scrapes every service", async () => {
    const config = compose("config").stdout;
    for (const svc of [
      "monitor",
      "prometheus",
      "grafana",
      "nats-exporter-1",
      "nats-exporter-2",
      "nats-exporter-3",
    ])
      expect(config).toMatch(new RegExp(`^  ${svc}:$`, "m"));
    expect(config).toContain("/var/lib/grafana/dashboards");
    expect(config).toContain("/etc/grafana/provisioning");
    const prom = await readFile(join(ROOT, "deploy/prometheus.yml"), "utf8");
    for (const svc of ["planner", "subplanner", "dispatcher", "merger", "reconciler", "monitor"])
      expect(prom).toContain(`${svc}:9464`);
    for (const n of [1, 2, 3]) expect(prom).toContain(`nats-exporter-${n}:7777`);
    expect(prom).toContain("llm-gateway:4000");
    const provisioned = await readFile(
      join(ROOT, "deploy/grafana/provisioning/datasources/prometheus.yml"),
      "utf8",
    );
    expect(provisioned).toContain("url: http://prometheus:9090");
    for (const file of Object.keys(dashboards()))
      expect(JSON.parse(await readFile(join(ROOT, "deploy/grafana/dashboards", file), "utf8")).uid).toMatch(
        /^longshot-/,
      );
  });
});
