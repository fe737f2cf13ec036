"""The dynamic batcher's idle dispatch, and the container's logs while the model loads."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from sagemaker_endpoints.batching import DynamicBatcher
from tests import onnx_models
from tests.conftest import BundleFactory
from tests.sagemaker.conftest import ServeFactory, ping_until

HANG_GUARD_S = 20  # far under the 60 s delay: only a batch that went at once is answered within it


def _double(feeds: dict[str, np.ndarray], n: int) -> dict[str, Any]:
    return {"y": feeds["x"] * 2}


async def _request(batcher: DynamicBatcher, value: float) -> dict[str, Any]:
    """As the server does: counted in flight on arrival, decoded (a suspension here), then queued."""
    batcher.enter()
    await asyncio.sleep(0)
    coro = batcher.run({"x": np.full((1, 2), value, dtype=np.float32)}, 1)
    batcher.leave()
    return await coro


def test_a_lone_request_does_not_wait_out_the_batch_delay() -> None:
    async def main() -> dict[str, Any]:
        batcher = DynamicBatcher(_double, max_rows=32, max_delay_ms=60_000)
        try:
            return await asyncio.wait_for(_request(batcher, 3.0), HANG_GUARD_S)
        finally:
            await batcher.close()

    np.testing.assert_array_equal(asyncio.run(main())["y"], [[6.0, 6.0]])


def test_requests_in_flight_together_still_share_a_batch_and_get_their_own_rows() -> None:
    async def main() -> tuple[list[dict[str, Any]], DynamicBatcher]:
        batcher = DynamicBatcher(_double, max_rows=32, max_delay_ms=60_000)
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(_request(batcher, float(i)) for i in range(10))), HANG_GUARD_S
            )
        finally:
            await batcher.close()
        return list(results), batcher

    results, batcher = asyncio.run(main())
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result["y"], [[2.0 * i, 2.0 * i]])
    assert batcher.stats.requests == 10
    assert batcher.stats.batches == 1  # all ten were on their way: the batch waited for every one


def test_a_request_answered_without_the_model_does_not_hold_the_batch() -> None:
    """One request counted in flight fails decoding (leave() without run()): the others' batch goes."""

    async def failing(batcher: DynamicBatcher) -> None:
        batcher.enter()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        batcher.leave()

    async def main() -> DynamicBatcher:
        batcher = DynamicBatcher(_double, max_rows=32, max_delay_ms=60_000)
        try:
            await asyncio.wait_for(
                asyncio.gather(failing(batcher), *(_request(batcher, 1.0) for _ in range(3))), HANG_GUARD_S
            )
        finally:
            await batcher.close()
        return batcher

    batcher = asyncio.run(main())
    assert batcher.stats.requests == 3
    assert batcher.upstream == 0


def test_max_rows_bounds_a_batch_and_close_drains_the_rest() -> None:
    async def main() -> tuple[list[dict[str, Any]], DynamicBatcher]:
        batcher = DynamicBatcher(_double, max_rows=4, max_delay_ms=60_000)
        tasks = [asyncio.ensure_future(_request(batcher, float(i))) for i in range(10)]
        await asyncio.sleep(0)  # all ten arrived (entered)
        while batcher.upstream:  # all queued (the first batch may be running)
            await asyncio.sleep(0)
        await batcher.close()  # queued requests finish first
        assert batcher.stats.rows == 10  # every queued row ran before close() returned
        return list(await asyncio.gather(*tasks)), batcher

    results, batcher = asyncio.run(main())
    assert [float(r["y"][0, 0]) for r in results] == [2.0 * i for i in range(10)]
    assert batcher.stats.batches >= 3
    assert batcher.stats.rows == 10


def test_the_container_answers_a_lone_request_with_a_long_batch_delay(
    serving: ServeFactory, iris_bundle: Path
) -> None:
    body = json.dumps({"instances": [[6.3, 3.4, 5.6, 2.4]]})
    with serving(iris_bundle, max_batch_delay_ms=10_000) as running:
        for _ in range(3):  # each alone: none waits the 10 s
            response = httpx.post(
                f"{running.url}/invocations",
                content=body,
                headers={"content-type": "application/json"},
                timeout=5,
            )
            assert response.status_code == 200
        assert running.server.batcher.stats.requests == 3
        assert running.server.batcher.upstream == 0


def test_pings_while_loading_are_logged_once_at_info(
    iris_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from sagemaker_endpoints.server import ModelServer
    from tests.sagemaker.conftest import settings_for

    caplog.set_level(logging.INFO)
    server = ModelServer(settings_for(iris_bundle))  # not started: loading
    replies = [server.ping() for _ in range(5)]
    assert {r.status for r in replies} == {503}
    assert json.loads(replies[-1].body)["error"]["code"] == "model_not_ready"
    loading = [r for r in caplog.records if "model is loading" in r.getMessage()]
    assert len(loading) == 1
    assert loading[0].levelno == logging.INFO
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_failed_load_is_logged_once_at_error_however_often_pinged(
    serving: ServeFactory, bundle: BundleFactory, caplog: pytest.LogCaptureFixture
) -> None:
    directory = bundle(onnx_models.two_inputs())
    (directory / "model.onnx").write_bytes(b"corrupt")
    with serving(directory, preload=False) as running:
        ping_until(running.url, "cannot load")
        for _ in range(5):
            assert httpx.get(f"{running.url}/ping", timeout=2).status_code == 503
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "onnxruntime cannot load model.onnx" in errors[0].getMessage()
