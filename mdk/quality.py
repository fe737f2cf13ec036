"""``mdk baseline``: run a model locally on a sample the user supplies and write its baseline (per-feature
statistics for tabular inputs, the output distribution for every model) for the monitor's drift job."""

from __future__ import annotations

import json
import math
import os
import tempfile
from datetime import UTC, datetime, timedelta
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


# -- `mdk capture export` and `mdk quality`: what the deployment captured and what the monitor found -----


def parse_since(text: str, now: datetime) -> datetime:
    """``24h``, ``30m``, ``7d`` before ``now``, or an ISO 8601 time (UTC unless it says otherwise)."""
    value = text.strip()
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if value[-1:] in units and value[:-1].isdigit():
        return now - timedelta(**{units[value[-1]]: int(value[:-1])})
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BaselineError(
            f"--since: expected a duration (24h, 30m, 7d) or an ISO 8601 time, got {text!r}"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def capture_bucket(ops: Any, bucket: str | None) -> str:
    """--bucket, else $MDK_CAPTURE_BUCKET, else the shared stack's export
    ``<project>-<stage>-capture-bucket``."""
    return bucket or os.environ.get("MDK_CAPTURE_BUCKET") or _export(ops, "capture-bucket", "--bucket")


def feedback_table(ops: Any, table: str | None) -> str | None:
    """--table, else $MDK_FEEDBACK_TABLE, else the export ``<project>-<stage>-feedback-table`` (None:
    none)."""
    if table or os.environ.get("MDK_FEEDBACK_TABLE"):
        return table or os.environ["MDK_FEEDBACK_TABLE"]
    try:
        return _export(ops, "feedback-table", "--table")
    except BaselineError:
        return None


def _export(ops: Any, what: str, option: str) -> str:
    name = f"{ops.deployment}-{what}"
    paginator = ops.client("cloudformation").get_paginator("list_exports")
    for page in ops.attempt("reading the deployment's exports", lambda: list(paginator.paginate())):
        for export in page.get("Exports", []):
            if export.get("Name") == name:
                return str(export["Value"])
    raise BaselineError(
        f"{option}: no export {name} (is {ops.deployment} deployed with capture?); name it with {option}"
    )


def export_rows(
    s3: Any, dynamodb: Any, *, model: str, bucket: str, table: str | None, since: datetime, now: datetime
) -> list[dict[str, Any]]:
    """One row per captured instance since ``since``: id, time, version, input, output, and its feedback
    (label or value), read exactly as the monitor job reads them."""
    from lambda_handlers import monitor

    hours = max(1, math.ceil((now - since).total_seconds() / 3600))
    config = monitor.Config(
        model=model, bucket=bucket, prefix=f"capture/{model}", table=table, window_hours=hours
    )
    capture = monitor.read_capture(s3, config, now)
    instances = [i for i in capture.instances if (monitor._time(i.time) or now) >= since]
    truth = monitor.feedback(dynamodb, table, model, [i.id for i in instances]) if table and instances else {}
    return [
        {
            "id": i.id,
            "time": i.time,
            "version": i.version,
            "input": i.input,
            "output": i.output,
            "label": truth.get(i.id, {}).get("label"),
            "value": truth.get(i.id, {}).get("value"),
        }
        for i in instances
    ]


def write_rows(rows: list[dict[str, Any]], out: Path) -> None:
    if out.suffix == ".parquet":
        try:
            import pyarrow as pa  # type: ignore[import-not-found, unused-ignore]
            import pyarrow.parquet as pq  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise BaselineError(
                "--out: writing .parquet needs pyarrow, which is not installed here; install it "
                "(pip install pyarrow) or write .jsonl"
            ) from None
        table = pa.Table.from_pylist(
            [{k: json.dumps(v) if k in ("input", "output") else v for k, v in r.items()} for r in rows]
        )
        pq.write_table(table, out)
        return
    if out.suffix not in (".jsonl", ".ndjson"):
        raise BaselineError(f"--out: expected a .jsonl or .parquet file, got {out.name!r}")
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))


def run_summaries(s3: Any, *, model: str, bucket: str) -> list[dict[str, Any]]:
    """The monitor's run summaries (``monitor/<model>/runs/``), oldest first."""
    summaries = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"monitor/{model}/runs/"):
        for obj in page.get("Contents", []):
            try:
                summaries.append(json.loads(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()))
            except ValueError:
                continue
    return sorted(summaries, key=lambda s: str(s.get("time", "")))


def summary_rows(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table rows: per run, the overall figures and each version's."""
    rows = []
    for summary in summaries:
        for version, stats in [
            ("all", summary.get("overall") or {}),
            *(summary.get("versions") or {}).items(),
        ]:
            result = stats.get("drift") or {}
            rows.append(
                {
                    "time": summary.get("time"),
                    "version": version,
                    "accuracy": stats.get("accuracy"),
                    "mae": stats.get("mae"),
                    "coverage": stats.get("coverage"),
                    "captured": stats.get("captured"),
                    "drift_max": result.get("max"),
                    "worst": result.get("worst"),
                }
            )
    return rows


def quality_png(summaries: list[dict[str, Any]], out: Path) -> None:
    """Quality and drift over time (overall), one PNG; needs matplotlib."""
    try:
        import matplotlib as mpl  # type: ignore[import-not-found, unused-ignore]

        mpl.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise BaselineError(
            "--png: drawing the chart needs matplotlib, which is not installed here; install it "
            "(pip install matplotlib) or leave out --png"
        ) from None
    times = [datetime.fromisoformat(str(s["time"]).replace("Z", "+00:00")) for s in summaries]
    overall = [s.get("overall") or {} for s in summaries]
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 5))
    name = "MAE" if any(o.get("mae") is not None for o in overall) else "accuracy"
    top.plot(times, [o.get(name.lower()) for o in overall], marker="o", label=name)
    top.plot(times, [o.get("coverage") for o in overall], marker=".", label="feedback coverage")
    top.legend()
    bottom.plot(times, [(o.get("drift") or {}).get("max") for o in overall], marker="o", color="tab:red")
    bottom.set_ylabel("drift (PSI, max)")
    figure.autofmt_xdate()
    figure.savefig(out, dpi=100)
    plt.close(figure)
