/** The plots of `npm run bench:scale`: cost against work, one PNG of panels. */
import { type Frame, gridSvg, lineChartSvg, writePng } from "./svgChart.ts";

/** The part of the bench's scale.json these plots draw (the bench's ScaleResults has it all). */
export interface ScalePlotData {
  preset: string;
  model: { parameters: number; ticksPerRequest: number };
  startUp: { batched: { maxBatch: number } };
  graphs: {
    tick: { rows: number; perRowMs: number; residentMiB: number }[];
    encoder: { rows: number; perRowMs: number }[];
  };
  memory: { perActiveRequestMiB: number; baseMiB: number };
  lone: {
    points: { ticks: number; medianMs: number }[];
    fit: { slope: number; intercept: number; r2: number };
    graphsPredictMs: { intercept: number; slope: number };
  };
  throughput: { callers: number; batched: { tickRps: number }; unbatched: { tickRps: number } }[];
  earlyExit: { callers: number; rows: { ticks: number; payoff: number; predictedPayoff: number }[] };
}

export async function writeScalePlots(r: ScalePlotData, file: string): Promise<string> {
  const { fit, graphsPredictMs } = r.lone;
  const ticks = r.lone.points.map((p) => p.ticks);
  const [lo, hi] = [Math.min(...ticks), Math.max(...ticks)];
  const line = (a: number, b: number) => [lo, hi].map((x) => ({ x, y: a + b * x }));
  const batches = r.graphs.tick.map((t) => t.rows);
  const logBatches = Math.max(...batches) / Math.min(...batches) >= 8;
  const callers = r.throughput.map((t) => t.callers);
  const logCallers = Math.max(...callers) / Math.min(...callers) >= 8;
  const panels: Array<(frame: Frame) => string> = [
    (frame) =>
      lineChartSvg(
        {
          title: "Lone request: latency vs ticks run",
          x: { label: "ticks", zero: true },
          y: { label: "ms", zero: true },
          series: [
            { label: "measured (median)", points: r.lone.points.map((p) => ({ x: p.ticks, y: p.medianMs })) },
            { label: `fit (R^2 ${fit.r2.toFixed(3)})`, dashed: true, points: line(fit.intercept, fit.slope) },
            {
              label: "graphs alone",
              dashed: true,
              colour: "#555",
              points: line(graphsPredictMs.intercept, graphsPredictMs.slope),
            },
          ],
        },
        frame,
      ),
    (frame) =>
      lineChartSvg(
        {
          title: "Graph run per row vs batch size",
          x: { label: "rows in the run", log: logBatches },
          y: { label: "ms per row", log: true },
          series: [
            { label: "tick", points: r.graphs.tick.map((t) => ({ x: t.rows, y: t.perRowMs })) },
            { label: "encoder", points: r.graphs.encoder.map((e) => ({ x: e.rows, y: e.perRowMs })) },
          ],
        },
        frame,
      ),
    (frame) =>
      lineChartSvg(
        {
          title: `Throughput vs concurrency (${r.model.ticksPerRequest} ticks each)`,
          x: { label: "concurrent callers", log: logCallers },
          y: { label: "answers/s (request-ticks/s / ticks)", zero: true },
          series: [
            {
              label: `tick-level batching (--max-batch ${r.startUp.batched.maxBatch})`,
              points: r.throughput.map((t) => ({ x: t.callers, y: t.batched.tickRps })),
            },
            { label: "--max-batch 1", points: r.throughput.map((t) => ({ x: t.callers, y: t.unbatched.tickRps })) },
          ],
        },
        frame,
      ),
    (frame) =>
      lineChartSvg(
        {
          title: `Early exit: ${r.earlyExit.callers} callers, throughput vs ticks run`,
          x: { label: "ticks per request", zero: true },
          y: { label: "x the full run's answers/s", zero: true },
          series: [
            { label: "measured", points: r.earlyExit.rows.map((e) => ({ x: e.ticks, y: e.payoff })) },
            {
              label: "graph costs predict",
              dashed: true,
              points: r.earlyExit.rows.map((e) => ({ x: e.ticks, y: e.predictedPayoff })),
            },
          ],
        },
        frame,
      ),
    (frame) =>
      lineChartSvg(
        {
          title: "Resident memory vs active rows (tick runs)",
          x: { label: "rows", zero: true },
          y: { label: "MiB", zero: true },
          series: [
            { label: "measured", points: r.graphs.tick.map((t) => ({ x: t.rows, y: t.residentMiB })) },
            {
              label: `fit: ${r.memory.perActiveRequestMiB.toFixed(2)} MiB per request`,
              dashed: true,
              points: [0, Math.max(...batches)].map((x) => ({
                x,
                y: r.memory.baseMiB + r.memory.perActiveRequestMiB * x,
              })),
            },
          ],
        },
        frame,
      ),
  ];
  const title = `npm run bench:scale -- --preset ${r.preset}: ${(r.model.parameters / 1e6).toFixed(1)}M parameters`;
  await writePng(gridSvg(title, { width: 620, height: 380 }, 3, panels), file);
  return file;
}
