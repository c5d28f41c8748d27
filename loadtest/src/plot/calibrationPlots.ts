/**
 * The plots of `npm run calibrate -- --evidence` (training/ctm/calibration_evidence.py writes the JSON):
 * what the guarantee delivers against the old rule, and whether certainty is calibrated, per tick.
 *
 *   tsx loadtest/src/plot/calibrationPlots.ts out/calibration-evidence/evidence.json docs/img
 *
 * It lives beside the load-test plots because it draws with the same small SVG chart code.
 */
import { readFileSync } from "node:fs";
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

interface Evidence {
  model: string;
  date: string;
  splits: number;
  calibrate_count: number;
  coverage: Record<"accuracy" | "consistency", CoverageRow[]>;
  reliability: {
    tick: number;
    accuracy: number;
    certainty: { ece: number; bins: ReliabilityBin[] };
    top: { ece: number; bins: ReliabilityBin[] };
  }[];
}

export const CALIBRATION_PLOTS = {
  guarantee: "calibration-guarantee.png",
  reliability: "calibration-reliability.png",
} as const;

const PANEL = { width: 560, height: 360 };
const OLD = "#000000";
/** Bins with fewer items than this are left out of the reliability diagrams: their accuracy is noise. */
const MIN_BIN = 10;

function guaranteePlot(evidence: Evidence): string {
  const panels = (["accuracy", "consistency"] as const).flatMap((kind) => {
    const rows = evidence.coverage[kind];
    const confidences = [...new Set(rows.filter((r) => r.rule === "ltt").map((r) => r.confidence as number))];
    const perRule = (pick: (r: CoverageRow) => number): ChartSeries[] => [
      ...confidences.map((c, i) => ({
        label: `guaranteed, ${c * 100}%`,
        colour: PALETTE[i % PALETTE.length] as string,
        points: rows.filter((r) => r.confidence === c).map((r) => ({ x: r.target * 100, y: pick(r) })),
      })),
      {
        label: "old rule",
        colour: OLD,
        dashed: true,
        points: rows.filter((r) => r.rule === "old").map((r) => ({ x: r.target * 100, y: pick(r) })),
      },
    ];
    const targets = rows.map((r) => r.target * 100);
    const diagonal = {
      label: "requested",
      colour: "#999999",
      dashed: true,
      points: [Math.min(...targets), Math.max(...targets)].map((x) => ({ x, y: x })),
    };
    return [
      (frame: Parameters<typeof lineChartSvg>[1]) =>
        lineChartSvg(
          {
            title: `${kind}: how often the true ${kind} >= requested`,
            x: { label: `requested ${kind} (%)` },
            y: { label: "coverage (%)", min: 50, max: 100 },
            series: perRule((r) => r.coverage_population * 100),
          },
          frame,
        ),
      (frame: Parameters<typeof lineChartSvg>[1]) =>
        lineChartSvg(
          {
            title: `${kind} on the test half: 5th percentile`,
            x: { label: `requested ${kind} (%)` },
            y: { label: `achieved ${kind} (%)` },
            series: [...perRule((r) => r.p05_achieved * 100), diagonal],
          },
          frame,
        ),
      (frame: Parameters<typeof lineChartSvg>[1]) =>
        lineChartSvg(
          {
            title: `${kind}: the price in ticks`,
            x: { label: `requested ${kind} (%)` },
            y: { label: "mean ticks (test half)" },
            series: perRule((r) => r.mean_ticks),
          },
          frame,
        ),
    ];
  });
  return gridSvg(
    `Guaranteed targets vs the old rule: ${evidence.model}, ${evidence.splits} draws of ${evidence.calibrate_count} calibration items (${evidence.date})`,
    PANEL,
    3,
    panels,
  );
}

function reliabilityPlot(evidence: Evidence): string {
  const shown = [5, 8, 10, 12, 15].filter((t) => t <= evidence.reliability.length);
  const diagram = (key: "certainty" | "top", name: string) => (frame: Parameters<typeof lineChartSvg>[1]) =>
    lineChartSvg(
      {
        title: `reliability of the ${name} (bins >= ${MIN_BIN} items)`,
        x: { label: `${name} (bin mean)`, min: 0, max: 1 },
        y: { label: "accuracy in the bin", min: 0, max: 1 },
        series: [
          ...shown.map((tick, i) => ({
            label: `tick ${tick}`,
            colour: PALETTE[i % PALETTE.length] as string,
            points: (evidence.reliability[tick - 1]?.[key].bins ?? [])
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
  const ece = (frame: Parameters<typeof lineChartSvg>[1]) =>
    lineChartSvg(
      {
        title: "expected calibration error per tick",
        x: { label: "tick" },
        y: { label: "ECE (10 bins)", zero: true },
        series: [
          { label: "certainty", points: evidence.reliability.map((t) => ({ x: t.tick, y: t.certainty.ece })) },
          { label: "top-class probability", points: evidence.reliability.map((t) => ({ x: t.tick, y: t.top.ece })) },
          {
            label: "error rate",
            dashed: true,
            points: evidence.reliability.map((t) => ({ x: t.tick, y: 1 - t.accuracy })),
          },
        ],
      },
      frame,
    );
  return gridSvg(`Is certainty calibrated? ${evidence.model}, validation + test digits (${evidence.date})`, PANEL, 3, [
    diagram("certainty", "certainty"),
    diagram("top", "top-class probability"),
    ece,
  ]);
}

export async function writeCalibrationPlots(evidenceFile: string, dir: string): Promise<string[]> {
  const evidence = JSON.parse(readFileSync(evidenceFile, "utf8")) as Evidence;
  const files = [join(dir, CALIBRATION_PLOTS.guarantee), join(dir, CALIBRATION_PLOTS.reliability)];
  await writePng(guaranteePlot(evidence), files[0] as string);
  await writePng(reliabilityPlot(evidence), files[1] as string);
  return files;
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split("/").pop() as string)) {
  const [evidenceFile, dir] = process.argv.slice(2);
  if (!evidenceFile || !dir) {
    console.error("usage: tsx loadtest/src/plot/calibrationPlots.ts <evidence.json> <png dir>");
    process.exit(2);
  }
  for (const file of await writeCalibrationPlots(evidenceFile, dir)) console.log(`wrote ${file}`);
}
