import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  Buckets,
  Consumers,
  NATS_ROLES,
  natsConfAuthorization,
  natsPasswordVar,
  ObjectStores,
  ROLE_GRANTS,
  STORE_LIMITS,
} from "@longshot/contracts";
import { describe, expect, it } from "vitest";
import { natsNodeConfig, parseNatsVersion } from "../src/nats-nodes.ts";

const ROOT = join(import.meta.dirname, "../../..");

describe("nats.conf", () => {
  it("carries the per-role users and permissions of libs/contracts (generated block)", () => {
    const conf = readFileSync(join(ROOT, "nats.conf"), "utf8");
    const block = /# BEGIN generated authorization\n([\s\S]*)# END generated authorization/.exec(conf)?.[1];
    // On a mismatch, paste the expected block between the markers.
    expect(block).toBe(natsConfAuthorization());
    for (const role of ["admin" as const, ...NATS_ROLES]) expect(conf).toContain(`$${natsPasswordVar(role)}`);
  });
});

describe("role grants", () => {
  it("give every durable consumer and every KV bucket of the topology to exactly one owning role", () => {
    // A consumer or bucket added to libs/contracts without a grant would be refused at run time.
    const grants = Object.values(ROLE_GRANTS);
    for (const c of Object.values(Consumers))
      expect(grants.filter((g) => (g.consumers as unknown[]).includes(c)).length, c.name).toBe(1);
    for (const b of Object.values(Buckets))
      expect(grants.filter((g) => g.buckets.includes(b)).length, b).toBeGreaterThanOrEqual(1);
    for (const o of Object.values(ObjectStores))
      expect(grants.filter((g) => g.objectStores.includes(o)).length, o).toBeGreaterThanOrEqual(1);
  });

  it("bound every store that grows with each attempt (max age and bytes)", () => {
    for (const store of [Buckets.attempts, ...Object.values(ObjectStores)]) {
      expect(STORE_LIMITS[store]?.maxAgeMs, store).toBeGreaterThan(0);
      expect(STORE_LIMITS[store]?.maxBytes, store).toBeGreaterThan(0);
    }
  });
});

describe("embedded cluster node config", () => {
  const node = { name: "n1", port: 4300, storeDir: "/s/n1", clusterPort: 6300 };
  it("asks for fsync on every write only where the server has it (2.11+)", () => {
    const users = [{ user: "a", password: "p" }];
    expect(natsNodeConfig({ node, users, maxPayloadBytes: 1, version: [2, 9, 10] })).not.toContain(
      "sync_interval",
    );
    expect(natsNodeConfig({ node, users, maxPayloadBytes: 1, version: [2, 11, 0] })).toContain(
      '"sync_interval":"always"',
    );
    expect(parseNatsVersion("nats-server: v2.9.10\n")).toEqual([2, 9, 10]);
  });

  it("joins the other nodes with routes when clustered", () => {
    const text = natsNodeConfig({ node, users: [], maxPayloadBytes: 4, routes: [6300, 6301, 6302] });
    expect(text).toContain(
      '"routes":["nats-route://127.0.0.1:6300","nats-route://127.0.0.1:6301","nats-route://127.0.0.1:6302"]',
    );
    expect(text).not.toContain("authorization");
  });
});
