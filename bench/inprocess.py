"""Warm, in-process latency: raw ``session.run`` vs the Lambda handler vs FastAPI + Mangum, one run."""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.stats import Summary, summarize

HANDLER = "handler (event in, response out, EMF metrics)"


def time_calls(fn: Callable[[], Any], *, n: int, warmup: int) -> Summary:
    return time_interleaved({"": fn}, n=n, warmup=warmup)[""]


def time_interleaved(
    fns: dict[str, Callable[[], Any]], *, n: int, warmup: int, rounds: int = 20
) -> dict[str, Summary]:
    """Time each function ``n`` times, in blocks that take turns over ``rounds`` rounds.

    This machine's speed drifts by tens of percent within a minute (a shared virtual machine): taking
    turns spreads the drift over every candidate, so differences between them stay meaningful, while
    blocks keep each candidate's caches warm as a busy function's would be.
    """
    block = max(1, n // rounds)
    samples: dict[str, list[int]] = {name: [] for name in fns}
    gc.collect()
    gc.disable()
    try:
        for round_ in range(rounds):
            for name, fn in fns.items():
                for _ in range(warmup // rounds if round_ else warmup):
                    fn()
                for _ in range(block):
                    start = time.perf_counter_ns()
                    fn()
                    samples[name].append(time.perf_counter_ns() - start)
    finally:
        gc.enable()
    return {name: summarize(values) for name, values in samples.items()}


def client_json(rows: np.ndarray) -> str:
    """The request body a client sends for these rows: shortest decimal forms, as it holds them."""
    return json.dumps({"instances": rows.astype(np.float64).round(4).tolist()})


def api_event(path: str, body: str | None, method: str = "POST") -> dict[str, Any]:
    """A REST API event of the recorded shape, with the headers an API client sends."""
    from tests.events import api_event as recorded

    headers = {
        "Accept": "application/json",
        "Content-Type": "application/json",
        "Host": "abcdef1234.execute-api.us-east-1.amazonaws.com",
        "User-Agent": "python-requests/2.32.3",
        "X-Amzn-Trace-Id": "Root=1-67a1b2c3-0123456789abcdef01234567",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    return recorded("v1", method, path, body, headers)


def measure(bundle: Path, rows: np.ndarray, *, n: int, warmup: int) -> dict[str, Summary]:
    """Latency of one request of ``rows`` through each layer, same model and session options."""
    from mangum import Mangum

    from lambda_handlers import inference
    from lambda_handlers.api import create_app
    from lambda_handlers.http import to_response
    from mdk_runtime.service import InferenceService, Settings

    service = InferenceService.load(Settings(model_dir=bundle, threads=1))
    assert service.model is not None, service.load_error
    session = service.model.session
    name = service.model.signature.inputs[0].graph_name
    feeds = {name: rows}
    body = client_json(rows)
    event = api_event(f"/models/{service.name}/predict", body)
    from tests.events import FakeLambdaContext

    context = FakeLambdaContext(function_name="mdk-bench", aws_request_id="bench")
    app = Mangum(create_app(service), lifespan="off")
    npy = io.BytesIO()
    np.save(npy, rows)
    npy_event = recorded_event(service.name, npy.getvalue())
    body_bytes = body.encode()
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):  # EMF lines go to stdout
        check = inference.handler(event, context, service=service)
        assert check["statusCode"] == 200, check
        assert app(event, context)["body"] == check["body"]
        assert inference.handler(npy_event, context, service=service)["statusCode"] == 200

    def without_metrics() -> Any:
        reply, v2 = inference.dispatch(service, event)
        assert reply is not None
        return to_response(reply, v2=v2)

    candidates: dict[str, Callable[[], Any]] = {
        "raw session.run": lambda: session.run(None, feeds),
        "service.predict (bytes in, bytes out)": lambda: service.predict(
            body_bytes, "application/json", "application/json"
        ),
        HANDLER: lambda: inference.handler(event, context, service=service),
        "handler without EMF metrics (dispatch + response)": without_metrics,
        "handler, .npy body (base64 event)": lambda: inference.handler(npy_event, context, service=service),
        "FastAPI + Mangum, same app (the naive path)": lambda: app(event, context),
    }
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):  # EMF lines go to stdout
        return time_interleaved(candidates, n=n, warmup=warmup)


def recorded_event(model: str, npy_body: bytes) -> dict[str, Any]:
    from tests.events import api_event as recorded

    headers = {"Accept": "application/json", "Content-Type": "application/x-npy"}
    return recorded("v1", "POST", f"/models/{model}/predict", npy_body, headers, base64_body=True)


def powertools_flush(*, n: int, warmup: int) -> Summary:
    """What the handler pays Powertools per request: two metrics and the EMF flush."""
    from aws_lambda_powertools.metrics import Metrics, MetricUnit

    metrics = Metrics(namespace="mdk-bench")
    metrics.set_default_dimensions(Model="iris", ModelVersion="bench")

    def emit() -> None:
        metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=0.05)
        metrics.add_metric(name="Instances", unit=MetricUnit.Count, value=1)
        metrics.flush_metrics()

    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        return time_calls(emit, n=n, warmup=warmup)


def emf_served(*, n: int, warmup: int) -> Summary:
    """What the handler pays for its metrics per served prediction now: the EMF template filled and
    written (mdk_runtime.emf.Emitter.served), the same documents Powertools' flush wrote."""
    from mdk_runtime import emf

    emitter = emf.Emitter("mdk-bench", "mdk-bench", environ={})
    emitter.set_default_dimensions(Model="iris", ModelVersion="bench")

    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        return time_calls(lambda: emitter.served(0.05, 1), n=n, warmup=warmup)
