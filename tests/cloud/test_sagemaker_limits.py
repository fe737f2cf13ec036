"""The BYOC contract InvokeEndpoint holds a container to, on a stand-in container (a small HTTP server):
``/ping`` within 2 s, an answer within the invocation timeout (60 s on AWS, shortened here), at most 6 MB."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mdk.local.cloud import moto_adapter
from mdk.local.cloud.services import sagemaker as endpoints_module
from mdk.local.cloud.services.sagemaker import Endpoints


class Container(BaseHTTPRequestHandler):
    ping_delay_s = 0.0
    invoke_delay_s = 0.0
    answer = b'{"predictions": []}'

    def do_GET(self) -> None:  # /ping
        time.sleep(self.ping_delay_s)
        self._reply(b"{}")

    def do_POST(self) -> None:  # /invocations
        self.rfile.read(int(self.headers.get("content-length") or 0))
        time.sleep(self.invoke_delay_s)
        self._reply(self.answer)

    def _reply(self, body: bytes) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the caller gave up waiting
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Stub:
    """The two services Endpoints reads: SageMaker's describe calls and the containers."""

    def __init__(self, url: str) -> None:
        self._url = url

    def describe_endpoint(self, **_: Any) -> dict[str, Any]:
        return {
            "EndpointConfigName": "c",
            "ProductionVariants": [{"VariantName": "primary", "CurrentWeight": 1}],
        }

    def describe_endpoint_config(self, **_: Any) -> dict[str, Any]:
        return {"ProductionVariants": [{"VariantName": "primary", "ModelName": "m"}]}

    def url(self, _model: str) -> str:
        return self._url


@pytest.fixture
def container() -> Iterator[tuple[type[Container], Endpoints]]:
    handler = type("Handler", (Container,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stub = Stub(f"http://127.0.0.1:{server.server_address[1]}")
    saved = moto_adapter.HOOKS.endpoint_invoker
    try:
        yield handler, Endpoints(stub, stub)  # type: ignore[arg-type]
    finally:
        moto_adapter.HOOKS.endpoint_invoker = saved
        server.shutdown()
        server.server_close()


def error(answer: tuple[int, dict[str, str], bytes]) -> tuple[int, str, str]:
    status, headers, body = answer
    return status, headers["x-amzn-ErrorType"].split(":")[0], json.loads(body)["Message"]


def test_a_container_that_answers_ping_late_is_not_healthy(
    container: tuple[type[Container], Endpoints],
) -> None:
    handler, endpoints = container
    handler.ping_delay_s = 3.0
    status, code, message = error(endpoints.invoke_endpoint("e", b"{}", {"content-type": "application/json"}))
    assert (status, code) == (500, "InternalFailure")
    assert "/ping within 2 s" in message


def test_an_answer_past_the_invocation_timeout_is_a_model_error(
    container: tuple[type[Container], Endpoints], monkeypatch: pytest.MonkeyPatch
) -> None:
    handler, endpoints = container
    monkeypatch.setattr(endpoints_module, "INVOKE_TIMEOUT_S", 0.5)  # 60 s on AWS
    handler.invoke_delay_s = 2.0
    status, code, message = error(endpoints.invoke_endpoint("e", b"{}", {"content-type": "application/json"}))
    assert (status, code) == (424, "ModelError")
    assert message.startswith("Your invocation timed out while waiting for a response from container primary")


def test_an_answer_over_6_mb_is_a_model_error(container: tuple[type[Container], Endpoints]) -> None:
    handler, endpoints = container
    handler.answer = b"[" + b"0," * (3 * 1024 * 1024 + 10) + b"0]"
    status, code, message = error(endpoints.invoke_endpoint("e", b"{}", {"content-type": "application/json"}))
    assert (status, code) == (424, "ModelError")
    assert "6 MB" in message
    handler.answer = b'{"predictions": []}'
    status, headers, body = endpoints.invoke_endpoint("e", b"{}", {"content-type": "application/json"})
    assert (status, headers["x-Amzn-Invoked-Production-Variant"], body) == (200, "primary", handler.answer)
