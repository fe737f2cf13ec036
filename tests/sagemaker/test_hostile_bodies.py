"""Hostile bodies, property-tested on both decoders: the Lambda service and the serving container.

JSON texts a client's bug (or an attacker) produces — NaN/Infinity literals, numbers past float64,
nesting deeper than any parser's recursion, invalid UTF-8, byte-order marks, empty bodies, truncated
documents — in every content type the container takes (JSON, JSON Lines, CSV, .npy). The answer is
always a client status with the kit's error shape naming the problem; never a 5xx, never a hang.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdk_runtime.service import InferenceService, Settings
from tests.sagemaker.conftest import ServeFactory

CLIENT = {200, 400, 406, 413, 415, 422}
TOKENS = ["NaN", "-NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" * 400, "0x10", "1_000", "nan", "+1"]

number_like = st.sampled_from(TOKENS) | st.floats(allow_nan=False, allow_infinity=False).map(repr)
row = st.lists(number_like, min_size=0, max_size=6).map(lambda xs: "[" + ",".join(xs) + "]")
documents = st.one_of(
    st.lists(row, max_size=4).map(lambda rows: '{"instances": [' + ",".join(rows) + "]}"),
    st.integers(1, 50_000).map(lambda depth: '{"instances": ' + "[" * depth + "1" + "]" * depth + "}"),
    st.integers(1, 50_000).map(lambda depth: '{"a":' * depth + "1" + "}" * depth),
    st.just(""),
    st.just("\ufeff" + '{"instances": [[1, 2, 3, 4]]}'),
    st.text(max_size=40),
)
raw = st.one_of(
    documents.map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.binary(max_size=64),
    st.just(b"\xff\xfe\x00"),  # not UTF-8
    st.just(b'{"instances": [[1, 2, 3, 4]]'),  # truncated
    documents.map(lambda text: text.encode("utf-8", "surrogatepass")[: max(0, len(text) // 2)]),
)
media = st.sampled_from(["application/json", "application/jsonlines", "text/csv", "application/x-npy", None])
HOSTILE = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def service(iris_bundle_module: Path) -> InferenceService:
    return InferenceService.load(Settings(model_dir=iris_bundle_module, threads=1))


@pytest.fixture(scope="module")
def iris_bundle_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mdk.bundle import write_bundle
    from mdk.config import load_config
    from tests.cloud.conftest import REPO

    return write_bundle(load_config(REPO / "models.yaml").model("iris"), tmp_path_factory.mktemp("iris"))


def assert_refusal_names_the_problem(status: int, body: bytes) -> None:
    assert status in CLIENT, (status, body[:300])
    if status != 200:
        document: dict[str, Any] = json.loads(body)
        assert document["error"]["code"]
        assert document["error"]["message"]


@HOSTILE
@given(body=raw)
def test_the_lambda_decoder_refuses_hostile_json_by_name(service: InferenceService, body: bytes) -> None:
    reply = service.predict(body, "application/json", None)
    assert_refusal_names_the_problem(reply.status, reply.body)


def test_the_container_refuses_hostile_bodies_in_every_content_type(
    serving: ServeFactory, iris_bundle_module: Path
) -> None:
    with serving(iris_bundle_module) as running:
        parts = urlsplit(running.url)

        @HOSTILE
        @given(body=raw, content_type=media)
        def post(body: bytes, content_type: str | None) -> None:
            conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
            headers = {"content-type": content_type} if content_type else {}
            conn.request("POST", "/invocations", body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            conn.close()
            assert_refusal_names_the_problem(response.status, answer)

        post()
