import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { createServer, type RequestListener, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { createApp } from "../src/app.ts";
import { createHttpServer } from "../src/server.ts";
import { installShutdown } from "../src/shutdown.ts";

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A server whose only route answers after `delayMs` (or never, for -1). */
function slowServer(delayMs: number): Server {
  const handler: RequestListener = (_req, res) => {
    if (delayMs >= 0) setTimeout(() => res.end("done"), delayMs);
  };
  return createServer(handler);
}

test("SIGTERM stops the app's server and exits 0", async () => {
  const server = createHttpServer(createApp());
  const url = await listen(server);
  const signals = new EventEmitter();
  const exited = new Promise<number>((exit) => installShutdown(server, { emitter: signals, exit }));
  assert.equal((await fetch(`${url}/nope`)).status, 404);
  signals.emit("SIGTERM");
  assert.equal(await exited, 0);
  assert.equal(server.listening, false);
});

test("an in-flight request finishes within the grace period", async () => {
  const server = slowServer(50);
  const url = await listen(server);
  const signals = new EventEmitter();
  const codes: number[] = [];
  const shutdown = installShutdown(server, { emitter: signals, exit: (c) => codes.push(c), graceMs: 5000 });
  const response = fetch(url);
  await new Promise((resolve) => server.once("request", resolve));
  signals.emit("SIGINT");
  assert.equal(await (await response).text(), "done");
  assert.equal(await shutdown(), 0);
  assert.deepEqual(codes, [0]);
});

test("connections still busy after the grace period are cut and the exit code is 1", async () => {
  const server = slowServer(-1);
  const url = await listen(server);
  const codes: number[] = [];
  const shutdown = installShutdown(server, {
    emitter: new EventEmitter(),
    exit: (c) => codes.push(c),
    graceMs: 50,
  });
  const response = fetch(url).catch((err: unknown) => err);
  await new Promise((resolve) => server.once("request", resolve));
  assert.equal(await shutdown(), 1);
  assert.ok((await response) instanceof Error);
  assert.equal(await shutdown(), 1, "a second call returns the same outcome");
  assert.deepEqual(codes, [1], "the process is ended once");
});
