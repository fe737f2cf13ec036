"""Fixtures of the handler tests: a fresh event loop per test, and the API the stack really builds.

REST (v1) events come from the synthesized serving stack's API (``tests/template_events.py``): the
resource, path parameters, stage and base64 flag API Gateway would send for that route, or ``NoRoute``
where the stack defines no such method (API Gateway answers those itself, the function never sees
them). HTTP API (v2) events, which the handler also accepts (a user's own HTTP API in front of the
function), come from the recorded ``sam local generate-event`` file.
"""

from __future__ import annotations

import asyncio
import fnmatch
import io
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lambda_handlers import inference
from tests.events import Version, api_event
from tests.infra.conftest import synth_config, write_config
from tests.template_events import binary_media_types, rest_event


@pytest.fixture(autouse=True)
def event_loop_for_mangum() -> Iterator[None]:
    """A fresh current loop for the test, closed after it: none is left for a later asyncio.run() to
    orphan (an unclosed loop found by the garbage collector fails whichever test is running then)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What the function logger writes (its handler holds the stdout it saw at import time)."""
    handler = inference.logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


#: The Lambda models the handler tests serve, deployed as the kit deploys them (names are what matter).
HANDLER_MODELS = ("iris", "doubler", "pair", "lookup", "expander")
_CONFIG = "project: handlers\nmodels:\n" + "".join(
    f"  - name: {name}\n    artifact: MODELS/iris/v1/model.onnx\n    runtime: lambda\n    batch: {{enabled: false}}\n"
    for name in HANDLER_MODELS
)


@pytest.fixture(scope="session")
def api_template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The serving stack of a config with the handler tests' models, synthesized (its REST API)."""
    directory = tmp_path_factory.mktemp("handlers-synth")
    return synth_config(write_config(directory, _CONFIG), directory / "out", with_nag=False).merged_json


GatewayEvent = Callable[..., dict[str, Any]]


@pytest.fixture(scope="session")
def gateway_event(api_template: dict[str, Any]) -> GatewayEvent:
    """``gateway_event(version, method, path, body, headers)``: the event API Gateway sends the function.

    v1: built from the synthesized REST API (raises ``NoRoute`` for a route the stack does not define);
    v2: the recorded HTTP API event, its body base64-encoded for the same binary media types.
    """
    binary = binary_media_types(api_template)

    def build(
        version: Version,
        method: str = "POST",
        path: str = "/models/iris/predict",
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        if version == "v1":
            return rest_event(api_template, method, path, body, headers)
        content_type = next((v for k, v in (headers or {}).items() if k.lower() == "content-type"), "")
        is_binary = any(fnmatch.fnmatch(content_type.split(";")[0].strip(), p) for p in binary)
        return api_event("v2", method, path, body, headers, base64_body=is_binary and body is not None)

    return build
