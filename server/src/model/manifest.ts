/**
 * manifest.json: how a model folder describes itself (docs/models.md, schema_version 1).
 *
 * The server derives everything it needs from here - tensor names and shapes, labels, preprocessing,
 * tick limits - and hard-codes nothing about any one model. Parsing checks every cross-reference
 * (state init/input/output names, context names, output sizes) so that a wrong manifest fails at load
 * with the field named, not at the first request with an onnxruntime error. What the JSON Schema the
 * exporter writes to (training/ctm/manifest.schema.json) refuses, this refuses too (manifestSchema.test.ts).
 */
import { JsonReader } from "./jsonReader.ts";
import { parseTestMetrics, type TestMetrics } from "./testMetrics.ts";

export type Dim = number | "batch";

export interface GraphTensor {
  name: string;
  shape: Dim[];
}

export interface GraphSpec {
  file: string;
  inputs: GraphTensor[];
  outputs: GraphTensor[];
}

export interface ImageInput {
  layout: "NCHW";
  channels: number;
  height: number;
  width: number;
  /**
   * "mnist-digit": ink found, fitted and centred as MNIST was made; "resize": stretched to height x
   * width; "center-crop": the shorter side resized to `resizeShorter`, then the centre height x width.
   */
  preprocess: "mnist-digit" | "resize" | "center-crop";
  /** "center-crop" only: the shorter side's length before cropping, >= height and >= width. */
  resizeShorter?: number;
  normalize: { mean: number[]; std: number[] };
}

export interface InputSpec {
  kind: "image" | "tensor";
  /** One item, without the batch dimension. */
  shape: number[];
  dtype: "float32";
  image?: ImageInput;
  /** When set, the only values a raw tensor input may contain. */
  allowedValues?: number[];
}

/** An encoder output passed unchanged into every tick run under the same name. */
export interface ContextTensor {
  name: string;
  shape: number[];
}

/** A recurrent tensor: `init` comes from the encoder, the tick graph maps `input` to `output`. */
export interface StateTensor {
  name: string;
  init: string;
  input: string;
  output: string;
  shape: number[];
}

export interface Manifest {
  name: string;
  version: number;
  task: string;
  description: string;
  input: InputSpec;
  output: { shape: number[]; labels: string[] };
  ticks: { trained: number; max: number };
  graphs: { encoder: GraphSpec; tick: GraphSpec };
  context: ContextTensor[];
  state: StateTensor[];
  /**
   * Tick-graph output names. `halt`, [batch] in [0, 1], only for a model with a halting head: the head's
   * estimate that this tick's answer is right, a second signal a request can halt on beside certainty.
   */
  outputs: { logits: string; certainty: string; probabilities: string; halt?: string };
  /**
   * The tick graph's optional attention output, [batch, heads, tokens]: the weights of the tick's query
   * over the input tokens. `shape` is [heads, *token grid], the grid as the manifest's `token_grid`
   * gives it (e.g. [7, 7] for a 7x7 feature map of a 28x28 image).
   */
  attention?: { output: string; shape: number[] };
  calibration?: string;
  samples?: string;
  golden?: string;
  /** `metrics.test`: the held-out test split's accuracy at export; absent in manifests without it. */
  testMetrics?: TestMetrics;
}

export const MANIFEST_FILE = "manifest.json";
const PREPROCESS = ["mnist-digit", "resize", "center-crop"] as const;
/** The schema's `name`: it is also the model's folder and the name a request gives. */
const MODEL_NAME = /^[a-z0-9][a-z0-9._-]*$/;
/** The schema's graph `file`: one ONNX file inside the model folder, so that no manifest reaches outside it. */
const GRAPH_FILE = /^[^/\\]+\.onnx$/;

/**
 * Whether an optional field is there. Unlike JsonReader.has, a null counts as there (and then fails its
 * type), as the schema has it: the exporter writes no nulls, and a null file name must not read as none.
 */
const present = (reader: JsonReader, name: string) => reader.object()[name] !== undefined;

