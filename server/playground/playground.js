// The playground page: draws, sends one request to POST /api/classify, and draws the server-sent
// ticks as they come. No dependencies: the chart and the heatmap are plain 2-D canvas drawing.
// `window.playground` exposes the run's state, for the browser test and for the curious.

const $ = (id) => document.getElementById(id);
// One colour per class, none of them the colours the chart keeps for itself (below), so that p(5) is
// never read as the halt line.
const COLORS = [
  "#4fa3ff",
  "#ff9f43",
  "#2ed573",
  "#ff6b81",
  "#a29bfe",
  "#8395a7",
  "#1dd1a1",
  "#e056fd",
  "#ff7f50",
  "#7bed9f",
];
const CERTAINTY_COLOR = "#ffffff";
const THRESHOLD_COLOR = "#ff2d2d";
const HALT_COLOR = "#ffd32a";
// The halting head's signal, per tick (a model with a halting head): its own colour, not the halt tick's.
const HALT_SIGNAL_COLOR = "#00e5ff";
const state = {
  models: [],
  model: undefined,
  /** Has the drawing canvas (or a loaded image) got anything to send? */
  inked: false,
  /** The image to send when the user has not drawn since: bytes of a dropped, pasted or sample image. */
  image: undefined,
  run: undefined,
  colors: {
    classes: COLORS,
    certainty: CERTAINTY_COLOR,
    threshold: THRESHOLD_COLOR,
    halt: HALT_COLOR,
    haltSignal: HALT_SIGNAL_COLOR,
  },
};
window.playground = state;

// ---------------------------------------------------------------- drawing
const draw = $("draw");
const pen = draw.getContext("2d");
function clearDrawing() {
  pen.fillStyle = "#000";
  pen.fillRect(0, 0, draw.width, draw.height);
  state.inked = false;
  state.image = undefined;
}
clearDrawing();
let last;
function point(event) {
  const box = draw.getBoundingClientRect();
  return [
    ((event.clientX - box.left) * draw.width) / box.width,
    ((event.clientY - box.top) * draw.height) / box.height,
  ];
}
draw.addEventListener("pointerdown", (event) => {
  draw.setPointerCapture(event.pointerId);
  if (state.image) clearDrawing();
  last = point(event);
  stroke(last, last);
});
draw.addEventListener("pointermove", (event) => {
  if (!last) return;
  const next = point(event);
  stroke(last, next);
  last = next;
});
for (const type of ["pointerup", "pointercancel"]) draw.addEventListener(type, () => (last = undefined));
function stroke(from, to) {
  pen.strokeStyle = "#fff";
  pen.lineWidth = 22;
  pen.lineCap = "round";
  pen.lineJoin = "round";
  pen.beginPath();
  pen.moveTo(...from);
  pen.lineTo(...to);
  pen.stroke();
  state.inked = true;
}
$("clear").addEventListener("click", clearDrawing);

/** Shows an image on the drawing canvas and sends its own bytes (not the canvas) when thinking. */
async function useImage(blob) {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  const url = URL.createObjectURL(blob);
  const img = new Image();
  img.onload = () => {
    clearDrawing();
    const scale = Math.min(draw.width / img.width, draw.height / img.height);
    const [w, h] = [img.width * scale, img.height * scale];
    pen.imageSmoothingEnabled = false;
    pen.drawImage(img, (draw.width - w) / 2, (draw.height - h) / 2, w, h);
    URL.revokeObjectURL(url);
    state.image = bytes;
    state.inked = true;
  };
  img.onerror = () => {
    // Not something this browser can show; the server will say whether it can read it.
    clearDrawing();
    state.image = bytes;
    state.inked = true;
  };
  img.src = url;
}
$("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) useImage(file);
});
document.addEventListener("dragover", (event) => event.preventDefault());
document.addEventListener("drop", (event) => {
  event.preventDefault();
  const file = [...event.dataTransfer.files].find((f) => f.type.startsWith("image/")) ?? event.dataTransfer.files[0];
  if (file) useImage(file);
});
document.addEventListener("paste", (event) => {
  const item = [...event.clipboardData.items].find((i) => i.kind === "file");
  if (item) useImage(item.getAsFile());
});

