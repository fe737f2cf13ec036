"""Model bundles: the directory an image bakes in (``model.onnx`` + ``mdk-model.json``), from the config."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mdk.config import ModelConfig
from mdk_runtime.spec import (
    ARTIFACT_FILE,
    SPEC_FILE,
    ClassifierOverride,
    InputOverride,
    ModelSpec,
    file_sha256,
)


def load_example(model: ModelConfig) -> Any:
    """The model's example request: inline in the config, or read from the JSON file it names."""
    if isinstance(model.example, Path):
        try:
            return json.loads(model.example.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{model.example.name} is not valid JSON: {exc}") from None
    return model.example


def model_spec(model: ModelConfig, *, sha256: str | None = None) -> ModelSpec:
    """The runtime's view of a configured model (what ``mdk-model.json`` holds)."""
    digest = sha256 or file_sha256(model.artifact)
    schema = model.schema_
    return ModelSpec(
        name=model.name,
        version=model.version or digest[:12],
        sha256=digest,
        artifact=ARTIFACT_FILE,
        description=model.description,
        labels=None if schema.labels is None else tuple(schema.labels),
        inputs={
            name: InputOverride(
                alias=o.alias, dtype=o.dtype, shape=None if o.shape is None else tuple(o.shape)
            )
            for name, o in schema.inputs.items()
        },
        batched=schema.batched,
        classifier=None
        if schema.classifier is None
        else ClassifierOverride(schema.classifier.label_output, schema.classifier.probabilities_output),
        max_instances=schema.max_instances,
        example=load_example(model),
    )


def write_bundle(model: ModelConfig, dest: Path) -> Path:
    """Write ``dest/model.onnx`` and ``dest/mdk-model.json``; unchanged files are left untouched.

    Leaving identical files alone keeps their mtimes, so image builds and asset hashes only change
    when the model or its spec does.
    """
    dest.mkdir(parents=True, exist_ok=True)
    digest = file_sha256(model.artifact)
    target = dest / ARTIFACT_FILE
    if not target.is_file() or file_sha256(target) != digest:
        _atomic_copy(model.artifact, target)
    doc = json.dumps(model_spec(model, sha256=digest).to_json(), indent=2, sort_keys=True) + "\n"
    spec_path = dest / SPEC_FILE
    if not spec_path.is_file() or spec_path.read_text(encoding="utf-8") != doc:
        _atomic_write(spec_path, doc.encode("utf-8"))
    return dest


def _atomic_copy(src: Path, dest: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    os.close(fd)
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def _atomic_write(dest: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, dest)
