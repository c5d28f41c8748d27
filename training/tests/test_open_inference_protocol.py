"""The Open Inference Protocol (KServe v2, Triton's gRPC and HTTP/REST APIs) with the real clients:
tritonclient.grpc and tritonclient.http.

Starts the real server (`node --import tsx server/src/main.ts`, as `npm start` runs it) on free
loopback ports and drives every RPC and endpoint it serves as a Triton user would: health, metadata,
configuration, ModelInfer with tensors and images, batches, Triton's decoupled ModelStreamInfer tick
by tick, the refusals, statistics, and the model repository (index, load, unload, version policies).
Answers are held against the export's golden per-tick outputs (PyTorch), so the protocol is checked
end to end, not just that it answers.
"""

import json
import os
import queue
import re
import socket
import subprocess
import tempfile
import threading
import urllib.request
from dataclasses import dataclass, field

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.http as triton_http
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from .conftest import REPO_ROOT, SHIPPED_MODEL

MODEL = "mnist-ctm"
TOKEN = "oip-test-token-0123456789"
START_TIMEOUT_S = 120


@dataclass
class Server:
    process: subprocess.Popen
    port: int = 0
    metrics_port: int = 0
    http_port: int = 0
    logs: list = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_address(self) -> str:
        return f"127.0.0.1:{self.http_port}"