// ---------------------------------------------------------------- the server
function headers(extra = {}) {
  const token = $("token").value.trim();
  return token ? { ...extra, authorization: `Bearer ${token}` } : extra;
}
$("token").value = sessionStorage.getItem("ctm-token") ?? "";
$("token").addEventListener("change", () => {
  sessionStorage.setItem("ctm-token", $("token").value.trim());
  loadModels();
});

function showError(error) {
  const box = $("error");
  box.hidden = !error;
  box.textContent = error ? `${error.code}: ${error.message}` : "";
  if (error?.code === "UNAUTHENTICATED") $("token-box").open = true;
  state.error = error;
}

async function failureOf(response) {
  try {
    return await response.json();
  } catch {
    return { code: `HTTP ${response.status}`, message: response.statusText };
  }
}

/** Whether the drawing canvas makes an input for this model: one grey channel, as a drawn digit is. */
function drawable(model) {
  return model.input?.image?.channels === 1;
}

/** The kind of input a model takes, in the words of someone choosing what to give it. */
function inputDescription(model) {
  const image = model.input?.image;
  if (!image) return `a tensor of shape [${(model.input?.shape ?? []).join(", ")}] (gRPC only: this page sends images)`;
  const size = `${image.width}x${image.height}`;
  if (image.preprocess === "mnist-digit") return `a digit (${size} grey): draw it, or drop a photo of one`;
  const what = model.task === "maze" ? "a maze" : "an image";
  return `${what} (${size}, ${image.channels === 1 ? "grey" : "colour"}): pick a sample or drop an image`;
}

/** 0.9907 -> "99.07%", 0.939 -> "93.9%": two decimals, as a test set of a thousand or so supports. */
function percent(fraction) {
  return `${(100 * fraction).toFixed(2).replace(/\.?0+$/, "")}%`;
}

/**
 * The model's accuracy on its data set's held-out test split, measured when it was exported (GetModel's
 * test_metrics), in one line; "" for a model exported without it. The answer is the most certain tick's,
 * as a request that no threshold stops gets; for a route, also the share of routes right from end to end.
 */
function testMetricsLine(model) {
  const metrics = model.test_metrics;
  if (!metrics) return "";
  const heldOut = `(${metrics.count.toLocaleString("en-US")} held-out)`;
  const certainty = metrics.signals.find((s) => s.signal === "HALT_SIGNAL_CERTAINTY");
  const accuracy = percent(metrics.accuracy_most_certain);
  if (certainty?.solved_full_run === undefined) return `test: ${accuracy} right ${heldOut}`;
  const [parts, wholes] = model.task === "maze" ? ["moves", "mazes"] : ["positions", "inputs"];
  return `test: ${accuracy} of ${parts} right, ${percent(certainty.solved_full_run)} of ${wholes} solved ${heldOut}`;
}

/**
 * The picker's value for a model: its name, or name/version where several versions of it are served
 * side by side (so that each can be picked, and the request names the one picked).
 */
function modelKey(m) {
  return state.models.filter((other) => other.name === m.name).length > 1 ? `${m.name}/${m.version}` : m.name;
}

async function loadModels() {
  showError(undefined);
  const response = await fetch("api/models", { headers: headers() });
  if (!response.ok) return showError(await failureOf(response));
  state.models = (await response.json()).models;
  const select = $("model");
  const previous = select.value;
  select.replaceChildren(
    ...state.models.map((m) => {
      const ready = m.state === "MODEL_STATE_READY";
      const option = new Option(`${m.name} v${m.version}${ready ? "" : " (not ready)"}`, modelKey(m));
      option.title = inputDescription(m);
      option.disabled = !ready;
      return option;
    }),
  );
  const ready = state.models.filter((m) => m.state === "MODEL_STATE_READY");
  // The page opens on a model the drawing canvas is for, so that "draw a digit" means what it says.
  const preferred = ready.find(drawable) ?? ready[0];
  select.value = ready.some((m) => modelKey(m) === previous) ? previous : preferred ? modelKey(preferred) : "";
  selectModel();
}

