"""A 100 MB+ model's cold start and memory against a tiny model's, measured in fresh processes.

The large model is a MatMul chain of float32 weights (~110 MB of initializers, built with onnx.helper in a
temporary directory, never committed); the tiny one a single 4x4 MatMul. Each measurement runs in its own
Python process (so one model's allocations never flatter the other's): import onnxruntime, create the
session with the kit's own session options, run the first (warm-up) inference, then a second one, reading
the process's resident set (``VmRSS``) after each step and its peak (``VmHWM``) at the end. The two models
take turns, so a drift of this machine hits both alike.

``python -m bench.large_model`` prints the figures as JSON (what ``make bench`` reports); ``measure`` is also
how the working-memory rule of ``mdk/sizing.py`` was derived (see the comment there).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mdk.sizing import artifact_bytes

REPO = Path(__file__).resolve().parent.parent
WIDTH = 1024  # one weight: 1024 x 1024 float32 = 4 MiB
TARGET_BYTES = 110 * 10**6


def matmul_chain(path: Path, *, target_bytes: int = TARGET_BYTES, width: int = WIDTH, seed: int = 0) -> Path:
    """An ONNX graph ``x @ W0 @ W1 ...`` with at least ``target_bytes`` of float32 weights, at ``path``."""
    layers = max(1, math.ceil(target_bytes / (width * width * 4)))
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    current = "x"
    for i in range(layers):
        # Scaled so the product neither vanishes nor overflows along the chain.
        w = (rng.standard_normal((width, width), dtype=np.float32) / np.float32(math.sqrt(width))).astype(
            np.float32
        )
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        out = "y" if i == layers - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [current, f"w{i}"], [out]))
        current = out
    graph = helper.make_graph(
        nodes,
        "matmul_chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="mdk-bench")
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


def tiny(path: Path) -> Path:
    """The smallest useful baseline: one 4x4 MatMul."""
    return matmul_chain(path, target_bytes=1, width=4)


# ------------------------------------------------------------------------------------------------
# One measurement, in a fresh process
# ------------------------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _feeds(session: Any, dims: dict[str, int]) -> dict[str, np.ndarray]:
    """Random inputs for every graph input: a named dimension from ``dims``, any other free one 1."""
    kinds = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}
    feeds = {}
    for item in session.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else dims.get(str(d), 1) for d in item.shape]
        dtype = kinds.get(item.type, np.float32)
        feeds[item.name] = np.random.default_rng(0).random(shape).astype(dtype)
    return feeds


def _child(artifact: str, dims: dict[str, int]) -> dict[str, Any]:
    """Runs in the measured process: import, session, warm-up and a second run, RSS after each."""
    start = time.perf_counter()
    import onnxruntime as ort

    from mdk_runtime.model import session_options

    imported = time.perf_counter()
    before = _status_kib("VmRSS")
    session = ort.InferenceSession(
        artifact, sess_options=session_options(1), providers=["CPUExecutionProvider"]
    )
    created = time.perf_counter()
    after_session = _status_kib("VmRSS")
    feeds = _feeds(session, dims)
    session.run(None, feeds)
    warmed = time.perf_counter()
    after_warm_up = _status_kib("VmRSS")
    session.run(None, feeds)
    second = time.perf_counter()
    return {
        "import_ms": round((imported - start) * 1e3, 1),
        "session_ms": round((created - imported) * 1e3, 1),
        "warm_up_ms": round((warmed - created) * 1e3, 1),
        "second_run_ms": round((second - warmed) * 1e3, 2),
        "rss_before_mib": round(before / 1024, 1),
        "rss_after_session_mib": round(after_session / 1024, 1),
        "rss_after_warm_up_mib": round(after_warm_up / 1024, 1),
        "peak_rss_mib": round(_status_kib("VmHWM") / 1024, 1),
    }


def measure(artifact: Path, dims: dict[str, int] | None = None) -> dict[str, Any]:
    """One cold start of ``artifact`` in a fresh Python process (see the module's docstring)."""
    code = (
        "import json, sys; from bench.large_model import _child; "
        "print(json.dumps(_child(sys.argv[1], json.loads(sys.argv[2]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(artifact), json.dumps(dims or {})],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'layers' / 'python'}"},
    )
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["model_mib"] = round(artifact_bytes(artifact) / 2**20, 1)
    figures["working_mib"] = round(figures["peak_rss_mib"] - figures["rss_before_mib"], 1)
    return figures


def compare(*, n: int = 3) -> dict[str, Any]:
    """The large and the tiny model, ``n`` fresh processes each, taking turns: medians."""
    with tempfile.TemporaryDirectory(prefix="mdk-bench-large-") as tmp:
        models = {
            "tiny": tiny(Path(tmp) / "tiny" / "model.onnx"),
            "large": matmul_chain(Path(tmp) / "large" / "model.onnx"),
        }
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in models}
        for _ in range(n):
            for name, artifact in models.items():
                runs[name].append(measure(artifact))
    out: dict[str, Any] = {"runs": n}
    for name, samples in runs.items():
        out[name] = {
            key: round(statistics.median(s[key] for s in samples), 2)
            for key in samples[0]
            if isinstance(samples[0][key], int | float)
        }
    large, small = out["large"], out["tiny"]
    out["cold_start_extra_ms"] = round(
        large["session_ms"] + large["warm_up_ms"] - small["session_ms"] - small["warm_up_ms"], 1
    )
    out["peak_rss_extra_mib"] = round(large["peak_rss_mib"] - small["peak_rss_mib"], 1)
    out["peak_extra_per_model_mib"] = round(out["peak_rss_extra_mib"] / large["model_mib"], 2)
    return out


def report_lines(figures: dict[str, Any]) -> list[str]:
    """The ``make bench`` report's section."""
    large, small = figures["large"], figures["tiny"]
    lines = [
        f"## A 100 MB+ model: cold start and memory (median of {figures['runs']} fresh processes each)",
        "",
        "Session creation with the kit's session options (one thread, all graph optimisations), then the",
        "first inference (warm-up) of one row; RSS read from /proc after each step, peak = VmHWM.",
        "",
        "| model | file MiB | session ms | warm-up ms | 2nd run ms | RSS before | after session | "
        "after warm-up | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in (("tiny (4x4 MatMul)", small), ("MatMul chain, float32", large)):
        lines.append(
            f"| {name} | {row['model_mib']} | {row['session_ms']} | {row['warm_up_ms']} | "
            f"{row['second_run_ms']} | {row['rss_before_mib']} | {row['rss_after_session_mib']} | "
            f"{row['rss_after_warm_up_mib']} | {row['peak_rss_mib']} |"
        )
    lines += [
        "",
        f"The large model adds {figures['cold_start_extra_ms']} ms of cold start (session + warm-up) and "
        f"{figures['peak_rss_extra_mib']} MiB of peak RSS ({figures['peak_extra_per_model_mib']}x its file "
        "size) over the tiny one.",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a 100 MB+ model's cold start and RSS vs a tiny model's")
    parser.add_argument("-n", type=int, default=3, help="fresh processes per model")
    parser.add_argument("--measure", type=Path, help="measure one ONNX file instead")
    parser.add_argument("--dim", action="append", default=[], help="NAME=SIZE for a named input dimension")
    args = parser.parse_args(argv)
    if args.measure is not None:
        dims = {k: int(v) for k, v in (d.split("=", 1) for d in args.dim)}
        print(json.dumps(measure(args.measure, dims), indent=2))
        return 0
    figures = compare(n=args.n)
    print(json.dumps(figures, indent=2))
    print("\n".join(report_lines(figures)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
