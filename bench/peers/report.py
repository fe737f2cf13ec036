"""The comparison as Markdown tables and as a PNG chart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.peers.run import BENCH_VENV, HERE, SERVERS

LABELS = {"kit": "kit container", "bentoml": "BentoML 1.4", "litserve": "LitServe 0.2"}


def _fmt(span: list[float], *, digits: int = 0) -> str:
    low, high = span
    text = f"{low:,.{digits}f}"
    return text if round(low, digits) == round(high, digits) else f"{text}-{high:,.{digits}f}"


def report_lines(results: dict[str, Any]) -> list[str]:
    rounds = results["rounds"]
    lines = [
        f"## The kit's serving container vs BentoML and LitServe ({results['device'].upper()}, wrk)",
        "",
        f"Each server alone in turn ({rounds} round{'s' if rounds > 1 else ''}, min-max), one onnxruntime thread, "
        f"max batch {results['max_batch_size']}; `{results['wrk']}`, one row per request: kit "
        f"`{results['bodies']['kit']}` to /invocations, BentoML `{results['bodies']['bentoml']}` (adaptive "
        f"batching, max_latency_ms {results['bentoml_max_latency_ms']}), LitServe `{results['bodies']['litserve']}` "
        f"(batch_timeout {results['batch_delay_ms'] / 1000:g} s; the kit's delay {results['batch_delay_ms']} ms). "
        "Raw: `session.run` at the batch the server reached, timed right after it stopped. Answers checked against "
        "raw onnxruntime before timing.",
        "",
    ]
    for name, model in results["models"].items():
        lines += [
            f"### {name} ({model['parameters']:,} parameters)",
            "",
            "| server | connections | rows/s | p50 ms | p99 ms | effective batch | raw rows/s at that batch | server / raw | kit / BentoML | kit / LitServe |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        summary = model["summary"]
        for server in SERVERS:
            error = model["servers"][server]["error"]
            if error is not None:
                lines.append(
                    f"| {LABELS[server]} | — | **FAILED**: {error.splitlines()[0][:200]} | | | | | | | |"
                )
                continue
            for connections, s in summary.get(server, {}).items():
                vs = [
                    _fmt(s[f"kit_over_{p}"], digits=2) + "x" if f"kit_over_{p}" in s else ""
                    for p in ("bentoml", "litserve")
                ]
                lines.append(
                    f"| {LABELS[server]} | {connections} | {_fmt(s['rows_per_s'])} | {_fmt(s['p50_ms'], digits=2)} | "
                    f"{_fmt(s['p99_ms'], digits=2)} | {_fmt(s['effective_batch'], digits=1)} | "
                    f"{_fmt(s['raw_rows_per_s'])} | {_fmt(s['ratio_to_raw'], digits=3)} | {vs[0]} | {vs[1]} |"
                )
        lines.append("")
    if results["errors"]:
        lines += ["**Errors** (those servers' figures for that model were dropped):", ""]
        lines += [f"- {e.splitlines()[0][:300]}" for e in results["errors"]]
        lines.append("")
    return lines


def chart(results: dict[str, Any], path: Path) -> Path:
    """A PNG of rows/s per server, connection count and model (bars: the rounds' max, whiskers: their min).

    matplotlib is a benchmark-only dependency: it lives in .cache/bench-venv (requirements-bench.txt), not the
    repo's .venv, so the chart is drawn by bench/peers/chart_png.py in whichever interpreter has it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    try:
        import matplotlib  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        python = str(BENCH_VENV / "bin" / "python")
    subprocess.run(
        [python, str(HERE / "chart_png.py"), str(path)], input=json.dumps(results), text=True, check=True
    )
    return path
