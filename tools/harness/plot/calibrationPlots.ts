/**
 * The plots of `npm run calibrate -- --evidence` (training/ctm/calibration_evidence.py writes the JSON):
 * what the guarantee delivers on each halting signal against the old rule and the oracle, and whether
 * certainty, the top-class probability and (for a model with a halting head) the halt signal are
 * calibrated, per tick. Reads evidence files from before halting signals too (certainty only).
 *
 *   tsx tools/harness/plot/calibrationPlots.ts out/calibration-evidence/evidence.json docs/img
 *
 * It lives beside the load-test plots because it draws with the same small SVG chart code.
 */
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type ChartSeries, gridSvg, lineChartSvg, PALETTE, writePng } from "./svgChart.ts";

interface CoverageRow {
  rule: "ltt" | "old";
  target: number;
  confidence: number | null;
  coverage: number;
  coverage_population: number;
  p05_achieved: number;
  mean_achieved: number;
  mean_ticks: number;
}

interface ReliabilityBin {
  count: number;
  confidence: number | null;
  accuracy: number | null;
}

interface Reliability {
  ece: number;
  bins: ReliabilityBin[];
}

type Kind = "accuracy" | "consistency";
type Coverage = Record<Kind, CoverageRow[]>;

/** evidence.json as training/ctm/calibration_evidence.py writes it, now and before halting signals. */
export interface Evidence {
  model: string;
  date: string;
  splits: number;
  calibrate_count: number;
  /** The signals calibrated (certainty, halt); absent before halting signals, when coverage was certainty's. */
  signals?: string[];
  coverage: Record<string, Coverage> | Coverage;
  /** The fewest ticks any rule could spend for the full run's answers, averaged over the pool. */
  oracle_mean_ticks?: number;
  reliability: {
    tick: number;
    accuracy: number;
    certainty: Reliability;
    top: Reliability;
    /** A model with a halting head: its halt signal as a predictor of the tick's answer being right. */
    halt?: Reliability;
  }[];
}

export const CALIBRATION_PLOTS = {
  guarantee: "calibration-guarantee.png",
  reliability: "calibration-reliability.png",
} as const;

const PANEL = { width: 560, height: 360 };
/** The confidence the guarantee plot draws: the server's default for target_confidence. */
const CONFIDENCE = 0.95;
/** Each signal's own colour (halt's as in the classify plot); the old rule is the same colour, dashed. */
const SIGNAL_COLOURS: Record<string, string> = { certainty: "#000000", halt: "#9400d3" };
const colourOf = (signal: string, i: number) => SIGNAL_COLOURS[signal] ?? (PALETTE[i % PALETTE.length] as string);
/** Bins with fewer items than this are left out of the reliability diagrams: their accuracy is noise. */
const MIN_BIN = 10;

/** Coverage per signal, whichever shape the file has. */
function coverageBySignal(evidence: Evidence): Record<string, Coverage> {
  if (!evidence.signals) return { certainty: evidence.coverage as Coverage };
  return evidence.coverage as Record<string, Coverage>;
}

/** The lowest true coverage of any rule on any signal, in percent, rounded down to a multiple of 10. */
function lowest(coverage: Record<string, Coverage>, kind: Kind): number {
  const all = Object.values(coverage).flatMap((c) => (c[kind] ?? []).map((r) => r.coverage_population * 100));
  return Math.floor(Math.min(...all) / 10) * 10;
}

/**
 * Per kind: how often the promise held, what the test half achieved, and the price in mean ticks, each
 * against the target, every signal beside the old rule on it (at confidence 0.95), with the oracle's
 * mean ticks as the floor no rule reaches.
 */
export function guaranteePlot(evidence: Evidence): string {
  const coverage = coverageBySignal(evidence);
  const signals = Object.keys(coverage);
  type Frame = Parameters<typeof lineChartSvg>[1];
  const panels = (["accuracy", "consistency"] as const).flatMap((kind) => {
    const rowsOf = (signal: string) => coverage[signal]?.[kind] ?? [];
    const confidence = (signal: string) => {
      const levels = [...new Set(rowsOf(signal).flatMap((r) => (r.rule === "ltt" ? [r.confidence as number] : [])))];
      return levels.includes(CONFIDENCE) ? CONFIDENCE : Math.max(...levels);
    };
    const perRule = (pick: (r: CoverageRow) => number): ChartSeries[] =>
      signals.flatMap((signal, i) => [
        {
          label: `${signal}: guaranteed, ${confidence(signal) * 100}%`,
          colour: colourOf(signal, i),
          points: rowsOf(signal)
            .filter((r) => r.rule === "ltt" && r.confidence === confidence(signal))
            .map((r) => ({ x: r.target * 100, y: pick(r) })),
        },
        {
          label: `${signal}: old rule`,
          colour: colourOf(signal, i),
          dashed: true,
          points: rowsOf(signal)
            .filter((r) => r.rule === "old")
            .map((r) => ({ x: r.target * 100, y: pick(r) })),
        },
      ]);
    const targets = signals.flatMap((signal) => rowsOf(signal).map((r) => r.target * 100));
    const across = (label: string, y: number) => ({
      label,
      colour: "#999999",
      dashed: true,
      points: [Math.min(...targets), Math.max(...targets)].map((x) => ({ x, y })),
    });
    const diagonal = {
      label: "requested",
      colour: "#999999",
      dashed: true,
      points: [Math.min(...targets), Math.max(...targets)].map((x) => ({ x, y: x })),
    };
    const oracle = evidence.oracle_mean_ticks;
    return [
      (frame: Frame) =>
        lineChartSvg(
          {
            title: `${kind}: how often the true ${kind} >= requested`,
            x: { label: `requested ${kind} (%)` },
            // From 50% down to the lowest coverage drawn, so that no old-rule point falls off the frame.
            y: { label: "coverage (%)", min: Math.min(50, lowest(coverage, kind)), max: 100 },
            series: [...perRule((r) => r.coverage_population * 100), across("confidence", CONFIDENCE * 100)],
          },
          frame,
        ),
      (frame: Frame) =>
        lineChartSvg(
          {
            title: `${kind} on the test half: 5th percentile`,
            x: { label: `requested ${kind} (%)` },
            y: { label: `achieved ${kind} (%)` },
            series: [...perRule((r) => r.p05_achieved * 100), diagonal],
          },
          frame,
        ),
      (frame: Frame) =>
        lineChartSvg(
          {
            title: `${kind}: the price in ticks`,
            x: { label: `requested ${kind} (%)` },
            y: { label: "mean ticks (test half)", zero: true },
            series: [...perRule((r) => r.mean_ticks), ...(oracle === undefined ? [] : [across("oracle", oracle)])],
          },
          frame,
        ),
    ];
  });
  return gridSvg(
    `Guaranteed targets per signal vs the old rule: ${evidence.model}, ${evidence.splits} draws of ${evidence.calibrate_count} calibration items (${evidence.date})`,
    PANEL,
    3,
    panels,
  );
}