/** A sample's label as a reader wants it: a class name, or a route as its moves (right x4, up x2, ...). */
function sampleLabel(model, label) {
  if (!Array.isArray(label)) return model.labels[label] ?? String(label);
  const moves = label.map((index) => model.labels[index] ?? String(index));
  const runs = [];
  for (const move of moves) {
    const last = runs.at(-1);
    if (last?.move === move) last.count++;
    else runs.push({ move, count: 1 });
  }
  return runs.map(({ move, count }) => (count > 1 ? `${move} ×${count}` : move)).join(", ");
}

/** Forgets the run on screen: its answer, heatmap, chart and error belong to the model it ran on. */
function clearRun() {
  state.run?.controller.abort();
  state.run = undefined;
  state.inputPixels = undefined;
  showError(undefined);
  following = true;
  $("head").replaceChildren(new Option("mean of all heads", "-1"));
  $("think").disabled = false;
  $("stop").disabled = true;
  render();
}

/** Two models read the same input when their input specs agree (a digit means nothing to a maze solver). */
function sameInput(a, b) {
  return JSON.stringify(a?.input) === JSON.stringify(b?.input);
}

function selectModel() {
  const previous = state.model;
  state.model = state.models.find((m) => modelKey(m) === $("model").value);
  if (previous && (previous.name !== state.model?.name || previous.version !== state.model?.version)) {
    clearRun();
    if (!sameInput(previous, state.model)) clearDrawing();
  }
  $("input-kind").textContent = state.model ? `Takes ${inputDescription(state.model)}.` : "";
  $("test-metrics").textContent = state.model ? testMetricsLine(state.model) : "";
  $("test-metrics").title = state.model?.test_metrics
    ? `measured when the model was exported, on its data set's test split, answering with the most certain of ${state.model.trained_ticks} ticks`
    : "";
  draw.title =
    state.model && !drawable(state.model) ? `${state.model.name} takes ${inputDescription(state.model)}` : "";
  const box = $("samples");
  box.replaceChildren();
  if (!state.model) return;
  for (const sample of state.model.samples.slice(0, 30)) {
    const img = new Image();
    img.alt = `sample ${sample.file}: ${sampleLabel(state.model, sample.label)}`;
    img.title = img.alt;
    const url = `api/models/${encodeURIComponent(state.model.name)}/samples/${encodeURIComponent(sample.file)}`;
    img.addEventListener("click", async () => {
      const response = await fetch(url, { headers: headers() });
      if (!response.ok) return showError(await failureOf(response));
      await useImage(await response.blob());
    });
    // Thumbnails need the token too when there is one, so fetch them rather than pointing src at the API.
    fetch(url, { headers: headers() }).then(async (r) => {
      if (r.ok) img.src = URL.createObjectURL(await r.blob());
    });
    box.append(img);
  }
  $("max-ticks").placeholder = String(state.model.max_ticks);
  selectSignals();
}
$("model").addEventListener("change", selectModel);

/** Whether the model has a halting head, and so a second signal to halt on and draw. */
function hasHaltSignal(model) {
  return Boolean(model?.halt_signals?.includes("HALT_SIGNAL_HALT"));
}

/** The signals the model has; the one its targets are certified on comes selected. */
function selectSignals() {
  const halting = hasHaltSignal(state.model);
  const select = $("signal");
  select.querySelector('option[value="halt"]').disabled = !halting;
  select.title = halting
    ? "what the threshold, or the target's guarantee, is on"
    : `${state.model?.name ?? "this model"} has no halting head: it halts on certainty only`;
  select.value = state.model?.target_signal === "HALT_SIGNAL_HALT" ? "halt" : "certainty";
  showSignal();
}
function showSignal() {
  $("signal-name").textContent = $("signal").value === "halt" ? "halt signal" : "certainty";
}
$("signal").addEventListener("change", showSignal);

async function canvasBytes() {
  if (state.image) return state.image;
  const blob = await new Promise((resolve) => draw.toBlob(resolve, "image/png"));
  return new Uint8Array(await blob.arrayBuffer());
}

function base64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

