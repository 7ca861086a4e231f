import { TRANSCRIPT_MAX_BYTES } from "@longshot/contracts";

/** Longest line kept, characters (a longer one is cut and ends with `…`). */
export const TRANSCRIPT_LINE_MAX_CHARS = 1000;

/** A compact transcript as stored: its text (`<ISO time> <text>` lines), lines kept, lines left out. */
export interface CompactTranscriptText {
  text: string;
  lines: number;
  omittedLines: number;
}

/**
 * An attempt's compact transcript, built line by line while the sandbox runs and bounded in memory and size: at
 * most `maxBytes` (UTF-8) of lines, each at most {@link TRANSCRIPT_LINE_MAX_CHARS}. When an attempt says more,
 * the first half of the budget keeps the first lines (what the agent set out to do), the second half the last
 * ones (how it ended), and one marker line says how many were left out between them.
 */
export class CompactTranscript {
  private readonly head: string[] = [];
  private readonly tail: string[] = [];
  private headBytes = 0;
  private tailBytes = 0;
  private omitted = 0;
  private readonly half: number;

  constructor(maxBytes = TRANSCRIPT_MAX_BYTES) {
    this.half = Math.floor(maxBytes / 2);
  }

  /** Adds the line `text` (newlines become spaces) at time `at`. */
  add(at: Date, text: string): void {
    let body = text.replace(/\r?\n/g, " ");
    if (body.length > TRANSCRIPT_LINE_MAX_CHARS) body = `${body.slice(0, TRANSCRIPT_LINE_MAX_CHARS - 1)}…`;
    const line = `${at.toISOString()} ${body}\n`;
    const bytes = Buffer.byteLength(line);
    if (this.tail.length === 0 && this.headBytes + bytes <= this.half) {
      this.head.push(line);
      this.headBytes += bytes;
      return;
    }
    this.tail.push(line);
    this.tailBytes += bytes;
    while (this.tailBytes > this.half && this.tail.length > 0) {
      this.tailBytes -= Buffer.byteLength(this.tail.shift()!);
      this.omitted++;
    }
  }

  /** The transcript so far. */
  result(): CompactTranscriptText {
    const marker = this.omitted > 0 ? [`… ${this.omitted} lines left out …\n`] : [];
    return {
      text: [...this.head, ...marker, ...this.tail].join(""),
      lines: this.head.length + this.tail.length,
      omittedLines: this.omitted,
    };
  }
}