/**
 * The ticks the reliability diagrams draw: the first, doubling from there, and the last, so that a
 * model that answers at tick 1 and one that needs most of its ticks are both shown where they decide.
 */
export function reliabilityTicks(ticks: number): number[] {
  const shown: number[] = [];
  for (let t = 1; t < ticks; t *= 2) shown.push(t);
  return [...shown, ticks];
}

function reliabilityPlot(evidence: Evidence): string {
  const shown = reliabilityTicks(evidence.reliability.length);
  const predictors: { key: "certainty" | "top" | "halt"; name: string }[] = [
    { key: "certainty", name: "certainty" },
    { key: "top", name: "top-class probability" },
    ...(evidence.reliability.some((t) => t.halt) ? [{ key: "halt" as const, name: "halt signal" }] : []),
  ];
  type Frame = Parameters<typeof lineChartSvg>[1];
  const diagram = (key: "certainty" | "top" | "halt", name: string) => (frame: Frame) =>
    lineChartSvg(
      {
        title: `reliability of the ${name} (bins >= ${MIN_BIN} items)`,
        x: { label: `${name} (bin mean)`, min: 0, max: 1 },
        y: { label: "accuracy in the bin", min: 0, max: 1 },
        series: [
          ...shown.map((tick, i) => ({
            label: `tick ${tick}`,
            colour: PALETTE[i % PALETTE.length] as string,
            points: (evidence.reliability[tick - 1]?.[key]?.bins ?? [])
              .filter((b) => b.count >= MIN_BIN)
              .map((b) => ({ x: b.confidence as number, y: b.accuracy as number })),
          })),
          {
            label: "calibrated",
            colour: "#999999",
            dashed: true,
            points: [
              { x: 0, y: 0 },
              { x: 1, y: 1 },
            ],
          },
        ],
      },
      frame,
    );
  const ece = (frame: Frame) =>
    lineChartSvg(
      {
        title: "expected calibration error per tick",
        x: { label: "tick" },
        y: { label: "ECE (10 bins)", zero: true },
        series: [
          ...predictors.map(({ key, name }) => ({
            label: name,
            ...(key === "halt" && { colour: SIGNAL_COLOURS.halt }),
            points: evidence.reliability.flatMap((t) => {
              const r = t[key];
              return r ? [{ x: t.tick, y: r.ece }] : [];
            }),
          })),
          {
            label: "error rate",
            dashed: true,
            points: evidence.reliability.map((t) => ({ x: t.tick, y: 1 - t.accuracy })),
          },
        ],
      },
      frame,
    );
  const signals = predictors.some((p) => p.key === "halt") ? "certainty and the halt signal" : "certainty";
  return gridSvg(
    `Are ${signals} calibrated? ${evidence.model}, validation + test items (${evidence.date})`,
    PANEL,
    predictors.length === 3 ? 2 : 3,
    [...predictors.map(({ key, name }) => diagram(key, name)), ece],
  );
}

export async function writeCalibrationPlots(evidenceFile: string, dir: string): Promise<string[]> {
  const evidence = JSON.parse(readFileSync(evidenceFile, "utf8")) as Evidence;
  mkdirSync(dir, { recursive: true });
  const files = [join(dir, CALIBRATION_PLOTS.guarantee), join(dir, CALIBRATION_PLOTS.reliability)];
  await writePng(guaranteePlot(evidence), files[0] as string);
  await writePng(reliabilityPlot(evidence), files[1] as string);
  return files;
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split("/").pop() as string)) {
  const [evidenceFile, dir] = process.argv.slice(2);
  if (!evidenceFile || !dir) {
    console.error("usage: tsx tools/harness/plot/calibrationPlots.ts <evidence.json> <png dir>");
    process.exit(2);
  }
  for (const file of await writeCalibrationPlots(evidenceFile, dir)) console.log(`wrote ${file}`);
}
