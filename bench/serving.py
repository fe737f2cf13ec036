"""Throughput of the SageMaker serving container under concurrent single-row clients, against raw
onnxruntime at the batch size the container's dynamic batching actually reached, in one run.

The container runs as SageMaker runs it (``python -m sagemaker_endpoints.serve``, uvicorn with uvloop
and httptools, one onnxruntime thread) in its own process; the clients are a lean keep-alive HTTP/1.1
loop in this process (httpx would spend more CPU per request than the server), so both share this
machine's two cores, as the raw baseline does not: the ratio is conservative.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent


async def _client(host: str, port: int, body: bytes, stop_at: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    request = (
        f"POST /invocations HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    try:
        while time.perf_counter() < stop_at:
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            payload = await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"the container answered {head.splitlines()[0]!r}: {payload[:200]!r}")
            counts[0] += 1
    finally:
        writer.close()


async def _load(host: str, port: int, body: bytes, clients: int, seconds: float) -> int:
    counts = [0]
    stop_at = time.perf_counter() + seconds
    await asyncio.gather(*(_client(host, port, body, stop_at, counts) for _ in range(clients)))
    return counts[0]


def _get(url: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def container_throughput(
    bundle: Path,
    row: list[float],
    *,
    clients: int = 32,
    seconds: float = 10.0,
    max_batch: int = 32,
    delay_ms: int = 2,
) -> dict[str, Any]:
    from tests.sagemaker.conftest import free_port

    port = free_port()
    env = {
        **os.environ,
        "MDK_MODEL_DIR": str(bundle),
        "MDK_HOST": "127.0.0.1",
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "MDK_DEVICE": "cpu",
        "MDK_ORT_THREADS": "1",
        "MDK_MAX_BATCH_SIZE": str(max_batch),
        "MDK_MAX_BATCH_DELAY_MS": str(delay_ms),
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "sagemaker_endpoints.serve", "serve"], env=env, cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _get(f"{url}/ping")["status"] == "ok":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the container did not become ready")
            time.sleep(0.05)
        body = json.dumps({"instances": [row]}).encode()
        asyncio.run(_load("127.0.0.1", port, body, clients, 1.0))  # warm-up
        before = _get(f"{url}/stats")
        started = time.perf_counter()
        served = asyncio.run(_load("127.0.0.1", port, body, clients, seconds))
        elapsed = time.perf_counter() - started
        after = _get(f"{url}/stats")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    batches = after["batches"] - before["batches"]
    rows = after["rows"] - before["rows"]
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": served,
        "rows_per_s": round(served / elapsed, 1),
        "effective_batch": round(rows / batches, 2) if batches else 0.0,
    }


def raw_throughput(model_path: Path, row: list[float], batch: int, *, seconds: float = 5.0) -> float:
    """Rows per second of ``session.run`` at ``batch`` rows (one thread, like the container's)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    feeds = {name: np.tile(np.asarray([row], dtype=np.float32), (batch, 1))}
    for _ in range(20):
        session.run(None, feeds)
    runs = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, feeds)
        runs += 1
    return runs * batch / (time.perf_counter() - started)
