/**
 * Progress on stderr, so that stdout stays clean for the summary table. Each finished point gets a
 * line; on a terminal, unless disabled, a bar for the point in progress is redrawn in place below it.
 */
export interface ProgressStream {
  write(text: string): boolean;
  isTTY?: boolean;
  columns?: number;
}

const BAR_WIDTH = 24;

export class ProgressBar {
  private drawn = false;

  constructor(
    private readonly stream: ProgressStream,
    private readonly totalPoints: number,
    private readonly enabled: boolean,
  ) {}

  private get live(): boolean {
    return this.enabled && this.stream.isTTY === true;
  }

  /** `fraction` is how far the current point is, in [0, 1]. */
  update(pointIndex: number, phase: "warm-up" | "measure", label: string, fraction: number, detail: string): void {
    if (!this.live) return;
    const overall = Math.min(1, (pointIndex + (phase === "measure" ? fraction : 0)) / this.totalPoints);
    const filled = Math.round(overall * BAR_WIDTH);
    const bar = `${"=".repeat(filled)}${filled < BAR_WIDTH ? ">" : ""}${" ".repeat(Math.max(0, BAR_WIDTH - filled - 1))}`;
    const line = `[${bar}] ${pointIndex + 1}/${this.totalPoints} ${label} ${phase} ${Math.round(fraction * 100)}% ${detail}`;
    const width = (this.stream.columns ?? 120) - 1;
    this.stream.write(`\r${line.slice(0, width).padEnd(width)}`);
    this.drawn = true;
  }

  /** A line that stays (a finished point or a message), bar or no bar. */
  log(line: string): void {
    if (this.drawn) this.stream.write("\r\x1b[2K");
    this.drawn = false;
    this.stream.write(`${line}\n`);
  }

  done(): void {
    if (this.drawn) this.stream.write("\r\x1b[2K");
    this.drawn = false;
  }
}
