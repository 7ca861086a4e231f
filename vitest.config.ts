import { defineConfig } from "vitest/config";

/**
 * Two projects: `unit` (pure logic, no broker, no child processes) and `integration`
 * (real nats-server, real git repositories, real processes). Integration files end in `.int.test.ts`.
 */
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["libs/*/test/**/*.test.ts", "services/*/test/**/*.test.ts", "infra/test/**/*.test.ts"],
          exclude: ["**/*.int.test.ts", "**/node_modules/**"],
        },
      },
      {
        test: {
          name: "integration",
          include: ["libs/*/test/**/*.int.test.ts", "services/*/test/**/*.int.test.ts"],
          testTimeout: 180_000,
          hookTimeout: 120_000,
          fileParallelism: true,
          maxWorkers: 2,
        },
      },
    ],
  },
});
