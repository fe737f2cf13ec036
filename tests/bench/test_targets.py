"""The benchmark report's serving verdicts, from a peers result of the shape bench.peers.measure returns."""

from __future__ import annotations

from typing import Any

from bench.targets import serving_targets


def _figures(rows: float, ratio: float, p50: float, raw: float, **vs: list[float]) -> dict[str, Any]:
    return {
        "rows_per_s": [rows, rows],
        "p50_ms": [p50, p50],
        "p99_ms": [p50 * 2, p50 * 2],
        "effective_batch": [1.0, 1.0],
        "raw_rows_per_s": [raw, raw],
        "ratio_to_raw": [ratio, ratio],
        **vs,
    }


def _peers(kit_over: float, ratio32: float, p50_1: float) -> dict[str, Any]:
    kit = {
        "1": _figures(3000, 0.2, p50_1, 20000, kit_over_bentoml=[kit_over, 3], kit_over_litserve=[2, 3]),
        "8": _figures(9000, 0.3, 1.0, 60000, kit_over_bentoml=[2, 3], kit_over_litserve=[2, 3]),
        "32": _figures(12000, ratio32, 2.0, 100000, kit_over_bentoml=[2, 3], kit_over_litserve=[2, 3]),
    }
    return {"models": {"mlp-1m": {"summary": {"kit": kit}}}}


def test_every_target_met() -> None:
    verdicts = serving_targets(_peers(kit_over=1.5, ratio32=0.85, p50_1=0.5))
    assert len(verdicts) == 3
    assert all(v.startswith("met") for v in verdicts.values()), verdicts


def test_a_peer_ahead_in_one_round_is_a_miss_naming_it() -> None:
    verdicts = serving_targets(_peers(kit_over=0.9, ratio32=0.85, p50_1=0.5))
    ahead = next(v for k, v in verdicts.items() if "ahead of" in k)
    assert ahead.startswith("MISSED")
    assert "bentoml at 1 connections" in ahead


def test_ratio_and_lone_request_misses() -> None:
    verdicts = serving_targets(_peers(kit_over=1.5, ratio32=0.5, p50_1=3.0))
    raw = next(v for k, v in verdicts.items() if "vs raw" in k)
    lone = next(v for k, v in verdicts.items() if "1 connection," in k)
    assert raw.startswith("MISSED")
    assert "0.5x" in raw
    # 3.0 ms p50 against 1/20000 s = 0.05 ms of raw inference: 2.95 ms over the 1 ms target
    assert lone.startswith("MISSED")
    assert "2.95" in lone


def test_no_kit_figures_is_a_miss() -> None:
    verdicts = serving_targets({"models": {"mlp-21m": {"summary": {}}}})
    assert next(iter(verdicts.values())).startswith("MISSED")
