"""``mdk baseline``: run a model locally on a sample the user supplies and write its baseline (per-feature
statistics for tabular inputs, the output distribution for every model) for the monitor's drift job."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mdk.config import ModelConfig
from mdk_runtime import drift
from mdk_runtime.errors import MdkError

CHUNK = 1000  # instances per local prediction call
SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json", ".npy")


class BaselineError(MdkError):
    """The sample cannot be read, or the model cannot answer it."""

    status = 400
    code = "invalid_baseline_sample"


def read_sample(path: Path) -> list[Any]:
    """Instances of a sample file in the formats the predict route takes: CSV rows of numbers (a header
    line is skipped), JSON Lines (one instance a line), a JSON request (``{"instances": [...]}``,
    ``{"inputs": {...}}``) or list, or a ``.npy`` array (one instance per row)."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise BaselineError(f"data: expected a {', '.join(SUFFIXES)} file, got {path.name!r}")
    if not path.is_file():
        raise BaselineError(f"data: file not found: {path}")
    if suffix == ".npy":
        array = np.load(path, allow_pickle=False)
        if (
            array.dtype.kind == "f"
        ):  # float32's shortest text (4.8, not 4.800000190734863), as clients send it
            array = array.astype(str).astype(np.float64)
        return [row.tolist() for row in array] if array.ndim > 1 else array.tolist()
    text = path.read_text(encoding="utf-8")
    if suffix == ".csv":
        rows = []
        for i, line in enumerate(x for x in text.splitlines() if x.strip()):
            try:
                rows.append([float(f) for f in line.split(",")])
            except ValueError:
                if i == 0:
                    continue  # a header
                raise BaselineError(f"data: line {i + 1}: expected comma-separated numbers") from None
        return rows
    if suffix in (".jsonl", ".ndjson"):
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            raise BaselineError(f"data: not JSON Lines: {exc}") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise BaselineError(f"data: not JSON: {exc}") from None
    return instances_of(doc)


def instances_of(doc: Any) -> list[Any]:
    """The instances of a JSON prediction request body (``instances``, ``inputs`` as name -> batch, or a
    bare list)."""
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict) and isinstance(doc.get("instances"), list):
        return list(doc["instances"])
    if isinstance(doc, dict) and isinstance(doc.get("inputs"), dict):
        inputs = doc["inputs"]
        sizes = {len(v) for v in inputs.values() if isinstance(v, list)}
        if len(sizes) == 1:
            n = sizes.pop()
            return [{k: v[i] for k, v in inputs.items()} for i in range(n)]
    if isinstance(doc, dict) and isinstance(doc.get("inputs"), list):
        return list(doc["inputs"])
    raise BaselineError('data: expected {"instances": [...]}, {"inputs": {...}} or a list of instances')


def compute_baseline(model: ModelConfig, data: Path) -> dict[str, Any]:
    """Run ``model`` (its bundle, as ``mdk serve`` loads it) on the sample and summarise it."""
    from mdk.bundle import write_bundle
    from mdk_runtime.service import InferenceService, Settings

    instances = read_sample(data)
    if not instances:
        raise BaselineError(f"data: {data.name} holds no instances")
    with tempfile.TemporaryDirectory(prefix="mdk-baseline-") as tmp:
        bundle = write_bundle(model, Path(tmp) / model.name)
        service = InferenceService.load(Settings(model_dir=bundle, threads=1))
        if service.model is None:
            assert service.load_error is not None
            raise BaselineError(f"model {model.name!r} failed to load: {service.load_error.message}")
        signature = service.model.signature
        predictions: list[Any] = []
        for start in range(0, len(instances), CHUNK):
            body = json.dumps({"instances": instances[start : start + CHUNK]}).encode()
            reply = service.predict(body, "application/json", "application/json")
            if reply.status != 200:
                raise BaselineError(
                    f"data: rows {start + 1}-{start + CHUNK}: the model refused them ({reply.status}): "
                    f"{reply.body.decode(errors='replace')[:300]}"
                )
            predictions.extend(json.loads(reply.body)["predictions"])
        tabular = service.processor is None and all(
            s.dtype is not None and s.dtype.kind in "iuf" and (s.rank or 0) <= 2 for s in signature.inputs
        )
        return drift.build_baseline(
            model.name,
            service.version,
            instances,
            predictions,
            input_names=[s.name for s in signature.inputs],
            tabular=tabular,
        )


def default_out(model: ModelConfig) -> Path:
    return model.artifact.parent / "baseline.json"


def write_baseline(doc: dict[str, Any], out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return out
