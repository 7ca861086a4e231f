import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";

interface Operation {
  security?: Record<string, string[]>[];
  responses: Record<string, unknown>;
}
type Doc = { openapi: string; paths: Record<string, Record<string, Operation | unknown>> } & Record<
  string,
  unknown
>;

const METHODS = ["get", "post", "put", "patch", "delete"];

/** The API table of SPEC.md: one row per route, with its auth, success status and error statuses. */
async function specRoutes() {
  const spec = await readFile(new URL("../SPEC.md", import.meta.url), "utf8");
  const rows = [];
  for (const line of spec.split("\n")) {
    const m =
      /^\| `(GET|POST|PUT|PATCH|DELETE) (\/[^`\s[]*)[^`]*`[^|]*\|\s*(no|bearer)\s*\|\s*(\d{3})[^|]*\|([^|]*)\|\s*$/.exec(
        line.replace(/\\\|/g, "/"),
      );
    if (!m) continue;
    rows.push({
      method: m[1]!.toLowerCase(),
      path: m[2]!.replace(/:(\w+)/g, "{$1}"),
      bearer: m[3] === "bearer",
      success: m[4]!,
      errors: [...m[5]!.matchAll(/\b(\d{3})\b/g)].map((x) => x[1]!),
    });
  }
  return rows;
}

async function openapi(): Promise<Doc> {
  return JSON.parse(await readFile(new URL("../docs/openapi.json", import.meta.url), "utf8")) as Doc;
}

test("docs/openapi.json is OpenAPI 3.1 with exactly the routes of SPEC.md", async () => {
  const doc = await openapi();
  assert.match(doc.openapi, /^3\.1\.\d+$/);
  const routes = await specRoutes();
  assert.equal(routes.length, 9, "SPEC.md's API table has 9 routes");
  const documented = Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.keys(item)
      .filter((k) => METHODS.includes(k))
      .map((method) => `${method} ${path}`),
  );
  assert.deepEqual(documented.sort(), routes.map((r) => `${r.method} ${r.path}`).sort());
});

test("each operation has SPEC.md's success and error statuses and its auth", async () => {
  const doc = await openapi();
  for (const r of await specRoutes()) {
    const op = doc.paths[r.path]?.[r.method] as Operation;
    const where = `${r.method.toUpperCase()} ${r.path}`;
    assert.deepEqual(
      Object.keys(op.responses).sort(),
      [r.success, ...r.errors].sort(),
      `${where}: responses`,
    );
    assert.deepEqual(op.security, r.bearer ? [{ bearerAuth: [] }] : [], `${where}: security`);
  }
});

test("every $ref resolves", async () => {
  const doc = await openapi();
  const refs: string[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) {
        if (k === "$ref" && typeof x === "string") refs.push(x);
        else walk(x);
      }
    }
  };
  walk(doc);
  assert.ok(refs.length > 0);
  for (const ref of refs) {
    const target = ref
      .replace(/^#\//, "")
      .split("/")
      .reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], doc);
    assert.ok(target !== undefined, `${ref} does not resolve`);
  }
});
