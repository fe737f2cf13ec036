"""The serving container's app under a real uvicorn server on loopback, in a thread of the test process."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from mdk_runtime.service import InferenceService, Settings
from sagemaker_endpoints.server import CPU, ModelServer, ServerSettings, create_app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Running:
    url: str
    server: ModelServer


def ping_until(url: str, text: str, *, timeout_s: float = 30.0) -> httpx.Response:
    """GET /ping until its answer contains ``text`` (a model loading in the background), the last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = httpx.get(f"{url}/ping", timeout=2)
        if text in response.text or time.monotonic() > deadline:
            return response
        time.sleep(0.01)


def settings_for(model_dir: Path, **overrides: Any) -> ServerSettings:
    values: dict[str, Any] = {
        "model": Settings(
            model_dir=model_dir, threads=1, max_body_bytes=overrides.pop("max_body_bytes", 10_000_000)
        ),
        "providers": (CPU,),
        "host": "127.0.0.1",
        "port": free_port(),
        **overrides,
    }
    return ServerSettings(**values)


@contextmanager
def serve(settings: ServerSettings, service: InferenceService | None = None) -> Iterator[Running]:
    app = create_app(settings, service=service)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield Running(f"http://{settings.host}:{settings.port}", app.state.server)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


ServeFactory = Callable[..., Any]


@pytest.fixture
def serving() -> ServeFactory:
    """``with serving(model_dir, **settings) as running:`` a container on a free loopback port."""

    def factory(model_dir: Path, *, preload: bool = True, **overrides: Any) -> Any:
        settings = settings_for(model_dir, **overrides)
        service = InferenceService.load(settings.model, providers=[CPU]) if preload else None
        return serve(settings, service)

    return factory