function requestBody(imageBytes) {
  const byThreshold = document.querySelector('input[name="halt"]:checked').value === "threshold";
  const policy = {
    min_ticks: Number($("min-ticks").value) || 0,
    max_ticks: Number($("max-ticks").value) || 0,
  };
  const signal = $("signal").value;
  // The threshold goes in its signal's field; a target is certified on the signal chosen.
  if (byThreshold) policy[signal === "halt" ? "halt_threshold" : "certainty_threshold"] = Number($("threshold").value);
  else {
    policy.target_accuracy = Number($("accuracy").value);
    // A floor lets an overloaded server lower the target (never below it) instead of queueing.
    if ($("floor").value !== "") policy.min_target_accuracy = Number($("floor").value);
  }
  policy.halt_signal = signal === "halt" ? "HALT_SIGNAL_HALT" : "HALT_SIGNAL_CERTAINTY";
  const attention = Boolean(state.model?.attention_shape?.length);
  return {
    model: state.model?.name ?? "",
    version: state.model?.version ?? 0,
    image: { data: base64(imageBytes) },
    halt_policy: policy,
    include_attention: attention,
  };
}

/** Starts a run; resolves when it has finished (answer, error or stop). */
async function think() {
  state.run?.controller.abort();
  showError(undefined);
  const controller = new AbortController();
  const run = { controller, ticks: [], input: undefined, final: undefined, startedAt: performance.now(), latencyMs: 0 };
  state.run = run;
  const body = requestBody(await canvasBytes());
  run.threshold = body.halt_policy.certainty_threshold ?? body.halt_policy.halt_threshold;
  run.signal = body.halt_policy.halt_signal;
  $("think").disabled = true;
  $("stop").disabled = false;
  render();
  try {
    const response = await fetch("api/classify", {
      method: "POST",
      headers: headers({ "content-type": "application/json" }),
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) return showError(await failureOf(response));
    await readEvents(response.body, (event, data) => {
      if (event === "input") run.input = data;
      else if (event === "tick") {
        run.ticks.push(data);
        run.latencyMs = performance.now() - run.startedAt;
        if (data.final) run.final = data.result;
      } else if (event === "error") showError(data);
      if (state.run === run) render();
    });
  } catch (error) {
    if (error.name !== "AbortError") showError({ code: "NETWORK", message: String(error.message ?? error) });
  } finally {
    run.done = true;
    if (state.run === run) {
      $("think").disabled = false;
      $("stop").disabled = true;
      render();
    }
  }
}
$("think").addEventListener("click", () => think());
$("stop").addEventListener("click", () => state.run?.controller.abort());

/** Server-sent events from a fetch body (EventSource cannot POST or send a token). */
async function readEvents(stream, onEvent) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffered += value;
    let end = buffered.indexOf("\n\n");
    while (end >= 0) {
      const block = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      let event = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      onEvent(event, JSON.parse(data));
      end = buffered.indexOf("\n\n");
    }
  }
}

// ---------------------------------------------------------------- drawing the run
const slider = $("tick-slider");
let following = true;
slider.addEventListener("input", () => {
  following = Number(slider.value) === Number(slider.max);
  drawHeatmap();
  drawChart();
});
$("head").addEventListener("change", () => drawHeatmap());

function render() {
  const run = state.run;
  const count = run?.ticks.length ?? 0;
  slider.disabled = count === 0;
  slider.max = String(Math.max(1, count));
  if (following) slider.value = slider.max;
  const shape = run?.ticks[0]?.attention_shape;
  const head = $("head");
  if (shape && head.options.length !== shape[0] + 1) {
    head.replaceChildren(
      new Option("mean of all heads", "-1"),
      ...Array.from({ length: shape[0] }, (_, h) => new Option(`head ${h + 1}`, String(h))),
    );
  }
  drawHeatmap();
  drawChart();
  drawSummary();
}

