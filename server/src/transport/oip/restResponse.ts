/**
 * A ModelInferResponse (as the gRPC service sends it: outputs as raw little-endian tensors) -> the
 * Open Inference Protocol's REST response: JSON with each output's values in `data`, or, for the
 * outputs the request asked so of (binary_data_output, outputs[].binary_data), Triton's binary tensor
 * extension: their raw bytes after the JSON, each output saying its share in binary_data_size and the
 * header Inference-Header-Content-Length saying where the JSON ends.
 */
import type { InferParameterMessage, ModelInferResponseMessage } from "./oipProtocol.ts";
import type { BinaryOutputs } from "./restRequest.ts";

export interface RestBody {
  headers: Record<string, string | number>;
  body: Buffer;
}

export function encodeRestResponse(response: ModelInferResponseMessage, binary: BinaryOutputs): RestBody {
  const blobs: Buffer[] = [];
  const outputs = response.outputs.map((output, i) => {
    const raw = response.raw_output_contents[i] ?? Buffer.alloc(0);
    const tensor = { name: output.name, datatype: output.datatype, shape: output.shape };
    if (binary.byName.get(output.name) ?? binary.all) {
      blobs.push(raw);
      return { ...tensor, parameters: { binary_data_size: raw.length } };
    }
    return { ...tensor, data: valuesOf(raw, output.datatype) };
  });
  const json = Buffer.from(
    JSON.stringify({
      model_name: response.model_name,
      model_version: response.model_version,
      ...(response.id && { id: response.id }),
      parameters: Object.fromEntries(Object.entries(response.parameters).map(([k, v]) => [k, parameterValue(v)])),
      outputs,
    }),
    "utf8",
  );
  if (blobs.length === 0) {
    return { headers: { "content-type": "application/json; charset=utf-8" }, body: json };
  }
  return {
    headers: { "content-type": "application/octet-stream", "inference-header-content-length": json.length },
    body: Buffer.concat([json, ...blobs]),
  };
}

/** A typed parameter as its plain JSON value. */
export function parameterValue(parameter: InferParameterMessage): boolean | number | string | null {
  if (parameter.parameter_choice) return parameter[parameter.parameter_choice] ?? null;
  return (
    parameter.bool_param ??
    parameter.int64_param ??
    parameter.double_param ??
    parameter.string_param ??
    parameter.uint64_param ??
    null
  );
}

/** A raw tensor's values, row-major and flat, as JSON takes them. */
function valuesOf(raw: Buffer, datatype: string): (number | string)[] {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const values: (number | string)[] = [];
  if (datatype === "FP32") for (let at = 0; at + 4 <= raw.length; at += 4) values.push(view.getFloat32(at, true));
  else if (datatype === "INT32") for (let at = 0; at + 4 <= raw.length; at += 4) values.push(view.getInt32(at, true));
  else if (datatype === "BYTES") {
    for (let at = 0; at + 4 <= raw.length; ) {
      const length = view.getUint32(at, true);
      values.push(raw.subarray(at + 4, at + 4 + length).toString("utf8"));
      at += 4 + length;
    }
  } else {
    throw new Error(`an output of datatype ${datatype} has no JSON encoding here. This is a bug.`);
  }
  return values;
}
