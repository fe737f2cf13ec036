"""The inference function's EMF documents (mdk_runtime.emf) are the ones Powertools' Metrics writes.

Each scenario runs twice: through Powertools as the handler used it (``log_metrics(capture_cold_start_
metric=True)``, ``add_metric``, ``single_metric``) and through the emitter; the documents must be equal,
timestamps aside, whatever their order on stdout.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from typing import Any

import pytest
from aws_lambda_powertools.metrics import Metrics, MetricUnit, single_metric
from aws_lambda_powertools.metrics.provider import cold_start

from mdk_runtime import emf
from tests.events import FakeLambdaContext

ENV = {"POWERTOOLS_SERVICE_NAME": "mdk-inference", "POWERTOOLS_METRICS_NAMESPACE": "mdk"}
DIMS = {"Model": "iris", "ModelVersion": 'v1-%é"q'}  # %, non-ASCII and a quote survive the template


def _docs(text: str) -> list[dict[str, Any]]:
    docs = [json.loads(line) for line in text.splitlines() if line]
    for doc in docs:
        assert isinstance(doc["_aws"].pop("Timestamp"), int)
    return sorted(docs, key=lambda d: json.dumps(d, sort_keys=True))


# A scenario: (name, unit, value) for the invocation's set, then the single metric's extra dimensions.
Scenario = tuple[list[tuple[str, str, float]], dict[str, str] | None]
SCENARIOS: dict[str, Scenario] = {
    "served": ([("Latency", "Milliseconds", 0.123), ("Instances", "Count", 3)], None),
    "first request": (
        [
            ("InitDuration", "Milliseconds", 812.5),
            ("Latency", "Milliseconds", 1.5),
            ("Instances", "Count", 64),
        ],
        None,
    ),
    "client error": ([("ClientErrors", "Count", 1)], {"ErrorCode": "invalid_input"}),
    "server error": ([("ServerErrors", "Count", 1)], {"ErrorCode": "inference_timeout"}),
    "health": ([], None),
}


def powertools(scenario: Scenario, *, cold: bool, dims: dict[str, str]) -> str:
    metrics = Metrics(namespace="mdk", service="mdk-inference")
    metrics.clear_metrics()
    if dims:
        metrics.set_default_dimensions(**dims)
    cold_start.is_cold_start = cold
    values, extra = scenario

    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: Any, context: Any) -> None:
        for name, unit, value in values:
            metrics.add_metric(name=name, unit=MetricUnit[unit], value=value)
        if extra is not None:
            with single_metric(
                name="ErrorsByCode",
                unit=MetricUnit.Count,
                value=1,
                namespace=metrics.namespace,
                default_dimensions={**metrics.default_dimensions, **extra},
            ):
                pass

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.warns() if not values else contextlib.nullcontext():
        handler({}, FakeLambdaContext(function_name="mdk-iris"))
    metrics.set_default_dimensions()
    metrics.clear_metrics()
    metrics.default_dimensions.clear()
    return out.getvalue()


def ours(scenario: Scenario, *, cold: bool, dims: dict[str, str], environ: dict[str, str]) -> str:
    out = io.StringIO()
    emitter = emf.Emitter("mdk", "mdk-inference", environ=environ, stream=out)
    emitter.cold = cold
    if dims:
        emitter.set_default_dimensions(**dims)
    values, extra = scenario
    served = [v for v in values if v[0] in ("Latency", "Instances")]
    for name, unit, value in values:
        if name not in ("Latency", "Instances"):
            emitter.add(name, unit, value)
    if served:
        emitter.served(served[0][2], int(served[1][2]))
    if extra is not None:
        emitter.single("ErrorsByCode", "Count", 1, {**emitter.default_dimensions, **extra})
    emitter.cold_start(FakeLambdaContext(function_name="mdk-iris"))
    emitter.flush()
    return out.getvalue()


@pytest.mark.parametrize("name", list(SCENARIOS))
@pytest.mark.parametrize("cold", [True, False])
@pytest.mark.parametrize("with_env", [True, False])
@pytest.mark.parametrize("dims", [DIMS, {}])
def test_documents_equal_powertools(
    name: str, cold: bool, with_env: bool, dims: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = ENV if with_env else {}
    for key in ENV:
        monkeypatch.delenv(key, raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    expected = _docs(powertools(SCENARIOS[name], cold=cold, dims=dims))
    assert _docs(ours(SCENARIOS[name], cold=cold, dims=dims, environ=environ)) == expected
    if name == "health" and not cold:
        assert expected == []  # nothing to write, nothing written
    else:
        assert expected  # the comparison is of real documents


def test_a_served_line_is_one_write_of_valid_emf_with_a_current_timestamp() -> None:
    writes: list[str] = []

    class Stream(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

    emitter = emf.Emitter("mdk", "mdk-inference", environ={}, stream=Stream())
    emitter.set_default_dimensions(Model="iris", ModelVersion="1")
    before = int(time.time() * 1000)
    emitter.served(0.042, 1)
    assert len(writes) == 1
    assert writes[0].endswith("\n")
    assert writes[0].count("\n") == 1
    doc = json.loads(writes[0])
    assert before <= doc["_aws"]["Timestamp"] <= int(time.time() * 1000)
    assert doc["Latency"] == [0.042]
    assert doc["Instances"] == [1.0]
    assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Model", "ModelVersion", "service"]]


@pytest.mark.parametrize(
    ("environ", "disabled"),
    [
        ({}, False),
        ({"POWERTOOLS_METRICS_DISABLED": "true"}, True),
        ({"POWERTOOLS_DEV": "1"}, True),
        ({"POWERTOOLS_DEV": "1", "POWERTOOLS_METRICS_DISABLED": "false"}, False),
    ],
)
def test_metrics_switched_off_as_powertools_does(environ: dict[str, str], disabled: bool) -> None:
    out = io.StringIO()
    emitter = emf.Emitter("mdk", "mdk-inference", environ=environ, stream=out)
    emitter.served(1.0, 1)
    emitter.single("ErrorsByCode", "Count", 1, {"ErrorCode": "x"})
    emitter.cold_start(FakeLambdaContext())
    assert (out.getvalue() == "") is disabled


def test_no_cold_start_under_provisioned_concurrency() -> None:
    out = io.StringIO()
    emitter = emf.Emitter(
        "mdk", "s", environ={"AWS_LAMBDA_INITIALIZATION_TYPE": "provisioned-concurrency"}, stream=out
    )
    emitter.cold_start(FakeLambdaContext())
    assert out.getvalue() == ""