function drawSummary() {
  const run = state.run;
  const rows = [];
  const last = run?.ticks.at(-1);
  const result = run?.final;
  if (last) {
    const best = last.top_k[0] ?? last.positions[0];
    const answer = result
      ? (result.top_k[0]?.label ??
        result.positions.map((p) => p.label).join(result.positions.every((p) => p.label.length === 1) ? "" : " "))
      : best?.label;
    rows.push(["answer", answer ?? "–", last.positions.length ? "answer route" : "answer"]);
    rows.push(["certainty", (result?.certainty ?? last.certainty).toFixed(3)]);
    const halt = result ? result.halt : last.halt;
    if (halt !== undefined) rows.push(["halt signal", halt.toFixed(3)]);
    rows.push(["ticks used", String(result?.ticks_used ?? last.tick)]);
    if (result) {
      rows.push(["answer tick", String(result.answer_tick)]);
      rows.push(["halt reason", result.halt_reason.replace("HALT_REASON_", "").toLowerCase().replace("_", " ")]);
      const signal = result.halt_signal === "HALT_SIGNAL_HALT" ? "halt signal" : "certainty";
      rows.push(["threshold used", `${result.threshold_used.toFixed(3)} on ${signal}`]);
      if (result.guarantee) rows.push(guaranteeRow(result.guarantee));
    }
    rows.push([result ? "latency" : "elapsed", `${run.latencyMs.toFixed(0)} ms`]);
  }
  $("summary").replaceChildren(
    ...rows.flatMap(([name, value, cls]) => {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      if (cls) dd.className = cls;
      return [dt, dd];
    }),
  );
}

/**
 * Whether the target the run asked for was certified, as the server says (the CLI prints the same),
 * and, when load lowered it, from what: the guarantee shown is the one that holds for this answer.
 */
function guaranteeRow(g) {
  const signal = g.signal === "HALT_SIGNAL_HALT" ? "the halt signal" : "certainty";
  const promise = `${g.kind} ≥ ${g.target} with confidence ${g.confidence}, on ${signal}`;
  const lowered = g.lowered_by_load
    ? `; lowered by load from ${g.requested_target} (threshold ${g.requested_threshold}), floor ${g.min_target}`
    : "";
  return g.met
    ? [
        "guarantee",
        `met: ${promise} (${g.calibration_count} calibration items)${lowered}`,
        g.lowered_by_load ? "lowered" : "met",
      ]
    : ["guarantee", `NOT met: ${promise}: ${g.note}${lowered}`, "not-met"];
}

const heatmap = $("heatmap");
function drawHeatmap() {
  const g = heatmap.getContext("2d");
  g.fillStyle = "#000";
  g.fillRect(0, 0, heatmap.width, heatmap.height);
  const run = state.run;
  const image = state.model?.input.image;
  const input = run?.input;
  // The preprocessed input as the model saw it: grey, or in colour for 3 channels; a sequence as a strip.
  let [rows, cols] = [1, 1];
  if (input) {
    const shape = input.shape;
    [rows, cols] = shape.length === 3 ? [shape[1], shape[2]] : [1, shape.at(-1)];
    const pixels = g.createImageData(cols, rows);
    const plane = rows * cols;
    const level = (channel, i) => {
      const value = input.values[channel * plane + i];
      const v = image ? value * image.std[channel] + image.mean[channel] : value > 0 ? 1 : 0.15;
      return Math.max(0, Math.min(255, Math.round(v * 255)));
    };
    for (let i = 0; i < plane; i++) {
      const rgb =
        image?.channels === 3 ? [level(0, i), level(1, i), level(2, i)] : [level(0, i), level(0, i), level(0, i)];
      pixels.data.set([...rgb, 255], i * 4);
    }
    state.inputPixels = { rows, cols, data: pixels.data };
    const scratch = new OffscreenCanvas(cols, rows);
    scratch.getContext("2d").putImageData(pixels, 0, 0);
    g.imageSmoothingEnabled = false;
    g.drawImage(scratch, 0, 0, heatmap.width, (heatmap.height * rows) / Math.max(rows, cols));
  }
  const tick = run?.ticks[Number(slider.value) - 1];
  $("tick-label").textContent = tick ? `${tick.tick}${tick.final ? " (halted)" : ""}` : "–";
  $("positions").textContent = tick?.positions.length ? tick.positions.map((p) => p.label).join(" ") : "";
  if (tick?.attention_shape.length) drawAttention(g, tick, rows, cols);
  // Over the attention, so that the route keeps its colour.
  if (tick && input) drawRoute(g, tick, rows, cols);
}

