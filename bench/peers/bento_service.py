"""The BentoML peer: ``bentoml serve bento_service:Mlp --working-dir bench/peers`` (benchmark venv).

Environment: ``PEER_MODEL`` (the .onnx file), ``PEER_DEVICE`` (cpu or gpu), ``PEER_STATS`` (the counter
file), ``PEER_MAX_LATENCY_MS``.

Body: ``{"features": [[f0, ..., f255]]}`` (one row, BentoML's JSON for an ``np.ndarray`` parameter of a
batchable API: requests are concatenated along ``batch_dim=0``); answer: the row's output, ``[[p0, ...]]``.

Batching: BentoML's adaptive batching has no fixed wait like the kit's 2 ms delay. Its dispatcher learns
how long to hold the first request of a batch (a regression of batch time on batch size, the wait bounded
by 0.95 x ``max_latency_ms``), dispatches at ``max_batch_size`` rows, and cancels with HTTP 503 the requests
whose expected latency would exceed ``max_latency_ms``: it is a latency objective, not a delay
(https://docs.bentoml.com/en/latest/get-started/adaptive-batching.html). The kit never sheds load, so
``max_latency_ms`` is set high (10 s, BentoML's default is 60 s): the learnt wait is BentoML's counterpart
of the kit's delay, and no request is refused.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml  # type: ignore[import-not-found]
import numpy as np
from common import MAX_BATCH_SIZE, Counter, run, session  # type: ignore[import-not-found]

MAX_LATENCY_MS = int(os.environ.get("PEER_MAX_LATENCY_MS", "10000"))
# One worker process; on GPU BentoML's allocator gives it GPU 0 (CUDA_VISIBLE_DEVICES), as its docs set up.
GPU = {"resources": {"gpu": 1}} if os.environ.get("PEER_DEVICE") == "gpu" else {}


@bentoml.service(workers=1, traffic={"timeout": 60}, **GPU)
class Mlp:
    def __init__(self) -> None:
        self.sess, self.name = session(os.environ["PEER_MODEL"], os.environ.get("PEER_DEVICE", "cpu"))
        self.counter = Counter(os.environ["PEER_STATS"])

    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)  # type: ignore[untyped-decorator]
    def predict(self, features: np.ndarray) -> np.ndarray:
        out: Any = run(self.sess, self.name, self.counter, features)
        return out  # type: ignore[no-any-return]
