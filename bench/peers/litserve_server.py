"""The LitServe peer: ``python bench/peers/litserve_server.py MODEL PORT STATS DEVICE`` (benchmark venv).

Body: ``{"input": [f0, ..., f255]}`` (one row; LitServe's natural form, ``decode_request`` takes
``request["input"]``); answer: ``{"output": [p0, ...]}``.

Batching: ``LitAPI(max_batch_size=32, batch_timeout=0.002)``: the inference worker collects requests for up
to 2 ms after the first one, or until 32 (https://lightning.ai/docs/litserve/features/batching), the kit's
settings exactly. LitServe runs one API server process (uvicorn) and one inference worker process, joined by
a multiprocessing queue (``num_api_servers=1``, ``workers_per_device=1``); ``accelerator="cpu"`` only tells
LitServe not to look for torch devices: onnxruntime picks its own provider from ``DEVICE``.
"""

from __future__ import annotations

import sys
from typing import Any

import litserve as ls  # type: ignore[import-not-found]
import numpy as np
from common import BATCH_DELAY_S, MAX_BATCH_SIZE, Counter, run, session  # type: ignore[import-not-found]


class Mlp(ls.LitAPI):  # type: ignore[misc]
    def __init__(self, model: str, stats: str, device: str) -> None:
        super().__init__(max_batch_size=MAX_BATCH_SIZE, batch_timeout=BATCH_DELAY_S)
        self.model, self.stats, self.device_name = model, stats, device

    def setup(self, device: Any) -> None:
        self.sess, self.name = session(self.model, self.device_name)
        self.counter = Counter(self.stats)

    # No annotations on these two: LitServe reads them to build the FastAPI route (none: a plain Request).
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return request["input"]

    def batch(self, inputs: list[Any]) -> np.ndarray:
        return np.asarray(inputs, dtype=np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return run(self.sess, self.name, self.counter, x)  # type: ignore[no-any-return]

    def unbatch(self, output: np.ndarray) -> list[Any]:
        return list(output)

    def encode_response(self, output):  # type: ignore[no-untyped-def]
        return {"output": output.tolist()}


def main() -> None:
    model, port, stats, device = sys.argv[1:5]
    server = ls.LitServer(
        Mlp(model, stats, device), accelerator="cpu", devices=1, workers_per_device=1, timeout=60
    )
    server.run(
        host="127.0.0.1", port=int(port), num_api_servers=1, log_level="warning", generate_client_file=False
    )


if __name__ == "__main__":
    main()