function drawAttention(g, tick, rows, cols) {
  const [heads, ...grid] = tick.attention_shape;
  const [gh, gw] = grid.length === 2 ? grid : [1, grid[0]];
  const cells = gh * gw;
  const head = Number($("head").value);
  const weights = new Float32Array(cells);
  for (let h = 0; h < heads; h++) {
    if (head >= 0 && h !== head) continue;
    for (let c = 0; c < cells; c++) weights[c] += tick.attention[h * cells + c] / (head >= 0 ? 1 : heads);
  }
  const peak = Math.max(...weights) || 1;
  const height = (heatmap.height * rows) / Math.max(rows, cols);
  const [cw, ch] = [heatmap.width / gw, height / gh];
  for (let r = 0; r < gh; r++) {
    for (let c = 0; c < gw; c++) {
      const w = weights[r * gw + c] / peak;
      // Hot colours, and opaque only where the model looks, so the digit shows through elsewhere.
      g.fillStyle = `rgba(255, ${Math.round(60 + 180 * w)}, 0, ${(0.75 * w).toFixed(3)})`;
      g.fillRect(c * cw, r * ch, cw, ch);
    }
  }
}

const MOVES = { up: [0, -1], down: [0, 1], left: [-1, 0], right: [1, 0], wait: [0, 0] };

/**
 * A maze model's answer ([route length, 5] over up/down/left/right/wait, as the reference CTM's maze
 * task encodes a route) drawn over the maze as it stands at this tick: from the reddest pixel (the
 * start, red in the reference's maze images), one pixel per move, until the first wait.
 */
function drawRoute(g, tick, rows, cols) {
  const labels = state.model?.labels ?? [];
  if (!tick.positions.length || labels.length !== 5 || !labels.every((l) => l in MOVES)) return;
  const { data } = state.inputPixels;
  let [start, best] = [0, Number.NEGATIVE_INFINITY];
  for (let i = 0; i < rows * cols; i++) {
    const redness = data[i * 4] - (data[i * 4 + 1] + data[i * 4 + 2]) / 2;
    if (redness > best) [start, best] = [i, redness];
  }
  const [cw, ch] = [heatmap.width / cols, (heatmap.height * rows) / Math.max(rows, cols) / rows];
  let [x, y] = [start % cols, Math.floor(start / cols)];
  g.strokeStyle = "#00e5ff";
  g.lineWidth = Math.max(2, cw / 2);
  g.lineCap = "round";
  g.beginPath();
  g.moveTo((x + 0.5) * cw, (y + 0.5) * ch);
  for (const p of tick.positions) {
    if (p.label === "wait") break;
    const [dx, dy] = MOVES[p.label];
    [x, y] = [x + dx, y + dy];
    g.lineTo((x + 0.5) * cw, (y + 0.5) * ch);
  }
  g.stroke();
  // The start, so that a route that begins with a wait still shows where it would go from.
  g.lineWidth = 2;
  g.beginPath();
  g.arc(((start % cols) + 0.5) * cw, (Math.floor(start / cols) + 0.5) * ch, Math.max(4, cw), 0, 2 * Math.PI);
  g.stroke();
}

const chart = $("chart");
function softmax(logits) {
  const top = Math.max(...logits);
  const e = logits.map((x) => Math.exp(x - top));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
}