export function parseManifest(document: unknown, file = MANIFEST_FILE): Manifest {
  const root = new JsonReader(file, document);
  const schema = root.field("schema_version").integer();
  if (schema !== 1) root.field("schema_version").fail(`must be 1 (the only version this server reads), got ${schema}`);
  const input = parseInput(root.field("input"));
  const output = parseOutput(root.field("output"));
  const ticksReader = root.field("ticks");
  const ticks = {
    trained: ticksReader.field("trained").positiveInteger(),
    max: ticksReader.field("max").positiveInteger(),
  };
  const graphsReader = root.field("graphs");
  const graphs = { encoder: parseGraph(graphsReader.field("encoder")), tick: parseGraph(graphsReader.field("tick")) };
  const context = root
    .field("context")
    .array()
    .map((c) => {
      c.field("dtype").string({ oneOf: ["float32"] });
      return { name: c.field("name").string(), shape: parseFixedShape(c.field("shape")) };
    });
  const state = root
    .field("state")
    .array({ minLength: 1 })
    .map((s) => {
      s.field("dtype").string({ oneOf: ["float32"] });
      return {
        name: s.field("name").string(),
        init: s.field("init").string(),
        input: s.field("input").string(),
        output: s.field("output").string(),
        shape: parseFixedShape(s.field("shape")),
      };
    });
  const outputsReader = root.field("outputs");
  const outputs: Manifest["outputs"] = {
    logits: outputsReader.field("logits").string(),
    certainty: outputsReader.field("certainty").string(),
    probabilities: outputsReader.field("probabilities").string(),
  };
  if (present(outputsReader, "halt")) outputs.halt = outputsReader.field("halt").string();

  const name = root.field("name").string();
  if (!MODEL_NAME.test(name)) {
    root
      .field("name")
      .fail(`must be lowercase letters, digits, ".", "_" and "-", starting with a letter or digit, got "${name}"`);
  }
  const manifest: Manifest = {
    name,
    version: root.field("version").positiveInteger(),
    task: root.field("task").string(),
    description: present(root, "description") ? root.field("description").string() : "",
    input,
    output,
    ticks,
    graphs,
    context,
    state,
    outputs,
    calibration: present(root, "calibration") ? root.field("calibration").string() : undefined,
    samples: present(root, "samples") ? root.field("samples").string() : undefined,
    golden: present(root, "golden") ? root.field("golden").string() : undefined,
  };
  // Read only to hold the manifest to its schema: onnxruntime takes the opset from the graphs themselves.
  root.field("opset").integer({ min: 13 });
  // Free-form records of how the model was made; the server reads only metrics.test, but each must be an object.
  for (const record of ["architecture", "source", "metrics"]) {
    if (present(root, record)) root.field(record).object();
  }
  if (present(root, "attention")) manifest.attention = parseAttention(root.field("attention"), graphs.tick);
  const testMetrics = parseTestMetrics(root);
  if (testMetrics) manifest.testMetrics = testMetrics;
  checkGraphWiring(root, manifest);
  return manifest;
}

function parseAttention(reader: JsonReader, tick: GraphSpec): NonNullable<Manifest["attention"]> {
  // The one object the schema closes: a misspelt key would otherwise drop the attention view unnoticed.
  const unknown = Object.keys(reader.object()).find((key) => key !== "output" && key !== "token_grid");
  if (unknown !== undefined) reader.fail(`has "${unknown}"; only output and token_grid are allowed`);
  const output = reader.field("output").string();
  const grid = parseFixedShape(reader.field("token_grid"));
  const graphTensor = tick.outputs.find((t) => t.name === output);
  if (!graphTensor) throw reader.field("output").error(`"${output}" is not among graphs.tick.outputs`);
  const [, heads, tokens] = graphTensor.shape;
  if (graphTensor.shape.length !== 3 || typeof heads !== "number" || tokens !== product(grid)) {
    reader
      .field("token_grid")
      .fail(
        `[${grid}] does not fit graphs.tick.outputs "${output}" ${JSON.stringify(graphTensor.shape)}: expected ["batch", heads, ${product(grid)}]`,
      );
  }
  return { output, shape: [heads as number, ...grid] };
}

