"""The benchmark's targets and verdicts (met / missed, with the figure): importable without the side
effects of ``python -m bench`` (it sets the log level of the whole process)."""

from __future__ import annotations

from typing import Any

TARGETS = {
    "overhead_us": 30.0,  # warm in-process overhead over raw onnxruntime, batch-1 iris, p50, metrics on
    # ... set where the naive FastAPI + Mangum route added ~140 us: the same target as a share of the
    # naive route's overhead measured in this run, so a slower or faster machine moves both alike
    "overhead_vs_naive": round(30.0 / 140.0, 3),
    "init_ratio": 1.2,  # INIT under the RIE vs a bare onnxruntime handler
    "mlp_ratio": 1.5,  # 64-row (64x256) request of the 1M-parameter model vs raw inference, JSON body
    "mlp_npy_ratio": 1.1,  # the same request with an .npy body
    "serving_ratio": 0.8,  # the SageMaker container's throughput vs raw at its effective batch (32 connections)
    "lone_request_ms": 1.0,  # the container's p50 at 1 connection over raw batch-1 inference
    "batch_ratio": 0.7,  # the container's JSON Lines path vs a minimal orjson/numpy/onnxruntime pipeline
}


def verdict(value: float, target: float, *, unit: str) -> str:
    """For targets that are ceilings."""
    if value <= target:
        return f"met ({value:g}{unit} <= {target:g}{unit})"
    return f"MISSED by {value - target:.3g}{unit} ({value:g}{unit} > {target:g}{unit})"


def verdict_at_least(value: float, target: float, *, unit: str) -> str:
    """For targets that are floors."""
    if value >= target:
        return f"met ({value:g}{unit} >= {target:g}{unit})"
    return f"MISSED by {target - value:.3g}{unit} ({value:g}{unit} < {target:g}{unit})"


def serving_targets(peers: dict[str, Any]) -> dict[str, str]:
    """The container's verdicts from the peers comparison: ahead of BentoML and LitServe at every model and
    connection count (every round), >= 0.8x raw at its effective batch under 32 connections, and a lone
    request (1 connection) answered within 1 ms of raw batch-1 inference (p50)."""
    out: dict[str, str] = {}
    for model, entry in peers["models"].items():
        summary = entry.get("summary", {})
        kit = summary.get("kit")
        if kit is None:
            out[f"serving container, {model}"] = (
                "MISSED: the kit's container has no figures (see the errors above)"
            )
            continue
        behind = []
        for connections, figures in kit.items():
            for peer in ("bentoml", "litserve"):
                span = figures.get(f"kit_over_{peer}")
                if span is None:
                    behind.append(f"{peer} at {connections}: no figures")
                elif span[0] <= 1.0:
                    behind.append(f"{peer} at {connections} connections ({span[0]:g}x in the worst round)")
        ahead = min(
            (figures[f"kit_over_{p}"][0] for figures in kit.values() for p in ("bentoml", "litserve")
             if f"kit_over_{p}" in figures),
            default=0.0,
        )  # fmt: skip
        out[f"serving container ahead of BentoML and LitServe, {model}, 1/8/32 connections, every round"] = (
            f"met (worst kit / peer {ahead:g}x)"
            if not behind
            else "MISSED: behind or equal to " + "; ".join(behind)
        )
        at32 = kit.get("32")
        if at32 is not None:
            out[f"serving container, {model}, 32 connections, vs raw at its effective batch"] = (
                verdict_at_least(at32["ratio_to_raw"][0], TARGETS["serving_ratio"], unit="x")
                + f" (effective batch {at32['effective_batch'][0]:g}-{at32['effective_batch'][1]:g})"
            )
        at1 = kit.get("1")
        if at1 is not None:
            raw_ms = 1000.0 / at1["raw_rows_per_s"][1] if at1["raw_rows_per_s"][1] else 0.0
            over = round(at1["p50_ms"][1] - raw_ms, 3)
            out[f"serving container, {model}, 1 connection, p50 over raw batch-1 inference"] = (
                verdict(over, TARGETS["lone_request_ms"], unit=" ms")
                + f" (p50 {at1['p50_ms'][1]:g} ms in the worst round, raw {raw_ms:.3f} ms)"
            )
    return out
