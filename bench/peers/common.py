"""What the peer servers share (imported by them from the benchmark venv: numpy and onnxruntime only).

Each peer loads the ONNX file with onnxruntime (one intra-op and one inter-op thread, as the kit's
container with ``MDK_ORT_THREADS=1``; the CPU provider, or CUDA first with ``--device gpu``), and counts
the batches and rows its batching handed to ``session.run`` in a counter file (``batches rows``,
rewritten in place after every batch), so the driver knows the effective batch size.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnxruntime as ort

MAX_BATCH_SIZE = 32
BATCH_DELAY_S = 0.002  # the kit's MDK_MAX_BATCH_DELAY_MS=2


def session(model: str, device: str) -> tuple[Any, str]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    providers = (
        ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "gpu" else ["CPUExecutionProvider"]
    )
    sess = ort.InferenceSession(model, options, providers=providers)
    if device == "gpu" and sess.get_providers()[0] != "CUDAExecutionProvider":
        raise RuntimeError(f"--device gpu: onnxruntime fell back to {sess.get_providers()}")
    return sess, sess.get_inputs()[0].name


class Counter:
    """``batches rows`` in a file, rewritten in place (one pwrite per batch, a few microseconds)."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self.batches = 0
        self.rows = 0
        self.add(0)

    def add(self, rows: int) -> None:
        if rows:
            self.batches += 1
            self.rows += rows
        os.pwrite(self.fd, f"{self.batches} {self.rows}\n".encode().ljust(40), 0)


def run(sess: Any, name: str, counter: Counter, batch: np.ndarray) -> np.ndarray:
    out: np.ndarray = sess.run(None, {name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
    counter.add(len(batch))
    return out