function parseInput(reader: JsonReader): InputSpec {
  const kind = reader.field("kind").string({ oneOf: ["image", "tensor"] }) as InputSpec["kind"];
  const shape = parseFixedShape(reader.field("shape"));
  reader.field("dtype").string({ oneOf: ["float32"] });
  const spec: InputSpec = { kind, shape, dtype: "float32" };
  if (kind === "image") {
    const image = reader.field("image");
    const layout = image.field("layout").string({ oneOf: ["NCHW"] }) as "NCHW";
    const channels = image.field("channels").positiveInteger();
    if (channels !== 1 && channels !== 3) image.field("channels").fail(`must be 1 or 3, got ${channels}`);
    const height = image.field("height").positiveInteger();
    const width = image.field("width").positiveInteger();
    if (shape.join() !== [channels, height, width].join()) {
      reader
        .field("shape")
        .fail(
          `must be [channels, height, width] = [${channels}, ${height}, ${width}] for an NCHW image, got [${shape}]`,
        );
    }
    const normalize = image.field("normalize");
    const mean = normalize
      .field("mean")
      .array()
      .map((m) => m.number());
    const std = normalize
      .field("std")
      .array()
      .map((s) => s.number());
    if (mean.length !== channels)
      normalize.field("mean").fail(`must have ${channels} value(s) (one per channel), got ${mean.length}`);
    if (std.length !== channels)
      normalize.field("std").fail(`must have ${channels} value(s) (one per channel), got ${std.length}`);
    std.forEach((s, i) => {
      if (s <= 0) normalize.field("std").fail(`must be positive, got ${s} at index ${i}`);
    });
    const preprocess = image.field("preprocess").string({ oneOf: PREPROCESS }) as ImageInput["preprocess"];
    spec.image = { layout, channels, height, width, preprocess, normalize: { mean, std } };
    if (preprocess === "center-crop") {
      if (!present(image, "resize_shorter"))
        image.field("resize_shorter").fail('is required when preprocess is "center-crop"');
      const shorter = image.field("resize_shorter").positiveInteger();
      // A crop larger than the resized image would need padding, which no mode here does.
      if (shorter < Math.max(height, width))
        image
          .field("resize_shorter")
          .fail(`must be at least max(height, width) = ${Math.max(height, width)} to crop from, got ${shorter}`);
      spec.image.resizeShorter = shorter;
    } else if (present(image, "resize_shorter")) {
      image.field("resize_shorter").fail(`applies only when preprocess is "center-crop", not "${preprocess}"`);
    }
  }
  if (present(reader, "tensor") && present(reader.field("tensor"), "values")) {
    spec.allowedValues = reader
      .field("tensor")
      .field("values")
      .array({ minLength: 1 })
      .map((v) => v.number());
  }
  return spec;
}

function parseOutput(reader: JsonReader): Manifest["output"] {
  const shape = parseFixedShape(reader.field("shape"));
  if (shape.length < 1 || shape.length > 2)
    reader.field("shape").fail(`must be [classes] or [positions, classes], got [${shape}]`);
  const classes = shape[shape.length - 1] as number;
  if (classes < 2) reader.field("shape").fail(`must have at least 2 classes, got [${shape}]`);
  const labels = reader
    .field("labels")
    .array()
    .map((l) => l.string());
  if (labels.length !== classes)
    reader.field("labels").fail(`must name every class: expected ${classes} labels, got ${labels.length}`);
  return { shape, labels };
}

function parseGraph(reader: JsonReader): GraphSpec {
  const tensors = (field: string) =>
    reader
      .field(field)
      .array({ minLength: 1 })
      .map((t) => {
        t.field("dtype").string({ oneOf: ["float32"] });
        return { name: t.field("name").string(), shape: parseGraphShape(t.field("shape")) };
      });
  const file = reader.field("file").string();
  if (!GRAPH_FILE.test(file))
    reader.field("file").fail(`must name an .onnx file inside the model folder, got "${file}"`);
  return { file, inputs: tensors("inputs"), outputs: tensors("outputs") };
}

function parseFixedShape(reader: JsonReader): number[] {
  return reader.array().map((d) => d.positiveInteger());
}

function parseGraphShape(reader: JsonReader): Dim[] {
  return reader.array({ minLength: 1 }).map((d, i) => {
    if (i === 0) {
      if (d.string({ oneOf: ["batch"] }) !== "batch") d.fail('must be "batch". This is a bug.');
      return "batch";
    }
    return d.positiveInteger();
  });
}

