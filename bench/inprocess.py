"""Warm, in-process latency: raw ``session.run`` vs the Lambda handler vs FastAPI + Mangum, one run."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.stats import Summary, summarize


def time_calls(fn: Callable[[], Any], *, n: int, warmup: int) -> Summary:
    for _ in range(warmup):
        fn()
    samples = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(n):
            start = time.perf_counter_ns()
            fn()
            samples.append(time.perf_counter_ns() - start)
    finally:
        gc.enable()
    return summarize(samples)


def api_event(path: str, body: str) -> dict[str, Any]:
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
    return recorded("v1", "POST", path, body, headers)


def measure(bundle: Path, rows: np.ndarray, *, n: int, warmup: int) -> dict[str, Summary]:
    """Latency of one request of ``rows`` through each layer, same model and session options."""
    from mangum import Mangum

    from lambda_handlers import inference
    from lambda_handlers.api import create_app
    from mdk_runtime.service import InferenceService, Settings

    service = InferenceService.load(Settings(model_dir=bundle, threads=1))
    assert service.model is not None, service.load_error
    session = service.model.session
    name = service.model.signature.inputs[0].graph_name
    feeds = {name: rows}
    body = json.dumps({"instances": rows.tolist()})
    event = api_event(f"/models/{service.name}/predict", body)
    from tests.events import FakeLambdaContext

    context = FakeLambdaContext(function_name="mdk-bench", aws_request_id="bench")
    app = Mangum(create_app(service), lifespan="off")
    check = inference.handler(event, context, service=service)
    assert check["statusCode"] == 200, check
    assert app(event, context)["body"] == check["body"]

    results: dict[str, Summary] = {}
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):  # EMF lines go to stdout
        results["raw session.run"] = time_calls(lambda: session.run(None, feeds), n=n, warmup=warmup)
        results["service.predict (bytes in, bytes out)"] = time_calls(
            lambda: service.predict(body.encode(), "application/json", "application/json"), n=n, warmup=warmup
        )
        results["handler (event in, response out, EMF metrics)"] = time_calls(
            lambda: inference.handler(event, context, service=service), n=n, warmup=warmup
        )
        results["FastAPI + Mangum, same app (the naive path)"] = time_calls(
            lambda: app(event, context), n=max(n // 4, 200), warmup=warmup // 4
        )
    return results


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