def free_port() -> int:
    """A port for /metrics, which has no "any free port" setting (--metrics-port 0 disables it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def versions_folder(*versions: int) -> str:
    """A models folder holding `versions` of the shipped model: each its own manifest, the rest linked."""
    models = tempfile.mkdtemp(prefix="ctm-oip-versions-")
    with open(os.path.join(SHIPPED_MODEL, "manifest.json")) as f:
        manifest = json.load(f)
    for version in versions:
        folder = os.path.join(models, MODEL, str(version))
        os.makedirs(folder)
        for entry in os.listdir(SHIPPED_MODEL):
            if entry != "manifest.json":
                os.symlink(os.path.join(SHIPPED_MODEL, entry), os.path.join(folder, entry))
        with open(os.path.join(folder, "manifest.json"), "w") as f:
            json.dump({**manifest, "version": version}, f)
    return models


def start_server(*args: str, env: dict | None = None, metrics_port: int = 0, models: str | None = None) -> Server:
    """The real server on 127.0.0.1:0 (its REST endpoints on a free port) over a models folder holding
    only the shipped model, or `models`."""
    if models is None:
        models = tempfile.mkdtemp(prefix="ctm-oip-models-")
        os.symlink(os.path.join(REPO_ROOT, "models", MODEL), os.path.join(models, MODEL))
    command = [
        "node",
        "--import",
        "tsx",
        "server/src/main.ts",
        "--port",
        "0",
        "--metrics-port",
        str(metrics_port),
        "--http-port",
        str(free_port()),
        "--models-dir",
        models,
        "--threads",
        "1",
        "--provider",
        "cpu",
        *args,
    ]
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    server = Server(process)
    ready = threading.Event()

    def read_logs() -> None:
        # Drained for the whole run, so that a full pipe never blocks the server.
        for line in process.stdout:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                entry = {"msg": line.rstrip()}
            server.logs.append(entry)
            if entry.get("msg") == "metrics at /metrics":
                server.metrics_port = entry["port"]
            if str(entry.get("msg", "")).startswith("playground at "):
                server.http_port = entry["port"]
            if entry.get("msg") == "serving":
                server.port = entry["port"]
                ready.set()
        ready.set()

    threading.Thread(target=read_logs, daemon=True).start()
    ready.wait(START_TIMEOUT_S)
    if not server.port:
        process.kill()
        raise RuntimeError(f"the server did not start: {server.logs[-5:]}")
    return server


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(30)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="module")
def server():
    running = start_server(metrics_port=free_port())
    yield running
    stop_server(running)


@pytest.fixture
def client(server):
    with triton.InferenceServerClient(server.address) as c:
        yield c


@pytest.fixture(scope="module")
def golden():
    with open(os.path.join(SHIPPED_MODEL, "golden.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def samples():
    with open(os.path.join(SHIPPED_MODEL, "samples", "labels.json")) as f:
        entries = json.load(f)
    return [(open(os.path.join(SHIPPED_MODEL, "samples", e["file"]), "rb").read(), e["label"]) for e in entries]


def tensor_input(rows: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows.astype(np.float32))
    return tensor


def image_input(images: list) -> triton.InferInput:
    tensor = triton.InferInput("image", [len(images), 1], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_).reshape(len(images), 1))
    return tensor


def golden_rows(golden, *indices) -> np.ndarray:
    return np.stack(
        [np.array(golden["cases"][i]["input"], np.float32).reshape(golden["cases"][i]["input_shape"]) for i in indices]
    )


def refusal(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as raised:
        call()
    return raised.value


# ------------------------------------------------------------------ the wire contract


def test_the_proto_declares_what_tritonclient_declares():
    """Every message, field name, number, type and RPC in our proto is the one tritonclient was built from,
    but for ctm-serve's own additions: messages named Ctm* and fields numbered from 1000, none of which
    tritonclient's proto has (so its clients skip them as unknown fields)."""
    dump = r"""
import protobuf from "protobufjs";
const root = new protobuf.Root().loadSync(process.argv[1], { keepCase: true });
root.resolveAll();
const out = {};
const walk = (ns, prefix) => { for (const o of ns.nestedArray) {
  if (o instanceof protobuf.Type) {
    out[prefix + o.name] = Object.fromEntries(o.fieldsArray.map((f) => [f.name, {
      id: f.id, type: f.resolvedType ? f.resolvedType.fullName.slice(1) : f.type,
      repeated: f.repeated, map: f.map, oneof: f.partOf ? f.partOf.name : null }]));
    walk(o, prefix + o.name + ".");
  } else if (o instanceof protobuf.Enum) out[prefix + o.name] = { enum: o.values };
  else if (o instanceof protobuf.Service) out[prefix + o.name] = { service: Object.fromEntries(
    o.methodsArray.map((m) => [m.name, [m.requestType, m.responseType, !!m.requestStream, !!m.responseStream]])) };
  else if (o.nestedArray) walk(o, prefix + o.name + ".");
} };
walk(root, "");
console.log(JSON.stringify(out));
"""
    proto = os.path.join(REPO_ROOT, "proto", "inference", "v2", "grpc_service.proto")
    ours = json.loads(
        subprocess.run(
            ["node", "--input-type=module", "-e", dump, proto],
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    from google.protobuf.descriptor import FieldDescriptor as F

    scalar = {
        F.TYPE_BOOL: "bool",
        F.TYPE_INT64: "int64",
        F.TYPE_STRING: "string",
        F.TYPE_DOUBLE: "double",
        F.TYPE_UINT64: "uint64",
        F.TYPE_INT32: "int32",
        F.TYPE_UINT32: "uint32",
        F.TYPE_FLOAT: "float",
        F.TYPE_BYTES: "bytes",
    }
    pool = service_pb2.DESCRIPTOR.pool
    assert "inference.GRPCInferenceService" in ours
    mismatches = []
    for name, body in ours.items():
        if "service" in body:
            service = pool.FindServiceByName(name)
            for method, (request, response, client_streams, server_streams) in body["service"].items():
                theirs = service.methods_by_name[method]
                if (
                    theirs.input_type.name,
                    theirs.output_type.name,
                    theirs.client_streaming,
                    theirs.server_streaming,
                ) != (
                    request,
                    response,
                    client_streams,
                    server_streams,
                ):
                    mismatches.append(f"rpc {method}")
            continue
        if "enum" in body:
            theirs = {v.name: v.number for v in pool.FindEnumTypeByName(name).values}
            mismatches += [f"{name}.{k}" for k, v in body["enum"].items() if theirs.get(k) != v]
            continue
        if name.split(".")[-1].startswith("Ctm"):
            with pytest.raises(KeyError):
                pool.FindMessageTypeByName(name)
            continue
        message = pool.FindMessageTypeByName(name)
        for field_name, ours_field in body.items():
            theirs = message.fields_by_name.get(field_name)
            if ours_field["id"] >= 1000:
                if theirs is not None or message.fields_by_number.get(ours_field["id"]) is not None:
                    mismatches.append(f"{name}.{field_name} (ours, {ours_field['id']}) meets a field of tritonclient's")
                continue
            if theirs is None:
                mismatches.append(f"{name}.{field_name} is not in tritonclient's")
                continue
            if ours_field["map"]:
                value = theirs.message_type.fields_by_name["value"]
                kind = value.message_type.full_name if value.message_type else scalar[value.type]
                repeated = True
            else:
                kind = (
                    theirs.message_type.full_name
                    if theirs.message_type
                    else theirs.enum_type.full_name
                    if theirs.enum_type
                    else scalar[theirs.type]
                )
                repeated = ours_field["repeated"]
            oneof = theirs.containing_oneof.name if theirs.containing_oneof else None
            if (theirs.number, kind, theirs.label == F.LABEL_REPEATED, oneof) != (
                ours_field["id"],
                ours_field["type"],
                repeated,
                ours_field["oneof"],
            ):
                mismatches.append(f"{name}.{field_name}")
    assert mismatches == []


# ------------------------------------------------------------------ health and metadata


def test_health(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready(MODEL, "2")
    assert not client.is_model_ready("no-such-model")


def test_server_metadata(client):
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "ctm-serve"
    assert re.fullmatch(r"\d+\.\d+\.\d+", metadata["version"])
    assert set(metadata["extensions"]) == {
        "classification",
        "model_configuration",
        "model_repository",
        "statistics",
        "binary_tensor_data",
    }


def test_model_metadata_comes_from_the_manifest(client):
    with open(os.path.join(SHIPPED_MODEL, "manifest.json")) as f:
        manifest = json.load(f)
    metadata = client.get_model_metadata(MODEL, as_json=True)
    assert metadata["name"] == MODEL
    assert metadata["versions"] == [str(manifest["version"])]
    shapes = lambda tensors: {t["name"]: (t["datatype"], [int(d) for d in t["shape"]]) for t in tensors}  # noqa: E731
    assert shapes(metadata["inputs"]) == {
        "input": ("FP32", [-1, *manifest["input"]["shape"]]),
        "image": ("BYTES", [-1, 1]),
    }
    classes = manifest["output"]["shape"]
    assert shapes(metadata["outputs"]) == {
        "probabilities": ("FP32", [-1, *classes]),
        "logits": ("FP32", [-1, *classes]),
        "certainty": ("FP32", [-1]),
        "tick": ("INT32", [-1]),
        "answer_tick": ("INT32", [-1]),
        "ticks_used": ("INT32", [-1]),
        "halt_reason": ("BYTES", [-1]),
        # The halting head's signal, for a model that has one (the shipped MNIST model does).
        **({"halt": ("FP32", [-1])} if "halt" in manifest["outputs"] else {}),
    }
    assert "halt" in manifest["outputs"]


def test_model_config(client):
    config = client.get_model_config(MODEL).config
    assert config.name == MODEL
    assert config.max_batch_size == 64  # the server's --max-batch default
    assert [i.name for i in config.input] == ["input", "image"]
    assert all(i.optional for i in config.input)
    assert config.parameters["trained_ticks"].string_value == "15"
    assert not config.model_transaction_policy.decoupled


def test_unknown_model_is_not_found(client):
    error = refusal(lambda: client.get_model_metadata("no-such-model"))
    assert error.status() == "StatusCode.NOT_FOUND"
    assert error.message() == 'model "no-such-model" is not loaded (loaded: mnist-ctm/1)'
    error = refusal(lambda: client.infer("no-such-model", [tensor_input(np.zeros((1, 1, 28, 28)))]))
    assert error.status() == "StatusCode.NOT_FOUND"


# ------------------------------------------------------------------ ModelInfer


def test_infer_reproduces_the_golden_ticks(client, golden):
    """All ticks, threshold 1: the answer is the golden run's most certain tick, with its outputs."""
    ticks = golden["ticks"]
    for i, case in enumerate(golden["cases"]):
        result = client.infer(
            MODEL,
            [tensor_input(golden_rows(golden, i))],
            parameters={"certainty_threshold": 1.0, "min_ticks": ticks, "max_ticks": ticks},
        )
        certainty = np.array(case["certainty"])
        best = int(np.argmax(certainty))  # earliest most certain tick, 0-based
        assert result.as_numpy("ticks_used").tolist() == [ticks]
        assert result.as_numpy("answer_tick").tolist() == [best + 1]
        assert result.as_numpy("tick").tolist() == [best + 1]
        assert result.as_numpy("halt_reason").tolist() == [b"MAX_TICKS"]
        np.testing.assert_allclose(result.as_numpy("certainty"), [certainty[best]], atol=1e-4)
        np.testing.assert_allclose(result.as_numpy("logits")[0], case["logits"][best], atol=1e-4)
        np.testing.assert_allclose(result.as_numpy("probabilities")[0], case["probabilities"][best], atol=1e-4)
        parameters = result.get_response().parameters
        assert parameters["ticks_used"].int64_param == ticks
        assert parameters["halt_reason"].string_param == "MAX_TICKS"
        assert parameters["threshold_used"].double_param == 1.0
        assert parameters["min_ticks"].int64_param == ticks


def test_a_batch_is_its_rows(client, golden):
    """A batch of N rows answers exactly what N single requests answer, in order."""
    policy = {"certainty_threshold": 0.9}
    batch = client.infer(MODEL, [tensor_input(golden_rows(golden, 0, 1, 2))], parameters=policy)
    for row in range(3):
        single = client.infer(MODEL, [tensor_input(golden_rows(golden, row))], parameters=policy)
        for name in ["ticks_used", "answer_tick", "halt_reason"]:
            assert batch.as_numpy(name)[row] == single.as_numpy(name)[0], name
        np.testing.assert_allclose(batch.as_numpy("logits")[row], single.as_numpy("logits")[0], atol=1e-5)
    # Per-row scalars are outputs only; the shared policy is a parameter.
    parameters = batch.get_response().parameters
    assert "ticks_used" not in parameters
    assert parameters["threshold_used"].double_param == 0.9


def test_images_as_bytes(client, samples):
    """Encoded images, a batch of them, are preprocessed as ctm.v1 preprocesses them."""
    images = [png for png, _ in samples[:8]]
    labels = [label for _, label in samples[:8]]
    result = client.infer(MODEL, [image_input(images)], request_id="digits")
    predicted = result.as_numpy("probabilities").argmax(axis=1).tolist()
    assert sum(p == t for p, t in zip(predicted, labels, strict=True)) >= 7
    assert result.get_response().id == "digits"
    assert result.as_numpy("halt_reason").shape == (8,)


def test_requested_outputs_and_classification(client, samples):
    result = client.infer(
        MODEL,
        [image_input([samples[0][0]])],
        outputs=[
            triton.InferRequestedOutput("probabilities", class_count=3),
            triton.InferRequestedOutput("ticks_used"),
        ],
    )
    assert [o.name for o in result.get_response().outputs] == ["probabilities", "ticks_used"]
    top = [entry.decode().split(":") for entry in result.as_numpy("probabilities")[0]]
    assert len(top) == 3
    assert top[0][1] == top[0][2] == str(samples[0][1])  # "<probability>:<index>:<label>"
    assert [float(p) for p, _, _ in top] == sorted((float(p) for p, _, _ in top), reverse=True)


def test_target_accuracy_and_its_guarantee(client, samples):
    """A target is resolved through the calibration exactly as for ctm.v1, and says what it promises."""
    result = client.infer(MODEL, [image_input([samples[0][0]])], parameters={"target_accuracy": 0.97})
    parameters = result.get_response().parameters
    assert parameters["target_accuracy"].double_param == 0.97
    assert parameters["target_confidence"].double_param == 0.95  # the default
    assert 0 < parameters["threshold_used"].double_param <= 1
    assert parameters["guarantee_kind"].string_param == "accuracy"
    assert parameters["guarantee_met"].bool_param == (parameters["guarantee_note"].string_param == "")
    error = refusal(
        lambda: client.infer(
            MODEL, [image_input([samples[0][0]])], parameters={"target_accuracy": 0.97, "certainty_threshold": 0.9}
        )
    )
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert error.message() == (
        "set at most one of parameters.certainty_threshold (0.9) and parameters.target_accuracy (0.97)"
    )


def test_numbers_as_strings(client, golden):
    """perf_analyzer's --request-parameter has no floating-point type; a number in a string is read."""
    result = client.infer(
        MODEL, [tensor_input(golden_rows(golden, 0))], parameters={"certainty_threshold": "1.0", "max_ticks": "3"}
    )
    assert result.as_numpy("ticks_used").tolist() == [3]
    assert result.get_response().parameters["threshold_used"].double_param == 1.0


def test_contents_instead_of_raw(server, golden):
    """The protocol's other encoding, typed contents, as the raw stub sends it."""
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name=MODEL)
        tensor = request.inputs.add(name="input", datatype="FP32", shape=[1, 1, 28, 28])
        tensor.contents.fp32_contents.extend(golden["cases"][0]["input"])
        request.parameters["max_ticks"].int64_param = 3
        request.parameters["certainty_threshold"].double_param = 1.0
        response = stub.ModelInfer(request)
        ticks = response.outputs[[o.name for o in response.outputs].index("ticks_used")]
        assert ticks.datatype == "INT32"
        assert response.parameters["ticks_used"].int64_param == 3

        both = service_pb2.ModelInferRequest()
        both.CopyFrom(request)
        both.raw_input_contents.append(np.zeros(784, np.float32).tobytes())
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(both)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert raised.value.details() == "inputs[0].contents must be empty when raw_input_contents carries the data"


@pytest.mark.parametrize(
    "inputs, parameters, message",
    [
        (
            lambda: [tensor_input(np.zeros((1, 28, 28)))],
            {},
            r"^inputs\[0\]\.shape must be \[N, 1, 28, 28\] for input \"input\", got \[1, 28, 28\]$",
        ),
        (
            lambda: [tensor_input(np.zeros((65, 1, 28, 28)))],
            {},
            r"^inputs\[0\]\.shape\[0\] \(the batch\) must be in \[1, 64\] \(--max-batch\), got 65$",
        ),
        (
            lambda: [],
            {},
            r"^inputs must hold exactly one tensor, \"input\" \(FP32 \[-1, 1, 28, 28\]\) or \"image\" \(BYTES \[-1, 1\]\), for model mnist-ctm; got 0$",
        ),
        (
            lambda: [tensor_input(np.zeros((1, 1, 28, 28)))],
            {"certainty_threshold": 1.5},
            r"^parameters\.certainty_threshold must be in \(0, 1\], got 1\.5$",
        ),
        (
            lambda: [tensor_input(np.zeros((1, 1, 28, 28)))],
            {"max_ticks": 99},
            r"^parameters\.max_ticks must be in \[1, 15\] for model mnist-ctm",
        ),
        (
            lambda: [tensor_input(np.zeros((1, 1, 28, 28)))],
            {"max_ticks": "ten"},
            r"^parameters\.max_ticks must be a number \(double_param, int64_param, or a string_param holding one\), got string_param \"ten\"$",
        ),
        (
            lambda: [tensor_input(np.zeros((1, 1, 28, 28)))],
            {"temperature": 0.5},
            r"^parameters\.temperature is not a parameter this server reads; the halt policy is set by halt_signal, certainty_threshold, halt_threshold, target_accuracy, target_consistency, target_confidence, min_target_accuracy, min_target_consistency, min_ticks, max_ticks, patience, deadline_ms$",
        ),
        (lambda: [image_input([b"not an image"])], {}, r"^inputs\[0\] \(\"image\"\) row 0 is not an image"),
    ],
    ids=["shape", "batch", "no-input", "threshold", "max-ticks", "parameter-type", "unknown-parameter", "image"],
)
def test_bad_requests_are_invalid_argument_naming_the_field(client, inputs, parameters, message):
    error = refusal(lambda: client.infer(MODEL, inputs(), parameters=parameters))
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert re.search(message, error.message()), error.message()


def test_a_bad_row_names_its_row_and_value(client, golden):
    rows = golden_rows(golden, 0, 1)
    rows[1, 0, 0, 5] = np.nan
    error = refusal(lambda: client.infer(MODEL, [tensor_input(rows)]))
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert error.message() == 'inputs[0] ("input") row 1 values[5] is NaN; every value must be finite'


def test_wrong_datatype(client):
    tensor = triton.InferInput("input", [1, 1, 28, 28], "FP64")
    tensor.set_data_from_numpy(np.zeros((1, 1, 28, 28), np.float64))
    error = refusal(lambda: client.infer(MODEL, [tensor]))
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert error.message() == 'inputs[0].datatype must be FP32 for input "input", got "FP64"'


# ------------------------------------------------------------------ ModelStreamInfer


def collect_stream(client, requests):
    """Sends requests (async_stream_infer kwargs) on one stream; returns each id's responses, and
    under "errors" the refusals (tritonclient hands a stream's error to the callback without its id)."""
    received = queue.Queue()
    client.start_stream(callback=lambda result, error: received.put((result, error)))
    responses = {kwargs["request_id"]: [] for kwargs in requests}
    responses["errors"] = []
    try:
        for kwargs in requests:
            client.async_stream_infer(MODEL, **kwargs)
        finished = 0
        while finished < len(requests):
            result, error = received.get(timeout=60)
            if error is not None:
                responses["errors"].append(error)
                finished += 1
                continue
            response = result.get_response()
            responses[response.id].append(result)
            finished += response.parameters["triton_final_response"].bool_param
    finally:
        client.stop_stream()
    return responses


def test_stream_sends_one_response_per_tick_the_last_flagged_final(client, golden):
    ticks = golden["ticks"]
    case = golden["cases"][0]
    responses = collect_stream(
        client,
        [
            dict(
                inputs=[tensor_input(golden_rows(golden, 0))],
                request_id="a",
                parameters={"certainty_threshold": 1.0, "min_ticks": ticks, "max_ticks": ticks},
            )
        ],
    )["a"]
    assert [r.as_numpy("tick").tolist() for r in responses] == [[t] for t in range(1, ticks + 1)]
    finals = [r.get_response().parameters["triton_final_response"].bool_param for r in responses]
    assert finals == [False] * (ticks - 1) + [True]
    for t, result in enumerate(responses):
        np.testing.assert_allclose(result.as_numpy("logits")[0], case["logits"][t], atol=1e-4)
        np.testing.assert_allclose(result.as_numpy("certainty"), [case["certainty"][t]], atol=1e-4)
    # Only the last one answers for the whole request.
    assert responses[0].as_numpy("halt_reason") is None
    last = responses[-1]
    assert last.as_numpy("halt_reason").tolist() == [b"MAX_TICKS"]
    assert last.as_numpy("ticks_used").tolist() == [ticks]
    assert last.as_numpy("answer_tick").tolist() == [int(np.argmax(case["certainty"])) + 1]


def test_stream_carries_many_requests_and_survives_a_bad_one(client, golden, samples):
    responses = collect_stream(
        client,
        [
            dict(
                inputs=[tensor_input(golden_rows(golden, 1))],
                request_id="x",
                parameters={"max_ticks": 4, "certainty_threshold": 1.0},
            ),
            dict(inputs=[tensor_input(golden_rows(golden, 2))], request_id="bad", parameters={"patience": -1}),
            dict(inputs=[image_input([samples[3][0]])], request_id="y", parameters={"certainty_threshold": 0.8}),
        ],
    )
    assert len(responses["x"]) == 4
    assert responses["y"][-1].get_response().parameters["halt_reason"].string_param in {"THRESHOLD", "MAX_TICKS"}
    assert responses["y"][-1].as_numpy("probabilities").argmax() == samples[3][1]
    [error] = responses["errors"]
    assert error.message() == "parameters.patience must be a non-negative integer, got -1"


def test_stream_refuses_a_batch(client, golden):
    responses = collect_stream(client, [dict(inputs=[tensor_input(golden_rows(golden, 0, 1))], request_id="b")])
    [error] = responses["errors"]
    assert error.message().startswith("inputs[0].shape[0] (the batch) must be 1 for ModelStreamInfer")


# ------------------------------------------------------------------ the server's metrics and tokens


def test_metrics_count_v2_calls(server, client, golden):
    client.infer(MODEL, [tensor_input(golden_rows(golden, 0))])
    refusal(lambda: client.infer(MODEL, [tensor_input(golden_rows(golden, 0))], parameters={"patience": 99}))
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    for status in ["OK", "INVALID_ARGUMENT"]:
        assert re.search(
            rf'ctm_requests_total\{{model="mnist-ctm",method="ModelInfer",status="{status}"\}} [1-9]', text
        )


def test_a_body_that_is_not_a_request_is_invalid_argument(server):
    """grpc would call it INTERNAL ("Error deserializing request"), blaming the server for the client's bytes."""
    with grpc.insecure_channel(server.address) as channel:
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as raised:
            infer(b"\xff\xff\xff\xff")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith("the request (4 bytes) is not a valid inference.ModelInferRequest message")


def test_tokens_guard_inference_but_not_health(tmp_path):
    limited = "limited-token-0123456789"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN}\n{limited} some-other-model\n")
    secured = start_server("--auth-tokens-file", str(tokens))
    try:
        with triton.InferenceServerClient(secured.address) as c:
            assert c.is_server_live() and c.is_server_ready() and c.is_model_ready(MODEL)
            error = refusal(lambda: c.get_model_metadata(MODEL))
            assert error.status() == "StatusCode.UNAUTHENTICATED"
            zeros = [tensor_input(np.zeros((1, 1, 28, 28)))]
            error = refusal(lambda: c.infer(MODEL, zeros, headers={"authorization": "Bearer wrong-token-0123456789"}))
            assert error.status() == "StatusCode.UNAUTHENTICATED"
            error = refusal(lambda: c.infer(MODEL, zeros, headers={"authorization": f"Bearer {limited}"}))
            assert error.status() == "StatusCode.PERMISSION_DENIED"
            assert error.message() == (
                'this bearer token may not call model "mnist-ctm" (request field model_name); '
                "it is granted: some-other-model"
            )
            result = c.infer(MODEL, zeros, headers={"authorization": f"Bearer {TOKEN}"})
            assert result.as_numpy("ticks_used")[0] >= 1
    finally:
        stop_server(secured)


# ------------------------------------------------------------------ HTTP/REST (tritonclient.http)


@pytest.fixture
def http_client(server):
    with triton_http.InferenceServerClient(server.http_address) as c:
        yield c


def http_tensor(rows: np.ndarray, binary: bool = True) -> triton_http.InferInput:
    tensor = triton_http.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows.astype(np.float32), binary_data=binary)
    return tensor