function drawChart() {
  const g = chart.getContext("2d");
  const [W, H] = [chart.width, chart.height];
  const pad = { left: 40, right: 12, top: 12, bottom: 28 };
  g.fillStyle = "#000";
  g.fillRect(0, 0, W, H);
  const run = state.run;
  const maxTicks = Math.max(
    run?.final?.applied_policy?.max_ticks || 0,
    Number($("max-ticks").value) || state.model?.trained_ticks || 0,
    run?.ticks.length ?? 0,
    1,
  );
  const x = (t) => pad.left + ((t - 1) / Math.max(1, maxTicks - 1)) * (W - pad.left - pad.right);
  const y = (p) => H - pad.bottom - p * (H - pad.top - pad.bottom);
  // Axes and grid.
  g.strokeStyle = "#333";
  g.fillStyle = "#9aa0ab";
  g.font = "11px system-ui";
  g.lineWidth = 1;
  for (let p = 0; p <= 1.001; p += 0.25) {
    g.beginPath();
    g.moveTo(pad.left, y(p));
    g.lineTo(W - pad.right, y(p));
    g.stroke();
    g.fillText(p.toFixed(2), 4, y(p) + 4);
  }
  for (let t = 1; t <= maxTicks; t++) g.fillText(String(t), x(t) - 3, H - 10);
  const ticks = run?.ticks ?? [];
  const legend = [];
  // The threshold the run halts at: the request's, or, once known, the one the server used.
  const threshold = run?.final?.threshold_used ?? run?.threshold;
  if (threshold !== undefined) {
    g.strokeStyle = THRESHOLD_COLOR;
    g.lineWidth = 2;
    g.setLineDash([6, 4]);
    g.beginPath();
    g.moveTo(pad.left, y(threshold));
    g.lineTo(W - pad.right, y(threshold));
    g.stroke();
    g.setLineDash([]);
    const signal = run?.final?.halt_signal ?? run?.signal;
    legend.push([`threshold (${signal === "HALT_SIGNAL_HALT" ? "halt signal" : "certainty"})`, THRESHOLD_COLOR]);
  }
  if (ticks.length === 0) return setLegend(legend);
  const single = ticks[0].positions.length === 0;
  if (single) {
    const probabilities = ticks.map((t) => softmax(t.logits));
    const classes = state.model?.labels ?? [];
    // The classes that were ever among the top three: the rest stay near zero and only add noise.
    const shown = new Set();
    for (const t of ticks) for (const c of t.top_k.slice(0, 3)) shown.add(c.index);
    for (const c of [...shown].sort((a, b) => a - b)) {
      const color = COLORS[c % COLORS.length];
      line(
        g,
        ticks.map((t, i) => [x(t.tick), y(probabilities[i][c])]),
        color,
        1.5,
      );
      legend.push([`p(${classes[c] ?? c})`, color]);
    }
  }
  // The tick the heatmap shows, when the slider replays an earlier one.
  const replayed = Number(slider.value);
  if (replayed < ticks.length) {
    g.strokeStyle = "#777";
    g.lineWidth = 1;
    g.beginPath();
    g.moveTo(x(replayed), pad.top);
    g.lineTo(x(replayed), H - pad.bottom);
    g.stroke();
  }
  line(
    g,
    ticks.map((t) => [x(t.tick), y(t.certainty)]),
    CERTAINTY_COLOR,
    3,
  );
  legend.unshift(["certainty", CERTAINTY_COLOR]);
  // A model with a halting head: its estimate, per tick, that the tick's answer is right.
  const halting = ticks.filter((t) => t.halt !== undefined);
  if (halting.length > 0) {
    line(
      g,
      halting.map((t) => [x(t.tick), y(t.halt)]),
      HALT_SIGNAL_COLOR,
      3,
    );
    legend.splice(1, 0, ["halt signal", HALT_SIGNAL_COLOR]);
  }
  const result = run.final;
  if (result) {
    g.strokeStyle = HALT_COLOR;
    g.lineWidth = 2;
    g.beginPath();
    g.moveTo(x(result.ticks_used), pad.top);
    g.lineTo(x(result.ticks_used), H - pad.bottom);
    g.stroke();
    g.fillStyle = HALT_COLOR;
    g.fillText(`halt (tick ${result.ticks_used})`, Math.min(x(result.ticks_used) + 4, W - 90), pad.top + 10);
    g.beginPath();
    // The answer's dot sits on the line of the signal it was chosen by.
    const onHalt = result.halt_signal === "HALT_SIGNAL_HALT" && result.halt !== undefined;
    g.arc(x(result.answer_tick), y(onHalt ? result.halt : result.certainty), 5, 0, 2 * Math.PI);
    g.fill();
    legend.push(["halt tick", HALT_COLOR]);
  }
  setLegend(legend);
}

function line(g, points, color, width) {
  g.strokeStyle = color;
  g.lineWidth = width;
  g.beginPath();
  points.forEach(([px, py], i) => {
    if (i === 0) g.moveTo(px, py);
    else g.lineTo(px, py);
  });
  g.stroke();
  g.fillStyle = color;
  for (const [px, py] of points) g.fillRect(px - 2, py - 2, 4, 4);
}

function setLegend(items) {
  $("legend").replaceChildren(
    ...items.map(([text, color]) => {
      const span = document.createElement("span");
      span.textContent = text;
      span.style.setProperty("--swatch", color);
      return span;
    }),
  );
}

loadModels().catch((error) => showError({ code: "NETWORK", message: String(error.message ?? error) }));
render();
