"""Batch throughput: the container's JSON Lines path against a minimal reference pipeline, and the
memory of scoring a 1M-line file end to end.

1. In process, same lines, same chunk size: the reference (orjson parse of the chunk -> numpy ->
   ``session.run`` -> orjson dump of each row) against the container's path (``service.predict`` with
   ``application/jsonlines``: per-line parse and validation, an error record for a bad line, labels
   and probabilities for a classifier). Rows per second, best of ``repeat`` passes.
2. End to end, as a transform job runs: the serving container (its own process) and the local
   transform runner (MultiRecord requests of ``max_payload_mb``), over a 1M-line file. Rows per second
   and the peak RSS of both processes (``VmHWM`` of each: the runner is this module run in a subprocess,
   so earlier benchmarks do not count).

``python -m bench.batch e2e BUNDLE FILE`` is the subprocess of part 2 (prints JSON).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

REPO = Path(__file__).resolve().parent.parent
CHUNK = 1024  # lines per request in part 1 (the reference's chunk and the container's request)


def write_lines(path: Path, rows: np.ndarray) -> Path:
    """A JSON Lines file of rows (4 decimals, as a client writes them)."""
    with path.open("wb") as fh:
        for start in range(0, len(rows), 65536):
            block = rows[start : start + 65536].round(4).tolist()
            fh.write(b"".join(orjson.dumps(r) + b"\n" for r in block))
    return path


def reference_rows_per_s(artifact: Path, lines: list[bytes], *, chunk: int = CHUNK, repeat: int = 3) -> float:
    """orjson parse -> numpy -> onnxruntime -> orjson dump, one chunk at a time, one thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(artifact), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    chunks = [lines[i : i + chunk] for i in range(0, len(lines), chunk)]

    def one_pass() -> int:
        size = 0
        for part in chunks:
            rows = np.asarray(orjson.loads(b"[" + b",".join(part) + b"]"), dtype=np.float32)
            outputs = session.run(None, {name: rows})
            columns = [o.tolist() if isinstance(o, np.ndarray) else o for o in outputs]
            body = b"".join(orjson.dumps(list(row)) + b"\n" for row in zip(*columns, strict=True))
            size += len(body)
        return size

    one_pass()
    return len(lines) / _best(one_pass, repeat)


def container_path_rows_per_s(
    bundle: Path, lines: list[bytes], *, chunk: int = CHUNK, repeat: int = 3
) -> float:
    """The container's JSON Lines path, in process: what ``/invocations`` does with a request body."""
    from mdk_runtime.media import JSONL
    from mdk_runtime.service import API_FORMATS, RECORD_FORMATS, InferenceService, Settings

    service = InferenceService.load(Settings(model_dir=bundle, threads=1, max_body_bytes=100 * 2**20))
    bodies = [b"\n".join(lines[i : i + chunk]) + b"\n" for i in range(0, len(lines), chunk)]
    formats = API_FORMATS + RECORD_FORMATS

    def one_pass() -> int:
        size = 0
        for body in bodies:
            reply = service.predict(body, JSONL, JSONL, formats=formats)
            if reply.status != 200:
                raise RuntimeError(f"the container path answered {reply.status}: {reply.body[:200]!r}")
            size += len(reply.body)
        return size

    one_pass()
    return len(lines) / _best(one_pass, repeat)


def _best(run: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def end_to_end(bundle: Path, data: Path, *, max_payload_mb: int = 6, timeout: float = 900) -> dict[str, Any]:
    """Part 2 in a fresh process (its peak RSS is the runner's alone)."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.batch", "e2e", str(bundle), str(data), str(max_payload_mb)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the end-to-end batch run failed: {result.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def _e2e(bundle: Path, data: Path, max_payload_mb: int) -> dict[str, Any]:
    from mdk.local.transform import TransformSettings, container, transform
    from mdk_runtime.media import JSONL

    body_limit = str(max_payload_mb * 2**20 + 1024)
    env = {
        "MDK_MAX_BODY_BYTES": body_limit,
        "MDK_ORT_THREADS": "1",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        # What SageMaker sets in a transform job's container: no InvokeEndpoint response limit there.
        "SAGEMAKER_BATCH": "true",
    }
    output = data.with_suffix(".out")
    with container(bundle, max_batch_size=4096, env=env) as (url, process):
        settings = TransformSettings(content_type=JSONL, max_payload_mb=max_payload_mb)
        with data.open("rb") as source, output.open("wb") as sink:
            result = transform(source, sink, url=url, settings=settings)
        container_peak_kib = _vm_hwm_kib(process.pid)
    # VmHWM, not ru_maxrss: the latter survives exec, so it would report the parent's size at fork.
    runner_peak_kib = _vm_hwm_kib(os.getpid())
    return {
        "lines": result.input_lines,
        "output_lines": result.tally.lines,
        "error_lines": result.tally.error_lines,
        "requests": result.requests,
        "seconds": round(result.seconds, 2),
        "rows_per_s": round(result.input_lines / result.seconds, 1),
        "input_mib": round(data.stat().st_size / 2**20, 1),
        "output_mib": round(output.stat().st_size / 2**20, 1),
        "container_peak_rss_mib": round(container_peak_kib / 1024, 1),
        "runner_peak_rss_mib": round(runner_peak_kib / 1024, 1),
    }


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc (Linux only)")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "e2e":
        print(json.dumps(_e2e(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))))
    else:
        print("usage: python -m bench.batch e2e BUNDLE FILE MAX_PAYLOAD_MB", file=sys.stderr)
        sys.exit(2)
