"""Values the model itself refuses at run time: 422 ``input_rejected_by_model``, never a 500, never echoed.

The inputs pass the kit's schema checks; onnxruntime's kernels refuse their values (an Expand to
``[3, -1]``, a Gather index out of range). Genuine faults of the runtime stay 500 ``inference_failed``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pytest
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from mdk_runtime.errors import InferenceFailed, InputRejectedByModel, InvalidInput
from mdk_runtime.service import InferenceService, Reply
from tests.conftest import ServiceFactory
from tests.value_models import expand_to_client_shape, gather_client_indices, reshape_to_client_shape


def answer(reply: Reply) -> Any:
    return json.loads(reply.body)


def predict(service: InferenceService, doc: Any) -> Reply:
    return service.predict(json.dumps(doc).encode(), "application/json", None)


@pytest.fixture
def expander(service: ServiceFactory) -> InferenceService:
    svc = service(expand_to_client_shape(), name="expander", batched=False)
    assert svc.model is not None, svc.load_error
    return svc


@pytest.fixture
def lookup(service: ServiceFactory) -> InferenceService:
    svc = service(gather_client_indices(), name="lookup")
    assert svc.model is not None, svc.load_error
    return svc


def test_values_the_model_accepts_are_answered(expander: InferenceService, lookup: InferenceService) -> None:
    reply = predict(expander, {"inputs": {"shape": [2, 3]}})
    assert reply.status == 200, reply.body
    assert answer(reply)["outputs"]["y"] == [[1.0] * 3] * 2
    reply = predict(lookup, {"instances": [4, -5, 0]})
    assert reply.status == 200, reply.body
    assert answer(reply)["predictions"] == [[8.0, 9.0], [0.0, 1.0], [0.0, 1.0]]


@pytest.fixture
def reshaper(service: ServiceFactory) -> InferenceService:
    svc = service(reshape_to_client_shape(), name="reshaper", batched=False)
    assert svc.model is not None, svc.load_error
    return svc


@pytest.mark.parametrize(
    ("fixture", "values", "operator"),
    [("expander", [3, -1], "Expand"), ("reshaper", [3, 5], "Reshape")],
    ids=["Expand-InvalidArgument", "Reshape-Fail"],
)
def test_a_shape_the_model_refuses_is_a_422_naming_the_input(
    request: pytest.FixtureRequest, fixture: str, values: list[int], operator: str
) -> None:
    svc: InferenceService = request.getfixturevalue(fixture)
    reply = predict(svc, {"inputs": {"shape": values}})
    assert reply.status == 422, reply.body
    error = answer(reply)["error"]
    assert error["code"] == "input_rejected_by_model"
    assert error["field"] == "shape"
    assert "'shape'" in error["message"]
    assert "refused" in error["message"]
    assert operator in error["message"]
    # Nothing of onnxruntime's message: it carries the values (and source paths of the runtime).
    assert not any(str(v) in error["message"] for v in values)
    assert "expand shape" not in error["message"]
    assert "onnxruntime_src" not in error["message"]
    assert isinstance(reply.error, InputRejectedByModel)
    assert isinstance(reply.error, InvalidInput)
    assert predict(svc, {"inputs": {"shape": [2, 2]}}).status == 200


def test_an_index_out_of_range_is_a_422_that_never_echoes_the_value(
    lookup: InferenceService, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG):
        reply = predict(lookup, {"instances": [1, 987654]})
    assert reply.status == 422, reply.body
    error = answer(reply)["error"]
    assert error["code"] == "input_rejected_by_model"
    assert "'idx'" in error["message"]
    assert "Gather" in error["message"]
    assert "987654" not in reply.body.decode()
    # Not in the kit's logs, and not in onnxruntime's own log lines on stderr either.
    captured = capfd.readouterr()
    assert "987654" not in caplog.text + captured.out + captured.err
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_npy_path_classifies_alike(lookup: InferenceService) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, np.array([2, 10**9], dtype=np.int64))
    reply = lookup.predict(buf.getvalue(), "application/x-npy", None)
    assert reply.status == 422
    assert answer(reply)["error"]["code"] == "input_rejected_by_model"
    assert str(10**9) not in reply.body.decode()


class BrokenSession:
    """A session that fails as a broken runtime does, whatever the inputs."""

    def __init__(self, real: Any, exc: BaseException) -> None:
        self._real = real
        self._exc = exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise self._exc


@pytest.mark.parametrize(
    "exc",
    [
        ort_state.RuntimeException("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : bad state"),
        ort_state.EPFail("[ONNXRuntimeError] : 11 : EP_FAIL : CUDA failure 700"),
        ort_state.EngineError("[ONNXRuntimeError] : 5 : ENGINE_ERROR : engine"),
        RuntimeError("the session was closed"),
    ],
    ids=["RuntimeException", "EPFail", "EngineError", "python"],
)
def test_faults_of_the_runtime_stay_server_errors(
    lookup: InferenceService, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    assert lookup.model is not None
    monkeypatch.setattr(lookup.model, "session", BrokenSession(lookup.model.session, exc))
    reply = predict(lookup, {"instances": [1]})
    assert reply.status == 500
    assert answer(reply)["error"]["code"] == "inference_failed"
    assert isinstance(reply.error, InferenceFailed)
