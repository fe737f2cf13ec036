"""The model bundle: an ONNX artifact plus ``mdk-model.json``, the spec the kit writes from the config.

A bundle is what every image bakes in (``/opt/ml/model`` on SageMaker, ``$LAMBDA_TASK_ROOT/model``
on Lambda).  The spec carries what the graph cannot: the model's name and version, class labels,
schema overrides and an example request.  It is produced by :mod:`mdk.bundle` from the typed
config, so it is read here with plain dataclasses (pydantic would add ~50 ms to every cold start).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdk_runtime.errors import ModelLoadError

SPEC_FILE = "mdk-model.json"
ARTIFACT_FILE = "model.onnx"
SPEC_FORMAT = 1
DEFAULT_MAX_INSTANCES = 10_000

Dim = int | str | None
"""One dimension of a tensor shape: a fixed size, a symbolic name, or unknown."""


@dataclass(frozen=True, slots=True)
class InputOverride:
    """What the config says about one graph input, beyond what the graph says."""

    alias: str | None = None
    dtype: str | None = None
    shape: tuple[Dim, ...] | None = None


@dataclass(frozen=True, slots=True)
class ClassifierOverride:
    """Names the graph outputs that carry the predicted label and the class probabilities."""

    label_output: str | None = None
    probabilities_output: str | None = None


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Everything the runtime knows about a model besides its graph."""

    name: str
    version: str
    sha256: str
    artifact: str = ARTIFACT_FILE
    description: str = ""
    labels: tuple[str, ...] | None = None
    inputs: Mapping[str, InputOverride] = field(default_factory=dict)
    batched: bool | None = None
    classifier: ClassifierOverride | None = None
    max_instances: int = DEFAULT_MAX_INSTANCES
    example: Any = None
    # The model's declared processing (models.yaml ``processing``), file names relative to the bundle;
    # read by mdk_runtime.processing.
    processing: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The document :func:`read_spec` reads back (what ``mdk-model.json`` holds)."""
        schema: dict[str, Any] = {}
        if self.inputs:
            schema["inputs"] = {
                name: {
                    k: (list(v) if isinstance(v, tuple) else v)
                    for k, v in (("alias", o.alias), ("dtype", o.dtype), ("shape", o.shape))
                    if v is not None
                }
                for name, o in self.inputs.items()
            }
        if self.labels is not None:
            schema["labels"] = list(self.labels)
        if self.batched is not None:
            schema["batched"] = self.batched
        if self.classifier is not None:
            schema["classifier"] = {
                k: v
                for k, v in (
                    ("label_output", self.classifier.label_output),
                    ("probabilities_output", self.classifier.probabilities_output),
                )
                if v is not None
            }
        doc: dict[str, Any] = {
            "format": SPEC_FORMAT,
            "name": self.name,
            "version": self.version,
            "artifact": self.artifact,
            "sha256": self.sha256,
            "description": self.description,
            "max_instances": self.max_instances,
            "schema": schema,
        }
        if self.example is not None:
            doc["example"] = self.example
        if self.processing is not None:
            doc["processing"] = dict(self.processing)
        return doc


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _expect(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind):
        names = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
        raise ModelLoadError(f"{where}.{key}: expected {names}, got {type(value).__name__}")
    return value


def _shape(value: Any, where: str) -> tuple[Dim, ...]:
    if not isinstance(value, list) or not all(
        v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0) or isinstance(v, str)
        for v in value
    ):
        raise ModelLoadError(f"{where}: expected a list of positive sizes, names or nulls")
    return tuple(value)


def parse_spec(doc: Any, *, where: str = SPEC_FILE) -> ModelSpec:
    """Validate a spec document; every problem names its key."""
    if not isinstance(doc, dict):
        raise ModelLoadError(f"{where}: expected a JSON object")
    if doc.get("format") != SPEC_FORMAT:
        raise ModelLoadError(f"{where}.format: expected {SPEC_FORMAT}, got {doc.get('format')!r}")
    schema = doc.get("schema") or {}
    if not isinstance(schema, dict):
        raise ModelLoadError(f"{where}.schema: expected an object")
    inputs: dict[str, InputOverride] = {}
    raw_inputs = schema.get("inputs") or {}
    if not isinstance(raw_inputs, dict):
        raise ModelLoadError(f"{where}.schema.inputs: expected an object keyed by input name")
    for name, raw in raw_inputs.items():
        if not isinstance(raw, dict):
            raise ModelLoadError(f"{where}.schema.inputs.{name}: expected an object")
        shape = raw.get("shape")
        inputs[name] = InputOverride(
            alias=raw.get("alias"),
            dtype=raw.get("dtype"),
            shape=None if shape is None else _shape(shape, f"{where}.schema.inputs.{name}.shape"),
        )
    labels = schema.get("labels")
    if labels is not None and (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)):
        raise ModelLoadError(f"{where}.schema.labels: expected a list of strings")
    raw_clf = schema.get("classifier")
    classifier = None
    if raw_clf is not None:
        if not isinstance(raw_clf, dict):
            raise ModelLoadError(f"{where}.schema.classifier: expected an object")
        classifier = ClassifierOverride(
            label_output=raw_clf.get("label_output"),
            probabilities_output=raw_clf.get("probabilities_output"),
        )
    batched = schema.get("batched")
    if batched is not None and not isinstance(batched, bool):
        raise ModelLoadError(f"{where}.schema.batched: expected true or false")
    max_instances = doc.get("max_instances", DEFAULT_MAX_INSTANCES)
    if not isinstance(max_instances, int) or isinstance(max_instances, bool) or max_instances < 1:
        raise ModelLoadError(f"{where}.max_instances: expected a positive integer")
    processing = doc.get("processing")
    if processing is not None and not isinstance(processing, dict):
        raise ModelLoadError(f"{where}.processing: expected an object")
    return ModelSpec(
        processing=processing,
        name=_expect(doc, "name", str, where),
        version=_expect(doc, "version", str, where),
        sha256=_expect(doc, "sha256", str, where),
        artifact=doc.get("artifact", ARTIFACT_FILE),
        description=doc.get("description", ""),
        labels=None if labels is None else tuple(labels),
        inputs=inputs,
        batched=batched,
        classifier=classifier,
        max_instances=max_instances,
        example=doc.get("example"),
    )


def read_spec(model_dir: Path) -> ModelSpec:
    """Read ``mdk-model.json`` from a bundle, or describe a bare ``model.onnx`` by its hash."""
    spec_path = model_dir / SPEC_FILE
    if not spec_path.exists():
        artifact = model_dir / ARTIFACT_FILE
        if not artifact.is_file():
            raise ModelLoadError(f"no {SPEC_FILE} or {ARTIFACT_FILE} in {model_dir}")
        sha = file_sha256(artifact)
        return ModelSpec(name=model_dir.name or "model", version=sha[:12], sha256=sha)
    try:
        doc = json.loads(spec_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{spec_path}: cannot read the model spec ({exc})") from exc
    return parse_spec(doc, where=SPEC_FILE)
