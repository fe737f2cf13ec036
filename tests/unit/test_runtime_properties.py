"""Property tests: whatever a client sends, the runtime answers a proper 2xx/4xx, never a 500."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdk_runtime.service import InferenceService
from tests import onnx_models
from tests.conftest import make_bundle

CLIENT_STATUSES = {200, 400, 406, 413, 415, 422}

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_value = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=40,
)
numbers = st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False))
rows = st.lists(st.lists(numbers, min_size=0, max_size=6), min_size=0, max_size=6)


def check(
    service: InferenceService, body: bytes, content_type: str | None = "application/json"
) -> dict[str, Any]:
    reply = service.predict(body, content_type, None)
    assert reply.status in CLIENT_STATUSES, reply.body
    doc: dict[str, Any] = orjson.loads(reply.body)
    if reply.status != 200:
        assert set(doc) == {"error"}
        assert doc["error"]["code"]
        assert doc["error"]["message"]
    return doc


def services(tmp_path_factory: Any) -> dict[str, InferenceService]:
    made = {}
    for name, model in (
        ("two_inputs", onnx_models.two_inputs()),
        ("tokens", onnx_models.tokens()),
        ("typed", onnx_models.typed()),
        ("fixed", onnx_models.fixed_batch_two()),
        ("scalar", onnx_models.scalar()),
    ):
        bundle = make_bundle(tmp_path_factory.mktemp(name), model, name=name)
        from mdk_runtime.service import Settings

        made[name] = InferenceService.load(Settings(model_dir=bundle, threads=1))
        assert made[name].model is not None
    return made


SLOW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SLOW
@given(doc=json_value)
def test_arbitrary_json_never_breaks_the_runtime(iris_service: InferenceService, doc: Any) -> None:
    check(iris_service, json.dumps(doc).encode())
    check(iris_service, json.dumps({"instances": doc}).encode())
    check(iris_service, json.dumps({"inputs": doc}).encode())
    check(iris_service, json.dumps({"inputs": {"features": doc}}).encode())


@SLOW
@given(
    body=st.binary(max_size=200),
    content_type=st.sampled_from([None, "application/json", "application/x-npy"]),
)
def test_arbitrary_bytes_never_break_the_runtime(
    iris_service: InferenceService, body: bytes, content_type: str | None
) -> None:
    check(iris_service, body, content_type)


@SLOW
@given(data=rows)
def test_numeric_rows_are_served_or_refused_by_shape(
    iris_service: InferenceService, data: list[list[Any]]
) -> None:
    doc = check(iris_service, json.dumps({"instances": data}).encode())
    well_formed = bool(data) and all(len(row) == 4 for row in data)
    assert ("predictions" in doc) == well_formed
    if well_formed:
        assert len(doc["predictions"]) == len(data)


def test_every_model_kind_survives_arbitrary_json(tmp_path_factory: Any) -> None:
    made = services(tmp_path_factory)

    @settings(max_examples=60, deadline=None)
    @given(doc=json_value, name=st.sampled_from(sorted(made)))
    def run(doc: Any, name: str) -> None:
        service = made[name]
        check(service, json.dumps({"instances": doc}).encode())
        check(service, json.dumps({"inputs": doc}).encode())
        if isinstance(doc, list) and doc:
            check(service, json.dumps({"instances": [dict.fromkeys(("a", "b", "x"), doc)]}).encode())

    run()