const product = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);

/** Every name the server will feed or fetch exists in the graph it belongs to, with matching sizes. */
function checkGraphWiring(root: JsonReader, m: Manifest): void {
  const { encoder, tick } = m.graphs;
  const find = (tensors: GraphTensor[], name: string) => tensors.find((t) => t.name === name);
  const sameShape = (graph: GraphTensor, shape: number[]) => graph.shape.slice(1).join() === shape.join();

  if (encoder.inputs.length !== 1) {
    root
      .field("graphs")
      .field("encoder")
      .field("inputs")
      .fail(`must list exactly one input, got ${encoder.inputs.length}`);
  }
  const encoderInput = encoder.inputs[0] as GraphTensor;
  if (!sameShape(encoderInput, m.input.shape)) {
    root
      .field("graphs")
      .field("encoder")
      .field("inputs")
      .fail(
        `[0].shape must be ["batch", ${m.input.shape}] to match input.shape, got ${JSON.stringify(encoderInput.shape)}`,
      );
  }

  const fed = new Set<string>();
  m.context.forEach((c, i) => {
    const at = root.field("context").array()[i] as JsonReader;
    for (const [tensors, where] of [
      [encoder.outputs, "graphs.encoder.outputs"],
      [tick.inputs, "graphs.tick.inputs"],
    ] as const) {
      const graphTensor = find(tensors, c.name);
      if (!graphTensor) throw at.field("name").error(`"${c.name}" is not among ${where}`);
      if (!sameShape(graphTensor, c.shape)) {
        at.field("shape").fail(`[${c.shape}] does not match ${where} "${c.name}" ${JSON.stringify(graphTensor.shape)}`);
      }
    }
    fed.add(c.name);
  });
  m.state.forEach((s, i) => {
    const at = root.field("state").array()[i] as JsonReader;
    const wiring = [
      ["init", s.init, encoder.outputs, "graphs.encoder.outputs"],
      ["input", s.input, tick.inputs, "graphs.tick.inputs"],
      ["output", s.output, tick.outputs, "graphs.tick.outputs"],
    ] as const;
    for (const [field, name, tensors, where] of wiring) {
      const graphTensor = find(tensors, name);
      if (!graphTensor) throw at.field(field).error(`"${name}" is not among ${where}`);
      if (!sameShape(graphTensor, s.shape))
        at.field("shape").fail(`[${s.shape}] does not match ${where} "${name}" ${JSON.stringify(graphTensor.shape)}`);
    }
    fed.add(s.input);
  });
  for (const t of tick.inputs) {
    if (!fed.has(t.name)) {
      root
        .field("graphs")
        .field("tick")
        .field("inputs")
        .fail(`has "${t.name}", which is neither a context tensor nor a state input, so nothing could feed it`);
    }
  }

  const classes = product(m.output.shape);
  const outputs = root.field("outputs");
  for (const [field, name, width] of [
    ["logits", m.outputs.logits, classes],
    ["probabilities", m.outputs.probabilities, classes],
    ["certainty", m.outputs.certainty, 1],
  ] as const) {
    const graphTensor = find(tick.outputs, name);
    if (!graphTensor) throw outputs.field(field).error(`"${name}" is not among graphs.tick.outputs`);
    const size = product(graphTensor.shape.slice(1) as number[]);
    if (size !== width)
      outputs
        .field(field)
        .fail(`"${name}" has ${size} value(s) per item, expected ${width} for output.shape [${m.output.shape}]`);
  }
  if (m.outputs.halt !== undefined) {
    // One value per item whatever the output shape: the head judges the whole answer, every position.
    const name = m.outputs.halt;
    const graphTensor = find(tick.outputs, name);
    if (!graphTensor) throw outputs.field("halt").error(`"${name}" is not among graphs.tick.outputs`);
    if (graphTensor.shape.length !== 1)
      outputs
        .field("halt")
        .fail(`"${name}" must be ["batch"] (one value per item), got ${JSON.stringify(graphTensor.shape)}`);
  }
}
