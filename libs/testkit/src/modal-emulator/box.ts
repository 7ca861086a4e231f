/**
 * How the emulator runs a sandbox's processes: through the `Box` API of `@longshot/sandbox`
 * (`libs/sandbox/src/box.ts`: bubblewrap + cgroups), the same isolation the local provider gives every
 * sandbox. A test may pass another factory (e.g. one that records what it was asked for).
 */
import { BOX_HOME, type Box, type BoxOptions, createBox } from "@longshot/sandbox";

export type { Box, BoxExecOptions, BoxLimits, BoxMount, BoxOptions } from "@longshot/sandbox";
export { BOX_HOME };

/** A function that creates boxes: `createBox` of `@longshot/sandbox` by default. */
export type BoxFactory = (opts: BoxOptions) => Box | Promise<Box>;

/** The box factory used when the caller gives none. */
export const defaultBoxFactory: BoxFactory = createBox;