def http_refusal(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as raised:
        call()
    return raised.value


def test_http_health_metadata_and_config(http_client, client):
    assert http_client.is_server_live() and http_client.is_server_ready()
    assert http_client.is_model_ready(MODEL) and http_client.is_model_ready(MODEL, "1")
    assert not http_client.is_model_ready(MODEL, "2")
    assert not http_client.is_model_ready("no-such-model")
    assert http_client.get_server_metadata() == client.get_server_metadata(as_json=True)
    metadata = http_client.get_model_metadata(MODEL)
    assert metadata["versions"] == ["1"]
    assert [i["name"] for i in metadata["inputs"]] == ["input", "image"]
    assert metadata["outputs"] == [
        {**o, "shape": [int(d) for d in o["shape"]]} for o in client.get_model_metadata(MODEL, as_json=True)["outputs"]
    ]
    config = http_client.get_model_config(MODEL)
    assert config["max_batch_size"] == 64 and config["parameters"]["trained_ticks"]["string_value"] == "15"


def test_http_infer_reproduces_the_golden_ticks_binary_and_json(http_client, golden):
    """tritonclient.http's binary tensor extension (its default) and plain JSON give the golden answer."""
    ticks = golden["ticks"]
    policy = {"certainty_threshold": 1.0, "min_ticks": ticks, "max_ticks": ticks}
    for i, case in enumerate(golden["cases"][:3]):
        best = int(np.argmax(case["certainty"]))
        for binary in (True, False):
            outputs = [
                triton_http.InferRequestedOutput(n, binary_data=binary)
                for n in ["logits", "answer_tick", "halt_reason"]
            ]
            result = http_client.infer(
                MODEL, [http_tensor(golden_rows(golden, i), binary)], parameters=policy, outputs=outputs
            )
            assert result.as_numpy("answer_tick").tolist() == [best + 1]
            # BYTES come back as bytes from binary data, as str from JSON (tritonclient's reading).
            [reason] = result.as_numpy("halt_reason").tolist()
            assert reason == (b"MAX_TICKS" if binary else "MAX_TICKS")
            np.testing.assert_allclose(result.as_numpy("logits")[0], case["logits"][best], atol=1e-4)
            assert result.get_response()["parameters"]["ticks_used"] == ticks


def test_http_batches_images_and_classification(http_client, client, samples, golden):
    batch = http_client.infer(
        MODEL, [http_tensor(golden_rows(golden, 0, 1, 2))], parameters={"certainty_threshold": 0.9}
    )
    over_grpc = client.infer(
        MODEL, [tensor_input(golden_rows(golden, 0, 1, 2))], parameters={"certainty_threshold": 0.9}
    )
    assert batch.as_numpy("ticks_used").tolist() == over_grpc.as_numpy("ticks_used").tolist()
    np.testing.assert_allclose(batch.as_numpy("probabilities"), over_grpc.as_numpy("probabilities"), atol=1e-6)
    images = triton_http.InferInput("image", [4, 1], "BYTES")
    images.set_data_from_numpy(np.array([png for png, _ in samples[:4]], dtype=np.object_).reshape(4, 1))
    result = http_client.infer(
        MODEL, [images], outputs=[triton_http.InferRequestedOutput("probabilities", class_count=1)]
    )
    top = [entry[0].decode().split(":")[1] for entry in result.as_numpy("probabilities")]
    assert sum(int(t) == label for t, (_, label) in zip(top, samples[:4], strict=True)) >= 3


def test_http_refusals_carry_the_status_and_the_message(http_client, golden):
    error = http_refusal(lambda: http_client.infer("no-such-model", [http_tensor(golden_rows(golden, 0))]))
    assert error.status() == "404"
    assert error.message() == 'model "no-such-model" is not loaded (loaded: mnist-ctm/1)'
    error = http_refusal(lambda: http_client.infer(MODEL, [http_tensor(golden_rows(golden, 0))], model_version="2"))
    assert error.status() == "404"
    assert error.message() == 'model "mnist-ctm" version 2 is not loaded (loaded: mnist-ctm/1)'
    error = http_refusal(
        lambda: http_client.infer(MODEL, [http_tensor(golden_rows(golden, 0))], parameters={"max_ticks": 99})
    )
    assert error.status() == "400"
    assert re.match(r"^parameters\.max_ticks must be in \[1, 15\] for model mnist-ctm", error.message())
    error = http_refusal(lambda: http_client.infer(MODEL, [http_tensor(np.zeros((1, 28, 28)))]))
    assert error.status() == "400"
    assert error.message() == 'inputs[0].shape must be [N, 1, 28, 28] for input "input", got [1, 28, 28]'
    error = http_refusal(lambda: http_client.get_model_metadata("no-such-model"))
    assert error.status() == "404"


def test_http_statistics_count_every_row(http_client, golden):
    def counts():
        [stats] = http_client.get_inference_statistics(MODEL, "1")["model_stats"]
        return stats

    before = counts()
    http_client.infer(
        MODEL, [http_tensor(golden_rows(golden, 0, 1))], parameters={"certainty_threshold": 1.0, "max_ticks": 4}
    )
    after = counts()
    assert after["inference_count"] == before["inference_count"] + 2
    for stage in ["success", "queue", "compute_input", "compute_infer", "compute_output"]:
        assert after["inference_stats"][stage]["count"] == before["inference_stats"][stage]["count"] + 2, stage
        assert after["inference_stats"][stage]["ns"] >= before["inference_stats"][stage]["ns"]
    assert after["ctm_ticks"]["used"] == before["ctm_ticks"]["used"] + 8
    assert after["execution_count"] >= before["execution_count"] + 4
    assert {b["batch_size"] for b in after["batch_stats"]} >= {1}


def test_model_repository_with_both_clients(tmp_path):
    """--model-control explicit, versions 1 and 2: load, reload under another policy, unload, index, with
    tritonclient.http and tritonclient.grpc alike; tokens guard the changes."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN}\nlimited-token-0123456789 {MODEL}\n")
    running = start_server(
        "--model-control",
        "explicit",
        "--load-model",
        MODEL,
        "--auth-tokens-file",
        str(tokens),
        models=versions_folder(1, 2),
    )
    auth = {"authorization": f"Bearer {TOKEN}"}
    try:
        with (
            triton_http.InferenceServerClient(running.http_address) as http,
            triton.InferenceServerClient(running.address) as grpc_client,
        ):
            states = lambda: [(m["version"], m["state"]) for m in http.get_model_repository_index(headers=auth)]  # noqa: E731
            assert states() == [("1", "UNAVAILABLE"), ("2", "READY")]
            assert http.is_model_ready(MODEL, "2") and not http.is_model_ready(MODEL, "1")

            http.load_model(MODEL, headers=auth, config=json.dumps({"version_policy": {"all": {}}}))
            assert states() == [("1", "READY"), ("2", "READY")]
            result = grpc_client.infer(MODEL, [tensor_input(golden_rows_of(0))], model_version="1", headers=auth)
            assert result.get_response().model_version == "1"

            error = http_refusal(
                lambda: http.unload_model(MODEL, headers={"authorization": "Bearer limited-token-0123456789"})
            )
            assert error.status() == "403"

            grpc_client.unload_model(MODEL, headers=auth)
            assert not http.is_model_ready(MODEL)
            index = grpc_client.get_model_repository_index(headers=auth, as_json=True)["models"]
            assert {m["version"] for m in index} == {"1", "2"}
            assert all(m["state"] in {"UNLOADING", "UNAVAILABLE"} for m in index)

            grpc_client.load_model(MODEL, headers=auth)
            assert (
                http.is_model_ready(MODEL) and http.is_model_ready(MODEL, "2") and not http.is_model_ready(MODEL, "1")
            )
            stats = grpc_client.get_inference_statistics(MODEL, headers=auth, as_json=True)["model_stats"]
            assert [(s["name"], s["version"]) for s in stats] == [(MODEL, "2")]

            error = http_refusal(lambda: http.load_model("no-such-model", headers=auth))
            assert error.status() == "404"
            error = http_refusal(lambda: http.load_model(MODEL, headers=auth, config='{"max_batch_size": 8}'))
            assert error.status() == "400"
            assert error.message().startswith("parameters.config.max_batch_size is not read by this server")
    finally:
        stop_server(running)


def golden_rows_of(*indices) -> np.ndarray:
    with open(os.path.join(SHIPPED_MODEL, "golden.json")) as f:
        return golden_rows(json.load(f), *indices)
