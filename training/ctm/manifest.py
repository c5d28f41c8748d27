"""Validate a model folder's manifest.json: its JSON Schema, then the rules a schema cannot express.

python -m ctm.manifest models/mnist-ctm/1
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA = json.loads((Path(__file__).with_name("manifest.schema.json")).read_text())


class ManifestError(ValueError):
    """The manifest is missing a field or contradicts itself; the message names the field."""


def validate_manifest(manifest: dict[str, Any], folder: Path | None = None) -> None:
    """Raise `ManifestError` naming the first bad field. With `folder`, also check the files exist."""
    errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(manifest), key=lambda e: list(e.path))
    if errors:
        error = errors[0]
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ManifestError(f"manifest field {where}: {error.message}")

    graphs = manifest["graphs"]
    encoder_out = {t["name"]: t for t in graphs["encoder"]["outputs"]}
    tick_in = {t["name"]: t for t in graphs["tick"]["inputs"]}
    tick_out = {t["name"]: t for t in graphs["tick"]["outputs"]}

    def need(table: dict[str, Any], name: str, field: str, graph: str) -> dict[str, Any]:
        if name not in table:
            raise ManifestError(f"manifest field {field}: {name!r} is not among the {graph}")
        return table[name]

    def same_shape(field: str, expected: list[Any], tensor: dict[str, Any]) -> None:
        if tensor["shape"] != ["batch", *expected]:
            raise ManifestError(
                f"manifest field {field}: {tensor['name']!r} has shape {tensor['shape']}, expected {['batch', *expected]}"
            )

    (encoder_input,) = graphs["encoder"]["inputs"] if len(graphs["encoder"]["inputs"]) == 1 else (None,)
    if encoder_input is None:
        raise ManifestError("manifest field graphs.encoder.inputs: the encoder must take exactly one input")
    same_shape("input.shape", manifest["input"]["shape"], encoder_input)
    for i, context in enumerate(manifest["context"]):
        field = f"context.{i}"
        same_shape(field, context["shape"], need(encoder_out, context["name"], field, "encoder outputs"))
        same_shape(field, context["shape"], need(tick_in, context["name"], field, "tick inputs"))
    for i, state in enumerate(manifest["state"]):
        field = f"state.{i}"
        same_shape(
            field + ".init",
            state["shape"],
            need(encoder_out, state["init"], field + ".init", "encoder outputs"),
        )
        same_shape(field + ".input", state["shape"], need(tick_in, state["input"], field + ".input", "tick inputs"))
        same_shape(
            field + ".output",
            state["shape"],
            need(tick_out, state["output"], field + ".output", "tick outputs"),
        )
    fed = {c["name"] for c in manifest["context"]} | {s["input"] for s in manifest["state"]}
    for name in tick_in:
        if name not in fed:
            raise ManifestError(f"manifest field graphs.tick.inputs: {name!r} is neither context nor state")

    output = manifest["output"]
    width = math.prod(output["shape"])
    if len(output["labels"]) != output["shape"][-1]:
        raise ManifestError(
            f"manifest field output.labels: {len(output['labels'])} labels for {output['shape'][-1]} classes"
        )
    outputs = manifest["outputs"]
    same_shape("outputs.logits", [width], need(tick_out, outputs["logits"], "outputs.logits", "tick outputs"))
    same_shape(
        "outputs.probabilities",
        [width],
        need(tick_out, outputs["probabilities"], "outputs.probabilities", "tick outputs"),
    )
    same_shape("outputs.certainty", [], need(tick_out, outputs["certainty"], "outputs.certainty", "tick outputs"))
    if "halt" in outputs:
        same_shape("outputs.halt", [], need(tick_out, outputs["halt"], "outputs.halt", "tick outputs"))
    if "attention" in manifest:
        attention = manifest["attention"]
        tensor = need(tick_out, attention["output"], "attention.output", "tick outputs")
        tokens = math.prod(attention["token_grid"])
        if len(tensor["shape"]) != 3 or tensor["shape"][2] != tokens:
            raise ManifestError(
                f"manifest field attention.token_grid: {attention['token_grid']} does not fit "
                f"{tensor['name']!r} {tensor['shape']}, expected ['batch', heads, {tokens}]"
            )

    image = manifest["input"].get("image")
    if image is not None:
        expected = [image["channels"], image["height"], image["width"]]
        if manifest["input"]["shape"] != expected:
            raise ManifestError(f"manifest field input.shape: {manifest['input']['shape']} != image CHW {expected}")
        shorter = image.get("resize_shorter")
        if shorter is not None and shorter < max(image["height"], image["width"]):
            raise ManifestError(
                f"manifest field input.image.resize_shorter: {shorter} is smaller than the crop "
                f"{image['height']}x{image['width']}; it must be >= {max(image['height'], image['width'])}"
            )
        for key in ("mean", "std"):
            if len(image["normalize"][key]) != image["channels"]:
                raise ManifestError(f"manifest field input.image.normalize.{key}: needs {image['channels']} values")
        # As the server rules (server/src/model/manifest.ts): resize_shorter belongs to center-crop only.
        if shorter is not None and image["preprocess"] != "center-crop":
            raise ManifestError(
                f'manifest field input.image.resize_shorter: only for preprocess "center-crop", not "{image["preprocess"]}"'
            )
    if manifest["ticks"]["max"] > manifest["ticks"]["trained"] * 4:
        raise ManifestError("manifest field ticks.max: more than 4x the trained ticks is outside what was tested")

    if folder is not None:
        files = {"graphs.encoder.file": graphs["encoder"]["file"], "graphs.tick.file": graphs["tick"]["file"]}
        for key in ("calibration", "samples", "golden"):
            if key in manifest:
                files[key] = manifest[key]
        for field, name in files.items():
            if not (folder / name).is_file():
                raise ManifestError(f"manifest field {field}: file {name!r} not found in {folder}")


def main(argv: list[str] | None = None) -> None:
    folders = [Path(p) for p in (argv if argv is not None else sys.argv[1:])]
    if not folders:
        raise SystemExit("usage: python -m ctm.manifest MODEL_FOLDER [...]")
    for folder in folders:
        validate_manifest(json.loads((folder / "manifest.json").read_text()), folder)
        print(f"{folder}: ok")


if __name__ == "__main__":
    main()
